//! stoa-backup: back up, verify, prune and restore the STOA platform.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
pub use stoa_backup_core as core;
pub use stoa_backup_providers as providers;
pub use stoa_backup_storage as storage;

/// The README's example, compiled as a doctest so that it keeps up with the API.
#[cfg(all(doctest, feature = "age", feature = "local"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
