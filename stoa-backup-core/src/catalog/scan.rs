//! Reading the sink into run summaries: one listing, then each run's manifest or report,
//! checked against the listing. A run whose records cannot be read, or whose manifest names
//! an artifact the listing does not hold at the recorded size, is reported damaged; it does
//! not stop the rest of the catalog.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::error::Error as _;

use chrono::{DateTime, Utc};

use super::{Catalog, RunVerification, PIN_FILE};
use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;
use crate::manifest::{
    Manifest, RunDamage, RunId, RunStatus, RunSummary, HEARTBEAT_FILE, MANIFEST_FILE, REPORT_FILE,
    RUNS_PREFIX, VERIFICATIONS_DIR,
};
use crate::sink::{ObjectMeta, SinkExt};

/// One listing of `runs/`, grouped by run.
pub(super) struct Listing {
    pub(super) runs: BTreeMap<RunId, RunObjects>,
    /// Size of every listed object, to check manifests against without reading artifacts.
    sizes: HashMap<ObjectKey, u64>,
    /// The newest `last_modified` in the whole listing: the storage's clock, at least.
    storage_now: Option<DateTime<Utc>>,
}

/// What the listing holds for one run.
#[derive(Default)]
pub(super) struct RunObjects {
    pub(super) manifest: bool,
    report: bool,
    pinned: bool,
    verifications: Vec<ObjectKey>,
    /// Objects under `runs/<id>/<component>/…`: the run's artifacts.
    artifacts: Vec<ObjectKey>,
    /// Every object of the run, records and heartbeat included.
    pub(super) objects: Vec<ObjectMeta>,
}

impl RunObjects {
    fn last_activity(&self) -> Option<DateTime<Utc>> {
        self.objects.iter().filter_map(|o| o.last_modified).max()
    }
}

/// A record read: its content, damage (unreadable, gone), or a storage failure (the `Err`).
type Read<T> = Result<std::result::Result<T, RunDamage>>;

fn damage(kind: ErrorKind, key: &ObjectKey, reason: String, hint: &str) -> RunDamage {
    RunDamage {
        kind,
        key: key.clone(),
        reason,
        hint: hint.to_string(),
    }
}

const REMOVE_BY_HAND: &str = "restore from another run; retention never deletes a damaged \
     run: inspect it and delete its directory by hand once it is no longer needed";

/// Damage from a record that did not parse (its kind and hint kept: newer formats say to
/// upgrade).
fn unreadable(what: &str, key: &ObjectKey, e: &Error) -> RunDamage {
    let mut reason = format!("its {what} cannot be read: {}", e.message());
    if let Some(source) = e.source() {
        reason.push_str(&format!(": {source}"));
    }
    damage(e.kind(), key, reason, e.hint().unwrap_or(REMOVE_BY_HAND))
}

impl Catalog {
    /// Lists `runs/` once and groups the objects by run.
    pub(super) async fn scan(&self) -> Result<Listing> {
        let objects = self
            .sink
            .list(RUNS_PREFIX)
            .await
            .map_err(|e| e.or_component("catalog").or_operation("list runs"))?;
        let storage_now = objects.iter().filter_map(|o| o.last_modified).max();
        let mut sizes = HashMap::with_capacity(objects.len());
        let mut runs: BTreeMap<RunId, RunObjects> = BTreeMap::new();
        for o in objects {
            sizes.insert(o.key.clone(), o.size);
            let mut seg = o.key.segments();
            let (Some(_runs), Some(id)) = (seg.next(), seg.next()) else {
                continue;
            };
            let Ok(id) = RunId::parse(id) else { continue };
            let rest: Vec<&str> = seg.collect();
            let entry = runs.entry(id).or_default();
            match rest.as_slice() {
                [f] if *f == MANIFEST_FILE => entry.manifest = true,
                [f] if *f == REPORT_FILE => entry.report = true,
                [f] if *f == PIN_FILE => entry.pinned = true,
                // Activity only, never an artifact.
                [f] if *f == HEARTBEAT_FILE => {}
                [d, _] if *d == VERIFICATIONS_DIR => entry.verifications.push(o.key.clone()),
                [_, _, ..] => entry.artifacts.push(o.key.clone()),
                _ => {}
            }
            entry.objects.push(o);
        }
        Ok(Listing {
            runs,
            sizes,
            storage_now,
        })
    }

