//! Picking the dump a PostgreSQL restore takes: by the database it holds (the recorded
//! [`PostgresFacts::database`]), not by the newest run whatever it holds. With several
//! databases backed up into one place, the newest run may hold another database's dump;
//! restored under the target's name it would replace the live database with another one
//! (and the row-count check would pass, comparing with that other dump's counts).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use stoa_backup_core::catalog::{Catalog, RunFilter};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::manifest::{ArtifactRecord, Manifest, RunId, RunSummary};

use super::facts::PostgresFacts;
use super::restore::RestoreTarget;
use super::{COMPONENT, DUMP_CONTENT_TYPE, GLOBALS_CONTENT_TYPE};

/// Runs dated later than now by more than this are reported as dated in the future (small
/// differences between hosts' clocks are not worth a warning).
const FUTURE_TOLERANCE: Duration = Duration::minutes(1);

/// Which dump [`find_dump`] looks for: the newest complete, verified run holding a dump of
/// one database, or a given run.
///
/// ```
/// use stoa_backup_providers::postgres::{DumpQuery, RestoreTarget};
///
/// let target = RestoreTarget::NewDatabase { name: "stoa".into(), swap: true };
/// // The dump of the database restored into, unless the operator names another.
/// let wanted: Option<String> = None;
/// let query = match wanted {
///     Some(db) => DumpQuery::database(db),
///     None => DumpQuery::for_target(&target),
/// };
/// assert_eq!(query.get_database(), "stoa");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpQuery {
    database: String,
    run: Option<RunId>,
    component: String,
    allow_unverified: bool,
    now: Option<DateTime<Utc>>,
}

impl DumpQuery {
    /// Dumps of `database` (as the dump's facts record it).
    pub fn database(name: impl Into<String>) -> Self {
        DumpQuery {
            database: name.into(),
            run: None,
            component: COMPONENT.to_string(),
            allow_unverified: false,
            now: None,
        }
    }

    /// Dumps of the database `target` restores into ([`RestoreTarget::database`]): the
    /// default when the operator names no database.
    pub fn for_target(target: &RestoreTarget) -> Self {
        DumpQuery::database(target.database())
    }

    /// Takes the dump from this run rather than the newest one (it must hold a dump of the
    /// database).
    pub fn run(mut self, run: RunId) -> Self {
        self.run = Some(run);
        self
    }

    /// The component the dumps were stored under (default `postgres`).
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = component.into();
        self
    }

    /// Whether runs whose verification failed or never ran may be picked (default no: they
    /// are skipped with a warning, and an explicit unverified run is refused).
    pub fn allow_unverified(mut self, allow: bool) -> Self {
        self.allow_unverified = allow;
        self
    }

    /// The time runs dated in the future are measured against (default: the clock when
    /// [`find_dump`] runs). Runs more than a minute later than that get a warning.
    pub fn now(mut self, now: DateTime<Utc>) -> Self {
        self.now = Some(now);
        self
    }

    /// The database whose dump is looked for.
    pub fn get_database(&self) -> &str {
        &self.database
    }
}

/// The dump [`find_dump`] picked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FoundDump {
    /// The manifest of the run it belongs to.
    pub manifest: Manifest,
    /// The dump's record (restore it by planning and applying [`manifest`](Self::manifest)
    /// with the [`Restore`](stoa_backup_core::Restore) driver;
    /// [`PostgresRestorer::from_database`](super::PostgresRestorer::from_database) picks
    /// this dump among the run's).
    pub artifact: ArtifactRecord,
    /// The facts recorded with it (the database, the row counts at backup time, …).
    pub facts: PostgresFacts,
    /// What the operator should know about the choice: runs dated in the future (a wrong
    /// clock makes a run sort as the newest), newer runs skipped because they are not
    /// verified or their records cannot be read.
    pub warnings: Vec<String>,
}

/// Finds the dump to restore: of the complete runs in `catalog` holding `query`'s component,
/// newest first, the first verified one holding a dump of the database asked for (by its
/// recorded [`PostgresFacts::database`]), or the run `query` names.
///
/// Fails with [`ErrorKind::NotFound`] when no run holds such a dump (the hint lists the
/// databases that verified runs do hold), [`ErrorKind::Config`] for an explicit run that is
/// not verified (unless [`DumpQuery::allow_unverified`]), and [`ErrorKind::Conflict`] when a
/// run holds two dumps of the database under one component.
pub async fn find_dump(catalog: &Catalog, query: &DumpQuery) -> Result<FoundDump> {
    let now = query.now.unwrap_or_else(Utc::now);
    let runs = catalog
        .list_runs(&RunFilter::component(query.component.clone()))
        .await?;
    let found = match &query.run {
        Some(run) => find_in_run(catalog, query, &runs, run, now).await,
        None => find_newest(catalog, query, &runs, now).await,
    };
    found.map_err(|e| {
        e.or_component(query.component.clone())
            .or_operation("find dump")
            .with_context("database", query.database.clone())
    })
}

