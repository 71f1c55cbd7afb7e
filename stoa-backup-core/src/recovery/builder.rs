//! [`RecoveryBuilder`]: the steps of a recovery, their order, and what it restores from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::codec::Keyring;
use crate::error::{Error, Result};
use crate::observer::{NoopObserver, Observer};
use crate::restore::{ExistingDataPolicy, PointSelector, Restorer};
use crate::sink::Sink;

use super::{stoa_rank, Action, Checklist, Recovery, Step};

/// Builds a [`Recovery`]: [`Recovery::builder`] keeps the steps in the order given,
/// [`Recovery::stoa`] puts restore steps in STOA's order.
pub struct RecoveryBuilder {
    pub(super) sink: Option<(Option<String>, Arc<dyn Sink>)>,
    pub(super) replicas: Vec<(String, Arc<dyn Sink>)>,
    pub(super) keyring: Keyring,
    pub(super) observer: Option<Arc<dyn Observer>>,
    pub(super) cancel: Option<CancellationToken>,
    pub(super) existing: ExistingDataPolicy,
    pub(super) selector: Option<PointSelector>,
    pub(super) rpo: Option<Duration>,
    pub(super) rto: Option<Duration>,
    pub(super) steps: Vec<Step>,
    pub(super) stoa_order: bool,
}

impl fmt::Debug for RecoveryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryBuilder")
            .field(
                "sink",
                &self
                    .sink
                    .as_ref()
                    .map(|(n, s)| n.clone().unwrap_or_else(|| s.describe())),
            )
            .field(
                "replicas",
                &self.replicas.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field(
                "steps",
                &self.steps.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("existing", &self.existing)
            .finish_non_exhaustive()
    }
}

impl RecoveryBuilder {
    pub(super) fn new(stoa_order: bool) -> Self {
        RecoveryBuilder {
            sink: None,
            replicas: Vec::new(),
            keyring: Keyring::default(),
            observer: None,
            cancel: None,
            existing: ExistingDataPolicy::default(),
            selector: None,
            rpo: None,
            rto: None,
            steps: Vec::new(),
            stoa_order,
        }
    }

    /// Where the runs are stored, and where the recovery keeps its journal (required).
    /// Reports and recovery points name it by its [`describe`](Sink::describe).
    pub fn sink(mut self, sink: impl Sink + 'static) -> Self {
        self.sink = Some((None, Arc::new(sink)));
        self
    }

    /// [`sink`](Self::sink), named `name` in recovery points and plans (a configuration's
    /// name for the storage target), as [replicas](Self::replica) are.
    pub fn sink_named(mut self, name: impl Into<String>, sink: impl Sink + 'static) -> Self {
        self.sink = Some((Some(name.into()), Arc::new(sink)));
        self
    }

    /// Another storage target holding copies of the runs (a replica in a second region,
    /// [`Replicator`](crate::replicate::Replicator)), named for reports. With replicas, the
    /// recovery point is picked across the sink and them
    /// ([`RecoveryPoint::find_across`](crate::RecoveryPoint::find_across): per component the
    /// newest complete, verified run wherever it is, targets that cannot be listed passed
    /// over), each step restores from the target its run was found in, and the journal is
    /// kept in the first of the sink and the replicas, in that order, that takes it (so a
    /// recovery runs while the primary region is down). Any [`Sink`], also an `Arc` of one.
    pub fn replica(mut self, name: impl Into<String>, sink: impl Sink + 'static) -> Self {
        self.replicas.push((name.into(), Arc::new(sink)));
        self
    }

