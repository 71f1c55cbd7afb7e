//! The restore trait's plumbing and the [`Restore`] driver, with restorers that record what
//! they are asked to do.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::codec::hash::sha256_hex;
use crate::error::{Error, ErrorKind};
use crate::manifest::{CodecStep, Manifest, RunId, RunStatus};
use crate::sink::{MemorySink, SinkExt};

const RUN: &str = "20260101T000000Z-000001";

/// A restorer that reads each artifact, then fails with an error that carries no context.
#[derive(Debug)]
struct Bare;

#[async_trait]
impl PerArtifact for Bare {
    async fn restore_one(
        &self,
        _artifact: &ArtifactRecord,
        plain: ByteStream,
        _options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        crate::stream::collect(plain).await?;
        Err(Error::new(ErrorKind::PermissionDenied, "refused"))
    }
}

#[async_trait]
impl Restorer for Bare {
    fn component(&self) -> &str {
        "db"
    }
    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        restore_each(self, ctx).await
    }
}

/// Stores `data` as `component/name` of the test run and returns its record.
async fn stored(
    sink: &MemorySink,
    component: &str,
    name: &str,
    data: &'static [u8],
) -> ArtifactRecord {
    let record = ArtifactRecord {
        provider: "test".into(),
        plain_size: data.len() as u64,
        plain_sha256: sha256_hex(data),
        stored_size: data.len() as u64,
        stored_sha256: sha256_hex(data),
        ..ArtifactRecord::for_test(component, name)
    };
    sink.put_bytes(&record.key, Bytes::from_static(data))
        .await
        .unwrap();
    record
}

