//! Copies between memory sinks: what is copied, what is refused, what is left alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;

use super::*;
use crate::catalog::RunVerification;
use crate::error::{ErrorKind, Result};
use crate::key::ObjectKey;
use crate::lock::{LockScope, RunLock};
use crate::manifest::{RunId, RunStatus};
use crate::observer::Event;
use crate::pipeline::Pipeline;
use crate::sink::{MemorySink, ObjectMeta, PutResult, Sink, SinkCapabilities, SinkExt};
use crate::source::{ArtifactPlan, Export, ExportContext, PreflightReport, Source};
use crate::stream::ByteStream;
use crate::verify::ChecksumVerifier;

/// Exports fixed artifacts.
#[derive(Debug, Clone)]
struct Fixed {
    component: &'static str,
    artifacts: Vec<(&'static str, Vec<u8>)>,
}

#[async_trait]
impl Source for Fixed {
    fn component(&self) -> &str {
        self.component
    }
    fn provider(&self) -> &str {
        "fixed"
    }
    async fn preflight(&self) -> Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(self
            .artifacts
            .iter()
            .map(|(n, _)| ArtifactPlan::new(*n, "application/octet-stream"))
            .collect())
    }
    async fn export(&self, plan: &ArtifactPlan, _: &ExportContext) -> Result<Export> {
        let (_, bytes) = self
            .artifacts
            .iter()
            .find(|(n, _)| *n == plan.name)
            .unwrap();
        Ok(Export::new(crate::stream::once(Bytes::from(bytes.clone()))))
    }
}

/// A memory sink counting writes (puts, conditional puts, deletes), whose gets of keys
/// containing `stall` never end.
#[derive(Debug, Clone, Default)]
struct Counting {
    inner: MemorySink,
    writes: Arc<AtomicUsize>,
    stall: Arc<Mutex<Option<String>>>,
}

impl Counting {
    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Sink for Counting {
    fn describe(&self) -> String {
        "counting".into()
    }
    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }
    async fn preflight(&self) -> Result<()> {
        Ok(())
    }
    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.put(key, stream).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        let stall = self.stall.lock().unwrap().clone();
        if stall.is_some_and(|s| key.as_str().contains(&s)) {
            let head = futures::stream::once(async { Ok(Bytes::from_static(b"head")) });
            let never = futures::stream::pending();
            return Ok(Box::pin(futures::StreamExt::chain(head, never)));
        }
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }
    async fn get_versioned(&self, key: &ObjectKey) -> Result<Option<crate::sink::VersionedObject>> {
        self.inner.get_versioned(key).await
    }
    async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        condition: crate::sink::PutCondition,
    ) -> Result<crate::sink::PutOutcome> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.put_if(key, bytes, condition).await
    }
}

/// A backup of `component` (two artifacts) into `sink`.
async fn backup(sink: &Counting, component: &'static str, seed: u8) -> RunId {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i as u8) ^ seed).collect();
    let report = Pipeline::builder()
        .source(Fixed {
            component,
            artifacts: vec![("dump.bin", big), ("small.json", vec![b'{', seed, b'}'])],
        })
        .sink(sink.clone())
        .compression(crate::codec::ZstdCodec::new(1).unwrap())
        .verifier(ChecksumVerifier::new())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete());
    report.run_id
}

fn pair() -> (Counting, Counting, Catalog, Catalog) {
    let (a, b) = (Counting::default(), Counting::default());
    let (ca, cb) = (Catalog::new(a.clone()), Catalog::new(b.clone()));
    (a, b, ca, cb)
}

/// Every object of a run, by key, with its bytes.
async fn objects(sink: &Counting, run: &RunId) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for o in sink.list(&run.prefix()).await.unwrap() {
        out.push((o.key.to_string(), sink.get_bytes(&o.key).await.unwrap()));
    }
    out
}

#[tokio::test]
async fn a_copy_holds_the_same_bytes_and_a_second_copy_writes_nothing() {
    let (a, b, ca, cb) = pair();
    let run = backup(&a, "db", 1).await;
    let copy = ca.copy_run(&run, &cb).await.unwrap();
    assert_eq!(copy.outcome, CopyOutcome::Copied);
    assert_eq!(copy.artifacts_copied, 2);
    assert_eq!(copy.read_back, 2, "a memory sink does not check on write");
    assert_eq!(objects(&a, &run).await, objects(&b, &run).await);
    let listed = cb.list_runs(&Default::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].verified);
    // The lease was taken and given back on the target.
    let lease = SinkLock::new(b.clone())
        .current(&LockScope::new("db", "counting"))
        .await
        .unwrap()
        .unwrap();
    assert!(lease.released_at.is_some());

    let writes = b.writes();
    let again = ca.copy_run(&run, &cb).await.unwrap();
    assert_eq!(again.outcome, CopyOutcome::AlreadyPresent);
    assert_eq!(b.writes(), writes, "nothing written, not even a lease");
}

