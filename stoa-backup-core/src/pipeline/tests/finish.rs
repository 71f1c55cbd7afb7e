//! The end of a run: retention failures and cancellation once the manifest is on its way.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::support::{Fixed, Hooked};
use crate::error::ErrorKind;
use crate::key::ObjectKey;
use crate::manifest::{RunStatus, RunSummary};
use crate::pipeline::Pipeline;
use crate::retention::{KeepRules, RetentionAction, RetentionPlan, RetentionPolicy, RunDecision};
use crate::sink::{MemorySink, Sink, SinkExt};

#[tokio::test]
async fn a_retention_failure_makes_into_result_an_error_that_says_the_backup_is_stored() {
    let mut sink = Hooked::plain();
    sink.failing_list = Some("runs");
    let sink = Arc::new(sink);
    let report = Pipeline::builder()
        .sink(sink.clone())
        .source(Fixed::one("db", "dump.bin", b"rows"))
        .retention(KeepRules::new())
        .apply_retention(true)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    // The backup itself is complete and stays so.
    assert!(report.is_complete());
    assert!(sink.exists(&report.run_id.manifest_key()).await.unwrap());
    let retention = report.retention_error.as_ref().expect("retention error");
    assert_eq!(retention.kind(), ErrorKind::Unavailable, "{retention}");
    assert!(!report.is_success());

    let run_id = report.run_id.clone();
    let e = report.into_result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.operation(), Some("plan retention"), "{e}");
    assert_eq!(e.context_value("run"), Some(run_id.as_str()), "{e}");
    let text = e.to_string();
    assert!(text.contains("timed out"), "{text}");
    assert!(text.contains(&format!("run {run_id} is stored")), "{text}");
}

#[tokio::test]
async fn cancelling_while_the_manifest_is_written_does_not_report_a_stored_run_as_cancelled() {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    // Stores the manifest, then the caller cancels before the put returns (a local sink
    // syncing its directory after the rename).
    let sink = Arc::new(Hooked::new(move |inner, key, stream| {
        let token = token.clone();
        async move {
            let stored = inner.put(&key, stream).await;
            if key.as_str().ends_with("/manifest.json") {
                token.cancel();
                tokio::task::yield_now().await;
            }
            stored
        }
    }));
    let outcome = Pipeline::builder()
        .sink(sink.clone())
        .source(Fixed::one("db", "dump.bin", b"rows"))
        .retention(KeepRules::new())
        .cancel(cancel)
        .build()
        .unwrap()
        .run()
        .await;
    let runs = sink.inner.list("runs").await.unwrap();
    let manifests = runs
        .iter()
        .filter(|o| o.key.as_str().ends_with("/manifest.json"))
        .count();
    // The manifest made it, so the run is a backup and must say so.
    assert_eq!(manifests, 1);
    let report = match outcome {
        Ok(r) => r,
        Err(e) => panic!("a stored run reported as failed: {e}"),
    };
    assert_eq!(report.status, RunStatus::Complete);
    // What came after the manifest (retention) was skipped, and the report says why.
    assert!(report.retention.is_none());
    let retention = report.retention_error.as_ref().expect("retention skipped");
    assert_eq!(retention.kind(), ErrorKind::Cancelled, "{retention}");
    let e = report.into_result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    assert!(e.to_string().contains("is stored"), "{e}");
}

/// Forgets every run, the one just written included: a policy with a bug.
#[derive(Debug)]
struct ForgetAll;

impl RetentionPolicy for ForgetAll {
    fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan {
        RetentionPlan {
            now,
            decisions: runs
                .iter()
                .map(|r| RunDecision::new(r, RetentionAction::Forget))
                .collect(),
        }
    }
}

#[tokio::test]
async fn retention_never_deletes_the_run_it_follows() {
    let sink = Arc::new(MemorySink::new());
    let pipeline = Pipeline::builder()
        .sink(sink.clone())
        .source(Fixed::one("db", "dump.bin", b"rows"))
        .retention(ForgetAll)
        .apply_retention(true)
        .build()
        .unwrap();
    let report = pipeline.run().await.unwrap();
    assert!(report.is_complete());
    assert!(report.removed_runs.is_empty(), "{:?}", report.removed_runs);
    let key = ObjectKey::new(format!("{}/db/dump.bin", report.run_id.prefix())).unwrap();
    assert_eq!(sink.get_bytes(&key).await.unwrap(), b"rows");
    assert!(sink.exists(&report.run_id.manifest_key()).await.unwrap());
    // The plan is shown, and why it was not applied.
    assert!(report.retention.is_some());
    let e = report.into_result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert_eq!(e.operation(), Some("apply retention"), "{e}");
    assert!(e.to_string().contains("nothing was deleted"), "{e}");
}
