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
//! another cluster) may push to the same branch: a push rejected as non-fast-forward is
//! followed by a fetch, the run's change is re-applied on top of the remote branch (a
//! rebase of our one commit: the other writer's commits stay) and the push retried, a
//! bounded number of times. Never forced.
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
//! - With a local path or `file://` remote, libgit2 updates the remote's refs itself: the
//!   checks against concurrent writers (fast-forward, lease) are made against the refs it
//!   reads just before the update, not atomically by a server as `git receive-pack` does.
//!
//! # The working clone
//!
//! The directory belongs to the sink (one [`GitSink`] per directory): it is created (or opened) on [`GitSinkConfig::open`],
//! its branch is reset to the remote's on every sync, and its working tree is checked out
//! after each commit so operators can look at the files. Don't edit it by hand.
//!
//! ```no_run
//! # async fn demo() -> stoa_backup_core::Result<()> {
//! use stoa_backup_storage::git::{GitCredentials, GitSink};
//! let sink = GitSink::builder()
//!     .remote("https://git.example.com/platform/stoa-backups.git")
//!     .branch("main")
//!     .prefix("clusters/prod")
//!     .workdir("/var/lib/stoa-backup/git")
//!     .author("stoa-backup", "backup@example.com")
//!     .credentials(GitCredentials::https_token("x-access-token", "…"))
//!     .open()
//!     .await?;
//! # let _ = sink; Ok(()) }
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use git2::build::{CheckoutBuilder, TreeUpdateBuilder};
use git2::{
    AutotagOption, Commit, Cred, CredentialType, Direction, ErrorClass, ErrorCode, FetchOptions,
    FetchPrune, FileMode, ObjectType, Oid, PushOptions, RemoteCallbacks, Repository,
    RepositoryInitOptions, Signature, Tree, TreeWalkMode, TreeWalkResult,
};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::{validate_prefix, ObjectKey};
use stoa_backup_core::manifest::{Manifest, RunId, MANIFEST_FILE, REPORT_FILE, RUNS_PREFIX};
use stoa_backup_core::sink::{not_found, ObjectMeta, PutResult, Sink, SinkCapabilities};
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

/// How the sink authenticates to the remote. `Debug` never shows secrets.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum GitCredentials {
    /// No credentials (local paths, `file://`, public or pre-authorized remotes).
    #[default]
    None,
    /// HTTPS with a user name and a token (or password).
    HttpsToken {
        /// The user name (`x-access-token` for GitHub apps, `oauth2` for GitLab, …).
        username: String,
        /// The token; never logged.
        token: String,
    },
    /// SSH with a private key file.
    SshKey {
        /// The SSH user (usually `git`).
        username: String,
        /// Path of the private key.
        private_key: PathBuf,
        /// Passphrase of the key, if it has one; never logged.
        passphrase: Option<String>,
    },
    /// SSH through the running ssh-agent.
    SshAgent {
        /// The SSH user (usually `git`).
        username: String,
    },
}

impl GitCredentials {
    /// HTTPS with a user name and a token.
    pub fn https_token(username: impl Into<String>, token: impl Into<String>) -> Self {
        GitCredentials::HttpsToken {
            username: username.into(),
            token: token.into(),
        }
    }

    /// SSH with a private key file (and its passphrase, if any).
    pub fn ssh_key(
        username: impl Into<String>,
        private_key: impl Into<PathBuf>,
        passphrase: Option<String>,
    ) -> Self {
        GitCredentials::SshKey {
            username: username.into(),
            private_key: private_key.into(),
            passphrase,
        }
    }

    /// SSH through the running ssh-agent.
    pub fn ssh_agent(username: impl Into<String>) -> Self {
        GitCredentials::SshAgent {
            username: username.into(),
        }
    }

    fn secrets(&self) -> Vec<String> {
        match self {
            GitCredentials::HttpsToken { token, .. } if !token.is_empty() => vec![token.clone()],
            GitCredentials::SshKey {
                passphrase: Some(p),
                ..
            } if !p.is_empty() => vec![p.clone()],
            _ => Vec::new(),
        }
    }
}

impl fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitCredentials::None => f.write_str("None"),
            GitCredentials::HttpsToken { username, .. } => f
                .debug_struct("HttpsToken")
                .field("username", username)
                .field("token", &"***")
                .finish(),
            GitCredentials::SshKey {
                username,
                private_key,
                passphrase,
            } => f
                .debug_struct("SshKey")
                .field("username", username)
                .field("private_key", private_key)
                .field("passphrase", &passphrase.as_ref().map(|_| "***"))
                .finish(),
            GitCredentials::SshAgent { username } => f
                .debug_struct("SshAgent")
                .field("username", username)
                .finish(),
        }
    }
}

/// Builds a [`GitSinkConfig`] (pure validation) and opens a [`GitSink`].
#[derive(Debug, Clone)]
pub struct GitSinkBuilder {
    remote: Option<String>,
    workdir: Option<PathBuf>,
    branch: String,
    prefix: String,
    author_name: String,
    author_email: String,
    credentials: GitCredentials,
    ref_namespace: Option<String>,
    push_attempts: u32,
    checkout: bool,
}

impl Default for GitSinkBuilder {
    fn default() -> Self {
        GitSinkBuilder {
            remote: None,
            workdir: None,
            branch: "main".to_string(),
            prefix: String::new(),
            author_name: "stoa-backup".to_string(),
            author_email: "stoa-backup@localhost".to_string(),
            credentials: GitCredentials::None,
            ref_namespace: None,
            push_attempts: 5,
            checkout: true,
        }
    }
}

impl GitSinkBuilder {
    /// The remote: a URL (`https://…`, `ssh://…`, `git@host:path`, `file://…`) or a local
    /// path of a bare repository. Required.
    pub fn remote(mut self, remote: impl Into<String>) -> Self {
        self.remote = Some(remote.into());
        self
    }

    /// Directory of the working clone (created if missing). Required.
    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// The branch to commit to (default `main`; created on the first commit if missing).
    pub fn branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = branch.into();
        self
    }

    /// Path prefix inside the repository (default: the repository's root).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Author and committer of the sink's commits (default `stoa-backup <stoa-backup@localhost>`).
    pub fn author(mut self, name: impl Into<String>, email: impl Into<String>) -> Self {
        self.author_name = name.into();
        self.author_email = email.into();
        self
    }

    /// Credentials for the remote (default: none).
    pub fn credentials(mut self, credentials: GitCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Namespace of run records: refs `refs/<namespace>/runs/<id>` (default `stoa-backup`,
    /// or `stoa-backup/<prefix>` when a prefix is set, so sinks with different prefixes can
    /// share a repository).
    pub fn ref_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.ref_namespace = Some(namespace.into());
        self
    }

    /// How many times a push rejected by a concurrent writer is re-based and retried
    /// (default 5).
    pub fn push_attempts(mut self, attempts: u32) -> Self {
        self.push_attempts = attempts;
        self
    }

    /// Whether the working tree is checked out after each commit (default `true`); without
    /// it the clone holds only the `.git` directory's objects and refs.
    pub fn checkout(mut self, checkout: bool) -> Self {
        self.checkout = checkout;
        self
    }

    /// Validates the configuration without touching the disk or the network.
    pub fn build(self) -> Result<GitSinkConfig> {
        let cfg_err = |msg: String, hint: &str| {
            Error::config(msg)
                .with_component(COMPONENT)
                .with_operation("configure")
                .with_hint(hint.to_string())
        };
        let remote = match self.remote {
            Some(r) if !r.trim().is_empty() => r,
            _ => {
                return Err(cfg_err(
                    "no remote configured".into(),
                    "set .remote(...) to the repository URL or the path of a bare repository",
                ))
            }
        };
        let workdir = self.workdir.ok_or_else(|| {
            cfg_err(
                "no working directory configured".into(),
                "set .workdir(...) to a directory the sink may own (e.g. on a volume)",
            )
        })?;
        if !git2::Reference::is_valid_name(&format!("refs/heads/{}", self.branch)) {
            return Err(cfg_err(
                format!("{:?} is not a valid branch name", self.branch),
                "use a plain branch name such as 'main' or 'backups'",
            ));
        }
        let prefix = self.prefix.trim_matches('/').to_string();
        validate_prefix(&prefix).map_err(|e| e.with_component(COMPONENT))?;
        if prefix.split('/').any(|s| s == META_DIR || s == ".git") {
            return Err(cfg_err(
                format!("the prefix {prefix:?} uses a reserved directory name"),
                "choose a prefix without '.stoa-backup' or '.git' segments",
            ));
        }
        let namespace = match self.ref_namespace {
            Some(ns) => ns.trim_matches('/').to_string(),
            None if prefix.is_empty() => "stoa-backup".to_string(),
            None => format!("stoa-backup/{prefix}"),
        };
        if namespace.is_empty()
            || !git2::Reference::is_valid_name(&format!("refs/{namespace}/runs/x"))
        {
            return Err(cfg_err(
                format!("{namespace:?} cannot be used in Git ref names"),
                "set .ref_namespace(...) to a simple name such as 'stoa-backup/prod'",
            ));
        }
        if self.author_name.trim().is_empty() || self.author_email.trim().is_empty() {
            return Err(cfg_err(
                "the author needs a name and an email".into(),
                "set .author(name, email)",
            ));
        }
        if self.push_attempts == 0 {
            return Err(cfg_err(
                "push_attempts must be at least 1".into(),
                "set .push_attempts(n) with n >= 1",
            ));
        }
        Ok(GitSinkConfig {
            remote,
            workdir,
            branch: self.branch,
            prefix,
            author_name: self.author_name,
            author_email: self.author_email,
            credentials: self.credentials,
            namespace,
            push_attempts: self.push_attempts,
            checkout: self.checkout,
        })
    }

    /// Validates the configuration and opens the sink ([`GitSinkConfig::open`]).
    pub async fn open(self) -> Result<GitSink> {
        self.build()?.open().await
    }
}

