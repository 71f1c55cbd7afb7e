//! A copy interrupted mid-way — its process killed with SIGKILL, or its future dropped —
//! leaves nothing that looks complete on the target; the next pass finishes it.
//!
//! The killed copy is this test binary re-run as a child (`--exact
//! replicate::killed::copying_child --include-ignored`, parameters in [`PARAMS_ENV`]): it
//! copies a run from one directory to another through a source sink whose read of the
//! second artifact stalls after its first bytes, says so, and waits to be killed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use stoa_backup::core::replicate::{CopyOutcome, ReplicaFilter, Replicator};
use stoa_backup::core::sink::PutResult;
use stoa_backup::core::{
    ByteStream, Catalog, LeaseOwner, ObjectKey, ObjectMeta, Result, RunStatus, Sink,
};
use stoa_backup_test_support::child::{child_params, reached, ChildTest};
use stoa_backup_test_support::s3 as s3t;

use super::*;

const PARAMS_ENV: &str = "STOA_REPLICATE_CHILD";
const STALLED: &str = "stalled";
/// The child's leases: short, so that the parent takes over soon after the kill.
const TTL: Duration = Duration::from_secs(1);

/// A sink whose reads of keys containing `stall` give their first 64 KiB, call `on_stall`
/// and then never end.
#[derive(Clone)]
struct Stalling {
    inner: Arc<dyn Sink>,
    stall: String,
    on_stall: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Stalling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stalling")
    }
}

#[async_trait]
impl Sink for Stalling {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn preflight(&self) -> Result<()> {
        self.inner.preflight().await
    }
    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        self.inner.put(key, stream).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        if !key.as_str().contains(&self.stall) {
            return self.inner.get(key).await;
        }
        let bytes = stoa_backup::core::stream::collect(self.inner.get(key).await?).await?;
        let head = Bytes::copy_from_slice(&bytes[..64 * 1024.min(bytes.len())]);
        let on_stall = self.on_stall.clone();
        let tail = futures::stream::once(async move {
            // Give the target time to take the head in before saying so.
            tokio::time::sleep(Duration::from_millis(200)).await;
            on_stall();
            futures::future::pending::<()>().await;
            Ok(Bytes::new())
        });
        Ok(Box::pin(futures::StreamExt::chain(
            futures::stream::once(async move { Ok(head) }),
            tail,
        )))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.delete(key).await
    }
}

fn child_test_name() -> String {
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_crate, rest)| rest);
    format!("{module}::copying_child")
}

/// A complete run of PostgreSQL and a file in `dir`; its id and the dump's key.
async fn primary_run(
    dir: &Path,
) -> (
    Arc<dyn Sink>,
    stoa_backup::core::RunId,
    String,
    TestDatabase,
) {
    let db = database(40_000).await;
    let file = config_file(dir);
    let local: Arc<dyn Sink> = Arc::new(local_sink(dir.join("primary")));
    let report = pipeline(&db, &file, local.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete(), "{:?}", report.manifest.failures);
    let dump = report
        .manifest
        .artifacts
        .iter()
        .find(|a| a.component == "postgres")
        .unwrap()
        .key
        .to_string();
    (local, report.run_id, dump, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_copy_never_looks_complete_and_the_next_pass_finishes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (primary, run, dump, db) = primary_run(tmp.path()).await;
    let target_dir = tmp.path().join("secondary");
    let params = serde_json::json!({
        "source": tmp.path().join("primary"),
        "target": target_dir,
        "stall": dump,
    })
    .to_string();
    let mut child = ChildTest::spawn(&child_test_name(), &[(PARAMS_ENV, params)]);
    child.wait_for(STALLED, Duration::from_secs(120)).await;
    child.kill().await;

    let target: Arc<dyn Sink> = Arc::new(local_sink(&target_dir));
    let c_target = Catalog::new(target.clone());
    let all = c_target.list_all().await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_ne!(all[0].status, RunStatus::Complete, "{all:?}");
    assert!(c_target
        .list_runs(&Default::default())
        .await
        .unwrap()
        .is_empty());
    assert!(!target_dir.join(run.manifest_key().as_str()).exists());
    assert!(
        !target_dir.join(&dump).exists(),
        "the dump's partial write is visible"
    );

    // The killed child's lease expires after its TTL; then a pass finishes the run.
    tokio::time::sleep(TTL + Duration::from_millis(500)).await;
    let report = Replicator::new(&Catalog::new(primary.clone()), &c_target)
        .replicate(&ReplicaFilter::all())
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.runs[0].outcome, CopyOutcome::Completed);
    assert_eq!(
        report.runs[0].artifacts_present, 1,
        "the file artifact was kept"
    );
    let copied = c_target.read_manifest(&run).await.unwrap();
    assert_plain_bytes_intact(target.as_ref(), &copied, "after the kill").await;
    let report = target.cleanup(chrono::Utc::now()).await.unwrap();
    assert!(
        report.temp_files_removed >= 1,
        "the killed write left its temporary file: {report:?}"
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of replicate::killed, which runs it by re-exec with its \
            parameters in STOA_REPLICATE_CHILD; alone it has nothing to do and fails"]
async fn copying_child() {
    let params = child_params(PARAMS_ENV).unwrap_or_else(|| {
        panic!("{PARAMS_ENV} is not set: this is the child process of replicate::killed")
    });
    let v: serde_json::Value = serde_json::from_str(&params).unwrap();
    let path = |k: &str| PathBuf::from(v[k].as_str().unwrap());
    let source = Stalling {
        inner: Arc::new(local_sink(path("source"))),
        stall: v["stall"].as_str().unwrap().to_string(),
        on_stall: Arc::new(|| reached(STALLED, None)),
    };
    let target = local_sink(path("target"));
    let r = Replicator::new(&Catalog::new(source), &Catalog::new(target))
        .lock_ttl(TTL)
        .replicate(&ReplicaFilter::all())
        .await;
    panic!("the copy ended although its source never does: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_copy_to_s3_never_looks_complete_and_the_next_pass_finishes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (primary, run, dump, db) = primary_run(tmp.path()).await;
    let t = s3t::s3s_fs_target().await;
    let s3: Arc<dyn Sink> = Arc::new(s3_sink(&t, "dr"));
    let c_s3 = Catalog::new(s3.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    let stalling = Stalling {
        inner: primary.clone(),
        stall: dump.clone(),
        on_stall: Arc::new(move || {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }),
    };
    let owner = LeaseOwner::named("the test");
    let replicator = Replicator::new(&Catalog::new(stalling), &c_s3).lock_owner(owner.clone());
    let all = ReplicaFilter::all();
    tokio::select! {
        r = replicator.replicate(&all) => panic!("the copy ended: {r:?}"),
        _ = rx => {} // dropped here, mid-dump
    }
    assert!(c_s3
        .list_runs(&Default::default())
        .await
        .unwrap()
        .is_empty());
    let keys: Vec<String> = s3
        .list("runs")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect();
    assert!(!keys.contains(&dump), "{keys:?}");
    assert!(!keys.contains(&run.manifest_key().to_string()), "{keys:?}");

    // The same owner takes its lease back at once and finishes the run.
    let report = Replicator::new(&Catalog::new(primary), &c_s3)
        .lock_owner(owner)
        .replicate(&ReplicaFilter::all())
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.runs[0].outcome, CopyOutcome::Completed);
    let copied = c_s3.read_manifest(&run).await.unwrap();
    assert_plain_bytes_intact(s3.as_ref(), &copied, "after the drop").await;
    db.drop_db().await;
}
