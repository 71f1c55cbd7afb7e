//! Kubernetes: custom resources and CRDs, Helm values from release storage, pod exec.

mod crs_backup;
mod crs_restore;
mod fresh_cluster;
mod helm;
mod pod_exec;
mod support;
