//! A fake HashiCorp Vault / OpenBao server over real HTTP on `127.0.0.1` (feature `vault`).
//!
//! Follows `api-contracts.md` §3: health states with their status codes (200 active, 429
//! standby, 501 uninitialised, 503 sealed) and a health body on every code; `sys/mounts`
//! (KV v1 and v2, `generic`), `sys/mounts/<path>` to enable (`type` `kv` with
//! `options.version`, or `kv-v1`/`kv-v2`; 400 `path is already in use at …`), read and
//! disable an engine, `sys/internal/ui/mounts`; KV v2 data/metadata with versions, `delete/`,
//! `undelete/` and `destroy/` of given versions (soft-deleted or destroyed versions read as
//! 404 with the `"data":null` envelope), `cas` and `cas_required`; KV v1; LIST as
//! the `LIST` method or `?list=true`, with OpenBao-style `after=`/`limit=` paging; error
//! bodies `{"errors":[…]}` (404 with an empty array); token auth (`X-Vault-Token` or
//! `Authorization: Bearer`), AppRole and Kubernetes logins; `X-Vault-Namespace` (each
//! namespace has its own mounts); raft snapshots (a gzip tar of a few MiB with valid
//! internal checksums and a sealed hash list; faults: truncated, empty sealed list, no raft)
//! and their restore (`snapshot` checks the seal, `snapshot-force` does not).

mod http;
mod kv;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;

use kv::{write_version, Mount, Secret};
use snapshot::{build_snapshot, snapshot_of};

/// The state the fake node reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Initialised, unsealed, active (200).
    Active,
    /// Unsealed standby (429).
    Standby,
    /// Sealed (503; every other endpoint answers `Vault is sealed`).
    Sealed,
    /// Not initialised (501).
    Uninitialized,
}

/// How the snapshot endpoint misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotFault {
    /// A complete snapshot.
    #[default]
    None,
    /// 200, then the archive stops after 60 % of its bytes (a failed snapshot).
    Truncated,
    /// 200 and a complete archive whose `SHA256SUMS.sealed` is empty.
    EmptySealed,
    /// 400 `raft storage is not in use`.
    NotRaft,
}

/// A logged request (method, path, namespace header, whether a valid token was sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// `X-Vault-Namespace`, if sent.
    pub namespace: Option<String>,
}

/// A snapshot restore the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRecord {
    /// Whether `snapshot-force` was used.
    pub force: bool,
    /// Bytes received.
    pub size: usize,
    /// SHA-256 of the bytes received.
    pub sha256: String,
}

struct State {
    health: HealthState,
    version: String,
    root_token: String,
    tokens: BTreeSet<String>,
    approle: Option<(String, String)>,
    kubernetes: Option<(String, String)>,
    namespaces: BTreeMap<String, BTreeMap<String, Mount>>,
    denied: Vec<String>,
    deny_mount_table: bool,
    seal_key: String,
    /// `sys/seal-status`'s `type`, `t`, `n` and `recovery_seal`.
    seal: (String, u32, u32, bool),
    snapshot_size: usize,
    snapshot: Option<Bytes>,
    snapshot_fault: SnapshotFault,
    restores: Vec<RestoreRecord>,
    requests: Vec<LoggedRequest>,
    clock: u64,
    logins: u64,
}

impl State {
    fn now(&mut self) -> String {
        self.clock += 1;
        let s = self.clock;
        format!(
            "2025-03-01T{:02}:{:02}:{:02}.{:06}Z",
            (s / 3600) % 24,
            (s / 60) % 60,
            s % 60,
            s
        )
    }
}

/// The fake server; stops when dropped.
pub struct FakeVault {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeVault")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeVault {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
        .collect()
}

