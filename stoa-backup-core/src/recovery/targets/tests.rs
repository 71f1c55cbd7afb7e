//! A recovery over a sink and its replica: with the primary down, the point, the manifests,
//! the restore and the journal all come from (and go to) the replica, and the recovery
//! resumes from there; with both up, the primary serves and keeps the journal.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;
use crate::manifest::RunId;
use crate::pipeline::Pipeline;
use crate::recovery::{Recovery, RecoveryStatus, StepStatus, JOURNALS_PREFIX};
use crate::restore::PointSelector;
use crate::sink::{MemorySink, ObjectMeta, PutResult, Sink};
use crate::sources::{FileRestorer, FileSource};
use crate::stream::ByteStream;
use crate::verify::ChecksumVerifier;

/// A storage target that cannot be reached: every call fails as unavailable.
#[derive(Debug, Clone, Default)]
struct Down;

fn down() -> Error {
    Error::new(ErrorKind::Unavailable, "connection refused").with_component("storage/down")
}

#[async_trait]
impl Sink for Down {
    fn describe(&self) -> String {
        "down".into()
    }
    async fn preflight(&self) -> Result<()> {
        Err(down())
    }
    async fn put(&self, _: &ObjectKey, _: ByteStream) -> Result<PutResult> {
        Err(down())
    }
    async fn get(&self, _: &ObjectKey) -> Result<ByteStream> {
        Err(down())
    }
    async fn list(&self, _: &str) -> Result<Vec<ObjectMeta>> {
        Err(down())
    }
    async fn delete(&self, _: &ObjectKey) -> Result<()> {
        Err(down())
    }
}

/// A backup of `file` into `primary`, copied to `replica` as part of the run.
async fn replicated_backup(
    file: &std::path::Path,
    primary: &Arc<MemorySink>,
    replica: &Arc<MemorySink>,
) -> RunId {
    let report = Pipeline::builder()
        .source(FileSource::new("config", file, "config.yaml"))
        .sink(primary.clone())
        .verifier(ChecksumVerifier::new())
        .replicate_to_named("dr", replica.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    report.run_id
}

async fn journals_in(sink: &dyn Sink) -> usize {
    sink.list(JOURNALS_PREFIX).await.unwrap().len()
}

#[tokio::test]
async fn with_the_primary_down_the_replica_serves_the_recovery_and_keeps_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, b"replicas: 3\n").unwrap();
    let (primary, replica) = (Arc::new(MemorySink::new()), Arc::new(MemorySink::new()));
    let run = replicated_backup(&file, &primary, &replica).await;

    let target = dir.path().join("restored.yaml");
    let recovery = |selector: Option<PointSelector>| {
        let mut b = Recovery::builder()
            .sink_named("primary", Down)
            .replica("dr", replica.clone())
            .restore(FileRestorer::new("config", &target));
        if let Some(s) = selector {
            b = b.point(s);
        }
        b.build().unwrap()
    };
    let r = recovery(None);
    let plan = r.plan().await.unwrap();
    assert_eq!(plan.point.run_of("config"), Some(&run));
    assert_eq!(plan.point.origin_of("config"), Some("dr"));
    assert_eq!(
        plan.point.unreachable.len(),
        1,
        "{:?}",
        plan.point.unreachable
    );
    assert!(plan.point.unreachable[0].starts_with("primary: "));
    let step = plan.steps[0].restore_plan.as_ref().unwrap();
    assert_eq!(step.origin, "dr");

    let report = r.apply(&plan).await.unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"replicas: 3\n");
    // The journal went to the replica, the only target that takes it, and is found there.
    assert_eq!(journals_in(replica.as_ref()).await, 1);
    assert_eq!(
        r.journals().await.unwrap(),
        vec![report.recovery_id.clone()]
    );
    let journal = r.journal(&report.recovery_id).await.unwrap();
    assert_eq!(journal.status, RecoveryStatus::Completed);
    assert_eq!(journal.point.origin_of("config"), Some("dr"));
    // Resuming reads it from there, and writes it back there.
    let resumed = r.resume(&report.recovery_id).await.unwrap();
    assert!(resumed.steps.iter().all(|s| s.done_earlier), "{resumed:?}");
    assert_eq!(journals_in(replica.as_ref()).await, 1);

    // A named run is found wherever it is.
    std::fs::remove_file(&target).unwrap();
    let named = recovery(Some(PointSelector::Run(run.clone())));
    let plan = named.plan().await.unwrap();
    assert_eq!(plan.point.origin_of("config"), Some("dr"));
    let done = named.apply(&plan).await.unwrap();
    assert_eq!(done.steps[0].status, StepStatus::Done);
    assert_eq!(std::fs::read(&target).unwrap(), b"replicas: 3\n");

    // Nothing reachable: the primary's error, no journal anywhere.
    let none = Recovery::builder()
        .sink_named("primary", Down)
        .replica("dr", Down)
        .restore(FileRestorer::new("config", &target))
        .build()
        .unwrap();
    let e = none.plan().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(none.journals().await.is_err());
}

#[tokio::test]
async fn with_both_up_the_primary_serves_and_keeps_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, b"replicas: 5\n").unwrap();
    let (primary, replica) = (Arc::new(MemorySink::new()), Arc::new(MemorySink::new()));
    replicated_backup(&file, &primary, &replica).await;
    let target = dir.path().join("restored.yaml");
    let r = Recovery::builder()
        .sink_named("primary", primary.clone())
        .replica("dr", replica.clone())
        .restore(FileRestorer::new("config", &target))
        .build()
        .unwrap();
    let plan = r.plan().await.unwrap();
    assert_eq!(plan.point.origin_of("config"), Some("primary"));
    assert!(plan.point.unreachable.is_empty());
    assert_eq!(
        plan.steps[0].restore_plan.as_ref().unwrap().origin,
        "primary"
    );
    r.apply(&plan).await.unwrap();
    assert_eq!(journals_in(primary.as_ref()).await, 1);
    assert_eq!(journals_in(replica.as_ref()).await, 0);

    // Two targets of one name are refused.
    let e = Recovery::builder()
        .sink_named("dr", primary.clone())
        .replica("dr", replica.clone())
        .restore(FileRestorer::new("config", &target))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}
