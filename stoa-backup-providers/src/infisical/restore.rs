//! The restore: folders top-down, then batch create / upsert per folder.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};
use stoa_backup_core::manifest::ArtifactRecord;
use stoa_backup_core::{
    restore_each, ByteStream, Error, ErrorKind, ExistingDataPolicy, KeyKind, KeyNeeded,
    PerArtifact, RestoreContext, RestoreOptions, RestoreReport, Restorer, Result,
};

use super::client::{InfisicalClient, InfisicalConnection};
use super::source::{entry_of, list_folders, list_secrets};
use super::{COMPONENT, FORMAT};

/// Secrets per batch request.
const BATCH: usize = 100;

/// Restores documents written by [`super::InfisicalSource`] into a project environment.
///
/// Folders are created top-down first; then, per folder, missing secrets are created in
/// batches (`POST …/batch`) and — only under [`ExistingDataPolicy::Overwrite`] — secrets
/// whose value, comment, tags, metadata or multiline flag differ are upserted
/// (`PATCH …/batch`, `mode: upsert`). `Skip` keeps differing secrets; `Fail` (the default)
/// refuses before writing anything if any would change. Tags are matched by slug on the
/// target (missing tags are reported and left off). When an approval policy covers a folder,
/// Infisical answers 200 with an `approval` object and writes nothing: those secrets are
/// reported as not restored (fact `pending_approval`). Values hidden at backup time and
/// secret imports are not restored (reported). Versions restart on the target. A dry run
/// reports what would be created, updated or left unchanged, and under `Fail` the differing
/// secrets as conflicts (the restore driver then refuses the plan).
#[derive(Debug, Clone)]
pub struct InfisicalRestorer {
    client: InfisicalClient,
    component: String,
    projects: BTreeMap<String, String>,
    environments: BTreeMap<String, String>,
}

impl InfisicalRestorer {
    /// A restorer writing through `connection` (component `infisical`).
    pub fn new(connection: InfisicalConnection) -> Result<Self> {
        Ok(InfisicalRestorer {
            client: InfisicalClient::new(connection)?,
            component: COMPONENT.to_string(),
            projects: BTreeMap::new(),
            environments: BTreeMap::new(),
        })
    }

    /// Restores artifacts of another component name.
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = component.into();
        self
    }

    /// Restores the project `from` (as backed up) into the project `to`.
    pub fn target_project(mut self, from: &str, to: &str) -> Self {
        self.projects.insert(from.into(), to.into());
        self
    }

    /// Restores the environment `from` into the environment `to`.
    pub fn target_environment(mut self, from: &str, to: &str) -> Self {
        self.environments.insert(from.into(), to.into());
        self
    }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The fields that make two secrets equal for a restore.
fn comparable(e: &Value) -> Value {
    json!([
        e["value"],
        e["comment"],
        e["tags"],
        e["metadata"],
        e["skipMultilineEncoding"]
    ])
}

#[async_trait]
impl Restorer for InfisicalRestorer {
    fn component(&self) -> &str {
        &self.component
    }

    /// Infisical's own `ENCRYPTION_KEY`: not needed to restore this export (its secrets
    /// are written back through the API, which encrypts them with the target instance's
    /// key), but the instance itself needs it to read its database; listed so that a
    /// platform plan names it.
    async fn keys_needed(&self, _ctx: &RestoreContext<'_>) -> Result<Vec<KeyNeeded>> {
        Ok(vec![KeyNeeded {
            kind: KeyKind::ServiceKey,
            name: "Infisical's ENCRYPTION_KEY".into(),
            detail: "the target instance must run with its own ENCRYPTION_KEY (and AUTH_SECRET); \
                     this export is restored through the API and does not need the source's, \
                     but a restore of Infisical's PostgreSQL database does"
                .into(),
            held: None,
        }])
    }

    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        restore_each(self, ctx).await
    }
}

