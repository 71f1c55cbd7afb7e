//! Integrated-storage (raft) snapshots: streamed download, structural verification,
//! restore.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::TryStreamExt;
use serde_json::json;
use stoa_backup_core::manifest::{ArtifactRecord, VerificationRecord};
use stoa_backup_core::source::to_facts;
use stoa_backup_core::{
    restore_each, ArtifactPlan, ByteStream, Error, ErrorKind, ExistingDataPolicy, Export,
    ExportContext, KeyKind, KeyNeeded, PerArtifact, PreflightReport, RestoreContext,
    RestoreOptions, RestoreReport, Restorer, Result, Source, Verifier, VerifyContext,
};

use super::client::{vault_error, VaultClient, VaultConnection};
use super::facts::{RaftSnapshotFacts, SealFacts};
use super::snapshot::{check_snapshot_stream, tee_check};
use super::{PROVIDER_RAFT, SNAPSHOT_COMPONENT};

/// Content type of a raft snapshot (a gzip-compressed tar).
pub const SNAPSHOT_CONTENT_TYPE: &str = "application/gzip";

/// The key-escrow note recorded with every snapshot (fact `keys_needed`).
pub const KEYS_NOTE: &str = "Restoring this snapshot needs the keys of the cluster it was taken from: \
its unseal keys (Shamir seal, a quorum of key shares) or, with auto-unseal, access to the same \
KMS/HSM seal and its recovery keys. A restored cluster also answers only to that cluster's root \
or other tokens. Keeping these keys (key escrow) is the operator's job: this backup does not hold them.";

/// Warnings given with every snapshot restore.
const RESTORE_WARNINGS: [&str; 3] = [
    "the target cluster must be initialised and unsealed before a snapshot restore",
    "a snapshot restore rolls back ALL cluster state (secrets, policies, auth methods, tokens, leases); afterwards the cluster is unsealed with the snapshot's keys, and with -force it needs the SNAPSHOT's unseal/recovery keys",
    "tokens roll back too: the token used for the restore may stop working once the snapshot is installed",
];

/// Downloads a raft snapshot (`GET /v1/sys/storage/raft/snapshot`), streamed straight into
/// the pipeline — never held in memory. The node's health is checked first: a sealed,
/// standby or uninitialised node gives a clear error and nothing is stored. The download is
/// checked as it streams (complete gzip tar, non-empty `SHA256SUMS.sealed`, internal
/// checksums): Vault answers 200 before streaming, so a failed snapshot still looks
/// successful otherwise.
///
/// A snapshot holds the whole cluster state — every secret of every engine, policies,
/// tokens — and is usable only with the cluster's unseal or recovery keys (fact
/// `keys_needed`, see [`KEYS_NOTE`]). It is marked sensitive: the pipeline refuses to store
/// it unless it encrypts, or the caller opts out with `.store_secrets_unencrypted(true)`.
/// Snapshots are always taken in the root namespace.
#[derive(Debug, Clone)]
pub struct RaftSnapshotSource {
    client: VaultClient,
    component: String,
    name: String,
}

impl RaftSnapshotSource {
    /// A source taking snapshots through `connection` (component `vault-snapshot`, artifact
    /// `raft.snap`).
    pub fn new(connection: VaultConnection) -> Result<Self> {
        Ok(RaftSnapshotSource {
            client: VaultClient::new(connection)?,
            component: SNAPSHOT_COMPONENT.to_string(),
            name: "raft.snap".to_string(),
        })
    }

    /// Component name in keys and the manifest.
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = component.into();
        self
    }
}

#[async_trait]
impl Source for RaftSnapshotSource {
    fn component(&self) -> &str {
        &self.component
    }

