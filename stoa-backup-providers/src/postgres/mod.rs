//! PostgreSQL: streamed `pg_dump` backups, real verification, safe restores.
//!
//! - [`PostgresSource`] runs the real `pg_dump --format=custom` and streams its stdout into
//!   the pipeline (no temp file). By default pg_dump does not compress (`-Z0`) and the
//!   pipeline's zstd stage does, which is several times faster than pg_dump's gzip. The
//!   manifest records the server and pg_dump versions, the database size, per-table row
//!   estimates, the dump's TOC entry count (read from the stream as it passes) and exact
//!   per-table row counts taken in the very snapshot pg_dump dumps
//!   (`pg_export_snapshot()` + `pg_dump --snapshot`).
//! - [`PgArchiveVerifier`] streams the stored dump into `pg_restore --list` (entry count as
//!   recorded) and through a full read of every data block (what `pg_restore -f /dev/null`
//!   does: for uncompressed blocks a walk in process, for blocks pg_dump compressed
//!   pg_restore itself): `--list` alone reads only the TOC and passes dumps cut off in
//!   their data.
//! - [`ScratchRestoreVerifier`] restores into a temporary database, compares exact row
//!   counts with the recorded ones, runs caller SQL checks, and drops the database.
//! - [`PostgresRestorer`] restores into a new database (the default), optionally swapped
//!   into place (one transaction, recorded so that a rerun finishes or undoes a swap whose
//!   process died), or over an existing one with `--clean --if-exists` in a single
//!   transaction.
//! - [`find_dump`] picks the dump to restore: from the newest complete, verified run holding
//!   a dump of the database asked for (by default the target's own), or from a given run.
//!
//! ```no_run
//! # async fn demo() -> stoa_backup_core::Result<()> {
//! use stoa_backup_core::{MemorySink, Pipeline, ZstdCodec};
//! use stoa_backup_providers::postgres::{PgArchiveVerifier, PgConnection, PostgresSource};
//!
//! // Or PgConnection::from_env(): DATABASE_URL, PGHOST, PGUSER, PGPASSWORD…
//! let conn = PgConnection::from_url("postgres://backup@127.0.0.1:5432/stoa")?;
//! let report = Pipeline::builder()
//!     .source(PostgresSource::builder(conn).build()?)
//!     .sink(MemorySink::new())
//!     .compression(ZstdCodec::new(3)?)
//!     .verifier(PgArchiveVerifier::new())
//!     .build()?
//!     .run()
//!     .await?;
//! assert!(report.is_complete());
//! # Ok(()) }
//! ```

mod conn;
pub mod drill;
mod dump_header;
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub mod exec;
pub mod facts;
mod find;
mod parallel;
mod pg_restore;
mod queries;
pub mod restore;
pub mod source;
pub mod spool_index;
mod swap;
mod tools;
pub mod verify;

pub use conn::PgConnection;
pub use drill::ScratchDatabase;
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub use exec::{PodRef, PodTarget, PostgresPodSource};
pub use facts::{PostgresFacts, PostgresGlobalsFacts, TocFacts};
pub use find::{find_dump, DumpQuery, FoundDump};
pub use queries::qualified_name;
pub use restore::{PostgresRestorer, RestoreTarget, DEFAULT_LOCK_TIMEOUT};
pub use source::{
    dump_artifact_name, CompressionLocation, DatabaseSelection, PostgresSource,
    PostgresSourceBuilder,
};
pub use tools::PgTools;
pub use verify::{PgArchiveVerifier, ScratchRestoreVerifier, SqlCheck, SqlExpect};

/// Component name used in errors (and, by default, in keys and the manifest).
pub const COMPONENT: &str = "postgres";

/// Content type of database dumps.
pub const DUMP_CONTENT_TYPE: &str = "application/x-postgres-custom-dump";

/// Content type of the `pg_dumpall --globals-only` artifact.
pub const GLOBALS_CONTENT_TYPE: &str = "application/sql";

/// Name of the globals artifact.
pub const GLOBALS_ARTIFACT: &str = "globals.sql";
