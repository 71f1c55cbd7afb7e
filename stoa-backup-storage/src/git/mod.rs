//! A sink that keeps backups as plain files in a Git repository and pushes them to a remote:
//! CRD snapshots, Helm values and dashboards become readable, diffable history.
//!
//! # Layout
//!
//! [`GitSink`] owns a working clone (a directory) of one remote and one branch. Inside the
//! branch, everything lives under a configurable path prefix (`<prefix>`, empty by default):
//!
//! | key                                  | where it goes                                        |
//! |--------------------------------------|------------------------------------------------------|
//! | `runs/<id>/<component>/<name>`       | `<prefix>/<component>/<name>` on the branch           |
//! | `runs/<id>/manifest.json`            | the run record (below), not the branch               |
//! | `runs/<id>/report.json`, `pin.json`, `runs/<id>/verifications/…` | the run record  |
//! | any other key `<key>`                | `<prefix>/.stoa-backup/keys/<key>` on the branch      |
//!
//! Artifact paths carry no run id, so the same resource always lands in the same file and
//! `git log -p <prefix>/<component>/<name>` shows how it changed from run to run. Text
//! artifacts (the pipeline marks YAML and JSON as text) are stored without compression,
//! because the sink reports [`SinkCapabilities::prefers_plain_text`]; encryption, if the
//! pipeline has it, still applies (configure the pipeline without it for readable diffs of
//! non-secret resources).
//!
//! # Runs, commits and run records
//!
//! - `put` of an artifact streams it into the repository's object database (a blob, with
//!   bounded memory) and keeps it *pending* for its run. Nothing is visible on the branch or
//!   in the working tree yet; a failing or dropped stream leaves no blob behind and no key
//!   visible. `get` and `list` already see pending artifacts (the pipeline verifies them
//!   before writing the manifest).
//! - `put` of `runs/<id>/manifest.json` is the commit point. The run's artifacts replace, for
//!   each component of the run, the directory `<prefix>/<component>/` (so a resource that
//!   disappeared from the source disappears from the branch too; components not in the run
//!   are left alone). If the tree changed, one commit is made, with a message naming the run
//!   and its components, by the configured author; **a run that changes nothing makes no
//!   commit**. The branch is pushed.
//! - Each run is then *recorded* as the ref `refs/<namespace>/runs/<id>` (namespace
//!   `stoa-backup`, or `stoa-backup/<prefix>` with a prefix), pointing at a small record
//!   commit whose parent is the branch commit holding the run's content and whose tree is
//!   that content plus `<prefix>/.stoa-backup/run/manifest.json` (and later `pin.json`,
//!   `verifications/…`). Checking out the ref shows exactly the run. The ref is pushed.
//!   Refs rather than tags: adding a verification or a pin moves the record to a new
//!   commit on top of the old one, a fast-forward any remote accepts without force (a moved
//!   tag would need a forced push). A plain `git clone` does not fetch these refs; use
//!   `git fetch origin 'refs/stoa-backup/*:refs/stoa-backup/*'` to look at them by hand.
//! - A failed or partial run (`report.json` instead of a manifest) is recorded the same way,
//!   but its content is kept only in the record commit: the branch only ever holds complete
//!   runs.
//! - `list("runs")` enumerates the run records (plus pending runs) and yields, per run, its
//!   run files and the artifact keys named by its manifest; the catalog therefore lists runs
//!   from history, in this process or any other clone, and `get` reads a recorded run's
//!   artifact from its record commit, byte for byte as it was stored.
//!
//! # Deleting and retention
//!
//! Git keeps history: deleting is forgetting, not destroying.
//! - Deleting a run's manifest (retention does this first) removes its run record locally
//!   and on the remote; the catalog no longer lists the run, while its content stays in the
//!   branch's history (`git log`). Deleting `report.json` of a failed run does the same.
//! - Deleting an artifact of a recorded run is a no-op: its bytes are part of history. It is
//!   no longer listed once its run record is gone. Deleting a pending artifact discards it.
//! - Retention follows what each kind of content needs; for STOA: CRD snapshots are kept
//!   30 days in Git (a keep-within rule of 30 days on the CRD pipeline's sink), Helm values
//!   forever (a keep-forever rule, or no retention on that sink).
//! - Content outlives its runs until [`GitSink::compact_history`] — explicit and off by
//!   default — squashes the branch history older than a horizon into one commit. It is the
//!   only operation that rewrites the remote, and it pushes with force-with-lease semantics:
//!   the push is aborted unless every remote ref still points where it pointed when the sink
//!   fetched it. Never a plain force.
//!
//! # Concurrent writers
//!
//! Operations on the repository are serialized in-process. Another writer (another clone,
//! another cluster) may push to the same branch. Every push is a compare-and-swap: the
//! branch (or a run record) is moved only if the remote ref is still at the commit the
//! change was built on, for every transport — on a local path or `file://` remote the sink
//! sends the objects itself and moves the refs in a locked ref transaction on the remote
//! repository (libgit2's local transport would not compare under a lock); on a network
//! remote the push carries a lease, which the server checks under its lock, and the remote
//! refs are listed again afterwards to confirm the update holds. When the branch moved
//! (including when another writer created it first on an empty remote), the sink waits as
//! [`GitSinkBuilder::push_retry`] says (with jitter), fetches, replays the run's change on
//! top of the remote branch (a rebase of our one commit: the other writer's commits stay)
//! and pushes again, a bounded number of times. Never forced. A run is recorded — and
//! reported as committed — only once its content commit is on the remote branch.
//!
//! # Conditional puts
//!
//! [`Sink::put_if`] (a run lock in the sink) keeps each object as the ref
//! `refs/<namespace>/objects/<key>` on the remote, at a commit without parent holding the
//! bytes: created by a push the remote refuses when the ref exists, replaced by a push it
//! refuses unless the ref is still at the commit read (the compare-and-swap every push is,
//! below). Versions are commit ids. These objects are not on the branch (a lease renewed
//! every minute makes no history there) and only [`Sink::get_versioned`] reads them, from
//! the remote itself; `get`, `list` and `delete` do not see them.
//!
//! # Credentials
//!
//! Remotes can be local paths or `file://` URLs (tests), `https://` with a token, or `ssh`
//! with a key or an agent ([`GitCredentials`]). Credentials are handed to libgit2 only in
//! its credential callback; they never appear in `Debug`, [`Sink::describe`], logs or
//! errors (messages from libgit2 are scrubbed of them, and of passwords in remote URLs).
//!
//! # Limits
//!
//! - Git suits text: YAML, JSON, small exports. `get` reads one object into memory before
//!   streaming it (puts stream with bounded memory); keep large binary dumps on a volume or
//!   object storage.
//! - Objects that are not part of a run (any key outside `runs/<id>/…`) are committed on
//!   `put` and `delete`; concurrent changes are grouped into one commit and one push.
//! - A local path or `file://` remote must be a bare repository the sink may write (it
//!   writes packs and ref lock files there, as `git receive-pack` would).
//! - Each commit is one push (and, on network remotes, one more listing of the remote's
//!   refs): many small writes are slow; runs group their artifacts into one commit.
//!
//! # The working clone
//!
//! The directory belongs to the sink (one [`GitSink`] per directory): it is created (or
//! opened) by [`GitSinkBuilder::build`], its branch is reset to the remote's on every sync,
//! and its working tree is checked out after each commit so operators can look at the
//! files. Don't edit it by hand.
//!
//! ```no_run
//! # async fn demo() -> stoa_backup_core::Result<()> {
//! use stoa_backup_storage::git::{GitCredentials, GitSink};
//! let sink = GitSink::builder(
//!     "https://git.example.com/platform/stoa-backups.git",
//!     "/var/lib/stoa-backup/git",
//! )
//! .branch("main")
//! .prefix("clusters/prod")
//! .author("stoa-backup", "backup@example.com")
//! .credentials(GitCredentials::https_token("x-access-token", "…"))
//! .build()
//! .await?;
//! # let _ = sink; Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use git2::{ErrorClass, ErrorCode, Oid, Repository};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::{validate_prefix, ObjectKey};
use stoa_backup_core::manifest::{RunId, RUNS_PREFIX};
use stoa_backup_core::sink::{
    not_found, ObjectMeta, PutCondition, PutOutcome, PutResult, Sink, SinkCapabilities,
    VersionedObject,
};
use stoa_backup_core::stream::{ByteStream, CHUNK_SIZE};

