//! KV secrets engines (v1 and v2) over the API: one JSON document per mount, restorable
//! into any Vault with check-and-set writes.

mod restore;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Map, Value};
use stoa_backup_core::source::to_facts;
use stoa_backup_core::{
    ArtifactPlan, ByteStream, Error, ErrorKind, Export, ExportContext, Facts, PreflightReport,
    Result, Source,
};
use tokio::sync::{mpsc, oneshot};

pub use restore::VaultKvRestorer;

use super::client::{vault_error, VaultClient, VaultConnection};
use super::facts::KvFacts;
use super::{KV_COMPONENT, PROVIDER_KV};
use crate::http::to_stable_json;

/// `format` field of every KV document.
pub const KV_FORMAT: &str = "stoa-backup/vault-kv/v1";

/// Content type of a KV document.
pub const KV_CONTENT_TYPE: &str = "application/vnd.stoa.vault-kv+json";

/// Requests in flight while reading or writing secrets.
const CONCURRENCY: usize = 8;

/// A KV mount: its path (with a trailing `/`) and engine version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KvMount {
    path: String,
    version: u8,
}

impl KvMount {
    fn artifact_name(&self) -> String {
        format!("kv/{}.json", self.path.trim_end_matches('/'))
    }
}

fn kv_version(info: &Value) -> Option<u8> {
    let ty = info["type"].as_str()?;
    if ty != "kv" && ty != "generic" {
        return None;
    }
    match info["options"]["version"].as_str() {
        Some("2") => Some(2),
        _ => Some(1),
    }
}

fn normalize_mount(m: &str) -> String {
    format!("{}/", m.trim_matches('/'))
}

/// Exports Vault KV mounts (v1 and v2) over the API: one `kv/<mount>.json` artifact per
/// mount, holding for every secret its current data and, for KV v2, its metadata (custom
/// metadata, `max_versions`, `cas_required`, `delete_version_after`, version history).
/// Secrets whose current version is deleted or destroyed are listed without data; paths the
/// token may not list or read are recorded (and counted in the manifest) and skipped.
///
/// What it does **not** hold (take a [`super::RaftSnapshotSource`] for these): older
/// versions' data, policies, auth methods and roles, identities, other engines.
///
/// The artifacts hold secret values in plain JSON: they are marked sensitive, so the pipeline
/// refuses to store them unless it encrypts (`.encryption(...)`) or the caller opts out with
/// `.store_secrets_unencrypted(true)`. The manifest records [`KvFacts`]: the Vault version,
/// storage type, mount, engine version and secret counts.
#[derive(Debug, Clone)]
pub struct VaultKvSource {
    client: VaultClient,
    mounts: Vec<String>,
    component: String,
    page_size: Option<usize>,
}

/// Builds a [`VaultKvSource`].
#[derive(Debug)]
pub struct VaultKvSourceBuilder {
    connection: VaultConnection,
    mounts: Vec<String>,
    component: String,
    page_size: Option<usize>,
}

impl VaultKvSource {
    /// Starts a builder for the server and credentials of `connection`
    /// ([`VaultConnection::new`] or [`VaultConnection::from_env`]).
    pub fn builder(connection: VaultConnection) -> VaultKvSourceBuilder {
        VaultKvSourceBuilder {
            connection,
            mounts: Vec::new(),
            component: KV_COMPONENT.to_string(),
            page_size: None,
        }
    }
}

impl VaultKvSourceBuilder {
    /// Exports only this mount (repeatable; default: every KV mount in `sys/mounts`).
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mounts.push(normalize_mount(&mount.into()));
        self
    }

    /// Component name in keys and the manifest (default `vault-kv`).
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = component.into();
        self
    }

    /// Lists in pages of `n` keys (`limit=`/`after=`, OpenBao ≥ 2.0; Vault has no paging,
    /// leave unset there).
    pub fn list_page_size(mut self, n: usize) -> Self {
        self.page_size = Some(n);
        self
    }

    /// Validates the settings (nothing is contacted).
    pub fn build(self) -> Result<VaultKvSource> {
        if self.page_size == Some(0) {
            return Err(Error::config("the list page size must be at least 1"));
        }
        for m in &self.mounts {
            if m == "/" || m.split('/').any(|s| s == "..") {
                return Err(Error::config(format!("invalid mount path {m:?}")));
            }
        }
        Ok(VaultKvSource {
            client: VaultClient::new(self.connection)?,
            mounts: self.mounts,
            component: self.component,
            page_size: self.page_size,
        })
    }
}

