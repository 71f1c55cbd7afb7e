//! `drill [COMPONENT…]`: the library's recovery drill. The newest complete, verified runs
//! are restored into scratch places (PostgreSQL a scratch database, Keycloak a scratch
//! realm, Helm values a scratch directory), the checks run against them (the row counts of
//! each scratch database against its backup), the scratch places are removed, and the time
//! each step took is reported. Other component types restore into their live servers only
//! and are not drilled.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use stoa_backup::core::recovery::{Checklist, CleanUp, DrillReport, Recovery, Step, Verdict};
use stoa_backup::core::{Error, Keyring, Observer, Result as CoreResult, Sink};
use stoa_backup::prelude::HelmValuesRestorer;
use stoa_backup::providers::keycloak::ScratchRealm;
use stoa_backup::providers::postgres::ScratchDatabase;
use stoa_backup::signals::{self, Shutdown};

use super::recover::{by_target, row_counts_check, select_components, TargetGroup};
use super::{failed, interrupted, keys, load_config, print_json, sinks, usage_error};
use crate::cli::Cli;
use crate::config::model::{Component, Settings};
use crate::outcome::Outcome;
use crate::progress::{self, ExpectedSizes};
use crate::restorers;

/// Why a component cannot be drilled, or `None` when it can.
fn not_drillable(c: &Component) -> Option<String> {
    match &c.settings {
        Settings::Postgres(_) | Settings::Helm(_) => None,
        // The library's scratch realm restores the component named `keycloak` only.
        Settings::Keycloak(_) if c.name == "keycloak" => None,
        Settings::Keycloak(_) => Some(format!(
            "component `{}` (keycloak) is not named `keycloak`: the scratch realm of a drill restores only the component named so",
            c.name
        )),
        _ => Some(format!(
            "component `{}` ({}) restores into its live server only: drills restore postgres into a scratch database, keycloak into a scratch realm and helm into a scratch directory",
            c.name,
            c.kind()
        )),
    }
}

/// One storage target's drill, as `--json` shows it.
#[derive(Serialize)]
struct TargetDrill {
    storage: String,
    components: Vec<String>,
    /// Per component, the scratch place it was restored into.
    scratch: Vec<Scratch>,
    /// `passed`, `checks_failed` or `failed`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<DrillReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Scratch {
    component: String,
    /// `database`, `realm` or `directory`.
    kind: &'static str,
    name: String,
}

/// A component skipped, and why.
#[derive(Serialize)]
struct Skipped {
    component: String,
    reason: String,
}