/// A validated Git sink configuration.
#[derive(Clone)]
pub struct GitSinkConfig {
    remote: String,
    workdir: PathBuf,
    branch: String,
    prefix: String,
    author_name: String,
    author_email: String,
    credentials: GitCredentials,
    namespace: String,
    push_attempts: u32,
    checkout: bool,
}

impl fmt::Debug for GitSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSinkConfig")
            .field("remote", &redact_url(&self.remote))
            .field("workdir", &self.workdir)
            .field("branch", &self.branch)
            .field("prefix", &self.prefix)
            .field("author_name", &self.author_name)
            .field("author_email", &self.author_email)
            .field("credentials", &self.credentials)
            .field("namespace", &self.namespace)
            .field("push_attempts", &self.push_attempts)
            .field("checkout", &self.checkout)
            .finish()
    }
}

impl GitSinkConfig {
    /// Opens (or creates) the working clone, fetches the remote and returns the sink.
    pub async fn open(self) -> Result<GitSink> {
        let cfg = Arc::new(self);
        let c = cfg.clone();
        let repo = blocking(move || open_repo(&c)).await?;
        let sink = GitSink {
            shared: Arc::new(Shared {
                cfg,
                state: Mutex::new(State {
                    repo,
                    pending: BTreeMap::new(),
                    records: HashMap::new(),
                }),
                queue: Mutex::new(PlainQueue::default()),
            }),
        };
        sink.with_state("open", |sh, st| sh.sync(st)).await?;
        Ok(sink)
    }
}

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

/// What [`GitSink::compact_history`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Commits folded into the new root commit (0: nothing was older than the horizon).
    pub squashed_commits: usize,
    /// Newer commits re-created on top of the new root.
    pub kept_commits: usize,
    /// Run records re-pointed at the rewritten history.
    pub runs_rewritten: usize,
    /// The new root commit, when history was rewritten.
    pub new_root: Option<String>,
}

struct Shared {
    cfg: Arc<GitSinkConfig>,
    state: Mutex<State>,
    /// Changes to plain keys waiting to be committed (group commit: whoever holds the
    /// repository commits every queued change in one commit and push).
    queue: Mutex<PlainQueue>,
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

/// The keys of one recorded run, read from its record commit.
struct RecordInfo {
    time: DateTime<Utc>,
    complete: bool,
    keys: BTreeMap<ObjectKey, (Oid, u64)>,
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

/// A change to the branch's (or a record's) tree.
enum Change {
    /// Write a blob at a path.
    Put(String, Oid),
    /// Remove a path (file or directory) if present.
    Remove(String),
    /// Replace a directory by a tree (`None`: remove it).
    Dir(String, Option<Oid>),
}

/// Why a push did not happen.
enum PushFailure {
    /// Rejected because the remote moved (non-fast-forward, stale lease): fetch and retry.
    Rejected(String),
    /// Anything else.
    Failed(Error),
}

#[async_trait]
impl Sink for GitSink {
    fn describe(&self) -> String {
        let cfg = &self.shared.cfg;
        let mut d = format!("git:{}#{}", redact_url(&cfg.remote), cfg.branch);
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
            return Ok(PutResult { size: staged.size });
        }
        let k = key.clone();
        self.with_state("put", move |sh, st| sh.put_staged(st, &k, kind, staged))
            .await
            .map_err(|e| e.or_artifact(key.as_str()))?;
        Ok(PutResult { size: staged.size })
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
}

impl GitSink {
    /// Starts configuring a Git sink.
    pub fn builder() -> GitSinkBuilder {
        GitSinkBuilder::default()
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

    /// Squashes the branch history older than `horizon` (measured back from now) into one
    /// root commit, re-creates the newer commits on top of it and re-points run records,
    /// then pushes with force-with-lease semantics: nothing is pushed unless the remote
    /// branch and every rewritten run record still point where they pointed when this call
    /// fetched them. Content of runs still recorded stays restorable (their record trees are
    /// kept); content only reachable through squashed commits is left for the remote's
    /// garbage collection. Off by default: only an explicit call rewrites history.
    pub async fn compact_history(&self, horizon: Duration) -> Result<CompactionReport> {
        self.with_state("compact history", move |sh, st| sh.compact(st, horizon))
            .await
    }

    /// Commits a change to a plain key, together with whatever other plain changes are
    /// queued at the time (one commit and one push for a burst of concurrent puts).
    async fn plain_change(&self, key: &ObjectKey, oid: Option<Oid>) -> Result<()> {
        let shared = self.shared.clone();
        let item = Queued {
            ticket: 0,
            key: key.clone(),
            path: shared.cfg.plain_path(key),
            oid,
        };
        let op = if oid.is_some() { "put" } else { "delete" };
        blocking(move || {
            let ticket = {
                let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
                let ticket = q.next_ticket;
                q.next_ticket += 1;
                q.items.push(Queued { ticket, ..item });
                ticket
            };
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            let batch = {
                let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(done) = q.results.remove(&ticket) {
                    return done;
                }
                std::mem::take(&mut q.items)
            };
            let result = shared.commit_plain(&mut st, &batch).map_err(|e| {
                shared
                    .cfg
                    .scrub_error(e)
                    .or_component(COMPONENT)
                    .or_operation(op)
            });
            // Publish the outcome to the other writers of the batch before releasing the
            // repository, so each finds its result when it gets the lock.
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            for item in batch.iter().filter(|i| i.ticket != ticket) {
                let r = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(copy_error(e).with_artifact(item.key.as_str())),
                };
                q.results.insert(item.ticket, r);
            }
            drop(q);
            drop(st);
            result
        })
        .await
        .map_err(|e| e.or_artifact(key.as_str()))
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

    /// Streams `stream` into a new blob, with bounded memory, without holding the lock. A
    /// failing or dropped stream leaves no blob (libgit2 removes its temporary file).
    async fn stage_blob(&self, key: &ObjectKey, mut stream: ByteStream) -> Result<Staged> {
        enum Msg {
            Chunk(Bytes),
            End,
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(PUT_CHANNEL);
        let gitdir = self.gitdir();
        let k = key.clone();
        let writer = tokio::task::spawn_blocking(move || -> Result<Option<Oid>> {
            let repo = Repository::open(&gitdir)
                .map_err(|e| git_error(e, "put", "cannot open the working clone"))?;
            let mut w = repo
                .blob_writer(None)
                .map_err(|e| git_error(e, "put", "cannot start writing the object"))?;
            loop {
                match rx.blocking_recv() {
                    Some(Msg::Chunk(b)) => w.write_all(&b).map_err(|e| {
                        Error::from_io(e, "writing the object into the repository failed")
                            .with_artifact(k.as_str())
                            .with_hint("check free space on the working clone's volume")
                    })?,
                    Some(Msg::End) => {
                        let oid = w
                            .commit()
                            .map_err(|e| git_error(e, "put", "cannot store the object"))?;
                        return Ok(Some(oid));
                    }
                    // The put was dropped or its stream failed: drop the writer, which
                    // removes its temporary file.
                    None => return Ok(None),
                }
            }
        });
        let mut size = 0u64;
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(b) => {
                    size += b.len() as u64;
                    if b.is_empty() {
                        continue;
                    }
                    if tx.send(Msg::Chunk(b)).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    failed = Some(e.or_operation("put").or_artifact(key.as_str()));
                    break;
                }
            }
        }
        if let Some(e) = failed {
            drop(tx);
            // The stream's error is the one to report; the writer only stops on it.
            writer.await.ok();
            return Err(e);
        }
        // If the writer is gone, awaiting it below returns its error.
        tx.send(Msg::End).await.ok();
        drop(tx);
        let oid = writer
            .await
            .map_err(|e| Error::internal(format!("the object writer task failed: {e}")))?
            .map_err(|e| {
                self.shared
                    .cfg
                    .scrub_error(e)
                    .or_component(COMPONENT)
                    .or_operation("put")
                    .or_artifact(key.as_str())
            })?
            .ok_or_else(|| {
                Error::internal("the object writer stopped early")
                    .with_component(COMPONENT)
                    .with_operation("put")
                    .with_artifact(key.as_str())
            })?;
        Ok(Staged {
            oid,
            size,
            at: Utc::now(),
        })
    }
}

impl GitSinkConfig {
    fn run_ref(&self, run: &RunId) -> String {
        format!("refs/{}/runs/{}", self.namespace, run)
    }