/// Reads the KV mounts: `sys/mounts`, or per configured mount `sys/internal/ui/mounts/…`
/// when the token may not read the mount table.
async fn kv_mounts(client: &VaultClient, only: &[String]) -> Result<Vec<KvMount>> {
    let what = "listing secrets engines (sys/mounts)";
    let answer = client
        .call(Method::GET, client.url(&["sys", "mounts"]), None, what)
        .await?;
    if answer.status.is_success() {
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| Error::source_failed(format!("{what}: invalid JSON")).with_source(e))?;
        let table = v["data"].as_object().cloned().unwrap_or_else(|| {
            v.as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, v)| k.ends_with('/') && v.is_object())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        });
        let mut mounts: Vec<KvMount> = table
            .iter()
            .filter_map(|(path, info)| {
                kv_version(info).map(|version| KvMount {
                    path: normalize_mount(path),
                    version,
                })
            })
            .filter(|m| only.is_empty() || only.contains(&m.path))
            .collect();
        mounts.sort_by(|a, b| a.path.cmp(&b.path));
        for m in only {
            if !mounts.iter().any(|k| &k.path == m) {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("there is no KV mount at {m}"),
                )
                .with_hint("check the mount path (vault secrets list)"));
            }
        }
        return Ok(mounts);
    }
    if answer.status != StatusCode::FORBIDDEN || only.is_empty() {
        let e = vault_error(&answer, what);
        return Err(if answer.status == StatusCode::FORBIDDEN {
            e.with_hint("grant read on sys/mounts, or configure the mounts to export explicitly")
        } else {
            e
        });
    }
    let mut mounts = Vec::new();
    for m in only {
        let what = format!("looking up the mount {m}");
        let v = client
            .get_json(client.url(&["sys", "internal", "ui", "mounts", m]), &what)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("there is no mount at {m}")))?;
        let version = kv_version(&v["data"])
            .ok_or_else(|| Error::config(format!("the mount {m} is not a KV engine")))?;
        mounts.push(KvMount {
            path: m.clone(),
            version,
        });
    }
    Ok(mounts)
}

/// One LIST: the keys under `prefix` (sub-folders end in `/`); `None` if denied.
async fn list_keys(
    client: &VaultClient,
    mount: &KvMount,
    prefix: &str,
    page_size: Option<usize>,
) -> Result<Option<Vec<String>>> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = if mount.version == 2 {
            client.url(&[&mount.path, "metadata", prefix])
        } else {
            client.url(&[&mount.path, prefix])
        };
        // A trailing slash names the folder itself (`LIST secret/metadata/`).
        let p = format!("{}/", url.path().trim_end_matches('/'));
        url.set_path(&p);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("list", "true");
            if let Some(n) = page_size {
                q.append_pair("limit", &n.to_string());
                if let Some(a) = &after {
                    q.append_pair("after", a);
                }
            }
        }
        let what = format!("listing {}{}", mount.path, prefix);
        let answer = client.call(Method::GET, url, None, &what).await?;
        match answer.status.as_u16() {
            404 => break,
            403 => return Ok(None),
            s if (200..300).contains(&s) => {}
            _ => return Err(vault_error(&answer, &what)),
        }
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| Error::source_failed(format!("{what}: invalid JSON")).with_source(e))?;
        let page: Vec<String> = v["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let n = page.len();
        after = page.last().cloned();
        keys.extend(page);
        match page_size {
            Some(limit) if n >= limit => continue,
            _ => break,
        }
    }
    Ok(Some(keys))
}

/// Walks a mount; returns secret paths (sorted) and prefixes the token may not list.
async fn walk(
    client: &VaultClient,
    mount: &KvMount,
    page_size: Option<usize>,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut secrets = Vec::new();
    let mut denied = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(prefix) = stack.pop() {
        match list_keys(client, mount, &prefix, page_size).await? {
            None => denied.push(prefix),
            Some(keys) => {
                for k in keys {
                    let full = format!("{prefix}{k}");
                    if k.ends_with('/') {
                        stack.push(full);
                    } else {
                        secrets.push(full);
                    }
                }
            }
        }
    }
    secrets.sort();
    denied.sort();
    Ok((secrets, denied))
}

/// What reading one secret gave.
enum Read {
    Entry(Value),
    Denied,
    Gone,
}

/// One read where 403 is an answer (a listed path this token may not read), not an error.
enum Readable {
    Json(Value),
    Missing,
    Denied,
}

