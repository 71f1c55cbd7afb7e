//! Shared test support for stoa-backup.