    /// The identities that decrypt encrypted artifacts.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = keyring;
        self
    }

    /// Receives the restore events of every step and the recovery's step events.
    pub fn observer(mut self, observer: impl Observer + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Stops the recovery (between steps, and inside a step between objects) once it fires.
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// What to do with data the targets already hold (default: fail).
    pub fn existing(mut self, policy: ExistingDataPolicy) -> Self {
        self.existing = policy;
        self
    }

    /// Which runs to restore from (default: per component, the newest complete and
    /// verified run at the time of the plan).
    pub fn point(mut self, selector: PointSelector) -> Self {
        self.selector = Some(selector);
        self
    }

    /// Per component, the newest complete and verified run at or before `at`.
    pub fn at(self, at: DateTime<Utc>) -> Self {
        self.point(PointSelector::AtOrBefore(at))
    }

    /// The recovery point objective the picked runs are judged by.
    pub fn rpo(mut self, rpo: Duration) -> Self {
        self.rpo = Some(rpo);
        self
    }

    /// The recovery time objective the report judges the recovery's time by.
    pub fn rto(mut self, rto: Duration) -> Self {
        self.rto = Some(rto);
        self
    }

    /// Adds a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Adds a restore step for `restorer`'s component ([`Step::restore`]).
    pub fn restore(self, restorer: impl Restorer + 'static) -> Self {
        self.step(Step::restore(restorer))
    }

    /// Adds the checklist as the last step ([`Step::checks`]).
    pub fn checks(self, checklist: Checklist) -> Self {
        self.step(Step::checks(checklist))
    }

    /// Adds `step` just before the step named `before` (at the end when there is none);
    /// with [`Recovery::stoa`], it then also runs after every step added before `before`.
    pub fn step_before(mut self, before: &str, step: Step) -> Self {
        match self.steps.iter().position(|s| s.name() == before) {
            Some(i) => {
                let step = if self.stoa_order {
                    step.after_ranked_before(&self.steps[i])
                } else {
                    step
                };
                self.steps.insert(i, step)
            }
            None => self.steps.push(step),
        }
        self
    }

    /// Removes the step named `name` (and the other steps' dependencies on it).
    pub fn without(mut self, name: &str) -> Self {
        self.steps.retain(|s| s.name() != name);
        for s in &mut self.steps {
            s.after.retain(|a| a != name);
        }
        self
    }

    /// Checks the recovery: a sink, at least one step, distinct step names, one restore step
    /// per component, dependencies that exist and do not loop; then fixes the order.
    pub fn build(self) -> Result<Recovery> {
        let cfg = |msg: String, hint: &str| {
            Error::config(msg)
                .with_operation("build recovery")
                .with_hint(hint.to_string())
        };
        let (name, sink) = self.sink.ok_or_else(|| {
            cfg(
                "a recovery needs a sink".into(),
                "give Recovery::builder().sink(...) the sink the runs are stored in",
            )
        })?;
        let mut sinks = vec![(name.unwrap_or_else(|| sink.describe()), sink)];
        for (name, replica) in self.replicas {
            if sinks.iter().any(|(n, _)| *n == name) {
                return Err(cfg(
                    format!("two storage targets of the recovery are named '{name}'"),
                    "give the sink and each replica a name of its own",
                ));
            }
            sinks.push((name, replica));
        }
        if self.steps.is_empty() {
            return Err(cfg(
                "a recovery needs at least one step".into(),
                "add a restore step per component with .restore(...)",
            ));
        }
        let mut names = BTreeSet::new();
        let mut components = BTreeSet::new();
        for s in &self.steps {
            if !names.insert(s.name().to_string()) {
                return Err(cfg(
                    format!("two steps named '{}'", s.name()),
                    "rename one with Step::named",
                ));
            }
            if let Some(c) = s.component() {
                if !components.insert(c.to_string()) {
                    return Err(cfg(
                        format!("two restore steps for component '{c}'"),
                        "give one restore step per component",
                    ));
                }
            }
            if let Action::Checks(list) = &s.action {
                list.validate()?;
            }
            for dep in &s.after {
                if !self.steps.iter().any(|o| o.name() == dep) {
                    return Err(cfg(
                        format!(
                            "step '{}' runs after '{dep}', which is not a step",
                            s.name()
                        ),
                        "add that step, or remove the dependency",
                    ));
                }
            }
        }
        let steps = order(self.steps, self.stoa_order)?;
        Ok(Recovery {
            sinks,
            keyring: self.keyring,
            observer: self.observer.unwrap_or_else(|| Arc::new(NoopObserver)),
            cancel: self.cancel.unwrap_or_default(),
            existing: self.existing,
            selector: self.selector,
            rpo: self.rpo,
            rto: self.rto,
            steps,
        })
    }
}

impl Step {
    /// In STOA order, a step inserted before `next` ranks with it and comes first.
    fn after_ranked_before(mut self, next: &Step) -> Step {
        self.rank_hint = Some(rank_of(next));
        self
    }
}

/// A step's rank in STOA order: a restore step's component rank, checks last, a custom step
/// with the rank given when it was inserted (else the step before it: see [`order`]).
fn rank_of(step: &Step) -> u32 {
    if let Some(r) = step.rank_hint {
        return r;
    }
    match &step.action {
        Action::Restore(r) => stoa_rank(r.component()),
        Action::Checks(_) => u32::MAX,
        Action::Custom(_) => 0,
    }
}

/// The steps in running order: in STOA order, sorted by rank (a custom step takes the rank
/// of the step added before it, so it stays right after it); then every `after`
/// dependency honoured, otherwise keeping that order (a stable topological sort).
fn order(steps: Vec<Step>, stoa_order: bool) -> Result<Vec<Step>> {
    let mut keyed: Vec<(u32, usize, Step)> = Vec::with_capacity(steps.len());
    let mut previous_rank = 0;
    for (i, s) in steps.into_iter().enumerate() {
        let rank = match (&s.action, s.rank_hint) {
            (_, Some(r)) => r,
            (Action::Custom(_), None) => previous_rank,
            _ => rank_of(&s),
        };
        previous_rank = rank;
        keyed.push((if stoa_order { rank } else { 0 }, i, s));
    }
    keyed.sort_by_key(|(rank, i, _)| (*rank, *i));
    let mut pending: Vec<Step> = keyed.into_iter().map(|(_, _, s)| s).collect();
    let mut out: Vec<Step> = Vec::with_capacity(pending.len());
    let mut placed: BTreeMap<String, ()> = BTreeMap::new();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|s| s.after.iter().all(|d| placed.contains_key(d)));
        let Some(i) = ready else {
            let names: Vec<&str> = pending.iter().map(|s| s.name()).collect();
            return Err(Error::config(format!(
                "the steps {} depend on each other in a loop",
                names.join(", ")
            ))
            .with_operation("build recovery")
            .with_hint("remove one of the dependencies that close the loop"));
        };
        let s = pending.remove(i);
        placed.insert(s.name().to_string(), ());
        out.push(s);
    }
    Ok(out)
}
