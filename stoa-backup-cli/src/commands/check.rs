//! `check [COMPONENT…]`: a preflight that writes nothing. Every storage target is opened and
//! listed (reachable, credentials accepted), every component's source runs its preflight
//! (reachable, credentials accepted, version supported), and each component's RPO status
//! is read from the catalog: the age of its newest complete, verified run against its `rpo`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use stoa_backup::core::{rpo, Catalog, RunStatus, RunSummary};
use stoa_backup::signals;

use super::recover::select_components;
use super::{failed, interrupted, load_config, print_json, sinks, usage_error};
use crate::cli::Cli;
use crate::config::model::{Component, Config, Target, TargetKind};
use crate::outcome::Outcome;
use crate::sources;

/// Where a component stands against its recovery point objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RpoState {
    /// Its newest verified backup is within its RPO.
    Ok,
    /// Its newest verified backup is older than its RPO.
    Late,
    /// It has no complete, verified backup at all.
    Never,
    /// It has a verified backup but no `rpo` to judge it by.
    NoRpo,
    /// Its storage target could not be listed.
    Unknown,
}

impl RpoState {
    /// Whether the state is a failure of `check` (late, never, unknown).
    pub(crate) fn is_failure(self) -> bool {
        matches!(self, RpoState::Late | RpoState::Never | RpoState::Unknown)
    }

    fn word(self) -> &'static str {
        match self {
            RpoState::Ok => "ok",
            RpoState::Late => "LATE",
            RpoState::Never => "NEVER",
            RpoState::NoRpo => "no_rpo",
            RpoState::Unknown => "UNKNOWN",
        }
    }
}

/// A component's RPO status: its newest complete, verified run and how old it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RpoStatus {
    pub state: RpoState,
    /// The RPO, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_secs: Option<u64>,
    /// The newest complete, verified run holding the component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When that run started: the data a restore of it would lose is counted from here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the verification that makes it verified ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    /// Its age at `now`, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
}

/// The RPO status of `component` from its target's catalog listing (`None` when the target
/// could not be listed), at `now`, as the library judges it (`stoa_backup::core::rpo`): the
/// age is counted from the run's start (what a restore of it loses, as recovery points count
/// it); an age equal to the RPO is within it. Only complete, verified runs count: a failed,
/// partial, damaged or unverified run is no backup to recover from.
pub(crate) fn rpo_status(
    component: &str,
    rpo: Option<Duration>,
    listing: Option<&[RunSummary]>,
    now: DateTime<Utc>,
) -> RpoStatus {
    let mut status = RpoStatus {
        state: RpoState::Unknown,
        rpo_secs: rpo.map(|r| r.as_secs()),
        run_id: None,
        started_at: None,
        verified_at: None,
        age_secs: None,
    };
    let Some(runs) = listing else {
        return status;
    };
    // Without an RPO the age is still shown; the state is `no_rpo` whatever it is.
    let judged = rpo::RpoStatus::evaluate(runs, component, rpo.unwrap_or_default(), now);
    let (Some(backup), Some(age)) = (&judged.newest_verified, judged.age) else {
        status.state = RpoState::Never;
        return status;
    };
    status.run_id = Some(backup.run_id.as_str().to_string());
    status.started_at = Some(backup.started_at);
    status.verified_at = backup.verified_at;
    status.age_secs = Some(age.as_secs());
    status.state = match (rpo, judged.state) {
        (None, _) => RpoState::NoRpo,
        (Some(_), rpo::RpoState::Ok) => RpoState::Ok,
        (Some(_), rpo::RpoState::Late) => RpoState::Late,
        (Some(_), rpo::RpoState::Never) => RpoState::Never,
    };
    status
}

/// One storage target, as `--json` shows it.
#[derive(Debug, Serialize)]
struct TargetChecked {
    name: String,
    description: String,
    /// `ok` or `unreachable`.
    status: &'static str,
    /// Complete runs in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    complete_runs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip)]
    runs: Option<Vec<RunSummary>>,
}