    fn runs_glob(&self) -> String {
        format!("refs/{}/runs/*", self.namespace)
    }

    fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/{REMOTE}/{}", self.branch)
    }

    /// `<prefix>/<rel>` (or `<rel>` without a prefix).
    fn path(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    fn plain_path(&self, key: &ObjectKey) -> String {
        self.path(&format!("{META_DIR}/{KEYS_DIR}/{key}"))
    }

    fn run_file_path(&self, file: &str) -> String {
        self.path(&format!("{META_DIR}/{RUN_DIR}/{file}"))
    }

    fn signature(&self) -> Result<Signature<'static>> {
        Signature::now(&self.author_name, &self.author_email)
            .map_err(|e| git_error(e, "commit", "invalid author name or email"))
    }

    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        let mut attempts = 0u32;
        cb.credentials(move |_url, username_from_url, allowed| {
            attempts += 1;
            if attempts > 3 {
                return Err(git2::Error::new(
                    ErrorCode::Auth,
                    ErrorClass::Net,
                    "the remote refused the configured credentials",
                ));
            }
            match &self.credentials {
                GitCredentials::HttpsToken { username, token }
                    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
                {
                    Cred::userpass_plaintext(username, token)
                }
                GitCredentials::SshKey {
                    username,
                    private_key,
                    passphrase,
                } if allowed.contains(CredentialType::SSH_KEY) => {
                    Cred::ssh_key(username, None, private_key, passphrase.as_deref())
                }
                GitCredentials::SshAgent { username }
                    if allowed.contains(CredentialType::SSH_KEY) =>
                {
                    Cred::ssh_key_from_agent(username)
                }
                _ if allowed.contains(CredentialType::USERNAME) => {
                    Cred::username(username_from_url.unwrap_or("git"))
                }
                _ if allowed.contains(CredentialType::DEFAULT) => Cred::default(),
                _ => Err(git2::Error::new(
                    ErrorCode::Auth,
                    ErrorClass::Net,
                    "the remote asks for credentials the sink was not given",
                )),
            }
        });
        cb
    }

    /// Replaces secrets and URL passwords in an error's text.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.remote, &redact_url(&self.remote));
        for s in self.credentials.secrets() {
            out = out.replace(&s, "***");
        }
        out
    }

    fn scrub_error(&self, e: Error) -> Error {
        let secrets = self.credentials.secrets();
        let dirty = secrets.iter().any(|s| e.to_string().contains(s.as_str()))
            || (redact_url(&self.remote) != self.remote && e.to_string().contains(&self.remote));
        if !dirty {
            return e;
        }
        let mut clean = Error::new(e.kind(), self.scrub(e.message()))
            .with_retryable(e.is_retryable())
            .with_source(GitCause(
                self.scrub(
                    &std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                ),
            ));
        if let Some(c) = e.component() {
            clean = clean.with_component(c.to_string());
        }
        if let Some(o) = e.operation() {
            clean = clean.with_operation(o.to_string());
        }
        if let Some(a) = e.artifact() {
            clean = clean.with_artifact(a.to_string());
        }
        if let Some(h) = e.hint() {
            clean = clean.with_hint(self.scrub(h));
        }
        clean
    }
}

impl Shared {
    // ----- remote -----

    /// Fetches the branch and the run records (pruning records deleted on the remote) and
    /// moves the local branch to the remote's.
    fn sync(&self, st: &mut State) -> Result<()> {
        let cfg = &self.cfg;
        let repo = &st.repo;
        let mut remote = repo
            .find_remote(REMOTE)
            .map_err(|e| git_error(e, "fetch", "the working clone has no remote"))?;
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(cfg.callbacks());
        fo.prune(FetchPrune::On);
        fo.download_tags(AutotagOption::None);
        let specs = [
            format!("+{}:{}", cfg.branch_ref(), cfg.tracking_ref()),
            format!("+refs/{0}/runs/*:refs/{0}/runs/*", cfg.namespace),
        ];
        remote.fetch(&specs, Some(&mut fo), None).map_err(|e| {
            git_error(e, "fetch", "cannot fetch from the remote")
                .or_hint("check the remote URL, the network and the credentials")
        })?;
        drop(remote);
        if let Ok(tracking) = repo.refname_to_id(&cfg.tracking_ref()) {
            let local = repo.refname_to_id(&cfg.branch_ref()).ok();
            if local != Some(tracking) {
                self.set_branch(repo, tracking, "stoa-backup: sync with the remote")?;
            }
        }
        Ok(())
    }

    fn check_push_access(&self, repo: &Repository) -> Result<()> {
        let mut remote = repo
            .find_remote(REMOTE)
            .map_err(|e| git_error(e, "preflight", "the working clone has no remote"))?;
        let conn = remote
            .connect_auth(Direction::Push, Some(self.cfg.callbacks()), None)
            .map_err(|e| {
                git_error(e, "preflight", "cannot connect to the remote for pushing")
                    .or_hint("check the credentials: they must allow pushing")
            })?;
        drop(conn);
        Ok(())
    }

    /// Pushes `specs`; with `lease`, aborts unless each destination ref on the remote is
    /// still at the given commit (`None`: must not exist).
    fn push(
        &self,
        repo: &Repository,
        specs: &[String],
        lease: Option<&HashMap<String, Option<Oid>>>,
    ) -> std::result::Result<(), PushFailure> {
        let mut remote = repo.find_remote(REMOTE).map_err(|e| {
            PushFailure::Failed(git_error(e, "push", "the working clone has no remote"))
        })?;
        let statuses: RefCell<Vec<(String, String)>> = RefCell::new(Vec::new());
        let stale: RefCell<Vec<String>> = RefCell::new(Vec::new());
        {
            let mut cb = self.cfg.callbacks();
            cb.push_update_reference(|refname, status| {
                if let Some(msg) = status {
                    statuses
                        .borrow_mut()
                        .push((refname.to_string(), msg.to_string()));
                }
                Ok(())
            });
            if let Some(lease) = lease {
                cb.push_negotiation(|updates| {
                    for u in updates {
                        let Ok(dst) = u.dst_refname() else { continue };
                        if let Some(expected) = lease.get(dst) {
                            let actual = (!u.src().is_zero()).then(|| u.src());
                            if actual != *expected {
                                stale.borrow_mut().push(dst.to_string());
                            }
                        }
                    }
                    if stale.borrow().is_empty() {
                        Ok(())
                    } else {
                        Err(git2::Error::from_str(
                            "the remote changed since it was fetched (lease is stale)",
                        ))
                    }
                });
            }
            let mut po = PushOptions::new();
            po.remote_callbacks(cb);
            if let Err(e) = remote.push(specs, Some(&mut po)) {
                if !stale.borrow().is_empty() {
                    return Err(PushFailure::Rejected(format!(
                        "stale lease on {}",
                        stale.borrow().join(", ")
                    )));
                }
                if e.code() == ErrorCode::NotFastForward {
                    return Err(PushFailure::Rejected(e.message().to_string()));
                }
                return Err(PushFailure::Failed(
                    git_error(e, "push", "cannot push to the remote").or_hint(
                        "check the remote URL, the network and that the credentials allow pushing",
                    ),
                ));
            }
        }
        let statuses = statuses.into_inner();
        if let Some((r, msg)) = statuses.first() {
            let lower = msg.to_ascii_lowercase();
            if [
                "non-fast-forward",
                "fetch first",
                "stale",
                "rejected",
                "failed to lock",
            ]
            .iter()
            .any(|w| lower.contains(w))
            {
                return Err(PushFailure::Rejected(format!("{r}: {msg}")));
            }
            return Err(PushFailure::Failed(
                Error::storage(format!("the remote refused to update {r}: {msg}"))
                    .with_operation("push")
                    .with_hint("check the remote's branch protection and hooks"),
            ));
        }
        Ok(())
    }

