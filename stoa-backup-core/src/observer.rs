//! Progress reporting through a caller-supplied observer.

use std::fmt;
use std::time::Duration;

use crate::manifest::{RunId, RunStatus, VerificationRecord};
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
        /// Stored size.
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
    /// Retention planned what to keep.
    RetentionPlanned {
        /// The plan.
        plan: &'a RetentionPlan,
    },
    /// The run ended.
    RunDone {
        /// The run.
        run_id: &'a RunId,
        /// How it ended.
        status: RunStatus,
    },
}

/// Receives progress events. Implementations must be cheap: events arrive on the data path.
pub trait Observer: Send + Sync + fmt::Debug {
    /// Called for each event.
    fn on_event(&self, event: &Event<'_>);
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
            other => tracing::info!(event = ?other, "backup progress"),
        }
    }
}
