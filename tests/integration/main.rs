//! Integration tests of the `stoa-backup` facade against real parts: the local PostgreSQL,
//! real child processes, in-process S3 servers (and moto when `STOA_TEST_S3_ENDPOINT` names
//! one), real Git repositories, and the fake Kubernetes, Keycloak, Grafana, Vault,
//! Infisical, Prometheus and health-endpoint servers of the test-support crate over real
//! HTTP.
//!
//! One test binary (linking kube, libgit2, object_store and aws-lc once), one module per
//! area, each compiled only with the features it needs. Run one area with a filter, e.g.
//! `cargo test --all-features --test integration postgres::`.

#[cfg(all(target_os = "linux", feature = "local"))]
mod lock;
#[cfg(feature = "local")]
mod pipeline;
#[cfg(feature = "local")]
mod retention;
#[cfg(all(unix, feature = "signals", feature = "local"))]
mod signals;

#[cfg(feature = "git")]
mod git;
#[cfg(all(feature = "s3", feature = "local"))]
mod s3;

#[cfg(all(feature = "postgres", feature = "local"))]
mod postgres;

#[cfg(feature = "kubernetes")]
mod kubernetes;

#[cfg(feature = "grafana")]
mod grafana;
#[cfg(all(feature = "infisical", feature = "local"))]
mod infisical;
#[cfg(feature = "keycloak")]
mod keycloak;
// The change probes of the on-change trigger (Helm, custom resources, Grafana).
#[cfg(any(feature = "kubernetes", feature = "grafana"))]
mod probes;
#[cfg(all(feature = "vault", feature = "local"))]
mod vault;

#[cfg(all(feature = "postgres", feature = "local", target_os = "linux"))]
mod faults;

#[cfg(all(
    feature = "postgres",
    feature = "local",
    feature = "s3",
    feature = "git",
    target_os = "linux"
))]
mod replicate;

#[cfg(all(feature = "checks", feature = "kubernetes", feature = "postgres"))]
mod checks;

#[cfg(all(
    feature = "postgres",
    feature = "local",
    feature = "vault",
    feature = "keycloak",
    feature = "kubernetes",
    feature = "grafana"
))]
mod recovery;

// Shared by the modules that restore a component of a run (each behind its own features).
#[allow(dead_code)]
mod restore_support;

// Shared by the modules that look at a local sink's files on disk.
#[cfg(feature = "local")]
mod files;

// Shared by the secret-store modules.
#[cfg(all(
    feature = "local",
    feature = "age",
    any(feature = "vault", feature = "infisical")
))]
mod encrypted_dir;

mod conformance;