    fn set_branch(&self, repo: &Repository, oid: Oid, why: &str) -> Result<()> {
        repo.reference(&self.cfg.branch_ref(), oid, true, why)
            .map_err(|e| git_error(e, "update branch", "cannot move the local branch"))?;
        self.checkout(repo);
        Ok(())
    }

    /// Updates the working tree to the branch (best effort: the repository is the truth).
    fn checkout(&self, repo: &Repository) {
        if !self.cfg.checkout {
            return;
        }
        let mut co = CheckoutBuilder::new();
        co.force();
        if let Err(e) = repo.checkout_head(Some(&mut co)) {
            if e.code() != ErrorCode::UnbornBranch {
                tracing::warn!(error = %self.cfg.scrub(e.message()), "cannot check out the working tree");
            }
        }
    }

    fn branch_tip<'r>(&self, repo: &'r Repository) -> Result<Option<Commit<'r>>> {
        match repo.refname_to_id(&self.cfg.branch_ref()) {
            Ok(oid) => Ok(Some(repo.find_commit(oid).map_err(|e| {
                git_error(e, "read branch", "the branch points at no commit")
            })?)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git_error(e, "read branch", "cannot read the branch")),
        }
    }

    /// Applies `changes` to the branch, commits (if the tree changed) and pushes, re-applying
    /// on the remote's branch when a concurrent writer moved it. Returns the branch tip that
    /// holds the change (`None`: the branch does not exist and nothing was to be written).
    fn update_branch(
        &self,
        st: &mut State,
        changes: &[Change],
        message: &str,
        force_commit: bool,
    ) -> Result<Option<Oid>> {
        let cfg = &self.cfg;
        let mut last_rejection = String::new();
        for attempt in 1..=cfg.push_attempts {
            let repo = &st.repo;
            let base = self.branch_tip(repo)?;
            let base_tree = match &base {
                Some(c) => Some(
                    c.tree()
                        .map_err(|e| git_error(e, "commit", "cannot read tree"))?,
                ),
                None => None,
            };
            let new_tree = apply_changes(repo, base_tree.as_ref(), changes)?;
            let unchanged = match &base_tree {
                Some(t) => t.id() == new_tree,
                None => !force_commit && is_empty_tree(repo, new_tree)?,
            };
            if unchanged {
                return Ok(base.map(|c| c.id()));
            }
            let tree = repo
                .find_tree(new_tree)
                .map_err(|e| git_error(e, "commit", "cannot read the new tree"))?;
            let sig = cfg.signature()?;
            let parents: Vec<&Commit<'_>> = base.iter().collect();
            let full_message = match &base_tree {
                Some(t) => format!("{message}{}", change_summary(repo, t, &tree)),
                None => message.to_string(),
            };
            let commit = repo
                .commit(None, &sig, &sig, &full_message, &tree, &parents)
                .map_err(|e| git_error(e, "commit", "cannot create the commit"))?;
            let pushed = self.push(repo, &[format!("{commit}:{}", cfg.branch_ref())], None);
            drop(parents);
            drop((tree, base_tree, base));
            let repo = &st.repo;
            match pushed {
                Ok(()) => {
                    repo.reference(&cfg.tracking_ref(), commit, true, "stoa-backup: pushed")
                        .map_err(|e| git_error(e, "commit", "cannot update the tracking ref"))?;
                    self.set_branch(repo, commit, "stoa-backup: commit")?;
                    return Ok(Some(commit));
                }
                Err(PushFailure::Rejected(why)) => {
                    tracing::info!(attempt, reason = %cfg.scrub(&why), "push rejected: the remote branch moved; fetching and re-applying");
                    last_rejection = why;
                    self.sync(st)?;
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
                }
                Err(PushFailure::Failed(e)) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "the remote branch kept moving: push rejected {} times (last: {})",
                cfg.push_attempts,
                cfg.scrub(&last_rejection)
            ),
        )
        .with_operation("push")
        .with_hint("another writer pushes very often; retry later, or raise push_attempts"))
    }

    /// Creates or moves a run record ref (a fast-forward on the remote: new record commits
    /// descend from the previous one, or the ref is new).
    fn push_record(&self, st: &mut State, run: &RunId, record: Oid) -> Result<()> {
        let refname = self.cfg.run_ref(run);
        match self.push(&st.repo, &[format!("{record}:{refname}")], None) {
            Ok(()) => {}
            Err(PushFailure::Rejected(why)) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "the run record of {run} was changed by another writer: {}",
                        self.cfg.scrub(&why)
                    ),
                )
                .with_operation("push run record")
                .with_hint("refresh the sink and retry"))
            }
            Err(PushFailure::Failed(e)) => return Err(e),
        }
        st.repo
            .reference(&refname, record, true, "stoa-backup: run record")
            .map_err(|e| git_error(e, "record run", "cannot write the run record ref"))?;
        Ok(())
    }

    // ----- puts -----

    fn commit_plain(&self, st: &mut State, batch: &[Queued]) -> Result<()> {
        // The last change per path wins (queue order is arrival order).
        let mut last: BTreeMap<&str, (&ObjectKey, Option<Oid>)> = BTreeMap::new();
        for q in batch {
            last.insert(q.path.as_str(), (&q.key, q.oid));
        }
        let changes: Vec<Change> = last
            .iter()
            .map(|(path, (_, oid))| match oid {
                Some(oid) => Change::Put(path.to_string(), *oid),
                None => Change::Remove(path.to_string()),
            })
            .collect();
        let describe = |(k, oid): &(&ObjectKey, Option<Oid>)| {
            format!("{} {k}", if oid.is_some() { "put" } else { "delete" })
        };
        let message = if last.len() == 1 {
            format!(
                "stoa-backup: {}\n",
                describe(last.values().next().expect("one"))
            )
        } else {
            let mut m = format!("stoa-backup: {} objects changed\n\n", last.len());
            for d in last.values().take(50) {
                m.push_str(&format!("  {}\n", describe(d)));
            }
            m
        };
        self.update_branch(st, &changes, &message, false)?;
        Ok(())
    }

    fn put_staged(
        &self,
        st: &mut State,
        key: &ObjectKey,
        kind: KeyKind,
        staged: Staged,
    ) -> Result<()> {
        match kind {
            KeyKind::Plain => Err(Error::internal(
                "plain keys are committed through the queue",
            )),
            KeyKind::Artifact { run, .. } => {
                if self.record_of(st, &run)?.is_some() {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!("run {run} is already recorded; its artifacts are part of Git history and cannot be replaced"),
                    )
                    .with_operation("put")
                    .with_hint("write the artifact in a new run"));
                }
                st.pending
                    .entry(run)
                    .or_default()
                    .artifacts
                    .insert(key.clone(), staged);
                Ok(())
            }
            KeyKind::RunFile { run, file } => {
                if let Some(record) = self.record_of(st, &run)? {
                    let changes = [Change::Put(self.cfg.run_file_path(&file), staged.oid)];
                    return self.update_record(st, &run, record, &changes, &format!("put {file}"));
                }
                if file == MANIFEST_FILE || file == REPORT_FILE {
                    return self.record_run(st, &run, &file, staged);
                }
                st.pending
                    .entry(run)
                    .or_default()
                    .files
                    .insert(file, staged);
                Ok(())
            }
        }
    }

    /// The commit point of a run: commits its content (complete runs only) and records it.
    fn record_run(&self, st: &mut State, run: &RunId, file: &str, staged: Staged) -> Result<()> {
        let cfg = self.cfg.clone();
        let complete = file == MANIFEST_FILE;
        let manifest = {
            let blob = st
                .repo
                .find_blob(staged.oid)
                .map_err(|e| git_error(e, "record run", "cannot read the manifest back"))?;
            Manifest::from_json(blob.content())?
        };
        if &manifest.run_id != run {
            return Err(Error::integrity(format!(
                "the manifest stored under run {run} names run {}",
                manifest.run_id
            ))
            .with_operation("record run"));
        }
        let empty = PendingRun::default();
        let pending = st.pending.get(run).unwrap_or(&empty);

        // One tree per component of the run, holding exactly the run's artifacts.
        let mut by_component: BTreeMap<&str, Vec<(&str, Staged)>> = BTreeMap::new();
        for a in &manifest.artifacts {
            let staged = pending.artifacts.get(&a.key).copied().ok_or_else(|| {
                Error::integrity(format!(
                    "the manifest lists {} but no such artifact was put in this run",
                    a.key
                ))
                .with_operation("record run")
                .with_hint("artifacts must be put through the same sink before the manifest")
            })?;
            let prefix = format!("{RUNS_PREFIX}/{run}/{}/", a.component);
            let name = a.key.as_str().strip_prefix(&prefix).ok_or_else(|| {
                Error::integrity(format!(
                    "artifact key {} does not follow runs/<id>/<component>/<name>",
                    a.key
                ))
                .with_operation("record run")
            })?;
            by_component
                .entry(a.component.as_str())
                .or_default()
                .push((name, staged));
        }
        let mut content_changes = Vec::new();
        for (component, files) in &by_component {
            let mut b = TreeUpdateBuilder::new();
            for (name, s) in files {
                b.upsert(*name, s.oid, FileMode::Blob);
            }
            let empty_tree = empty_tree(&st.repo)?;
            let tree = b
                .create_updated(&st.repo, &empty_tree)
                .map_err(|e| git_error(e, "record run", "cannot build the component's tree"))?;
            content_changes.push(Change::Dir(cfg.path(component), Some(tree)));
        }
        let mut record_changes: Vec<Change> = pending
            .files
            .iter()
            .map(|(f, s)| Change::Put(cfg.run_file_path(f), s.oid))
            .collect();
        record_changes.push(Change::Put(cfg.run_file_path(file), staged.oid));

        let components: Vec<&str> = by_component.keys().copied().collect();
        let base = if complete {
            let message = format!(
                "stoa-backup run {run}: {}\n",
                if components.is_empty() {
                    "(no artifacts)".to_string()
                } else {
                    components.join(", ")
                }
            );
            self.update_branch(st, &content_changes, &message, true)?
        } else {
            self.branch_tip(&st.repo)?.map(|c| c.id())
        };

        // The record commit: the run's content plus its run files, on top of `base`.
        let repo = &st.repo;
        let base_commit = match base {
            Some(oid) => Some(
                repo.find_commit(oid)
                    .map_err(|e| git_error(e, "record run", "cannot read the branch commit"))?,
            ),
            None => None,
        };
        let base_tree = match &base_commit {
            Some(c) => Some(
                c.tree()
                    .map_err(|e| git_error(e, "record run", "cannot read tree"))?,
            ),
            None => None,
        };
        let content_tree = if complete {
            base_tree.as_ref().map(|t| t.id())
        } else {
            Some(apply_changes(repo, base_tree.as_ref(), &content_changes)?)
        };
        let content_tree = match content_tree {
            Some(t) => Some(
                repo.find_tree(t)
                    .map_err(|e| git_error(e, "record run", "cannot read tree"))?,
            ),
            None => None,
        };
        let record_tree = apply_changes(repo, content_tree.as_ref(), &record_changes)?;
        let record_tree = repo
            .find_tree(record_tree)
            .map_err(|e| git_error(e, "record run", "cannot read tree"))?;
        let sig = cfg.signature()?;
        let parents: Vec<&Commit<'_>> = base_commit.iter().collect();
        let message = format!(
            "stoa-backup run record {run} ({})\n\nStoa-Backup-Run: {run}\nStoa-Backup-Status: {}\n",
            if components.is_empty() {
                "no artifacts".to_string()
            } else {
                components.join(", ")
            },
            manifest.status
        );
        let record = repo
            .commit(None, &sig, &sig, &message, &record_tree, &parents)
            .map_err(|e| git_error(e, "record run", "cannot create the run record commit"))?;
        drop((record_tree, content_tree, base_tree, base_commit));
        self.push_record(st, run, record)?;
        st.pending.remove(run);
        Ok(())
    }

    /// A new record commit on top of `record` with `changes` applied to its tree.
    fn update_record(
        &self,
        st: &mut State,
        run: &RunId,
        record: Oid,
        changes: &[Change],
        what: &str,
    ) -> Result<()> {
        let repo = &st.repo;
        let old = repo
            .find_commit(record)
            .map_err(|e| git_error(e, "update run record", "cannot read the run record"))?;
        let old_tree = old
            .tree()
            .map_err(|e| git_error(e, "update run record", "cannot read tree"))?;
        let new_tree = apply_changes(repo, Some(&old_tree), changes)?;
        if new_tree == old_tree.id() {
            return Ok(());
        }
        let tree = repo
            .find_tree(new_tree)
            .map_err(|e| git_error(e, "update run record", "cannot read tree"))?;
        let sig = self.cfg.signature()?;
        let message = format!("stoa-backup run record {run}: {what}\n\nStoa-Backup-Run: {run}\n");
        let commit = repo
            .commit(None, &sig, &sig, &message, &tree, &[&old])
            .map_err(|e| git_error(e, "update run record", "cannot create the commit"))?;
        drop((tree, old_tree, old));
        self.push_record(st, run, commit)
    }

    // ----- reads -----

    fn record_of(&self, st: &State, run: &RunId) -> Result<Option<Oid>> {
        match st.repo.refname_to_id(&self.cfg.run_ref(run)) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git_error(
                e,
                "read run record",
                "cannot read the run record",
            )),
        }
    }

    fn record_info(&self, st: &mut State, run: &RunId, record: Oid) -> Result<Arc<RecordInfo>> {
        if let Some(info) = st.records.get(&record) {
            return Ok(info.clone());
        }
        let info = Arc::new(read_record(&self.cfg, &st.repo, run, record)?);
        st.records.insert(record, info.clone());
        Ok(info)
    }

    /// The blob (and size) under `key`, if any.
    fn resolve(&self, st: &mut State, key: &ObjectKey) -> Result<Option<(Oid, u64)>> {
        match classify(key) {
            KeyKind::Plain => {
                let Some(tip) = self.branch_tip(&st.repo)? else {
                    return Ok(None);
                };
                let tree = tip
                    .tree()
                    .map_err(|e| git_error(e, "get", "cannot read tree"))?;
                blob_at(&st.repo, &tree, &self.cfg.plain_path(key))
            }
            KeyKind::Artifact { ref run, .. } | KeyKind::RunFile { ref run, .. } => {
                if let Some(record) = self.record_of(st, run)? {
                    let info = self.record_info(st, run, record)?;
                    return Ok(info.keys.get(key).copied());
                }
                let Some(p) = st.pending.get(run) else {
                    return Ok(None);
                };
                let staged = match classify(key) {
                    KeyKind::RunFile { file, .. } => p.files.get(&file).copied(),
                    _ => p.artifacts.get(key).copied(),
                };
                Ok(staged.map(|s| (s.oid, s.size)))
            }
        }
    }

    fn list(&self, st: &mut State, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        // Plain keys: files under <prefix>/.stoa-backup/keys on the branch.
        if let Some(tip) = self.branch_tip(&st.repo)? {
            let tree = tip
                .tree()
                .map_err(|e| git_error(e, "list", "cannot read tree"))?;
            let root = self.cfg.path(&format!("{META_DIR}/{KEYS_DIR}"));
            let (start, rel_base) = if prefix.is_empty() {
                (root.clone(), String::new())
            } else {
                (format!("{root}/{prefix}"), prefix.to_string())
            };
            let odb = st
                .repo
                .odb()
                .map_err(|e| git_error(e, "list", "cannot open the object database"))?;
            let time = commit_time(&tip);
            match tree.get_path(Path::new(&start)) {
                Ok(entry) if entry.kind() == Some(ObjectType::Blob) => {
                    let size = odb.read_header(entry.id()).map(|h| h.0 as u64).unwrap_or(0);
                    if let Ok(key) = ObjectKey::new(rel_base.as_str()) {
                        out.push(ObjectMeta {
                            key,
                            size,
                            last_modified: Some(time),
                        });
                    }
                }
                Ok(entry) if entry.kind() == Some(ObjectType::Tree) => {
                    let sub = st
                        .repo
                        .find_tree(entry.id())
                        .map_err(|e| git_error(e, "list", "cannot read tree"))?;
                    sub.walk(TreeWalkMode::PreOrder, |dir, e| {
                        if e.kind() != Some(ObjectType::Blob) {
                            return TreeWalkResult::Ok;
                        }
                        let Ok(name) = e.name() else {
                            return TreeWalkResult::Ok;
                        };
                        let rel = match (rel_base.is_empty(), dir.is_empty()) {
                            (true, _) => format!("{dir}{name}"),
                            (false, _) => format!("{rel_base}/{dir}{name}"),
                        };
                        if let Ok(key) = ObjectKey::new(rel) {
                            let size = odb.read_header(e.id()).map(|h| h.0 as u64).unwrap_or(0);
                            out.push(ObjectMeta {
                                key,
                                size,
                                last_modified: Some(time),
                            });
                        }
                        TreeWalkResult::Ok
                    })
                    .map_err(|e| git_error(e, "list", "cannot walk the tree"))?;
                }
                _ => {}
            }
        }

        // Run keys: recorded runs and pending runs.
        let covers_runs = prefix.is_empty()
            || prefix == RUNS_PREFIX
            || prefix.starts_with(&format!("{RUNS_PREFIX}/"));
        if covers_runs {
            let only_run = prefix.split('/').nth(1).map(str::to_string);
            let mut records = Vec::new();
            {
                let refs = st
                    .repo
                    .references_glob(&self.cfg.runs_glob())
                    .map_err(|e| git_error(e, "list", "cannot list run records"))?;
                let base = format!("refs/{}/runs/", self.cfg.namespace);
                for r in refs.flatten() {
                    let (Ok(name), Some(oid)) = (r.name(), r.target()) else {
                        continue;
                    };
                    let Some(id) = name.strip_prefix(&base) else {
                        continue;
                    };
                    if id.contains('/') || only_run.as_deref().is_some_and(|o| o != id) {
                        continue;
                    }
                    if let Ok(run) = RunId::parse(id) {
                        records.push((run, oid));
                    }
                }
            }
            let recorded: BTreeSet<RunId> = records.iter().map(|(r, _)| r.clone()).collect();
            for (run, oid) in records {
                let info = match self.record_info(st, &run, oid) {
                    Ok(i) => i,
                    Err(e) => {
                        tracing::warn!(run = %run, error = %e, "skipping an unreadable run record");
                        continue;
                    }
                };
                for (key, (_, size)) in &info.keys {
                    if key.starts_with_prefix(prefix) {
                        out.push(ObjectMeta {
                            key: key.clone(),
                            size: *size,
                            last_modified: Some(info.time),
                        });
                    }
                }
            }
            for (run, p) in &st.pending {
                if recorded.contains(run) || only_run.as_deref().is_some_and(|o| o != run.as_str())
                {
                    continue;
                }
                let files = p.files.iter().filter_map(|(f, s)| {
                    ObjectKey::new(format!("{}/{f}", run.prefix()))
                        .ok()
                        .map(|k| (k, *s))
                });
                for (key, s) in p
                    .artifacts
                    .iter()
                    .map(|(k, s)| (k.clone(), *s))
                    .chain(files)
                {
                    if key.starts_with_prefix(prefix) {
                        out.push(ObjectMeta {
                            key,
                            size: s.size,
                            last_modified: Some(s.at),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        Ok(out)
    }

    // ----- deletes -----

    fn delete(&self, st: &mut State, key: &ObjectKey) -> Result<()> {
        match classify(key) {
            KeyKind::Plain => Err(Error::internal("plain keys are deleted through the queue")),
            KeyKind::Artifact { run, .. } => {
                if self.record_of(st, &run)?.is_some() {
                    // History keeps recorded content; forgetting the run hides it.
                    tracing::debug!(key = %key, "delete of a recorded run's artifact: kept in history");
                    return Ok(());
                }
                if let Some(p) = st.pending.get_mut(&run) {
                    p.artifacts.remove(key);
                    if p.artifacts.is_empty() && p.files.is_empty() {
                        st.pending.remove(&run);
                    }
                }
                Ok(())
            }
            KeyKind::RunFile { run, file } => {
                let Some(record) = self.record_of(st, &run)? else {
                    if let Some(p) = st.pending.get_mut(&run) {
                        p.files.remove(&file);
                        if p.artifacts.is_empty() && p.files.is_empty() {
                            st.pending.remove(&run);
                        }
                    }
                    return Ok(());
                };
                let info = self.record_info(st, &run, record)?;
                if !info.keys.contains_key(key) {
                    return Ok(());
                }
                let forgets_run = file == MANIFEST_FILE
                    || (file == REPORT_FILE
                        && !info.complete
                        && !info.keys.contains_key(&run.manifest_key()));
                if forgets_run {
                    return self.remove_record(st, &run);
                }
                let changes = [Change::Remove(self.cfg.run_file_path(&file))];
                self.update_record(st, &run, record, &changes, &format!("delete {file}"))
            }
        }
    }

    fn remove_record(&self, st: &mut State, run: &RunId) -> Result<()> {
        let refname = self.cfg.run_ref(run);
        match self.push(&st.repo, &[format!(":{refname}")], None) {
            Ok(()) => {}
            Err(PushFailure::Rejected(why)) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "the remote refused to remove the run record: {}",
                        self.cfg.scrub(&why)
                    ),
                )
                .with_operation("forget run"))
            }
            Err(PushFailure::Failed(e)) => return Err(e.or_operation("forget run")),
        }
        match st.repo.find_reference(&refname) {
            Ok(mut r) => r
                .delete()
                .map_err(|e| git_error(e, "forget run", "cannot delete the local run record"))?,
            Err(e) if e.code() == ErrorCode::NotFound => {}
            Err(e) => return Err(git_error(e, "forget run", "cannot read the run record")),
        }
        tracing::info!(run = %run, "run record removed; its content stays in the branch history");
        Ok(())
    }

    // ----- compaction -----

    fn compact(&self, st: &mut State, horizon: Duration) -> Result<CompactionReport> {
        self.sync(st)?;
        let cfg = self.cfg.clone();
        let repo = &st.repo;
        let Ok(tip) = repo.refname_to_id(&cfg.tracking_ref()) else {
            return Ok(CompactionReport::default());
        };
        let horizon = chrono::Duration::from_std(horizon)
            .map_err(|_| Error::config("the compaction horizon is too large"))?;
        let cutoff = Utc::now() - horizon;

        // First-parent history, newest first.
        let mut chain = Vec::new();
        let mut cur = Some(
            repo.find_commit(tip)
                .map_err(|e| git_error(e, "compact history", "cannot read the branch"))?,
        );
        while let Some(c) = cur {
            let parent = c.parent(0).ok();
            chain.push(c);
            cur = parent;
        }
        let Some(boundary) = chain.iter().position(|c| commit_time(c) < cutoff) else {
            return Ok(CompactionReport::default());
        };
        if boundary == chain.len() - 1 && chain[boundary].parent_count() == 0 {
            return Ok(CompactionReport::default()); // already squashed up to the horizon
        }
        let old = &chain[boundary];
        let sig = cfg.signature()?;
        let squashed = chain.len() - boundary;
        let message = format!(
            "stoa-backup: history before {} squashed\n\n{squashed} commits ending at {} were \
             folded into this one by compact_history.\n",
            cutoff.format("%Y-%m-%dT%H:%M:%SZ"),
            old.id()
        );
        let tree = old
            .tree()
            .map_err(|e| git_error(e, "compact history", "cannot read tree"))?;
        let root = repo
            .commit(None, &old.author(), &sig, &message, &tree, &[])
            .map_err(|e| git_error(e, "compact history", "cannot create the root commit"))?;
        let mut map: HashMap<Oid, Oid> = HashMap::new();
        for c in &chain[boundary..] {
            map.insert(c.id(), root);
        }
        let mut new_tip = root;
        for c in chain[..boundary].iter().rev() {
            let parent = repo
                .find_commit(new_tip)
                .map_err(|e| git_error(e, "compact history", "cannot read commit"))?;
            let tree = c
                .tree()
                .map_err(|e| git_error(e, "compact history", "cannot read tree"))?;
            new_tip = repo
                .commit(
                    None,
                    &c.author(),
                    &c.committer(),
                    c.message().unwrap_or(""),
                    &tree,
                    &[&parent],
                )
                .map_err(|e| git_error(e, "compact history", "cannot re-create a commit"))?;
            map.insert(c.id(), new_tip);
        }

        // Re-point run records whose content commit was rewritten.
        let mut specs = vec![format!("+{new_tip}:{}", cfg.branch_ref())];
        let mut lease: HashMap<String, Option<Oid>> = HashMap::new();
        lease.insert(cfg.branch_ref(), Some(tip));
        let mut new_refs = vec![(cfg.branch_ref(), new_tip)];
        let refs: Vec<(String, Oid)> = repo
            .references_glob(&cfg.runs_glob())
            .map_err(|e| git_error(e, "compact history", "cannot list run records"))?
            .flatten()
            .filter_map(|r| Some((r.name().ok()?.to_string(), r.target()?)))
            .collect();
        for (name, record) in refs {
            let rc = repo
                .find_commit(record)
                .map_err(|e| git_error(e, "compact history", "cannot read a run record"))?;
            let mut base = rc.parent(0).ok();
            let mut mapped = None;
            while let Some(b) = base {
                if let Some(m) = map.get(&b.id()) {
                    mapped = Some(*m);
                    break;
                }
                base = b.parent(0).ok();
            }
            let Some(mapped) = mapped else { continue };
            let parent = repo
                .find_commit(mapped)
                .map_err(|e| git_error(e, "compact history", "cannot read commit"))?;
            let tree = rc
                .tree()
                .map_err(|e| git_error(e, "compact history", "cannot read tree"))?;
            let new_record = repo
                .commit(
                    None,
                    &rc.author(),
                    &rc.committer(),
                    rc.message().unwrap_or(""),
                    &tree,
                    &[&parent],
                )
                .map_err(|e| git_error(e, "compact history", "cannot re-create a run record"))?;
            specs.push(format!("+{new_record}:{name}"));
            lease.insert(name.clone(), Some(record));
            new_refs.push((name, new_record));
        }
        let report = CompactionReport {
            squashed_commits: squashed,
            kept_commits: boundary,
            runs_rewritten: new_refs.len() - 1,
            new_root: Some(root.to_string()),
        };
        drop((tree, chain));
        match self.push(repo, &specs, Some(&lease)) {
            Ok(()) => {}
            Err(PushFailure::Rejected(why)) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "history not compacted: the remote changed while compacting ({})",
                        cfg.scrub(&why)
                    ),
                )
                .with_operation("compact history")
                .with_hint("nothing was rewritten; run the compaction again"))
            }
            Err(PushFailure::Failed(e)) => return Err(e.or_operation("compact history")),
        }
        for (name, oid) in &new_refs {
            repo.reference(name, *oid, true, "stoa-backup: compact history")
                .map_err(|e| git_error(e, "compact history", "cannot update a local ref"))?;
        }
        repo.reference(
            &cfg.tracking_ref(),
            new_tip,
            true,
            "stoa-backup: compact history",
        )
        .map_err(|e| git_error(e, "compact history", "cannot update the tracking ref"))?;
        self.checkout(repo);
        st.records.clear();
        Ok(report)
    }
}

