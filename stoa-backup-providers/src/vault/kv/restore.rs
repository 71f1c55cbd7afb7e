//! Restoring KV documents with check-and-set writes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use stoa_backup_core::manifest::ArtifactRecord;
use stoa_backup_core::{
    restore_each, ByteStream, Error, ErrorKind, ExistingDataPolicy, PerArtifact, RestoreContext,
    RestoreOptions, RestoreReport, Restorer, Result,
};

use super::{kv_mounts, normalize_mount, settings_of, KvMount, CONCURRENCY, KV_FORMAT};
use crate::vault::client::{vault_error, vault_messages, VaultClient, VaultConnection};
use crate::vault::KV_COMPONENT;

/// Restores KV documents written by [`VaultKvSource`](super::VaultKvSource) into a Vault.
///
/// KV v2 writes use check-and-set: a missing secret is created with `cas: 0` (never
/// overwriting one created meanwhile), an existing one is replaced with `cas` set to the
/// version read just before, and only under [`ExistingDataPolicy::Overwrite`]; `Skip` keeps
/// existing secrets, `Fail` (the default) refuses before writing anything if any secret would
/// change. Metadata settings and custom metadata are restored too. Version numbers and
/// timestamps cannot be recreated: each write is a new version. Secrets whose current version
/// was deleted at backup time are not restored. A dry run reports what would be created,
/// updated or left unchanged, and under `Fail` the differing secrets as conflicts (the
/// restore driver then refuses the plan).
#[derive(Debug, Clone)]
pub struct VaultKvRestorer {
    client: VaultClient,
    component: String,
    mount_map: BTreeMap<String, String>,
}

impl VaultKvRestorer {
    /// A restorer writing through `connection` (component `vault-kv`).
    pub fn new(connection: VaultConnection) -> Result<Self> {
        Ok(VaultKvRestorer {
            client: VaultClient::new(connection)?,
            component: KV_COMPONENT.to_string(),
            mount_map: BTreeMap::new(),
        })
    }

    /// Restores artifacts of another component name.
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = component.into();
        self
    }

    /// Restores the mount `from` (as backed up) into the mount `to`.
    pub fn target_mount(mut self, from: &str, to: &str) -> Self {
        self.mount_map
            .insert(normalize_mount(from), normalize_mount(to));
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Update { cas: u64, data: bool },
    Unchanged,
}

/// Reads the target's current state of one secret and decides what to do.
async fn plan_secret(client: &VaultClient, mount: &KvMount, entry: &Value) -> Result<Action> {
    let path = entry["path"].as_str().unwrap_or_default();
    if mount.version == 1 {
        let what = format!("reading {}{}", mount.path, path);
        let cur = client
            .get_json(client.url(&[&mount.path, path]), &what)
            .await?;
        return Ok(match cur {
            None => Action::Create,
            Some(v) if v["data"] == entry["data"] => Action::Unchanged,
            Some(_) => Action::Update { cas: 0, data: true },
        });
    }
    let what = format!("reading the metadata of {}{}", mount.path, path);
    let Some(meta) = client
        .get_json(client.url(&[&mount.path, "metadata", path]), &what)
        .await?
    else {
        return Ok(Action::Create);
    };
    let meta = &meta["data"];
    let cas = meta["current_version"].as_u64().unwrap_or(0);
    let what = format!("reading {}{}", mount.path, path);
    // 404: the current version is deleted or destroyed, so any backed-up data differs.
    let current = client
        .get_json(client.url(&[&mount.path, "data", path]), &what)
        .await?
        .map_or(Value::Null, |v| v["data"]["data"].clone());
    let data_same = current == entry["data"];
    let settings_same = settings_of(meta) == entry["settings"];
    Ok(if data_same && settings_same {
        Action::Unchanged
    } else {
        Action::Update {
            cas,
            data: !data_same,
        }
    })
}

