//! Storage backends for stoa-backup.
//!
//! Each backend implements [`stoa_backup_core::Sink`] and sits behind its own cargo feature:
//! - `local`: [`LocalSink`], a directory such as a mounted volume (a Kubernetes PVC).
#![deny(missing_docs)]

#[cfg(feature = "local")]
pub mod local;

#[cfg(feature = "local")]
pub use local::LocalSink;

#[cfg(feature = "s3")]
pub mod s3;

#[cfg(feature = "git")]
pub mod git;