/// Drills `names` (every component that can be drilled when empty).
pub async fn run(cli: &Cli, names: &[String]) -> Outcome {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let selected = match select_components(&config, names) {
        Ok(s) => s,
        Err(e) => return usage_error(cli, &e),
    };
    let mut drilled = Vec::new();
    let mut skipped = Vec::new();
    for c in selected {
        match not_drillable(c) {
            None => drilled.push(c),
            // A component named on the command line must be drilled.
            Some(reason) if !names.is_empty() => return usage_error(cli, &reason),
            Some(reason) => skipped.push(Skipped {
                component: c.name.clone(),
                reason,
            }),
        }
    }
    if drilled.is_empty() {
        return usage_error(
            cli,
            &format!(
                "no component of {} can be drilled: drills restore postgres into a scratch database, keycloak into a scratch realm and helm into a scratch directory",
                config.file
            ),
        );
    }
    let shutdown = match signals::listen() {
        Ok(s) => s,
        Err(e) => return failed(cli, &e.to_string()),
    };
    let keyring = match keys::keyring(&config) {
        Ok(k) => k,
        Err(e) => return failed(cli, &e),
    };
    // Scratch places are independent of each other: no order to keep across targets.
    let mut results = Vec::new();
    for group in by_target(&drilled) {
        if shutdown.signal().is_some() {
            break;
        }
        let target = config
            .target(group.storage)
            .expect("checked when the configuration loaded");
        let mut result = TargetDrill {
            storage: group.storage.to_string(),
            components: group.names().iter().map(|n| n.to_string()).collect(),
            scratch: Vec::new(),
            status: "failed",
            report: None,
            error: None,
        };
        let sink = match sinks::open(target).await {
            Ok(s) => s,
            Err(e) => {
                result.error = Some(format!("storage target {}: {e}", target.name));
                results.push(result);
                continue;
            }
        };
        match build(
            &group,
            sink,
            &keyring,
            &shutdown,
            &mut result.scratch,
            progress::observer(cli, ExpectedSizes::none()),
        ) {
            Ok(recovery) => {
                tracing::info!(storage = %group.storage, components = ?group.names(), "drilling");
                match recovery.drill().await {
                    Ok(report) => {
                        result.status = status_of(&report);
                        result.report = Some(report);
                    }
                    Err(e) => result.error = Some(e.to_string()),
                }
            }
            Err(e) => result.error = Some(e.to_string()),
        }
        results.push(result);
    }
    if let Some(signal) = shutdown.signal() {
        return interrupted(
            cli,
            signal,
            "the drill was cancelled; the scratch places of the steps that ran were removed",
        );
    }

    let outcome = if results.iter().any(|r| r.status == "checks_failed") {
        Outcome::VerificationFailed
    } else {
        Outcome::of(results.iter().map(|r| match r.status {
            "passed" => Outcome::Success,
            _ => Outcome::Failed,
        }))
    };
    if cli.json {
        #[derive(Serialize)]
        struct Drilled<'a> {
            drills: &'a [TargetDrill],
            skipped: &'a [Skipped],
        }
        print_json(
            outcome.verdict(),
            Drilled {
                drills: &results,
                skipped: &skipped,
            },
        );
    } else {
        print_human(&results, &skipped);
    }
    outcome
}

/// `passed`; `checks_failed` when the restores ran, the scratch places were removed and a
/// check failed; else `failed` (a step stopped the drill, or a clean-up failed).
fn status_of(report: &DrillReport) -> &'static str {
    if report.verdict == Verdict::Passed {
        return "passed";
    }
    let cleaned = report.cleaned_up.iter().all(|c| c.ok);
    let checks_failed = report
        .recovery
        .as_ref()
        .and_then(|r| r.checks.as_ref())
        .is_some_and(|c| c.verdict == Verdict::Failed);
    if checks_failed && cleaned && report.error.is_none() {
        "checks_failed"
    } else {
        "failed"
    }
}

/// The drill of one storage target's components: a scratch step per component (each with
/// its clean-up), then the row counts of each scratch database against its backup.
fn build(
    group: &TargetGroup<'_>,
    sink: Arc<dyn Sink>,
    keyring: &Keyring,
    shutdown: &Shutdown,
    scratch: &mut Vec<Scratch>,
    observer: Arc<dyn Observer>,
) -> CoreResult<Recovery> {
    let stamp = format!(
        "{}_{:x}",
        Utc::now().format("%Y%m%d%H%M%S"),
        std::process::id()
    );
    let mut builder = Recovery::builder()
        .sink(sink)
        .keyring(keyring.clone())
        .observer(observer)
        .cancel(shutdown.token());
    let mut checks = Checklist::new();
    for c in &group.components {
        let step = match &c.settings {
            Settings::Postgres(s) => {
                let database =
                    ScratchDatabase::new(s.conn.clone(), scratch_database_name(&c.name, &stamp))?;
                let backed_up = restorers::postgres_database(s);
                checks = checks.check(row_counts_check(
                    &c.name,
                    &s.conn,
                    database.name(),
                    &backed_up,
                ));
                scratch.push(Scratch {
                    component: c.name.clone(),
                    kind: "database",
                    name: database.name().to_string(),
                });
                database.step(restorers::postgres_restorer(c, s))
            }
            Settings::Keycloak(s) => {
                let realm = ScratchRealm::new(
                    s.conn.clone(),
                    format!("stoa-drill-{}", stamp.replace('_', "-")),
                )?;
                scratch.push(Scratch {
                    component: c.name.clone(),
                    kind: "realm",
                    name: realm.realm().to_string(),
                });
                realm.step()?
            }
            Settings::Helm(_) => {
                let dir = ScratchDirectory::new(
                    std::env::temp_dir().join(format!("stoa-drill-{stamp}-{}", c.name)),
                )?;
                scratch.push(Scratch {
                    component: c.name.clone(),
                    kind: "directory",
                    name: dir.0.display().to_string(),
                });
                Step::restore(
                    HelmValuesRestorer::new(&dir.0)
                        .component(&c.name)
                        .print_command(false),
                )
                .clean_up(dir)
            }
            _ => unreachable!("only drillable components are drilled"),
        };
        builder = builder.step(step);
    }
    if !checks.is_empty() {
        builder = builder.checks(checks);
    }
    builder.build()
}

