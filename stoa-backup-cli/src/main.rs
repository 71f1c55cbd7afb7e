//! `stoa-backup`: back up a STOA platform from one configuration file.
//!
//! Built only on the public API of the `stoa-backup` library (features `full`): it is also
//! the reference for writing custom backup tools. See `stoa-backup --help` and the README's
//! "Command line" section.

mod cli;
mod commands;
mod config;
mod logging;
mod manifests;
mod outcome;
mod progress;
mod restorers;
mod serve;
mod sources;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit 2 (clap's status), `--help` and `--version` 0.
    let cli = cli::Cli::parse();
    if let Err(e) = logging::init(cli.log_level.as_deref()) {
        eprintln!("error: --log-level: {e}");
        return outcome::Outcome::Usage.into();
    }
    // Returning (rather than exiting) lets the runtime finish the file removals a cancelled
    // run started.
    commands::run(&cli).await.into()
}
