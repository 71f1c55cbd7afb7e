//! The run lock (issue #16) on real storage: a local directory, the in-process S3 server
//! (and moto when `STOA_TEST_S3_ENDPOINT` names one), a bare Git repository, and the fake
//! Kubernetes API server's Leases.
//!
//! - [`concurrent`]: two pipelines of one component started at once: exactly one runs, the
//!   other fails naming the holder and writes nothing.
//! - [`killed`]: a real process holding the lease (this test binary re-run as a child,
//!   [`child`]) is killed with SIGKILL; while it held the lease a second run was refused and
//!   retention deleted nothing of that component; once the lease expired a new run took it
//!   over.
//! - [`kube_lease`]: the same with the Kubernetes Lease lock.

mod child;
mod concurrent;
mod killed;
#[cfg(feature = "kubernetes")]
mod kube_lease;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use stoa_backup::core::lock::LeaseOwner;
use stoa_backup::core::source::{ArtifactPlan, Export, ExportContext, PreflightReport, Source};
use stoa_backup::core::{Pipeline, Result, RunLock, Sink};
use stoa_backup::storage::LocalSink;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The TTL of the leases in these tests: short, so that a killed holder's lease expires
/// within the test, yet long enough that a holder renewing every third of it on a busy
/// machine (two cores shared with builds) is never late.
const TTL: Duration = Duration::from_secs(4);

/// Where the runs go: one storage target, reachable from this process and a child.
#[derive(Debug, Clone)]
enum Backend {
    Local(PathBuf),
    #[cfg(feature = "s3")]
    S3 {
        name: &'static str,
        endpoint: String,
        region: String,
        bucket: String,
        access_key: String,
        secret_key: String,
        /// Keeps the in-process server running (none in a child, which only connects).
        _server: Option<Arc<stoa_backup_test_support::s3::S3Target>>,
    },
    #[cfg(feature = "git")]
    Git(PathBuf),
}

impl Backend {
    #[cfg(feature = "s3")]
    fn s3(t: stoa_backup_test_support::s3::S3Target) -> Backend {
        Backend::S3 {
            name: t.name(),
            endpoint: t.endpoint.clone(),
            region: t.region.clone(),
            bucket: t.bucket.clone(),
            access_key: t.access_key.clone(),
            secret_key: t.secret_key.clone(),
            _server: Some(Arc::new(t)),
        }
    }

    #[cfg(feature = "git")]
    fn git(tmp: &Path) -> Backend {
        let remote = tmp.join("remote.git");
        stoa_backup::storage::git::git2::Repository::init_bare(&remote).unwrap();
        Backend::Git(remote)
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Local(_) => "local",
            #[cfg(feature = "s3")]
            Backend::S3 { name, .. } => name,
            #[cfg(feature = "git")]
            Backend::Git(_) => "git",
        }
    }

    /// A sink on the target; `workdir` is this replica's own directory (a Git clone).
    async fn sink(&self, workdir: &Path) -> Arc<dyn Sink> {
        match self {
            Backend::Local(root) => Arc::new(LocalSink::new(root).unwrap()),
            #[cfg(feature = "s3")]
            Backend::S3 {
                endpoint,
                region,
                bucket,
                access_key,
                secret_key,
                ..
            } => Arc::new(
                stoa_backup::storage::S3Sink::builder(bucket)
                    .endpoint(endpoint)
                    .region(region)
                    .allow_http(true)
                    .prefix("lock-test")
                    .credentials(stoa_backup::storage::S3Credentials::new(
                        access_key, secret_key,
                    ))
                    .build()
                    .unwrap(),
            ),
            #[cfg(feature = "git")]
            Backend::Git(remote) => Arc::new(
                stoa_backup::storage::GitSink::builder(
                    format!("file://{}", remote.display()),
                    workdir.join("clone"),
                )
                .author("stoa-backup-test", "backup@example.com")
                .build()
                .await
                .unwrap(),
            ),
        }
    }

    /// Whether another process sees a run's artifacts before its manifest (not on Git,
    /// where they wait in the writer's clone for the commit).
    fn shows_unfinished_runs(&self) -> bool {
        #[cfg(feature = "git")]
        if let Backend::Git(_) = self {
            return false;
        }
        true
    }

    fn encode(&self) -> Value {
        match self {
            Backend::Local(root) => json!({"local": root}),
            #[cfg(feature = "s3")]
            Backend::S3 {
                name,
                endpoint,
                region,
                bucket,
                access_key,
                secret_key,
                ..
            } => json!({"s3": {"name": name, "endpoint": endpoint, "region": region,
                "bucket": bucket, "access_key": access_key, "secret_key": secret_key}}),
            #[cfg(feature = "git")]
            Backend::Git(remote) => json!({"git": remote}),
        }
    }

    fn decode(v: &Value) -> Backend {
        if let Some(root) = v["local"].as_str() {
            return Backend::Local(root.into());
        }
        #[cfg(feature = "git")]
        if let Some(remote) = v["git"].as_str() {
            return Backend::Git(remote.into());
        }
        #[cfg(feature = "s3")]
        if v["s3"].is_object() {
            let f = |k: &str| v["s3"][k].as_str().unwrap().to_string();
            return Backend::S3 {
                name: if f("name") == "moto" {
                    "moto"
                } else {
                    "s3s-fs"
                },
                endpoint: f("endpoint"),
                region: f("region"),
                bucket: f("bucket"),
                access_key: f("access_key"),
                secret_key: f("secret_key"),
                _server: None,
            };
        }
        panic!("not a backend: {v}")
    }
}

