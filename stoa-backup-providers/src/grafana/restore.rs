//! Restore in dependency order: folders (parents first) → datasources → library panels →
//! dashboards → contact points → templates → policies → alert rules.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Map, Value};
use stoa_backup_core::{
    stream, ArtifactRecord, Error, ErrorKind, ExistingDataPolicy, RestoreContext, RestoreOptions,
    RestoreReport, Restorer, Result,
};

use super::client::{GrafanaClient, GrafanaConnection};
use super::facts::GrafanaObjectFacts;
use super::{Kind, COMPONENT, REDACTED};

/// Restores Grafana objects exported by [`super::GrafanaSource`].
///
/// Its [`Restorer::restore`] restores all of a run's Grafana artifacts in dependency order
/// (give it to the [`Restore`](stoa_backup_core::Restore) driver, which plans first).
/// Existing objects follow the policy: `Fail` stops at the first one (Grafana has no
/// transactions: objects restored before it stay; the driver's plan finds them first),
/// `Skip` leaves them, `Overwrite`
/// replaces them (dashboards saved with `overwrite: true`, `id` cleared, `folderUid` kept).
/// Datasource secrets (`secureJsonData`) are never in a backup: supply them with
/// [`GrafanaRestorer::datasource_secret`]; each missing one is reported as a warning.
/// Contact-point settings Grafana redacted (`[REDACTED]`) are never sent back.
#[derive(Debug, Clone)]
pub struct GrafanaRestorer {
    client: GrafanaClient,
    secrets: HashMap<String, Map<String, Value>>,
    component: String,
}

enum Outcome {
    Created,
    Updated,
    Skipped,
}

impl GrafanaRestorer {
    /// A restorer for the Grafana in `connection`.
    pub fn new(connection: GrafanaConnection) -> Result<Self> {
        Ok(GrafanaRestorer {
            client: GrafanaClient::new(connection)?,
            secrets: HashMap::new(),
            component: COMPONENT.into(),
        })
    }

    /// Supplies one secure value of a datasource (e.g. `basicAuthPassword`, from Vault).
    pub fn datasource_secret(
        mut self,
        uid: impl Into<String>,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.secrets
            .entry(uid.into())
            .or_default()
            .insert(key.into(), Value::String(value.into()));
        self
    }

    /// Component handled (default `grafana`).
    pub fn component(mut self, c: impl Into<String>) -> Self {
        self.component = c.into();
        self
    }

    /// The artifacts in dependency order: folders (parents first), datasources, library
    /// panels, dashboards, alerting; the search index is left out.
    fn ordered<'a>(
        &self,
        artifacts: &[&'a ArtifactRecord],
    ) -> Result<Vec<(Kind, &'a ArtifactRecord)>> {
        let mut mine: Vec<(GrafanaObjectFacts, &ArtifactRecord)> = Vec::new();
        for a in artifacts.iter().filter(|a| a.component == self.component) {
            mine.push((a.facts_as()?, *a));
        }
        let parents: HashMap<&str, &str> = mine
            .iter()
            .filter_map(|(f, _)| Some((f.uid.as_str(), f.parent_uid.as_deref()?)))
            .collect();
        let depth = |uid: &str| {
            let mut d = 0;
            let mut cur = uid;
            while let Some(p) = parents.get(cur) {
                d += 1;
                cur = p;
                if d > 16 {
                    break;
                }
            }
            d
        };
        let mut ordered: Vec<(Kind, usize, &ArtifactRecord)> = mine
            .iter()
            .filter(|(f, _)| f.kind != Kind::Index)
            .map(|(f, a)| {
                let d = if f.kind == Kind::Folder {
                    depth(&f.uid)
                } else {
                    0
                };
                (f.kind, d, *a)
            })
            .collect();
        ordered.sort_by(|a, b| (a.0, a.1, &a.2.name).cmp(&(b.0, b.1, &b.2.name)));
        Ok(ordered.into_iter().map(|(k, _, a)| (k, a)).collect())
    }

    /// Restores one object of `kind`. Errors name this restorer's component and the
    /// `restore` operation.
    pub async fn restore_object(
        &self,
        kind: Kind,
        value: Value,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.restore_one(kind, value, options).await.map_err(|e| {
            e.or_component(self.component.clone())
                .or_operation("restore")
        })
    }