async fn find_newest(
    catalog: &Catalog,
    query: &DumpQuery,
    runs: &[RunSummary],
    now: DateTime<Utc>,
) -> Result<FoundDump> {
    let mut warnings = Vec::new();
    let mut verified_hold = BTreeSet::new();
    let mut unverified_with_it = Vec::new();
    for run in runs {
        let manifest = match catalog.read_manifest(&run.run_id).await {
            Ok(m) => m,
            Err(e) => {
                warnings.push(format!(
                    "run {} was skipped: its manifest cannot be read ({e})",
                    run.run_id
                ));
                continue;
            }
        };
        let dumps = dumps_in(&manifest, &query.component, &mut warnings);
        if run.verified {
            verified_hold.extend(dumps.iter().filter_map(|(_, f)| f.database.clone()));
        }
        let mut matching = matching(dumps, &query.database);
        if matching.is_empty() {
            continue;
        }
        if let Some(w) = future_warning(&manifest, now) {
            warnings.push(w);
        }
        if !run.verified && !query.allow_unverified {
            warnings.push(format!(
                "run {} holds a dump of '{}' but is not verified: skipped",
                run.run_id, query.database
            ));
            unverified_with_it.push(run.run_id.to_string());
            continue;
        }
        let (artifact, facts) = single(&mut matching, &manifest, &query.database)?;
        return Ok(FoundDump {
            manifest,
            artifact,
            facts,
            warnings,
        });
    }
    let wanted = &query.database;
    let hint = if !unverified_with_it.is_empty() {
        format!(
            "runs {} hold one but are not verified: verify them (Catalog::verify_run), or allow unverified runs",
            unverified_with_it.join(", ")
        )
    } else if verified_hold.is_empty() {
        format!(
            "no complete, verified run holds any '{}' dump: back the database up first",
            query.component
        )
    } else {
        format!(
            "verified runs hold dumps of: {}; name one of those, or restore into a database of that name",
            verified_hold.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    Err(Error::new(
        ErrorKind::NotFound,
        format!(
            "no complete, verified run in {} holds a dump of database '{wanted}'",
            catalog.sink().describe()
        ),
    )
    .with_hint(hint))
}

async fn find_in_run(
    catalog: &Catalog,
    query: &DumpQuery,
    runs: &[RunSummary],
    run: &RunId,
    now: DateTime<Utc>,
) -> Result<FoundDump> {
    let manifest = catalog.read_manifest(run).await?;
    let mut warnings = Vec::new();
    let dumps = dumps_in(&manifest, &query.component, &mut warnings);
    let held: Vec<String> = dumps
        .iter()
        .filter_map(|(_, f)| f.database.clone())
        .collect();
    let mut matching = matching(dumps, &query.database);
    if matching.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "run {run} holds no '{}' dump of database '{}'",
                query.component, query.database
            ),
        )
        .with_context("run", run.to_string())
        .with_hint(if held.is_empty() {
            "it holds no database dump: pick another run".to_string()
        } else {
            format!(
                "it holds dumps of: {}; name one of those, or pick another run",
                held.join(", ")
            )
        }));
    }
    // A later verification counts, as the catalog lists it.
    let verified = runs
        .iter()
        .find(|r| &r.run_id == run)
        .map_or_else(|| manifest.is_verified(), |r| r.verified);
    if !verified && !query.allow_unverified {
        return Err(Error::config(format!("run {run} is not verified"))
            .with_context("run", run.to_string())
            .with_hint("verify it first (Catalog::verify_run), pick a verified run, or allow unverified runs"));
    }
    if let Some(w) = future_warning(&manifest, now) {
        warnings.push(w);
    }
    let (artifact, facts) = single(&mut matching, &manifest, &query.database)?;
    Ok(FoundDump {
        manifest,
        artifact,
        facts,
        warnings,
    })
}