/// Reads the keys of a run from its record commit.
fn read_record(
    cfg: &GitSinkConfig,
    repo: &Repository,
    run: &RunId,
    record: Oid,
) -> Result<RecordInfo> {
    let commit = repo
        .find_commit(record)
        .map_err(|e| git_error(e, "read run record", "cannot read the run record commit"))?;
    let tree = commit
        .tree()
        .map_err(|e| git_error(e, "read run record", "cannot read tree"))?;
    let odb = repo
        .odb()
        .map_err(|e| git_error(e, "read run record", "cannot open the object database"))?;
    let mut keys = BTreeMap::new();
    let run_dir = cfg.run_file_path("");
    let run_dir = run_dir.trim_end_matches('/');
    if let Ok(entry) = tree.get_path(Path::new(run_dir)) {
        if let Ok(sub) = repo.find_tree(entry.id()) {
            sub.walk(TreeWalkMode::PreOrder, |dir, e| {
                if e.kind() == Some(ObjectType::Blob) {
                    if let Ok(name) = e.name() {
                        if let Ok(k) = ObjectKey::new(format!("{}/{dir}{name}", run.prefix())) {
                            let size = odb.read_header(e.id()).map(|h| h.0 as u64).unwrap_or(0);
                            keys.insert(k, (e.id(), size));
                        }
                    }
                }
                TreeWalkResult::Ok
            })
            .map_err(|e| git_error(e, "read run record", "cannot walk the tree"))?;
        }
    }
    let complete = keys.contains_key(&run.manifest_key());
    let record_file = if complete {
        Some(run.manifest_key())
    } else if keys.contains_key(&run.report_key()) {
        Some(run.report_key())
    } else {
        None
    };
    if let Some(k) = record_file {
        let (oid, _) = keys[&k];
        let blob = repo
            .find_blob(oid)
            .map_err(|e| git_error(e, "read run record", "cannot read the manifest"))?;
        let manifest = Manifest::from_json(blob.content())?;
        for a in &manifest.artifacts {
            let prefix = format!("{}/{}/", run.prefix(), a.component);
            let Some(name) = a.key.as_str().strip_prefix(&prefix) else {
                continue;
            };
            let path = cfg.path(&format!("{}/{name}", a.component));
            match blob_at(repo, &tree, &path)? {
                Some((oid, size)) => {
                    keys.insert(a.key.clone(), (oid, size));
                }
                None => {
                    tracing::warn!(run = %run, key = %a.key, "run record lacks an artifact its manifest lists")
                }
            }
        }
    }
    Ok(RecordInfo {
        time: commit_time(&commit),
        complete,
        keys,
    })
}

