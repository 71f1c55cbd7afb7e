//! `restore COMPONENT [--run ID | --at TIME] [--from TARGET] [--to TARGET] [--existing …]
//! [--apply]`: the library's restore driver over one component's run. Without `--apply` it
//! prints the plan (what would be created, updated, skipped, in conflict; the keys needed)
//! and writes nothing.
//!
//! The run is looked for in the component's storage target and its `replicate_to` targets
//! (or only in `--from`): the newest complete, verified one across them, or the one named
//! wherever it is. A target that cannot be opened or listed (a region that is down) is
//! passed over and named; the output says which target the run comes from.

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
    /// `--from`.
    pub from: Option<&'a str>,
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
    /// The storage target the run is read from.
    origin: &'a str,
    /// The targets looked in that could not be read, each with why.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    unreachable: &'a [String],
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
    // Where to look: --from, else the component's target and its replicas.
    let names: Vec<&str> = match req.from {
        Some(from) if config.target(from).is_none() => {
            return usage_error(cli, &sinks::unknown_from(&config, from));
        }
        Some(from) => vec![from],
        None => component.targets().collect(),
    };
    let (targets, unopened) = sinks::open_all(&config, &names).await;
    if unopened.len() == names.len() {
        return failed(cli, &sinks::none_opened(&component.name, &unopened));
    }

    // The run: the one named, else the newest complete and verified one (at or before --at).
    let selector = match (run_id, req.at) {
        (Some(id), _) => PointSelector::Run(id),
        (None, Some(at)) => PointSelector::AtOrBefore(at),
        (None, None) => PointSelector::AtOrBefore(Utc::now()),
    };
    let query = PointQuery::latest([component.name.as_str()]).selector(selector);
    let catalogs: Vec<(&str, Catalog)> = targets
        .iter()
        .map(|(n, s)| (n.as_str(), Catalog::new(s.clone())))
        .collect();
    let picked = if names.len() == 1 {
        RecoveryPoint::find(&catalogs[0].1, &query).await
    } else {
        let refs: Vec<(&str, &Catalog)> = catalogs.iter().map(|(n, c)| (*n, c)).collect();
        RecoveryPoint::find_across(&refs, &query).await
    };
    let picked = match picked {
        Ok(p) => p,
        Err(e) => {
            let mut message = e.to_string();
            if !unopened.is_empty() {
                message.push_str(&format!(
                    " (looked in {}; not opened: {})",
                    names.join(", "),
                    unopened.join("; ")
                ));
            }
            return failed(cli, &message);
        }
    };
    // The targets that did not open or could not be listed (a region that is down).
    let unreachable = picked.unreachable.clone();
    let run_id = picked
        .run_of(&component.name)
        .expect("a recovery point covers its components")
        .clone();
    let origin = picked
        .origin_of(&component.name)
        .unwrap_or(&targets[0].0)
        .to_string();

    let existing = ExistingDataPolicy::from(req.existing);
    let restorer = match restorers::restorer(component, &to, existing).await {
        Ok(r) => r,
        Err(e) => return failed(cli, &e.or_component(component.name.clone()).to_string()),
    };
    let mut builder = Restore::builder().sink_named(targets[0].0.clone(), targets[0].1.clone());
    for (name, sink) in &targets[1..] {
        builder = builder.replica(name.clone(), sink.clone());
    }
    let driver = builder
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
    for u in &unreachable {
        tracing::warn!(component = %component.name, "storage target {u}: looked for the run in the others");
    }
    tracing::info!(component = %component.name, run = %run_id, origin = %origin, "planning the restore");
    let plan = match driver.plan_run_from(&run_id, Some(&origin)).await {
        Ok(p) => p,
        Err(e) => return ended(cli, &shutdown, &e.to_string()),
    };
    let doc = |applied, restored, error| Restored {
        component: &component.name,
        storage: &component.storage,
        origin: &plan.origin,
        unreachable: &unreachable,
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
            warn_unreachable(&unreachable, &plan.origin);
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
                warn_unreachable(&unreachable, &plan.origin);
                for c in &restored.components {
                    println!(
                        "restored {} from run {} (storage target {}) in {:.1} s: {} created, {} updated, {} skipped",
                        c.component,
                        restored.run_id,
                        restored.origin,
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

/// The targets that could not be read, on stderr, and where the run comes from instead.
fn warn_unreachable(unreachable: &[String], origin: &str) {
    for u in unreachable {
        eprintln!("warning: storage target {u}");
    }
    if !unreachable.is_empty() {
        eprintln!("warning: the run is read from storage target {origin}");
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
