//! `kc.sh export` / `kc.sh import` inside the Keycloak pod, through the Kubernetes exec API.
//!
//! Unlike the REST export, `kc.sh` reads the database: the output holds credentials (password
//! hashes, OTP secrets) and realm keys, **unmasked** — artifacts are always sensitive. The
//! container needs `sh`, `tar` and `rm` (the stock Keycloak image is ubi-micro based: use an
//! image or debug container that has them). Keycloak advises exporting with the cluster
//! stopped; inside a live pod expect a non-atomic snapshot.

use std::io::Read;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stoa_backup_core::manifest::VerificationRecord;
use stoa_backup_core::source::to_facts;
use stoa_backup_core::{
    ArtifactPlan, ArtifactRecord, ByteStream, Error, ErrorKind, ExistingDataPolicy, Export,
    ExportContext, PreflightReport, RestoreOptions, RestoreReport, Restorer, Result, Source,
    Verifier, VerifyContext,
};

use super::facts::{ExportMode, KcShFacts};
use super::{validate_realm, COMPONENT};
use crate::kubernetes::PodExec;

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

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// One file of a kc.sh export.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileInfo {
    name: String,
    users: u64,
    service_accounts: u64,
}

/// Reads a tar of kc.sh files, counting users per JSON file.
fn parse_tar(reader: impl Read) -> std::io::Result<Vec<FileInfo>> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().to_string();
        let name = path.trim_start_matches("./").to_string();
        let (mut users, mut sas) = (0, 0);
        if name.ends_with(".json") {
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf)?;
            let v: Value = serde_json::from_slice(&buf).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{name}: {e}"))
            })?;
            for u in v["users"].as_array().into_iter().flatten() {
                if u.get("serviceAccountClientId").is_some() {
                    sas += 1;
                } else {
                    users += 1;
                }
            }
        }
        out.push(FileInfo {
            name,
            users,
            service_accounts: sas,
        });
    }
    // Read to the end so the writer never blocks on a full pipe.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())?;
    Ok(out)
}

