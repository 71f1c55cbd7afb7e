//! State snapshots for integration tests: PostgreSQL databases copied aside and put back
//! in milliseconds, a pool of fresh test databases built from a service's migrations, and
//! whole-platform state (PostgreSQL plus custom resources, a Keycloak realm, Grafana,
//! Vault KV…) taken and restored through stoa-backup's real providers, in its production
//! format — so that a production backup can be loaded as a test fixture too.
//!
//! # Why a crate of its own
//! A service adds it under `[dev-dependencies]` only: its PostgreSQL client, its
//! background runtime and its test-shaped defaults (snapshots stored unencrypted in a
//! temporary directory, sessions terminated on request) never reach a production build,
//! and it may depend on the providers and the local storage, which core may not. It is
//! published, unlike the repository's own test support (fakes of external servers).
//!
//! # The three tools
//! - [`PgSnapshot`]: `CREATE DATABASE … TEMPLATE` copies a database on the server (a
//!   356 MB database in 0.31 s with `STRATEGY FILE_COPY`, against 3.0 s + 8.0 s for
//!   `pg_dump -Fc` and `pg_restore`); [`restore`](PgSnapshot::restore) puts it back and
//!   keeps the snapshot (from the second restore on by renaming in a spare copy made in
//!   the background: milliseconds whatever the size); a [`guard`](PgSnapshot::guard) renames
//!   the copy itself in when the test ends, also on a panic. Where a template clone is refused (a role without the right, a
//!   managed service), the same API uses the library's own dump and restore and says so in
//!   [`PgSnapshot::method`].
//! - [`TestDatabases`]: a template per migration set (named by the migrations' hash, reused
//!   across test binaries and runs), and a fresh clone per test, dropped afterwards.
//! - [`StateSnapshot`]: several systems in one run of the production pipeline.
//!
//! # A service's test
//! The same tests run in this crate's suite (`tests/it/service_example.rs`).
//! ```no_run
//! use std::sync::OnceLock;
//! use stoa_backup_testing::{Migrations, TestDatabases, PgSnapshot};
//! use tokio::sync::OnceCell;
//!
//! // One pool for the whole test binary: the template is built once (or found).
//! static POOL: OnceCell<TestDatabases> = OnceCell::const_new();
//!
//! async fn pool() -> &'static TestDatabases {
//!     POOL.get_or_init(|| async {
//!         let migrations = Migrations::new()
//!             .sql("0001_tenants.sql", "CREATE TABLE tenants (id serial PRIMARY KEY, name text NOT NULL UNIQUE)")
//!             .sql("0002_apis.sql", "CREATE TABLE apis (id serial PRIMARY KEY, tenant int REFERENCES tenants, path text)");
//!         // Fails loudly (never skips) when STOA_TEST_DATABASE_URL is unset or unreachable.
//!         TestDatabases::from_env(migrations).await.expect("test PostgreSQL")
//!     })
//!     .await
//! }
//!
//! #[tokio::test]
//! async fn a_tenant_gets_an_api() {
//!     let db = pool().await.checkout().await.unwrap(); // tens of ms: a clone of the template
//!     let client = db.connect().await.unwrap();
//!     client.execute("INSERT INTO tenants (name) VALUES ('acme')", &[]).await.unwrap();
//!     // … the code under test, given db.url() …
//!     // `db` is dropped here (also if the test panics): its database is dropped.
//! }
//!
//! #[tokio::test]
//! async fn a_fixture_is_put_back_after_the_test() {
//!     let db = pool().await.checkout().await.unwrap();
//!     let url = db.url().to_string();
//!     // Seed once, snapshot, and let the guard put the seeded state back at the end.
//!     let _guard = PgSnapshot::take(&url, db.name()).await.unwrap().guard();
//!     let client = db.connect().await.unwrap();
//!     client.execute("DELETE FROM tenants", &[]).await.unwrap();
//!     // At the end the guard terminates what is still connected and puts the data back.
//! }
//! # fn main() {}
//! ```
//!
//! # Things to know
//! - Nobody may be connected to a database while it is copied or swapped; close the pool
//!   first or ask for [`terminate_connections`](SnapshotBuilder::terminate_connections).
//! - `STRATEGY FILE_COPY` (chosen for databases of 64 MiB and more) forces a checkpoint:
//!   fine on a test server, felt by everybody on a shared one.
//! - A copy costs what writing the database's files costs on the server: this crate adds a
//!   few catalog statements around `CREATE DATABASE`, nothing per byte. A server for tests
//!   is best run as PostgreSQL's documentation describes under "Non-Durable Settings"
//!   (`fsync`, `synchronous_commit` and `full_page_writes` off), its data directory on a
//!   tmpfs where memory allows; `scripts/test-postgres.sh start` in this repository starts
//!   one and prints its URL. Off a tmpfs, `fsync = off` can be slower than a stock server:
//!   the dirty pages pile up until the kernel throttles every writer.
//! - Dropping a [`TestDatabase`] or a snapshot does its `DROP DATABASE` in the background;
//!   [`settle`] waits for it (before checking that nothing is left, say), and so does the
//!   process before it exits (an `atexit` hook, up to a minute).
//! - Every database this crate creates carries a marker comment; pools remove leftovers of
//!   crashed runs by age and by dead process ([`StalePolicy`]).
//! - When PostgreSQL is unreachable every call fails with an error naming the server and
//!   saying how to point the tests at one: a test using this crate fails, it never skips.

#![deny(missing_docs)]

mod cleanup;
mod dump;
mod migrations;
mod pool;
mod server;
mod snapshot;
pub mod state;
mod worker;

pub use cleanup::{CleanupReport, StalePolicy};
pub use migrations::Migrations;
pub use pool::{PoolBuilder, TestDatabase, TestDatabases, URL_VARIABLES};
pub use server::{CloneStrategy, Session};
pub use snapshot::{MethodChoice, PgSnapshot, SnapshotBuilder, SnapshotGuard, SnapshotMethod};
pub use state::{FixtureBuilder, StateSnapshot, StateSnapshotBuilder};
pub use stoa_backup_core::{Error, ErrorKind, Result};

/// Waits until the work this crate left running in the background has ended: databases
/// being dropped (a [`TestDatabase`] or a [`PgSnapshot`] dropped, the database a restore
/// replaced) and spare copies being made. A test that checks that nothing is left on the
/// server calls it first; the process waits for the same work before it exits.
pub async fn settle() {
    worker::settle().await
}
