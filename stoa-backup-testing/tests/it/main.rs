//! Integration tests of stoa-backup-testing against the real PostgreSQL of
//! `STOA_TEST_DATABASE_URL` (and the in-process fakes for the state snapshot).

mod compare;
mod pool;
mod service_example;
mod snapshot;
mod spare;
mod state;