    /// Every run of a listing, newest first. Fails only when the sink fails; damaged runs
    /// are summaries with [`RunStatus::Damaged`].
    pub(super) async fn summaries(&self, listing: &Listing) -> Result<Vec<RunSummary>> {
        let mut out = Vec::with_capacity(listing.runs.len());
        for (id, objs) in &listing.runs {
            out.push(self.summarize(id, objs, listing).await?);
        }
        out.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then(b.run_id.cmp(&a.run_id))
        });
        Ok(out)
    }

    async fn summarize(
        &self,
        id: &RunId,
        objs: &RunObjects,
        listing: &Listing,
    ) -> Result<RunSummary> {
        let components: BTreeSet<String> = objs
            .artifacts
            .iter()
            .filter_map(|k| k.segments().nth(2).map(str::to_string))
            .collect();
        // What the listing alone says; records refine it.
        let mut summary = RunSummary {
            pinned: objs.pinned,
            components: components.into_iter().collect(),
            stored_bytes: objs.objects.iter().map(|o| o.size).sum(),
            last_activity: objs.last_activity(),
            storage_now: listing.storage_now,
            ..RunSummary::new(
                id.clone(),
                id.timestamp()
                    .or_else(|| objs.objects.iter().filter_map(|o| o.last_modified).min())
                    .unwrap_or_else(Utc::now),
                RunStatus::Incomplete,
            )
        };
        let record = if objs.manifest {
            id.manifest_key()
        } else if objs.report {
            id.report_key()
        } else {
            // No manifest, no report: crashed or still running.
            return Ok(summary);
        };
        let what = if objs.manifest { "manifest" } else { "report" };
        let m = match self.read_record(id, &record, what).await? {
            Ok(m) => m,
            Err(d) => return Ok(damaged(summary, d)),
        };
        summary.started_at = m.started_at;
        summary.labels = m.labels.clone();
        summary.components = m.components();
        summary.pinned = m.pinned || objs.pinned;
        if !objs.manifest {
            // A report never makes a backup, whatever status it claims.
            summary.status = match m.status {
                RunStatus::Complete | RunStatus::Damaged => RunStatus::Incomplete,
                s => s,
            };
            return Ok(summary);
        }
        summary.status = RunStatus::Complete;
        if let Some(d) = missing_artifact(&m, listing) {
            return Ok(damaged(summary, d));
        }
        summary.verified = m.is_verified();
        summary.verified_at = summary.verified.then_some(m.finished_at);
        if let Some(latest) = objs.verifications.iter().max() {
            // A later verification supersedes what the run itself recorded.
            match self.read_verification(latest).await? {
                Ok(v) => {
                    summary.verified = v.ok;
                    summary.verified_at = v.ok.then_some(v.at);
                }
                Err(d) => return Ok(damaged(summary, d)),
            }
        }
        Ok(summary)
    }

    /// Reads a manifest or report of run `id`, checking it is that run's.
    async fn read_record(&self, id: &RunId, key: &ObjectKey, what: &str) -> Read<Manifest> {
        let bytes = match self.read_listed(key, what).await? {
            Ok(b) => b,
            Err(d) => return Ok(Err(d)),
        };
        let m = match Manifest::from_json(&bytes) {
            Ok(m) => m,
            Err(e) => return Ok(Err(unreadable(what, key, &e))),
        };
        if &m.run_id != id {
            return Ok(Err(damage(
                ErrorKind::Integrity,
                key,
                format!("its {what} is the record of another run ({})", m.run_id),
                REMOVE_BY_HAND,
            )));
        }
        Ok(Ok(m))
    }

    async fn read_verification(&self, key: &ObjectKey) -> Read<RunVerification> {
        let bytes = match self.read_listed(key, "verification record").await? {
            Ok(b) => b,
            Err(d) => return Ok(Err(d)),
        };
        Ok(serde_json::from_slice(&bytes).map_err(|e| {
            damage(
                ErrorKind::Integrity,
                key,
                format!("its latest verification record cannot be read: {e}"),
                "verify the run again with Catalog::verify_run, or restore from another run",
            )
        }))
    }

    /// Reads an object the listing showed; gone by now is damage, other failures are the
    /// sink's.
    async fn read_listed(&self, key: &ObjectKey, what: &str) -> Read<Vec<u8>> {
        match self.sink.get_bytes(key).await {
            Ok(b) => Ok(Ok(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Err(damage(
                ErrorKind::NotFound,
                key,
                format!("its {what} was listed but is gone"),
                "another process may be deleting the run: list the catalog again",
            ))),
            Err(e) => Err(e
                .or_component("catalog")
                .or_operation(format!("read {what}"))
                .or_artifact(key.to_string())),
        }
    }
}

fn damaged(summary: RunSummary, d: RunDamage) -> RunSummary {
    RunSummary {
        status: RunStatus::Damaged,
        verified: false,
        verified_at: None,
        damage: Some(d),
        ..summary
    }
}

/// The first artifact the manifest names that the listing lacks or holds at another size.
/// Keys outside `runs/` are not in the listing and not checked.
fn missing_artifact(m: &Manifest, listing: &Listing) -> Option<RunDamage> {
    m.artifacts
        .iter()
        .filter(|a| a.key.starts_with_prefix(RUNS_PREFIX))
        .find_map(|a| match listing.sizes.get(&a.key) {
            None => Some(damage(
                ErrorKind::Integrity,
                &a.key,
                format!("artifact {} of {} is missing", a.name, a.component),
                REMOVE_BY_HAND,
            )),
            Some(&size) if size != a.stored_size => Some(damage(
                ErrorKind::Integrity,
                &a.key,
                format!(
                    "artifact {} of {} holds {size} bytes, the manifest records {}",
                    a.name, a.component, a.stored_size
                ),
                REMOVE_BY_HAND,
            )),
            Some(_) => None,
        })
}