    fn provider(&self) -> &str {
        PROVIDER_RAFT
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        let h = self.client.require_active("preflight").await?;
        let mut notes = vec![KEYS_NOTE.to_string()];
        if let Some(t) = self.client.storage_type().await {
            if t != "raft" {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("Vault uses {t} storage, not integrated (raft) storage"),
                )
                .with_hint(
                    "back up the storage backend itself; the KV export works on any storage",
                ));
            }
        } else {
            notes.push("the storage type is not reported; the snapshot request will tell".into());
        }
        Ok(PreflightReport {
            server_version: Some(h.version),
            notes,
        })
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        let mut plan = ArtifactPlan::new(&self.name, SNAPSHOT_CONTENT_TYPE).sensitive(true);
        plan.facts = to_facts(&RaftSnapshotFacts {
            keys_needed: Some(KEYS_NOTE.to_string()),
            ..RaftSnapshotFacts::default()
        })?;
        Ok(vec![plan])
    }

    async fn export(&self, _artifact: &ArtifactPlan, _ctx: &ExportContext) -> Result<Export> {
        // Health first, on every attempt: a sealed or standby node must not produce a run.
        let h = self.client.require_active("snapshot").await?;
        let seal_status = self.client.seal_status().await;
        let storage = seal_status
            .as_ref()
            .and_then(|v| v["storage_type"].as_str().map(str::to_string));
        let seal = seal_status.as_ref().and_then(SealFacts::from_seal_status);
        let resp = self.client.snapshot_download().await?;
        let stream: ByteStream = Box::pin(resp.bytes_stream().map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the raft snapshot download broke off ({})",
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "transport error"
                    }
                ),
            )
            .with_retryable(true)
        }));
        let (stream, check) = tee_check(stream);
        let mut facts = RaftSnapshotFacts {
            vault_version: Some(h.version),
            cluster_name: h.cluster_name,
            cluster_id: h.cluster_id,
            storage_type: Some(storage.unwrap_or_else(|| "raft".into())),
            seal,
            ..RaftSnapshotFacts::default()
        };
        Ok(Export::with_finish(stream, async move {
            let summary = check.await.map_err(|e| {
                e.with_operation("snapshot check")
                    .with_hint("Vault answered 200 but the snapshot is incomplete: check Vault's logs and re-run")
            })?;
            facts.state_bytes = Some(summary.state_bytes);
            facts.snapshot_meta = Some(summary.meta);
            to_facts(&facts)
        }))
    }
}

/// Checks stored raft snapshots: the plain bytes (decrypted, decompressed) must be a
/// complete gzip tar with `meta.json`, `state.bin`, `SHA256SUMS` and a non-empty
/// `SHA256SUMS.sealed`, and the internal checksums must match. Truncated archives fail.
/// Needs the keys of encrypted artifacts (the pipeline's keyring).
#[derive(Debug, Clone, Copy, Default)]
pub struct RaftSnapshotVerifier;

#[async_trait]
impl Verifier for RaftSnapshotVerifier {
    fn name(&self) -> &str {
        "vault-raft-snapshot"
    }

    fn applies_to(&self, artifact: &ArtifactRecord) -> bool {
        artifact.provider == PROVIDER_RAFT
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord> {
        let plain = ctx.open_plain().await?;
        let record = |ok: bool, detail: String| VerificationRecord::now(self.name(), ok, detail);
        match check_snapshot_stream(plain).await {
            Ok(s) => Ok(record(
                true,
                format!(
                    "complete snapshot: state.bin {} bytes, {} checksums match, sealed hash list {} bytes",
                    s.state_bytes,
                    s.checked_files.len(),
                    s.sealed_bytes
                ),
            )),
            Err(e) if e.kind() == ErrorKind::Integrity => Ok(record(false, e.message().to_string())),
            Err(e) => Err(e),
        }
    }
}

/// Restores a raft snapshot with `POST /v1/sys/storage/raft/snapshot` (streamed), or
/// `…/snapshot-force` only when [`RaftSnapshotRestorer::force`] is set.
///
/// A snapshot restore replaces the whole cluster state (one object, `updated`), so it runs
/// only under [`ExistingDataPolicy::Overwrite`]; `Skip` leaves the state alone (`skipped`)
/// and `Fail` refuses (a plan counts a conflict). The target must be initialised and unsealed (checked
/// first); the snapshot is checked by the plan and again while it is sent: a stream that
/// fails (the artifact damaged, the restore cancelled) breaks the upload off, which Vault
/// does not install, and the error is the stream's own. Warnings (in the report's notes): the
/// cluster is unsealed afterwards with the snapshot's keys (with `force`, the snapshot's
/// unseal/recovery keys are needed), and the token used for the restore may stop working
/// because tokens roll back too. A dry run checks health and the snapshot and sends nothing.
#[derive(Debug, Clone)]
pub struct RaftSnapshotRestorer {
    client: VaultClient,
    component: String,
    force: bool,
    shares_at_hand: Option<u32>,
}

impl RaftSnapshotRestorer {
    /// A restorer posting to the target of `connection`.
    pub fn new(connection: VaultConnection) -> Result<Self> {
        Ok(RaftSnapshotRestorer {
            client: VaultClient::new(connection)?,
            component: SNAPSHOT_COMPONENT.to_string(),
            force: false,
            shares_at_hand: None,
        })
    }

