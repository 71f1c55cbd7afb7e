//! The command line: global options and commands (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit statuses, shown at the end of `--help` (and in the README).
pub const EXIT_CODES: &str = "\
Exit status:
  0    success
  1    failed (nothing of what was asked succeeded, or a storage target could not be read)
  2    usage or configuration error (the message names the file, line and key)
  3    partially failed (some components failed, the others succeeded)
  130  interrupted by SIGINT (the run in progress is discarded: no manifest is written)
  143  interrupted by SIGTERM (likewise)";

/// Back up, list and check the backups of a STOA platform from one configuration file.
///
/// The configuration is --config PATH, else $STOA_BACKUP_CONFIG, else ./stoa-backup.yaml
/// when present, else the embedded default: the local PostgreSQL (DATABASE_URL, default
/// postgres://postgres@127.0.0.1:5432/postgres) into ./stoa-backups, zstd, verified, kept
/// 30 days. Logs go to stderr; results to stdout, as one JSON document with --json.
#[derive(Debug, Parser)]
#[command(name = "stoa-backup", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = "STOA_BACKUP_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print one JSON document on stdout, with a `verdict`.
    #[arg(long, global = true)]
    pub json: bool,

    /// Log filter for stderr: error, warn, info, debug, trace, or target=level pairs
    /// separated by commas [default: $RUST_LOG, else warn].
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up components (every component when none is named), apply each storage
    /// target's retention, and print the catalog.
    Backup {
        /// Components to back up, by name.
        #[arg(value_name = "COMPONENT")]
        components: Vec<String>,
    },
    /// List the complete runs (backups) of the storage targets, newest first.
    #[command(visible_alias = "snapshots")]
    List {
        /// Only runs holding this component (and only its storage target).
        #[arg(long, value_name = "NAME")]
        component: Option<String>,
        /// Only runs carrying this label (repeatable: all must match).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Only this storage target.
        #[arg(long, value_name = "TARGET")]
        storage: Option<String>,
    },
    /// Check the configuration, or print an example.
    Config {
        /// What to do with it.
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `config` commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration without connecting to anything, and print its storage
    /// targets, components and schedules (secrets as ***).
    Check,
    /// Print a commented example configuration (the guide's tables).
    Example,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn labels_are_key_value_pairs() {
        assert_eq!(
            parse_label("job=nightly"),
            Ok(("job".into(), "nightly".into()))
        );
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_label("nope").is_err());
        assert!(parse_label("=x").is_err());
    }
}
