//! HashiCorp Vault (1.14+) and OpenBao (2.x).
//!
//! Two ways to back Vault up, complementary (see the table in the docs of each type):
//! - [`VaultKvSource`] / [`VaultKvRestorer`]: the KV secrets engines (v1 and v2) read over the
//!   API, one JSON document per mount, restorable into any Vault (check-and-set writes, dry
//!   run). Only what the token can list and read; no policies, auth methods or other engines.
//! - [`RaftSnapshotSource`] / [`RaftSnapshotVerifier`] / [`RaftSnapshotRestorer`]: the
//!   integrated-storage (raft) snapshot — the whole cluster state (policies, auth methods,
//!   identities, every engine, tokens and leases), usable only with the cluster's unseal or
//!   recovery keys.
//!
//! **Both artifacts hold secrets.** They are marked sensitive: the pipeline refuses to store
//! them unless it encrypts (`.encryption(...)`), or the caller opts out explicitly and loudly
//! with `.store_secrets_unencrypted(true)` (only when the storage is encrypted elsewhere).
//!
//! Authentication: a token, Kubernetes auth (the pod's service-account JWT exchanged for a
//! token) or AppRole; an optional namespace (`X-Vault-Namespace`, Vault Enterprise and
//! OpenBao ≥ 2.3). Tokens never appear in errors, `Debug` output or traces.

mod client;
pub mod facts;
mod kv;
mod raft;
mod snapshot;

pub use client::{VaultAuth, VaultConnection, VaultHealth};
pub use facts::{KvFacts, RaftSnapshotFacts, SealFacts};
pub use kv::{VaultKvRestorer, VaultKvSource, VaultKvSourceBuilder, KV_CONTENT_TYPE, KV_FORMAT};
pub use raft::{
    RaftSnapshotRestorer, RaftSnapshotSource, RaftSnapshotVerifier, KEYS_NOTE,
    SNAPSHOT_CONTENT_TYPE,
};
pub use snapshot::{check_snapshot, SnapshotSummary};

/// Default component name of the KV export.
pub const KV_COMPONENT: &str = "vault-kv";

/// Default component name of the raft snapshot.
pub const SNAPSHOT_COMPONENT: &str = "vault-snapshot";

/// Provider name of the KV export in the manifest.
pub const PROVIDER_KV: &str = "vault-kv-api";

/// Provider name of the raft snapshot in the manifest.
pub const PROVIDER_RAFT: &str = "vault-raft-snapshot";

/// Default path of the pod's service-account token (Kubernetes auth).
pub const DEFAULT_SERVICE_ACCOUNT_TOKEN_PATH: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/token";
