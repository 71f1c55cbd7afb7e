//! PostgreSQL: backup and restore round trips, failure modes, exec mode in a pod, and the
//! safety of restores that swap a database into place.

pub(crate) mod backup_restore;
mod drill;
mod driver;
#[cfg(feature = "kubernetes")]
mod exec;
mod failures;
mod parallel;
mod pick_run;
mod restore_targets;
mod spool;
mod support;
mod swap_killed;
mod swap_locked;

use stoa_backup::providers::postgres::PgConnection;

/// Connection settings for a test database URL.
fn pg(url: impl AsRef<str>) -> PgConnection {
    PgConnection::from_url(url.as_ref()).unwrap()
}
