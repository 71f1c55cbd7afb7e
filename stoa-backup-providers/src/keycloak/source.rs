//! The REST export: `partial-export` (clients, groups, roles) merged with every user, paged.

use std::fmt::Write as _;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Map, Value};
use stoa_backup_core::source::to_facts;
use stoa_backup_core::{
    ArtifactPlan, ByteStream, Error, Export, ExportContext, Facts, PreflightReport, Result, Source,
};
use tokio::sync::{mpsc, oneshot};

use super::client::{AdminClient, KeycloakConnection};
use super::facts::KeycloakFacts;
use super::redaction;
use super::{realm_artifact_name, COMPONENT, CONTENT_TYPE, PROVIDER_REST};
use crate::http::{self, indent, write_stable};

/// Exports realms over the admin REST API: one `<realm>-realm.json` artifact per realm, a
/// complete realm representation (settings, clients, roles, groups, identity providers,
/// components, every user with groups, role mappings and federated identities — including
/// service-account users) with sorted keys for clean diffs. Users are paged and written as
/// they arrive, so large realms are never held whole in memory.
///
/// The manifest records [`KeycloakFacts`]: the Keycloak version, the realm, counts of
/// clients, roles, groups and users, and a redaction report (which fields the server masked
/// or cannot export). Artifacts are marked sensitive (personal data, `${vault.…}`
/// references).
#[derive(Debug, Clone)]
pub struct KeycloakSource {
    client: AdminClient,
    realms: Vec<String>,
    page_size: usize,
    concurrency: usize,
    sensitive: bool,
    component: String,
}

/// Builds a [`KeycloakSource`].
#[derive(Debug)]
pub struct KeycloakSourceBuilder {
    connection: KeycloakConnection,
    realms: Vec<String>,
    page_size: usize,
    concurrency: usize,
    sensitive: bool,
    component: String,
}

impl KeycloakSource {
    /// Starts a builder for the server and credentials of `connection`
    /// ([`KeycloakConnection::new`] or [`KeycloakConnection::from_env`]).
    pub fn builder(connection: KeycloakConnection) -> KeycloakSourceBuilder {
        KeycloakSourceBuilder {
            connection,
            realms: Vec::new(),
            page_size: 100,
            concurrency: 8,
            sensitive: true,
            component: COMPONENT.to_string(),
        }
    }
}

impl KeycloakSourceBuilder {
    /// Adds a realm to export (default: every realm the token can see).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realms.push(realm.into());
        self
    }

    /// Users fetched per page (`max`, default 100).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n;
        self
    }

    /// Per-user detail requests in flight (default 8).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Whether artifacts are marked as holding secrets (default `true`: user data and
    /// unmasked configuration; the pipeline then requires encryption).
    pub fn sensitive(mut self, yes: bool) -> Self {
        self.sensitive = yes;
        self
    }

    /// Component name in keys and the manifest (default `keycloak`).
    pub fn component(mut self, c: impl Into<String>) -> Self {
        self.component = c.into();
        self
    }

    /// Validates the settings (nothing is contacted).
    pub fn build(self) -> Result<KeycloakSource> {
        if self.page_size == 0 || self.page_size > 10_000 {
            return Err(
                Error::config("page size must be between 1 and 10000").with_component(COMPONENT)
            );
        }
        for r in &self.realms {
            super::validate_realm(r)?;
        }
        Ok(KeycloakSource {
            client: AdminClient::new(self.connection)?,
            realms: self.realms,
            page_size: self.page_size,
            concurrency: self.concurrency.max(1),
            sensitive: self.sensitive,
            component: self.component,
        })
    }
}