    /// How many of the snapshot cluster's unseal (or, with auto-unseal, recovery) key shares
    /// the operator holds for this restore. The plan then checks them against the threshold
    /// recorded at backup time and fails before any write when they are too few. Without
    /// it, the plan lists the shares needed and cannot tell whether they are at hand.
    pub fn key_shares_at_hand(mut self, shares: u32) -> Self {
        self.shares_at_hand = Some(shares);
        self
    }

    /// Uses `snapshot-force`: installs a snapshot even when this cluster's seal cannot check
    /// its sealed hashes (a snapshot from another cluster). The cluster then needs the
    /// **snapshot's** unseal/recovery keys.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Restores artifacts of another component name.
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = component.into();
        self
    }
}

#[async_trait]
impl Restorer for RaftSnapshotRestorer {
    fn component(&self) -> &str {
        &self.component
    }

    /// The snapshot cluster's key shares (Shamir: unseal shares; auto-unseal: recovery
    /// shares, and the KMS key the cluster seals with), from the seal recorded at backup.
    async fn keys_needed(&self, ctx: &RestoreContext<'_>) -> Result<Vec<KeyNeeded>> {
        let mut keys = Vec::new();
        for a in ctx.artifacts() {
            let facts: RaftSnapshotFacts = a.facts_as()?;
            keys.extend(seal_keys(
                facts.seal.as_ref(),
                facts.cluster_name.as_deref(),
                self.shares_at_hand,
            ));
        }
        keys.dedup();
        Ok(keys)
    }

    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        restore_each(self, ctx).await
    }
}

/// The keys a restore of a snapshot taken under `seal` needs.
fn seal_keys(
    seal: Option<&SealFacts>,
    cluster: Option<&str>,
    at_hand: Option<u32>,
) -> Vec<KeyNeeded> {
    let of = cluster
        .map(|c| format!(" of cluster {c}"))
        .unwrap_or_default();
    let Some(seal) = seal else {
        return vec![KeyNeeded {
            kind: KeyKind::UnsealShares,
            name: format!("the Vault unseal or recovery key shares{of}"),
            detail: format!("the seal was not recorded at backup time. {KEYS_NOTE}"),
            held: None,
        }];
    };
    let held = at_hand.map(|n| n >= seal.threshold);
    let counted = format!("{} of {} shares", seal.threshold, seal.shares);
    if seal.seal_type == "shamir" && !seal.recovery_seal {
        return vec![KeyNeeded {
            kind: KeyKind::UnsealShares,
            name: format!("the Vault unseal key shares{of}"),
            detail: format!(
                "{counted} (Shamir seal, recorded at backup): the restored cluster unseals only with the snapshot's unseal keys{}",
                at_hand.map(|n| format!("; {n} at hand")).unwrap_or_default()
            ),
            held,
        }];
    }
    vec![
        KeyNeeded {
            kind: KeyKind::KmsKey,
            name: format!("the Vault {} seal key{of}", seal.seal_type),
            detail: format!(
                "the cluster auto-unseals with {}: the restored cluster must reach the same key (kept by the KMS, not by this backup)",
                seal.seal_type
            ),
            held: None,
        },
        KeyNeeded {
            kind: KeyKind::UnsealShares,
            name: format!("the Vault recovery key shares{of}"),
            detail: format!(
                "{counted} ({} auto-unseal, recorded at backup): needed for a snapshot-force restore and for root-token generation{}",
                seal.seal_type,
                at_hand.map(|n| format!("; {n} at hand")).unwrap_or_default()
            ),
            held,
        },
    ]
}