    async fn restore_one(
        &self,
        kind: Kind,
        mut value: Value,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        let outcome = match kind {
            Kind::Folder => self.folder(&value, options).await?,
            Kind::Datasource => self.datasource(&mut value, options, &mut report).await?,
            Kind::LibraryPanel => self.library_panel(&value, options).await?,
            Kind::Dashboard => self.dashboard(&mut value, options).await?,
            Kind::ContactPoint => self.contact_point(&mut value, options, &mut report).await?,
            Kind::Template => self.template(&value, options).await?,
            Kind::Policies => self.policies(&value, options).await?,
            Kind::AlertRule => self.alert_rule(&value, options).await?,
            Kind::Index => Outcome::Skipped,
        };
        match outcome {
            Outcome::Created => report.created += 1,
            Outcome::Updated => report.updated += 1,
            Outcome::Skipped => report.skipped += 1,
        }
        Ok(report)
    }

    /// Decides what to do with an object that exists.
    fn existing(&self, what: &str, options: &RestoreOptions) -> Result<Option<Outcome>> {
        match options.existing {
            ExistingDataPolicy::Fail => Err(Error::new(
                ErrorKind::Conflict,
                format!("{what} already exists"),
            )
            .with_hint(
                "restore with the Skip or Overwrite policy (objects restored before this one stay)",
            )),
            ExistingDataPolicy::Skip => Ok(Some(Outcome::Skipped)),
            ExistingDataPolicy::Overwrite => Ok(None),
        }
    }

    async fn send(&self, method: Method, segs: &[&str], body: &Value, what: &str) -> Result<Value> {
        self.client
            .json(method, self.client.url(segs, &[]), Some(body), what)
            .await
    }

    /// Creates the object (POST to `create`) when `current` is `None`; otherwise applies the
    /// existing-data policy and updates it, after `adjust` has seen the current object.
    /// Nothing is sent in a dry run.
    #[allow(clippy::too_many_arguments)]
    async fn create_or_update(
        &self,
        what: &str,
        current: Option<Value>,
        create: &[&str],
        update: (Method, &[&str]),
        mut body: Value,
        adjust: impl FnOnce(&mut Value, &Value),
        o: &RestoreOptions,
    ) -> Result<Outcome> {
        let Some(cur) = current else {
            if !o.dry_run {
                self.send(Method::POST, create, &body, &format!("creating {what}"))
                    .await?;
            }
            return Ok(Outcome::Created);
        };
        if let Some(out) = self.existing(what, o)? {
            return Ok(out);
        }
        if !o.dry_run {
            adjust(&mut body, &cur);
            self.send(update.0, update.1, &body, &format!("updating {what}"))
                .await?;
        }
        Ok(Outcome::Updated)
    }

    async fn folder(&self, v: &Value, o: &RestoreOptions) -> Result<Outcome> {
        let uid = req_str(v, "uid")?;
        let what = format!("folder '{uid}'");
        match self.client.get_opt(&["api", "folders", uid], &what).await? {
            None => {
                if !o.dry_run {
                    let mut body = json!({"uid": uid, "title": v["title"]});
                    if let Some(p) = v["parentUid"].as_str() {
                        body["parentUid"] = json!(p);
                    }
                    self.send(
                        Method::POST,
                        &["api", "folders"],
                        &body,
                        &format!("creating {what}"),
                    )
                    .await?;
                }
                Ok(Outcome::Created)
            }
            Some(cur) => {
                if let Some(out) = self.existing(&what, o)? {
                    return Ok(out);
                }
                if !o.dry_run {
                    self.send(
                        Method::PUT,
                        &["api", "folders", uid],
                        &json!({"title": v["title"], "overwrite": true}),
                        &format!("updating {what}"),
                    )
                    .await?;
                    let want = v["parentUid"].as_str().unwrap_or("");
                    if cur["parentUid"].as_str().unwrap_or("") != want {
                        self.send(
                            Method::POST,
                            &["api", "folders", uid, "move"],
                            &json!({"parentUid": want}),
                            &format!("moving {what}"),
                        )
                        .await?;
                    }
                }
                Ok(Outcome::Updated)
            }
        }
    }