impl KeycloakSource {
    async fn realm_names(&self) -> Result<Vec<String>> {
        if !self.realms.is_empty() {
            return Ok(self.realms.clone());
        }
        let mut url = self.client.url(&["admin", "realms"]);
        url.query_pairs_mut()
            .append_pair("briefRepresentation", "true");
        let v = self.client.get_json(url, "listing realms").await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["realm"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[async_trait]
impl Source for KeycloakSource {
    fn component(&self) -> &str {
        &self.component
    }

    fn provider(&self) -> &str {
        PROVIDER_REST
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        let mut report = PreflightReport::default();
        for realm in self.realm_names().await? {
            if !self.client.realm_exists(&realm).await? {
                return Err(Error::new(
                    stoa_backup_core::ErrorKind::NotFound,
                    format!("realm '{realm}' does not exist"),
                )
                .with_hint("check the realm name"));
            }
        }
        report.server_version = self.client.server_version().await;
        if report.server_version.is_none() {
            report
                .notes
                .push("the Keycloak version could not be read from /admin/serverinfo".into());
        }
        Ok(report)
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        self.realm_names()
            .await?
            .into_iter()
            .map(|realm| {
                let mut plan = ArtifactPlan::new(realm_artifact_name(&realm), CONTENT_TYPE)
                    .text(true)
                    .sensitive(self.sensitive);
                plan.facts = to_facts(&KeycloakFacts::planned(realm))?;
                Ok(plan)
            })
            .collect()
    }

    async fn export(&self, artifact: &ArtifactPlan, ctx: &ExportContext) -> Result<Export> {
        let realm = artifact
            .facts_as::<KeycloakFacts>()?
            .realm
            .ok_or_else(|| Error::config("artifact plan without a realm"))?;
        let version = self.client.server_version().await;
        // partial-export first: errors here fail the export before any byte is produced.
        let mut url = self
            .client
            .url(&["admin", "realms", &realm, "partial-export"]);
        url.query_pairs_mut()
            .append_pair("exportClients", "true")
            .append_pair("exportGroupsAndRoles", "true");
        let what = format!("partial export of realm '{realm}'");
        let resp = self.client.send(Method::POST, url, None, &what).await?;
        let rep = http::json_ok(resp, &what).await?;
        let url = self
            .client
            .url(&["admin", "realms", &realm, "users", "count"]);
        let reported = self.client.get_json(url, "counting users").await?.as_u64();

        let (tx, rx) = mpsc::channel::<Result<Bytes>>(4);
        let (facts_tx, facts_rx) = oneshot::channel::<Result<Facts>>();
        let job = ExportJob {
            client: self.client.clone(),
            realm,
            page_size: self.page_size,
            concurrency: self.concurrency,
            cancel: ctx.cancel.clone(),
        };
        tokio::spawn(async move {
            let r = job.run(rep, version, reported, &tx).await;
            match r {
                Ok(f) => {
                    let _ = facts_tx.send(Ok(f));
                }
                Err(e) => {
                    // The consumer is gone only when the run was dropped: nobody to tell.
                    tx.send(Err(e.duplicate())).await.ok();
                    let _ = facts_tx.send(Err(e));
                }
            }
        });
        let stream: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        Ok(Export::with_finish(stream, async move {
            facts_rx.await.unwrap_or_else(|_| {
                Err(Error::internal(
                    "the Keycloak export task ended unexpectedly",
                ))
            })
        }))
    }
}

struct ExportJob {
    client: AdminClient,
    realm: String,
    page_size: usize,
    concurrency: usize,
    cancel: tokio_util::sync::CancellationToken,
}

/// Counts of a realm representation (without users).
pub(crate) fn count_groups(groups: &Value) -> u64 {
    groups
        .as_array()
        .map(|a| {
            a.iter()
                .map(|g| 1 + count_groups(&g["subGroups"]))
                .sum::<u64>()
        })
        .unwrap_or(0)
}

pub(crate) fn count_roles(rep: &Value) -> u64 {
    let realm = rep["roles"]["realm"].as_array().map_or(0, Vec::len) as u64;
    let client: u64 = rep["roles"]["client"]
        .as_object()
        .map(|m| {
            m.values()
                .map(|v| v.as_array().map_or(0, Vec::len) as u64)
                .sum()
        })
        .unwrap_or(0);
    realm + client
}

impl ExportJob {
    async fn send(&self, tx: &mpsc::Sender<Result<Bytes>>, buf: &mut String) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::cancelled("the Keycloak export was cancelled"));
        }
        let chunk = Bytes::from(std::mem::take(buf));
        tx.send(Ok(chunk))
            .await
            .map_err(|_| Error::cancelled("the export stream was dropped"))
    }

