//! `verify [RUN…|--latest] [--component NAME] [--storage TARGET] [--max-age DURATION]`:
//! re-reads stored runs through the checksum check (stored and plain digests) and each
//! component's provider verifier, and records the result beside the run
//! (`runs/<id>/verifications/`), where the catalog reads it: a run that fails is no longer
//! "verified", so restores and retention's always-rules stop counting on it.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use stoa_backup::core::{
    Catalog, ChecksumVerifier, Keyring, RunFilter, RunId, RunSummary, RunVerification, Verifier,
};
use stoa_backup::signals;

use super::{failed, interrupted, keys, load_config, print_json, sinks, usage_error};
use crate::cli::Cli;
use crate::config::duration::HumanDuration;
use crate::config::model::{Config, Target};
use crate::outcome::Outcome;
use crate::sources;

/// What `verify` was asked.
pub struct Request<'a> {
    /// Runs by id (empty: every complete run of the selected targets).
    pub runs: &'a [String],
    /// `--latest`: only the newest complete run of each component.
    pub latest: bool,
    /// `--component`.
    pub component: Option<&'a str>,
    /// `--storage`.
    pub storage: Option<&'a str>,
    /// `--max-age`.
    pub max_age: Option<&'a HumanDuration>,
}

/// One run's result, as `--json` shows it.
#[derive(Debug, Serialize)]
struct RunChecked {
    storage: String,
    run_id: String,
    components: Vec<String>,
    /// `verified`, `failed` (a check failed: recorded), `skipped` (verified recently
    /// enough), or `error` (could not be checked: nothing recorded).
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    verified_at: Option<DateTime<Utc>>,
    checks: Vec<CheckView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct CheckView {
    artifact: String,
    verifier: String,
    ok: bool,
    detail: String,
}

impl RunChecked {
    fn new(target: &Target, run: &RunSummary, status: &'static str) -> Self {
        RunChecked {
            storage: target.name.clone(),
            run_id: run.run_id.as_str().to_string(),
            components: run.components.clone(),
            status,
            verified_at: run.verified_at,
            checks: Vec::new(),
            error: None,
        }
    }

    fn checked(target: &Target, run: &RunSummary, v: RunVerification) -> Self {
        let mut r = RunChecked::new(target, run, if v.ok { "verified" } else { "failed" });
        r.verified_at = v.ok.then_some(v.at);
        r.checks = v
            .results
            .into_iter()
            .map(|(key, record)| CheckView {
                artifact: key.to_string(),
                verifier: record.verifier,
                ok: record.ok,
                detail: record.detail,
            })
            .collect();
        r
    }
}

/// Verifies the selected runs.
pub async fn run(cli: &Cli, req: Request<'_>) -> Outcome {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let targets = match select_targets(&config, req.component, req.storage) {
        Ok(t) => t,
        Err(e) => return usage_error(cli, &e),
    };
    let mut wanted: Vec<RunId> = Vec::new();
    for id in req.runs {
        match RunId::parse(id) {
            Ok(id) => wanted.push(id),
            Err(e) => return usage_error(cli, &format!("run {id:?}: {e}")),
        }
    }
    let keyring = match keys::keyring(&config) {
        Ok(k) => k,
        Err(e) => return failed(cli, &e),
    };
    let shutdown = match signals::listen() {
        Ok(s) => s,
        Err(e) => return failed(cli, &e.to_string()),
    };
    let filter = RunFilter {
        component: req.component.map(str::to_string),
        ..RunFilter::default()
    };
    let now = Utc::now();
    let fresh_after = req.max_age.map(|a| now - a.chrono());

    let mut results: Vec<RunChecked> = Vec::new();
    let mut listing_errors: Vec<String> = Vec::new();
    let mut found: BTreeSet<RunId> = BTreeSet::new();
    for target in targets {
        let sink = match sinks::open(target).await {
            Ok(s) => s,
            Err(e) => {
                listing_errors.push(format!("storage target {}: {e}", target.name));
                continue;
            }
        };
        let catalog = Catalog::new(sink);
        let runs = match catalog.list_runs(&filter).await {
            Ok(r) => r,
            Err(e) => {
                listing_errors.push(format!("cannot list {}: {e}", target.name));
                continue;
            }
        };
        for run in select_runs(&runs, &wanted, req.latest) {
            found.insert(run.run_id.clone());
            if shutdown.signal().is_some() {
                break;
            }
            if let (Some(after), Some(at)) = (fresh_after, run.verified_at) {
                if at > after {
                    results.push(RunChecked::new(target, run, "skipped"));
                    continue;
                }
            }
            results.push(verify_one(&config, &catalog, target, run, &keyring).await);
        }
    }
    if let Some(signal) = shutdown.signal() {
        return interrupted(
            cli,
            signal,
            "verification stopped; the runs verified before it are recorded",
        );
    }
    for id in &wanted {
        if !found.contains(id) {
            listing_errors.push(format!(
                "no complete run {id} in the selected storage targets (`stoa-backup list` shows them)"
            ));
        }
    }

