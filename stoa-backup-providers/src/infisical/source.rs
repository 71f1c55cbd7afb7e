//! The export: one JSON document per (project, environment).

use async_trait::async_trait;
use serde_json::{json, Value};
use stoa_backup_core::source::to_facts;
use stoa_backup_core::{
    ArtifactPlan, Error, ErrorKind, Export, ExportContext, PreflightReport, Result, Source,
};

use super::client::{InfisicalClient, InfisicalConnection};
use super::facts::InfisicalFacts;
use super::{COMPONENT, CONTENT_TYPE, FORMAT, HIDDEN_VALUE, PROVIDER};
use crate::http::to_stable_json;

/// Exports Infisical secrets: one `<project-id>/<environment>.json` artifact per configured
/// project and environment (see the [module docs](super) for what is in it). Artifacts are
/// sensitive (secret values): the pipeline refuses to store them unless it encrypts, or the
/// caller opts out with `.store_secrets_unencrypted(true)`. The manifest records
/// [`InfisicalFacts`]: the project, environment, API version and counts of folders, secrets,
/// tags, imports and hidden values.
#[derive(Debug, Clone)]
pub struct InfisicalSource {
    client: InfisicalClient,
    projects: Vec<(String, Vec<String>)>,
    component: String,
}

/// Builds an [`InfisicalSource`].
#[derive(Debug)]
pub struct InfisicalSourceBuilder {
    connection: InfisicalConnection,
    projects: Vec<(String, Vec<String>)>,
    component: String,
}

impl InfisicalSource {
    /// Starts a builder for the server and machine identity of `connection`
    /// ([`InfisicalConnection::new`] or [`InfisicalConnection::from_env`]), exporting the
    /// project `project_id`: the given environment slugs, or every environment when
    /// `environments` is empty. [`InfisicalSourceBuilder::project`] adds more projects.
    pub fn builder<I, S>(
        connection: InfisicalConnection,
        project_id: impl Into<String>,
        environments: I,
    ) -> InfisicalSourceBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        InfisicalSourceBuilder {
            connection,
            projects: Vec::new(),
            component: COMPONENT.to_string(),
        }
        .project(project_id, environments)
    }
}

