//! Planning retention over the catalog, and applying a plan with the checks that keep a
//! stale or wrong plan from deleting what must stay.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::{Catalog, PIN_FILE};
use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;
use crate::lock::{Lease, LockScope};
use crate::manifest::{Manifest, RunId, RunStatus, RunSummary};
use crate::retention::{protected_runs, KeepReason, RetentionPlan, RetentionPolicy, RunDecision};
use crate::sink::{ObjectMeta, SinkExt};

/// Why a forgotten run is left alone after all.
enum Skip {
    Gone,
    Pinned,
    StatusChanged(RunStatus),
    ActiveSincePlanned,
    Finished,
    Locked(String),
}

impl Skip {
    fn why(&self) -> String {
        match self {
            Skip::Gone => "it is no longer in the sink".into(),
            Skip::Pinned => "it was pinned after the plan was made".into(),
            Skip::StatusChanged(s) => format!("its status changed to {s} after the plan was made"),
            Skip::ActiveSincePlanned => "it has written since the plan was made".into(),
            Skip::Finished => "its manifest appeared after the sink was listed".into(),
            Skip::Locked(why) => why.clone(),
        }
    }
}

fn refuse(message: String, hint: &str) -> Error {
    Error::new(ErrorKind::Conflict, message)
        .with_component("catalog")
        .with_operation("apply retention")
        .with_hint(hint.to_string())
}

impl Catalog {
    /// Plans retention over every run in the sink, damaged ones included (policies keep them).
    /// Fails (and plans nothing) if the listing, or reading any run's records, fails.
    pub async fn plan_retention(
        &self,
        policy: &dyn RetentionPolicy,
        now: DateTime<Utc>,
    ) -> Result<RetentionPlan> {
        let runs = self.list_all().await?;
        Ok(policy.plan(&runs, now))
    }

    /// Applies a plan: for each forgotten run, deletes its manifest first (so a half-deleted
    /// run never reads as complete), then everything else. Returns the removed runs.
    ///
    /// It lists the sink again first and deletes nothing when that listing (or reading a
    /// run's records) fails. It refuses the whole plan, deleting nothing, when the plan
    /// forgets a run that is damaged now, or the newest complete or newest verified run of
    /// one of its components now (a policy ignoring the always-rules, or a sink changed
    /// since planning: plan again). It leaves a forgotten run alone, and goes on with the
    /// others, when the run is pinned now, is gone, changed status, or (unfinished runs)
    /// has written since the plan saw it. Right before deleting a run it reads its pin and
    /// manifest again, so a pin set while the plan is applied is honoured too. When a
    /// deletion fails it stops: the runs removed before stay removed, the failing one may
    /// be left half-deleted (without a manifest, so it reads as incomplete and is cleaned up
    /// later).
    ///
    /// It leaves alone, too, every forgotten run of a component whose run lock is held now
    /// (a run of it is writing: its lease is neither expired nor released), and the
    /// unfinished run a held lease names; the runs of the other components are applied as
    /// planned. The leases are those in the sink (`locks/`, when the sink has conditional
    /// puts) or those of [`Catalog::with_lock`]; a lease that cannot be read fails the call
    /// and deletes nothing. Runs that name no component yet (a run whose first artifact is
    /// still being written) are protected by the policy's grace period for unfinished runs,
    /// and by their heartbeat.
    pub async fn apply_retention(&self, plan: &RetentionPlan) -> Result<Vec<RunId>> {
        let listing = self
            .scan()
            .await
            .map_err(|e| e.or_operation("apply retention"))?;
        let runs = self
            .summaries(&listing)
            .await
            .map_err(|e| e.or_operation("apply retention"))?;
        let protected = protected_runs(&runs);
        let listed: HashMap<&RunId, &RunSummary> = runs.iter().map(|r| (&r.run_id, r)).collect();

        // Check the whole plan against the sink as it is now, before deleting anything.
        let mut todo: Vec<(&RunDecision, &[ObjectMeta])> = Vec::new();
        for d in plan.forgotten() {
            let current = listed.get(&d.run_id).copied();
            let objects = listing.runs.get(&d.run_id).map(|o| o.objects.as_slice());
            let (Some(current), Some(objects)) = (current, objects) else {
                skipped(&d.run_id, Skip::Gone);
                continue;
            };
            if let Some(damage) = &current.damage {
                return Err(damage
                    .to_error(&d.run_id)
                    .with_operation("apply retention")
                    .with_hint(format!(
                        "the plan forgets a damaged run and retention never deletes one: \
                         nothing was deleted; {}",
                        damage.hint
                    )));
            }
            if let Some(why) = protected.get(&d.run_id) {
                let (reason, component) = &why[0];
                let what = match reason {
                    KeepReason::NewestVerified => "newest verified",
                    _ => "newest complete",
                };
                let of = if component.is_empty() {
                    "the runs naming no component".to_string()
                } else {
                    format!("component {component}")
                };
                return Err(refuse(
                    format!("the plan forgets run {}, the {what} run of {of}", d.run_id),
                    "the policy ignores the always-rules, or runs changed since planning: plan \
                     again with a policy of the retention module; nothing was deleted",
                ));
            }
            if let Some(skip) = stale(d, current) {
                skipped(&d.run_id, skip);
                continue;
            }
            todo.push((d, objects));
        }

        // Nothing of a component a run is writing now: its lease is checked after the plan,
        // against the sink as listed.
        let held = self.held_leases(&runs).await?;
        todo.retain(|(d, _)| {
            let components = listed.get(&d.run_id).map_or(&[][..], |r| &r.components[..]);
            match held
                .iter()
                .find(|l| l.run_id.as_ref() == Some(&d.run_id) || components.contains(&l.component))
            {
                Some(lease) => {
                    skipped(
                        &d.run_id,
                        Skip::Locked(format!(
                            "component {} is being backed up by {} (lease since {}, expires {})",
                            lease.component,
                            lease.holder_description(),
                            lease.acquired_at,
                            lease.expires_at
                        )),
                    );
                    false
                }
                None => true,
            }
        });

        let mut removed = Vec::new();
        for (d, objects) in todo {
            if let Some(skip) = self.recheck(d).await? {
                skipped(&d.run_id, skip);
                continue;
            }
            self.delete_run(&d.run_id, objects).await?;
            removed.push(d.run_id.clone());
        }
        Ok(removed)
    }