#[async_trait]
impl PerArtifact for InfisicalRestorer {
    async fn restore_one(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let bytes = stoa_backup_core::stream::collect(plain).await?;
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::integrity(format!(
                "'{}' is not an Infisical document: {e}",
                artifact.name
            ))
        })?;
        if doc["format"] != FORMAT {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "'{}' has format {}, expected {FORMAT}",
                    artifact.name, doc["format"]
                ),
            ));
        }
        let src_project = doc["project_id"].as_str().unwrap_or_default();
        let src_env = doc["environment"].as_str().unwrap_or_default();
        let project = self
            .projects
            .get(src_project)
            .map_or(src_project, String::as_str)
            .to_string();
        let env = self
            .environments
            .get(src_env)
            .map_or(src_env, String::as_str)
            .to_string();
        let api = self.client.api();
        let client = &self.client;

        // What the target has.
        let existing_folders: BTreeSet<String> = list_folders(client, &project, &env)
            .await?
            .into_iter()
            .collect();
        let tags_v = client
            .get(
                client.url(&["api", "v1", api.project_path(), &project, "tags"]),
                &format!("listing tags of {project}"),
            )
            .await?;
        let tag_ids: BTreeMap<String, String> = tags_v["workspaceTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some((
                    t["slug"].as_str()?.to_string(),
                    t["id"].as_str()?.to_string(),
                ))
            })
            .collect();
        let listing = list_secrets(client, &project, &env, false).await?;
        let existing: BTreeMap<(String, String), Value> = listing["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["type"] != "personal")
            .map(|i| {
                let e = entry_of(i);
                (
                    (
                        e["path"].as_str().unwrap_or("/").to_string(),
                        e["key"].as_str().unwrap_or_default().to_string(),
                    ),
                    e,
                )
            })
            .collect();

        // Plan.
        let entries: Vec<Value> = doc["secrets"].as_array().cloned().unwrap_or_default();
        let mut wanted_folders: BTreeSet<String> = doc["folders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        for e in &entries {
            let mut p = e["path"].as_str().unwrap_or("/").to_string();
            while p != "/" {
                wanted_folders.insert(p.clone());
                p = parent(&p).to_string();
            }
        }
        let mut new_folders: Vec<String> = wanted_folders
            .into_iter()
            .filter(|f| f != "/" && !existing_folders.contains(f))
            .collect();
        new_folders.sort_by_key(|f| (f.matches('/').count(), f.clone()));
        let mut creates: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        let mut updates: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        let mut unchanged = 0u64;
        for e in &entries {
            let path = e["path"].as_str().unwrap_or("/").to_string();
            let key = e["key"].as_str().unwrap_or_default().to_string();
            match existing.get(&(path.clone(), key)) {
                None => creates.entry(path).or_default().push(e),
                Some(cur) if comparable(cur) == comparable(e) => unchanged += 1,
                Some(_) => updates.entry(path).or_default().push(e),
            }
        }
        let n_create: u64 = creates.values().map(|v| v.len() as u64).sum();
        let n_update: u64 = updates.values().map(|v| v.len() as u64).sum();
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        report.facts.insert("project_id".into(), json!(project));
        report.facts.insert("environment".into(), json!(env));
        report
            .facts
            .insert("folders_to_create".into(), json!(new_folders.len()));
        report.facts.insert("to_create".into(), json!(n_create));
        report.facts.insert("to_update".into(), json!(n_update));
        report.facts.insert("unchanged".into(), json!(unchanged));
        let hidden = doc["hidden"].as_array().map_or(0, Vec::len);
        if hidden > 0 {
            report.notes.push(format!(
                "{hidden} secrets were hidden from the backup identity (<hidden-by-infisical>): their values were not backed up and are not restored"
            ));
        }
        let imports = doc["imports"].as_array().map_or(0, Vec::len);
        if imports > 0 {
            report.notes.push(format!(
                "{imports} secret imports are recorded as references only: recreate them in Infisical (they point at other environments/folders)"
            ));
        }
        let missing_tags: BTreeSet<String> = entries
            .iter()
            .flat_map(|e| e["tags"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t.as_str().map(str::to_string))
            .filter(|t| !tag_ids.contains_key(t))
            .collect();
        if !missing_tags.is_empty() {
            report.notes.push(format!(
                "tags missing on the target are left off the restored secrets: {}",
                missing_tags.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }

        if n_update > 0 && options.existing == ExistingDataPolicy::Fail && !options.dry_run {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{n_update} secrets in {project}/{env} already exist with other values; nothing was written"
                ),
            )
            .with_hint("restore with the Skip policy to keep them, or Overwrite to replace them"));
        }
        let overwrite = options.existing == ExistingDataPolicy::Overwrite;
        if options.dry_run {
            // Differing secrets are updated (Overwrite), kept (Skip) or conflicts (Fail: the
            // driver then refuses the plan before anything is written).
            report.created = n_create;
            report.skipped = unchanged;
            match options.existing {
                ExistingDataPolicy::Overwrite => report.updated = n_update,
                ExistingDataPolicy::Skip => report.skipped += n_update,
                ExistingDataPolicy::Fail => report.conflicts = n_update,
            }
            report.notes.push(format!(
                "dry run on {project}/{env}: {} folders to create, {n_create} secrets to create, {n_update} to update, {unchanged} unchanged",
                new_folders.len()
            ));
            return Ok(report);
        }

        for f in &new_folders {
            let name = f.rsplit('/').next().unwrap_or_default();
            let body = json!({
                api.project_param(): project, "environment": env, "name": name,
                "path": parent(f), "description": null,
            });
            client
                .call(
                    Method::POST,
                    client.url(api.folders_path()),
                    Some(&body),
                    &format!("creating the folder {f} in {project}/{env}"),
                )
                .await?;
        }
        report
            .facts
            .insert("folders_created".into(), json!(new_folders.len()));

        let item = |e: &Value| {
            let ids: Vec<&str> = e["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| tag_ids.get(t.as_str()?).map(String::as_str))
                .collect();
            json!({
                "secretKey": e["key"], "secretValue": e["value"], "secretComment": e["comment"],
                "skipMultilineEncoding": e["skipMultilineEncoding"], "tagIds": ids,
                "secretMetadata": e["metadata"],
            })
        };
        let mut pending = 0u64;
        let mut pending_paths = Vec::new();
        report.skipped = unchanged;
        let mut work: Vec<(Method, &String, &Vec<&Value>)> =
            creates.iter().map(|(p, v)| (Method::POST, p, v)).collect();
        if overwrite {
            work.extend(updates.iter().map(|(p, v)| (Method::PATCH, p, v)));
        } else {
            report.skipped += n_update;
        }
        for (method, path, items) in work {
            for chunk in items.chunks(BATCH) {
                let mut body = json!({
                    api.project_param(): project, "environment": env, "secretPath": path,
                    "secrets": chunk.iter().map(|e| item(e)).collect::<Vec<_>>(),
                });
                if method == Method::PATCH {
                    body["mode"] = json!("upsert");
                }
                let what = format!("writing {} secrets to {project}/{env}{path}", chunk.len());
                let (_, v) = client
                    .call(
                        method.clone(),
                        client.url(api.batch_path()),
                        Some(&body),
                        &what,
                    )
                    .await?;
                let n = chunk.len() as u64;
                if v.get("approval").is_some_and(|a| !a.is_null()) {
                    pending += n;
                    report.skipped += n;
                    if !pending_paths.contains(path) {
                        pending_paths.push(path.clone());
                    }
                } else if method == Method::POST {
                    report.created += n;
                } else {
                    report.updated += n;
                }
            }
        }
        if pending > 0 {
            report.notes.push(format!(
                "NOT RESTORED: {pending} secrets under {} need approval (an approval policy covers these folders; a change request was opened, nothing was written)",
                pending_paths.join(", ")
            ));
        }
        report
            .facts
            .insert("pending_approval".into(), json!(pending));
        tracing::info!(
            project = %project, environment = %env, created = report.created,
            updated = report.updated, skipped = report.skipped, pending, "restored Infisical environment"
        );
        Ok(report)
    }
}