/// The database dumps of `component` in a run, with their facts; a dump whose facts cannot
/// be read is left out with a warning.
fn dumps_in(
    manifest: &Manifest,
    component: &str,
    warnings: &mut Vec<String>,
) -> Vec<(ArtifactRecord, PostgresFacts)> {
    let mut out = Vec::new();
    for a in &manifest.artifacts {
        if a.component != component || a.content_type != DUMP_CONTENT_TYPE {
            continue;
        }
        match a.facts_as::<PostgresFacts>() {
            Ok(f) => out.push((a.clone(), f)),
            Err(e) => warnings.push(format!(
                "run {}: the dump '{}' was skipped: its facts cannot be read ({e})",
                manifest.run_id, a.key
            )),
        }
    }
    out
}

fn matching(
    dumps: Vec<(ArtifactRecord, PostgresFacts)>,
    database: &str,
) -> Vec<(ArtifactRecord, PostgresFacts)> {
    dumps
        .into_iter()
        .filter(|(_, f)| f.database.as_deref() == Some(database))
        .collect()
}

fn single(
    matching: &mut Vec<(ArtifactRecord, PostgresFacts)>,
    manifest: &Manifest,
    database: &str,
) -> Result<(ArtifactRecord, PostgresFacts)> {
    if matching.len() > 1 {
        let keys: Vec<String> = matching.iter().map(|(a, _)| a.key.to_string()).collect();
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "run {} holds {} dumps of database '{database}': {}",
                manifest.run_id,
                matching.len(),
                keys.join(", ")
            ),
        )
        .with_hint("they come from different servers stored under one component: give each source its own component and pick it with DumpQuery::component"));
    }
    matching
        .pop()
        .ok_or_else(|| Error::internal("no matching dump left to pick"))
}

fn future_warning(manifest: &Manifest, now: DateTime<Utc>) -> Option<String> {
    let ahead = manifest.started_at - now;
    (ahead > FUTURE_TOLERANCE).then(|| {
        format!(
            "run {} is dated {}, {} in the future (now is {}): the clock of '{}', which made it, was probably wrong, so it sorts before every run made since; name the run to restore if it is not the one you want",
            manifest.run_id,
            manifest.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            human(ahead),
            now.format("%Y-%m-%d %H:%M:%S UTC"),
            manifest.host
        )
    })
}

fn human(d: Duration) -> String {
    if d.num_days() >= 2 {
        format!("{} days", d.num_days())
    } else if d.num_hours() >= 2 {
        format!("{} hours", d.num_hours())
    } else {
        format!("{} minutes", d.num_minutes().max(1))
    }
}

/// Why `globals.sql` is not restored.
pub(crate) fn globals_refused() -> Error {
    Error::new(ErrorKind::Unsupported, "globals.sql is not restored automatically")
        .with_hint("review it (it holds roles and password hashes) and apply what you need with `psql -f globals.sql`")
}

