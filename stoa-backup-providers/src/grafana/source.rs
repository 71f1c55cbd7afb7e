//! The Grafana export: one stable JSON file per object.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{json, Value};
use stoa_backup_core::source::to_facts;
use stoa_backup_core::{
    stream, ArtifactPlan, ArtifactRecord, Error, Export, ExportContext, PreflightReport, Result,
    Source,
};

use super::client::{GrafanaClient, GrafanaConnection};
use super::facts::{GrafanaIndexFacts, GrafanaObjectFacts, GrafanaRedaction};
use super::{artifact_name, Kind, COMPONENT, CONTENT_TYPE, PROVIDER, REDACTED};
use crate::http::to_stable_json;

/// Exports a Grafana organisation, one file per object so the Git sink shows clean diffs:
///
/// | artifact | content |
/// |---|---|
/// | `folders/<uid>.json` | `{uid, title, parentUid}` (nested folders walked level by level) |
/// | `datasources/<uid>.json` | the datasource without `id`; `secureJsonFields` lists the secure keys whose values Grafana never returns |
/// | `library-panels/<uid>.json` | `{uid, name, kind, folderUid, model}` |
/// | `dashboards/<folder>/<uid>.json` | `{dashboard (id removed), folderUid}` (`general` for the root) |
/// | `alerting/alert-rules/<uid>.json`, `alerting/contact-points/<uid>.json`, `alerting/templates/<name>.json`, `alerting/policies.json` | provisioning API objects |
/// | `index.json` | Grafana version, counts, the redaction report, and every object stored (name, kind, uid, plain size and SHA-256) |
///
/// Keys are sorted and indentation fixed, so unchanged objects give identical bytes.
/// Datasource secrets and contact-point secure settings (`[REDACTED]`) are not in the
/// export: the redaction report lists them and restore asks the caller for them.
///
/// Each object is read once. The index is a [summary](ArtifactPlan::summary) artifact:
/// the pipeline exports it after the objects, and it is built from their records (facts,
/// digests and sizes as stored), so it lists exactly what the run holds. Facts:
/// [`GrafanaObjectFacts`] per object, [`GrafanaIndexFacts`] for the index.
#[derive(Debug, Clone)]
pub struct GrafanaSource {
    pub(super) client: GrafanaClient,
    page_size: usize,
    pub(super) component: String,
}

/// Builds a [`GrafanaSource`].
#[derive(Debug)]
pub struct GrafanaSourceBuilder {
    connection: GrafanaConnection,
    page_size: usize,
    component: String,
}

impl GrafanaSource {
    /// Starts a builder for the server and credentials of `connection`
    /// ([`GrafanaConnection::new`]).
    pub fn builder(connection: GrafanaConnection) -> GrafanaSourceBuilder {
        GrafanaSourceBuilder {
            connection,
            page_size: 1000,
            component: COMPONENT.into(),
        }
    }
}

impl GrafanaSourceBuilder {
    /// Page size for search, folders and library panels (default 1000; max 5000).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n;
        self
    }

    /// Component name (default `grafana`).
    pub fn component(mut self, c: impl Into<String>) -> Self {
        self.component = c.into();
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<GrafanaSource> {
        if self.page_size == 0 || self.page_size > 5000 {
            return Err(
                Error::config("page size must be between 1 and 5000").with_component(COMPONENT)
            );
        }
        Ok(GrafanaSource {
            client: GrafanaClient::new(self.connection)?,
            page_size: self.page_size,
            component: self.component,
        })
    }
}

/// The plan of an object (or of the index, a summary of the others).
fn plan(facts: &GrafanaObjectFacts) -> Result<ArtifactPlan> {
    let name = artifact_name(facts.kind, &facts.uid, facts.folder_uid.as_deref());
    let mut p = ArtifactPlan::new(name, CONTENT_TYPE)
        .text(true)
        .summary(facts.kind == Kind::Index);
    p.facts = to_facts(facts)?;
    Ok(p)
}

fn object_plan(kind: Kind, uid: &str) -> Result<ArtifactPlan> {
    plan(&GrafanaObjectFacts::planned(kind, uid))
}

