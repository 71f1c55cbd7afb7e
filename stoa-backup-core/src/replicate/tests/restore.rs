//! Restoring from either: a recovery point across the primary and its replica, and a
//! restore that the replica serves when the primary is down.

use super::*;
use crate::error::Error;
use crate::restore::{PointQuery, PointSelector, RecoveryPoint, Restore};
use crate::sources::{FileRestorer, FileSource};

/// A sink that cannot be reached: every call fails as unavailable.
#[derive(Debug, Clone, Default)]
struct Down;

fn down(op: &str) -> Error {
    Error::new(ErrorKind::Unavailable, "connection refused")
        .with_component("storage/down")
        .with_operation(op.to_string())
}

#[async_trait]
impl Sink for Down {
    fn describe(&self) -> String {
        "down".into()
    }
    async fn preflight(&self) -> Result<()> {
        Err(down("preflight"))
    }
    async fn put(&self, _: &ObjectKey, _: ByteStream) -> Result<PutResult> {
        Err(down("put"))
    }
    async fn get(&self, _: &ObjectKey) -> Result<ByteStream> {
        Err(down("get"))
    }
    async fn list(&self, _: &str) -> Result<Vec<ObjectMeta>> {
        Err(down("list"))
    }
    async fn delete(&self, _: &ObjectKey) -> Result<()> {
        Err(down("delete"))
    }
}

#[tokio::test]
async fn the_point_picks_the_newest_run_across_targets_and_says_where_it_is() {
    let (a, b, ca, cb) = pair();
    let older = backup(&a, "db", 20).await;
    ca.copy_run(&older, &cb).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A newer run only on the replica (the primary lost it), and one only on the primary.
    let newer = backup(&b, "db", 21).await;
    let files = backup(&a, "files", 22).await;
    let q = PointQuery::latest(["db", "files"]);
    let p = RecoveryPoint::find_across(&[("primary", &ca), ("dr", &cb)], &q)
        .await
        .unwrap();
    assert_eq!(p.run_of("db"), Some(&newer));
    assert_eq!(p.origin_of("db"), Some("dr"));
    assert_eq!(p.run_of("files"), Some(&files));
    assert_eq!(p.origin_of("files"), Some("primary"));
    assert!(p.unreachable.is_empty());
    // A run in both is the primary's.
    let q = PointQuery::latest(["db"]).selector(PointSelector::Run(older.clone()));
    let p = RecoveryPoint::find_across(&[("primary", &ca), ("dr", &cb)], &q)
        .await
        .unwrap();
    assert_eq!(p.origin_of("db"), Some("primary"));
    let p = RecoveryPoint::find_across(&[("dr", &cb), ("primary", &ca)], &q)
        .await
        .unwrap();
    assert_eq!(p.origin_of("db"), Some("dr"));
}

#[tokio::test]
async fn with_the_primary_down_the_replica_serves_the_restore() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, b"replicas: 3\nregion: eu-west\n").unwrap();
    let primary = MemorySink::new();
    let replica = Counting::default();
    let report = Pipeline::builder()
        .source(FileSource::new("config", &file, "config.yaml"))
        .sink(primary.clone())
        .verifier(ChecksumVerifier::new())
        .replicate_to_named("dr", replica.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");

    // The region of the primary is gone: same configuration, the replica answers.
    let target = dir.path().join("restored.yaml");
    let restore = Restore::builder()
        .sink(Down)
        .replica("dr", replica.clone())
        .restorer(FileRestorer::new("config", &target))
        .build()
        .unwrap();
    let point = restore
        .find_point(&PointQuery::latest(["config"]))
        .await
        .unwrap();
    assert_eq!(point.run_of("config"), Some(&report.run_id));
    assert_eq!(point.origin_of("config"), Some("dr"));
    assert_eq!(point.unreachable.len(), 1);
    assert!(
        point.unreachable[0].starts_with("down: "),
        "{:?}",
        point.unreachable
    );
    let plan = restore.plan_run(&report.run_id).await.unwrap();
    assert_eq!(plan.origin, "dr");
    assert!(plan.table().contains("from dr"), "{}", plan.table());
    let restored = restore.apply(&plan).await.unwrap();
    assert_eq!(restored.origin, "dr");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&file).unwrap()
    );

    // Nothing reachable at all: the primary's error.
    let restore = Restore::builder()
        .sink(Down)
        .restorer(FileRestorer::new("config", &target))
        .build()
        .unwrap();
    let e = restore
        .find_point(&PointQuery::latest(["config"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(e.context_value("target"), Some("down"));
    let e = restore.plan_run(&report.run_id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}
