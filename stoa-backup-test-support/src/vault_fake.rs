//! A fake HashiCorp Vault / OpenBao server over real HTTP on `127.0.0.1` (feature `vault`).
//!
//! Follows `api-contracts.md` §3: health states with their status codes (200 active, 429
//! standby, 501 uninitialised, 503 sealed) and a health body on every code; `sys/mounts`
//! (KV v1 and v2, `generic`), `sys/internal/ui/mounts`; KV v2 data/metadata with versions,
//! soft deletion (404 with `"data":null` envelope), `cas` and `cas_required`; KV v1; LIST as
//! the `LIST` method or `?list=true`, with OpenBao-style `after=`/`limit=` paging; error
//! bodies `{"errors":[…]}` (404 with an empty array); token auth (`X-Vault-Token` or
//! `Authorization: Bearer`), AppRole and Kubernetes logins; `X-Vault-Namespace` (each
//! namespace has its own mounts); raft snapshots (a gzip tar of a few MiB with valid
//! internal checksums and a sealed hash list; faults: truncated, empty sealed list, no raft)
//! and their restore (`snapshot` checks the seal, `snapshot-force` does not).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

type Body = Full<Bytes>;

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

#[derive(Debug, Clone)]
struct Version {
    data: Option<Value>,
    created_time: String,
    deletion_time: String,
    destroyed: bool,
}

#[derive(Debug, Clone)]
struct Secret {
    versions: BTreeMap<u64, Version>,
    current: u64,
    max_versions: u64,
    cas_required: bool,
    delete_version_after: String,
    custom_metadata: Map<String, Value>,
    created_time: String,
    updated_time: String,
}

impl Secret {
    fn new(now: &str) -> Self {
        Secret {
            versions: BTreeMap::new(),
            current: 0,
            max_versions: 0,
            cas_required: false,
            delete_version_after: "0s".into(),
            custom_metadata: Map::new(),
            created_time: now.into(),
            updated_time: now.into(),
        }
    }

    fn version_meta(&self, n: u64) -> Value {
        let v = &self.versions[&n];
        json!({"version": n, "created_time": v.created_time, "deletion_time": v.deletion_time,
               "destroyed": v.destroyed, "custom_metadata": if self.custom_metadata.is_empty() { Value::Null } else { Value::Object(self.custom_metadata.clone()) }})
    }

    fn metadata(&self) -> Value {
        let versions: Map<String, Value> = self
            .versions
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    json!({"created_time": v.created_time, "deletion_time": v.deletion_time, "destroyed": v.destroyed}),
                )
            })
            .collect();
        json!({
            "current_version": self.current,
            "oldest_version": self.versions.keys().next().copied().unwrap_or(0),
            "max_versions": self.max_versions,
            "cas_required": self.cas_required,
            "delete_version_after": self.delete_version_after,
            "custom_metadata": if self.custom_metadata.is_empty() { Value::Null } else { Value::Object(self.custom_metadata.clone()) },
            "created_time": self.created_time,
            "updated_time": self.updated_time,
            "versions": versions,
        })
    }
}

#[derive(Debug, Clone, Default)]
struct Mount {
    kv_version: u8,
    v1: BTreeMap<String, Value>,
    v2: BTreeMap<String, Secret>,
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
            snapshot_size: 3 << 20,
            snapshot: None,
            snapshot_fault: SnapshotFault::None,
            restores: Vec::new(),
            requests: Vec::new(),
            clock: 0,
            logins: 0,
        }));
        let task = crate::http_fake::spawn_server(listener, state.clone(), handle);
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

fn write_version(sec: &mut Secret, data: Value, now: &str) -> u64 {
    sec.current += 1;
    let n = sec.current;
    sec.versions.insert(
        n,
        Version {
            data: Some(data),
            created_time: now.into(),
            deletion_time: String::new(),
            destroyed: false,
        },
    );
    let keep = if sec.max_versions == 0 {
        10
    } else {
        sec.max_versions
    };
    while sec.versions.len() as u64 > keep {
        let first = *sec.versions.keys().next().expect("non-empty");
        sec.versions.remove(&first);
    }
    sec.updated_time = now.into();
    n
}

