//! Backs up every `gostoa.dev` custom resource and its CustomResourceDefinitions into a Git
//! repository, one YAML file per object, so a changed object is a one-file diff.
//!
//! ```text
//! STOA_GIT_REMOTE=/srv/git/stoa-crds.git \
//!     cargo run --example crds_to_git --features kubernetes,git
//! ```
//!
//! The cluster comes from the environment (in-cluster service account, or `KUBECONFIG` /
//! `~/.kube/config`). Environment:
//! - `STOA_GIT_REMOTE` (required): the repository (URL, or path of a bare repository).
//! - `STOA_GIT_BRANCH` (default `main`), `STOA_GIT_PREFIX` (default: the repository root).
//! - `STOA_GIT_WORKDIR` (default: a directory under the system's temporary directory).
//! - `STOA_GIT_TOKEN` (+ `STOA_GIT_USERNAME`, default `x-access-token`) for https, or
//!   `STOA_GIT_SSH_KEY` (+ `STOA_GIT_USERNAME`, default `git`) for ssh.
//! - `STOA_CRD_GROUPS` (default `gostoa.dev`, comma-separated), `STOA_NAMESPACES` (default:
//!   all namespaces, comma-separated), `STOA_LABEL_SELECTOR` (optional).
//!
//! Objects are stripped of server-populated fields, `status` and the operator's kopf marks,
//! with sorted keys: an unchanged cluster makes no commit.

use std::process::ExitCode;
use std::sync::Arc;

use stoa_backup::prelude::*;
use stoa_backup::providers::kubernetes::{self, Layout};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn list(name: &str) -> Vec<String> {
    env(name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    // SIGINT / SIGTERM cancel the run: its partial writes are removed, no manifest is
    // written, and the program exits 130 / 143 (a second signal exits at once).
    let shutdown = stoa_backup::signals::listen()?;
    // STOA_GIT_REMOTE, STOA_GIT_WORKDIR, STOA_GIT_BRANCH, STOA_GIT_PREFIX, STOA_GIT_TOKEN…
    let sink = Arc::new(GitSink::from_env()?.build().await?);

    let client = kubernetes::connect().await?;
    let mut source = CustomResourcesSource::builder(client).layout(Layout::PerObject);
    for g in list("STOA_CRD_GROUPS") {
        source = source.group(g);
    }
    let namespaces = list("STOA_NAMESPACES");
    if !namespaces.is_empty() {
        source = source.namespaces(namespaces);
    }
    if let Some(s) = env("STOA_LABEL_SELECTOR") {
        source = source.label_selector(s);
    }

    let before = sink.head_commit().await?;
    let report = Pipeline::builder()
        .source(source.build()?)
        .sink(sink.clone())
        .verifier(ChecksumVerifier::new())
        .label("example", "crds_to_git")
        .cancel(shutdown.token())
        .build()?
        .run()
        .await;
    shutdown.exit_if_received("the run was cancelled and nothing of it was kept");
    let report = report?.into_result()?;
    let after = sink.head_commit().await?;
    let commit = match after {
        Some(head) if before.as_ref() != Some(&head) => format!("committed {head}"),
        _ => "nothing changed, no commit".into(),
    };
    let files = report.manifest.artifacts.len();
    println!(
        "run {}: {files} file(s) in {}, {commit}",
        report.run_id,
        sink.describe()
    );
    Ok(ExitCode::SUCCESS)
}
