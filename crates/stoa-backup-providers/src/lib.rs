//! Providers for stoa-backup.
#![deny(missing_docs)]
