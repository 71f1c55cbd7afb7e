//! Configuration of a [`GitSink`]: the builder, its validation (no I/O) and the opening of
//! the working clone.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use git2::{ErrorCode, Repository, RepositoryInitOptions, Signature};
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::key::{validate_prefix, ObjectKey};
use stoa_backup_core::manifest::RunId;
use stoa_backup_core::retry::{Jitter, RetryPolicy};

use super::credentials::RemoteUrl;
use super::{
    blocking, git_error, GitCredentials, GitSink, PlainQueue, Shared, State, COMPONENT, KEYS_DIR,
    META_DIR, REMOTE, RUN_DIR,
};

/// Configures a [`GitSink`]: [`GitSinkBuilder::build`] validates the configuration, opens
/// (or creates) the working clone and fetches the remote; [`GitSinkBuilder::validate`]
/// only checks the configuration, without touching the disk or the network.
#[derive(Debug, Clone)]
pub struct GitSinkBuilder {
    remote: RemoteUrl,
    workdir: PathBuf,
    branch: String,
    prefix: String,
    author_name: String,
    author_email: String,
    credentials: GitCredentials,
    ref_namespace: Option<String>,
    push_retry: RetryPolicy,
    checkout: bool,
}

/// The default [`GitSinkBuilder::push_retry`]: 5 attempts, 100 ms doubling up to 5 s,
/// equal jitter.
fn default_push_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
        jitter: Jitter::Equal,
    }
}

impl GitSinkBuilder {
    /// A builder for a sink committing to `remote`, with its working clone in `workdir`
    /// (like `git clone <remote> <workdir>`). Both are required:
    /// - `remote`: a URL (`https://…`, `ssh://…`, `git@host:path`, `file://…`) or the local
    ///   path of a bare repository;
    /// - `workdir`: the directory of the working clone, created if missing; it belongs to
    ///   the sink (one sink per directory, don't edit it by hand).
    pub fn new(remote: impl Into<String>, workdir: impl Into<PathBuf>) -> Self {
        GitSinkBuilder {
            remote: RemoteUrl(remote.into()),
            workdir: workdir.into(),
            branch: "main".to_string(),
            prefix: String::new(),
            author_name: "stoa-backup".to_string(),
            author_email: "stoa-backup@localhost".to_string(),
            credentials: GitCredentials::None,
            ref_namespace: None,
            push_retry: default_push_retry(),
            checkout: true,
        }
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

    /// How many times in all a commit is pushed when concurrent writers keep moving the
    /// branch: after each rejection it is replayed on the remote's branch and pushed again
    /// (default 5; sets the attempts of [`push_retry`](Self::push_retry)).
    pub fn push_attempts(mut self, attempts: u32) -> Self {
        self.push_retry.attempts = attempts;
        self
    }

    /// The whole retry policy of pushes rejected by a concurrent writer: attempts, and the
    /// back-off with jitter between them, so that writers that collided do not collide
    /// again (default: 5 attempts, 100 ms doubling up to 5 s, [`Jitter::Equal`]).
    pub fn push_retry(mut self, policy: RetryPolicy) -> Self {
        self.push_retry = policy;
        self
    }

    /// Whether the working tree is checked out after each commit (default `true`); without
    /// it the clone holds only the `.git` directory's objects and refs.
    pub fn checkout(mut self, checkout: bool) -> Self {
        self.checkout = checkout;
        self
    }

    /// Checks the configuration without touching the disk or the network.
    pub fn validate(&self) -> Result<()> {
        self.config().map(drop)
    }

    /// Validates the configuration, opens (or creates) the working clone and fetches the
    /// remote's branch and run records: the sink is ready to use.
    pub async fn build(self) -> Result<GitSink> {
        GitSink::open(self.config()?).await
    }

    /// The validated configuration (no I/O).
    pub(super) fn config(&self) -> Result<GitSinkConfig> {
        let cfg_err = |msg: String, hint: &str| {
            Error::config(msg)
                .with_component(COMPONENT)
                .with_operation("configure")
                .with_hint(hint.to_string())
        };
        if self.remote.as_str().trim().is_empty() {
            return Err(cfg_err(
                "no remote configured".into(),
                "pass the repository URL or the path of a bare repository to \
                 GitSink::builder(remote, workdir)",
            ));
        }
        if self.workdir.as_os_str().is_empty() {
            return Err(cfg_err(
                "no working directory configured".into(),
                "pass a directory the sink may own (e.g. on a volume) to \
                 GitSink::builder(remote, workdir)",
            ));
        }
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
        let namespace = match &self.ref_namespace {
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
        if self.push_retry.attempts == 0 {
            return Err(cfg_err(
                "push_attempts must be at least 1".into(),
                "set .push_attempts(n) with n >= 1",
            ));
        }
        Ok(GitSinkConfig {
            remote: self.remote.clone(),
            workdir: self.workdir.clone(),
            branch: self.branch.clone(),
            prefix,
            author_name: self.author_name.clone(),
            author_email: self.author_email.clone(),
            credentials: self.credentials.clone(),
            namespace,
            push_retry: self.push_retry,
            checkout: self.checkout,
        })
    }
}

/// A validated Git sink configuration.
#[derive(Debug, Clone)]
pub(super) struct GitSinkConfig {
    pub(super) remote: RemoteUrl,
    pub(super) workdir: PathBuf,
    pub(super) branch: String,
    pub(super) prefix: String,
    author_name: String,
    author_email: String,
    pub(super) credentials: GitCredentials,
    pub(super) namespace: String,
    pub(super) push_retry: RetryPolicy,
    pub(super) checkout: bool,
}

impl GitSink {
    /// Opens (or creates) the working clone, fetches the remote and returns the sink.
    async fn open(cfg: GitSinkConfig) -> Result<GitSink> {
        let cfg = Arc::new(cfg);
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
                #[cfg(test)]
                race_hook: Mutex::new(None),
            }),
        };
        sink.with_state("open", |sh, st| sh.sync(st)).await?;
        Ok(sink)
    }
}

