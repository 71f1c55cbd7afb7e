//! Restoring a kc.sh export with `kc.sh import` in the Keycloak pod, after checking the
//! archive against what the backup recorded.

use async_trait::async_trait;
use serde_json::json;
use stoa_backup_core::{
    restore_each, ArtifactRecord, ByteStream, Error, ErrorKind, ExistingDataPolicy, PerArtifact,
    RestoreContext, RestoreOptions, RestoreReport, Restorer, Result,
};

use super::archive::{self, FileInfo};
use super::{rand_u32, s, DEFAULT_KC_SH};
use crate::keycloak::facts::KcShFacts;
use crate::keycloak::COMPONENT;
use crate::kubernetes::PodExec;

/// Restores a kc.sh export the seed's way: copies every file into a temporary directory in
/// the pod (a tar stream on stdin), runs `kc.sh import --dir … --override true|false`,
/// checks its exit status and output, and removes the files. `Overwrite` → `--override
/// true`; `Skip` → `--override false` (an existing realm is left alone and reported as
/// skipped); `Fail` → `--override false`, and an existing realm is an error.
///
/// Every restore, dry or not, first checks the archive against what the backup recorded
/// ([`KcShFacts`]: every file, the users per file and in total, the service-account
/// users) and refuses with an [`ErrorKind::Integrity`] error naming what is missing:
/// `kc.sh import` would accept an incomplete directory, import fewer users and report
/// success. The archive is checked as it streams into the pod's temporary directory;
/// `kc.sh import` runs only once the whole archive passed, and a refused archive's
/// directory is removed. A dry run reads and checks the archive without touching the pod.
#[derive(Debug, Clone)]
pub struct KcShRestorer {
    exec: PodExec,
    kc_sh: String,
    extra_args: Vec<String>,
    workdir: String,
}

impl KcShRestorer {
    /// Imports through `exec` (the Keycloak pod/container).
    pub fn new(exec: PodExec) -> Self {
        KcShRestorer {
            exec: exec.component(COMPONENT),
            kc_sh: DEFAULT_KC_SH.into(),
            extra_args: Vec::new(),
            workdir: "/tmp".into(),
        }
    }

    /// Path of `kc.sh` in the container.
    pub fn kc_sh(mut self, path: impl Into<String>) -> Self {
        self.kc_sh = path.into();
        self
    }

    /// Extra arguments for `kc.sh import` (e.g. `--optimized`, `--db*` options).
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra_args.push(a.into());
        self
    }

    /// Parent directory for the temporary import directory (default `/tmp`).
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = dir.into();
        self
    }
}

impl KcShRestorer {
    /// Copies the archive into `dir` in the pod while reading it: the files it holds.
    async fn stage(&self, dir: &str, plain: ByteStream) -> Result<Vec<FileInfo>> {
        let copy = vec![
            "sh".to_string(),
            "-c".into(),
            "mkdir -p \"$0\" && tar xf - -C \"$0\"".into(),
            dir.to_string(),
        ];
        let (tee, parsed) = archive::tee(plain);
        let copied = self.exec.run_collect(&copy, Some(tee), 64 * 1024).await;
        let files = parsed.files().await;
        // A failed copy also truncates what the parser saw: its error says why.
        copied?;
        files
    }

    /// Runs `kc.sh import` on `dir`: its stdout and the tail of its stderr.
    async fn import(&self, dir: &str, options: &RestoreOptions) -> Result<String> {
        let over = options.existing == ExistingDataPolicy::Overwrite;
        let mut cmd = vec![
            self.kc_sh.clone(),
            "import".into(),
            "--dir".into(),
            dir.to_string(),
            "--override".into(),
            over.to_string(),
        ];
        cmd.extend(self.extra_args.iter().cloned());
        let (outcome, out) = self.exec.run_collect(&cmd, None, 256 * 1024).await?;
        Ok(format!(
            "{}\n{}",
            String::from_utf8_lossy(&out),
            outcome.stderr_tail
        ))
    }

    async fn remove(&self, dir: &str) {
        if let Err(e) = self
            .exec
            .run_collect(&s(&["rm", "-rf", dir]), None, 1024)
            .await
        {
            tracing::warn!(error = %e, dir = %dir, "could not remove the kc.sh import directory in the pod; remove it by hand");
        }
    }

    async fn restore_checked(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let facts: KcShFacts = artifact.facts_as()?;
        let realm = facts.realm.clone();
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        report.facts.insert("realm".into(), json!(realm));
        if options.dry_run {
            let files = archive::parse_stream(plain).await?;
            refuse_incomplete(&facts, &files)?;
            let users: u64 = files.iter().map(|f| f.users).sum();
            report.notes.push(format!(
                "dry run: the archive holds every recorded file and user; would copy {} files \
                 and run kc.sh import (realm '{realm}', {users} users)",
                files.len()
            ));
            // As the import counts the realm: replaced under Overwrite, created otherwise
            // (whether it exists is not known without the pod; an existing one is skipped
            // under Skip, a conflict under Fail).
            if options.existing == ExistingDataPolicy::Overwrite {
                report.updated = 1;
            } else {
                report.created = 1;
            }
            return Ok(report);
        }
        let dir = format!(
            "{}/stoa-kc-import-{:08x}",
            self.workdir.trim_end_matches('/'),
            rand_u32()
        );
        let checked = match self.stage(&dir, plain).await {
            Ok(files) => refuse_incomplete(&facts, &files),
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            self.remove(&dir).await;
            return Err(e);
        }
        let result = self.import(&dir, options).await;
        self.remove(&dir).await;
        let output = result?;
        let skipped = output.contains("already exists") && output.contains("skip");
        if skipped {
            if options.existing == ExistingDataPolicy::Fail {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("realm '{realm}' already exists; kc.sh import left it unchanged"),
                )
                .with_hint("restore with the Overwrite policy to replace it (--override true)"));
            }
            report.skipped = 1;
            report
                .notes
                .push(format!("realm '{realm}' exists: skipped"));
        } else if options.existing == ExistingDataPolicy::Overwrite {
            report.updated = 1;
        } else {
            report.created = 1;
        }
        let tail: String = output
            .trim()
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ");
        report.notes.push(format!("kc.sh import: {tail}"));
        Ok(report)
    }
}

/// The integrity error for an archive that does not hold the export the backup recorded.
fn refuse_incomplete(facts: &KcShFacts, files: &[FileInfo]) -> Result<()> {
    let problems = archive::check_against(facts, files);
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::integrity(format!(
        "the kc.sh export of realm '{}' is incomplete: {}; nothing was imported",
        facts.realm,
        problems.join("; ")
    ))
    .with_hint(
        "kc.sh import would silently lose users: restore a run whose verification passed, \
         or re-run the export",
    ))
}

#[async_trait]
impl Restorer for KcShRestorer {
    fn component(&self) -> &str {
        COMPONENT
    }

    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        restore_each(self, ctx).await
    }
}

#[async_trait]
impl PerArtifact for KcShRestorer {
    async fn restore_one(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.restore_checked(artifact, plain, options)
            .await
            .map_err(|e| {
                e.or_component(COMPONENT)
                    .or_operation("restore")
                    .or_artifact(artifact.key.to_string())
            })
    }
}
