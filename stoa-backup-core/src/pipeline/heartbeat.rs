//! The heartbeat of a run in progress: `runs/<id>/heartbeat.json`, refreshed every
//! interval, so that retention in another process ages the run by its last sign of life
//! and never takes a long export for a crashed run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::key::ObjectKey;
use crate::manifest::RunId;
pub use crate::manifest::HEARTBEAT_FILE;
use crate::sink::{Sink, SinkExt};

/// The content of `runs/<id>/heartbeat.json`: who is running the run and when it last
/// said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Heartbeat {
    /// The run.
    pub run_id: RunId,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When this heartbeat was written.
    pub refreshed_at: DateTime<Utc>,
    /// How often the run refreshes it, in seconds: a heartbeat much older than this belongs
    /// to a run that stopped.
    pub interval_secs: u64,
    /// Host the run is on (empty when unknown).
    pub host: String,
    /// Process id of the run.
    pub pid: u32,
}

impl Heartbeat {
    /// `runs/<id>/heartbeat.json`.
    pub fn key(run_id: &RunId) -> ObjectKey {
        run_id.heartbeat_key()
    }

    /// Reads a heartbeat written by [`Pipeline::run`](super::Pipeline::run).
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::integrity("unreadable heartbeat")
                .with_operation("read heartbeat")
                .with_source(e)
        })
    }
}

/// Writes a run's heartbeat every interval until stopped, and removes it afterwards.
pub(super) struct HeartbeatWriter<'a> {
    sink: &'a dyn Sink,
    key: ObjectKey,
    beat: Heartbeat,
    interval: Option<Duration>,
    /// Set before the first write is tried, so a heartbeat that may exist is removed.
    tried: AtomicBool,
}

impl<'a> HeartbeatWriter<'a> {
    /// A writer for `run_id` every `interval` (`None`: never).
    pub fn new(
        sink: &'a dyn Sink,
        run_id: &RunId,
        started_at: DateTime<Utc>,
        interval: Option<Duration>,
    ) -> Self {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        HeartbeatWriter {
            sink,
            key: Heartbeat::key(run_id),
            beat: Heartbeat {
                run_id: run_id.clone(),
                started_at,
                refreshed_at: started_at,
                interval_secs: interval.map_or(0, |i| i.as_secs()),
                host,
                pid: std::process::id(),
            },
            interval,
            tried: AtomicBool::new(false),
        }
    }

    /// Refreshes the heartbeat every interval until `stop` is cancelled. A write in
    /// progress is finished first, so no heartbeat lands after [`Self::remove`].
    pub async fn run(&self, stop: &CancellationToken) {
        let Some(interval) = self.interval else {
            return;
        };
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            self.tried.store(true, Ordering::SeqCst);
            let beat = Heartbeat {
                refreshed_at: Utc::now(),
                ..self.beat.clone()
            };
            let body = serde_json::to_vec(&beat).expect("a heartbeat serializes");
            if let Err(e) = self.sink.put_bytes(&self.key, body.into()).await {
                // The run goes on: the check before the manifest still catches an artifact
                // that retention removed meanwhile.
                tracing::warn!(key = %self.key, error = %e, "could not refresh the run's heartbeat");
            }
        }
    }

    /// Deletes the heartbeat, if one may have been written (best effort: a leftover one
    /// ages like any object of the run).
    pub async fn remove(&self) {
        if !self.tried.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.sink.delete(&self.key).await {
            tracing::warn!(key = %self.key, error = %e, "could not delete the run's heartbeat");
        }
    }
}
