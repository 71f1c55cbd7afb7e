//! PostgreSQL: backup and restore round trips, failure modes, and exec mode in a pod.

mod backup_restore;
#[cfg(feature = "kubernetes")]
mod exec;
mod failures;