fn snapshot_of(s: &mut State) -> Bytes {
    if s.snapshot.is_none() {
        s.snapshot = Some(Bytes::from(build_snapshot(
            s.snapshot_size,
            &s.seal_key,
            false,
        )));
    }
    s.snapshot.clone().expect("set above")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn seal(seal_key: &str, sums: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(seal_key.as_bytes());
    h.update(sums);
    format!("fake-seal:v1:{}", hex(&h.finalize())).into_bytes()
}

/// A raft snapshot: gzip tar of `meta.json`, `state.bin`, `SHA256SUMS`, `SHA256SUMS.sealed`.
fn build_snapshot(state_size: usize, seal_key: &str, empty_seal: bool) -> Vec<u8> {
    let meta = br#"{"Version":1,"ID":"2-1042-1717000000000","Index":1042,"Term":2,"Peers":"ka8xMjcuMC4wLjE6ODIwMQ==","Configuration":{"Servers":[{"Suffrage":0,"ID":"vault-0","Address":"127.0.0.1:8201"}]},"ConfigurationIndex":1,"Size":0}"#;
    // Three quarters pseudo-random, a quarter repetitive: realistic-ish compressibility, deterministic.
    let mut state = Vec::with_capacity(state_size);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while state.len() < state_size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if state.len() % 4096 < 3072 {
            state.extend_from_slice(&x.to_le_bytes());
        } else {
            state.extend_from_slice(b"kv/entry");
        }
    }
    state.truncate(state_size);
    let sums = format!(
        "{}  meta.json\n{}  state.bin\n",
        hex(&Sha256::digest(meta)),
        hex(&Sha256::digest(&state))
    );
    let sealed = if empty_seal {
        Vec::new()
    } else {
        seal(seal_key, sums.as_bytes())
    };
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, data) in [
        ("meta.json", &meta[..]),
        ("state.bin", &state[..]),
        ("SHA256SUMS", sums.as_bytes()),
        ("SHA256SUMS.sealed", &sealed[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(1_717_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, data).expect("tar append");
    }
    let mut gz = b.into_inner().expect("tar finish");
    gz.flush().expect("flush");
    gz.finish().expect("gzip finish")
}

/// Checks a posted snapshot: `Ok(sealed_ok)` or an error message.
fn check_posted(bytes: &[u8], seal_key: &str) -> Result<bool, String> {
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut ar = tar::Archive::new(gz);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for e in ar.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let name = e
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        files.insert(name, buf);
    }
    let sums = files.get("SHA256SUMS").ok_or("missing SHA256SUMS")?;
    let sealed = files
        .get("SHA256SUMS.sealed")
        .ok_or("missing SHA256SUMS.sealed")?;
    if sealed.is_empty() {
        return Err("empty sealed hash file".into());
    }
    for line in String::from_utf8_lossy(sums).lines() {
        let mut p = line.split_whitespace();
        let (Some(h), Some(f)) = (p.next(), p.next()) else {
            return Err("bad hash file".into());
        };
        let data = files.get(f).ok_or("missing file")?;
        if hex(&Sha256::digest(data)) != h {
            return Err(format!("checksum mismatch for {f}"));
        }
    }
    Ok(*sealed == seal(seal_key, sums))
}