impl InfisicalSourceBuilder {
    /// Also exports a project (by id): the given environment slugs, or every environment
    /// when `environments` is empty. Repeatable.
    pub fn project<I, S>(mut self, project_id: impl Into<String>, environments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.projects.push((
            project_id.into(),
            environments.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Component name in keys and the manifest (default `infisical`).
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = component.into();
        self
    }

    /// Validates the settings (nothing is contacted).
    pub fn build(self) -> Result<InfisicalSource> {
        let safe = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        for (p, envs) in &self.projects {
            if !safe(p) || envs.iter().any(|e| !safe(e)) {
                return Err(Error::config(format!(
                    "invalid project id or environment slug in {p:?} {envs:?}"
                ))
                .with_component(COMPONENT));
            }
        }
        Ok(InfisicalSource {
            client: InfisicalClient::new(self.connection)?,
            projects: self.projects,
            component: self.component,
        })
    }
}

/// `${…}` references in a value, in order, deduplicated.
pub(crate) fn references(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        let after = &rest[i..];
        match after.find('}') {
            Some(j) => {
                let r = after[..=j].to_string();
                if !out.contains(&r) {
                    out.push(r);
                }
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

pub(crate) async fn project_environments(
    client: &InfisicalClient,
    project: &str,
) -> Result<(String, Vec<String>)> {
    let api = client.api();
    let v = client
        .get(
            client.url(&["api", "v1", api.project_path(), project]),
            &format!("reading the project {project}"),
        )
        .await?;
    let p = if v.get("project").is_some() {
        &v["project"]
    } else {
        &v["workspace"]
    };
    let envs = p["environments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["slug"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((p["name"].as_str().unwrap_or_default().to_string(), envs))
}

/// Folder paths of an environment (recursive), sorted, without `/`.
pub(crate) async fn list_folders(
    client: &InfisicalClient,
    project: &str,
    env: &str,
) -> Result<Vec<String>> {
    let api = client.api();
    let mut url = client.url(api.folders_path());
    url.query_pairs_mut()
        .append_pair(api.project_param(), project)
        .append_pair("environment", env)
        .append_pair("path", "/")
        .append_pair("recursive", "true");
    let v = client
        .get(url, &format!("listing folders of {project}/{env}"))
        .await?;
    let mut out: Vec<String> = v["folders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["relativePath"].as_str().map(str::to_string))
                .filter(|p| p != "/")
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The raw secrets listing of an environment (recursive, references unexpanded).
pub(crate) async fn list_secrets(
    client: &InfisicalClient,
    project: &str,
    env: &str,
    include_imports: bool,
) -> Result<Value> {
    let api = client.api();
    let mut url = client.url(api.secrets_path());
    url.query_pairs_mut()
        .append_pair(api.project_param(), project)
        .append_pair("environment", env)
        .append_pair("secretPath", "/")
        .append_pair("recursive", "true")
        .append_pair(
            "include_imports",
            if include_imports { "true" } else { "false" },
        )
        .append_pair("expandSecretReferences", "false")
        .append_pair("viewSecretValue", "true");
    client
        .get(url, &format!("listing secrets of {project}/{env}"))
        .await
}

/// Tag slugs of a listed secret, sorted.
pub(crate) fn tag_slugs(item: &Value) -> Vec<String> {
    let mut t: Vec<String> = item["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["slug"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    t.sort();
    t
}

fn is_hidden(item: &Value) -> bool {
    item["secretValueHidden"].as_bool() == Some(true) || item["secretValue"] == HIDDEN_VALUE
}

/// The restorable form of a listed secret.
pub(crate) fn entry_of(item: &Value) -> Value {
    let value = item["secretValue"].as_str().unwrap_or_default();
    json!({
        "path": item["secretPath"].as_str().unwrap_or("/"),
        "key": item["secretKey"],
        "value": value,
        "comment": item["secretComment"].as_str().unwrap_or_default(),
        "type": item["type"].as_str().unwrap_or("shared"),
        "version": item["version"],
        "tags": tag_slugs(item),
        "metadata": item.get("secretMetadata").cloned().filter(|m| !m.is_null()).unwrap_or_else(|| json!([])),
        "skipMultilineEncoding": item["skipMultilineEncoding"].as_bool().unwrap_or(false),
        "references": references(value),
    })
}

#[async_trait]
impl Source for InfisicalSource {
    fn component(&self) -> &str {
        &self.component
    }

    fn provider(&self) -> &str {
        PROVIDER
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        // Logs in and checks each project is visible.
        for (p, envs) in &self.projects {
            let (_, have) = project_environments(&self.client, p)
                .await
                .map_err(|e| e.with_operation("preflight"))?;
            if let Some(missing) = envs.iter().find(|e| !have.contains(e)) {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("project {p} has no environment '{missing}'"),
                )
                .with_operation("preflight")
                .with_hint(format!("its environments are: {}", have.join(", "))));
            }
        }
        Ok(PreflightReport {
            server_version: None,
            notes: vec![],
        })
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        let mut plans = Vec::new();
        for (p, envs) in &self.projects {
            let (name, have) = project_environments(&self.client, p).await?;
            let envs = if envs.is_empty() { have } else { envs.clone() };
            for env in envs {
                let mut plan = ArtifactPlan::new(format!("{p}/{env}.json"), CONTENT_TYPE)
                    .sensitive(true)
                    .text(true);
                plan.facts = to_facts(&InfisicalFacts {
                    project_id: p.clone(),
                    project_name: name.clone(),
                    environment: env,
                    api: self.client.api(),
                    secrets: None,
                    folders: None,
                    hidden_values: None,
                    imports: None,
                    personal_skipped: None,
                    tags: None,
                })?;
                plans.push(plan);
            }
        }
        Ok(plans)
    }

    async fn export(&self, artifact: &ArtifactPlan, _ctx: &ExportContext) -> Result<Export> {
        let mut facts: InfisicalFacts = artifact.facts_as()?;
        let (project, env) = (facts.project_id.as_str(), facts.environment.as_str());
        let folders = list_folders(&self.client, project, env).await?;
        let listing = list_secrets(&self.client, project, env, true).await?;
        let mut secrets = Vec::new();
        let mut hidden = Vec::new();
        let mut personal = 0u64;
        for item in listing["secrets"].as_array().into_iter().flatten() {
            if item["type"] == "personal" {
                personal += 1;
                continue;
            }
            if is_hidden(item) {
                hidden.push(json!({"path": item["secretPath"].as_str().unwrap_or("/"), "key": item["secretKey"]}));
                continue;
            }
            secrets.push(entry_of(item));
        }
        let key = |e: &Value| {
            (
                e["path"].as_str().unwrap_or_default().to_string(),
                e["key"].as_str().unwrap_or_default().to_string(),
            )
        };
        secrets.sort_by_key(key);
        hidden.sort_by_key(key);
        // Imports are kept as references (where they point), never with the imported values.
        let mut imports: Vec<Value> = listing["imports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| json!({"environment": i["environment"], "secretPath": i["secretPath"], "folderId": i["folderId"]}))
            .collect();
        imports.sort_by_key(|i| i.to_string());
        let mut tags: Vec<String> = secrets
            .iter()
            .flat_map(|s| s["tags"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        tags.sort();
        tags.dedup();
        if !hidden.is_empty() {
            tracing::warn!(
                project,
                environment = env,
                hidden = hidden.len(),
                "the identity may not read some secret values: they are reported, not backed up"
            );
        }
        let doc = json!({
            "format": FORMAT,
            "api": self.client.api().name(),
            "project_id": project,
            "environment": env,
            "folders": folders,
            "secrets": secrets,
            "hidden": hidden,
            "imports": imports,
        });
        let bytes = to_stable_json(&doc).into_bytes();
        facts.secrets = Some(secrets.len() as u64);
        facts.folders = Some(folders.len() as u64);
        facts.hidden_values = Some(hidden.len() as u64);
        facts.imports = Some(imports.len() as u64);
        facts.personal_skipped = Some(personal);
        facts.tags = Some(tags);
        let facts = to_facts(&facts)?;
        Ok(Export::with_finish(
            stoa_backup_core::stream::once(bytes),
            async move { Ok(facts) },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references() {
        assert_eq!(
            references("a ${dev.payments.KEY} b ${X} ${X} ${unterminated"),
            vec!["${dev.payments.KEY}", "${X}"]
        );
        assert!(references("plain").is_empty());
    }
}