#[tokio::test]
async fn a_corrupt_source_artifact_is_refused_and_nothing_of_it_is_kept() {
    let (a, b, ca, cb) = pair();
    let run = backup(&a, "db", 2).await;
    let key = ObjectKey::new(format!("{}/db/dump.bin", run.prefix())).unwrap();
    let mut bytes = a.get_bytes(&key).await.unwrap();
    bytes[10] ^= 0xff;
    a.inner.overwrite_raw(&key, bytes.into()).await;
    let e = ca.copy_run(&run, &cb).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert_eq!(e.component(), Some("db"));
    assert_eq!(e.artifact(), Some(key.as_str()));
    assert_eq!(e.context_value("run"), Some(run.as_str()));
    assert!(e.to_string().contains("SHA-256"), "{e}");
    assert!(!b.exists(&key).await.unwrap());
    assert!(!b.exists(&run.manifest_key()).await.unwrap());
    assert!(cb.list_runs(&Default::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_partial_copy_is_completed_copying_only_what_is_missing_or_wrong() {
    let (a, b, ca, cb) = pair();
    let run = backup(&a, "db", 3).await;
    let dump = ObjectKey::new(format!("{}/db/dump.bin", run.prefix())).unwrap();
    let small = ObjectKey::new(format!("{}/db/small.json", run.prefix())).unwrap();
    // The dump arrived intact; the small one at the right size with other bytes.
    b.inner
        .overwrite_raw(&dump, a.get_bytes(&dump).await.unwrap().into())
        .await;
    let mut wrong = a.get_bytes(&small).await.unwrap();
    wrong[0] ^= 1;
    b.inner.overwrite_raw(&small, wrong.into()).await;
    assert_eq!(cb.incomplete_runs().await.unwrap().len(), 1);

    let copy = ca.copy_run(&run, &cb).await.unwrap();
    assert_eq!(copy.outcome, CopyOutcome::Completed);
    assert_eq!((copy.artifacts_present, copy.artifacts_copied), (1, 1));
    assert_eq!(objects(&a, &run).await, objects(&b, &run).await);
}

#[tokio::test]
async fn one_run_id_with_other_digests_on_the_target_is_refused() {
    let (a, b, ca, cb) = pair();
    let run = backup(&a, "db", 4).await;
    ca.copy_run(&run, &cb).await.unwrap();
    let mut m = cb.read_manifest(&run).await.unwrap();
    m.artifacts[0].stored_sha256 = "0".repeat(64);
    b.inner
        .overwrite_raw(&run.manifest_key(), m.to_json().unwrap().into())
        .await;
    let writes = b.writes();
    let e = ca.copy_run(&run, &cb).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("two contents"), "{e}");
    assert_eq!(b.writes(), writes);
}

#[tokio::test]
async fn a_dropped_copy_leaves_an_incomplete_run_that_the_next_copy_finishes() {
    let (a, b, ca, cb) = pair();
    let run = backup(&a, "db", 5).await;
    // One owner throughout: the dropped copy's lease (never released) is its own.
    let rep = Replicator::new(&ca, &cb).lock_owner(crate::lock::LeaseOwner::named("tests"));
    *a.stall.lock().unwrap() = Some("small.json".into());
    let r = tokio::time::timeout(Duration::from_millis(300), rep.copy_run(&run)).await;
    assert!(r.is_err(), "the copy stalls on the second artifact");
    assert!(!b.exists(&run.manifest_key()).await.unwrap());
    assert!(cb.list_runs(&Default::default()).await.unwrap().is_empty());
    assert_eq!(cb.incomplete_runs().await.unwrap().len(), 1);

    // Cancelled by its token, the same.
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        token.cancel();
    };
    let cancellable = rep.clone().cancel(token.clone());
    let (r, ()) = tokio::join!(cancellable.copy_run(&run), cancel);
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    assert_eq!(e.context_value("run"), Some(run.as_str()));
    assert!(!b.exists(&run.manifest_key()).await.unwrap());

    *a.stall.lock().unwrap() = None;
    let copy = rep.copy_run(&run).await.unwrap();
    assert_eq!(copy.outcome, CopyOutcome::Completed);
    assert_eq!(
        copy.artifacts_present, 1,
        "the dump was stored before the stall"
    );
    assert_eq!(copy.artifacts_copied, 1);
    assert_eq!(objects(&a, &run).await, objects(&b, &run).await);
}

#[tokio::test]
async fn a_held_lease_on_the_target_refuses_the_copy_before_it_writes() {
    let (a, b, ca, cb) = pair();
    let run = backup(&a, "db", 6).await;
    let other = crate::lock::LeaseOwner::named("a backup into the target");
    SinkLock::new(b.clone())
        .acquire(
            &LockScope::new("db", "counting"),
            &other,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let e = ca.copy_run(&run, &cb).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(b.list(&run.prefix()).await.unwrap().is_empty());
}

#[derive(Debug, Default)]
struct Seen(Mutex<Vec<(String, Option<CopyOutcome>, bool)>>);

impl crate::observer::Observer for Seen {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::ReplicationDone {
            run_id,
            outcome,
            error,
            ..
        } = event
        {
            self.0
                .lock()
                .unwrap()
                .push((run_id.to_string(), *outcome, error.is_some()));
        }
    }
}

#[tokio::test]
async fn a_pass_copies_what_is_missing_newest_first_and_skips_unverified_runs() {
    let (a, b, ca, cb) = pair();
    let old = backup(&a, "db", 7).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let demoted = backup(&a, "db", 8).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = backup(&a, "files", 9).await;
    // A later verification of `demoted` failed on the source.
    let v = RunVerification {
        run_id: demoted.clone(),
        at: Utc::now(),
        ok: false,
        results: Vec::new(),
    };
    let key = ObjectKey::new(format!("{}/verifications/x.json", demoted.prefix())).unwrap();
    a.put_bytes(&key, serde_json::to_vec(&v).unwrap().into())
        .await
        .unwrap();

    let lag = Replicator::new(&ca, &cb)
        .named("dr")
        .lag(["db", "files", "none"], Utc::now())
        .await
        .unwrap();
    assert_eq!(lag[0].newest_missing.as_ref(), Some(&old));
    assert_eq!(lag[1].newest_missing.as_ref(), Some(&new));
    assert!(lag[0].lag >= Duration::from_secs(2), "{lag:?}");
    assert_eq!((lag[2].missing_runs, lag[2].lag), (0, Duration::ZERO));

    let seen = Arc::new(Seen::default());
    let rep = Replicator::new(&ca, &cb).named("dr").observer(seen.clone());
    let report = rep.replicate(&ReplicaFilter::all()).await.unwrap();
    assert!(report.is_success(), "{report:?}");
    let order: Vec<&RunId> = report.runs.iter().map(|r| &r.run_id).collect();
    assert_eq!(order, [&new, &old]);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].run_id, demoted);
    assert_eq!(seen.0.lock().unwrap().len(), 2);

    let lag = rep.lag(["db", "files"], Utc::now()).await.unwrap();
    assert!(lag
        .iter()
        .all(|l| l.lag == Duration::ZERO && l.missing_runs == 0));

    let writes = b.writes();
    let again = rep.replicate(&ReplicaFilter::all()).await.unwrap();
    assert_eq!(again.written().count(), 0);
    assert!(again
        .runs
        .iter()
        .all(|r| r.outcome == CopyOutcome::AlreadyPresent));
    assert_eq!(b.writes(), writes, "the second pass wrote nothing");

    // A filter and a limit.
    let (_, _, _, c2) = pair();
    let rep = Replicator::new(&ca, &c2);
    let one = rep
        .replicate(&ReplicaFilter::component("db").limit(1))
        .await
        .unwrap();
    assert_eq!(one.runs.len(), 1);
    assert_eq!(one.runs[0].run_id, old);
    let status = c2.list_all().await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].status, RunStatus::Complete);
}

#[tokio::test]
async fn a_full_verification_on_the_target_is_recorded_there() {
    let (a, b, ca, cb) = pair();
    let run = backup(&a, "db", 10).await;
    let copy = Replicator::new(&ca, &cb)
        .verify_with([ChecksumVerifier::deep()], crate::codec::Keyring::new())
        .copy_run(&run)
        .await
        .unwrap();
    let v = copy.verification.unwrap();
    assert!(v.ok);
    assert_eq!(v.results.len(), 2);
    let records = b
        .list(&format!("{}/verifications", run.prefix()))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert!(a
        .list(&format!("{}/verifications", run.prefix()))
        .await
        .unwrap()
        .is_empty());
}

mod pipeline;
mod restore;
