//! Tests that run the built `stoa-backup` against the real local PostgreSQL
//! (`STOA_TEST_DATABASE_URL`), each in a temporary directory with databases of its own.

mod backup;
mod check;
mod config_errors;
mod example;
mod exit_codes;
mod manifests;
mod progress;
mod prune;
mod recover;
mod replicate;
mod replicate_to;
mod restore;
mod secrets;
mod serve;
mod support;
mod verify;