    async fn datasource(
        &self,
        v: &mut Value,
        o: &RestoreOptions,
        report: &mut RestoreReport,
    ) -> Result<Outcome> {
        let uid = req_str(v, "uid")?.to_string();
        let what = format!("datasource '{uid}'");
        let secure = super::secure_field_names(v);
        let supplied = self.secrets.get(&uid).cloned().unwrap_or_default();
        for k in &secure {
            if !supplied.contains_key(k) {
                report.notes.push(format!(
                    "warning: {what}: secret '{k}' is not in the backup and was not supplied; \
                     set it in Grafana (or pass it with datasource_secret) before the datasource is used"
                ));
            }
        }
        let body = {
            let m = v
                .as_object_mut()
                .ok_or_else(|| Error::integrity("datasource is not an object"))?;
            for k in [
                "id",
                "version",
                "orgId",
                "secureJsonFields",
                "secureJsonData",
                "typeLogoUrl",
            ] {
                m.remove(k);
            }
            if !supplied.is_empty() {
                m.insert("secureJsonData".into(), Value::Object(supplied));
            }
            Value::Object(m.clone())
        };
        let current = self
            .client
            .get_opt(&["api", "datasources", "uid", &uid], &what)
            .await?;
        let update = (Method::PUT, &["api", "datasources", "uid", &uid][..]);
        self.create_or_update(
            &what,
            current,
            &["api", "datasources"],
            update,
            body,
            |_, _| {},
            o,
        )
        .await
    }

    async fn library_panel(&self, v: &Value, o: &RestoreOptions) -> Result<Outcome> {
        let uid = req_str(v, "uid")?;
        let what = format!("library panel '{uid}'");
        let mut body = json!({"uid": uid, "name": v["name"], "model": v["model"], "kind": v["kind"].as_u64().unwrap_or(1)});
        if let Some(f) = v["folderUid"].as_str().filter(|f| !f.is_empty()) {
            body["folderUid"] = json!(f);
        }
        let current = self
            .client
            .get_opt(&["api", "library-elements", uid], &what)
            .await?;
        let update = (Method::PATCH, &["api", "library-elements", uid][..]);
        // Grafana's PATCH needs the version it currently holds.
        let with_version =
            |body: &mut Value, cur: &Value| body["version"] = cur["result"]["version"].clone();
        self.create_or_update(
            &what,
            current,
            &["api", "library-elements"],
            update,
            body,
            with_version,
            o,
        )
        .await
    }

    async fn dashboard(&self, v: &mut Value, o: &RestoreOptions) -> Result<Outcome> {
        let uid = v["dashboard"]["uid"]
            .as_str()
            .ok_or_else(|| Error::integrity("dashboard without uid"))?
            .to_string();
        let what = format!("dashboard '{uid}'");
        let folder = v["folderUid"].as_str().unwrap_or("").to_string();
        let exists = self
            .client
            .get_opt(&["api", "dashboards", "uid", &uid], &what)
            .await?
            .is_some();
        let outcome = if exists {
            if let Some(out) = self.existing(&what, o)? {
                return Ok(out);
            }
            Outcome::Updated
        } else {
            Outcome::Created
        };
        if !o.dry_run {
            let mut dash = v["dashboard"].clone();
            dash["id"] = Value::Null;
            let mut body = json!({"dashboard": dash, "overwrite": exists, "message": "restored by stoa-backup"});
            if !folder.is_empty() && folder != "general" {
                body["folderUid"] = json!(folder);
            }
            self.send(
                Method::POST,
                &["api", "dashboards", "db"],
                &body,
                &format!("saving {what}"),
            )
            .await?;
        }
        Ok(outcome)
    }

    async fn contact_point(
        &self,
        v: &mut Value,
        o: &RestoreOptions,
        report: &mut RestoreReport,
    ) -> Result<Outcome> {
        let uid = req_str(v, "uid")?.to_string();
        let what = format!("contact point '{uid}'");
        if let Some(s) = v.get_mut("settings").and_then(Value::as_object_mut) {
            let red: Vec<String> = s
                .iter()
                .filter(|(_, x)| x.as_str() == Some(REDACTED))
                .map(|(k, _)| k.clone())
                .collect();
            for k in red {
                s.remove(&k);
                report.notes.push(format!(
                    "warning: {what}: setting '{k}' was redacted by Grafana and is not restored; set it again"
                ));
            }
        }
        let current = self.find_provisioned("contact-points", "uid", &uid).await?;
        let Some(mut current) = current else {
            if !o.dry_run {
                self.send(
                    Method::POST,
                    &["api", "v1", "provisioning", "contact-points"],
                    v,
                    &format!("creating {what}"),
                )
                .await?;
            }
            return Ok(Outcome::Created);
        };
        // Unchanged (e.g. Grafana's default contact point): nothing to do.
        if let Some(s) = current.get_mut("settings").and_then(Value::as_object_mut) {
            s.retain(|_, x| x.as_str() != Some(REDACTED));
        }
        if let Some(m) = current.as_object_mut() {
            m.remove("provenance");
        }
        if current == *v {
            return Ok(Outcome::Skipped);
        }
        if let Some(out) = self.existing(&what, o)? {
            return Ok(out);
        }
        if !o.dry_run {
            self.send(
                Method::PUT,
                &["api", "v1", "provisioning", "contact-points", &uid],
                v,
                &format!("updating {what}"),
            )
            .await?;
        }
        Ok(Outcome::Updated)
    }