/// `stoa_drill_<time>_<pid>_<component>`, lower case, within PostgreSQL's 63 bytes.
fn scratch_database_name(component: &str, stamp: &str) -> String {
    let component: String = component
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("stoa_drill_{stamp}_{component}");
    name.truncate(63);
    name
}

/// A directory a drill writes Helm values into and removes afterwards; it must not exist
/// before (so the clean-up removes only what the drill wrote).
#[derive(Debug)]
struct ScratchDirectory(PathBuf);

impl ScratchDirectory {
    fn new(path: PathBuf) -> CoreResult<Self> {
        if path.exists() {
            return Err(Error::config(format!(
                "the drill's scratch directory {} exists already",
                path.display()
            ))
            .with_operation("drill")
            .with_hint("remove it, or drill again in a second"));
        }
        Ok(ScratchDirectory(path))
    }
}

impl CleanUp for ScratchDirectory {
    // `CleanUp` is an `async_trait` trait: its method spelled out, as the macro writes it.
    fn clean_up<'life0, 'async_trait>(
        &'life0 self,
    ) -> Pin<Box<dyn Future<Output = CoreResult<String>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            match tokio::fs::remove_dir_all(&self.0).await {
                Ok(()) => Ok(format!("removed directory {}", self.0.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(format!(
                    "nothing to remove: {} was not written",
                    self.0.display()
                )),
                Err(e) => Err(Error::from_io(
                    e,
                    format!("cannot remove the scratch directory {}", self.0.display()),
                )
                .with_operation("drill clean-up")),
            }
        })
    }
}

fn print_human(results: &[TargetDrill], skipped: &[Skipped]) {
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!(
            "storage target {}: drill of {}",
            r.storage,
            r.components.join(", ")
        );
        for s in &r.scratch {
            println!("  {} into scratch {} {}", s.component, s.kind, s.name);
        }
        if let Some(report) = &r.report {
            print!("{}", report.table());
        }
        if let Some(e) = &r.error {
            eprintln!("error: {e}");
        }
    }
    for s in skipped {
        println!("not drilled: {}", s.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_database_names_are_plain_and_short() {
        assert_eq!(
            scratch_database_name("App-DB", "20260101020000_1f"),
            "stoa_drill_20260101020000_1f_app_db"
        );
        let long = scratch_database_name(&"x".repeat(80), "20260101020000_1f");
        assert_eq!(long.len(), 63);
        assert!(long.starts_with("stoa_drill_20260101020000_1f_x"));
    }

    #[test]
    fn a_scratch_directory_must_not_exist_and_is_removed() {
        let existing = std::env::temp_dir();
        assert!(ScratchDirectory::new(existing).is_err());
        let path = std::env::temp_dir().join(format!("stoa-drill-test-{:x}", std::process::id()));
        let dir = ScratchDirectory::new(path.clone()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let nothing = rt.block_on(dir.clean_up()).unwrap();
        assert!(nothing.contains("nothing to remove"), "{nothing}");
        std::fs::create_dir_all(path.join("ns")).unwrap();
        std::fs::write(path.join("ns/app.values.yaml"), "a: 1\n").unwrap();
        let removed = rt.block_on(dir.clean_up()).unwrap();
        assert!(removed.contains("removed"), "{removed}");
        assert!(!path.exists());
    }
}
