//! The Grafana change probe: the versions of what [`GrafanaSource`] exports, for the
//! scheduler's on-change trigger.

use async_trait::async_trait;
use serde_json::Value;
use stoa_backup_core::change::{ChangeDigest, ChangeProbe, ChangeToken};
use stoa_backup_core::codec::sha256_hex;
use stoa_backup_core::{Error, Result};

use super::source::GrafanaSource;
use crate::http::to_stable_json;

/// Watches what a [`GrafanaSource`] exports, with its connection and page size. The token
/// is a digest of:
///
/// | objects | what stands for a change | calls |
/// |---|---|---|
/// | dashboards | `meta.version` (every save bumps it) and the folder | the search pages, then `GET /api/dashboards/uid/<uid>` each |
/// | folders | uid, title and parent | the folder listing, level by level |
/// | datasources | `version` | the listing, then `GET /api/datasources/uid/<uid>` each |
/// | library panels | `version` | the listing pages |
/// | alert rules, contact points, templates, the policy tree | a SHA-256 of each object as listed | one call each |
/// | the index | the Grafana version | `GET /api/health` |
///
/// The search API answers no version (contract §2.2), so each dashboard is read for its
/// `meta.version`: a probe costs one call per dashboard and per datasource plus a few
/// listings. A dashboard the legacy API cannot read (406, Grafana 12's v2 schema) counts as
/// unchanged while it stays unreadable — the backup reports it — rather than failing every
/// probe. Contact points are listed with their secure settings redacted, so only a
/// digest of what the backup holds enters the token. Built by
/// [`GrafanaSource::change_probe`].
#[derive(Debug, Clone)]
pub struct GrafanaChangeProbe {
    source: GrafanaSource,
}

impl GrafanaSource {
    /// A [`ChangeProbe`] over what this source exports (same connection and page size).
    pub fn change_probe(&self) -> GrafanaChangeProbe {
        GrafanaChangeProbe {
            source: self.clone(),
        }
    }
}

/// A version field as text, or a digest of the whole object when it has none (so a
/// change is still seen).
fn version_or_digest(version: &Value, object: &Value) -> String {
    match version {
        Value::Number(n) => n.to_string(),
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => format!("sha256:{}", sha256_hex(to_stable_json(object).as_bytes())),
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

impl GrafanaChangeProbe {
    async fn dashboards(&self, digest: &mut ChangeDigest) -> Result<()> {
        let client = &self.source.client;
        let hits = self
            .source
            .paged(
                &["api", "search"],
                &[("type", "dash-db")],
                "searching dashboards",
            )
            .await?;
        for hit in hits {
            let Some(uid) = hit["uid"].as_str() else {
                continue;
            };
            let folder = text(&hit["folderUid"]);
            let version = match client
                .get_opt(&["api", "dashboards", "uid", uid], "reading a dashboard")
                .await
            {
                Ok(Some(d)) => {
                    let v = match &d["meta"]["version"] {
                        Value::Null => &d["dashboard"]["version"],
                        v => v,
                    };
                    version_or_digest(v, &d["dashboard"])
                }
                // Deleted between the search and the read: the next probe sees it gone.
                Ok(None) => "deleted".into(),
                Err(e) if e.http_status() == Some(406) => "unreadable (v2 schema)".into(),
                Err(e) => return Err(e.with_context("dashboard", uid)),
            };
            digest.add(["dashboard".to_string(), uid.to_string(), folder, version]);
        }
        Ok(())
    }

    async fn datasources(&self, digest: &mut ChangeDigest) -> Result<()> {
        let client = &self.source.client;
        let list = client
            .get(&["api", "datasources"], &[], "listing datasources")
            .await?;
        for d in list.as_array().into_iter().flatten() {
            let Some(uid) = d["uid"].as_str() else {
                continue;
            };
            let version = match client
                .get_opt(&["api", "datasources", "uid", uid], "reading a datasource")
                .await
                .map_err(|e| e.with_context("datasource", uid))?
            {
                Some(full) => version_or_digest(&full["version"], &full),
                None => "deleted".into(),
            };
            digest.add(["datasource".to_string(), uid.to_string(), version]);
        }
        Ok(())
    }

    async fn alerting(&self, digest: &mut ChangeDigest) -> Result<()> {
        for (what, key) in [
            ("alert-rules", "uid"),
            ("contact-points", "uid"),
            ("templates", "name"),
        ] {
            for o in self.source.alerting_list(what).await? {
                digest.add([
                    what.to_string(),
                    text(&o[key]),
                    sha256_hex(to_stable_json(&o).as_bytes()),
                ]);
            }
        }
        let policies = self
            .source
            .client
            .get(
                &["api", "v1", "provisioning", "policies"],
                &[],
                "reading notification policies",
            )
            .await?;
        digest.add([
            "policies".to_string(),
            sha256_hex(to_stable_json(&policies).as_bytes()),
        ]);
        Ok(())
    }

    async fn probe_all(&self) -> Result<ChangeToken> {
        let mut digest = ChangeDigest::new();
        let version = self.source.client.version().await?;
        digest.add(["grafana".to_string(), version.unwrap_or_default()]);
        for (uid, parent, title) in self.source.folder_walk().await? {
            digest.add(["folder".to_string(), uid, parent.unwrap_or_default(), title]);
        }
        self.datasources(&mut digest).await?;
        for l in self.source.library_panels().await? {
            digest.add([
                "library_panel".to_string(),
                text(&l["uid"]),
                version_or_digest(&l["version"], &l),
            ]);
        }
        self.dashboards(&mut digest).await?;
        self.alerting(&mut digest).await?;
        Ok(digest.finish())
    }

    fn fail(&self, e: Error) -> Error {
        e.or_component(self.source.component.clone())
            .with_operation("probe changes")
    }
}

#[async_trait]
impl ChangeProbe for GrafanaChangeProbe {
    fn describe(&self) -> String {
        format!(
            "Grafana dashboards, folders, datasources, library panels and alerting at {}",
            self.source.client.base_url()
        )
    }

    async fn probe(&self) -> Result<ChangeToken> {
        self.probe_all().await.map_err(|e| self.fail(e))
    }
}
