//! Platform recovery over the real PostgreSQL and the in-process fakes: every component
//! backed up in its own run, every system lost, then a `Recovery` planned (no writes) and
//! applied in STOA's order; a failure mid-way resumed; missing keys and runs refused.

mod drill;
mod platform;