#[tokio::test]
async fn restorer_errors_without_context_come_out_named() {
    let sink = MemorySink::new();
    let mut record = stored(&sink, "db", "a.bin", b"data").await;
    let key = record.key.clone();
    let restore = over(&sink).restorer(Bare).build().unwrap();
    let e = restore
        .plan(&manifest(vec![record.clone()]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        (e.component(), e.operation(), e.artifact()),
        (Some("db"), Some("plan restore"), Some(key.as_str()))
    );

    // A stored artifact that does not match the manifest fails while it is read.
    record.stored_sha256 = sha256_hex(b"other");
    let e = restore
        .plan(&manifest(vec![record.clone()]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert_eq!(
        (e.component(), e.operation(), e.artifact()),
        (Some("db"), Some("read"), Some(key.as_str()))
    );

    // An artifact of another component is not given to the restorer: it is left out.
    record.component = "other".into();
    let plan = restore.plan(&manifest(vec![record])).await.unwrap();
    assert!(plan.components.is_empty(), "{plan:?}");
    assert_eq!(plan.not_restored, ["other"]);
}

/// What a [`Recording`] restorer was asked: (component, dry run, artifact names).
type Log = Arc<Mutex<Vec<(String, bool, Vec<String>)>>>;

/// Counts the plain bytes of its artifacts as objects created (or, when the target "holds"
/// them already, as conflicts), and logs every call; fails its real restore when told to.
#[derive(Debug)]
struct Recording {
    component: String,
    log: Log,
    existing_data: bool,
    fail: bool,
}

impl Recording {
    fn new(component: &str, log: &Log) -> Self {
        Recording {
            component: component.into(),
            log: log.clone(),
            existing_data: false,
            fail: false,
        }
    }
}

#[async_trait]
impl PerArtifact for Recording {
    async fn restore_one(
        &self,
        _artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let n = crate::stream::collect(plain).await?.len() as u64;
        let mut r = RestoreReport {
            dry_run: options.dry_run,
            ..RestoreReport::default()
        };
        match (self.existing_data, options.existing) {
            (false, _) => r.created = n,
            (true, ExistingDataPolicy::Fail) => r.conflicts = n,
            (true, ExistingDataPolicy::Skip) => r.skipped = n,
            (true, ExistingDataPolicy::Overwrite) => r.updated = n,
        }
        Ok(r)
    }
}

#[async_trait]
impl Restorer for Recording {
    fn component(&self) -> &str {
        &self.component
    }
    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        let names = ctx.artifacts().iter().map(|a| a.name.clone()).collect();
        self.log
            .lock()
            .unwrap()
            .push((self.component.clone(), ctx.dry_run(), names));
        if self.fail && !ctx.dry_run() {
            return Err(Error::new(ErrorKind::Unavailable, "the target went away"));
        }
        restore_each(self, ctx).await
    }
}

fn manifest(artifacts: Vec<ArtifactRecord>) -> Manifest {
    let mut m = Manifest::for_test(RunId::parse(RUN).unwrap());
    m.status = RunStatus::Complete;
    m.artifacts = artifacts;
    m
}

/// A run of three components: db (two artifacts), kv and files.
async fn three_components(sink: &MemorySink) -> Manifest {
    manifest(vec![
        stored(sink, "db", "a.dump", b"aaaa").await,
        stored(sink, "kv", "secrets.json", b"kk").await,
        stored(sink, "db", "b.dump", b"bbbbbb").await,
        stored(sink, "files", "f.tar", b"f").await,
    ])
}

/// A restore builder over `sink`.
fn over(sink: &MemorySink) -> RestoreBuilder {
    Restore::builder().sink(sink.clone())
}

fn calls(log: &Log) -> Vec<(String, bool, Vec<String>)> {
    log.lock().unwrap().clone()
}

#[tokio::test]
async fn a_plan_writes_nothing_and_apply_restores_in_the_restorers_order() {
    let sink = MemorySink::new();
    let m = three_components(&sink).await;
    let log = Log::default();
    let restore = over(&sink)
        .restorer(Recording::new("kv", &log))
        .restorer(Recording::new("db", &log))
        .build()
        .unwrap();
    let plan = restore.plan(&m).await.unwrap();
    assert_eq!(
        calls(&log),
        vec![
            ("kv".into(), true, vec!["secrets.json".into()]),
            ("db".into(), true, vec!["a.dump".into(), "b.dump".into()]),
        ],
        "plans only, in the restorers' order, each with all of its component's artifacts"
    );
    let order: Vec<&str> = plan
        .components
        .iter()
        .map(|c| c.component.as_str())
        .collect();
    assert_eq!(order, ["kv", "db"]);
    assert_eq!(plan.components[1].report.created, 10);
    assert_eq!(plan.totals().created, 12);
    assert_eq!(plan.not_restored, ["files"]);
    let table = plan.table();
    assert!(
        table.contains("db") && table.contains("not restored") && table.contains("files"),
        "{table}"
    );

    let done = restore.apply(&plan).await.unwrap();
    assert_eq!(calls(&log).len(), 4);
    assert!(calls(&log)[2..].iter().all(|(_, dry, _)| !dry));
    assert_eq!(done.components.len(), 2);
    assert_eq!(done.components[1].report.created, 10);
    assert!(!done.components[1].report.dry_run);
}

#[tokio::test]
async fn only_complete_runs_are_planned() {
    let sink = MemorySink::new();
    let mut m = three_components(&sink).await;
    m.status = RunStatus::Partial;
    let log = Log::default();
    let restore = over(&sink)
        .restorer(Recording::new("db", &log))
        .build()
        .unwrap();
    let e = restore.plan(&m).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert!(e.to_string().contains(RUN), "{e}");
    assert!(calls(&log).is_empty());
}

#[tokio::test]
async fn a_missing_key_fails_the_plan_before_any_restorer_runs() {
    let sink = MemorySink::new();
    let mut m = three_components(&sink).await;
    m.artifacts[2].codecs.push(CodecStep::Age {
        recipients: vec!["age1recipientnobodyhereholds".into()],
        passphrase: false,
    });
    let log = Log::default();
    let restore = over(&sink)
        .restorer(Recording::new("kv", &log))
        .restorer(Recording::new("db", &log))
        .build()
        .unwrap();
    let e = restore.plan(&m).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert_eq!(e.component(), Some("db"));
    assert_eq!(e.artifact(), Some(m.artifacts[2].key.as_str()));
    assert!(
        e.to_string().contains("age1recipientnobodyhereholds"),
        "{e}"
    );
    assert!(e.hint().unwrap().contains("identity"), "{e:?}");
    assert!(calls(&log).is_empty(), "no restorer ran: {:?}", calls(&log));
}

#[tokio::test]
async fn a_damaged_artifact_fails_the_plan_so_nothing_is_written() {
    let sink = MemorySink::new();
    let m = three_components(&sink).await;
    sink.put_bytes(&m.artifacts[2].key, Bytes::from_static(b"bbbbbX"))
        .await
        .unwrap();
    let log = Log::default();
    let restore = over(&sink)
        .restorer(Recording::new("db", &log))
        .build()
        .unwrap();
    let e = restore.plan(&m).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert_eq!(e.artifact(), Some(m.artifacts[2].key.as_str()), "{e}");
    assert!(calls(&log).iter().all(|(_, dry, _)| *dry));
}

#[tokio::test]
async fn conflicts_are_refused_under_fail_and_resolved_by_the_policy() {
    let sink = MemorySink::new();
    let m = three_components(&sink).await;
    for (policy, refused) in [
        (ExistingDataPolicy::Fail, true),
        (ExistingDataPolicy::Skip, false),
        (ExistingDataPolicy::Overwrite, false),
    ] {
        let log = Log::default();
        let restore = over(&sink)
            .restorer(Recording {
                existing_data: true,
                ..Recording::new("db", &log)
            })
            .existing(policy)
            .build()
            .unwrap();
        let plan = restore.plan(&m).await.unwrap();
        let r = restore.apply(&plan).await;
        if refused {
            assert_eq!(plan.totals().conflicts, 10);
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            assert!(e.to_string().contains("db"), "{e}");
            assert!(
                calls(&log).iter().all(|(_, dry, _)| *dry),
                "nothing applied"
            );
        } else {
            let done = r.unwrap();
            let report = &done.components[0].report;
            assert_eq!(report.skipped + report.updated, 10, "{policy:?}");
        }
    }
    // A plan is applied with the policy it was made with.
    let log = Log::default();
    let skip = over(&sink)
        .restorer(Recording::new("db", &log))
        .existing(ExistingDataPolicy::Skip)
        .build()
        .unwrap();
    let overwrite = over(&sink)
        .restorer(Recording::new("db", &log))
        .existing(ExistingDataPolicy::Overwrite)
        .build()
        .unwrap();
    let plan = skip.plan(&m).await.unwrap();
    assert_eq!(
        overwrite.apply(&plan).await.unwrap_err().kind(),
        ErrorKind::Config
    );
}

#[tokio::test]
async fn a_failing_component_stops_the_restore_naming_it_and_what_came_before() {
    let sink = MemorySink::new();
    let m = three_components(&sink).await;
    let log = Log::default();
    let restore = over(&sink)
        .restorer(Recording::new("kv", &log))
        .restorer(Recording {
            fail: true,
            ..Recording::new("db", &log)
        })
        .restorer(Recording::new("files", &log))
        .build()
        .unwrap();
    let plan = restore.plan(&m).await.unwrap();
    let e = restore.apply(&plan).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(
        (e.component(), e.operation()),
        (Some("db"), Some("restore"))
    );
    assert_eq!(e.context_value("restored before it"), Some("kv"), "{e:?}");
    let applied: Vec<String> = calls(&log)
        .into_iter()
        .filter(|(_, dry, _)| !dry)
        .map(|(c, _, _)| c)
        .collect();
    assert_eq!(applied, ["kv", "db"], "files was never started");
}

#[tokio::test]
async fn a_cancelled_restore_stops_before_the_next_component() {
    let sink = MemorySink::new();
    let m = three_components(&sink).await;
    let log = Log::default();
    let cancel = CancellationToken::new();
    let restore = over(&sink)
        .restorer(Recording::new("kv", &log))
        .cancel(cancel.clone())
        .build()
        .unwrap();
    let plan = restore.plan(&m).await.unwrap();
    cancel.cancel();
    let e = restore.apply(&plan).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    assert!(calls(&log).iter().all(|(_, dry, _)| *dry));
}

#[tokio::test]
async fn reads_end_with_cancelled_once_the_token_fires() {
    let sink = MemorySink::new();
    let record = stored(&sink, "db", "a.dump", b"data").await;
    let keyring = crate::codec::Keyring::default();
    let cancel = CancellationToken::new();
    let ctx = RestoreContext::new(&sink, &keyring, vec![&record], RestoreOptions::default())
        .with_cancel(cancel.clone());
    let plain = ctx.open_plain(&record).await.unwrap();
    cancel.cancel();
    let e = crate::stream::collect(plain).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert_eq!(e.artifact(), Some(record.key.as_str()));
    // And an artifact the context was not given cannot be read through it.
    let other = stored(&sink, "db", "other.dump", b"x").await;
    let ctx = RestoreContext::new(&sink, &keyring, vec![&record], RestoreOptions::default());
    assert_eq!(
        ctx.open_plain(&other).await.err().map(|e| e.kind()),
        Some(ErrorKind::Internal)
    );
}

#[test]
fn builds_need_a_sink_and_one_restorer_per_component() {
    let log = Log::default();
    let no_sink = Restore::builder()
        .restorer(Recording::new("db", &log))
        .build();
    assert_eq!(no_sink.unwrap_err().kind(), ErrorKind::Config);
    let none = Restore::builder().sink(MemorySink::new()).build();
    assert!(none.unwrap_err().hint().unwrap().contains("restorer"));
    let twice = Restore::builder()
        .sink(MemorySink::new())
        .restorer(Recording::new("db", &log))
        .restorer(Recording::new("db", &log))
        .build();
    assert!(twice.unwrap_err().to_string().contains("'db'"));
}

/// A restorer behind `Arc` / `Box` forwards plan and restore.
async fn check(restorer: &dyn Restorer, log: &Log) {
    let sink = MemorySink::new();
    let record = stored(&sink, "db", "x", b"four").await;
    let keyring = crate::codec::Keyring::default();
    let ctx = RestoreContext::new(&sink, &keyring, vec![&record], RestoreOptions::default());
    restorer.preflight(&ctx).await.unwrap();
    let plan = restorer.plan(&ctx).await.unwrap();
    assert_eq!((plan.created, plan.dry_run), (4, true));
    let done = restorer.restore(&ctx).await.unwrap();
    assert_eq!((done.created, done.dry_run), (4, false));
    assert_eq!(log.lock().unwrap().len(), 2);
    log.lock().unwrap().clear();
}

#[tokio::test]
async fn shared_and_boxed_restorers_forward_every_method() {
    let log = Log::default();
    check(&Arc::new(Recording::new("db", &log)), &log).await;
    check(
        &(Arc::new(Recording::new("db", &log)) as Arc<dyn Restorer>),
        &log,
    )
    .await;
    check(&Box::new(Recording::new("db", &log)), &log).await;
    check(
        &(Box::new(Recording::new("db", &log)) as Box<dyn Restorer>),
        &log,
    )
    .await;
}

#[tokio::test]
async fn reads_may_be_polled_past_their_end() {
    let sink = MemorySink::new();
    let record = stored(&sink, "db", "a.dump", b"data").await;
    let keyring = crate::codec::Keyring::default();
    let ctx = RestoreContext::new(&sink, &keyring, vec![&record], RestoreOptions::default());
    let mut plain = ctx.open_plain(&record).await.unwrap();
    use futures::StreamExt;
    while plain.next().await.is_some() {}
    // pg_restore's runner drains what is left after a failure, maybe past the end.
    assert!(plain.next().await.is_none());
}