async fn get_readable(client: &VaultClient, url: Url, what: &str) -> Result<Readable> {
    let answer = client.call(Method::GET, url, None, what).await?;
    match answer.status.as_u16() {
        404 => Ok(Readable::Missing),
        403 => Ok(Readable::Denied),
        s if (200..300).contains(&s) => serde_json::from_slice(&answer.body)
            .map(Readable::Json)
            .map_err(|e| Error::source_failed(format!("{what}: invalid JSON")).with_source(e)),
        _ => Err(vault_error(&answer, what)),
    }
}

async fn read_secret(client: &VaultClient, mount: &KvMount, path: &str) -> Result<Read> {
    if mount.version == 1 {
        let what = format!("reading {}{}", mount.path, path);
        return Ok(
            match get_readable(client, client.url(&[&mount.path, path]), &what).await? {
                Readable::Missing => Read::Gone,
                Readable::Denied => Read::Denied,
                Readable::Json(v) => Read::Entry(json!({"path": path, "data": v["data"]})),
            },
        );
    }
    let what = format!("reading the metadata of {}{}", mount.path, path);
    let url = client.url(&[&mount.path, "metadata", path]);
    let meta = match get_readable(client, url, &what).await? {
        Readable::Missing => return Ok(Read::Gone),
        Readable::Denied => return Ok(Read::Denied),
        Readable::Json(v) => v["data"].clone(),
    };
    let settings = settings_of(&meta);
    let history = json!({
        "current_version": meta["current_version"],
        "oldest_version": meta["oldest_version"],
        "created_time": meta["created_time"],
        "updated_time": meta["updated_time"],
        "versions": meta["versions"],
    });
    let what = format!("reading {}{}", mount.path, path);
    let answer = client
        .call(
            Method::GET,
            client.url(&[&mount.path, "data", path]),
            None,
            &what,
        )
        .await?;
    let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    match answer.status.as_u16() {
        s if (200..300).contains(&s) => Ok(Read::Entry(json!({
            "path": path,
            "data": v["data"]["data"],
            "version": v["data"]["metadata"]["version"],
            "settings": settings,
            "history": history,
        }))),
        // A deleted or destroyed current version: 404 with the envelope and data null.
        404 if v.get("data").is_some() => Ok(Read::Entry(json!({
            "path": path,
            "current_deleted": true,
            "settings": settings,
            "history": history,
        }))),
        404 => Ok(Read::Gone),
        403 => Ok(Read::Denied),
        _ => Err(vault_error(&answer, &what)),
    }
}

/// The restorable KV v2 metadata settings.
fn settings_of(meta: &Value) -> Value {
    json!({
        "max_versions": meta["max_versions"].as_u64().unwrap_or(0),
        "cas_required": meta["cas_required"].as_bool().unwrap_or(false),
        "delete_version_after": meta["delete_version_after"].as_str().unwrap_or("0s"),
        "custom_metadata": match &meta["custom_metadata"] {
            Value::Object(m) => Value::Object(m.clone()),
            _ => Value::Object(Map::new()),
        },
    })
}

#[async_trait]
impl Source for VaultKvSource {
    fn component(&self) -> &str {
        &self.component
    }

    fn provider(&self) -> &str {
        PROVIDER_KV
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        let h = self.client.require_active("preflight").await?;
        let mounts = kv_mounts(&self.client, &self.mounts).await?;
        let mut notes = Vec::new();
        if mounts.is_empty() {
            notes.push("no KV mounts found: nothing to export".to_string());
        }
        Ok(PreflightReport {
            server_version: Some(h.version),
            notes,
        })
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        let h = self.client.require_active("discover").await?;
        let storage = self.client.storage_type().await;
        let mounts = kv_mounts(&self.client, &self.mounts).await?;
        mounts
            .iter()
            .map(|m| {
                let mut plan = ArtifactPlan::new(m.artifact_name(), KV_CONTENT_TYPE)
                    .sensitive(true)
                    .text(true);
                plan.facts = to_facts(&KvFacts {
                    vault_version: h.version.clone(),
                    storage_type: storage.clone().unwrap_or_else(|| "unknown".into()),
                    mount: m.path.clone(),
                    kv_version: m.version,
                    namespace: self
                        .client
                        .connection()
                        .namespace_name()
                        .map(str::to_string),
                    secrets: None,
                    current_deleted: None,
                    unlistable_paths: None,
                    unreadable_secrets: None,
                })?;
                Ok(plan)
            })
            .collect()
    }

