//! `recover [COMPONENT…] [--at TIME] [--existing …] [--apply] [--resume [ID]]`: the
//! library's platform recovery over the configured components, in STOA's order (PostgreSQL →
//! Vault / Infisical → Keycloak → CRDs → Helm values → Grafana), each component restored by
//! its restorer into its configured server, then the checks. Without `--apply` every step is
//! planned and nothing is written.
//!
//! One recovery reads one storage target (its runs, and its journal beside them), so the
//! components are recovered target by target: one recovery per target, the targets in the
//! STOA order of their components. When that order cannot be kept (postgres in S3, Keycloak
//! in Git, Grafana in S3 again), the command refuses and says which commands to run instead.
//!
//! A recovery also reads the replicas of its target (the `replicate_to` targets of its
//! components): each component's run is the newest complete, verified one across them, a
//! target that cannot be opened or listed is passed over (and named), and the journal is
//! kept in the first of them that takes it, so a recovery runs while the primary region is
//! down, without a change of configuration. `--from TARGET` reads every component from that
//! one target.

mod order;
mod row_counts;

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use stoa_backup::core::recovery::{
    Checklist, Recovery, RecoveryPlan, RecoveryReport, RecoveryStatus, Verdict,
};
use stoa_backup::core::{
    Error, ErrorKind, ExistingDataPolicy, Keyring, Observer, RecoveryPoint, Result as CoreResult,
    Sink,
};
use stoa_backup::signals::{self, Shutdown};

pub(crate) use order::{by_target, check_order, select_components, TargetGroup};
pub(crate) use row_counts::row_counts_check;

use super::{failed, keys, load_config, print_json, sinks, usage_error};
use crate::cli::{Cli, Existing};
use crate::config::model::{Config, Settings};
use crate::outcome::Outcome;
use crate::progress::{self, ExpectedSizes};
use crate::restorers::{self, RestoreTo};

/// What `recover` was asked.
pub struct Request<'a> {
    /// Components by name (empty: every configured component).
    pub components: &'a [String],
    /// `--at`.
    pub at: Option<DateTime<Utc>>,
    /// `--from`.
    pub from: Option<&'a str>,
    /// `--existing`.
    pub existing: Existing,
    /// `--apply`.
    pub apply: bool,
    /// `--resume`: `Some("")` for the newest unfinished recovery.
    pub resume: Option<&'a str>,
}

/// What became of one storage target's recovery, as `--json` shows it.
#[derive(Serialize)]
struct TargetRecovery {
    storage: String,
    /// The other targets the runs are looked for in (the components' replicas).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    replicas: Vec<String>,
    /// The targets that could not be opened or listed, each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreachable: Vec<String>,
    components: Vec<String>,
    /// `planned`, `recovered`, `checks_failed`, `failed`, `interrupted`, `not_started`
    /// (a recovery before it failed), or `resumed_elsewhere` (before the one resumed).
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<RecoveryPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<RecoveryReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Failure>,
}

/// Why a recovery stopped, and how to go on.
#[derive(Serialize)]
struct Failure {
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    steps_done: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_id: Option<String>,
    /// The command that resumes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    resume: Option<String>,
    /// What the command line can do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'static str>,
}

/// One storage target's recovery, built.
struct Planned<'c> {
    group: TargetGroup<'c>,
    recovery: Recovery,
    result: TargetRecovery,
}