/// The dump of a run's `artifacts` a restore into `target` takes: the one of database
/// `wanted` when given; else the run's only dump; else, among several, the one of the
/// target's own name. Also whether a `globals.sql` was passed over. Fails naming the
/// databases the run holds when none fits, and with `Unsupported` when the run holds only
/// `globals.sql`.
pub(crate) fn choose_dump<'a>(
    artifacts: &[&'a ArtifactRecord],
    wanted: Option<&str>,
    target: &str,
) -> Result<(&'a ArtifactRecord, bool)> {
    let globals = artifacts
        .iter()
        .any(|a| a.content_type == GLOBALS_CONTENT_TYPE);
    let dumps: Vec<(&ArtifactRecord, Option<String>)> = artifacts
        .iter()
        .filter(|a| a.content_type == DUMP_CONTENT_TYPE)
        .map(|a| {
            let facts: Option<PostgresFacts> = a.facts_as().ok();
            (*a, facts.and_then(|f| f.database))
        })
        .collect();
    if dumps.is_empty() {
        if let (true, Some(a)) = (globals, artifacts.first()) {
            // Only globals given: the same refusal as restoring them by hand.
            return Err(globals_refused().with_artifact(a.key.to_string()));
        }
        return Err(Error::new(
            ErrorKind::NotFound,
            "the run holds no PostgreSQL custom-format dump",
        )
        .with_hint("pick a run that backed up a database"));
    }
    let named = |name: &str| dumps.iter().find(|(_, db)| db.as_deref() == Some(name));
    let chosen = match wanted {
        Some(name) => named(name),
        None if dumps.len() == 1 => dumps.first(),
        None => named(target),
    };
    let Some((artifact, _)) = chosen else {
        let held: Vec<&str> = dumps.iter().filter_map(|(_, db)| db.as_deref()).collect();
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "the run holds no dump of database '{}' (it holds {})",
                wanted.unwrap_or(target),
                held.join(", ")
            ),
        )
        .with_hint("name the database to restore with PostgresRestorer::from_database"));
    };
    Ok((artifact, globals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(started_at: &str, dumps: &[(&str, serde_json::Value)]) -> Manifest {
        let mut m: Manifest = serde_json::from_value(json!({
            "format_version": 1,
            "run_id": "20261124T080000Z-1a2b3c",
            "status": "complete",
            "started_at": started_at,
            "finished_at": started_at,
            "library_version": "0",
            "host": "backup-host",
            "artifacts": [],
        }))
        .unwrap();
        for (name, facts) in dumps {
            let mut a = crate::record_with_facts("postgres", "pg_dump", name, facts.clone());
            a.content_type = DUMP_CONTENT_TYPE.to_string();
            m.artifacts.push(a);
        }
        m
    }

    #[test]
    fn dumps_are_matched_by_their_recorded_database_and_unreadable_facts_are_reported() {
        let m = manifest(
            "2026-11-24T08:00:00Z",
            &[
                ("a.dump", json!({"database": "a"})),
                ("b.dump", json!({"database": "b"})),
                ("other.dump", json!({})),
                ("bad.dump", json!({"database": 7})),
            ],
        );
        let mut warnings = Vec::new();
        let dumps = dumps_in(&m, "postgres", &mut warnings);
        assert_eq!(dumps.len(), 3);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("bad.dump"), "{warnings:?}");
        let b = matching(dumps.clone(), "b");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].0.name, "b.dump");
        assert!(matching(dumps, "c").is_empty());
        assert!(dumps_in(&m, "postgres-other", &mut warnings).is_empty());
    }

    #[test]
    fn only_runs_dated_more_than_a_minute_ahead_are_in_the_future() {
        let now: DateTime<Utc> = "2026-11-24T08:00:00Z".parse().unwrap();
        let at = |s: &str| manifest(s, &[]);
        assert!(future_warning(&at("2026-11-24T08:00:30Z"), now).is_none());
        assert!(future_warning(&at("2026-11-24T07:00:00Z"), now).is_none());
        let w = future_warning(&at("2026-11-27T08:00:00Z"), now).unwrap();
        assert!(w.contains("3 days in the future"), "{w}");
        assert!(w.contains("'backup-host'"), "{w}");
        let w = future_warning(&at("2026-11-24T08:10:00Z"), now).unwrap();
        assert!(w.contains("10 minutes"), "{w}");
    }

    #[test]
    fn two_dumps_of_one_database_in_a_run_are_a_conflict() {
        let m = manifest(
            "2026-11-24T08:00:00Z",
            &[
                ("a.dump", json!({"database": "a"})),
                ("a-again.dump", json!({"database": "a"})),
            ],
        );
        let mut found = matching(dumps_in(&m, "postgres", &mut Vec::new()), "a");
        let err = single(&mut found, &m, "a").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(err.to_string().contains("a-again.dump"), "{err}");
    }

    #[test]
    fn a_restore_of_a_run_takes_its_only_dump_the_named_one_or_the_targets_own() {
        let one = manifest(
            "2026-11-24T08:00:00Z",
            &[("stoa.dump", json!({"database": "stoa"}))],
        );
        let mut globals =
            crate::record_with_facts("postgres", "pg_dumpall", "globals.sql", json!({}));
        globals.content_type = GLOBALS_CONTENT_TYPE.to_string();
        let mut with_globals: Vec<&ArtifactRecord> = one.artifacts.iter().collect();
        with_globals.push(&globals);
        // The only dump, whatever the target is called; globals passed over.
        let (a, passed_over) = choose_dump(&with_globals, None, "stoa_restored").unwrap();
        assert_eq!((a.name.as_str(), passed_over), ("stoa.dump", true));

        let two = manifest(
            "2026-11-24T08:00:00Z",
            &[
                ("a.dump", json!({"database": "a"})),
                ("b.dump", json!({"database": "b"})),
            ],
        );
        let both: Vec<&ArtifactRecord> = two.artifacts.iter().collect();
        assert_eq!(choose_dump(&both, Some("b"), "x").unwrap().0.name, "b.dump");
        assert_eq!(choose_dump(&both, None, "a").unwrap().0.name, "a.dump");
        let e = choose_dump(&both, None, "c").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.to_string().contains("'c'") && e.to_string().contains("a, b"),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("from_database"), "{e:?}");

        // Only globals: refused as by hand; nothing at all: not found.
        let e = choose_dump(&[&globals], None, "stoa").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert_eq!(e.artifact(), Some(globals.key.as_str()));
        assert_eq!(
            choose_dump(&[], None, "stoa").unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
