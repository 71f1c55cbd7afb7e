//! `PipelineBuilder::replicate_to`: the copy after a complete, verified run, and a failed
//! copy that leaves the run complete.

use super::*;
use crate::error::Error;

/// A sink whose every put fails (a region that is gone).
#[derive(Debug, Clone, Default)]
struct Unreachable(MemorySink);

#[async_trait]
impl Sink for Unreachable {
    fn describe(&self) -> String {
        "unreachable".into()
    }
    async fn preflight(&self) -> Result<()> {
        Ok(())
    }
    async fn put(&self, key: &ObjectKey, _: ByteStream) -> Result<PutResult> {
        Err(Error::new(ErrorKind::Unavailable, "the region is down").with_artifact(key.as_str()))
    }
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        self.0.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.0.list(prefix).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.0.delete(key).await
    }
}

fn source() -> Fixed {
    Fixed {
        component: "db",
        artifacts: vec![("dump.bin", vec![7; 1000])],
    }
}

#[tokio::test]
async fn a_run_is_copied_to_each_replica_once_complete_and_verified() {
    let (a, b, _, cb) = pair();
    let seen = Arc::new(Seen::default());
    let report = Pipeline::builder()
        .source(source())
        // `memory`, the same objects as `a`: a sink other than the replica's `counting`.
        .sink(a.inner.clone())
        .verifier(ChecksumVerifier::new())
        .replicate_to_named("dr", b.clone())
        .observer(seen.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.replication.len(), 1);
    let r = &report.replication[0];
    assert_eq!(r.target, "dr");
    assert_eq!(r.copy.as_ref().unwrap().outcome, CopyOutcome::Copied);
    assert_eq!(
        objects(&a, &report.run_id).await,
        objects(&b, &report.run_id).await
    );
    assert!(cb.list_runs(&Default::default()).await.unwrap()[0].verified);
    assert_eq!(
        *seen.0.lock().unwrap(),
        [(report.run_id.to_string(), Some(CopyOutcome::Copied), false)]
    );
}

#[tokio::test]
async fn a_failed_copy_leaves_the_run_complete_and_says_so() {
    let a = Counting::default();
    let seen = Arc::new(Seen::default());
    let report = Pipeline::builder()
        .source(source())
        .sink(a.clone())
        .verifier(ChecksumVerifier::new())
        .replicate_to_named("dr", Unreachable::default())
        .observer(seen.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete());
    assert_eq!(report.status, RunStatus::Complete);
    assert!(!report.is_success());
    let (target, e) = report.replication_errors().next().unwrap();
    assert_eq!(target, "dr");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(e.context_value("target"), Some("dr"));
    assert!(seen.0.lock().unwrap()[0].2, "the observer saw the failure");
    // The primary holds the run as a backup; the error says it is stored.
    assert_eq!(
        Catalog::new(a.clone())
            .list_runs(&Default::default())
            .await
            .unwrap()
            .len(),
        1
    );
    let e = report.into_result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.to_string().contains("stored and complete"), "{e}");
    assert!(e.to_string().contains("copy to dr failed"), "{e}");
}

#[test]
fn replicas_need_a_verifier_and_distinct_names() {
    let e = Pipeline::builder()
        .source(source())
        .sink(MemorySink::new())
        .replicate_to(Counting::default())
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("no verifier"), "{e}");
    let e = Pipeline::builder()
        .source(source())
        .sink(MemorySink::new())
        .verifier(ChecksumVerifier::new())
        .replicate_to_named("dr", MemorySink::new())
        .replicate_to_named("dr", MemorySink::new())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("given twice"), "{e}");
}