pub use git2;

const COMPONENT: &str = "storage/git";
const REMOTE: &str = "origin";
/// Directory (under the prefix) reserved for the sink's own files.
const META_DIR: &str = ".stoa-backup";
/// Under [`META_DIR`] on the branch: objects whose keys are not part of a run's layout.
const KEYS_DIR: &str = "keys";
/// Under [`META_DIR`] in a run record's tree: the run's own files (manifest, report, pin…).
const RUN_DIR: &str = "run";
const VERIFICATIONS: &str = "verifications";
/// Chunks of a put in flight between the async side and the blob writer.
const PUT_CHANNEL: usize = 4;

mod compaction;
mod conditional;
mod config;
mod credentials;
mod deletes;
mod env;
mod push;
mod reads;
mod records;
mod remote;
mod tree;

pub use compaction::CompactionReport;
pub use config::GitSinkBuilder;
pub use credentials::GitCredentials;

use config::GitSinkConfig;
use credentials::redact_url;
use reads::RecordInfo;

/// A [`Sink`] over a Git repository; see the [module documentation](self).
#[derive(Clone)]
pub struct GitSink {
    shared: Arc<Shared>,
}

impl fmt::Debug for GitSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSink")
            .field("config", &self.shared.cfg)
            .finish_non_exhaustive()
    }
}