fn strip(v: &mut Value, keys: &[&str]) {
    if let Some(m) = v.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
}

fn redacted_keys(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if x.as_str() == Some(REDACTED) {
                    out.push(p);
                } else {
                    redacted_keys(x, &p, out);
                }
            }
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| redacted_keys(x, &format!("{prefix}[{i}]"), out)),
        _ => {}
    }
}

impl GrafanaSource {
    pub(super) async fn paged(
        &self,
        segs: &[&str],
        extra: &[(&str, &str)],
        what: &str,
    ) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let limit = self.page_size.to_string();
        for page in 1.. {
            let p = page.to_string();
            let mut q: Vec<(&str, &str)> = extra.to_vec();
            q.push(("limit", &limit));
            q.push(("page", &p));
            let v = self.client.get(segs, &q, what).await?;
            let items = v.as_array().cloned().unwrap_or_default();
            let n = items.len();
            out.extend(items);
            if n < self.page_size {
                break;
            }
        }
        Ok(out)
    }

    /// Folders, parents before children.
    async fn folders(&self) -> Result<Vec<(String, Option<String>)>> {
        let walk = self.folder_walk().await?;
        Ok(walk
            .into_iter()
            .map(|(uid, parent, _)| (uid, parent))
            .collect())
    }

    /// Folders as `(uid, parent, title)`, parents before children.
    pub(super) async fn folder_walk(&self) -> Result<Vec<(String, Option<String>, String)>> {
        let mut out: Vec<(String, Option<String>, String)> = Vec::new();
        let mut level: Vec<Option<String>> = vec![None];
        let mut depth = 0;
        while !level.is_empty() && depth < 8 {
            let mut next = Vec::new();
            for parent in level {
                let extra: Vec<(&str, &str)> = match &parent {
                    Some(p) => vec![("parentUid", p.as_str())],
                    None => vec![],
                };
                for f in self
                    .paged(&["api", "folders"], &extra, "listing folders")
                    .await?
                {
                    let Some(uid) = f["uid"].as_str() else {
                        continue;
                    };
                    if uid == "sharedwithme" || out.iter().any(|(u, _, _)| u == uid) {
                        continue;
                    }
                    let title = f["title"].as_str().unwrap_or_default().to_string();
                    out.push((uid.to_string(), parent.clone(), title));
                    next.push(Some(uid.to_string()));
                }
            }
            level = next;
            depth += 1;
        }
        Ok(out)
    }

    pub(super) async fn library_panels(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let per = self.page_size.min(500).to_string();
        for page in 1.. {
            let p = page.to_string();
            let v = self
                .client
                .get(
                    &["api", "library-elements"],
                    &[("kind", "1"), ("perPage", &per), ("page", &p)],
                    "listing library panels",
                )
                .await?;
            let items = v["result"]["elements"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = v["result"]["totalCount"].as_u64().unwrap_or(0) as usize;
            let n = items.len();
            out.extend(items);
            if n == 0 || out.len() >= total {
                break;
            }
        }
        Ok(out)
    }

    pub(super) async fn alerting_list(&self, what: &str) -> Result<Vec<Value>> {
        let v = self
            .client
            .get(
                &["api", "v1", "provisioning", what],
                &[],
                &format!("listing {what}"),
            )
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Reads one object; what it holds (secure fields, redactions…) goes into `facts`.
    async fn object(&self, facts: &mut GrafanaObjectFacts) -> Result<Value> {
        let (kind, uid) = (facts.kind, facts.uid.clone());
        let uid = uid.as_str();
        let not_found = || {
            Error::new(
                stoa_backup_core::ErrorKind::NotFound,
                format!("{} '{uid}' disappeared during the backup", kind.as_str()),
            )
            .with_retryable(true)
        };
        let v = match kind {
            Kind::Folder => {
                let f = self
                    .client
                    .get_opt(&["api", "folders", uid], "reading a folder")
                    .await?
                    .ok_or_else(not_found)?;
                let mut o = json!({"uid": f["uid"], "title": f["title"]});
                if let Some(p) = f["parentUid"].as_str().filter(|p| !p.is_empty()) {
                    o["parentUid"] = json!(p);
                }
                o
            }
            Kind::Dashboard => {
                let d = self
                    .client
                    .get_opt(&["api", "dashboards", "uid", uid], "reading a dashboard")
                    .await
                    .map_err(|e| {
                        if e.http_status() == Some(406) {
                            Error::new(
                                stoa_backup_core::ErrorKind::Unsupported,
                                format!(
                                    "dashboard '{uid}' uses the v2 schema (Grafana 12 \
                                     dashboardNewLayouts), which the legacy API cannot read"
                                ),
                            )
                            .with_http_status(406)
                            .with_hint(
                                "v2 dashboards need /apis/dashboard.grafana.app, not supported \
                                 by this provider yet",
                            )
                        } else {
                            e
                        }
                    })?
                    .ok_or_else(not_found)?;
                let mut dash = d["dashboard"].clone();
                strip(&mut dash, &["id"]);
                let folder = d["meta"]["folderUid"].as_str().unwrap_or("").to_string();
                if d["meta"]["provisioned"].as_bool() == Some(true) {
                    facts.provisioned = Some(true);
                }
                json!({"dashboard": dash, "folderUid": folder})
            }
            Kind::Datasource => {
                let mut d = self
                    .client
                    .get_opt(&["api", "datasources", "uid", uid], "reading a datasource")
                    .await?
                    .ok_or_else(not_found)?;
                strip(&mut d, &["id", "version", "orgId", "secureJsonData"]);
                facts.secure_fields = Some(super::secure_field_names(&d));
                d
            }
            Kind::LibraryPanel => {
                let v = self
                    .client
                    .get_opt(&["api", "library-elements", uid], "reading a library panel")
                    .await?
                    .ok_or_else(not_found)?;
                let e = &v["result"];
                json!({"uid": e["uid"], "name": e["name"], "kind": e["kind"],
                       "folderUid": e["folderUid"], "model": e["model"]})
            }
            Kind::AlertRule => {
                let mut r = self
                    .client
                    .get_opt(
                        &["api", "v1", "provisioning", "alert-rules", uid],
                        "reading an alert rule",
                    )
                    .await?
                    .ok_or_else(not_found)?;
                strip(&mut r, &["id", "updated", "provenance"]);
                r
            }
            Kind::ContactPoint => {
                let mut c = self
                    .alerting_list("contact-points")
                    .await?
                    .into_iter()
                    .find(|c| c["uid"].as_str() == Some(uid))
                    .ok_or_else(not_found)?;
                strip(&mut c, &["provenance"]);
                let mut red = Vec::new();
                redacted_keys(&c["settings"], "settings", &mut red);
                facts.redacted_settings = Some(red);
                c
            }
            Kind::Template => {
                let mut t = self
                    .alerting_list("templates")
                    .await?
                    .into_iter()
                    .find(|t| t["name"].as_str() == Some(uid))
                    .ok_or_else(not_found)?;
                strip(&mut t, &["provenance", "version"]);
                t
            }
            Kind::Policies => {
                let mut p = self
                    .client
                    .get(
                        &["api", "v1", "provisioning", "policies"],
                        &[],
                        "reading notification policies",
                    )
                    .await?;
                strip(&mut p, &["provenance"]);
                p
            }
            Kind::Index => {
                return Err(Error::internal("the index is built separately"));
            }
        };
        Ok(v)
    }

    /// The index of the objects the run stored (`stored`, the records the pipeline hands a
    /// summary): counts and the redaction report from their facts, and every object with its
    /// recorded plain size and digest. Only the version is asked of the server.
    async fn index(&self, stored: &[ArtifactRecord]) -> Result<(Value, GrafanaIndexFacts)> {
        let version = self.client.version().await?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut redaction = GrafanaRedaction::default();
        let mut objects = Vec::new();
        for r in stored {
            let f: GrafanaObjectFacts = r.facts_as()?;
            if f.kind == Kind::Index {
                continue;
            }
            *counts.entry(f.kind.as_str().to_string()).or_default() += 1;
            if let Some(s) = f.secure_fields.filter(|s| !s.is_empty()) {
                redaction
                    .datasources_secure_json_fields
                    .insert(f.uid.clone(), s);
            }
            if let Some(s) = f.redacted_settings.filter(|s| !s.is_empty()) {
                redaction
                    .contact_points_redacted_settings
                    .insert(f.uid.clone(), s);
            }
            objects.push(json!({
                "name": r.name,
                "kind": f.kind,
                "uid": f.uid,
                "plain_size": r.plain_size,
                "plain_sha256": r.plain_sha256,
            }));
        }
        let v = json!({
            "grafana_version": version,
            "counts": counts,
            "redaction": redaction,
            "objects": objects,
        });
        let facts = GrafanaIndexFacts {
            kind: Kind::Index,
            uid: "index".into(),
            grafana_version: version,
            counts: Some(counts),
            redaction: Some(redaction),
        };
        Ok((v, facts))
    }
}

#[async_trait]
impl Source for GrafanaSource {
    fn component(&self) -> &str {
        &self.component
    }

    fn provider(&self) -> &str {
        PROVIDER
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        let version = self.client.version().await?;
        // Checks the credentials (health needs none).
        self.client
            .get(
                &["api", "folders"],
                &[("limit", "1")],
                "checking the credentials",
            )
            .await?;
        Ok(PreflightReport {
            server_version: version,
            notes: vec![],
        })
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        let mut plans = Vec::new();
        for (uid, parent) in self.folders().await? {
            plans.push(plan(&GrafanaObjectFacts {
                parent_uid: parent,
                ..GrafanaObjectFacts::planned(Kind::Folder, &uid)
            })?);
        }
        let ds = self
            .client
            .get(&["api", "datasources"], &[], "listing datasources")
            .await?;
        for d in ds.as_array().into_iter().flatten() {
            if let Some(uid) = d["uid"].as_str() {
                plans.push(object_plan(Kind::Datasource, uid)?);
            }
        }
        for l in self.library_panels().await? {
            if let Some(uid) = l["uid"].as_str() {
                plans.push(object_plan(Kind::LibraryPanel, uid)?);
            }
        }
        for d in self
            .paged(
                &["api", "search"],
                &[("type", "dash-db")],
                "searching dashboards",
            )
            .await?
        {
            if let Some(uid) = d["uid"].as_str() {
                let folder = d["folderUid"]
                    .as_str()
                    .filter(|f| !f.is_empty())
                    .unwrap_or("general");
                plans.push(plan(&GrafanaObjectFacts {
                    folder_uid: Some(folder.to_string()),
                    ..GrafanaObjectFacts::planned(Kind::Dashboard, uid)
                })?);
            }
        }
        for c in self.alerting_list("contact-points").await? {
            if let Some(uid) = c["uid"].as_str() {
                plans.push(object_plan(Kind::ContactPoint, uid)?);
            }
        }
        for t in self.alerting_list("templates").await? {
            if let Some(name) = t["name"].as_str() {
                plans.push(object_plan(Kind::Template, name)?);
            }
        }
        plans.push(object_plan(Kind::Policies, "policies")?);
        for r in self.alerting_list("alert-rules").await? {
            if let Some(uid) = r["uid"].as_str() {
                plans.push(object_plan(Kind::AlertRule, uid)?);
            }
        }
        plans.push(object_plan(Kind::Index, "index")?);
        Ok(plans)
    }

    async fn export(&self, artifact: &ArtifactPlan, ctx: &ExportContext) -> Result<Export> {
        let mut facts: GrafanaObjectFacts = artifact.facts_as()?;
        let (value, facts) = if facts.kind == Kind::Index {
            let (value, index) = self.index(&ctx.stored).await?;
            (value, to_facts(&index)?)
        } else {
            let value = self.object(&mut facts).await?;
            (value, to_facts(&facts)?)
        };
        let bytes = to_stable_json(&value).into_bytes();
        Ok(Export::with_finish(stream::once(bytes), async move {
            Ok(facts)
        }))
    }
}
