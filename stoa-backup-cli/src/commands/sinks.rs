//! Opening storage targets, and describing them in one line.

use std::sync::Arc;

use async_trait::async_trait;
use stoa_backup::core::sink::PutResult;
use stoa_backup::core::{ByteStream, Error, ObjectKey, ObjectMeta, Result, Sink};
use stoa_backup::storage::LocalSink;

use crate::config::model::{Config, Target, TargetKind};

/// Opens a target's sink (a Git target clones or fetches its repository).
pub async fn open(target: &Target) -> Result<Arc<dyn Sink>> {
    Ok(match &target.kind {
        TargetKind::Local(l) => {
            Arc::new(LocalSink::builder(&l.path).create_root(l.create).build()?)
        }
        TargetKind::S3(s) => Arc::new(s.builder.clone().build()?),
        TargetKind::Git(g) => Arc::new(g.builder.clone().build().await?),
    })
}

/// Opens the storage targets `names` (configured), in order, by name; a target that does
/// not open is there as [`Unopened`], so the library passes it over and names it (a region
/// that is down) where several targets are read. Also why each that did not open did not
/// (`<name>: <why>`).
pub async fn open_all(
    config: &Config,
    names: &[&str],
) -> (Vec<(String, Arc<dyn Sink>)>, Vec<String>) {
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for name in names {
        let target = config
            .target(name)
            .expect("checked when the configuration loaded");
        let sink: Arc<dyn Sink> = match open(target).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target_name = %name, error = %e, "the storage target does not open");
                failures.push(format!("{name}: {e}"));
                Arc::new(Unopened {
                    name: name.to_string(),
                    error: e,
                })
            }
        };
        out.push((name.to_string(), sink));
    }
    (out, failures)
}

/// The usage error of a `--from` that names no storage target of the configuration.
pub(crate) fn unknown_from(config: &Config, from: &str) -> String {
    let known: Vec<&str> = config.storage.iter().map(|t| t.name.as_str()).collect();
    format!(
        "--from: no storage target is named `{from}` in {}: the targets are {}",
        config.file,
        known.join(", ")
    )
}

/// Why none of `names` (the targets holding `what`) could be opened.
pub fn none_opened(what: &str, failures: &[String]) -> String {
    match failures {
        [one] => format!("storage target {one}"),
        many => format!(
            "no storage target holding {what} can be opened: {}",
            many.join("; ")
        ),
    }
}

/// A storage target that did not open (a missing volume, a Git remote that cannot be
/// fetched): every call fails with why.
#[derive(Debug)]
pub struct Unopened {
    name: String,
    error: Error,
}

impl Unopened {
    fn fail<T>(&self) -> Result<T> {
        Err(self.error.duplicate())
    }
}

#[async_trait]
impl Sink for Unopened {
    fn describe(&self) -> String {
        format!("{} (not opened)", self.name)
    }
    async fn preflight(&self) -> Result<()> {
        self.fail()
    }
    async fn put(&self, _: &ObjectKey, _: ByteStream) -> Result<PutResult> {
        self.fail()
    }
    async fn get(&self, _: &ObjectKey) -> Result<ByteStream> {
        self.fail()
    }
    async fn list(&self, _: &str) -> Result<Vec<ObjectMeta>> {
        self.fail()
    }
    async fn delete(&self, _: &ObjectKey) -> Result<()> {
        self.fail()
    }
}

/// `local ./stoa-backups`, `s3 s3://bucket/prefix`, `git <remote> (branch main, path x)`.
pub fn describe(target: &Target) -> String {
    match &target.kind {
        TargetKind::Local(l) => format!(
            "local {}{}",
            l.path.display(),
            if l.create {
                " (created if missing)"
            } else {
                ""
            }
        ),
        TargetKind::S3(s) => {
            let mut d = format!("s3 s3://{}/{}", s.bucket, s.prefix);
            if let Some(e) = &s.endpoint {
                d.push_str(&format!(" at {e}"));
            }
            if let Some(r) = &s.region {
                d.push_str(&format!(" in {r}"));
            }
            d.push_str(match &s.credentials {
                crate::config::model::S3CredentialsView::Environment => {
                    ", credentials from the environment"
                }
                crate::config::model::S3CredentialsView::Static { .. } => {
                    ", static credentials (secret ***)"
                }
            });
            d
        }
        TargetKind::Git(g) => format!(
            "git {} (branch {}, path {}, clone in {})",
            g.remote,
            g.branch,
            if g.path.is_empty() { "/" } else { &g.path },
            g.workdir.display()
        ),
    }
}