/// Plans (and with `--apply` runs, or with `--resume` continues) the recovery.
pub async fn run(cli: &Cli, req: Request<'_>) -> Outcome {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let selected = match select_components(&config, req.components) {
        Ok(s) => s,
        Err(e) => return usage_error(cli, &e),
    };
    if selected.is_empty() {
        return usage_error(cli, &format!("{} configures no component", config.file));
    }
    if req.resume.is_some() && req.at.is_some() {
        return usage_error(
            cli,
            "--at picks the runs of a new recovery; --resume continues one with the runs its journal recorded: give one of them",
        );
    }
    let groups = match req.from {
        Some(from) => match config.target(from) {
            // One target: one recovery, in STOA order.
            Some(t) => vec![TargetGroup::all_in(&t.name, &selected)],
            None => return usage_error(cli, &sinks::unknown_from(&config, from)),
        },
        None => by_target(&selected),
    };
    if let Err(e) = check_order(&selected, &groups) {
        return usage_error(cli, &e);
    }
    let shutdown = match signals::listen() {
        Ok(s) => s,
        Err(e) => return failed(cli, &e.to_string()),
    };
    let keyring = match keys::keyring(&config) {
        Ok(k) => k,
        Err(e) => return failed(cli, &e),
    };
    let existing = ExistingDataPolicy::from(req.existing);
    let mut planned = Vec::new();
    for group in groups {
        let mut names = vec![group.storage];
        if req.from.is_none() {
            for c in &group.components {
                for r in &c.replicate_to {
                    if !names.contains(&r.as_str()) {
                        names.push(r);
                    }
                }
            }
        }
        let (targets, unopened) = sinks::open_all(&config, &names).await;
        if unopened.len() == names.len() {
            return failed(
                cli,
                &sinks::none_opened(&group.names().join(", "), &unopened),
            );
        }
        let recovery = match build(
            &group,
            targets,
            &keyring,
            existing,
            req.at,
            &shutdown,
            progress::observer(cli, ExpectedSizes::none()),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return failed(cli, &e),
        };
        let result = TargetRecovery {
            storage: group.storage.to_string(),
            replicas: names[1..].iter().map(|n| n.to_string()).collect(),
            unreachable: unopened,
            components: group.names().iter().map(|n| n.to_string()).collect(),
            status: "not_started",
            plan: None,
            report: None,
            error: None,
        };
        planned.push(Planned {
            group,
            recovery,
            result,
        });
    }
    let resume_with = ResumeWith {
        config: cli.config.as_ref().map(|p| p.display().to_string()),
        existing: req.existing,
    };
    let outcome = match req.resume {
        Some(id) => resume(&mut planned, id, existing, &resume_with, &shutdown).await,
        None => plan_then_apply(&mut planned, req.apply, &resume_with, &shutdown).await,
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(message) => return usage_error(cli, &message),
    };
    let results: Vec<&TargetRecovery> = planned.iter().map(|p| &p.result).collect();
    let verdict = if outcome == Outcome::Success && !req.apply && req.resume.is_none() {
        "planned"
    } else {
        outcome.verdict()
    };
    let signal = shutdown.signal();
    if cli.json {
        #[derive(Serialize)]
        struct Recovered<'a> {
            applied: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            signal: Option<&'static str>,
            recoveries: &'a [&'a TargetRecovery],
        }
        print_json(
            verdict,
            Recovered {
                applied: req.apply || req.resume.is_some(),
                signal: signal.map(|s| s.name()),
                recoveries: &results,
            },
        );
    } else {
        print_human(&config, &results, req.apply || req.resume.is_some());
        if let Some(signal) = signal {
            eprintln!("interrupted by {signal}: the recovery stopped between or inside its steps; what was done is in its journal");
        }
    }
    outcome
}

/// The recovery of one storage target's components: each restorer into its configured
/// server, then the row counts of every restored PostgreSQL database.
async fn build(
    group: &TargetGroup<'_>,
    targets: Vec<(String, Arc<dyn Sink>)>,
    keyring: &Keyring,
    existing: ExistingDataPolicy,
    at: Option<DateTime<Utc>>,
    shutdown: &Shutdown,
    observer: Arc<dyn Observer>,
) -> Result<Recovery, String> {
    let mut targets = targets.into_iter();
    let (name, sink) = targets
        .next()
        .expect("a recovery reads at least its own target");
    let mut builder = Recovery::builder().sink_named(name, sink);
    for (name, replica) in targets {
        builder = builder.replica(name, replica);
    }
    let mut builder = builder
        .keyring(keyring.clone())
        .observer(observer)
        .cancel(shutdown.token())
        .existing(existing);
    if let Some(at) = at {
        builder = builder.at(at);
    }
    let mut checks = Checklist::new();
    // The components come in STOA order: the builder keeps it.
    for c in &group.components {
        let restorer = restorers::restorer(c, &RestoreTo::Configured, existing)
            .await
            .map_err(|e| e.or_component(c.name.clone()).to_string())?;
        builder = builder.restore(restorer);
        if let Settings::Postgres(s) = &c.settings {
            let database = restorers::postgres_database(s);
            checks = checks.check(row_counts_check(&c.name, &s.conn, &database, &database));
        }
    }
    if !checks.is_empty() {
        builder = builder.checks(checks);
    }
    builder.build().map_err(|e| e.to_string())
}

