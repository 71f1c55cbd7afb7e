//! Storage backends for stoa-backup.
//!
//! Each backend implements [`stoa_backup_core::Sink`] and sits behind its own cargo feature:
//! - `local`: [`LocalSink`], a directory such as a mounted volume (a Kubernetes PVC).
//! - `git`: `GitSink`, plain files committed to a Git repository and pushed to a remote
//!   (see the `git` module).
//! - `s3`: `S3Sink`, an S3-compatible bucket (object_store's AWS backend), with streaming
//!   multipart uploads.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub mod local;

#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub use local::{LocalSink, LocalSinkBuilder};

#[cfg(feature = "s3")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
pub mod s3;

#[cfg(feature = "s3")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
pub use s3::{S3Credentials, S3Encryption, S3Retry, S3Sink, S3SinkBuilder, S3SinkMetrics};

#[cfg(feature = "git")]
#[cfg_attr(docsrs, doc(cfg(feature = "git")))]
pub mod git;

#[cfg(feature = "git")]
#[cfg_attr(docsrs, doc(cfg(feature = "git")))]
pub use git::{GitCredentials, GitSink, GitSinkBuilder};