#[async_trait]
impl PerArtifact for RaftSnapshotRestorer {
    async fn restore_one(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            notes: RESTORE_WARNINGS.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let facts: RaftSnapshotFacts = artifact.facts_as()?;
        report.notes.extend(facts.keys_needed);
        let h = self
            .client
            .require_active("snapshot restore")
            .await
            .map_err(|e| {
                e.with_hint(
                    "the target cluster must be initialised and unsealed before a snapshot restore",
                )
            })?;
        report
            .facts
            .insert("target_version".into(), json!(h.version));
        report.facts.insert("force".into(), json!(self.force));
        // The target always holds a state, which a snapshot replaces whole: one object,
        // counted the same in a plan and in the restore.
        match (options.existing, options.dry_run) {
            (ExistingDataPolicy::Fail, false) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "a snapshot restore replaces the whole state of the target cluster",
                )
                .with_hint(
                    "restore with the Overwrite policy to confirm, after reading the warnings",
                ));
            }
            (ExistingDataPolicy::Skip, _) => {
                report.skipped = 1;
                report.notes.push(
                    "the target cluster's state is left alone (Skip): no snapshot is installed"
                        .into(),
                );
                return Ok(report);
            }
            (ExistingDataPolicy::Fail, true) => report.conflicts = 1,
            (ExistingDataPolicy::Overwrite, true) => report.updated = 1,
            (ExistingDataPolicy::Overwrite, false) => {}
        }
        if options.dry_run {
            let s = check_snapshot_stream(plain).await?;
            report.notes.push(format!(
                "dry run: the snapshot is complete (state.bin {} bytes) and would be posted to {}",
                s.state_bytes,
                if self.force {
                    "snapshot-force"
                } else {
                    "snapshot"
                }
            ));
            return Ok(report);
        }
        // Check while sending: Vault rejects a damaged archive too, but say why ourselves.
        let (stream, check) = tee_check(plain);
        // A stream that fails (damaged, cancelled) breaks the upload off: the failure is
        // its own, not the transport's.
        let failed: Arc<Mutex<Option<Error>>> = Arc::default();
        let kept = failed.clone();
        let body = reqwest::Body::wrap_stream(stream.map_err(move |e| {
            let broken = std::io::Error::other(e.message().to_string());
            kept.lock().expect("stream error").get_or_insert(e);
            broken
        }));
        let answer = match self.client.snapshot_upload(body, self.force).await {
            Ok(answer) => answer,
            Err(e) => return Err(failed.lock().expect("stream error").take().unwrap_or(e)),
        };
        // Vault may answer before the transport notices the body broke off.
        if let Some(e) = failed.lock().expect("stream error").take() {
            return Err(e);
        }
        let checked = check.await;
        if !answer.status.is_success() {
            // Not retried: the snapshot was streamed once, and a restore is not idempotent.
            let mut e = vault_error(&answer, "restoring the raft snapshot")
                .with_kind(ErrorKind::Restore)
                .with_retryable(false);
            if answer.status.as_u16() == 400 && !self.force {
                e = e.with_hint(
                    "Vault could not check the snapshot's sealed hashes with this cluster's seal (a snapshot from another cluster?): restore with force only if you hold the snapshot's unseal/recovery keys",
                );
            }
            if let Err(c) = checked {
                e = e.with_hint(format!("the snapshot itself is damaged: {}", c.message()));
            }
            return Err(e);
        }
        checked?;
        report.updated = 1;
        report.notes.push(
            "snapshot installed: if the restoring token no longer works, log in again with a token valid in the snapshot's state".into(),
        );
        tracing::warn!(
            force = self.force,
            "raft snapshot restored: the cluster state was rolled back"
        );
        Ok(report)
    }
}
