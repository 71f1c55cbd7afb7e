//! [`Restore`]: the restore driver, symmetric with the [`Pipeline`](crate::Pipeline). It
//! plans the restore of a run (preflight and every restorer's plan, no writes), then applies
//! the plan, component by component, in the order the restorers were given.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::codec::Keyring;
use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;
use crate::manifest::{ArtifactRecord, CodecStep, Manifest, RunId, RunStatus};
use crate::observer::{Event, NoopObserver, Observer};
use crate::sink::Sink;

use super::point::{PointQuery, RecoveryPoint};
use super::{
    ExistingDataPolicy, KeyKind, KeyNeeded, RestoreContext, RestoreOptions, RestoreReport, Restorer,
};

/// Restores runs: give it the sink, the keyring and one restorer per component, then
/// [`plan`](Self::plan) a run and [`apply`](Self::apply) the plan.
///
/// ```no_run
/// # async fn demo(manifest: stoa_backup_core::Manifest) -> stoa_backup_core::Result<()> {
/// use stoa_backup_core::{ExistingDataPolicy, FileRestorer, Keyring, MemorySink, Restore};
/// let restore = Restore::builder()
///     .sink(MemorySink::new())
///     .keyring(Keyring::new())
///     .restorer(FileRestorer::new("files", "/srv/restore"))
///     .existing(ExistingDataPolicy::Fail)
///     .build()?;
/// let plan = restore.plan(&manifest).await?; // reads and checks every artifact, writes nothing
/// println!("{}", plan.table());
/// let restored = restore.apply(&plan).await?;
/// # let _ = restored; Ok(()) }
/// ```
pub struct Restore {
    /// Where runs are stored, with their names: the primary first, then replicas.
    sinks: Vec<(String, Arc<dyn Sink>)>,
    keyring: Keyring,
    restorers: Vec<Arc<dyn Restorer>>,
    observer: Arc<dyn Observer>,
    cancel: CancellationToken,
    existing: ExistingDataPolicy,
}

