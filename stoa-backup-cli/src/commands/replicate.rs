//! `replicate --to TARGET [--from TARGET] [--component NAME] [--since DURATION] [--limit N]`:
//! brings a storage target up to date with another (the job of a second region): every
//! complete, verified run of the source it lacks is copied, stored bytes unchanged and
//! checked on the way, manifest last; runs already there with the same digests cost no
//! write. It acts by default (it only ever adds complete runs). Exit 0 when the target holds
//! every run, 3 when some copies failed and others were made, 1 when none could be.

use chrono::Utc;
use serde::Serialize;
use stoa_backup::core::replicate::{
    ReplicaFilter, ReplicationReport, Replicator, RunCopy, SkippedRun,
};
use stoa_backup::core::{Catalog, RunFilter};
use stoa_backup::signals;

use super::{failed, interrupted, load_config, print_json, sinks, usage_error};
use crate::cli::Cli;
use crate::config::duration::HumanDuration;
use crate::outcome::Outcome;

/// What `replicate` was asked.
pub struct Request<'a> {
    /// `--from`.
    pub from: Option<&'a str>,
    /// `--to`.
    pub to: &'a str,
    /// `--component`.
    pub component: Option<&'a str>,
    /// `--since`.
    pub since: Option<&'a str>,
    /// `--limit`.
    pub limit: Option<usize>,
}

/// The JSON document.
#[derive(Serialize)]
struct Replicated<'a> {
    from: &'a str,
    to: &'a str,
    runs: &'a [RunCopy],
    skipped: &'a [SkippedRun],
    failed: Vec<Failed>,
    bytes_copied: u64,
}

#[derive(Serialize)]
struct Failed {
    run_id: String,
    error: String,
}

/// Copies what `--to` lacks of `--from`.
pub async fn run(cli: &Cli, req: Request<'_>) -> Outcome {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let from = match (req.from, req.component.and_then(|c| config.component(c))) {
        (Some(f), _) => f.to_string(),
        (None, Some(c)) => c.storage.clone(),
        (None, None) => match config.storage.as_slice() {
            [first, ..] if config.storage.len() == 2 => config
                .storage
                .iter()
                .find(|t| t.name != req.to)
                .map_or(first.name.clone(), |t| t.name.clone()),
            _ => {
                return usage_error(
                    cli,
                    "name the storage target to copy from with --from (or a component with --component)",
                )
            }
        },
    };
    let (Some(source), Some(target)) = (config.target(&from), config.target(req.to)) else {
        let known: Vec<&str> = config.storage.iter().map(|t| t.name.as_str()).collect();
        return usage_error(
            cli,
            &format!(
                "no storage target is named `{}` in {}: the targets are {}",
                if config.target(&from).is_none() {
                    from.as_str()
                } else {
                    req.to
                },
                config.file,
                known.join(", ")
            ),
        );
    };
    if source.name == target.name {
        return usage_error(cli, "--from and --to name the same storage target");
    }
    let since = match req.since.map(HumanDuration::parse).transpose() {
        Ok(d) => d.map(|d| Utc::now() - d.chrono()),
        Err(e) => return usage_error(cli, &format!("--since: {e}")),
    };
    let shutdown = match signals::listen() {
        Ok(s) => s,
        Err(e) => return failed(cli, &e.to_string()),
    };
    let open = |t| async move {
        sinks::open(t)
            .await
            .map_err(|e| format!("storage target {}: {e}", t.name))
    };
    let (src, dst) = match (open(source).await, open(target).await) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return failed(cli, &e),
    };
    let filter = ReplicaFilter {
        runs: RunFilter {
            component: req.component.map(str::to_string),
            ..Default::default()
        },
        since,
        limit: req.limit,
    };
    let replicator = Replicator::new(&Catalog::new(src), &Catalog::new(dst))
        .named(target.name.clone())
        .cancel(shutdown.token());
    tracing::info!(from = %source.name, to = %target.name, "replicating");
    let report = match replicator.replicate(&filter).await {
        Ok(r) => r,
        Err(e) => return failed(cli, &e.to_string()),
    };
    if let Some(signal) = shutdown.signal() {
        return interrupted(
            cli,
            signal,
            "the copy in progress is incomplete on the target; the next replicate finishes it",
        );
    }
    let outcome = outcome(&report);
    if cli.json {
        print_json(
            outcome.verdict(),
            Replicated {
                from: &source.name,
                to: &target.name,
                runs: &report.runs,
                skipped: &report.skipped,
                failed: report
                    .failed
                    .iter()
                    .map(|f| Failed {
                        run_id: f.run_id.to_string(),
                        error: f.error.to_string(),
                    })
                    .collect(),
                bytes_copied: report.bytes_copied(),
            },
        );
    } else {
        print_text(&source.name, &target.name, &report);
    }
    outcome
}

fn outcome(report: &ReplicationReport) -> Outcome {
    match (report.failed.is_empty(), report.runs.is_empty()) {
        (true, _) => Outcome::Success,
        (false, false) => Outcome::Partial,
        (false, true) => Outcome::Failed,
    }
}

fn print_text(from: &str, to: &str, report: &ReplicationReport) {
    println!("replicate {from} -> {to}");
    for r in &report.runs {
        println!(
            "  {}  {:<16} {:>3} copied {:>3} present {:>12} bytes  {}",
            r.run_id,
            r.outcome.as_str(),
            r.artifacts_copied,
            r.artifacts_present,
            r.bytes_copied,
            r.components.join(",")
        );
    }
    for s in &report.skipped {
        println!("  {}  skipped: {}", s.run_id, s.reason);
    }
    for f in &report.failed {
        eprintln!("error: run {}: {}", f.run_id, f.error);
    }
    println!(
        "{} run(s) written, {} already there, {} failed, {} bytes copied",
        report.written().count(),
        report.runs.len() - report.written().count(),
        report.failed.len(),
        report.bytes_copied()
    );
}
