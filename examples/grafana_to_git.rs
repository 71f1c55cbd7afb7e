//! Backs up Grafana (folders, dashboards, datasources, library panels, alerting) into a Git
//! repository, one JSON file per object with sorted keys: a changed dashboard is a one-file
//! diff, and an unchanged Grafana makes no commit.
//!
//! ```text
//! STOA_GRAFANA_URL=https://grafana.example.org STOA_GRAFANA_TOKEN=glsa_… \
//! STOA_GIT_REMOTE=/srv/git/stoa-grafana.git \
//!     cargo run --example grafana_to_git --features grafana,git
//! ```
//!
//! Environment:
//! - `STOA_GRAFANA_URL` (required); `STOA_GRAFANA_TOKEN` (service-account token) or
//!   `STOA_GRAFANA_USER` + `STOA_GRAFANA_PASSWORD` (basic auth); `STOA_GRAFANA_ORG_ID`.
//! - `STOA_GIT_REMOTE` (required), `STOA_GIT_BRANCH` (default `main`), `STOA_GIT_PREFIX`
//!   (default: the repository root), `STOA_GIT_WORKDIR`, `STOA_GIT_TOKEN` (+ `STOA_GIT_USERNAME`).
//!
//! Datasource secrets are never returned by Grafana: `index.json` and the manifest list
//! which secure fields exist, to be supplied from a secret store at restore time.

use std::process::ExitCode;
use std::sync::Arc;

use stoa_backup::prelude::*;
use stoa_backup::providers::grafana::GrafanaIndexFacts;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    // SIGINT / SIGTERM cancel the run: its partial writes are removed, no manifest is
    // written, and the program exits 130 / 143 (a second signal exits at once).
    let shutdown = stoa_backup::signals::listen()?;
    let url =
        env("STOA_GRAFANA_URL").ok_or_else(|| Error::config("STOA_GRAFANA_URL is not set"))?;
    let auth = match (env("STOA_GRAFANA_TOKEN"), env("STOA_GRAFANA_USER")) {
        (Some(t), _) => GrafanaAuth::Token(t),
        (None, Some(user)) => GrafanaAuth::Basic {
            user,
            password: env("STOA_GRAFANA_PASSWORD").unwrap_or_default(),
        },
        _ => {
            return Err(Error::config(
                "set STOA_GRAFANA_TOKEN or STOA_GRAFANA_USER/PASSWORD",
            ))
        }
    };
    let mut conn = GrafanaConnection::new(&url, auth)?;
    if let Some(org) = env("STOA_GRAFANA_ORG_ID").and_then(|o| o.parse().ok()) {
        conn = conn.org_id(org);
    }
    // STOA_GIT_REMOTE, STOA_GIT_WORKDIR, STOA_GIT_BRANCH, STOA_GIT_PREFIX, STOA_GIT_TOKEN…
    let sink = Arc::new(GitSink::from_env()?.build().await?);
    let before = sink.head_commit().await?;
    let report = Pipeline::builder()
        .source(GrafanaSource::builder(conn).build()?)
        .sink(sink.clone())
        .label("example", "grafana_to_git")
        .cancel(shutdown.token())
        .build()?
        .run()
        .await;
    shutdown.exit_if_received("the run was cancelled and nothing of it was kept");
    let report = report?.into_result()?;
    let after = sink.head_commit().await?;
    if let Some(index) = report
        .manifest
        .artifacts
        .iter()
        .find(|a| a.name == "index.json")
    {
        let facts: GrafanaIndexFacts = index.facts_as()?;
        println!(
            "Grafana {}: {:?}",
            facts.grafana_version.unwrap_or_default(),
            facts.counts.unwrap_or_default()
        );
    }
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