impl fmt::Debug for Restore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restore")
            .field(
                "sinks",
                &self.sinks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("restorers", &components(&self.restorers))
            .field("keyring", &self.keyring)
            .field("existing", &self.existing)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Restore`].
#[derive(Default)]
pub struct RestoreBuilder {
    sink: Option<Arc<dyn Sink>>,
    sink_name: Option<String>,
    replicas: Vec<(String, Arc<dyn Sink>)>,
    keyring: Keyring,
    restorers: Vec<Arc<dyn Restorer>>,
    observer: Option<Arc<dyn Observer>>,
    cancel: Option<CancellationToken>,
    existing: ExistingDataPolicy,
}

impl fmt::Debug for RestoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestoreBuilder")
            .field("sink", &self.sink.as_ref().map(|s| s.describe()))
            .field("restorers", &components(&self.restorers))
            .field("existing", &self.existing)
            .finish_non_exhaustive()
    }
}

impl RestoreBuilder {
    /// Where the runs are stored (required; an `Arc<dyn Sink>` is a sink too). Reports name
    /// it by its [`describe`](Sink::describe).
    pub fn sink(mut self, sink: impl Sink + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self.sink_name = None;
        self
    }

    /// [`sink`](Self::sink), named `name` in reports ([`RestorePlan::origin`]) and recovery
    /// points (a configuration's name for the storage target, say `primary`), as
    /// [replicas](Self::replica) are.
    pub fn sink_named(mut self, name: impl Into<String>, sink: impl Sink + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self.sink_name = Some(name.into());
        self
    }

    /// Another storage target holding copies of the runs (a replica in a second region,
    /// [`Replicator`](crate::replicate::Replicator)), named for reports: the restore looks
    /// there too ([`find_point`](Restore::find_point), [`plan_run`](Restore::plan_run)),
    /// after the sink and the replicas added before, and uses it when the run is only there
    /// or the others cannot be read. Any [`Sink`], also an `Arc` of one.
    pub fn replica(mut self, name: impl Into<String>, sink: impl Sink + 'static) -> Self {
        self.replicas.push((name.into(), Arc::new(sink)));
        self
    }

    /// The identities that decrypt encrypted artifacts (empty for unencrypted runs).
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = keyring;
        self
    }

    /// The restorer of one component (an `Arc<dyn Restorer>` is a restorer too); components
    /// are restored in the order their restorers are added. Components of the run without a restorer are left out (and
    /// listed in the plan).
    pub fn restorer(mut self, restorer: impl Restorer + 'static) -> Self {
        self.restorers.push(Arc::new(restorer));
        self
    }

    /// Receives [`Event::RestoreStarted`] and [`Event::RestoreDone`] per component.
    pub fn observer(mut self, observer: impl Observer + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Stops the restore between objects (and reads mid-stream) once it fires.
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// What to do with data the targets already hold (default: fail).
    pub fn existing(mut self, policy: ExistingDataPolicy) -> Self {
        self.existing = policy;
        self
    }

    /// Checks the configuration: a sink, at least one restorer, one restorer per component.
    pub fn build(self) -> Result<Restore> {
        let cfg = |msg: String, hint: &str| {
            Error::config(msg)
                .with_operation("restore")
                .with_hint(hint.to_string())
        };
        let sink = self.sink.ok_or_else(|| {
            cfg(
                "a restore needs a sink".into(),
                "give Restore::builder().sink(...) the sink the runs are stored in",
            )
        })?;
        if self.restorers.is_empty() {
            return Err(cfg(
                "a restore needs at least one restorer".into(),
                "add a restorer per component to restore with .restorer(...)",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.restorers {
            if !seen.insert(r.component().to_string()) {
                return Err(cfg(
                    format!("two restorers for component '{}'", r.component()),
                    "give one restorer per component",
                ));
            }
        }
        let name = self.sink_name.unwrap_or_else(|| sink.describe());
        let mut sinks = vec![(name, sink)];
        sinks.extend(self.replicas);
        Ok(Restore {
            sinks,
            keyring: self.keyring,
            restorers: self.restorers,
            observer: self.observer.unwrap_or_else(|| Arc::new(NoopObserver)),
            cancel: self.cancel.unwrap_or_default(),
            existing: self.existing,
        })
    }
}

/// What restoring one run would do: per component, what its restorer reported in its plan.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The run planned.
    pub run_id: RunId,
    /// The storage target the run is read from: the sink's name
    /// ([`sink_named`](RestoreBuilder::sink_named), else its [`describe`](Sink::describe)), or
    /// the name of the [replica](RestoreBuilder::replica) it was found in.
    pub origin: String,
    /// The existing-data policy planned with (and applied with).
    pub existing: ExistingDataPolicy,
    /// The components to restore, in the order they will be restored.
    pub components: Vec<ComponentPlan>,
    /// Components the run holds that no restorer was given for: left alone.
    pub not_restored: Vec<String>,
    /// The run's manifest, as planned from.
    #[serde(skip)]
    pub manifest: Manifest,
}

/// One component's part of a [`RestorePlan`].
#[derive(Debug, Clone, Serialize)]
pub struct ComponentPlan {
    /// The component.
    pub component: String,
    /// Its artifacts in the run.
    pub artifacts: Vec<ObjectKey>,
    /// What its restore would do.
    pub report: RestoreReport,
    /// The age recipients whose identities decrypt its artifacts (the keyring holds one for
    /// each, or the plan would have failed), `passphrase` for passphrase-encrypted ones.
    pub keys_needed: Vec<String>,
    /// Every key its restore needs, with what it is for: the age identities (or passphrase)
    /// of its encrypted artifacts first, then what its restorer reported
    /// ([`Restorer::keys_needed`]). None is known to be missing, or the plan would have
    /// failed.
    pub keys: Vec<KeyNeeded>,
    /// How long its preflight and plan took, in milliseconds.
    pub duration_ms: u64,
}

impl RestorePlan {
    /// The counts of every component added up.
    pub fn totals(&self) -> RestoreReport {
        let mut total = RestoreReport {
            dry_run: true,
            ..RestoreReport::default()
        };
        for c in &self.components {
            total.add_counts(&c.report);
        }
        total
    }

    /// The plan as a table: one line per component with its counts and keys, then the
    /// components left out.
    pub fn table(&self) -> String {
        let mut out = format!(
            "restore of run {} from {} (existing data: {:?})\n{:<24} {:>9} {:>7} {:>7} {:>7} {:>9}  keys\n",
            self.run_id,
            self.origin,
            self.existing,
            "component",
            "artifacts",
            "create",
            "update",
            "skip",
            "conflict"
        );
        for c in &self.components {
            out.push_str(&format!(
                "{:<24} {:>9} {:>7} {:>7} {:>7} {:>9}  {}\n",
                c.component,
                c.artifacts.len(),
                c.report.created,
                c.report.updated,
                c.report.skipped,
                c.report.conflicts,
                if c.keys_needed.is_empty() {
                    "-".to_string()
                } else {
                    c.keys_needed.join(", ")
                }
            ));
        }
        if !self.not_restored.is_empty() {
            out.push_str(&format!(
                "not restored (no restorer given): {}\n",
                self.not_restored.join(", ")
            ));
        }
        out
    }
}

/// What [`Restore::apply`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RunRestored {
    /// The run restored from.
    pub run_id: RunId,
    /// The storage target it was read from (the plan's origin).
    pub origin: String,
    /// Per component, in the order restored.
    pub components: Vec<ComponentRestored>,
    /// The whole restore, in milliseconds.
    pub duration_ms: u64,
}

/// One component's part of a [`RunRestored`].
#[derive(Debug, Clone, Serialize)]
pub struct ComponentRestored {
    /// The component.
    pub component: String,
    /// What its restorer did.
    pub report: RestoreReport,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

impl Restore {
    /// A builder.
    pub fn builder() -> RestoreBuilder {
        RestoreBuilder::default()
    }

    /// Plans the restore of the run `manifest` describes, writing nothing: every encrypted
    /// artifact must have an identity in the keyring, then every restorer runs its
    /// preflight, then its plan. A plan reads what its restorer needs to say what it would
    /// do (a realm export, a secrets document: all of it, checked against its digest; a
    /// database dump: nothing, as it is checked while it restores into a new database that
    /// replaces the live one only once the whole dump arrived intact). Fails, before any
    /// write, with the first reason the restore cannot run: a run that is not complete, a
    /// missing key, a preflight or a plan that failed.
    pub async fn plan(&self, manifest: &Manifest) -> Result<RestorePlan> {
        self.plan_in(0, manifest).await
    }

    /// Picks a recovery point across the sink and its [replicas](RestoreBuilder::replica)
    /// ([`RecoveryPoint::find_across`]): each picked run says where it was found; targets
    /// that cannot be listed are left out (and named in the point).
    pub async fn find_point(&self, query: &PointQuery) -> Result<RecoveryPoint> {
        let catalogs: Vec<(String, Catalog)> = self
            .sinks
            .iter()
            .map(|(n, s)| (n.clone(), Catalog::new(s.clone())))
            .collect();
        let refs: Vec<(&str, &Catalog)> = catalogs.iter().map(|(n, c)| (n.as_str(), c)).collect();
        RecoveryPoint::find_across(&refs, query).await
    }

    /// Plans the restore of run `run` from the first storage target (the sink, then the
    /// [replicas](RestoreBuilder::replica) in order) that holds it complete; one that cannot
    /// be read is passed over, so a replica serves when the primary is down. The plan says
    /// which target it reads from ([`RestorePlan::origin`]), and [`apply`](Self::apply) reads
    /// from that one. Fails with the first target's error when none holds the run.
    pub async fn plan_run(&self, run: &RunId) -> Result<RestorePlan> {
        self.plan_run_from(run, None).await
    }

    /// [`plan_run`](Self::plan_run) from the target named `origin` only (a recovery point's
    /// [`PickedRun::origin`](crate::PickedRun)); `None` tries every target in order.
    pub async fn plan_run_from(&self, run: &RunId, origin: Option<&str>) -> Result<RestorePlan> {
        let mut first_error = None;
        for (i, (name, sink)) in self.sinks.iter().enumerate() {
            if origin.is_some_and(|o| o != name) {
                continue;
            }
            match Catalog::new(sink.clone()).read_manifest(run).await {
                Ok(m) => return self.plan_in(i, &m).await,
                Err(e) => {
                    tracing::warn!(run = %run, target_name = %name, error = %e, "the run cannot be read from this storage target; trying the next");
                    first_error.get_or_insert(e.with_context("target", name.clone()));
                }
            }
        }
        Err(first_error.unwrap_or_else(|| {
            Error::config(format!(
                "no storage target of this restore is named {}",
                origin.unwrap_or("-")
            ))
            .with_operation("plan restore")
            .with_hint("name the sink (its name, or its describe) or one of the replicas given to the builder")
        }))
    }

    /// Plans from the sink at `index` in `sinks`.
    async fn plan_in(&self, index: usize, manifest: &Manifest) -> Result<RestorePlan> {
        let (origin, sink) = &self.sinks[index];
        if manifest.status != RunStatus::Complete {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "run {} is {:?}, not complete: it is not a usable backup",
                    manifest.run_id, manifest.status
                ),
            )
            .with_operation("plan restore")
            .with_hint("pick a complete run (the catalog lists them)"));
        }
        let by_component = group(manifest);
        let mut keys = BTreeMap::new();
        for restorer in &self.restorers {
            let Some(artifacts) = by_component.get(restorer.component()) else {
                continue;
            };
            keys.insert(restorer.component().to_string(), self.keys_for(artifacts)?);
        }
        let mut components = Vec::new();
        for restorer in &self.restorers {
            let component = restorer.component();
            let Some(artifacts) = by_component.get(component) else {
                continue;
            };
            let started = Instant::now();
            self.observer.on_event(&Event::RestoreStarted {
                run_id: &manifest.run_id,
                component,
                artifacts: artifacts.len(),
                dry_run: true,
            });
            let ctx = self.context(sink, artifacts, true);
            let named = |e: Error, op: &str| e.or_component(component).or_operation(op.to_string());
            restorer
                .preflight(&ctx)
                .await
                .map_err(|e| named(e, "preflight restore"))?;
            let age_keys = keys.remove(component).unwrap_or_default();
            let mut all_keys: Vec<KeyNeeded> = age_keys
                .iter()
                .map(|k| KeyNeeded {
                    kind: if k == "passphrase" {
                        KeyKind::Passphrase
                    } else {
                        KeyKind::AgeIdentity
                    },
                    name: k.clone(),
                    detail: "decrypts the component's artifacts".into(),
                    held: Some(true),
                })
                .collect();
            let restorer_keys = restorer
                .keys_needed(&ctx)
                .await
                .map_err(|e| named(e, "plan restore"))?;
            if let Some(missing) = restorer_keys.iter().find(|k| k.held == Some(false)) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "the restore of '{component}' needs {}, which is not at hand: {}",
                        missing.name, missing.detail
                    ),
                )
                .with_component(component)
                .with_operation("plan restore")
                .with_hint("give the restorer the key (or say where it is) before restoring"));
            }
            all_keys.extend(restorer_keys);
            let report = restorer
                .plan(&ctx)
                .await
                .map_err(|e| named(e, "plan restore"))?;
            self.observer.on_event(&Event::RestoreDone {
                run_id: &manifest.run_id,
                component,
                report: &report,
                duration: started.elapsed(),
            });
            components.push(ComponentPlan {
                component: component.to_string(),
                artifacts: artifacts.iter().map(|a| a.key.clone()).collect(),
                report,
                keys_needed: age_keys,
                keys: all_keys,
                duration_ms: millis(started.elapsed()),
            });
        }
        let not_restored = by_component
            .keys()
            .filter(|c| !self.restorers.iter().any(|r| r.component() == c.as_str()))
            .cloned()
            .collect();
        Ok(RestorePlan {
            run_id: manifest.run_id.clone(),
            origin: origin.clone(),
            existing: self.existing,
            components,
            not_restored,
            manifest: manifest.clone(),
        })
    }

    /// Applies `plan` (from [`plan`](Self::plan) of this restore): each component restored
    /// in turn by its restorer. Stops at the first failure with an error naming the
    /// component and what was restored before it. A plan with conflicts under the `Fail`
    /// policy is refused before anything is written.
    pub async fn apply(&self, plan: &RestorePlan) -> Result<RunRestored> {
        let started = Instant::now();
        if plan.existing != self.existing {
            return Err(Error::config(format!(
                "the plan was made with existing-data policy {:?}, this restore has {:?}",
                plan.existing, self.existing
            ))
            .with_operation("restore")
            .with_hint("plan again with this restore and apply that plan"));
        }
        let conflicting: Vec<&str> = plan
            .components
            .iter()
            .filter(|c| c.report.conflicts > 0)
            .map(|c| c.component.as_str())
            .collect();
        if self.existing == ExistingDataPolicy::Fail && !conflicting.is_empty() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "the targets of {} already hold data the backup would replace",
                    conflicting.join(", ")
                ),
            )
            .with_operation("restore")
            .with_hint("look at the plan's conflicts; restore with ExistingDataPolicy::Overwrite to replace them or Skip to keep them"));
        }
        let sink = self
            .sinks
            .iter()
            .find(|(n, _)| *n == plan.origin)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                Error::config(format!(
                    "the plan reads from {}, which this restore does not have",
                    plan.origin
                ))
                .with_operation("restore")
                .with_hint("apply a plan with the restore that made it")
            })?;
        let by_component = group(&plan.manifest);
        let mut done: Vec<ComponentRestored> = Vec::new();
        for step in &plan.components {
            let component = step.component.as_str();
            let restorer = self
                .restorers
                .iter()
                .find(|r| r.component() == component)
                .ok_or_else(|| {
                    Error::config(format!(
                        "no restorer for '{component}', which the plan holds"
                    ))
                    .with_component(component)
                    .with_operation("restore")
                    .with_hint("apply a plan with the restore that made it")
                })?;
            let artifacts = by_component.get(component).cloned().unwrap_or_default();
            let ctx = self.context(sink, &artifacts, false);
            let failed = |e: Error| {
                let before: Vec<&str> = done.iter().map(|d| d.component.as_str()).collect();
                let e = e.or_component(component).or_operation("restore");
                if before.is_empty() {
                    e
                } else {
                    e.with_context("restored before it", before.join(", "))
                }
            };
            ctx.check_cancelled().map_err(failed)?;
            let t0 = Instant::now();
            self.observer.on_event(&Event::RestoreStarted {
                run_id: &plan.run_id,
                component,
                artifacts: artifacts.len(),
                dry_run: false,
            });
            let report = restorer.restore(&ctx).await.map_err(failed)?;
            self.observer.on_event(&Event::RestoreDone {
                run_id: &plan.run_id,
                component,
                report: &report,
                duration: t0.elapsed(),
            });
            done.push(ComponentRestored {
                component: component.to_string(),
                report,
                duration_ms: millis(t0.elapsed()),
            });
        }
        Ok(RunRestored {
            run_id: plan.run_id.clone(),
            origin: plan.origin.clone(),
            components: done,
            duration_ms: millis(started.elapsed()),
        })
    }

    fn context<'a>(
        &'a self,
        sink: &'a Arc<dyn Sink>,
        artifacts: &[&'a ArtifactRecord],
        dry_run: bool,
    ) -> RestoreContext<'a> {
        RestoreContext::new(
            sink.as_ref(),
            &self.keyring,
            artifacts.to_vec(),
            RestoreOptions {
                existing: self.existing,
                dry_run,
            },
        )
        .with_cancel(self.cancel.clone())
    }

    /// The keys the artifacts need; fails naming the first one the keyring lacks.
    fn keys_for(&self, artifacts: &[&ArtifactRecord]) -> Result<Vec<String>> {
        let mut needed = Vec::new();
        for a in artifacts {
            for step in &a.codecs {
                let CodecStep::Age {
                    recipients,
                    passphrase,
                } = step
                else {
                    continue;
                };
                let (held, what) = if *passphrase {
                    (
                        self.keyring.has_passphrase(),
                        vec!["passphrase".to_string()],
                    )
                } else {
                    (
                        recipients.iter().any(|r| self.keyring.decrypts_for(r)),
                        recipients.clone(),
                    )
                };
                if !held {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!(
                            "no key to decrypt '{}': it is encrypted to {}",
                            a.key,
                            what.join(", ")
                        ),
                    )
                    .with_component(a.component.clone())
                    .with_operation("plan restore")
                    .with_artifact(a.key.to_string())
                    .with_hint("add the matching age identity (or the passphrase) to the keyring before restoring"));
                }
                for w in what {
                    if !needed.contains(&w) {
                        needed.push(w);
                    }
                }
            }
        }
        Ok(needed)
    }
}

/// The components of `restorers`, for `Debug`.
fn components(restorers: &[Arc<dyn Restorer>]) -> Vec<&str> {
    restorers.iter().map(|r| r.component()).collect()
}

/// The run's artifacts by component, in manifest order.
fn group(manifest: &Manifest) -> BTreeMap<String, Vec<&ArtifactRecord>> {
    let mut by: BTreeMap<String, Vec<&ArtifactRecord>> = BTreeMap::new();
    for a in &manifest.artifacts {
        by.entry(a.component.clone()).or_default().push(a);
    }
    by
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
