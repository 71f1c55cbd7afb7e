//! Progress reporting through a caller-supplied observer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::manifest::{ArtifactTimings, RunId, RunStatus, RunSummary, VerificationRecord};
use crate::retention::RetentionPlan;

/// Something that happened during a run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A run started.
    RunStarted {
        /// The run.
        run_id: &'a RunId,
        /// Number of sources.
        sources: usize,
    },
    /// An artifact export started.
    ArtifactStarted {
        /// Component.
        component: &'a str,
        /// Artifact name.
        name: &'a str,
    },
    /// Bytes of an artifact were written (cumulative plain bytes so far).
    BytesWritten {
        /// Component.
        component: &'a str,
        /// Artifact name.
        name: &'a str,
        /// Plain bytes read from the source so far.
        plain_bytes: u64,
    },
    /// An artifact was stored.
    ArtifactDone {
        /// Component.
        component: &'a str,
        /// Artifact name.
        name: &'a str,
        /// Plain size: the bytes the source exported.
        plain_size: u64,
        /// Stored size: the bytes written to the sink (after compression and encryption).
        stored_size: u64,
        /// Stored SHA-256 (hex).
        stored_sha256: &'a str,
        /// How long it took.
        duration: Duration,
    },
    /// An artifact failed.
    ArtifactFailed {
        /// Component.
        component: &'a str,
        /// Artifact name, if the failure concerns one.
        name: Option<&'a str>,
        /// The error text.
        error: &'a str,
    },
    /// A verifier checked an artifact.
    Verified {
        /// Component.
        component: &'a str,
        /// Artifact name.
        name: &'a str,
        /// The result.
        record: &'a VerificationRecord,
    },
    /// An artifact was stored and verified: where its time went.
    ArtifactTimings {
        /// Component.
        component: &'a str,
        /// Artifact name.
        name: &'a str,
        /// Dump, store and verification times, and throughput.
        timings: &'a ArtifactTimings,
    },
    /// Retention planned what to keep.
    RetentionPlanned {
        /// The plan.
        plan: &'a RetentionPlan,
    },
    /// Retention deleted runs (after [`RetentionPlanned`](Event::RetentionPlanned), when the
    /// plan is applied and forgets any run).
    RetentionApplied {
        /// The runs deleted, as the catalog listed them before (components, labels, bytes).
        removed: &'a [RunSummary],
    },
    /// A component's restore (or its plan) started.
    RestoreStarted {
        /// The run restored from.
        run_id: &'a RunId,
        /// Component.
        component: &'a str,
        /// Its artifacts in the run.
        artifacts: usize,
        /// Whether this is the plan (a dry run).
        dry_run: bool,
    },
    /// A component's restore (or its plan) ended.
    RestoreDone {
        /// The run restored from.
        run_id: &'a RunId,
        /// Component.
        component: &'a str,
        /// What it did (or would do).
        report: &'a crate::restore::RestoreReport,
        /// How long it took.
        duration: Duration,
    },
    /// A step of a recovery started.
    RecoveryStepStarted {
        /// The recovery's id.
        recovery_id: &'a str,
        /// The step.
        step: &'a str,
        /// Its place in the recovery (from 0).
        index: usize,
        /// How many steps the recovery has.
        steps: usize,
    },
    /// A step of a recovery ended.
    RecoveryStepDone {
        /// The recovery's id.
        recovery_id: &'a str,
        /// The step.
        step: &'a str,
        /// How it ended (`Failed` also for a checks step with a failed check).
        status: crate::recovery::StepStatus,
        /// How long it took.
        duration: Duration,
    },
    /// A run's copy to another storage target ended ([`Replicator`](crate::replicate::Replicator),
    /// also after a pipeline's run with `replicate_to`): copied, found present, or failed.
    ReplicationDone {
        /// The run.
        run_id: &'a RunId,
        /// The target's name.
        target: &'a str,
        /// The run's components (empty when its manifest could not be read).
        components: &'a [String],
        /// What the copy did; `None` when it failed.
        outcome: Option<crate::replicate::CopyOutcome>,
        /// Stored bytes copied.
        bytes: u64,
        /// How long it took.
        duration: Duration,
        /// Why it failed.
        error: Option<&'a crate::error::Error>,
    },
    /// The run ended: every run that started ends with this event, also one that could not
    /// happen at all (`error` is then set and `status` is `Failed`).
    RunDone {
        /// The run.
        run_id: &'a RunId,
        /// How it ended.
        status: RunStatus,
        /// The components of the run's sources, each once, in the pipeline's order.
        components: &'a [String],
        /// How long it took, from its start to its report (retention included).
        duration: Duration,
        /// Whether it is a verified backup: complete, and every artifact passed its checks.
        verified: bool,
        /// Why the run could not happen at all (sink unusable, lock held, cancelled, manifest
        /// not writable): the error [`Pipeline::run`](crate::Pipeline::run) returns.
        error: Option<&'a crate::error::Error>,
    },
}

