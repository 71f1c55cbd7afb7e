//! The facts Vault artifacts record in the manifest, as typed structs: written by the
//! sources, read by them and the restorers (and by callers, with
//! [`ArtifactRecord::facts_as`](stoa_backup_core::ArtifactRecord::facts_as)).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Facts of a KV document (`kv/<mount>.json`) of [`VaultKvSource`](super::VaultKvSource).
/// The server and mount facts are known at discovery; the counts once the document is
/// stored.
///
/// ```
/// # fn demo(record: &stoa_backup_core::ArtifactRecord) -> stoa_backup_core::Result<()> {
/// use stoa_backup_providers::vault::KvFacts;
///
/// let facts: KvFacts = record.facts_as()?;
/// println!("{} (KV v{}): {:?} secrets", facts.mount, facts.kv_version, facts.secrets);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvFacts {
    /// The server's version.
    pub vault_version: String,
    /// The storage backend (`raft`, …; `unknown` when the server did not say).
    pub storage_type: String,
    /// The mount path, with its trailing `/` (`secret/`).
    pub mount: String,
    /// The KV engine version (1 or 2).
    pub kv_version: u8,
    /// The namespace exported from (`null` outside namespaces).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Secrets in the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<u64>,
    /// Secrets listed without data: their current version was deleted or destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_deleted: Option<u64>,
    /// Paths the token may not list (not in the document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlistable_paths: Option<u64>,
    /// Secrets the token may not read (not in the document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable_secrets: Option<u64>,
}

/// Facts of a raft snapshot of [`RaftSnapshotSource`](super::RaftSnapshotSource). Only
/// `keys_needed` is known at discovery; the rest once the snapshot is stored. All are
/// optional: the restorer also takes snapshots another source stored (no facts at all).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RaftSnapshotFacts {
    /// What restoring the snapshot needs ([`KEYS_NOTE`](super::KEYS_NOTE)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_needed: Option<String>,
    /// The server's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_version: Option<String>,
    /// The cluster's name (`null` when the server did not say).
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// The cluster's id (`null` when the server did not say).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// The storage backend (`raft`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_type: Option<String>,
    /// Size of the raft state (`state.bin`) in the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_bytes: Option<u64>,
    /// The snapshot's `meta.json` fields (index, term, version…), as Vault wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_meta: Option<Value>,
    /// How the cluster that took the snapshot was sealed (`sys/seal-status`), so that a
    /// restore's plan can name the keys it needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealFacts>,
}

/// A Vault cluster's seal, as `GET /v1/sys/seal-status` reports it (never a key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealFacts {
    /// `shamir`, or the auto-unseal mechanism (`awskms`, `gcpckms`, `azurekeyvault`,
    /// `transit`, `pkcs11`…).
    pub seal_type: String,
    /// Key shares needed: unseal shares (Shamir) or recovery shares (auto-unseal).
    pub threshold: u32,
    /// Key shares made.
    pub shares: u32,
    /// Whether the shares are recovery keys (auto-unseal) rather than unseal keys.
    pub recovery_seal: bool,
}

impl SealFacts {
    /// Reads a `sys/seal-status` answer; `None` without a seal type.
    pub fn from_seal_status(v: &Value) -> Option<SealFacts> {
        let seal_type = v["type"].as_str()?.to_string();
        let n = |k: &str| {
            v[k].as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .unwrap_or(0)
        };
        Some(SealFacts {
            seal_type,
            threshold: n("t"),
            shares: n("n"),
            recovery_seal: v["recovery_seal"].as_bool().unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stoa_backup_core::source::to_facts;

    fn record(facts: Value) -> stoa_backup_core::ArtifactRecord {
        crate::record_with_facts(
            "vault-kv",
            super::super::PROVIDER_KV,
            "kv/secret.json",
            facts,
        )
    }

    #[test]
    fn reads_the_facts_kv_documents_recorded_before_typed_facts() {
        let today = json!({
            "vault_version": "1.17.2",
            "storage_type": "raft",
            "mount": "secret/",
            "kv_version": 2,
            "namespace": null,
            "secrets": 262,
            "current_deleted": 1,
            "unlistable_paths": 0,
            "unreadable_secrets": 0,
        });
        let f: KvFacts = record(today.clone()).facts_as().unwrap();
        assert_eq!((f.mount.as_str(), f.kv_version), ("secret/", 2));
        assert_eq!((f.namespace.as_deref(), f.secrets), (None, Some(262)));
        assert_eq!(serde_json::Value::Object(to_facts(&f).unwrap()), today);
    }

    #[test]
    fn reads_the_facts_snapshots_recorded_before_typed_facts() {
        let today = json!({
            "keys_needed": super::super::KEYS_NOTE,
            "vault_version": "1.17.2",
            "cluster_name": "vault-cluster-1",
            "cluster_id": null,
            "storage_type": "raft",
            "state_bytes": 3 << 20,
            "snapshot_meta": {"Index": 42, "Term": 3, "Version": 1},
        });
        let f: RaftSnapshotFacts = record(today.clone()).facts_as().unwrap();
        assert_eq!(f.cluster_name.as_deref(), Some("vault-cluster-1"));
        assert_eq!(f.snapshot_meta.as_ref().unwrap()["Index"], 42);
        assert_eq!(serde_json::Value::Object(to_facts(&f).unwrap()), today);
        // A snapshot stored by another source has no facts; it still reads.
        let none: RaftSnapshotFacts = record(json!({})).facts_as().unwrap();
        assert_eq!(none.keys_needed, None);
    }

    #[test]
    fn a_kv_version_out_of_range_is_an_integrity_error() {
        let err = record(json!({
            "vault_version": "1.17.2", "storage_type": "raft", "mount": "secret/",
            "kv_version": 300, "namespace": null,
        }))
        .facts_as::<KvFacts>()
        .unwrap_err();
        assert_eq!(err.kind(), stoa_backup_core::ErrorKind::Integrity);
        assert!(err.to_string().contains("'kv_version'"), "{err}");
    }
}