/// How the printed resume command is spelled.
struct ResumeWith {
    config: Option<String>,
    existing: Existing,
}

impl ResumeWith {
    fn command(&self, names: &[String], id: &str) -> String {
        let mut cmd = String::from("stoa-backup");
        if let Some(c) = &self.config {
            let _ = write!(cmd, " --config {c}");
        }
        let _ = write!(cmd, " recover {} --resume {id}", names.join(" "));
        match self.existing {
            Existing::Fail => {}
            Existing::Skip => cmd.push_str(" --existing skip"),
            Existing::Overwrite => cmd.push_str(" --existing overwrite"),
        }
        cmd
    }
}

/// Plans every target's recovery (nothing is written unless every plan succeeds), then,
/// with `apply`, runs them in order, stopping at the first that fails.
async fn plan_then_apply(
    planned: &mut [Planned<'_>],
    apply: bool,
    resume_with: &ResumeWith,
    shutdown: &Shutdown,
) -> Result<Outcome, String> {
    let mut planning_failed = false;
    for p in planned.iter_mut() {
        tracing::info!(storage = %p.group.storage, components = ?p.group.names(), "planning the recovery");
        match p.recovery.plan().await {
            Ok(plan) => {
                p.result.status = "planned";
                for u in &plan.point.unreachable {
                    if !p.result.unreachable.contains(u) {
                        p.result.unreachable.push(u.clone());
                    }
                }
                p.result.plan = Some(plan);
            }
            Err(e) => {
                p.result.status = "failed";
                p.result.error = Some(failure(&e, &p.result.components, resume_with));
                planning_failed = true;
                if shutdown.signal().is_some() {
                    break;
                }
            }
        }
    }
    if let Some(signal) = shutdown.signal() {
        return Ok(Outcome::Interrupted(signal.exit_status()));
    }
    if planning_failed {
        return Ok(Outcome::Failed);
    }
    if !apply {
        return Ok(Outcome::Success);
    }
    for p in planned.iter_mut() {
        let plan = p.result.plan.as_ref().expect("planned above");
        tracing::info!(storage = %p.group.storage, components = ?p.group.names(), "recovering");
        let applied = p.recovery.apply(plan).await;
        if let Some(outcome) = record(p, applied, resume_with, shutdown) {
            return Ok(outcome);
        }
    }
    Ok(Outcome::Success)
}

/// Records what one recovery's apply or resume gave; the outcome that ends the command when
/// it did not succeed.
fn record(
    p: &mut Planned<'_>,
    done: CoreResult<RecoveryReport>,
    resume_with: &ResumeWith,
    shutdown: &Shutdown,
) -> Option<Outcome> {
    match done {
        Ok(report) => {
            let passed = report.verdict == Verdict::Passed;
            if !passed {
                let failed = report
                    .checks
                    .as_ref()
                    .map(|c| c.failed().join(", "))
                    .unwrap_or_default();
                p.result.error = Some(Failure {
                    message: format!(
                        "the recovery ran, but checks failed: {failed}; once the cause is fixed, resuming runs the checks again"
                    ),
                    step: Some("checks".into()),
                    steps_done: report
                        .steps
                        .iter()
                        .filter(|s| s.name != "checks")
                        .map(|s| s.name.clone())
                        .collect(),
                    recovery_id: Some(report.recovery_id.clone()),
                    resume: Some(resume_with.command(&p.result.components, &report.recovery_id)),
                    hint: None,
                });
            }
            p.result.status = if passed { "recovered" } else { "checks_failed" };
            p.result.report = Some(report);
            (!passed).then_some(Outcome::Failed)
        }
        Err(e) => {
            p.result.error = Some(failure(&e, &p.result.components, resume_with));
            match shutdown.signal() {
                Some(signal) => {
                    p.result.status = "interrupted";
                    Some(Outcome::Interrupted(signal.exit_status()))
                }
                None => {
                    p.result.status = "failed";
                    Some(Outcome::Failed)
                }
            }
        }
    }
}

/// An error of the library's recovery, with the step, the steps done and the recovery id it
/// records (a recovery that started has a journal to resume).
fn failure(e: &Error, components: &[String], resume_with: &ResumeWith) -> Failure {
    let recovery_id = e.context_value("recovery").map(str::to_string);
    Failure {
        message: e.to_string(),
        step: e.context_value("step").map(str::to_string),
        steps_done: e
            .context_value("steps done")
            .map(|s| s.split(", ").map(str::to_string).collect())
            .unwrap_or_default(),
        resume: recovery_id
            .as_deref()
            .map(|id| resume_with.command(components, id)),
        recovery_id,
        hint: (e.kind() == ErrorKind::Conflict && resume_with.existing != Existing::Overwrite)
            .then_some(CONFLICT_HINT),
    }
}

/// What to do about data that exists at a target, in the command line's words.
const CONFLICT_HINT: &str = "the data exists at the target: --existing overwrite replaces it (PostgreSQL: a restored copy is swapped in, the old database kept as <name>_old_<run>)";

/// Resumes the recovery `id` (empty: the newest unfinished one whose steps are this
/// command's), then runs the recoveries of the storage targets after it. Usage errors
/// (no such recovery, other steps, another `--existing`) are `Err`.
async fn resume(
    planned: &mut [Planned<'_>],
    id: &str,
    existing: ExistingDataPolicy,
    resume_with: &ResumeWith,
    shutdown: &Shutdown,
) -> Result<Outcome, String> {
    let (index, id) = find_journal(planned, id, existing).await?;
    for p in planned[..index].iter_mut() {
        p.result.status = "resumed_elsewhere";
    }
    let p = &mut planned[index];
    tracing::info!(recovery = %id, storage = %p.group.storage, "resuming the recovery");
    let resumed = p.recovery.resume(&id).await;
    if let Some(outcome) = record(p, resumed, resume_with, shutdown) {
        return Ok(outcome);
    }
    // The storage targets after the one resumed were not reached: plan and apply them now.
    plan_then_apply(&mut planned[index + 1..], true, resume_with, shutdown).await
}

/// The target group holding the journal to resume and its id: `id`, or (empty) the newest
/// unfinished, non-drill journal whose steps are those of the group's recovery.
async fn find_journal(
    planned: &[Planned<'_>],
    id: &str,
    existing: ExistingDataPolicy,
) -> Result<(usize, String), String> {
    let mut newest: Option<(usize, String)> = None;
    let mut others: Vec<String> = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        let ids = p
            .recovery
            .journals()
            .await
            .map_err(|e| format!("storage target {}: {e}", p.group.storage))?;
        for candidate in ids {
            if !id.is_empty() && candidate != id {
                continue;
            }
            let journal = p
                .recovery
                .journal(&candidate)
                .await
                .map_err(|e| format!("storage target {}: {e}", p.group.storage))?;
            let steps: Vec<&str> = journal.steps.iter().map(|s| s.name.as_str()).collect();
            let matches = steps == p.recovery.step_names();
            if !id.is_empty() {
                if journal.drill {
                    return Err(format!(
                        "{id} is a drill: drills clean up after themselves and are not resumed; run `stoa-backup drill` again"
                    ));
                }
                if journal.status == RecoveryStatus::Completed {
                    return Err(format!(
                        "recovery {id} is complete: there is nothing to resume"
                    ));
                }
                if !matches {
                    return Err(format!(
                        "recovery {id} has the steps {}, this command's recovery of storage target {} has {}: name the components it recovered (`stoa-backup recover {} --resume {id}`)",
                        steps.join(" → "),
                        p.group.storage,
                        p.recovery.step_names().join(" → "),
                        journal
                            .steps
                            .iter()
                            .filter(|s| s.name != "checks")
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
                check_policy(&journal.recovery_id, journal.existing, existing)?;
                return Ok((i, candidate));
            }
            if journal.drill {
                continue;
            }
            if !matches {
                if journal.status != RecoveryStatus::Completed {
                    others.push(format!("{candidate} ({})", steps.join(" → ")));
                }
                continue;
            }
            // The newest recovery of these steps decides: one that completed after an
            // unfinished one superseded it.
            if journal.status != RecoveryStatus::Completed {
                check_policy(&journal.recovery_id, journal.existing, existing)?;
                // Ids start with their UTC start time: the greatest is the newest.
                if newest.as_ref().is_none_or(|(_, n)| candidate > *n) {
                    newest = Some((i, candidate));
                }
            }
            break;
        }
    }
    let targets: Vec<&str> = planned.iter().map(|p| p.group.storage).collect();
    match newest {
        Some(found) => Ok(found),
        None if !id.is_empty() => Err(format!(
            "no recovery {id} in the storage targets {} (a recovery's id is in its output and its error)",
            targets.join(", ")
        )),
        None if others.is_empty() => Err(format!(
            "no unfinished recovery of these components in the storage targets {}: nothing to resume",
            targets.join(", ")
        )),
        None => Err(format!(
            "no unfinished recovery of these components; unfinished recoveries of other components: {} (resume one by naming its components and its id)",
            others.join(", ")
        )),
    }
}

fn check_policy(
    id: &str,
    recorded: ExistingDataPolicy,
    given: ExistingDataPolicy,
) -> Result<(), String> {
    if recorded == given {
        return Ok(());
    }
    let word = |p: ExistingDataPolicy| match p {
        ExistingDataPolicy::Fail => "fail",
        ExistingDataPolicy::Skip => "skip",
        ExistingDataPolicy::Overwrite => "overwrite",
    };
    Err(format!(
        "recovery {id} was started with --existing {}: resume it with --existing {} (not {})",
        word(recorded),
        word(recorded),
        word(given)
    ))
}

fn print_human(config: &Config, results: &[&TargetRecovery], applied: bool) {
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let target = config
            .target(&r.storage)
            .map(sinks::describe)
            .unwrap_or_default();
        println!(
            "storage target {} ({target}): {}",
            r.storage,
            r.components.join(", ")
        );
        match r.status {
            "not_started" => println!("  not started: a recovery before it did not succeed"),
            "resumed_elsewhere" => {
                println!("  not run again: the recovery resumed comes after this one")
            }
            _ => {}
        }
        for u in &r.unreachable {
            eprintln!("warning: storage target {u}: the runs are looked for in the others");
        }
        if let Some(report) = &r.report {
            print!("{}", report.table());
            print_origins(&report.point);
        } else if let Some(plan) = &r.plan {
            print!("{}", plan.table());
            print_origins(&plan.point);
            for s in &plan.steps {
                for note in &s.report.notes {
                    println!("  {}: {note}", s.name);
                }
            }
            if !applied && plan.totals.conflicts > 0 {
                println!(
                    "  {} conflict(s): --apply would refuse them; --existing overwrite replaces the existing data (PostgreSQL: a restored copy is swapped in, the old database kept as <name>_old_<run>), --existing skip leaves it",
                    plan.totals.conflicts
                );
            }
        }
        if let Some(e) = &r.error {
            eprintln!("error: {}", e.message);
            if let (Some(id), Some(step)) = (&e.recovery_id, &e.step) {
                let done = if e.steps_done.is_empty() {
                    "none".to_string()
                } else {
                    e.steps_done.join(", ")
                };
                eprintln!("recovery {id} stopped at step {step}; steps done: {done}");
            }
            if let Some(cmd) = &e.resume {
                eprintln!("resume it once the cause is fixed: {cmd}");
            }
            if let Some(hint) = e.hint {
                eprintln!("hint: {hint}");
            }
        }
    }
    if !applied && results.iter().all(|r| r.status == "planned") {
        println!("\nThis is the plan: nothing was written. Run again with --apply to recover.");
    }
}

/// Where each component's run was found, when the recovery read several targets.
fn print_origins(point: &RecoveryPoint) {
    for p in &point.runs {
        if let Some(origin) = &p.origin {
            println!(
                "  {}: run {} from storage target {origin}",
                p.component, p.run_id
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resume_command_repeats_what_matters() {
        let r = ResumeWith {
            config: Some("/etc/stoa-backup.yaml".into()),
            existing: Existing::Overwrite,
        };
        assert_eq!(
            r.command(&["app".into(), "iam".into()], "20260101T000000Z-abcdef"),
            "stoa-backup --config /etc/stoa-backup.yaml recover app iam --resume 20260101T000000Z-abcdef --existing overwrite"
        );
        let plain = ResumeWith {
            config: None,
            existing: Existing::Fail,
        };
        assert_eq!(
            plain.command(&["app".into()], "x"),
            "stoa-backup recover app --resume x"
        );
        assert!(check_policy("x", ExistingDataPolicy::Fail, ExistingDataPolicy::Fail).is_ok());
        let e =
            check_policy("x", ExistingDataPolicy::Overwrite, ExistingDataPolicy::Fail).unwrap_err();
        assert!(e.contains("--existing overwrite (not fail)"), "{e}");
    }
}