fn open_repo(cfg: &GitSinkConfig) -> Result<Repository> {
    let io = |e: std::io::Error, what: String| {
        Error::from_io(e, what)
            .with_component(COMPONENT)
            .with_operation("open")
    };
    std::fs::create_dir_all(&cfg.workdir).map_err(|e| {
        io(
            e,
            format!(
                "cannot create the working directory {}",
                cfg.workdir.display()
            ),
        )
    })?;
    let repo = if cfg.workdir.join(".git").exists() {
        Repository::open(&cfg.workdir).map_err(|e| {
            git_error(
                e,
                "open",
                "the working directory holds no usable Git repository",
            )
            .with_hint("point .workdir(...) at an empty directory the sink may own")
        })?
    } else {
        let mut opts = RepositoryInitOptions::new();
        opts.no_reinit(true).mkdir(true).initial_head(&cfg.branch);
        Repository::init_opts(&cfg.workdir, &opts)
            .map_err(|e| git_error(e, "open", "cannot create the working clone"))?
    };
    match repo.find_remote(REMOTE) {
        Ok(r) => {
            if r.url().ok() != Some(cfg.remote.as_str()) {
                return Err(Error::config(format!(
                    "the working clone at {} belongs to another remote",
                    cfg.workdir.display()
                ))
                .with_component(COMPONENT)
                .with_operation("open")
                .with_hint("use a separate working directory per remote"));
            }
        }
        Err(e) if e.code() == ErrorCode::NotFound => {
            repo.remote(REMOTE, &cfg.remote)
                .map_err(|e| git_error(e, "open", "invalid remote URL"))?;
        }
        Err(e) => return Err(git_error(e, "open", "cannot read the remote")),
    }
    {
        let mut config = repo
            .config()
            .map_err(|e| git_error(e, "open", "cannot read the clone's config"))?;
        // Bytes in, bytes out: no line-ending conversion when checking out.
        config
            .set_bool("core.autocrlf", false)
            .map_err(|e| git_error(e, "open", "cannot configure the clone"))?;
    }
    repo.set_head(&cfg.branch_ref())
        .map_err(|e| git_error(e, "open", "cannot select the branch"))?;
    Ok(repo)
}

