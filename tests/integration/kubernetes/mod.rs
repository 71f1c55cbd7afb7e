//! Kubernetes: custom resources and CRDs, and Helm values from release storage.

mod crs;
mod helm;