    /// The provisioned object of `kind` (a path segment under `/api/v1/provisioning`) whose
    /// `field` is `value`; Grafana has no single-object read for these kinds.
    async fn find_provisioned(
        &self,
        kind: &str,
        field: &str,
        value: &str,
    ) -> Result<Option<Value>> {
        let list = self
            .client
            .get(
                &["api", "v1", "provisioning", kind],
                &[],
                &format!("listing provisioned {kind}"),
            )
            .await?;
        Ok(list
            .as_array()
            .and_then(|a| a.iter().find(|c| c[field].as_str() == Some(value)).cloned()))
    }

    async fn template(&self, v: &Value, o: &RestoreOptions) -> Result<Outcome> {
        let name = req_str(v, "name")?;
        let what = format!("notification template '{name}'");
        let current = self.find_provisioned("templates", "name", name).await?;
        if current
            .as_ref()
            .is_some_and(|c| c["template"] == v["template"])
        {
            return Ok(Outcome::Skipped);
        }
        let out = if current.is_some() {
            if let Some(out) = self.existing(&what, o)? {
                return Ok(out);
            }
            Outcome::Updated
        } else {
            Outcome::Created
        };
        if !o.dry_run {
            self.send(
                Method::PUT,
                &["api", "v1", "provisioning", "templates", name],
                &json!({"template": v["template"]}),
                &format!("saving {what}"),
            )
            .await?;
        }
        Ok(out)
    }

    async fn policies(&self, v: &Value, o: &RestoreOptions) -> Result<Outcome> {
        let cur = self
            .client
            .get(
                &["api", "v1", "provisioning", "policies"],
                &[],
                "reading notification policies",
            )
            .await?;
        if cur == *v {
            return Ok(Outcome::Skipped);
        }
        // A tree without routes is Grafana's default: treat it as absent.
        let default = cur["routes"].as_array().is_none_or(Vec::is_empty);
        let out = if default {
            Outcome::Created
        } else {
            if let Some(out) = self.existing("the notification policy tree", o)? {
                return Ok(out);
            }
            Outcome::Updated
        };
        if !o.dry_run {
            self.send(
                Method::PUT,
                &["api", "v1", "provisioning", "policies"],
                v,
                "replacing the notification policy tree",
            )
            .await?;
        }
        Ok(out)
    }

    async fn alert_rule(&self, v: &Value, o: &RestoreOptions) -> Result<Outcome> {
        let uid = req_str(v, "uid")?;
        let what = format!("alert rule '{uid}'");
        let current = self
            .client
            .get_opt(&["api", "v1", "provisioning", "alert-rules", uid], &what)
            .await?;
        let update = (
            Method::PUT,
            &["api", "v1", "provisioning", "alert-rules", uid][..],
        );
        let create: &[&str] = &["api", "v1", "provisioning", "alert-rules"];
        self.create_or_update(&what, current, create, update, v.clone(), |_, _| {}, o)
            .await
    }
}

fn req_str<'a>(v: &'a Value, k: &str) -> Result<&'a str> {
    v[k].as_str()
        .ok_or_else(|| Error::integrity(format!("the backed-up object has no '{k}'")))
}

#[async_trait]
impl Restorer for GrafanaRestorer {
    fn component(&self) -> &str {
        &self.component
    }

    /// Restores the objects in dependency order (see [`GrafanaRestorer`]), each read and
    /// checked as it is restored.
    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        let mut total = RestoreReport::for_context(ctx);
        let mut per_kind: BTreeMap<&str, u64> = BTreeMap::new();
        for (kind, a) in self.ordered(ctx.artifacts())? {
            ctx.check_cancelled()?;
            let bytes = stream::collect(ctx.open_plain(a).await?).await?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::integrity("the Grafana backup object is not valid JSON")
                    .with_source(e)
                    .with_artifact(a.key.to_string())
            })?;
            let r = self
                .restore_object(kind, value, ctx.options())
                .await
                .map_err(|e| e.or_artifact(a.key.to_string()))?;
            total.merge(r);
            *per_kind.entry(kind.as_str()).or_default() += 1;
        }
        total.facts.insert("restored".into(), json!(per_kind));
        Ok(total)
    }
}