impl GitSinkConfig {
    pub(super) fn run_ref(&self, run: &RunId) -> String {
        format!("refs/{}/runs/{}", self.namespace, run)
    }

    pub(super) fn runs_glob(&self) -> String {
        format!("refs/{}/runs/*", self.namespace)
    }

    pub(super) fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    pub(super) fn tracking_ref(&self) -> String {
        format!("refs/remotes/{REMOTE}/{}", self.branch)
    }

    /// `<prefix>/<rel>` (or `<rel>` without a prefix).
    pub(super) fn path(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    pub(super) fn plain_path(&self, key: &ObjectKey) -> String {
        self.path(&format!("{META_DIR}/{KEYS_DIR}/{key}"))
    }

    pub(super) fn run_file_path(&self, file: &str) -> String {
        self.path(&format!("{META_DIR}/{RUN_DIR}/{file}"))
    }

    pub(super) fn signature(&self) -> Result<Signature<'static>> {
        Signature::now(&self.author_name, &self.author_email)
            .map_err(|e| git_error(e, "commit", "invalid author name or email"))
    }
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
            repo.remote(REMOTE, cfg.remote.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;
    use stoa_backup_core::error::ErrorKind;

    #[test]
    fn configuration_is_validated() {
        assert_eq!(
            GitSink::builder("", "/x").validate().unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(
            GitSink::builder("/r", "").validate().unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(
            GitSink::builder("/r", "/x")
                .branch("bad..name")
                .validate()
                .unwrap_err()
                .kind(),
            ErrorKind::Config
        );
        assert!(GitSink::builder("/r", "/x")
            .prefix("a/.stoa-backup")
            .validate()
            .is_err());
        let cfg = GitSink::builder("/r", "/x")
            .prefix("/clusters/prod/")
            .config()
            .unwrap();
        assert_eq!(cfg.prefix, "clusters/prod");
        assert_eq!(cfg.namespace, "stoa-backup/clusters/prod");
    }
}