    /// The leases held now of every component the runs name.
    async fn held_leases(&self, runs: &[RunSummary]) -> Result<Vec<Lease>> {
        let Some(lock) = self.lease_lock() else {
            return Ok(Vec::new());
        };
        let components: BTreeSet<&str> = runs
            .iter()
            .flat_map(|r| r.components.iter().map(String::as_str))
            .collect();
        let target = self.sink.describe();
        let mut held = Vec::new();
        for component in components {
            match lock.current(&LockScope::new(component, target.clone())).await {
                Ok(Some(lease)) if lease.is_held_at(Utc::now()) => held.push(lease),
                Ok(_) => {}
                // A sink layer that does not pass conditional reads on: no lease can be taken
                // through it either.
                Err(e)
                    if e.kind() == ErrorKind::Unsupported
                        && e.operation() == Some("get versioned") =>
                {
                    tracing::debug!(error = %e, "run locks cannot be read through this sink");
                    return Ok(Vec::new());
                }
                Err(e) => {
                    return Err(e
                        .or_component("catalog")
                        .with_operation("apply retention")
                        .or_hint("the run lock of a component could not be read, so retention deleted nothing: check the storage and run it again"))
                }
            }
        }
        Ok(held)
    }

    /// Reads the run's pin and manifest again right before it is deleted.
    async fn recheck(&self, d: &RunDecision) -> Result<Option<Skip>> {
        let pin = ObjectKey::new(format!("{}/{PIN_FILE}", d.run_id.prefix()))?;
        let check = |e: Error| e.or_component("catalog").or_operation("apply retention");
        if self.sink.exists(&pin).await.map_err(check)? {
            return Ok(Some(Skip::Pinned));
        }
        let manifest = d.run_id.manifest_key();
        if d.status != RunStatus::Complete {
            let finished = self.sink.exists(&manifest).await.map_err(check)?;
            return Ok(finished.then_some(Skip::Finished));
        }
        let m = match self.sink.get_bytes(&manifest).await {
            Ok(bytes) => Manifest::from_json(&bytes).map_err(|e| {
                e.with_component("catalog")
                    .with_operation("apply retention")
                    .with_artifact(manifest.to_string())
                    .with_hint(
                        "the run's manifest became unreadable while retention was applied: \
                         it was left alone; the runs listed before it were removed",
                    )
            })?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Some(Skip::Gone)),
            Err(e) => return Err(check(e)),
        };
        Ok(m.pinned.then_some(Skip::Pinned))
    }

    async fn delete_run(&self, run: &RunId, objects: &[ObjectMeta]) -> Result<()> {
        let manifest = run.manifest_key();
        let delete = |key: ObjectKey| async move {
            self.sink.delete(&key).await.map_err(|e| {
                e.or_component("catalog")
                    .or_operation("apply retention")
                    .or_artifact(key.to_string())
            })
        };
        if objects.iter().any(|o| o.key == manifest) {
            delete(manifest.clone()).await?;
        }
        for o in objects.iter().filter(|o| o.key != manifest) {
            delete(o.key.clone()).await?;
        }
        Ok(())
    }
}

/// Whether the sink changed for this run since the plan was made.
fn stale(d: &RunDecision, current: &RunSummary) -> Option<Skip> {
    if current.pinned {
        return Some(Skip::Pinned);
    }
    if current.status != d.status {
        return Some(Skip::StatusChanged(current.status));
    }
    let active_since = match (current.last_activity, d.last_activity) {
        (Some(now), Some(then)) => now > then,
        (Some(_), None) => true,
        _ => false,
    };
    (current.status != RunStatus::Complete && active_since).then_some(Skip::ActiveSincePlanned)
}

fn skipped(run: &RunId, skip: Skip) {
    tracing::info!(run = %run, why = %skip.why(), "retention leaves a forgotten run alone");
}
