//! Opening storage targets, and describing them in one line.

use std::sync::Arc;

use stoa_backup::core::{Result, Sink};
use stoa_backup::storage::LocalSink;

use crate::config::model::{Target, TargetKind};

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
