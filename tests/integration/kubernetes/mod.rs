//! Kubernetes: custom resources and CRDs, Helm values from release storage, pod exec.

mod crs_backup;
mod crs_restore;
mod fresh_cluster;
pub(crate) mod helm;
mod pod_exec;
pub(crate) mod support;