async fn apply(
    client: &VaultClient,
    mount: &KvMount,
    entry: &Value,
    action: Action,
) -> Result<bool> {
    let path = entry["path"].as_str().unwrap_or_default();
    let what = format!("writing {}{}", mount.path, path);
    if mount.version == 1 {
        client
            .post_json(client.url(&[&mount.path, path]), &entry["data"], &what)
            .await?;
        return Ok(true);
    }
    let cas = match action {
        Action::Create => Some(0),
        Action::Update { cas, data: true } => Some(cas),
        _ => None,
    };
    if let Some(cas) = cas {
        let body = json!({"data": entry["data"], "options": {"cas": cas}});
        let answer = client
            .call(
                Method::POST,
                client.url(&[&mount.path, "data", path]),
                Some(&body),
                &what,
            )
            .await?;
        if answer.status == StatusCode::BAD_REQUEST
            && vault_messages(&answer.body).contains("check-and-set")
        {
            // Someone wrote the secret after we looked: never overwrite a newer value.
            return Ok(false);
        }
        if !answer.status.is_success() {
            return Err(vault_error(&answer, &what));
        }
    }
    if let Some(settings) = entry.get("settings") {
        let what = format!("writing the metadata of {}{}", mount.path, path);
        client
            .post_json(
                client.url(&[&mount.path, "metadata", path]),
                settings,
                &what,
            )
            .await?;
    }
    Ok(true)
}

/// How to enable the missing mount `path` with the KV version the document recorded.
fn enable_hint(path: &str, recorded: Option<u64>) -> String {
    let p = path.trim_end_matches('/');
    match recorded {
        Some(v @ (1 | 2)) => format!(
            "enable the engine first with the KV version the backup recorded: vault secrets \
             enable -path={p} -version={v} kv (API: POST /v1/sys/mounts/{p} \
             {{\"type\":\"kv\",\"options\":{{\"version\":\"{v}\"}}}})"
        ),
        _ => format!(
            "enable the engine first: vault secrets enable -path={p} -version=<1 or 2> kv, with \
             the version of the backed-up mount"
        ),
    }
}

#[async_trait]
impl Restorer for VaultKvRestorer {
    fn component(&self) -> &str {
        &self.component
    }

    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        restore_each(self, ctx).await
    }
}