impl FakeVault {
    /// Starts an active, unsealed node with a KV v2 mount `secret/` and a random root token.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let root_token = format!("hvs.fakeroot{}", random_hex(24));
        let mut root = BTreeMap::new();
        root.insert(
            "secret/".to_string(),
            Mount {
                kv_version: 2,
                ..Default::default()
            },
        );
        let mut namespaces = BTreeMap::new();
        namespaces.insert(String::new(), root);
        let state = Arc::new(Mutex::new(State {
            health: HealthState::Active,
            version: "1.17.2".into(),
            tokens: [root_token.clone()].into_iter().collect(),
            root_token,
            approle: None,
            kubernetes: None,
            namespaces,
            denied: Vec::new(),
            deny_mount_table: false,
            seal_key: random_hex(32),
            seal: ("shamir".into(), 3, 5, false),
            snapshot_size: 3 << 20,
            snapshot: None,
            snapshot_fault: SnapshotFault::None,
            restores: Vec::new(),
            requests: Vec::new(),
            clock: 0,
            logins: 0,
        }));
        let task = crate::http_fake::spawn_server(listener, state.clone(), http::handle);
        FakeVault { state, addr, task }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("vault state"))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The root token (valid in every namespace).
    pub fn root_token(&self) -> String {
        self.with(|s| s.root_token.clone())
    }

    /// Sets the node's state.
    pub fn set_health(&self, h: HealthState) {
        self.with(|s| s.health = h);
    }

    /// Sets the seal `sys/seal-status` reports: `shamir` with `threshold` of `shares`
    /// unseal keys (the default: 3 of 5), or an auto-unseal type (`awskms`, `transit`…)
    /// with that many recovery keys.
    pub fn set_seal(&self, seal_type: &str, threshold: u32, shares: u32) {
        let recovery = seal_type != "shamir";
        self.with(|s| s.seal = (seal_type.into(), threshold, shares, recovery));
    }

    /// Sets the reported version.
    pub fn set_version(&self, v: &str) {
        self.with(|s| s.version = v.into());
    }

    /// Enables a KV mount (`version` 1 or 2) in the root namespace.
    pub fn enable_kv(&self, mount: &str, version: u8) {
        self.enable_kv_in("", mount, version);
    }

    /// Enables a KV mount in a namespace (`""` = root, else e.g. `team-a`).
    pub fn enable_kv_in(&self, namespace: &str, mount: &str, version: u8) {
        let ns = ns_key(namespace);
        self.with(|s| {
            s.namespaces.entry(ns).or_default().insert(
                mount_key(mount),
                Mount {
                    kv_version: version,
                    ..Default::default()
                },
            );
        });
    }

    /// Writes a secret (a new version on KV v2) in the root namespace.
    pub fn put(&self, mount: &str, path: &str, data: Value) {
        self.put_in("", mount, path, data);
    }

    /// Writes a secret in a namespace.
    pub fn put_in(&self, namespace: &str, mount: &str, path: &str, data: Value) {
        self.with(|s| {
            let now = s.now();
            let m = s
                .namespaces
                .get_mut(&ns_key(namespace))
                .and_then(|n| n.get_mut(&mount_key(mount)))
                .expect("mount exists");
            if m.kv_version == 1 {
                m.v1.insert(path.into(), data);
            } else {
                let sec = m.v2.entry(path.into()).or_insert_with(|| Secret::new(&now));
                write_version(sec, data, &now);
            }
        });
    }

    /// Sets custom metadata and settings of a KV v2 secret.
    pub fn set_metadata(
        &self,
        mount: &str,
        path: &str,
        custom: Value,
        max_versions: u64,
        cas_required: bool,
    ) {
        self.with(|s| {
            let sec = s
                .namespaces
                .get_mut("")
                .unwrap()
                .get_mut(&mount_key(mount))
                .unwrap()
                .v2
                .get_mut(path)
                .expect("secret exists");
            sec.custom_metadata = custom.as_object().cloned().unwrap_or_default();
            sec.max_versions = max_versions;
            sec.cas_required = cas_required;
        });
    }

    /// Soft-deletes the current version of a KV v2 secret.
    pub fn delete_current(&self, mount: &str, path: &str) {
        self.with(|s| {
            let now = s.now();
            let sec = s
                .namespaces
                .get_mut("")
                .unwrap()
                .get_mut(&mount_key(mount))
                .unwrap()
                .v2
                .get_mut(path)
                .expect("secret exists");
            let cur = sec.current;
            if let Some(v) = sec.versions.get_mut(&cur) {
                v.deletion_time = now;
            }
        });
    }

    /// Removes every secret of a mount (root namespace).
    pub fn wipe(&self, mount: &str) {
        self.with(|s| {
            let m = s
                .namespaces
                .get_mut("")
                .unwrap()
                .get_mut(&mount_key(mount))
                .unwrap();
            m.v1.clear();
            m.v2.clear();
        });
    }

    /// The current data of a secret (root namespace), `None` if absent or deleted.
    pub fn get(&self, mount: &str, path: &str) -> Option<Value> {
        self.with(|s| {
            let m = s.namespaces.get("")?.get(&mount_key(mount))?;
            if m.kv_version == 1 {
                return m.v1.get(path).cloned();
            }
            let sec = m.v2.get(path)?;
            sec.versions.get(&sec.current)?.data.clone().filter(|_| {
                let v = &sec.versions[&sec.current];
                v.deletion_time.is_empty() && !v.destroyed
            })
        })
    }

    /// The current version number of a KV v2 secret (root namespace).
    pub fn current_version(&self, mount: &str, path: &str) -> Option<u64> {
        self.with(|s| {
            Some(
                s.namespaces
                    .get("")?
                    .get(&mount_key(mount))?
                    .v2
                    .get(path)?
                    .current,
            )
        })
    }

    /// Number of secrets in a mount (root namespace).
    pub fn count(&self, mount: &str) -> usize {
        self.with(|s| {
            s.namespaces
                .get("")
                .and_then(|n| n.get(&mount_key(mount)))
                .map_or(0, |m| m.v1.len() + m.v2.len())
        })
    }

    /// Enables AppRole login with these credentials.
    pub fn enable_approle(&self, role_id: &str, secret_id: &str) {
        self.with(|s| s.approle = Some((role_id.into(), secret_id.into())));
    }

    /// Enables Kubernetes login for `role` with this service-account JWT.
    pub fn enable_kubernetes(&self, role: &str, jwt: &str) {
        self.with(|s| s.kubernetes = Some((role.into(), jwt.into())));
    }

    /// Revokes every token issued by a login (the root token stays).
    pub fn revoke_login_tokens(&self) {
        self.with(|s| {
            let root = s.root_token.clone();
            s.tokens.retain(|t| *t == root);
        });
    }

    /// Tokens issued by logins so far.
    pub fn logins(&self) -> u64 {
        self.with(|s| s.logins)
    }

    /// Tokens currently valid (root and issued).
    pub fn valid_tokens(&self) -> Vec<String> {
        self.with(|s| s.tokens.iter().cloned().collect())
    }

    /// Answers 403 to LIST and reads under `mount/path-prefix` (e.g. `secret/locked/`).
    pub fn deny(&self, prefix: &str) {
        self.with(|s| s.denied.push(prefix.into()));
    }

    /// Answers 403 to `GET sys/mounts` (clients fall back to `sys/internal/ui/mounts/…`).
    pub fn deny_mount_table(&self) {
        self.with(|s| s.deny_mount_table = true);
    }

    /// Sets the size of `state.bin` in snapshots (default 3 MiB).
    pub fn set_snapshot_size(&self, bytes: usize) {
        self.with(|s| {
            s.snapshot_size = bytes;
            s.snapshot = None;
        });
    }

    /// Makes the snapshot endpoint misbehave.
    pub fn set_snapshot_fault(&self, fault: SnapshotFault) {
        self.with(|s| s.snapshot_fault = fault);
    }

    /// The complete snapshot this node serves.
    pub fn snapshot_bytes(&self) -> Bytes {
        self.with(snapshot_of)
    }

    /// A complete snapshot sealed with another cluster's key.
    pub fn foreign_snapshot(&self) -> Bytes {
        Bytes::from(build_snapshot(64 << 10, &random_hex(32), false))
    }

    /// A snapshot with an empty `SHA256SUMS.sealed`.
    pub fn snapshot_with_empty_seal(&self) -> Bytes {
        self.with(|s| Bytes::from(build_snapshot(s.snapshot_size, &s.seal_key.clone(), true)))
    }

    /// Snapshot restores accepted so far.
    pub fn restores(&self) -> Vec<RestoreRecord> {
        self.with(|s| s.restores.clone())
    }

    /// Requests served so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.with(|s| s.requests.clone())
    }
}

fn ns_key(ns: &str) -> String {
    let t = ns.trim_matches('/');
    if t.is_empty() {
        String::new()
    } else {
        format!("{t}/")
    }
}

fn mount_key(m: &str) -> String {
    format!("{}/", m.trim_matches('/'))
}