    async fn run(
        self,
        mut rep: Value,
        version: Option<String>,
        reported_users: Option<u64>,
        tx: &mpsc::Sender<Result<Bytes>>,
    ) -> Result<Facts> {
        let obj = rep
            .as_object_mut()
            .ok_or_else(|| Error::source_failed("partial export is not a JSON object"))?;
        let service_accounts = match obj.remove("users") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        obj.insert("users".into(), Value::Null); // placeholder, streamed
        let mut keys: Vec<String> = obj.keys().cloned().collect();
        keys.sort();

        let mut creds = Map::new();
        let mut users = 0u64;
        let mut buf = String::from("{\n");
        for (i, k) in keys.iter().enumerate() {
            indent(&mut buf, 1);
            let _ = write!(buf, "{}: ", Value::String(k.clone()));
            if k == "users" {
                buf.push('[');
                let mut first = true;
                for u in &service_accounts {
                    push_item(&mut buf, u, &mut first);
                }
                let mut start = 0usize;
                loop {
                    let page = self.page(start).await?;
                    let n = page.len();
                    let detailed: Vec<Result<Value>> = futures::stream::iter(page)
                        .map(|u| self.enrich(u))
                        .buffered(self.concurrency)
                        .collect()
                        .await;
                    for u in detailed {
                        let (u, types) = split_creds(u?);
                        for t in types {
                            let c = creds.entry(t).or_insert(json!(0));
                            *c = json!(c.as_u64().unwrap_or(0) + 1);
                        }
                        push_item(&mut buf, &u, &mut first);
                        users += 1;
                    }
                    self.send(tx, &mut buf).await?;
                    if n < self.page_size {
                        break;
                    }
                    start += n;
                }
                if !first {
                    buf.push('\n');
                    indent(&mut buf, 1);
                }
                buf.push(']');
            } else {
                write_stable(&mut buf, &obj[k.as_str()], 1);
            }
            if i + 1 < keys.len() {
                buf.push(',');
            }
            buf.push('\n');
        }
        buf.push_str("}\n");
        self.send(tx, &mut buf).await?;

        let changed = reported_users.filter(|r| *r != users);
        if let Some(r) = changed {
            tracing::warn!(
                realm = %self.realm,
                reported = r,
                exported = users,
                "user count changed during the export"
            );
        }
        to_facts(&KeycloakFacts {
            keycloak_version: version,
            clients: Some(rep["clients"].as_array().map_or(0, Vec::len) as u64),
            roles: Some(count_roles(&rep)),
            groups: Some(count_groups(&rep["groups"])),
            users: Some(users),
            service_account_users: Some(service_accounts.len() as u64),
            users_count_at_start: changed,
            redaction: Some(redaction::report_for(&rep, &creds)),
            ..KeycloakFacts::planned(self.realm.clone())
        })
    }

    async fn page(&self, first: usize) -> Result<Vec<Value>> {
        let mut url = self.client.url(&["admin", "realms", &self.realm, "users"]);
        url.query_pairs_mut()
            .append_pair("first", &first.to_string())
            .append_pair("max", &self.page_size.to_string())
            .append_pair("briefRepresentation", "false");
        let v = self
            .client
            .get_json(url, &format!("listing users of realm '{}'", self.realm))
            .await?;
        match v {
            Value::Array(a) => Ok(a),
            _ => Err(Error::source_failed("the user list is not a JSON array")),
        }
    }

