//! PostgreSQL: backup and restore round trips, failure modes, and exec mode in a pod.

mod backup_restore;
#[cfg(feature = "kubernetes")]
mod exec;
mod failures;

use stoa_backup::providers::postgres::PgConnection;

/// Connection settings for a test database URL.
fn pg(url: impl AsRef<str>) -> PgConnection {
    PgConnection::from_url(url.as_ref()).unwrap()
}
