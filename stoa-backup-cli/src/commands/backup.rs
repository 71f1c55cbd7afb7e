//! `backup [COMPONENT…]`: one pipeline per component into its storage target, each complete,
//! verified run copied to the component's `replicate_to` targets, retention applied after
//! each run by the target's rules, then the catalog. A copy that fails leaves the backup
//! complete on its target and makes the command's result partial (exit 3).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use stoa_backup::core::{
    format_runs_table, AgeEncryption, ComponentRules, Keyring, RunFilter, RunReport, RunStatus,
    Sink,
};
use stoa_backup::signals::{self, Shutdown};

use super::list::{self, TargetRuns};
use super::pipelines::{component_pipeline, Shared};
use super::{failed, keys, load_config, print_json, sinks, usage_error};
use crate::cli::Cli;
use crate::config::model::{Component, Config};
use crate::outcome::Outcome;
use crate::progress;

/// What became of one component.
#[derive(Debug, Serialize)]
struct ComponentResult {
    component: String,
    storage: String,
    /// `complete`, `partial`, `failed`, or `not_run` (interrupted before its turn).
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
    artifacts: Vec<ArtifactView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention: Option<RetentionView>,
    /// The copies to the component's `replicate_to` targets, in their order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    replication: Vec<ReplicaView>,
    errors: Vec<String>,
    #[serde(skip)]
    outcome: Outcome,
}

#[derive(Debug, Serialize)]
struct ArtifactView {
    key: String,
    plain_size: u64,
    stored_size: u64,
    stored_sha256: String,
    verified: bool,
    verifications: Vec<String>,
}

/// The copy of the run to one replica target.
#[derive(Debug, Serialize)]
struct ReplicaView {
    target: String,
    /// `copied`, `completed`, `already_present`, or `failed`.
    outcome: &'static str,
    artifacts_copied: usize,
    bytes_copied: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl ReplicaView {
    fn failed(target: &str, error: String) -> Self {
        ReplicaView {
            target: target.to_string(),
            outcome: "failed",
            artifacts_copied: 0,
            bytes_copied: 0,
            error: Some(error),
        }
    }
}

#[derive(Debug, Serialize)]
struct RetentionView {
    kept: usize,
    removed: Vec<String>,
}

impl ComponentResult {
    fn new(c: &Component) -> Self {
        ComponentResult {
            component: c.name.clone(),
            storage: c.storage.clone(),
            status: "failed",
            run_id: None,
            artifacts: Vec::new(),
            retention: None,
            replication: Vec::new(),
            errors: Vec::new(),
            outcome: Outcome::Failed,
        }
    }

    fn failed(c: &Component, error: String) -> Self {
        let mut r = ComponentResult::new(c);
        r.errors.push(error);
        r
    }