struct Shared {
    cfg: Arc<GitSinkConfig>,
    state: Mutex<State>,
    /// Changes to plain keys waiting to be committed (group commit: whoever holds the
    /// repository commits every queued change in one commit and push).
    queue: Mutex<PlainQueue>,
    /// Tests: runs at the points of a push where another writer's update could be lost.
    #[cfg(test)]
    race_hook: Mutex<Option<push::RaceHook>>,
}

#[derive(Default)]
struct PlainQueue {
    next_ticket: u64,
    items: Vec<Queued>,
    results: HashMap<u64, Result<()>>,
}

struct Queued {
    ticket: u64,
    key: ObjectKey,
    path: String,
    /// The new blob, or `None` to delete.
    oid: Option<Oid>,
}

struct State {
    repo: Repository,
    pending: BTreeMap<RunId, PendingRun>,
    /// Parsed run records, by record commit (commits are immutable).
    records: HashMap<Oid, Arc<RecordInfo>>,
}

#[derive(Default)]
struct PendingRun {
    /// Artifacts by key.
    artifacts: BTreeMap<ObjectKey, Staged>,
    /// Run files (e.g. `pin.json`) by path relative to the run.
    files: BTreeMap<String, Staged>,
}

#[derive(Debug, Clone, Copy)]
struct Staged {
    oid: Oid,
    size: u64,
    at: DateTime<Utc>,
}

/// Where a key belongs.
enum KeyKind {
    /// Not part of a run's layout.
    Plain,
    /// `runs/<id>/<component>/<name>`.
    Artifact { run: RunId, component: String },
    /// `runs/<id>/<file>` or `runs/<id>/verifications/<file>`.
    RunFile { run: RunId, file: String },
}

fn classify(key: &ObjectKey) -> KeyKind {
    let segs: Vec<&str> = key.segments().collect();
    if segs.len() < 3 || segs[0] != RUNS_PREFIX {
        return KeyKind::Plain;
    }
    let Ok(run) = RunId::parse(segs[1]) else {
        return KeyKind::Plain;
    };
    if segs.len() == 3 || segs[2] == VERIFICATIONS {
        return KeyKind::RunFile {
            run,
            file: segs[2..].join("/"),
        };
    }
    KeyKind::Artifact {
        run,
        component: segs[2].to_string(),
    }
}