    async fn export(&self, artifact: &ArtifactPlan, ctx: &ExportContext) -> Result<Export> {
        let planned: KvFacts = artifact.facts_as()?;
        let mount = KvMount {
            path: planned.mount.clone(),
            version: planned.kv_version,
        };
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(16);
        let (facts_tx, facts_rx) = oneshot::channel::<Facts>();
        let client = self.client.clone();
        let page_size = self.page_size;
        let cancel = ctx.cancel.clone();
        let task = async move {
            let r = write_document(&client, &mount, page_size, planned, &tx).await;
            match r {
                Ok(facts) => {
                    let _ = facts_tx.send(facts);
                }
                Err(e) => {
                    // The consumer is gone only when the run was dropped: nobody to tell.
                    tx.send(Err(e)).await.ok();
                }
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = task => {}
            }
        });
        let stream: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        Ok(Export::with_finish(stream, async move {
            facts_rx.await.map_err(|_| {
                Error::source_failed("the KV export ended before writing its document")
            })
        }))
    }
}

async fn write_document(
    client: &VaultClient,
    mount: &KvMount,
    page_size: Option<usize>,
    mut facts: KvFacts,
    tx: &mpsc::Sender<Result<Bytes>>,
) -> Result<Facts> {
    let send = |s: String| async move {
        tx.send(Ok(Bytes::from(s)))
            .await
            .map_err(|_| Error::cancelled("the KV export's reader went away"))
    };
    let (paths, denied_lists) = walk(client, mount, page_size).await?;
    tracing::debug!(mount = %mount.path, secrets = paths.len(), "walked KV mount");
    let header = json!({
        "format": KV_FORMAT,
        "mount": mount.path,
        "kv_version": mount.version,
        "vault_version": facts.vault_version,
    });
    let header = to_stable_json(&header);
    // Re-open the object to append the secrets array (the document stays one JSON value).
    let trimmed = header.trim_end();
    let mut head = trimmed[..trimmed.len() - 1].trim_end().to_string();
    head.push_str(",\n  \"secrets\": [\n");
    send(head).await?;

    let mut reads = futures::stream::iter(paths.clone())
        .map(|p| async move { (read_secret(client, mount, &p).await, p) })
        .buffered(CONCURRENCY);
    let (mut written, mut deleted) = (0u64, 0u64);
    let mut denied_reads = Vec::new();
    while let Some((r, path)) = reads.next().await {
        match r? {
            Read::Entry(e) => {
                if e.get("current_deleted").is_some() {
                    deleted += 1;
                }
                let mut s = String::new();
                if written > 0 {
                    s.push_str(",\n");
                }
                crate::http::indent(&mut s, 2);
                crate::http::write_stable(&mut s, &e, 2);
                written += 1;
                send(s).await?;
            }
            Read::Denied => denied_reads.push(path),
            Read::Gone => {}
        }
    }
    let tail = json!({
        "unlistable": denied_lists,
        "unreadable": denied_reads,
        "counts": {"secrets": written, "current_deleted": deleted},
    });
    let mut t = String::from("\n  ],\n");
    let body = to_stable_json(&tail);
    // Splice the tail object's members after the secrets array.
    t.push_str(
        body.trim_end()
            .trim_start_matches('{')
            .trim_start_matches('\n'),
    );
    t.push('\n');
    send(t).await?;
    if !denied_lists.is_empty() || !denied_reads.is_empty() {
        tracing::warn!(
            mount = %mount.path,
            unlistable = denied_lists.len(),
            unreadable = denied_reads.len(),
            "some KV paths were denied to the backup token and are not in the export"
        );
    }
    facts.secrets = Some(written);
    facts.current_deleted = Some(deleted);
    facts.unlistable_paths = Some(denied_lists.len() as u64);
    facts.unreadable_secrets = Some(denied_reads.len() as u64);
    to_facts(&facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_kv_versions() {
        assert_eq!(
            kv_version(&json!({"type":"kv","options":{"version":"2"}})),
            Some(2)
        );
        assert_eq!(kv_version(&json!({"type":"kv","options":null})), Some(1));
        assert_eq!(kv_version(&json!({"type":"generic"})), Some(1));
        assert_eq!(
            kv_version(&json!({"type":"kv","options":{"version":"1"}})),
            Some(1)
        );
        assert_eq!(kv_version(&json!({"type":"system"})), None);
        assert_eq!(normalize_mount("/secret"), "secret/");
        assert_eq!(
            KvMount {
                path: "team/kv/".into(),
                version: 2
            }
            .artifact_name(),
            "kv/team/kv.json"
        );
    }
}