    /// What `report` says; `unopened` are the replica targets that could not be opened (no
    /// copy was tried), with why.
    fn from_report(c: &Component, report: RunReport, unopened: Vec<(String, String)>) -> Self {
        let mut r = ComponentResult::new(c);
        r.run_id = Some(report.run_id.as_str().to_string());
        r.artifacts = report
            .manifest
            .artifacts
            .iter()
            .map(|a| ArtifactView {
                key: a.key.to_string(),
                plain_size: a.plain_size,
                stored_size: a.stored_size,
                stored_sha256: a.stored_sha256.clone(),
                verified: a.is_verified(),
                verifications: a
                    .verification
                    .iter()
                    .map(|v| format!("{}: {}", v.verifier, v.detail))
                    .collect(),
            })
            .collect();
        r.retention = report.retention.as_ref().map(|plan| RetentionView {
            kept: plan.kept().count(),
            removed: report
                .removed_runs
                .iter()
                .map(|id| id.as_str().to_string())
                .collect(),
        });
        r.errors = report
            .manifest
            .failures
            .iter()
            .map(|f| f.error.clone())
            .collect();
        (r.status, r.outcome) = match report.status {
            RunStatus::Complete => ("complete", Outcome::Success),
            RunStatus::Partial => ("partial", Outcome::Partial),
            _ => ("failed", Outcome::Failed),
        };
        if let Some(e) = &report.retention_error {
            // The backup is stored; old runs were not (all) pruned: not a plain success.
            r.errors.push(e.to_string());
            r.outcome = Outcome::Partial;
        }
        r.replication = report
            .replication
            .iter()
            .map(|rep| match (&rep.copy, &rep.error) {
                (_, Some(e)) => ReplicaView::failed(&rep.target, e.to_string()),
                (Some(copy), None) => ReplicaView {
                    target: rep.target.clone(),
                    outcome: copy.outcome.as_str(),
                    artifacts_copied: copy.artifacts_copied,
                    bytes_copied: copy.bytes_copied,
                    error: None,
                },
                (None, None) => ReplicaView::failed(&rep.target, "no copy was made".into()),
            })
            .collect();
        if report.is_complete() {
            for (target, why) in unopened {
                let error = format!("storage target {target} cannot be opened: {why}");
                r.replication.push(ReplicaView::failed(&target, error));
            }
        }
        // Keep the order of `replicate_to`.
        r.replication.sort_by_key(|v| {
            c.replicate_to
                .iter()
                .position(|t| *t == v.target)
                .unwrap_or(usize::MAX)
        });
        for v in r.replication.iter().filter(|v| v.outcome == "failed") {
            // The backup is stored and complete; a replica lacks it: not a plain success.
            r.errors.push(format!(
                "replication to {}: {}",
                v.target,
                v.error.as_deref().unwrap_or_default()
            ));
            r.outcome = Outcome::Partial;
        }
        r
    }
}

/// Backs up `names` (every component when empty).
pub async fn run(cli: &Cli, names: &[String]) -> Outcome {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let selected: Vec<&Component> = if names.is_empty() {
        config.components.iter().collect()
    } else {
        let mut picked = Vec::new();
        for n in names {
            match config.component(n) {
                Some(c) => picked.push(c),
                None => {
                    let known: Vec<&str> =
                        config.components.iter().map(|c| c.name.as_str()).collect();
                    return usage_error(
                        cli,
                        &format!(
                            "no component is named `{n}` in {}: the components are {}",
                            config.file,
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        picked
    };
    let shutdown = match signals::listen() {
        Ok(s) => s,
        Err(e) => return failed(cli, &e.to_string()),
    };
    let encryption = match keys::encryption(&config) {
        Ok(e) => e,
        Err(e) => return failed(cli, &e),
    };
    let keyring = match keys::keyring(&config) {
        Ok(k) => k,
        Err(e) => return failed(cli, &e),
    };

    let mut opened: BTreeMap<String, Result<Arc<dyn Sink>, String>> = BTreeMap::new();
    let mut results = Vec::new();
    for c in &selected {
        if shutdown.signal().is_some() {
            let mut r = ComponentResult::new(c);
            r.status = "not_run";
            results.push(r);
            continue;
        }
        for name in c.targets() {
            if !opened.contains_key(name) {
                let target = config
                    .target(name)
                    .expect("checked when the configuration loaded");
                let sink = sinks::open(target).await.map_err(|e| e.to_string());
                opened.insert(name.to_string(), sink);
            }
        }
        let mut replicas = Vec::new();
        let mut unopened = Vec::new();
        for name in &c.replicate_to {
            match &opened[name] {
                Ok(sink) => replicas.push((name.clone(), sink.clone())),
                Err(e) => unopened.push((name.clone(), e.clone())),
            }
        }
        let result = match &opened[&c.storage] {
            Err(e) => ComponentResult::failed(c, format!("storage target {}: {e}", c.storage)),
            Ok(sink) => {
                let run = Run {
                    sink: sink.clone(),
                    replicas,
                    unopened,
                };
                run_component(
                    cli,
                    &config,
                    c,
                    run,
                    encryption.as_ref(),
                    &keyring,
                    &shutdown,
                )
                .await
            }
        };
        results.push(result);
    }

    if let Some(signal) = shutdown.signal() {
        let outcome = Outcome::Interrupted(signal.exit_status());
        let message = format!(
            "interrupted by {signal}: the run in progress was cancelled and nothing of it was kept"
        );
        if cli.json {
            #[derive(Serialize)]
            struct Interrupted<'a> {
                signal: &'a str,
                message: &'a str,
                components: &'a [ComponentResult],
            }
            print_json(
                outcome.verdict(),
                Interrupted {
                    signal: signal.name(),
                    message: &message,
                    components: &results,
                },
            );
        } else {
            eprintln!("{message}");
        }
        return outcome;
    }

    let outcome = Outcome::of(results.iter().map(|r| r.outcome));
    let mut catalogs = Vec::new();
    for (name, sink) in &opened {
        if let Ok(sink) = sink {
            let listing = list::catalog(sink.clone(), &RunFilter::default()).await;
            catalogs.push((name.clone(), listing));
        }
    }
    if cli.json {
        #[derive(Serialize)]
        struct BackedUp<'a> {
            components: &'a [ComponentResult],
            catalog: Vec<TargetRuns>,
        }
        let catalog = catalogs
            .iter()
            .map(|(name, l)| TargetRuns::new(name, l.as_ref().map_err(ToString::to_string)))
            .collect();
        print_json(
            outcome.verdict(),
            BackedUp {
                components: &results,
                catalog,
            },
        );
    } else {
        for r in &results {
            print_result(r);
        }
        for (name, l) in &catalogs {
            let target = config.target(name).expect("opened targets are configured");
            println!("\ncatalog of {name} ({}):", sinks::describe(target));
            match l {
                Ok(l) => {
                    print!("{}", format_runs_table(&l.runs));
                    list::warn_damaged(&l.damaged);
                }
                Err(e) => eprintln!("error: cannot list {name}: {e}"),
            }
        }
    }
    outcome
}

/// Where one component's run goes.
struct Run {
    /// Its storage target.
    sink: Arc<dyn Sink>,
    /// Its replica targets that opened, by name.
    replicas: Vec<(String, Arc<dyn Sink>)>,
    /// Those that did not, with why.
    unopened: Vec<(String, String)>,
}

/// One component's pipeline: its source and verifier, compression, encryption, the copies
/// to its replicas, the target's retention (every component of the target by its own rules)
/// applied after the run.
async fn run_component(
    cli: &Cli,
    config: &Config,
    c: &Component,
    run: Run,
    encryption: Option<&AgeEncryption>,
    keyring: &Keyring,
    shutdown: &Shutdown,
) -> ComponentResult {
    let observer = progress::backup_observer(cli, &run.sink, &c.name).await;
    let shared = Shared {
        config,
        encryption,
        keyring,
    };
    let pipeline = match component_pipeline(
        &shared,
        c,
        run.sink,
        &run.replicas,
        shutdown.token(),
        observer,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return ComponentResult::failed(c, e),
    };
    tracing::info!(component = %c.name, storage = %c.storage, replicas = ?c.replicate_to, "backing up");
    match pipeline.run().await {
        Ok(report) => ComponentResult::from_report(c, report, run.unopened),
        Err(e) => ComponentResult::failed(c, e.to_string()),
    }
}

/// The keep rules of a target: each configured component stored or replicated there by its
/// own rules (retention runs on each target on its own); components no longer configured
/// there are never pruned.
pub(super) fn target_rules(config: &Config, target: &str) -> ComponentRules {
    config
        .components
        .iter()
        .filter(|c| c.targets().any(|t| t == target))
        .fold(ComponentRules::new(), |rules, c| {
            rules.component(&c.name, c.retention.rules())
        })
}

fn print_result(r: &ComponentResult) {
    match (r.status, &r.run_id) {
        ("complete", Some(id)) => {
            let stored: u64 = r.artifacts.iter().map(|a| a.stored_size).sum();
            println!(
                "{} -> {}: complete, run {id}, {} artifact(s), {stored} bytes stored",
                r.component,
                r.storage,
                r.artifacts.len()
            );
        }
        (status, id) => println!(
            "{} -> {}: {}{}",
            r.component,
            r.storage,
            status.to_uppercase(),
            id.as_ref()
                .map(|i| format!(", run {i}"))
                .unwrap_or_default()
        ),
    }
    for a in &r.artifacts {
        println!(
            "  stored {} ({} bytes plain, {} stored, sha256 {})",
            a.key, a.plain_size, a.stored_size, a.stored_sha256
        );
        for v in &a.verifications {
            println!("    verified by {v}");
        }
    }
    for v in &r.replication {
        match v.error {
            None => println!(
                "  replicated to {}: {} ({} artifact(s), {} bytes copied)",
                v.target,
                v.outcome.replace('_', " "),
                v.artifacts_copied,
                v.bytes_copied
            ),
            Some(_) => println!(
                "  replication to {} FAILED: the backup is stored on {}; `stoa-backup replicate --to {}` copies it later",
                v.target, r.storage, v.target
            ),
        }
    }
    if let Some(ret) = &r.retention {
        println!(
            "  retention: {} run(s) kept, {} removed{}",
            ret.kept,
            ret.removed.len(),
            if ret.removed.is_empty() {
                String::new()
            } else {
                format!(" ({})", ret.removed.join(", "))
            }
        );
    }
    for e in &r.errors {
        eprintln!("error: {}: {e}", r.component);
    }
}