fn respond(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn no_content() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

fn errors(status: u16, msgs: &[&str]) -> Response<Body> {
    respond(
        StatusCode::from_u16(status).expect("status"),
        json!({ "errors": msgs }),
    )
}

fn envelope(data: Value) -> Value {
    json!({"request_id": format!("{:08x}-fake", rand::random::<u32>()), "lease_id": "", "renewable": false,
           "lease_duration": 0, "data": data, "wrap_info": null, "warnings": null, "auth": null, "mount_type": "kv"})
}

fn ok(data: Value) -> Response<Body> {
    respond(StatusCode::OK, envelope(data))
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let r = crate::http_fake::FakeRequest::read(req).await;
    let q: BTreeMap<String, String> = crate::percent::form_pairs(&r.query).collect();
    let namespace = r.header("x-vault-namespace");
    let token = r.header("x-vault-token").or_else(|| {
        r.header("authorization")
            .and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
    });
    let (method, raw_path, body) = (r.method, r.path, r.body);
    let mut s = state.lock().expect("vault state");
    s.requests.push(LoggedRequest {
        method: method.clone(),
        path: match q.is_empty() {
            true => raw_path.clone(),
            false => format!(
                "{raw_path}?{}",
                q.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
            ),
        },
        namespace: namespace.clone(),
    });
    Ok(route(
        &mut s, &method, &raw_path, &q, namespace, token, &body,
    ))
}

fn route(
    s: &mut State,
    method: &str,
    raw_path: &str,
    q: &BTreeMap<String, String>,
    namespace: Option<String>,
    token: Option<String>,
    body: &[u8],
) -> Response<Body> {
    let Some(path) = raw_path.strip_prefix("/v1/") else {
        return errors(404, &[]);
    };
    let path = crate::percent::decode(path);
    if path == "sys/health" {
        return health(s, q);
    }
    if path == "sys/seal-status" {
        let sealed = matches!(s.health, HealthState::Sealed | HealthState::Uninitialized);
        return respond(
            StatusCode::OK,
            json!({"type": "shamir", "initialized": s.health != HealthState::Uninitialized, "sealed": sealed,
                   "t": 3, "n": 5, "progress": 0, "nonce": "", "version": s.version, "build_date": "2024-07-01T00:00:00Z",
                   "migration": false, "recovery_seal": false, "storage_type": "raft"}),
        );
    }
    if matches!(s.health, HealthState::Sealed | HealthState::Uninitialized) {
        return errors(503, &["Vault is sealed"]);
    }
    let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // Logins need no token.
    if method == "POST" && path == "auth/approle/login" {
        let ok_creds = s
            .approle
            .as_ref()
            .is_some_and(|(r, sid)| json_body["role_id"] == *r && json_body["secret_id"] == *sid);
        if !ok_creds {
            return errors(400, &["invalid role or secret ID"]);
        }
        return login(s, "approle");
    }
    if method == "POST" && path == "auth/kubernetes/login" {
        let ok_creds = s
            .kubernetes
            .as_ref()
            .is_some_and(|(r, jwt)| json_body["role"] == *r && json_body["jwt"] == *jwt);
        if !ok_creds {
            return errors(403, &["permission denied"]);
        }
        return login(s, "kubernetes");
    }
    if !token.as_ref().is_some_and(|t| s.tokens.contains(t)) {
        return errors(403, &["permission denied"]);
    }
    if path == "auth/token/lookup-self" {
        return ok(json!({"policies": ["backup"], "ttl": 3600, "renewable": true}));
    }
    if path == "sys/storage/raft/snapshot" && method == "GET" {
        return match s.snapshot_fault {
            SnapshotFault::NotRaft => errors(400, &["raft storage is not in use"]),
            SnapshotFault::None => snapshot_response(snapshot_of(s)),
            SnapshotFault::Truncated => {
                let full = snapshot_of(s);
                snapshot_response(full.slice(..full.len() * 6 / 10))
            }
            SnapshotFault::EmptySealed => {
                let key = s.seal_key.clone();
                snapshot_response(Bytes::from(build_snapshot(s.snapshot_size, &key, true)))
            }
        };
    }
    if (path == "sys/storage/raft/snapshot" || path == "sys/storage/raft/snapshot-force")
        && method == "POST"
    {
        let force = path.ends_with("-force");
        return match check_posted(body, &s.seal_key) {
            Err(e) => errors(400, &[&format!("failed to read snapshot file: {e}")]),
            Ok(false) if !force => errors(
                400,
                &["could not verify hash file, possibly the snapshot is using a different set of unseal keys; use the snapshot-force API to bypass this check"],
            ),
            Ok(_) => {
                s.restores.push(RestoreRecord {
                    force,
                    size: body.len(),
                    sha256: hex(&Sha256::digest(body)),
                });
                no_content()
            }
        };
    }
    let ns = ns_key(namespace.as_deref().unwrap_or_default());
    if path == "sys/mounts" && method == "GET" && s.deny_mount_table {
        return errors(403, &["1 error occurred:\n\t* permission denied\n\n"]);
    }
    if path == "sys/mounts" && method == "GET" {
        let Some(mounts) = s.namespaces.get(&ns) else {
            return errors(404, &[]);
        };
        let mut table = Map::new();
        for (p, m) in mounts {
            table.insert(
                p.clone(),
                json!({"type": "kv", "options": if m.kv_version == 2 { json!({"version": "2"}) } else { Value::Null },
                       "accessor": format!("kv_{:08x}", p.len()), "description": "", "local": false, "seal_wrap": false,
                       "config": {"default_lease_ttl": 0, "max_lease_ttl": 0}}),
            );
        }
        table.insert("sys/".into(), json!({"type": "system", "options": null}));
        table.insert(
            "cubbyhole/".into(),
            json!({"type": "cubbyhole", "options": null}),
        );
        let mut env = envelope(Value::Object(table.clone()));
        for (k, v) in table {
            env[k] = v;
        }
        return respond(StatusCode::OK, env);
    }
    if let Some(m) = path.strip_prefix("sys/internal/ui/mounts/") {
        let key = mount_key(m);
        return match s.namespaces.get(&ns).and_then(|n| n.get(&key)) {
            Some(mt) => ok(json!({"type": "kv", "path": key,
                "options": if mt.kv_version == 2 { json!({"version": "2"}) } else { Value::Null }})),
            None => errors(400, &[&format!("preflight capability check returned 403, please ensure client's policies grant access to path \"{key}\"")]),
        };
    }
    let list = method == "LIST" || (method == "GET" && q.get("list").is_some_and(|v| v == "true"));
    let now = s.now();
    let denied = s.denied.clone();
    let Some(mounts) = s.namespaces.get_mut(&ns) else {
        return errors(404, &[]);
    };
    let Some(mpath) = mounts
        .keys()
        .filter(|m| path.starts_with(m.as_str()) || format!("{path}/") == **m)
        .max_by_key(|m| m.len())
        .cloned()
    else {
        return errors(
            404,
            &[&format!(
                "no handler for route \"{path}\". route entry not found."
            )],
        );
    };
    let mount = mounts.get_mut(&mpath).expect("found");
    let rest = path.get(mpath.len()..).unwrap_or_default().to_string();
    let is_denied = |p: &str| {
        denied
            .iter()
            .any(|d| format!("{mpath}{p}").starts_with(d.as_str()))
    };
    if mount.kv_version == 1 {
        if is_denied(&rest) {
            return errors(403, &["1 error occurred:\n\t* permission denied\n\n"]);
        }
        return kv1(mount, method, list, &rest, q, &json_body);
    }
    let (kind, sub) = match rest.split_once('/') {
        Some((k, p)) => (k.to_string(), p.to_string()),
        None => (rest.clone(), String::new()),
    };
    if is_denied(&sub) && (list || method == "GET") {
        return errors(403, &["1 error occurred:\n\t* permission denied\n\n"]);
    }
    match (kind.as_str(), method, list) {
        ("metadata", _, true) => {
            let keys: Vec<String> = list_keys(mount.v2.keys(), &sub);
            page(keys, q)
        }
        ("metadata", "GET", false) => match mount.v2.get(&sub) {
            Some(sec) => ok(sec.metadata()),
            None => errors(404, &[]),
        },
        ("metadata", "POST" | "PUT", _) => {
            let sec = mount.v2.entry(sub).or_insert_with(|| Secret::new(&now));
            if let Some(n) = json_body["max_versions"].as_u64() {
                sec.max_versions = n;
            }
            if let Some(b) = json_body["cas_required"].as_bool() {
                sec.cas_required = b;
            }
            if let Some(d) = json_body["delete_version_after"].as_str() {
                sec.delete_version_after = d.into();
            }
            if let Some(c) = json_body["custom_metadata"].as_object() {
                sec.custom_metadata = c.clone();
            }
            sec.updated_time = now;
            no_content()
        }
        ("metadata", "DELETE", _) => {
            mount.v2.remove(&sub);
            no_content()
        }
        ("data", "GET", false) => {
            let Some(sec) = mount.v2.get(&sub) else {
                return errors(404, &[]);
            };
            let n = q
                .get("version")
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(sec.current);
            let Some(v) = sec.versions.get(&n) else {
                return errors(404, &[]);
            };
            let meta = sec.version_meta(n);
            if !v.deletion_time.is_empty() || v.destroyed {
                return respond(
                    StatusCode::NOT_FOUND,
                    envelope(json!({"data": null, "metadata": meta})),
                );
            }
            ok(json!({"data": v.data, "metadata": meta}))
        }
        ("data", "POST" | "PUT", _) => {
            let Some(data) = json_body.get("data").filter(|d| d.is_object()).cloned() else {
                return errors(400, &["no data provided"]);
            };
            let cas = json_body["options"]["cas"].as_u64();
            let sec = mount.v2.entry(sub).or_insert_with(|| Secret::new(&now));
            match cas {
                None if sec.cas_required => {
                    return errors(400, &["check-and-set parameter required for this call"])
                }
                Some(c) if c != sec.current => {
                    return errors(
                        400,
                        &["check-and-set parameter did not match the current version"],
                    )
                }
                _ => {}
            }
            let n = write_version(sec, data, &now);
            ok(sec.version_meta(n))
        }
        ("data", "DELETE", _) => {
            if let Some(sec) = mount.v2.get_mut(&sub) {
                let cur = sec.current;
                if let Some(v) = sec.versions.get_mut(&cur) {
                    v.deletion_time = now;
                }
            }
            no_content()
        }
        _ => errors(405, &["unsupported operation"]),
    }
}

fn login(s: &mut State, method: &str) -> Response<Body> {
    s.logins += 1;
    let t = format!("hvs.fakelogin{}", random_hex(24));
    s.tokens.insert(t.clone());
    respond(
        StatusCode::OK,
        json!({"request_id": "fake", "lease_id": "", "renewable": false, "lease_duration": 0, "data": null,
               "wrap_info": null, "warnings": null,
               "auth": {"client_token": t, "accessor": random_hex(24), "policies": ["backup"], "token_policies": ["backup"],
                        "metadata": {"method": method}, "lease_duration": 3600, "renewable": true}}),
    )
}

fn health(s: &State, q: &BTreeMap<String, String>) -> Response<Body> {
    let code = |k: &str, d: u16| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let status = match s.health {
        HealthState::Active => code("activecode", 200),
        HealthState::Standby if q.get("standbyok").is_some_and(|v| v == "true") => {
            code("activecode", 200)
        }
        HealthState::Standby => code("standbycode", 429),
        HealthState::Sealed => code("sealedcode", 503),
        HealthState::Uninitialized => code("uninitcode", 501),
    };
    respond(
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        json!({"initialized": s.health != HealthState::Uninitialized,
               "sealed": matches!(s.health, HealthState::Sealed | HealthState::Uninitialized),
               "standby": s.health == HealthState::Standby, "performance_standby": false,
               "replication_dr_mode": "disabled", "replication_performance_mode": "disabled",
               "server_time_utc": 1_717_000_000, "version": s.version, "enterprise": false,
               "cluster_name": "vault-cluster-fake", "cluster_id": "2b1c0000-fake-4000-8000-000000000001",
               "echo_duration_ms": 0, "clock_skew_ms": 0}),
    )
}

fn snapshot_response(b: Bytes) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/gzip")
        .body(Full::new(b))
        .expect("response")
}

