//! The Grafana export: one stable JSON file per object.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use stoa_backup_core::{
    stream, ArtifactPlan, Error, Export, ExportContext, Facts, PreflightReport, Result, Source,
};

use super::client::{GrafanaClient, GrafanaConnection};
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
/// | `index.json` | Grafana version, counts, and the redaction report |
///
/// Keys are sorted and indentation fixed, so unchanged objects give identical bytes.
/// Datasource secrets and contact-point secure settings (`[REDACTED]`) are not in the
/// export: the redaction report lists them and restore asks the caller for them.
#[derive(Debug, Clone)]
pub struct GrafanaSource {
    client: GrafanaClient,
    page_size: usize,
    component: String,
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

fn plan(kind: Kind, id: &str, folder: Option<&str>) -> ArtifactPlan {
    let mut p = ArtifactPlan::new(artifact_name(kind, id, folder), CONTENT_TYPE)
        .text(true)
        .fact("kind", kind.as_str())
        .fact("uid", id);
    if let Some(f) = folder {
        p = p.fact("folder_uid", f);
    }
    p
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
    async fn paged(&self, segs: &[&str], extra: &[(&str, &str)], what: &str) -> Result<Vec<Value>> {
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
        let mut out = Vec::new();
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
                    if uid == "sharedwithme" || out.iter().any(|(u, _)| u == uid) {
                        continue;
                    }
                    out.push((uid.to_string(), parent.clone()));
                    next.push(Some(uid.to_string()));
                }
            }
            level = next;
            depth += 1;
        }
        Ok(out)
    }

    async fn library_panels(&self) -> Result<Vec<Value>> {
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

    async fn alerting_list(&self, what: &str) -> Result<Vec<Value>> {
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

    async fn object(&self, kind: Kind, uid: &str) -> Result<(Value, Facts)> {
        let mut facts = Facts::new();
        let not_found = || {
            Error::new(
                stoa_backup_core::ErrorKind::NotFound,
                format!("{} '{uid}' disappeared during the backup", kind.as_str()),
            )
            .with_component(COMPONENT)
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
                        if e.message().contains("HTTP 406") {
                            Error::new(
                                stoa_backup_core::ErrorKind::Unsupported,
                                format!(
                                    "dashboard '{uid}' uses the v2 schema (Grafana 12 \
                                     dashboardNewLayouts), which the legacy API cannot read"
                                ),
                            )
                            .with_component(COMPONENT)
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
                    facts.insert("provisioned".into(), json!(true));
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
                let secure: Vec<String> = d["secureJsonFields"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(_, v)| v.as_bool() == Some(true))
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                facts.insert("secure_fields".into(), json!(secure));
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
                facts.insert("redacted_settings".into(), json!(red));
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
        Ok((v, facts))
    }

    async fn index(&self, plans: &[ArtifactPlan]) -> Result<(Value, Facts)> {
        let version = self.client.version().await?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for p in plans {
            if let Some(k) = p.facts.get("kind").and_then(Value::as_str) {
                *counts.entry(k.to_string()).or_default() += 1;
            }
        }
        // The redaction report: secure datasource fields and contact-point settings.
        let mut datasources = Map::new();
        let mut contact_points = Map::new();
        for p in plans {
            let uid = p.facts.get("uid").and_then(Value::as_str).unwrap_or("");
            match p.facts.get("kind").and_then(Value::as_str) {
                Some("datasource") => {
                    let (_, f) = self.object(Kind::Datasource, uid).await?;
                    if let Some(s) = f
                        .get("secure_fields")
                        .filter(|s| s.as_array().is_some_and(|a| !a.is_empty()))
                    {
                        datasources.insert(uid.into(), s.clone());
                    }
                }
                Some("contact_point") => {
                    let (_, f) = self.object(Kind::ContactPoint, uid).await?;
                    if let Some(s) = f
                        .get("redacted_settings")
                        .filter(|s| s.as_array().is_some_and(|a| !a.is_empty()))
                    {
                        contact_points.insert(uid.into(), s.clone());
                    }
                }
                _ => {}
            }
        }
        let redaction = json!({
            "datasources_secure_json_fields": datasources,
            "contact_points_redacted_settings": contact_points,
        });
        let mut facts = Facts::new();
        if let Some(v) = &version {
            facts.insert("grafana_version".into(), json!(v));
        }
        facts.insert("counts".into(), json!(counts));
        facts.insert("redaction".into(), redaction.clone());
        let v = json!({"grafana_version": version, "counts": counts, "redaction": redaction});
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
            let mut p = plan(Kind::Folder, &uid, None);
            if let Some(parent) = parent {
                p = p.fact("parent_uid", parent);
            }
            plans.push(p);
        }
        let ds = self
            .client
            .get(&["api", "datasources"], &[], "listing datasources")
            .await?;
        for d in ds.as_array().into_iter().flatten() {
            if let Some(uid) = d["uid"].as_str() {
                plans.push(plan(Kind::Datasource, uid, None));
            }
        }
        for l in self.library_panels().await? {
            if let Some(uid) = l["uid"].as_str() {
                plans.push(plan(Kind::LibraryPanel, uid, None));
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
                plans.push(plan(Kind::Dashboard, uid, Some(folder)));
            }
        }
        for c in self.alerting_list("contact-points").await? {
            if let Some(uid) = c["uid"].as_str() {
                plans.push(plan(Kind::ContactPoint, uid, None));
            }
        }
        for t in self.alerting_list("templates").await? {
            if let Some(name) = t["name"].as_str() {
                plans.push(plan(Kind::Template, name, None));
            }
        }
        plans.push(plan(Kind::Policies, "policies", None));
        for r in self.alerting_list("alert-rules").await? {
            if let Some(uid) = r["uid"].as_str() {
                plans.push(plan(Kind::AlertRule, uid, None));
            }
        }
        plans.push(plan(Kind::Index, "index", None));
        Ok(plans)
    }

    async fn export(&self, artifact: &ArtifactPlan, _ctx: &ExportContext) -> Result<Export> {
        let kind = artifact
            .facts
            .get("kind")
            .and_then(Value::as_str)
            .and_then(Kind::parse)
            .ok_or_else(|| Error::config("artifact plan without a Grafana kind"))?;
        let uid = artifact
            .facts
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        let (value, facts) = if kind == Kind::Index {
            let plans = self.discover().await?;
            self.index(&plans).await?
        } else {
            self.object(kind, uid).await?
        };
        let bytes = to_stable_json(&value).into_bytes();
        Ok(Export::with_finish(stream::once(bytes), async move {
            Ok(facts)
        }))
    }
}
