//! A run is complete only for artifacts really there: what happens when stored bytes vanish,
//! shrink or were never all written, and when two artifacts would share a key.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::support::{Fixed, Hooked};
use crate::error::{ErrorKind, Result};
use crate::manifest::{ArtifactRecord, RunStatus, VerificationRecord};
use crate::pipeline::{Pipeline, RunReport};
use crate::sink::{MemorySink, PutResult, Sink, SinkExt};
use crate::verify::{Verifier, VerifyContext};

/// Damages each artifact it is handed, then passes it anyway: as retention in another
/// process deleting a file a verifier was still reading through an open descriptor.
#[derive(Debug)]
struct Vandal {
    delete: bool,
}

#[async_trait]
impl Verifier for Vandal {
    fn name(&self) -> &str {
        "vandal"
    }
    fn applies_to(&self, _: &ArtifactRecord) -> bool {
        true
    }
    async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord> {
        if self.delete {
            ctx.sink.delete(&ctx.artifact.key).await?;
        } else {
            ctx.sink
                .put_bytes(&ctx.artifact.key, Bytes::from_static(b"short"))
                .await?;
        }
        Ok(VerificationRecord::now(
            "vandal",
            true,
            "read it all from an open file",
        ))
    }
}

async fn run_with(sink: Arc<dyn Sink>, source: Fixed, verifier: Option<Vandal>) -> RunReport {
    let mut b = Pipeline::builder().sink(sink).source(source).attempts(1);
    if let Some(v) = verifier {
        b = b.verifier(v);
    }
    b.build().unwrap().run().await.unwrap()
}

/// The run is not complete, has no manifest but a report, and fails on `artifact` with an
/// integrity error naming it and `words`.
async fn assert_failed_on(sink: &dyn Sink, report: RunReport, artifact: &str, words: &str) {
    assert_ne!(report.status, RunStatus::Complete);
    assert!(!sink.exists(&report.run_id.manifest_key()).await.unwrap());
    assert!(sink.exists(&report.run_id.report_key()).await.unwrap());
    assert!(
        report
            .manifest
            .artifacts
            .iter()
            .all(|a| a.key.as_str() != artifact),
        "the report lists '{artifact}' as stored: {:?}",
        report.manifest.artifacts
    );
    let e = report.into_result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert_eq!(e.artifact(), Some(artifact), "{e}");
    assert!(e.to_string().contains(words), "{e}");
    assert!(e.hint().is_some(), "{e}");
}

#[tokio::test]
async fn an_artifact_deleted_after_it_was_stored_fails_the_run_without_a_manifest() {
    let sink = Arc::new(MemorySink::new());
    let report = run_with(
        sink.clone(),
        Fixed::one("db", "dump.bin", b"all the rows"),
        Some(Vandal { delete: true }),
    )
    .await;
    let key = format!("{}/db/dump.bin", report.run_id.prefix());
    assert_failed_on(sink.as_ref(), report, &key, "missing").await;
}

#[tokio::test]
async fn an_artifact_shortened_after_it_was_stored_fails_the_run_without_a_manifest() {
    let sink = Arc::new(MemorySink::new());
    let report = run_with(
        sink.clone(),
        Fixed::one("db", "dump.bin", b"all the rows"),
        Some(Vandal { delete: false }),
    )
    .await;
    let key = format!("{}/db/dump.bin", report.run_id.prefix());
    assert_failed_on(sink.as_ref(), report, &key, "5 bytes").await;
}

#[tokio::test]
async fn a_sink_that_stops_reading_early_fails_the_artifact_and_leaves_nothing_under_its_key() {
    // Stores the first chunk and says it is done, never reading to the end of the stream.
    let sink = Arc::new(Hooked::new(|inner, key, mut stream| async move {
        let first = stream.next().await.transpose()?.unwrap_or_default();
        let size = first.len() as u64;
        inner.put_bytes(&key, first).await?;
        Ok(PutResult::new(size))
    }));
    let report = run_with(sink.clone(), Fixed::one("db", "dump.bin", b"rows"), None).await;
    let key = format!("{}/db/dump.bin", report.run_id.prefix());
    let stored = crate::key::ObjectKey::new(key.clone()).unwrap();
    assert!(
        !sink.exists(&stored).await.unwrap(),
        "the partial object stayed"
    );
    assert_failed_on(sink.as_ref(), report, &key, "before the end").await;
}

#[tokio::test]
async fn a_sink_that_stores_fewer_bytes_than_it_was_given_fails_the_artifact() {
    // Reads everything but loses the last byte, and says how much it kept.
    let sink = Arc::new(Hooked::new(|inner, key, stream| async move {
        let mut all = crate::stream::collect(stream).await?;
        all.pop();
        let size = all.len() as u64;
        inner.put_bytes(&key, Bytes::from(all)).await?;
        Ok(PutResult::new(size))
    }));
    let report = run_with(sink.clone(), Fixed::one("db", "dump.bin", b"rows"), None).await;
    let key = format!("{}/db/dump.bin", report.run_id.prefix());
    assert_failed_on(sink.as_ref(), report, &key, "3 bytes").await;
}

#[tokio::test]
async fn two_artifacts_with_one_key_are_refused_and_the_first_keeps_its_bytes() {
    let sink = Arc::new(MemorySink::new());
    let source = Fixed {
        component: "grafana",
        artifacts: vec![("board.json", b"first"), ("board.json", b"second")],
    };
    let report = run_with(sink.clone(), source, None).await;
    assert_eq!(report.status, RunStatus::Partial);
    assert!(!sink.exists(&report.run_id.manifest_key()).await.unwrap());
    let key = format!("{}/grafana/board.json", report.run_id.prefix());
    let stored = crate::key::ObjectKey::new(key.clone()).unwrap();
    assert_eq!(sink.get_bytes(&stored).await.unwrap(), b"first");
    assert_eq!(report.manifest.artifacts.len(), 1);
    let e = report.into_result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert_eq!(e.artifact(), Some(key.as_str()), "{e}");
    assert!(e.to_string().contains("twice"), "{e}");
}