/// One level of keys under `prefix` (folders with a trailing `/`), sorted.
fn list_keys<'a>(paths: impl Iterator<Item = &'a String>, prefix: &str) -> Vec<String> {
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let set: BTreeSet<String> = paths
        .filter_map(|p| p.strip_prefix(prefix.as_str()))
        .map(|rest| match rest.find('/') {
            Some(i) => rest[..=i].to_string(),
            None => rest.to_string(),
        })
        .collect();
    set.into_iter().collect()
}

fn page(keys: Vec<String>, q: &BTreeMap<String, String>) -> Response<Body> {
    let after = q.get("after").cloned().unwrap_or_default();
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok());
    let keys: Vec<String> = keys
        .into_iter()
        .filter(|k| after.is_empty() || *k > after)
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    if keys.is_empty() {
        return errors(404, &[]);
    }
    ok(json!({ "keys": keys }))
}

fn kv1(
    mount: &mut Mount,
    method: &str,
    list: bool,
    rest: &str,
    q: &BTreeMap<String, String>,
    body: &Value,
) -> Response<Body> {
    if list {
        return page(list_keys(mount.v1.keys(), rest), q);
    }
    match method {
        "GET" => match mount.v1.get(rest) {
            Some(v) => respond(
                StatusCode::OK,
                json!({"request_id": "fake", "lease_id": "", "renewable": false, "lease_duration": 2_764_800,
                       "data": v, "wrap_info": null, "warnings": null, "auth": null}),
            ),
            None => errors(404, &[]),
        },
        "POST" | "PUT" => {
            if !body.is_object() {
                return errors(400, &["no data provided"]);
            }
            mount.v1.insert(rest.to_string(), body.clone());
            no_content()
        }
        "DELETE" => {
            mount.v1.remove(rest);
            no_content()
        }
        _ => errors(405, &["unsupported operation"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_one_level() {
        let paths: Vec<String> = ["a/b/c", "a/d", "e", "a b/x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(list_keys(paths.iter(), ""), vec!["a b/", "a/", "e"]);
        assert_eq!(list_keys(paths.iter(), "a/"), vec!["b/", "d"]);
        assert_eq!(crate::percent::decode("a%20b/c"), "a b/c");
    }

    #[test]
    fn snapshots_check_out() {
        let b = build_snapshot(100_000, "k", false);
        assert_eq!(check_posted(&b, "k"), Ok(true));
        assert_eq!(check_posted(&b, "other"), Ok(false));
        assert!(check_posted(&b[..b.len() / 2], "k").is_err());
    }
}