#[async_trait]
impl Sink for GitSink {
    fn describe(&self) -> String {
        let cfg = &self.shared.cfg;
        let mut d = format!("git:{}#{}", redact_url(cfg.remote.as_str()), cfg.branch);
        if !cfg.prefix.is_empty() {
            d.push(':');
            d.push_str(&cfg.prefix);
        }
        d
    }

    fn capabilities(&self) -> SinkCapabilities {
        let mut c = SinkCapabilities::default();
        c.atomic_put = true;
        c.versioned = true;
        c.prefers_plain_text = true;
        // Every put is a commit and a push: no heartbeat objects.
        c.cheap_small_writes = false;
        c.conditional_put = true;
        c
    }

    async fn preflight(&self) -> Result<()> {
        self.with_state("preflight", |sh, st| {
            sh.sync(st)?;
            sh.check_push_access(&st.repo)
        })
        .await
    }

    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        let kind = classify(key);
        if let KeyKind::Artifact { component, .. } = &kind {
            if component == META_DIR {
                return Err(Error::config(format!(
                    "the component name {META_DIR:?} is reserved by the Git sink"
                ))
                .with_component(COMPONENT)
                .with_operation("put")
                .with_artifact(key.as_str())
                .with_hint("rename the source's component"));
            }
        }
        let staged = self.stage_blob(key, stream).await?;
        if matches!(kind, KeyKind::Plain) {
            self.plain_change(key, Some(staged.oid)).await?;
            return Ok(PutResult::new(staged.size));
        }
        let k = key.clone();
        self.with_state("put", move |sh, st| sh.put_staged(st, &k, kind, staged))
            .await
            .map_err(|e| e.or_artifact(key.as_str()))?;
        Ok(PutResult::new(staged.size))
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        let k = key.clone();
        let oid = self
            .with_state("get", move |sh, st| sh.resolve(st, &k))
            .await
            .map_err(|e| e.or_artifact(key.as_str()))?;
        let Some((oid, _)) = oid else {
            return Err(not_found("git", key));
        };
        let gitdir = self.gitdir();
        let k = key.clone();
        let bytes = blocking(move || {
            let repo = Repository::open(&gitdir)
                .map_err(|e| git_error(e, "get", "cannot open the working clone"))?;
            let blob = repo.find_blob(oid).map_err(|e| {
                git_error(e, "get", "cannot read the object from the repository")
                    .with_artifact(k.as_str())
            })?;
            Ok(Bytes::copy_from_slice(blob.content()))
        })
        .await?;
        let chunks: Vec<Result<Bytes>> = (0..bytes.len())
            .step_by(CHUNK_SIZE)
            .map(|i| Ok(bytes.slice(i..(i + CHUNK_SIZE).min(bytes.len()))))
            .collect();
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix).map_err(|e| e.or_component(COMPONENT).or_operation("list"))?;
        let prefix = prefix.trim_end_matches('/').to_string();
        self.with_state("list", move |sh, st| sh.list(st, &prefix))
            .await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        if matches!(classify(key), KeyKind::Plain) {
            return self.plain_change(key, None).await;
        }
        let k = key.clone();
        self.with_state("delete", move |sh, st| sh.delete(st, &k))
            .await
            .map_err(|e| e.or_artifact(key.as_str()))
    }

    async fn get_versioned(&self, key: &ObjectKey) -> Result<Option<VersionedObject>> {
        let k = key.clone();
        self.with_state("get versioned", move |sh, st| sh.get_versioned(st, &k))
            .await
            .map_err(|e| e.or_artifact(key.as_str()))
    }

    async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        condition: PutCondition,
    ) -> Result<PutOutcome> {
        let k = key.clone();
        self.with_state("conditional put", move |sh, st| {
            sh.put_if(st, &k, &bytes, &condition)
        })
        .await
        .map_err(|e| e.or_artifact(key.as_str()))
    }
}