#[async_trait]
impl PerArtifact for VaultKvRestorer {
    async fn restore_one(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let bytes = stoa_backup_core::stream::collect(plain).await?;
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::integrity(format!("'{}' is not a KV document: {e}", artifact.name))
        })?;
        if doc["format"] != KV_FORMAT {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "'{}' has format {}, expected {KV_FORMAT}",
                    artifact.name, doc["format"]
                ),
            ));
        }
        let source_mount = doc["mount"].as_str().unwrap_or_default().to_string();
        let target_path = self
            .mount_map
            .get(&source_mount)
            .cloned()
            .unwrap_or_else(|| source_mount.clone());
        self.client.require_active("restore").await?;
        let target = kv_mounts(&self.client, std::slice::from_ref(&target_path))
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    e.with_hint(enable_hint(&target_path, doc["kv_version"].as_u64()))
                } else {
                    e
                }
            })?
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("mount lookup returned nothing"))?;

        let entries: Vec<Value> = doc["secrets"].as_array().cloned().unwrap_or_default();
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        let (live, deleted): (Vec<Value>, Vec<Value>) = entries
            .into_iter()
            .partition(|e| e.get("current_deleted").is_none());
        if !deleted.is_empty() {
            report.notes.push(format!(
                "{} secrets had their current version deleted at backup time and are not restored",
                deleted.len()
            ));
        }
        for (field, what) in [
            ("unreadable", "secrets were unreadable"),
            ("unlistable", "paths were unlistable"),
        ] {
            let n = doc[field].as_array().map_or(0, Vec::len);
            if n > 0 {
                report.notes.push(format!(
                    "{n} {what} to the backup token and are not in this artifact"
                ));
            }
        }

        let client = &self.client;
        let target_ref = &target;
        let plans: Vec<(Value, Result<Action>)> = futures::stream::iter(live)
            .map(|e| async move {
                let a = plan_secret(client, target_ref, &e).await;
                (e, a)
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut planned = Vec::new();
        for (e, a) in plans {
            planned.push((e, a?));
        }
        let updates: Vec<String> = planned
            .iter()
            .filter(|(_, a)| matches!(a, Action::Update { .. }))
            .map(|(e, _)| e["path"].as_str().unwrap_or_default().to_string())
            .collect();
        let creates = planned.iter().filter(|(_, a)| *a == Action::Create).count() as u64;
        let unchanged = planned
            .iter()
            .filter(|(_, a)| *a == Action::Unchanged)
            .count() as u64;
        report.facts.insert("mount".into(), json!(target.path));
        report
            .facts
            .insert("kv_version".into(), json!(target.version));
        report.facts.insert("to_create".into(), json!(creates));
        report
            .facts
            .insert("to_update".into(), json!(updates.len()));
        report.facts.insert("unchanged".into(), json!(unchanged));

        if !updates.is_empty() && options.existing == ExistingDataPolicy::Fail && !options.dry_run {
            let sample: Vec<&str> = updates.iter().take(5).map(String::as_str).collect();
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} secrets in {} already exist with other values (e.g. {}); nothing was written",
                    updates.len(),
                    target.path,
                    sample.join(", ")
                ),
            )
            .with_hint("restore with the Skip policy to keep them, or Overwrite to replace them"));
        }
        if options.dry_run {
            // Differing secrets are updated (Overwrite), kept (Skip) or conflicts (Fail: the
            // driver then refuses the plan before anything is written).
            let differing = updates.len() as u64;
            report.created = creates;
            report.skipped = unchanged;
            match options.existing {
                ExistingDataPolicy::Overwrite => report.updated = differing,
                ExistingDataPolicy::Skip => report.skipped += differing,
                ExistingDataPolicy::Fail => report.conflicts = differing,
            }
            report.notes.push(format!(
                "dry run on {}: {} to create, {} to update, {} unchanged",
                target.path,
                creates,
                updates.len(),
                unchanged
            ));
            if options.existing != ExistingDataPolicy::Overwrite && !updates.is_empty() {
                report.notes.push(format!(
                    "{} existing secrets differ and would {} under the {:?} policy",
                    updates.len(),
                    if options.existing == ExistingDataPolicy::Fail {
                        "make the restore fail"
                    } else {
                        "be kept"
                    },
                    options.existing
                ));
            }
            return Ok(report);
        }

        let to_apply: Vec<(Value, Action)> = planned
            .into_iter()
            .filter(|(_, a)| match a {
                Action::Create => true,
                Action::Update { .. } => options.existing == ExistingDataPolicy::Overwrite,
                Action::Unchanged => false,
            })
            .collect();
        report.skipped = unchanged + updates.len() as u64;
        let results: Vec<(Action, Result<bool>)> = futures::stream::iter(to_apply)
            .map(|(e, a)| async move { (a, apply(client, target_ref, &e, a).await) })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut conflicts = 0u64;
        for (a, r) in results {
            match (a, r?) {
                (Action::Create, true) => report.created += 1,
                (Action::Update { .. }, true) => {
                    report.updated += 1;
                    report.skipped -= 1;
                }
                (_, false) => conflicts += 1,
                _ => {}
            }
        }
        if conflicts > 0 {
            report.skipped += conflicts;
            report.notes.push(format!(
                "{conflicts} secrets changed in Vault while restoring (check-and-set mismatch) and were left as they are"
            ));
        }
        report
            .facts
            .insert("cas_conflicts".into(), json!(conflicts));
        tracing::info!(mount = %target.path, created = report.created, updated = report.updated, skipped = report.skipped, "restored KV mount");
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enable_hint_follows_the_recorded_version() {
        let v1 = enable_hint("legacy/", Some(1));
        assert!(
            v1.contains("vault secrets enable -path=legacy -version=1 kv"),
            "{v1}"
        );
        assert!(
            v1.contains(r#"{"type":"kv","options":{"version":"1"}}"#),
            "{v1}"
        );
        assert!(!v1.contains("kv-v2") && !v1.contains("version=2"), "{v1}");
        let v2 = enable_hint("team/kv/", Some(2));
        assert!(
            v2.contains("vault secrets enable -path=team/kv -version=2 kv"),
            "{v2}"
        );
        let unknown = enable_hint("x/", None);
        assert!(unknown.contains("-version=<1 or 2>"), "{unknown}");
    }
}