/// Every backend this build and environment can run: a local directory under `tmp`, the
/// S3 servers of test support, a bare repository under `tmp`.
async fn backends(tmp: &Path) -> Vec<Backend> {
    let local = tmp.join("local");
    std::fs::create_dir_all(&local).unwrap();
    #[allow(unused_mut)]
    let mut out = vec![Backend::Local(local)];
    #[cfg(feature = "s3")]
    for t in stoa_backup_test_support::s3::targets().await {
        out.push(Backend::s3(t));
    }
    #[cfg(feature = "git")]
    out.push(Backend::git(tmp));
    out
}

/// Component `db`: `first.bin` at once, then `second.bin`, whose stream says it started
/// (with the run id) and ends only when the gate opens — a long dump, during which the run
/// holds its lease.
#[derive(Debug, Clone)]
struct Gate {
    started: Arc<Notify>,
    run_id: Arc<std::sync::Mutex<Option<String>>>,
    open: CancellationToken,
}

impl Gate {
    fn new() -> Self {
        Gate {
            started: Arc::new(Notify::new()),
            run_id: Arc::default(),
            open: CancellationToken::new(),
        }
    }

    /// Waits until the second artifact started; returns its run's id.
    async fn started(&self) -> String {
        self.started.notified().await;
        self.run_id.lock().unwrap().clone().unwrap()
    }
}

#[async_trait]
impl Source for Gate {
    fn component(&self) -> &str {
        "db"
    }
    fn provider(&self) -> &str {
        "gate"
    }
    async fn preflight(&self) -> Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![
            ArtifactPlan::new("first.bin", "application/octet-stream"),
            ArtifactPlan::new("second.bin", "application/octet-stream"),
        ])
    }
    async fn export(&self, plan: &ArtifactPlan, ctx: &ExportContext) -> Result<Export> {
        if plan.name == "first.bin" {
            return Ok(Export::new(stoa_backup::core::stream::once(
                Bytes::from_static(b"first"),
            )));
        }
        *self.run_id.lock().unwrap() = Some(ctx.run_id.to_string());
        let (started, open) = (self.started.clone(), self.open.clone());
        let head = futures::stream::once(async move {
            started.notify_one();
            Ok(Bytes::from_static(b"second, "))
        });
        let tail = futures::stream::once(async move {
            open.cancelled().await;
            Ok(Bytes::from_static(b"done"))
        });
        Ok(Export::new(Box::pin(head.chain(tail))))
    }
}

/// A pipeline of `source` into `sink` holding its lease in the sink, as `owner`.
fn locked(sink: Arc<dyn Sink>, source: impl Source + 'static, owner: LeaseOwner) -> Pipeline {
    Pipeline::builder()
        .source(source)
        .sink(sink)
        .lock_in_sink()
        .lock_ttl(TTL)
        .lock_owner(owner)
        .build()
        .unwrap()
}

/// A pipeline as [`locked`], with another lock.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
fn locked_with(
    sink: Arc<dyn Sink>,
    source: impl Source + 'static,
    lock: Arc<dyn RunLock>,
    owner: LeaseOwner,
) -> Pipeline {
    Pipeline::builder()
        .source(source)
        .sink(sink)
        .lock(lock)
        .lock_ttl(TTL)
        .lock_owner(owner)
        .build()
        .unwrap()
}

/// The keys of the runs on `backend`, as a replica that opens its sink now sees them (a
/// Git clone of its own fetches what the others pushed).
async fn fresh_keys(backend: &Backend, dir: &Path) -> Vec<String> {
    let dir = dir.join(format!("reader-{:016x}", rand::random::<u64>()));
    run_keys(backend.sink(&dir).await.as_ref()).await
}

/// The keys of the sink's runs.
async fn run_keys(sink: &dyn Sink) -> Vec<String> {
    sink.list("runs")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect()
}