impl GitSink {
    /// Starts configuring a Git sink that keeps its working clone of `remote` in `workdir`
    /// (see [`GitSinkBuilder::new`]).
    pub fn builder(remote: impl Into<String>, workdir: impl Into<PathBuf>) -> GitSinkBuilder {
        GitSinkBuilder::new(remote, workdir)
    }

    /// The working clone's directory.
    pub fn workdir(&self) -> &Path {
        &self.shared.cfg.workdir
    }

    /// The branch the sink commits to.
    pub fn branch(&self) -> &str {
        &self.shared.cfg.branch
    }

    /// The ref recording a run (`refs/<namespace>/runs/<id>`).
    pub fn run_ref(&self, run: &RunId) -> String {
        self.shared.cfg.run_ref(run)
    }

    /// The commit the branch points at in the working clone (after the last sync or
    /// commit), as hex, or `None` while the branch has no commit.
    pub async fn head_commit(&self) -> Result<Option<String>> {
        self.with_state("read branch", |sh, st| {
            Ok(sh.branch_tip(&st.repo)?.map(|c| c.id().to_string()))
        })
        .await
    }

    /// Fetches the remote (branch and run records) and resets the working clone to it, so
    /// runs written by other clones become visible. Pending artifacts are kept.
    pub async fn refresh(&self) -> Result<()> {
        self.with_state("refresh", |sh, st| sh.sync(st)).await
    }

    fn gitdir(&self) -> PathBuf {
        self.shared.cfg.workdir.join(".git")
    }

    async fn with_state<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Shared, &mut State) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        blocking(move || {
            let mut guard: MutexGuard<'_, State> =
                shared.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&shared, &mut guard).map_err(|e| {
                shared
                    .cfg
                    .scrub_error(e)
                    .or_component(COMPONENT)
                    .or_operation(op)
            })
        })
        .await
    }
}

/// A libgit2 error's text, already scrubbed of secrets by the caller's config.
#[derive(Debug)]
struct GitCause(String);

impl fmt::Display for GitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GitCause {}

fn git_error(e: git2::Error, op: &str, msg: &str) -> Error {
    let kind = match (e.code(), e.class()) {
        (ErrorCode::NotFound, _) => ErrorKind::NotFound,
        (ErrorCode::Auth, _) | (ErrorCode::Certificate, _) => ErrorKind::Unauthenticated,
        (ErrorCode::Locked, _) => ErrorKind::Unavailable,
        (_, ErrorClass::Net | ErrorClass::Ssh | ErrorClass::Http | ErrorClass::Ssl) => {
            ErrorKind::Unavailable
        }
        (_, ErrorClass::Os) => ErrorKind::Storage,
        _ => ErrorKind::Storage,
    };
    let mut err = Error::new(kind, msg.to_string())
        .with_component(COMPONENT)
        .with_operation(op.to_string())
        .with_source(GitCause(e.message().to_string()));
    if kind == ErrorKind::Unauthenticated {
        err = err.with_hint("check the Git credentials (token or SSH key) and their permissions");
    }
    err
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("a Git task failed: {e}")).with_component(COMPONENT))?
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_classified() {
        let k = |s: &str| ObjectKey::new(s).unwrap();
        assert!(matches!(classify(&k("a/b")), KeyKind::Plain));
        assert!(matches!(classify(&k("runs/x.y/c/d")), KeyKind::Plain));
        assert!(matches!(classify(&k("runs/abc")), KeyKind::Plain));
        match classify(&k("runs/20260101T000000Z-abcdef/crds/a/b.yaml")) {
            KeyKind::Artifact { component, .. } => assert_eq!(component, "crds"),
            _ => panic!("artifact expected"),
        }
        match classify(&k("runs/20260101T000000Z-abcdef/verifications/x.json")) {
            KeyKind::RunFile { file, .. } => assert_eq!(file, "verifications/x.json"),
            _ => panic!("run file expected"),
        }
        match classify(&k("runs/20260101T000000Z-abcdef/manifest.json")) {
            KeyKind::RunFile { file, .. } => assert_eq!(file, "manifest.json"),
            _ => panic!("run file expected"),
        }
    }
}