    async fn enrich(&self, mut user: Value) -> Result<Value> {
        let Some(id) = user["id"].as_str().map(str::to_string) else {
            return Ok(user);
        };
        let base = ["admin", "realms", self.realm.as_str(), "users", id.as_str()];
        let url = |last: &str| {
            let mut s: Vec<&str> = base.to_vec();
            s.push(last);
            self.client.url(&s)
        };
        let who = user["username"].as_str().unwrap_or("?").to_string();
        let w = [
            format!("reading groups of user '{who}'"),
            format!("reading role mappings of user '{who}'"),
            format!("reading federated identities of user '{who}'"),
            format!("reading credential metadata of user '{who}'"),
        ];
        let (groups, roles, fed, creds) = futures::try_join!(
            self.client.get_json(url("groups"), &w[0]),
            self.client.get_json(url("role-mappings"), &w[1]),
            self.client.get_json(url("federated-identity"), &w[2]),
            self.client.get_json(url("credentials"), &w[3]),
        )?;
        let m = user
            .as_object_mut()
            .ok_or_else(|| Error::source_failed("a user is not a JSON object"))?;
        m.remove("access");
        let paths: Vec<Value> = groups
            .as_array()
            .map(|a| a.iter().filter_map(|g| g.get("path").cloned()).collect())
            .unwrap_or_default();
        if !paths.is_empty() {
            m.insert("groups".into(), Value::Array(paths));
        }
        let realm_roles: Vec<Value> = roles["realmMappings"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r.get("name").cloned()).collect())
            .unwrap_or_default();
        if !realm_roles.is_empty() {
            m.insert("realmRoles".into(), Value::Array(realm_roles));
        }
        let mut client_roles = Map::new();
        if let Some(cm) = roles["clientMappings"].as_object() {
            for (client, mapping) in cm {
                let names: Vec<Value> = mapping["mappings"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|r| r.get("name").cloned()).collect())
                    .unwrap_or_default();
                if !names.is_empty() {
                    client_roles.insert(client.clone(), Value::Array(names));
                }
            }
        }
        if !client_roles.is_empty() {
            m.insert("clientRoles".into(), Value::Object(client_roles));
        }
        if fed.as_array().is_some_and(|a| !a.is_empty()) {
            m.insert("federatedIdentities".into(), fed);
        }
        let types: Vec<Value> = creds
            .as_array()
            .map(|a| a.iter().filter_map(|c| c.get("type").cloned()).collect())
            .unwrap_or_default();
        // Carried to the writer (and removed there): only used for the redaction report.
        m.insert(CRED_TYPES.into(), Value::Array(types));
        Ok(user)
    }
}

const CRED_TYPES: &str = "\u{0}credentialTypes";

fn split_creds(mut user: Value) -> (Value, Vec<String>) {
    let types = user
        .as_object_mut()
        .and_then(|m| m.remove(CRED_TYPES))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    (user, types)
}

fn push_item(buf: &mut String, item: &Value, first: &mut bool) {
    if !*first {
        buf.push(',');
    }
    *first = false;
    buf.push('\n');
    indent(buf, 2);
    write_stable(buf, item, 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nested_groups_and_roles() {
        let g =
            json!([{"name": "a", "subGroups": [{"name": "b", "subGroups": []}]}, {"name": "c"}]);
        assert_eq!(count_groups(&g), 3);
        let rep = json!({"roles": {"realm": [{"name": "x"}], "client": {"c": [{"name": "y"}, {"name": "z"}]}}});
        assert_eq!(count_roles(&rep), 3);
    }

    #[test]
    fn streamed_items_are_valid_json() {
        let mut buf = String::from("[");
        let mut first = true;
        push_item(&mut buf, &json!({"b": 1, "a": [1]}), &mut first);
        push_item(&mut buf, &json!({"c": {}}), &mut first);
        buf.push_str("\n  ]");
        let v: Value = serde_json::from_str(&buf).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
    }
}