fn empty_tree(repo: &Repository) -> Result<Tree<'_>> {
    let oid = repo
        .treebuilder(None)
        .and_then(|b| b.write())
        .map_err(|e| git_error(e, "commit", "cannot write an empty tree"))?;
    repo.find_tree(oid)
        .map_err(|e| git_error(e, "commit", "cannot read tree"))
}

fn is_empty_tree(repo: &Repository, tree: Oid) -> Result<bool> {
    Ok(empty_tree(repo)?.id() == tree)
}

fn apply_changes(repo: &Repository, base: Option<&Tree<'_>>, changes: &[Change]) -> Result<Oid> {
    let empty;
    let base = match base {
        Some(t) => t,
        None => {
            empty = empty_tree(repo)?;
            &empty
        }
    };
    let mut b = TreeUpdateBuilder::new();
    let mut any = false;
    for c in changes {
        match c {
            Change::Put(path, oid) => {
                b.upsert(path.as_str(), *oid, FileMode::Blob);
                any = true;
            }
            Change::Dir(path, Some(tree)) => {
                b.upsert(path.as_str(), *tree, FileMode::Tree);
                any = true;
            }
            Change::Remove(path) | Change::Dir(path, None) => {
                if base.get_path(Path::new(path)).is_ok() {
                    b.remove(path.as_str());
                    any = true;
                }
            }
        }
    }
    if !any {
        return Ok(base.id());
    }
    b.create_updated(repo, base)
        .map_err(|e| git_error(e, "commit", "cannot build the new tree"))
}

