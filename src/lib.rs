//! stoa-backup: back up, verify, prune and restore the STOA platform.
//!
//! [`prelude`] brings the common types into scope; [`core`], [`providers`] and [`storage`]
//! hold the rest. `signals` (feature `signals`, on by default; Unix) turns SIGINT and
//! SIGTERM into a clean cancellation of a run.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
pub use stoa_backup_core as core;
pub use stoa_backup_providers as providers;
pub use stoa_backup_storage as storage;

#[cfg(all(unix, feature = "signals"))]
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "signals"))))]
pub mod signals;

/// The README's example, compiled as a doctest so that it keeps up with the API.
#[cfg(all(doctest, feature = "age", feature = "local", feature = "postgres"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The common types in one import: everything of [`stoa_backup_core::prelude`] (pipeline,
/// catalog, retention, codecs, errors, traits), plus the sinks and the sources,
/// restorers, verifiers, connections and checks of each enabled feature.
///
/// ```no_run
/// use stoa_backup::prelude::*;
///
/// # async fn run() -> Result<()> {
/// let sink = std::sync::Arc::new(LocalSink::new("/backups")?);
/// let report = Pipeline::builder()
///     .source(PostgresSource::builder(PgConnection::from_env()?).build()?)
///     .sink(sink.clone())
///     .compression(ZstdCodec::new(3)?)
///     .verifier(PgArchiveVerifier::new())
///     .retention(KeepRules::new().keep_daily(KeepCount::Last(30)))
///     .build()?
///     .run()
///     .await?
///     .into_result()?;
/// let runs = Catalog::new(sink).list_runs(&RunFilter::component("postgres")).await?;
/// # let _ = (report, runs);
/// # Ok(()) }
/// ```
pub mod prelude {
    pub use stoa_backup_core::prelude::*;

    #[cfg(feature = "local")]
    pub use stoa_backup_storage::LocalSink;
    #[cfg(feature = "git")]
    pub use stoa_backup_storage::{GitCredentials, GitSink};
    #[cfg(feature = "s3")]
    pub use stoa_backup_storage::{S3Credentials, S3Sink};

    #[cfg(all(feature = "checks", feature = "kubernetes"))]
    pub use stoa_backup_providers::checks::PodsReady;
    #[cfg(all(feature = "checks", feature = "postgres"))]
    pub use stoa_backup_providers::checks::RowCounts;
    #[cfg(feature = "checks")]
    pub use stoa_backup_providers::checks::{HttpHealth, OidcLogin, PrometheusUp};
    #[cfg(feature = "grafana")]
    pub use stoa_backup_providers::grafana::{
        GrafanaAuth, GrafanaConnection, GrafanaRestorer, GrafanaSource,
    };
    #[cfg(feature = "infisical")]
    pub use stoa_backup_providers::infisical::{
        InfisicalConnection, InfisicalRestorer, InfisicalSource,
    };
    #[cfg(feature = "keycloak")]
    pub use stoa_backup_providers::keycloak::{
        KeycloakAuth, KeycloakConnection, KeycloakExportVerifier, KeycloakRestorer, KeycloakSource,
    };
    #[cfg(feature = "kubernetes")]
    pub use stoa_backup_providers::kubernetes::{
        CustomResourcesRestorer, CustomResourcesSource, HelmValuesRestorer, HelmValuesSource,
    };
    #[cfg(feature = "postgres")]
    pub use stoa_backup_providers::postgres::{
        find_dump, DumpQuery, FoundDump, PgArchiveVerifier, PgConnection, PostgresRestorer,
        PostgresSource, RestoreTarget, ScratchRestoreVerifier,
    };
    #[cfg(feature = "vault")]
    pub use stoa_backup_providers::vault::{
        RaftSnapshotRestorer, RaftSnapshotSource, RaftSnapshotVerifier, VaultAuth, VaultConnection,
        VaultKvRestorer, VaultKvSource,
    };
}
