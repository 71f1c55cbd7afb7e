//! The commands: each prints its result (a text for people, or one JSON document with a
//! `verdict`) and says how it ended.

mod backup;
mod config;
mod list;
mod sinks;

use serde::Serialize;
use serde_json::json;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::config::{ConfigError, EMBEDDED};
use crate::outcome::Outcome;

/// Runs the command of `cli`.
pub async fn run(cli: &Cli) -> Outcome {
    match &cli.command {
        Command::Backup { components } => backup::run(cli, components).await,
        Command::List {
            component,
            labels,
            storage,
        } => list::run(cli, component.as_deref(), labels, storage.as_deref()).await,
        Command::Config {
            command: ConfigCommand::Check,
        } => config::check(cli),
        Command::Config {
            command: ConfigCommand::Example,
        } => config::example(cli),
    }
}

/// A command's JSON document: the verdict first, then what the command has to say (in the
/// order of its fields).
#[derive(Serialize)]
struct Document<'a, T: Serialize> {
    verdict: &'a str,
    #[serde(flatten)]
    body: T,
}

/// Prints `{"verdict": …, <body's fields>}` on stdout.
fn print_json(verdict: &str, body: impl Serialize) {
    let document = Document { verdict, body };
    println!(
        "{}",
        serde_json::to_string_pretty(&document).unwrap_or_else(|e| format!(
            "{{\"verdict\":\"failed\",\"error\":\"cannot serialize the result: {e}\"}}"
        ))
    );
}

/// Loads the configuration; on an error, reports it (stderr, or the JSON document) and
/// gives the outcome to return (exit 2).
fn load_config(cli: &Cli) -> Result<crate::config::Config, Outcome> {
    let config = crate::config::load(cli.config.as_deref()).map_err(|e| config_error(cli, &e))?;
    if config.file == EMBEDDED {
        tracing::info!("no configuration file: using the embedded default (the local PostgreSQL into ./stoa-backups)");
    }
    Ok(config)
}

/// Reports a configuration (or usage) error: exit 2.
fn config_error(cli: &Cli, e: &ConfigError) -> Outcome {
    if cli.json {
        print_json(Outcome::Usage.verdict(), json!({ "error": e }));
    } else {
        eprintln!("error: {e}");
    }
    Outcome::Usage
}

/// Reports a usage error that is not in the file (an unknown component on the command
/// line): exit 2.
fn usage_error(cli: &Cli, message: &str) -> Outcome {
    if cli.json {
        print_json(
            Outcome::Usage.verdict(),
            json!({ "error": { "message": message } }),
        );
    } else {
        eprintln!("error: {message}");
    }
    Outcome::Usage
}
