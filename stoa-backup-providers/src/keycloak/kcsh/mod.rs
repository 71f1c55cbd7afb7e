//! `kc.sh export` / `kc.sh import` inside the Keycloak pod, through the Kubernetes exec API.
//!
//! Unlike the REST export, `kc.sh` reads the database: the output holds credentials (password
//! hashes, OTP secrets) and realm keys, **unmasked** — artifacts are always sensitive. The
//! container needs `sh`, `tar` and `rm` (the stock Keycloak image is ubi-micro based: use an
//! image or debug container that has them). Keycloak advises exporting with the cluster
//! stopped; inside a live pod expect a non-atomic snapshot.

mod archive;
mod restore;
mod verify;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use stoa_backup_core::source::to_facts;
use stoa_backup_core::{
    ArtifactPlan, Error, Export, ExportContext, PreflightReport, Result, Source,
};

use super::facts::KcShFacts;
use super::{validate_realm, COMPONENT};
use crate::kubernetes::PodExec;

pub use restore::KcShRestorer;
pub use verify::KcShExportVerifier;

/// Provider name of kc.sh exports in the manifest.
pub const PROVIDER_KCSH: &str = "keycloak-kcsh";

/// Content type of kc.sh artifacts: a tar of every file `kc.sh export --dir` wrote.
pub const TAR_CONTENT_TYPE: &str = "application/x-tar";

/// Where `kc.sh` lives in the Keycloak image.
pub const DEFAULT_KC_SH: &str = "/opt/keycloak/bin/kc.sh";

/// `kc.sh export --users` modes (recorded as the `users_mode` fact, with the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsersMode {
    /// `different_files`: `<realm>-users-<n>.json`, `users_per_file` users each (default).
    DifferentFiles,
    /// `same_file`: one `<realm>-users-0.json`.
    SameFile,
    /// `realm_file`: users inside `<realm>-realm.json`.
    RealmFile,
    /// `skip`: no users.
    Skip,
}

impl UsersMode {
    fn as_str(self) -> &'static str {
        match self {
            UsersMode::DifferentFiles => "different_files",
            UsersMode::SameFile => "same_file",
            UsersMode::RealmFile => "realm_file",
            UsersMode::Skip => "skip",
        }
    }
}

/// Exports a realm with `kc.sh export --dir <tmp> --realm <r> --users <mode>` run in the
/// Keycloak pod, then streams every file it wrote (`tar cf -` on stdout) as one artifact
/// `<realm>-kcsh.tar`, and removes the directory. The tar is parsed as it passes: the manifest
/// records the files, users per file and the total; the export fails if a users file is
/// missing from the sequence (`…-users-0.json`, `-1`, …).
#[derive(Debug, Clone)]
pub struct KcShSource {
    exec: PodExec,
    realm: String,
    users: UsersMode,
    users_per_file: usize,
    kc_sh: String,
    extra_args: Vec<String>,
    workdir: String,
}

impl KcShSource {
    /// Exports `realm` through `exec` (a [`PodExec`] for the Keycloak pod/container).
    pub fn new(exec: PodExec, realm: impl Into<String>) -> Result<Self> {
        let realm = realm.into();
        validate_realm(&realm)?;
        Ok(KcShSource {
            exec: exec.component(COMPONENT),
            realm,
            users: UsersMode::DifferentFiles,
            users_per_file: 50,
            kc_sh: DEFAULT_KC_SH.into(),
            extra_args: Vec::new(),
            workdir: "/tmp".into(),
        })
    }

    /// `--users` mode and `--users-per-file` (default `different_files`, 50).
    pub fn users(mut self, mode: UsersMode, per_file: usize) -> Self {
        self.users = mode;
        self.users_per_file = per_file.max(1);
        self
    }

    /// Path of `kc.sh` in the container.
    pub fn kc_sh(mut self, path: impl Into<String>) -> Self {
        self.kc_sh = path.into();
        self
    }

    /// Extra arguments (e.g. `--optimized`, `--db-url=…`: the same `--db*` options the
    /// server runs with).
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra_args.push(a.into());
        self
    }

    /// Parent directory for the temporary export directory (default `/tmp`).
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = dir.into();
        self
    }

    fn artifact_name(&self) -> String {
        format!("{}-kcsh.tar", self.realm)
    }
}

pub(super) fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[async_trait]
impl Source for KcShSource {
    fn component(&self) -> &str {
        COMPONENT
    }

    fn provider(&self) -> &str {
        PROVIDER_KCSH
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        let cmd = vec![self.kc_sh.clone(), "--version".into()];
        let (_, out) = self.exec.run_collect(&cmd, None, 4096).await?;
        let text = String::from_utf8_lossy(&out);
        let version = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Keycloak "))
            .map(|v| v.trim().to_string());
        Ok(PreflightReport {
            server_version: version,
            notes: vec![],
        })
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        let mut plan = ArtifactPlan::new(self.artifact_name(), TAR_CONTENT_TYPE).sensitive(true);
        plan.facts = to_facts(&KcShFacts {
            users_mode: Some(self.users),
            users_per_file: Some(self.users_per_file as u64),
            ..archive::facts_of(&self.realm, &[])
        })?;
        Ok(vec![plan])
    }

    async fn export(&self, _artifact: &ArtifactPlan, ctx: &ExportContext) -> Result<Export> {
        let dir = format!(
            "{}/stoa-kc-export-{}-{:08x}",
            self.workdir.trim_end_matches('/'),
            ctx.run_id,
            rand_u32()
        );
        let mut cmd = vec![
            self.kc_sh.clone(),
            "export".into(),
            "--dir".into(),
            dir.clone(),
            "--realm".into(),
            self.realm.clone(),
            "--users".into(),
            self.users.as_str().into(),
        ];
        if self.users == UsersMode::DifferentFiles {
            cmd.push("--users-per-file".into());
            cmd.push(self.users_per_file.to_string());
        }
        cmd.extend(self.extra_args.iter().cloned());
        let cleanup = {
            let exec = self.exec.clone();
            let dir = dir.clone();
            move || async move {
                if let Err(e) = exec.run_collect(&s(&["rm", "-rf", &dir]), None, 1024).await {
                    tracing::warn!(error = %e, dir = %dir, "could not remove the kc.sh export directory in the pod; remove it by hand");
                }
            }
        };
        if let Err(e) = self.exec.run_collect(&cmd, None, 64 * 1024).await {
            cleanup().await;
            return Err(e.with_hint(
                "kc.sh export failed: pass the server's --db* options (arg), check disk space \
                 in the pod, or stop the cluster for a consistent export",
            ));
        }
        let es = match self
            .exec
            .spawn(&s(&["tar", "cf", "-", "-C", &dir, "."]), None)
            .await
        {
            Ok(es) => es,
            Err(e) => {
                cleanup().await;
                return Err(e);
            }
        };
        // The tar is parsed as it passes, for the facts.
        let (tee, parsed) = archive::tee(es.stream);
        let realm = self.realm.clone();
        let finish = async move {
            let files = parsed.files().await;
            cleanup().await;
            let files = files?;
            let problems = archive::check_files(&realm, &files);
            if !problems.is_empty() {
                return Err(Error::integrity(format!(
                    "kc.sh export of realm '{realm}' is incomplete: {}",
                    problems.join("; ")
                ))
                .with_hint("importing it would silently lose users; re-run the export"));
            }
            to_facts(&archive::facts_of(&realm, &files))
        };
        Ok(Export::with_finish(tee, finish))
    }
}

pub(super) fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}
