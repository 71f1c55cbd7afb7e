//! Backs up a directory of Kubernetes manifests (YAML) into a Git repository.
//!
//! ```text
//! STOA_SOURCE_DIR=./manifests STOA_GIT_REMOTE=/srv/git/backups.git \
//!     cargo run --example manifests_to_git --features git
//! ```
//!
//! Environment:
//! - `STOA_SOURCE_DIR` (required): directory whose `*.yaml` / `*.yml` files are backed up.
//! - `STOA_GIT_REMOTE` (required): the repository (URL, or path of a bare repository).
//! - `STOA_GIT_BRANCH` (default `main`), `STOA_GIT_PREFIX` (default `backups`).
//! - `STOA_GIT_WORKDIR` (default: a directory under the system's temporary directory).
//! - `STOA_GIT_TOKEN` (+ `STOA_GIT_USERNAME`, default `x-access-token`) for https, or
//!   `STOA_GIT_SSH_KEY` (+ `STOA_GIT_USERNAME`, default `git`) for ssh.
//!
//! Each resource becomes a plain file under `<prefix>/manifests/`; a run that finds nothing
//! changed makes no commit, so running this often is cheap. The run is recorded as
//! `refs/stoa-backup/<prefix>/runs/<id>` and the catalog printed at the end lists every run
//! the repository records.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use stoa_backup::core::format_runs_table;
use stoa_backup::core::source::{ArtifactPlan, Export, ExportContext, PreflightReport};
use stoa_backup::core::stream::from_reader;
use stoa_backup::prelude::*;

/// The YAML files of one directory (not recursive), as diffable text artifacts.
#[derive(Debug)]
struct ManifestDir {
    dir: PathBuf,
}

impl ManifestDir {
    fn files(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| {
            Error::from_io(e, format!("cannot read {}", self.dir.display()))
                .with_component("manifests")
        })? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

#[async_trait]
impl Source for ManifestDir {
    fn component(&self) -> &str {
        "manifests"
    }

    fn provider(&self) -> &str {
        "yaml-dir"
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        self.files()?;
        Ok(PreflightReport::default())
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(self
            .files()?
            .into_iter()
            .map(|name| ArtifactPlan::new(name, "application/yaml").text(true))
            .collect())
    }

    async fn export(&self, artifact: &ArtifactPlan, _ctx: &ExportContext) -> Result<Export> {
        let file = tokio::fs::File::open(self.dir.join(&artifact.name)).await?;
        Ok(Export::new(from_reader(file)))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &str) -> Result<String> {
    env(name).ok_or_else(|| Error::config(format!("{name} is not set")))
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    // SIGINT / SIGTERM cancel the run: its partial writes are removed, no manifest is
    // written, and the program exits 130 / 143 (a second signal exits at once).
    let shutdown = stoa_backup::signals::listen()?;
    let source_dir = PathBuf::from(required("STOA_SOURCE_DIR")?);
    let remote = required("STOA_GIT_REMOTE")?;
    let branch = env("STOA_GIT_BRANCH").unwrap_or_else(|| "main".to_string());
    let prefix = env("STOA_GIT_PREFIX").unwrap_or_else(|| "backups".to_string());
    let workdir = env("STOA_GIT_WORKDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_workdir(&remote));
    let credentials = if let Some(token) = env("STOA_GIT_TOKEN") {
        let user = env("STOA_GIT_USERNAME").unwrap_or_else(|| "x-access-token".to_string());
        GitCredentials::https_token(user, token)
    } else if let Some(key) = env("STOA_GIT_SSH_KEY") {
        let user = env("STOA_GIT_USERNAME").unwrap_or_else(|| "git".to_string());
        GitCredentials::ssh_key(user, key, env("STOA_GIT_SSH_PASSPHRASE"))
    } else {
        GitCredentials::None
    };

    let sink = Arc::new(
        GitSink::builder(remote, &workdir)
            .branch(branch)
            .prefix(prefix)
            .credentials(credentials)
            .build()
            .await?,
    );
    println!(
        "sink: {} (working clone {})",
        sink.describe(),
        workdir.display()
    );
    let before = sink.head_commit().await?;

    let pipeline = Pipeline::builder()
        .source(ManifestDir { dir: source_dir })
        .sink(sink.clone())
        .verifier(ChecksumVerifier::new())
        .label("example", "manifests_to_git")
        .cancel(shutdown.token())
        .build()?;
    let report = pipeline.run().await;
    shutdown.exit_if_received("the run was cancelled and nothing of it was kept");
    let report = report?.into_result()?;
    let after = sink.head_commit().await?;
    println!(
        "run {}: {} artifact(s), {}",
        report.run_id,
        report.manifest.artifacts.len(),
        if before == after {
            "nothing changed, no commit".to_string()
        } else {
            format!("committed {}", after.unwrap_or_default())
        }
    );

    let runs = Catalog::new(sink).list_runs(&RunFilter::default()).await?;
    print!("{}", format_runs_table(&runs));
    Ok(ExitCode::SUCCESS)
}

/// A stable working directory per remote, so repeated runs reuse the clone.
fn default_workdir(remote: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    remote.hash(&mut h);
    std::env::temp_dir().join(format!("stoa-backup-git-{:016x}", h.finish()))
}