/// A blocking reader over chunks sent from async code.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.cur = b,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Problems with the set of files: realm file missing, users files not contiguous.
fn check_files(realm: &str, files: &[FileInfo]) -> Vec<String> {
    let mut problems = Vec::new();
    let realm_file = format!("{realm}-realm.json");
    if !files.iter().any(|f| f.name == realm_file) {
        problems.push(format!("{realm_file} is missing"));
    }
    for prefix in [
        format!("{realm}-users-"),
        format!("{realm}-federated-users-"),
    ] {
        let mut idx: Vec<u64> = files
            .iter()
            .filter_map(|f| {
                f.name
                    .strip_prefix(&prefix)?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        idx.sort_unstable();
        for (want, got) in idx.iter().enumerate() {
            if *got != want as u64 {
                problems.push(format!("{prefix}{want}.json is missing"));
                break;
            }
        }
    }
    problems
}

/// The facts of an export of `realm` made of `files` (the users options come from the plan).
fn facts_of(realm: &str, files: &[FileInfo]) -> KcShFacts {
    KcShFacts {
        realm: realm.to_string(),
        mode: ExportMode::KcSh,
        users_mode: None,
        users_per_file: None,
        files: Some(files.iter().map(|x| x.name.clone()).collect()),
        users_per_file_found: Some(files.iter().map(|x| (x.name.clone(), x.users)).collect()),
        users: Some(files.iter().map(|x| x.users).sum()),
        service_account_users: Some(files.iter().map(|x| x.service_accounts).sum()),
    }
}

async fn parse_stream(s: ByteStream) -> Result<Vec<FileInfo>> {
    let (tx, rx) = std::sync::mpsc::channel::<Bytes>();
    let task = tokio::task::spawn_blocking(move || {
        parse_tar(ChannelReader {
            rx,
            cur: Bytes::new(),
        })
    });
    let mut s = s;
    let mut err = None;
    while let Some(c) = s.next().await {
        match c {
            Ok(b) => {
                let _ = tx.send(b);
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let parsed = task
        .await
        .map_err(|e| Error::internal(format!("tar parser: {e}")))?;
    if let Some(e) = err {
        return Err(e);
    }
    parsed.map_err(|e| Error::integrity(format!("the kc.sh archive is unreadable: {e}")))
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
            ..facts_of(&self.realm, &[])
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
        // Tee the tar into a parser.
        let (tx, rx) = std::sync::mpsc::channel::<Bytes>();
        let parser = tokio::task::spawn_blocking(move || {
            parse_tar(ChannelReader {
                rx,
                cur: Bytes::new(),
            })
        });
        let tee =
            futures::stream::unfold((es.stream, Some(tx)), |(mut inner, mut tx)| async move {
                match inner.next().await {
                    Some(Ok(b)) => {
                        if let Some(t) = &tx {
                            let _ = t.send(b.clone());
                        }
                        Some((Ok(b), (inner, tx)))
                    }
                    Some(Err(e)) => {
                        tx.take();
                        Some((Err(e), (inner, tx)))
                    }
                    None => {
                        tx.take();
                        None
                    }
                }
            });
        let realm = self.realm.clone();
        let finish = async move {
            let parsed = parser.await;
            cleanup().await;
            let files = parsed
                .map_err(|e| Error::internal(format!("tar parser: {e}")))?
                .map_err(|e| {
                    Error::integrity(format!("the kc.sh export is not a readable tar: {e}"))
                })?;
            let problems = check_files(&realm, &files);
            if !problems.is_empty() {
                return Err(Error::integrity(format!(
                    "kc.sh export of realm '{realm}' is incomplete: {}",
                    problems.join("; ")
                ))
                .with_hint("importing it would silently lose users; re-run the export"));
            }
            to_facts(&facts_of(&realm, &files))
        };
        Ok(Export::with_finish(Box::pin(tee), finish))
    }
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}

/// Checks a stored kc.sh export: the realm file and every users file are present (no gap
/// in `…-users-<n>.json`), the files are those recorded, and the user count matches the
/// manifest. The classic failure it catches: a realm file without its user files, which
/// `kc.sh import` accepts with exit code 0 and 0 users.
#[derive(Debug, Clone, Copy, Default)]
pub struct KcShExportVerifier;

#[async_trait]
impl Verifier for KcShExportVerifier {
    fn name(&self) -> &str {
        "keycloak-kcsh"
    }

    fn applies_to(&self, artifact: &ArtifactRecord) -> bool {
        artifact.provider == PROVIDER_KCSH
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord> {
        let a = ctx.artifact;
        let facts: KcShFacts = a.facts_as()?;
        let record = |ok: bool, detail: String| VerificationRecord::now(self.name(), ok, detail);
        let files = match ctx.open_plain().await {
            Ok(s) => parse_stream(s).await,
            Err(e) => Err(e),
        };
        let files = match files {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::Integrity => {
                return Ok(record(false, format!("'{}' cannot be read: {e}", a.key)))
            }
            Err(e) => return Err(e),
        };
        let mut problems = check_files(&facts.realm, &files);
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        for want in facts.files.iter().flatten() {
            if !names.contains(&want.as_str()) && !problems.iter().any(|p| p.starts_with(want)) {
                problems.push(format!("{want} is missing"));
            }
        }
        let users: u64 = files.iter().map(|f| f.users).sum();
        if let Some(expected) = facts.users {
            if users != expected {
                problems.push(format!("{users} users in the files, {expected} recorded"));
            }
        }
        if problems.is_empty() {
            Ok(record(
                true,
                format!(
                    "{} files, {users} users, all users files present",
                    files.len()
                ),
            ))
        } else {
            Ok(record(false, problems.join("; ")))
        }
    }
}

/// Restores a kc.sh export the seed's way: copies every file into the pod (a tar stream on
/// stdin), runs `kc.sh import --dir … --override true|false`, checks its exit status and
/// output, and removes the files. `Overwrite` → `--override true`; `Skip` → `--override
/// false` (an existing realm is left alone and reported as skipped); `Fail` →
/// `--override false`, and an existing realm is an error. Dry run: lists what would be
/// imported without touching the pod.
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

#[async_trait]
impl Restorer for KcShRestorer {
    fn component(&self) -> &str {
        COMPONENT
    }

    async fn restore(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let realm = artifact.facts_as::<KcShFacts>()?.realm;
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        report.facts.insert("realm".into(), json!(realm));
        if options.dry_run {
            let files = parse_stream(plain).await?;
            let problems = check_files(&realm, &files);
            if !problems.is_empty() {
                return Err(Error::integrity(format!(
                    "the kc.sh export is incomplete: {}",
                    problems.join("; ")
                )));
            }
            let users: u64 = files.iter().map(|f| f.users).sum();
            report.notes.push(format!(
                "dry run: would copy {} files and run kc.sh import (realm '{realm}', {users} users)",
                files.len()
            ));
            report.created = 1;
            return Ok(report);
        }
        let dir = format!(
            "{}/stoa-kc-import-{:08x}",
            self.workdir.trim_end_matches('/'),
            rand_u32()
        );
        let copy = vec![
            "sh".to_string(),
            "-c".into(),
            "mkdir -p \"$0\" && tar xf - -C \"$0\"".into(),
            dir.clone(),
        ];
        let result = async {
            self.exec.run_collect(&copy, Some(plain), 64 * 1024).await?;
            let over = options.existing == ExistingDataPolicy::Overwrite;
            let mut cmd = vec![
                self.kc_sh.clone(),
                "import".into(),
                "--dir".into(),
                dir.clone(),
                "--override".into(),
                over.to_string(),
            ];
            cmd.extend(self.extra_args.iter().cloned());
            let (outcome, out) = self.exec.run_collect(&cmd, None, 256 * 1024).await?;
            Ok::<_, Error>(format!(
                "{}\n{}",
                String::from_utf8_lossy(&out),
                outcome.stderr_tail
            ))
        }
        .await;
        let _ = self
            .exec
            .run_collect(&s(&["rm", "-rf", &dir]), None, 1024)
            .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, Value)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, v) in files {
            let data = serde_json::to_vec(v).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("./{name}"), data.as_slice())
                .unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn parses_and_checks_files() {
        let t = tar_of(&[
            ("stoa-realm.json", json!({"realm": "stoa"})),
            (
                "stoa-users-0.json",
                json!({"users": [{"username": "a"}, {"username": "b"}]}),
            ),
            (
                "stoa-users-2.json",
                json!({"users": [{"username": "c", "serviceAccountClientId": "x"}]}),
            ),
        ]);
        let files = parse_tar(t.as_slice()).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(files[1].users, 2);
        assert_eq!(files[2].service_accounts, 1);
        assert_eq!(
            check_files("stoa", &files),
            ["stoa-users-1.json is missing"]
        );
        assert_eq!(
            check_files("other", &files),
            ["other-realm.json is missing"]
        );
        let f = facts_of("stoa", &files);
        assert_eq!(f.users, Some(2));
    }
}