fn blob_at(repo: &Repository, tree: &Tree<'_>, path: &str) -> Result<Option<(Oid, u64)>> {
    match tree.get_path(Path::new(path)) {
        Ok(e) if e.kind() == Some(ObjectType::Blob) => {
            let odb = repo
                .odb()
                .map_err(|e| git_error(e, "get", "cannot open the object database"))?;
            let (size, _) = odb
                .read_header(e.id())
                .map_err(|e| git_error(e, "get", "cannot read an object"))?;
            Ok(Some((e.id(), size as u64)))
        }
        Ok(_) => Ok(None),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(git_error(e, "get", "cannot read tree")),
    }
}

/// `\n\n<n> files changed:\n  M path…` for commit messages.
fn change_summary(repo: &Repository, old: &Tree<'_>, new: &Tree<'_>) -> String {
    let Ok(diff) = repo.diff_tree_to_tree(Some(old), Some(new), None) else {
        return String::new();
    };
    let n = diff.deltas().len();
    let mut s = format!("\n{n} file(s) changed:\n");
    for d in diff.deltas().take(50) {
        let path = d
            .new_file()
            .path()
            .or_else(|| d.old_file().path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let tag = match d.status() {
            git2::Delta::Added => 'A',
            git2::Delta::Deleted => 'D',
            _ => 'M',
        };
        s.push_str(&format!("  {tag} {path}\n"));
    }
    if n > 50 {
        s.push_str(&format!("  … and {} more\n", n - 50));
    }
    s
}

fn commit_time(c: &Commit<'_>) -> DateTime<Utc> {
    Utc.timestamp_opt(c.time().seconds(), 0)
        .single()
        .unwrap_or_else(Utc::now)
}

/// `url` with any password in it replaced by `***`.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{}{user}:***{}", &url[..rest_start], &rest[at..])
            } else {
                url.to_string()
            }
        }
        None => url.to_string(),
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

/// A copy of an error for the other writers of a failed group commit.
fn copy_error(e: &Error) -> Error {
    let mut c = Error::new(e.kind(), e.message().to_string()).with_retryable(e.is_retryable());
    if let Some(src) = std::error::Error::source(e) {
        c = c.with_source(GitCause(src.to_string()));
    }
    if let Some(x) = e.component() {
        c = c.with_component(x.to_string());
    }
    if let Some(x) = e.operation() {
        c = c.with_operation(x.to_string());
    }
    if let Some(x) = e.hint() {
        c = c.with_hint(x.to_string());
    }
    c
}

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

    #[test]
    fn credentials_never_show() {
        let c = GitCredentials::https_token("x-access-token", "ghp_secret");
        assert!(!format!("{c:?}").contains("ghp_secret"));
        let c = GitCredentials::ssh_key("git", "/k", Some("pass".into()));
        assert!(!format!("{c:?}").contains("pass\""));
        assert_eq!(
            redact_url("https://user:tok@host/repo.git"),
            "https://user:***@host/repo.git"
        );
        assert_eq!(redact_url("/srv/git/r.git"), "/srv/git/r.git");
        let cfg = GitSink::builder()
            .remote("https://user:tok@host/repo.git")
            .workdir("/tmp/x")
            .credentials(GitCredentials::https_token("u", "ghp_secret"))
            .build()
            .unwrap();
        let dbg = format!("{cfg:?}");
        assert!(
            !dbg.contains("tok@") && !dbg.contains("ghp_secret"),
            "{dbg}"
        );
        let e = cfg.scrub_error(Error::storage(
            "failed for ghp_secret at https://user:tok@host/repo.git",
        ));
        assert!(
            !e.to_string().contains("ghp_secret") && !e.to_string().contains(":tok@"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn force_with_lease_refuses_a_remote_that_moved() {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("r.git");
        Repository::init_bare(&remote).unwrap();
        let sink = GitSink::builder()
            .remote(remote.to_str().unwrap())
            .workdir(dir.path().join("w"))
            .open()
            .await
            .unwrap();
        let k = ObjectKey::new("a").unwrap();
        for body in [&b"1"[..], &b"2"[..]] {
            sink.put(
                &k,
                stoa_backup_core::stream::once(Bytes::copy_from_slice(body)),
            )
            .await
            .unwrap();
        }
        let shared = sink.shared.clone();
        blocking(move || {
            let st = shared.state.lock().unwrap();
            let tip = |r: &Path| {
                Repository::open_bare(r)
                    .unwrap()
                    .refname_to_id("refs/heads/main")
                    .unwrap()
            };
            let second = tip(&remote);
            let first = st.repo.find_commit(second).unwrap().parent_id(0).unwrap();
            // Rewind the branch to the first commit, believing the remote is still there.
            let spec = vec![format!("+{first}:refs/heads/main")];
            let mut lease = HashMap::new();
            lease.insert("refs/heads/main".to_string(), Some(first));
            assert!(matches!(
                shared.push(&st.repo, &spec, Some(&lease)),
                Err(PushFailure::Rejected(_))
            ));
            assert_eq!(tip(&remote), second, "a stale lease must push nothing");
            // Without force and without a lease, a rewind is refused as non-fast-forward.
            assert!(matches!(
                shared.push(&st.repo, &[format!("{first}:refs/heads/main")], None),
                Err(PushFailure::Rejected(_))
            ));
            assert_eq!(tip(&remote), second);
            // With the right lease, it goes through.
            lease.insert("refs/heads/main".to_string(), Some(second));
            assert!(shared.push(&st.repo, &spec, Some(&lease)).is_ok());
            assert_eq!(tip(&remote), first);
            Ok(())
        })
        .await
        .unwrap();
    }

    #[test]
    fn configuration_is_validated() {
        assert_eq!(
            GitSink::builder().workdir("/x").build().unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(
            GitSink::builder()
                .remote("/r")
                .workdir("/x")
                .branch("bad..name")
                .build()
                .unwrap_err()
                .kind(),
            ErrorKind::Config
        );
        assert!(GitSink::builder()
            .remote("/r")
            .workdir("/x")
            .prefix("a/.stoa-backup")
            .build()
            .is_err());
        let cfg = GitSink::builder()
            .remote("/r")
            .workdir("/x")
            .prefix("/clusters/prod/")
            .build()
            .unwrap();
        assert_eq!(cfg.prefix, "clusters/prod");
        assert_eq!(cfg.namespace, "stoa-backup/clusters/prod");
    }
}