    let failures = results.iter().filter(|r| r.status == "failed").count();
    let errors = results.iter().filter(|r| r.status == "error").count() + listing_errors.len();
    let passed = results
        .iter()
        .filter(|r| matches!(r.status, "verified" | "skipped"))
        .count();
    let outcome = if failures > 0 {
        Outcome::VerificationFailed
    } else if errors == 0 {
        Outcome::Success
    } else if passed > 0 {
        Outcome::Partial
    } else {
        Outcome::Failed
    };
    if cli.json {
        #[derive(Serialize)]
        struct Verified<'a> {
            runs: &'a [RunChecked],
            errors: &'a [String],
        }
        print_json(
            outcome.verdict(),
            Verified {
                runs: &results,
                errors: &listing_errors,
            },
        );
    } else {
        print_table(&results);
        for e in &listing_errors {
            eprintln!("error: {e}");
        }
        let skipped = results.iter().filter(|r| r.status == "skipped").count();
        println!(
            "{} run(s): {} verified, {failures} failed, {skipped} skipped (verified within --max-age), {errors} error(s)",
            results.len(),
            results.iter().filter(|r| r.status == "verified").count(),
        );
    }
    outcome
}

/// The targets `--component` / `--storage` select (every target without them).
fn select_targets<'c>(
    config: &'c Config,
    component: Option<&str>,
    storage: Option<&str>,
) -> Result<Vec<&'c Target>, String> {
    if let Some(name) = storage {
        return config
            .target(name)
            .map(|t| vec![t])
            .ok_or_else(|| format!("no storage target is named `{name}` in {}", config.file));
    }
    if let Some(c) = component.and_then(|name| config.component(name)) {
        return Ok(vec![config
            .target(&c.storage)
            .expect("checked when the configuration loaded")]);
    }
    // A component no longer configured may still have runs: look everywhere.
    Ok(config.storage.iter().collect())
}

/// The runs to check of one target's complete runs (newest first).
fn select_runs<'r>(runs: &'r [RunSummary], wanted: &[RunId], latest: bool) -> Vec<&'r RunSummary> {
    if !wanted.is_empty() {
        return runs.iter().filter(|r| wanted.contains(&r.run_id)).collect();
    }
    if !latest {
        return runs.iter().collect();
    }
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    runs.iter()
        .filter(|r| {
            // Newest first: a run is picked when it is the first to hold one of its
            // components.
            let mut newest_of_any = false;
            for c in &r.components {
                newest_of_any |= seen.insert(c.as_str());
            }
            newest_of_any
        })
        .collect()
}

/// Verifies one run with the checksum check (stored and decoded digests) and the provider
/// verifier of each configured component it holds, and records the result.
async fn verify_one(
    config: &Config,
    catalog: &Catalog,
    target: &Target,
    run: &RunSummary,
    keyring: &Keyring,
) -> RunChecked {
    let mut verifiers: Vec<Arc<dyn Verifier>> = vec![Arc::new(ChecksumVerifier::deep())];
    let mut kinds = Vec::new();
    for name in &run.components {
        if let Some(c) = config.component(name) {
            if let Some(v) = sources::provider_verifier(&c.settings) {
                // One verifier per provider type: it picks its artifacts itself.
                if !kinds.contains(&c.kind()) {
                    kinds.push(c.kind());
                    verifiers.push(v);
                }
            }
        }
    }
    tracing::info!(run = %run.run_id, storage = %target.name, "verifying");
    match catalog.verify_run(&run.run_id, &verifiers, keyring).await {
        Ok(v) => RunChecked::checked(target, run, v),
        Err(e) => {
            let mut r = RunChecked::new(target, run, "error");
            r.error = Some(e.to_string());
            r
        }
    }
}

fn print_table(results: &[RunChecked]) {
    if results.is_empty() {
        println!("no run to verify");
        return;
    }
    println!(
        "{:<14} {:<26} {:<9} {:<20}  components",
        "storage", "run", "result", "verified at (UTC)"
    );
    for r in results {
        println!(
            "{:<14} {:<26} {:<9} {:<20}  {}",
            r.storage,
            r.run_id,
            r.status,
            r.verified_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into()),
            r.components.join(", ")
        );
        for c in r.checks.iter().filter(|c| !c.ok) {
            println!("  FAILED {} by {}: {}", c.artifact, c.verifier, c.detail);
        }
        if let Some(e) = &r.error {
            println!("  error: {e}");
        }
    }
}
