//! Storage backends for stoa-backup.
#![deny(missing_docs)]