/// Receives progress events. Implementations must be cheap: events arrive on the data path.
pub trait Observer: Send + Sync + fmt::Debug {
    /// Called for each event.
    fn on_event(&self, event: &Event<'_>);
}

macro_rules! forward_observer {
    ($($ptr:ident),+) => {$(
        /// Forwards events to the wrapped observer, so a shared or boxed observer (also
        /// `Arc<dyn Observer>`, `Box<dyn Observer>`) is an observer itself.
        impl<O: Observer + ?Sized> Observer for $ptr<O> {
            fn on_event(&self, event: &Event<'_>) {
                (**self).on_event(event)
            }
        }
    )+};
}

forward_observer!(Arc, Box);

/// Several observers as one: each event goes to every member, in the order they were added
/// (logs and metrics, say: `ObserverSet::new().with(TracingObserver).with(metrics.observer())`).
#[derive(Debug, Default, Clone)]
pub struct ObserverSet {
    members: Vec<Arc<dyn Observer>>,
}

impl ObserverSet {
    /// An empty set (it ignores everything until members are added).
    pub fn new() -> Self {
        ObserverSet::default()
    }

    /// Adds a member.
    pub fn with(mut self, observer: impl Observer + 'static) -> Self {
        self.members.push(Arc::new(observer));
        self
    }

    /// How many members it has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl Observer for ObserverSet {
    fn on_event(&self, event: &Event<'_>) {
        for member in &self.members {
            member.on_event(event);
        }
    }
}

/// An observer that ignores everything (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    fn on_event(&self, _event: &Event<'_>) {}
}

/// An observer that logs events through `tracing` at info level.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingObserver;

impl Observer for TracingObserver {
    fn on_event(&self, event: &Event<'_>) {
        match event {
            Event::BytesWritten { .. } => {}
            Event::ArtifactFailed {
                component,
                name,
                error,
            } => {
                tracing::warn!(
                    component,
                    artifact = name.unwrap_or("-"),
                    error,
                    "artifact failed"
                )
            }
            Event::RestoreStarted { .. } | Event::RestoreDone { .. } => {
                tracing::info!(event = ?event, "restore progress")
            }
            other => tracing::info!(event = ?other, "backup progress"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the sources of `RunStarted` events.
    #[derive(Debug, Default)]
    struct CountSources(AtomicUsize);

    impl Observer for CountSources {
        fn on_event(&self, event: &Event<'_>) {
            if let Event::RunStarted { sources, .. } = event {
                self.0.fetch_add(*sources, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn shared_and_boxed_observers_forward_events() {
        let run_id = RunId::parse("20260101T000000Z-000001").unwrap();
        let event = Event::RunStarted {
            run_id: &run_id,
            sources: 3,
        };
        let shared = Arc::new(CountSources::default());
        let as_dyn: Arc<dyn Observer> = shared.clone();
        shared.on_event(&event);
        as_dyn.on_event(&event);
        assert_eq!(shared.0.load(Ordering::SeqCst), 6);
        let boxed = Box::new(CountSources::default());
        boxed.on_event(&event);
        assert_eq!(boxed.0.load(Ordering::SeqCst), 3);
        let boxed_dyn: Box<dyn Observer> = Box::new(shared.clone());
        boxed_dyn.on_event(&event);
        assert_eq!(shared.0.load(Ordering::SeqCst), 9);
    }

    #[test]
    fn a_set_gives_every_event_to_every_member() {
        let run_id = RunId::parse("20260101T000000Z-000001").unwrap();
        let event = Event::RunStarted {
            run_id: &run_id,
            sources: 2,
        };
        let (a, b) = (
            Arc::new(CountSources::default()),
            Arc::new(CountSources::default()),
        );
        let set = ObserverSet::new().with(a.clone()).with(b.clone());
        assert_eq!(set.len(), 2);
        set.on_event(&event);
        set.on_event(&event);
        assert_eq!(a.0.load(Ordering::SeqCst), 4);
        assert_eq!(b.0.load(Ordering::SeqCst), 4);
        assert!(ObserverSet::new().is_empty());
    }
}
