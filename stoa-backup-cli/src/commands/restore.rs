//! `restore COMPONENT [--run ID | --at TIME] [--to TARGET] [--existing …] [--apply]`: the
//! library's restore driver over one component's run. Without `--apply` it prints the plan
//! (what would be created, updated, skipped, in conflict; the keys needed) and writes
//! nothing.

use chrono::{DateTime, Utc};
use serde::Serialize;
use stoa_backup::core::{
    Catalog, ExistingDataPolicy, PointQuery, PointSelector, RecoveryPoint, Restore, RestorePlan,
    RunId, RunRestored,
};
use stoa_backup::signals::{self, Shutdown};

use super::{failed, interrupted, keys, load_config, print_json, sinks, usage_error};
use crate::cli::{Cli, Existing};
use crate::outcome::Outcome;
use crate::progress::{self, ExpectedSizes};
use crate::restorers::{self, RestoreTo};

/// What `restore` was asked.
pub struct Request<'a> {
    /// The component.
    pub component: &'a str,
    /// `--run`.
    pub run: Option<&'a str>,
    /// `--at`.
    pub at: Option<DateTime<Utc>>,
    /// `--to`.
    pub to: Option<&'a str>,
    /// `--existing`.
    pub existing: Existing,
    /// `--apply`.
    pub apply: bool,
}

impl From<Existing> for ExistingDataPolicy {
    fn from(e: Existing) -> Self {
        match e {
            Existing::Fail => ExistingDataPolicy::Fail,
            Existing::Skip => ExistingDataPolicy::Skip,
            Existing::Overwrite => ExistingDataPolicy::Overwrite,
        }
    }
}

/// The JSON document.
#[derive(Serialize)]
struct Restored<'a> {
    component: &'a str,
    storage: &'a str,
    run_id: &'a str,
    applied: bool,
    plan: &'a RestorePlan,
    #[serde(skip_serializing_if = "Option::is_none")]
    restored: Option<RunRestored>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Plans (and with `--apply` runs) the restore of one component.
pub async fn run(cli: &Cli, req: Request<'_>) -> Outcome {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let Some(component) = config.component(req.component) else {
        let known: Vec<&str> = config.components.iter().map(|c| c.name.as_str()).collect();
        return usage_error(
            cli,
            &format!(
                "no component is named `{}` in {}: the components are {}",
                req.component,
                config.file,
                known.join(", ")
            ),
        );
    };
    let to = match RestoreTo::parse(component, req.to) {
        Ok(t) => t,
        Err(e) => return usage_error(cli, &e),
    };
    let run_id = match req.run.map(RunId::parse).transpose() {
        Ok(r) => r,
        Err(e) => return usage_error(cli, &format!("--run: {e}")),
    };
    let shutdown = match signals::listen() {
        Ok(s) => s,
        Err(e) => return failed(cli, &e.to_string()),
    };
    let keyring = match keys::keyring(&config) {
        Ok(k) => k,
        Err(e) => return failed(cli, &e),
    };
    let target = config
        .target(&component.storage)
        .expect("checked when the configuration loaded");
    let sink = match sinks::open(target).await {
        Ok(s) => s,
        Err(e) => return failed(cli, &format!("storage target {}: {e}", target.name)),
    };
    let catalog = Catalog::new(sink.clone());

    // The run: the one named, else the newest complete and verified one (at or before --at).
    let selector = match (run_id, req.at) {
        (Some(id), _) => PointSelector::Run(id),
        (None, Some(at)) => PointSelector::AtOrBefore(at),
        (None, None) => PointSelector::AtOrBefore(Utc::now()),
    };
    let query = PointQuery::latest([component.name.as_str()]).selector(selector);
    let picked = match RecoveryPoint::find(&catalog, &query).await {
        Ok(p) => p,
        Err(e) => return failed(cli, &e.to_string()),
    };
    let run_id = picked
        .run_of(&component.name)
        .expect("a recovery point covers its components")
        .clone();
    let manifest = match catalog.read_manifest(&run_id).await {
        Ok(m) => m,
        Err(e) => return failed(cli, &e.to_string()),
    };

    let existing = ExistingDataPolicy::from(req.existing);
    let restorer = match restorers::restorer(component, &to, existing).await {
        Ok(r) => r,
        Err(e) => return failed(cli, &e.or_component(component.name.clone()).to_string()),
    };
    let driver = Restore::builder()
        .sink(sink)
        .keyring(keyring)
        .restorer(restorer)
        .observer(progress::observer(cli, ExpectedSizes::none()))
        .cancel(shutdown.token())
        .existing(existing)
        .build();
    let driver = match driver {
        Ok(d) => d,
        Err(e) => return failed(cli, &e.to_string()),
    };
    tracing::info!(component = %component.name, run = %run_id, "planning the restore");
    let plan = match driver.plan(&manifest).await {
        Ok(p) => p,
        Err(e) => return ended(cli, &shutdown, &e.to_string()),
    };
    let doc = |applied, restored, error| Restored {
        component: &component.name,
        storage: &component.storage,
        run_id: run_id.as_str(),
        applied,
        plan: &plan,
        restored,
        error,
    };
    if !req.apply {
        if cli.json {
            print_json("planned", doc(false, None, None));
        } else {
            print!("{}", plan.table());
            print_notes(&plan);
            println!("\nThis is the plan: nothing was written. Run again with --apply to restore.");
        }
        return Outcome::Success;
    }
    tracing::info!(component = %component.name, run = %run_id, "restoring");
    match driver.apply(&plan).await {
        Ok(restored) => {
            if cli.json {
                print_json(
                    Outcome::Success.verdict(),
                    doc(true, Some(restored.clone()), None),
                );
            } else {
                print!("{}", plan.table());
                for c in &restored.components {
                    println!(
                        "restored {} from run {} in {:.1} s: {} created, {} updated, {} skipped",
                        c.component,
                        restored.run_id,
                        c.duration_ms as f64 / 1000.0,
                        c.report.created,
                        c.report.updated,
                        c.report.skipped
                    );
                    for note in &c.report.notes {
                        println!("  note: {note}");
                    }
                }
            }
            Outcome::Success
        }
        Err(e) => {
            if let Some(signal) = shutdown.signal() {
                return interrupted(cli, signal, "the restore was cancelled");
            }
            if cli.json {
                print_json(
                    Outcome::Failed.verdict(),
                    doc(true, None, Some(e.to_string())),
                );
            } else {
                eprintln!("error: {e}");
            }
            Outcome::Failed
        }
    }
}

fn print_notes(plan: &RestorePlan) {
    for c in &plan.components {
        for note in &c.report.notes {
            println!("  {}: {note}", c.component);
        }
    }
}

/// A planning error, or the signal that cancelled the planning.
fn ended(cli: &Cli, shutdown: &Shutdown, message: &str) -> Outcome {
    match shutdown.signal() {
        Some(signal) => interrupted(cli, signal, "the restore was cancelled before it wrote"),
        None => failed(cli, message),
    }
}