/// A source's preflight, as `--json` shows it.
#[derive(Debug, Serialize)]
struct PreflightChecked {
    /// `ok` or `failed`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// One component, as `--json` shows it.
#[derive(Debug, Serialize)]
struct ComponentChecked {
    component: String,
    #[serde(rename = "type")]
    kind: String,
    storage: String,
    /// `ok` when the preflight passed and the RPO state is `ok` or `no_rpo`, else `failed`.
    status: &'static str,
    preflight: PreflightChecked,
    rpo: RpoStatus,
    #[serde(skip)]
    rpo_text: Option<String>,
}

/// Checks the targets and the components `names` (every component when empty).
pub async fn run(cli: &Cli, names: &[String]) -> Outcome {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let selected = match select_components(&config, names) {
        Ok(s) => s,
        Err(e) => return usage_error(cli, &e),
    };
    let shutdown = match signals::listen() {
        Ok(s) => s,
        Err(e) => return failed(cli, &e.to_string()),
    };
    let token = shutdown.token();
    // Nothing is written, so a signal just stops the checks.
    let checked = tokio::select! {
        checked = check_all(&config, &selected, names.is_empty()) => Some(checked),
        _ = token.cancelled() => None,
    };
    let Some((targets, components)) = checked else {
        let signal = shutdown.signal().expect("cancelled by a signal");
        return interrupted(cli, signal, "the checks were stopped; nothing was written");
    };

    let outcome = verdict(&targets, &components);
    if cli.json {
        #[derive(Serialize)]
        struct Checked<'a> {
            storage: &'a [TargetChecked],
            components: &'a [ComponentChecked],
        }
        print_json(
            outcome.verdict(),
            Checked {
                storage: &targets,
                components: &components,
            },
        );
    } else {
        print_tables(&targets, &components);
    }
    outcome
}

/// Exit 1 when a storage target cannot be listed; else success when every component is ok,
/// failed when none is, partial when some are.
fn verdict(targets: &[TargetChecked], components: &[ComponentChecked]) -> Outcome {
    if targets.iter().any(|t| t.status != "ok") {
        return Outcome::Failed;
    }
    Outcome::of(components.iter().map(|c| {
        if c.status == "ok" {
            Outcome::Success
        } else {
            Outcome::Failed
        }
    }))
}

async fn check_all(
    config: &Config,
    selected: &[&Component],
    every_target: bool,
) -> (Vec<TargetChecked>, Vec<ComponentChecked>) {
    // Every target when no component is named, else the targets of those named.
    let targets: Vec<&Target> = config
        .storage
        .iter()
        .filter(|t| every_target || selected.iter().any(|c| c.storage == t.name))
        .collect();
    let mut checked_targets = Vec::new();
    for t in targets {
        checked_targets.push(check_target(t).await);
    }
    let now = Utc::now();
    let mut checked_components = Vec::new();
    for c in selected {
        let listing = checked_targets
            .iter()
            .find(|t| t.name == c.storage)
            .and_then(|t| t.runs.as_deref());
        checked_components.push(check_component(c, listing, now).await);
    }
    (checked_targets, checked_components)
}

/// Opens and lists a target. A local directory that is created on demand and does not exist
/// yet is not created: it is reported as empty.
async fn check_target(target: &Target) -> TargetChecked {
    let mut checked = TargetChecked {
        name: target.name.clone(),
        description: sinks::describe(target),
        status: "unreachable",
        complete_runs: None,
        note: None,
        error: None,
        runs: None,
    };
    if let TargetKind::Local(l) = &target.kind {
        if l.create && !l.path.exists() {
            checked.status = "ok";
            checked.complete_runs = Some(0);
            checked.note =
                Some("the directory does not exist yet: the first backup creates it".into());
            checked.runs = Some(Vec::new());
            return checked;
        }
    }
    tracing::info!(storage = %target.name, "listing the storage target");
    let sink = match sinks::open(target).await {
        Ok(s) => s,
        Err(e) => {
            checked.error = Some(format!("storage target {}: {e}", target.name));
            return checked;
        }
    };
    match Catalog::new(sink).list_all().await {
        Ok(runs) => {
            checked.status = "ok";
            checked.complete_runs = Some(
                runs.iter()
                    .filter(|r| r.status == RunStatus::Complete)
                    .count(),
            );
            checked.runs = Some(runs);
        }
        Err(e) => checked.error = Some(format!("cannot list storage target {}: {e}", target.name)),
    }
    checked
}

