//! The heartbeat of a long run, on tokio's paused clock: written every interval while the
//! run goes on, gone once it ends, never written where small writes are expensive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::support::Hooked;
use crate::error::{ErrorKind, Result};
use crate::manifest::RunStatus;
use crate::pipeline::{Heartbeat, Pipeline, DEFAULT_HEARTBEAT_INTERVAL, HEARTBEAT_FILE};
use crate::sink::{MemorySink, Sink, SinkCapabilities, SinkExt};
use crate::source::{ArtifactPlan, Export, ExportContext, PreflightReport, Source};

/// One artifact whose export waits until the test opens the gate: a long dump.
#[derive(Debug)]
struct Gated(Arc<Notify>);

#[async_trait]
impl Source for Gated {
    fn component(&self) -> &str {
        "db"
    }
    fn provider(&self) -> &str {
        "gated"
    }
    async fn preflight(&self) -> Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![ArtifactPlan::new(
            "dump.bin",
            "application/octet-stream",
        )])
    }
    async fn export(&self, _: &ArtifactPlan, _: &ExportContext) -> Result<Export> {
        self.0.notified().await;
        Ok(Export::new(crate::stream::once(&b"rows"[..])))
    }
}

/// A sink counting the heartbeats written to it.
fn counting_sink(capabilities: SinkCapabilities) -> (Arc<Hooked>, Arc<AtomicUsize>) {
    let beats = Arc::new(AtomicUsize::new(0));
    let counted = beats.clone();
    let mut sink = Hooked::new(move |inner, key, stream| {
        if key.as_str().ends_with(HEARTBEAT_FILE) {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        async move { inner.put(&key, stream).await }
    });
    sink.capabilities = capabilities;
    (Arc::new(sink), beats)
}

async fn heartbeats_in(sink: &MemorySink) -> Vec<Heartbeat> {
    let mut out = Vec::new();
    for o in sink.list("runs").await.unwrap() {
        if o.key.as_str().ends_with(HEARTBEAT_FILE) {
            out.push(Heartbeat::from_json(&sink.get_bytes(&o.key).await.unwrap()).unwrap());
        }
    }
    out
}

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn a_long_run_refreshes_its_heartbeat_and_removes_it_after_the_manifest() {
    let gate = Arc::new(Notify::new());
    let (sink, beats) = counting_sink(SinkCapabilities::default());
    let pipeline = Pipeline::builder()
        .sink(sink.clone())
        .source(Gated(gate.clone()))
        .heartbeat_interval(Some(MINUTE))
        .build()
        .unwrap();
    let run = tokio::spawn(async move { pipeline.run().await });

    // Nothing before the first interval: a short run never writes one.
    tokio::time::sleep(MINUTE - Duration::from_secs(1)).await;
    assert_eq!(beats.load(Ordering::SeqCst), 0);
    tokio::time::sleep(MINUTE * 2).await;
    assert_eq!(beats.load(Ordering::SeqCst), 2);
    let beat = heartbeats_in(&sink.inner).await;
    assert_eq!(beat.len(), 1, "{beat:?}");
    assert_eq!(beat[0].interval_secs, 60);
    assert_eq!(beat[0].pid, std::process::id());
    assert!(beat[0].refreshed_at >= beat[0].started_at, "{beat:?}");

    gate.notify_one();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Complete);
    assert_eq!(beat[0].run_id, report.run_id);
    assert!(sink.exists(&report.run_id.manifest_key()).await.unwrap());
    assert!(!sink.exists(&Heartbeat::key(&report.run_id)).await.unwrap());
    // The heartbeat is no artifact of the run.
    assert_eq!(report.manifest.artifacts.len(), 1);
    // And it stopped with the run.
    tokio::time::sleep(MINUTE * 10).await;
    assert_eq!(beats.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_removes_its_heartbeat() {
    let cancel = CancellationToken::new();
    let (sink, beats) = counting_sink(SinkCapabilities::default());
    let pipeline = Pipeline::builder()
        .sink(sink.clone())
        .source(Gated(Arc::new(Notify::new())))
        .heartbeat_interval(Some(MINUTE))
        .cancel(cancel.clone())
        .build()
        .unwrap();
    let run = tokio::spawn(async move { pipeline.run().await });
    tokio::time::sleep(MINUTE * 3 + Duration::from_secs(1)).await;
    assert_eq!(beats.load(Ordering::SeqCst), 3);
    cancel.cancel();
    let e = run.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    assert!(sink.inner.list("runs").await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn no_heartbeat_when_disabled_or_where_small_writes_are_expensive() {
    let expensive = SinkCapabilities {
        cheap_small_writes: false,
        ..SinkCapabilities::default()
    };
    for (capabilities, interval) in [
        (SinkCapabilities::default(), None),
        (expensive, Some(MINUTE)),
    ] {
        let gate = Arc::new(Notify::new());
        let (sink, beats) = counting_sink(capabilities);
        let pipeline = Pipeline::builder()
            .sink(sink.clone())
            .source(Gated(gate.clone()))
            .heartbeat_interval(interval)
            .build()
            .unwrap();
        let run = tokio::spawn(async move { pipeline.run().await });
        tokio::time::sleep(MINUTE * 30).await;
        gate.notify_one();
        assert!(run.await.unwrap().unwrap().is_complete());
        assert_eq!(beats.load(Ordering::SeqCst), 0, "{interval:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn by_default_a_run_beats_every_five_minutes() {
    let gate = Arc::new(Notify::new());
    let (sink, beats) = counting_sink(SinkCapabilities::default());
    let pipeline = Pipeline::builder()
        .sink(sink.clone())
        .source(Gated(gate.clone()))
        .build()
        .unwrap();
    let run = tokio::spawn(async move { pipeline.run().await });
    tokio::time::sleep(DEFAULT_HEARTBEAT_INTERVAL * 2 + Duration::from_secs(1)).await;
    assert_eq!(beats.load(Ordering::SeqCst), 2);
    assert_eq!(heartbeats_in(&sink.inner).await[0].interval_secs, 300);
    gate.notify_one();
    assert!(run.await.unwrap().unwrap().is_complete());
}

#[test]
fn a_zero_heartbeat_interval_is_refused() {
    let e = Pipeline::builder()
        .sink(MemorySink::new())
        .source(Gated(Arc::new(Notify::new())))
        .heartbeat_interval(Some(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.hint().unwrap().contains("None"), "{e}");
}
