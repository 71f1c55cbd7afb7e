//! The commands: each prints its result (a text for people, or one JSON document with a
//! `verdict`) and says how it ended.

mod backup;
mod check;
mod config;
mod drill;
pub(crate) mod keys;
mod list;
mod manifests;
pub(crate) mod pipelines;
mod prune;
mod recover;
mod replicate;
mod restore;
pub(crate) mod sinks;
mod verify;

use serde::Serialize;
use serde_json::json;
use stoa_backup::signals::ShutdownSignal;

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
        Command::Verify {
            runs,
            latest,
            component,
            storage,
            max_age,
        } => {
            verify::run(
                cli,
                verify::Request {
                    runs,
                    latest: *latest,
                    component: component.as_deref(),
                    storage: storage.as_deref(),
                    max_age: max_age.as_ref(),
                },
            )
            .await
        }
        Command::Prune { apply, storage } => prune::run(cli, *apply, storage.as_deref()).await,
        Command::Replicate {
            to,
            from,
            component,
            since,
            limit,
        } => {
            replicate::run(
                cli,
                replicate::Request {
                    from: from.as_deref(),
                    to,
                    component: component.as_deref(),
                    since: since.as_deref(),
                    limit: *limit,
                },
            )
            .await
        }
        Command::Restore {
            component,
            run,
            at,
            from,
            to,
            existing,
            apply,
        } => {
            restore::run(
                cli,
                restore::Request {
                    component,
                    run: run.as_deref(),
                    at: *at,
                    from: from.as_deref(),
                    to: to.as_deref(),
                    existing: *existing,
                    apply: *apply,
                },
            )
            .await
        }
        Command::Manifests { namespace, image } => manifests::run(cli, namespace, image),
        Command::Recover {
            components,
            at,
            from,
            existing,
            apply,
            resume,
        } => {
            recover::run(
                cli,
                recover::Request {
                    components,
                    at: *at,
                    from: from.as_deref(),
                    existing: *existing,
                    apply: *apply,
                    resume: resume.as_deref(),
                },
            )
            .await
        }
        Command::Drill { components } => drill::run(cli, components).await,
        Command::Check { components } => check::run(cli, components).await,
        Command::Serve {
            listen,
            poll_interval,
            debounce,
            rpo_refresh,
            shutdown_grace,
        } => {
            crate::serve::run(
                cli,
                crate::serve::Request {
                    listen,
                    poll: poll_interval.duration(),
                    debounce: debounce.duration(),
                    rpo_refresh: rpo_refresh.duration(),
                    grace: shutdown_grace.duration(),
                },
            )
            .await
        }
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
pub(crate) fn load_config(cli: &Cli) -> Result<crate::config::Config, Outcome> {
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
pub(crate) fn usage_error(cli: &Cli, message: &str) -> Outcome {
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

/// Reports a failure that ends the command before it did anything: exit 1.
pub(crate) fn failed(cli: &Cli, message: &str) -> Outcome {
    if cli.json {
        print_json(
            Outcome::Failed.verdict(),
            json!({ "error": { "message": message } }),
        );
    } else {
        eprintln!("error: {message}");
    }
    Outcome::Failed
}

/// Reports that a signal stopped the command: exit 130 (SIGINT) or 143 (SIGTERM).
pub(crate) fn interrupted(cli: &Cli, signal: ShutdownSignal, what: &str) -> Outcome {
    let outcome = Outcome::Interrupted(signal.exit_status());
    let message = format!("interrupted by {signal}: {what}");
    if cli.json {
        print_json(
            outcome.verdict(),
            json!({ "signal": signal.name(), "error": { "message": message } }),
        );
    } else {
        eprintln!("{message}");
    }
    outcome
}