async fn check_component(
    c: &Component,
    listing: Option<&[RunSummary]>,
    now: DateTime<Utc>,
) -> ComponentChecked {
    tracing::info!(component = %c.name, "preflight");
    let preflight = match sources::source(c).await {
        Ok(source) => source.preflight().await,
        Err(e) => Err(e),
    };
    let preflight = match preflight {
        Ok(p) => PreflightChecked {
            status: "ok",
            server_version: p.server_version,
            notes: p.notes,
            error: None,
        },
        Err(e) => PreflightChecked {
            status: "failed",
            server_version: None,
            notes: Vec::new(),
            // Sources name their type as the component: the configured name goes first.
            error: Some(format!("{}: {e}", c.name)),
        },
    };
    let rpo = rpo_status(&c.name, c.rpo.as_ref().map(|r| r.duration()), listing, now);
    let ok = preflight.status == "ok" && !rpo.state.is_failure();
    ComponentChecked {
        component: c.name.clone(),
        kind: c.kind().to_string(),
        storage: c.storage.clone(),
        status: if ok { "ok" } else { "failed" },
        preflight,
        rpo,
        rpo_text: c.rpo.as_ref().map(ToString::to_string),
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub(crate) fn format_age(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn print_tables(targets: &[TargetChecked], components: &[ComponentChecked]) {
    let width = |it: &mut dyn Iterator<Item = usize>, min: usize| it.max().unwrap_or(0).max(min);
    let tw = width(&mut targets.iter().map(|t| t.name.len()), 14);
    println!("{:<tw$}  {:<14}  description", "storage", "status");
    for t in targets {
        let status = match (t.status, t.complete_runs) {
            ("ok", Some(n)) => format!("ok, {n} run(s)"),
            _ => "UNREACHABLE".to_string(),
        };
        println!("{:<tw$}  {:<14}  {}", t.name, status, t.description);
        if let Some(n) = &t.note {
            println!("  note: {n}");
        }
        if let Some(e) = &t.error {
            println!("  error: {e}");
        }
    }
    if components.is_empty() {
        return;
    }
    let cw = width(&mut components.iter().map(|c| c.component.len()), 12);
    let sw = width(&mut components.iter().map(|c| c.storage.len()), 10);
    println!(
        "\n{:<cw$}  {:<9}  {:<sw$}  {:<9}  {:<6}  {:<8}  newest verified backup",
        "component", "type", "storage", "preflight", "rpo", "state"
    );
    for c in components {
        let newest = match (&c.rpo.run_id, c.rpo.age_secs) {
            (Some(id), Some(age)) => format!("{id} ({} ago)", format_age(age)),
            _ => "-".into(),
        };
        println!(
            "{:<cw$}  {:<9}  {:<sw$}  {:<9}  {:<6}  {:<8}  {}",
            c.component,
            c.kind,
            c.storage,
            if c.preflight.status == "ok" {
                "ok"
            } else {
                "FAILED"
            },
            c.rpo_text.as_deref().unwrap_or("-"),
            c.rpo.state.word(),
            newest
        );
        if let Some(v) = &c.preflight.server_version {
            println!("  server version {v}");
        }
        for n in &c.preflight.notes {
            println!("  note: {n}");
        }
        if let Some(e) = &c.preflight.error {
            println!("  error: {e}");
        }
        match c.rpo.state {
            RpoState::Late => println!(
                "  the newest verified backup is older than the RPO of {}: back it up (and verify it)",
                c.rpo_text.as_deref().unwrap_or("-")
            ),
            RpoState::Never => println!(
                "  no complete, verified backup: run `stoa-backup backup {}`",
                c.component
            ),
            RpoState::Unknown => println!(
                "  the storage target {} could not be listed: the RPO status is unknown",
                c.storage
            ),
            RpoState::Ok | RpoState::NoRpo => {}
        }
    }
    let count = |f: &dyn Fn(&ComponentChecked) -> bool| components.iter().filter(|c| f(c)).count();
    println!(
        "\n{} of {} component(s) ok: {} late, {} never backed up (verified), {} failed their preflight; {} of {} storage target(s) reachable",
        count(&|c| c.status == "ok"),
        components.len(),
        count(&|c| c.rpo.state == RpoState::Late),
        count(&|c| c.rpo.state == RpoState::Never),
        count(&|c| c.preflight.status != "ok"),
        targets.iter().filter(|t| t.status == "ok").count(),
        targets.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoa_backup::core::RunId;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn run(id: &str, components: &[&str], status: RunStatus, verified: bool) -> RunSummary {
        let run_id = RunId::parse(id).unwrap();
        let started = chrono::NaiveDateTime::parse_from_str(&id[..16], "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc();
        RunSummary {
            verified,
            verified_at: verified.then_some(started + chrono::Duration::minutes(5)),
            components: components.iter().map(|c| c.to_string()).collect(),
            ..RunSummary::new(run_id, started, status)
        }
    }

    #[test]
    fn the_newest_complete_verified_run_is_judged_by_the_rpo() {
        let runs = [
            run(
                "20260102T000000Z-000003",
                &["app"],
                RunStatus::Failed,
                false,
            ),
            run(
                "20260101T220000Z-000002",
                &["app"],
                RunStatus::Complete,
                false,
            ),
            run(
                "20260101T200000Z-000001",
                &["app", "db"],
                RunStatus::Complete,
                true,
            ),
            run(
                "20260101T100000Z-000000",
                &["app"],
                RunStatus::Complete,
                true,
            ),
        ];
        let now = at("2026-01-02T01:00:00Z");
        let s = rpo_status("app", Some(24 * HOUR), Some(&runs), now);
        assert_eq!(s.state, RpoState::Ok);
        assert_eq!(s.run_id.as_deref(), Some("20260101T200000Z-000001"));
        assert_eq!(s.age_secs, Some(5 * 3600));
        assert_eq!(s.rpo_secs, Some(24 * 3600));
        assert_eq!(s.started_at, Some(at("2026-01-01T20:00:00Z")));
        assert_eq!(s.verified_at, Some(at("2026-01-01T20:05:00Z")));

        let late = rpo_status("app", Some(4 * HOUR), Some(&runs), now);
        assert_eq!(late.state, RpoState::Late);
        assert!(late.state.is_failure());
        // Exactly at the RPO is still within it.
        let edge = rpo_status("app", Some(5 * HOUR), Some(&runs), now);
        assert_eq!(edge.state, RpoState::Ok);
        assert_eq!(
            rpo_status("app", None, Some(&runs), now).state,
            RpoState::NoRpo
        );
        assert!(!RpoState::NoRpo.is_failure());
    }

    #[test]
    fn no_usable_backup_is_never_and_an_unlisted_target_unknown() {
        let runs = [
            run(
                "20260101T220000Z-000002",
                &["app"],
                RunStatus::Complete,
                false,
            ),
            run(
                "20260101T210000Z-000001",
                &["app"],
                RunStatus::Damaged,
                true,
            ),
            run(
                "20260101T200000Z-000000",
                &["other"],
                RunStatus::Complete,
                true,
            ),
        ];
        let now = at("2026-01-02T00:00:00Z");
        for rpo in [None, Some(HOUR)] {
            let s = rpo_status("app", rpo, Some(&runs), now);
            assert_eq!(s.state, RpoState::Never, "{rpo:?}");
            assert!(s.state.is_failure());
            assert_eq!(s.run_id, None);
            assert_eq!(s.age_secs, None);
        }
        assert_eq!(
            rpo_status("app", Some(HOUR), Some(&[]), now).state,
            RpoState::Never
        );
        let unknown = rpo_status("app", Some(HOUR), None, now);
        assert_eq!(unknown.state, RpoState::Unknown);
        assert!(unknown.state.is_failure());
    }

    #[test]
    fn a_run_from_the_future_is_brand_new() {
        let runs = [run(
            "20260101T120000Z-000000",
            &["app"],
            RunStatus::Complete,
            true,
        )];
        let s = rpo_status("app", Some(HOUR), Some(&runs), at("2026-01-01T11:59:00Z"));
        assert_eq!((s.state, s.age_secs), (RpoState::Ok, Some(0)));
    }

    #[test]
    fn ages_read_in_two_units() {
        assert_eq!(format_age(12), "12s");
        assert_eq!(format_age(250), "4m 10s");
        assert_eq!(format_age(2 * 3600 + 5 * 60 + 9), "2h 5m");
        assert_eq!(format_age(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
    }

    #[test]
    fn an_unreachable_target_fails_and_components_decide_the_rest() {
        let target = |status| TargetChecked {
            name: "t".into(),
            description: String::new(),
            status,
            complete_runs: None,
            note: None,
            error: None,
            runs: None,
        };
        let component = |status| ComponentChecked {
            component: "c".into(),
            kind: "postgres".into(),
            storage: "t".into(),
            status,
            preflight: PreflightChecked {
                status: "ok",
                server_version: None,
                notes: Vec::new(),
                error: None,
            },
            rpo: rpo_status("c", None, None, Utc::now()),
            rpo_text: None,
        };
        let ok = [target("ok")];
        assert_eq!(verdict(&ok, &[component("ok")]), Outcome::Success);
        assert_eq!(verdict(&ok, &[component("failed")]), Outcome::Failed);
        assert_eq!(
            verdict(&ok, &[component("ok"), component("failed")]),
            Outcome::Partial
        );
        assert_eq!(
            verdict(&[target("ok"), target("unreachable")], &[component("ok")]),
            Outcome::Failed
        );
        assert_eq!(verdict(&ok, &[]), Outcome::Success);
    }
}
