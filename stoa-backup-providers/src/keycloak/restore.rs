//! Restore over REST: create the realm when absent, otherwise `partialImport` with a policy.

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};
use stoa_backup_core::{
    restore_each, stream, ArtifactRecord, ByteStream, Error, ErrorKind, ExistingDataPolicy,
    PerArtifact, RestoreContext, RestoreOptions, RestoreReport, Restorer, Result,
};

use super::client::{AdminClient, KeycloakConnection};
use super::facts::{ExportMode, KeycloakFacts};
use super::objects;
use super::redaction::{self, RedactionReport};
use super::COMPONENT;
use crate::http;

/// Restores a realm exported by [`super::KeycloakSource`] (or any RealmRepresentation).
///
/// - Realm absent: `POST /admin/realms` with the whole representation.
/// - Realm present: `POST /admin/realms/{realm}/partialImport` with `ifResourceExists`
///   mapped from the policy (`Fail` → `FAIL`: one transaction, nothing written on the first
///   conflict; `Skip` → `SKIP`; `Overwrite` → `OVERWRITE`, and the top-level realm settings
///   are also updated with `PUT`). The report counts added (`created`), overwritten
///   (`updated`) and skipped resources.
/// - Masked values (`**********`) are stripped before anything is sent and listed in the
///   report's notes, as is everything else the backup could not hold (credentials, keys).
/// - Dry run: nothing is written; an existing realm is read to report what would be added,
///   overwritten or skipped, and, under `Fail`, what conflicts (the real import would fail).
///   Every count is by object, as partialImport counts (clients, realm and client roles,
///   identity providers and their mappers, top-level groups, users), whether the realm is
///   created or imported into, so a plan says what the restore reports.
#[derive(Debug, Clone)]
pub struct KeycloakRestorer {
    client: AdminClient,
    target_realm: Option<String>,
    component: String,
}

impl KeycloakRestorer {
    /// A restorer for the server in `connection`.
    pub fn new(connection: KeycloakConnection) -> Result<Self> {
        Ok(KeycloakRestorer {
            client: AdminClient::new(connection)?,
            target_realm: None,
            component: COMPONENT.to_string(),
        })
    }

    /// Restores into a realm of another name.
    pub fn target_realm(mut self, realm: impl Into<String>) -> Result<Self> {
        let r = realm.into();
        super::validate_realm(&r)?;
        self.target_realm = Some(r);
        Ok(self)
    }

    /// Component this restorer handles (default `keycloak`).
    pub fn component(mut self, c: impl Into<String>) -> Self {
        self.component = c.into();
        self
    }

    /// Restores from a realm representation already in memory. Errors name this
    /// restorer's component and the `restore` operation.
    pub async fn restore_realm(
        &self,
        rep: Value,
        recorded: Option<&RedactionReport>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.restore_rep(rep, recorded, options).await.map_err(|e| {
            e.or_component(self.component.clone())
                .or_operation("restore")
        })
    }

    async fn restore_rep(
        &self,
        mut rep: Value,
        recorded: Option<&RedactionReport>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let obj = rep.as_object_mut().ok_or_else(|| {
            Error::integrity("the backup is not a realm representation (not a JSON object)")
        })?;
        if let Some(t) = &self.target_realm {
            obj.insert("realm".into(), json!(t));
            obj.remove("id");
        }
        let realm = obj
            .get("realm")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::integrity("the realm representation has no 'realm' name"))?;
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        report.facts.insert("realm".into(), json!(realm));
        let stripped = redaction::strip_masked(&mut rep);
        for p in &stripped {
            report.notes.push(format!(
                "{p}: masked in the backup, not restored — {}",
                redaction::remedy(p, Some(&realm))
            ));
        }
        report
            .facts
            .insert("stripped_masked".into(), json!(stripped));
        if let Some(r) = recorded {
            report
                .notes
                .extend(r.absent.iter().map(|a| format!("not in the backup: {a}")));
        }
        let without_creds = rep["users"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|u| u.get("serviceAccountClientId").is_none())
                .filter(|u| u["credentials"].as_array().is_none_or(Vec::is_empty))
                .count()
        });
        if without_creds > 0 {
            report.notes.push(format!(
                "{without_creds} users have no credentials in the backup: they must reset their \
                 passwords (or restore from a kc.sh export)"
            ));
        }

        if !self.client.realm_exists(&realm).await? {
            // Counted as an import into an empty realm would count them.
            report.created = objects::objects(&rep).len() as u64;
            report.facts.insert("realm_created".into(), json!(true));
            if options.dry_run {
                report.notes.push(format!(
                    "realm '{realm}' does not exist: it would be created"
                ));
                return Ok(report);
            }
            let body = serde_json::to_vec(&rep)
                .map_err(|e| Error::internal("serialize").with_source(e))?;
            let what = format!("creating realm '{realm}'");
            let answer = self
                .client
                .call(
                    Method::POST,
                    self.client.url(&["admin", "realms"]),
                    Some(&body),
                    &what,
                )
                .await?;
            if !answer.status.is_success() {
                return Err(http::status_error(&answer, &what));
            }
            report.notes.push(format!("realm '{realm}' created"));
            return Ok(report);
        }

        report.facts.insert("realm_created".into(), json!(false));
        let policy = match options.existing {
            ExistingDataPolicy::Fail => "FAIL",
            ExistingDataPolicy::Skip => "SKIP",
            ExistingDataPolicy::Overwrite => "OVERWRITE",
        };
        report
            .facts
            .insert("if_resource_exists".into(), json!(policy));
        let mut import = serde_json::Map::new();
        import.insert("ifResourceExists".into(), json!(policy));
        for k in [
            "users",
            "clients",
            "groups",
            "identityProviders",
            "identityProviderMappers",
            "roles",
        ] {
            if let Some(v) = rep.get(k) {
                import.insert(k.into(), v.clone());
            }
        }
        report.notes.push(left_alone_note(&rep, options.existing));
        self.user_profile(&realm, &rep, options, &mut report)
            .await?;
        if options.dry_run {
            return self
                .dry_run(&realm, &import, options.existing, report)
                .await;
        }
        let body = serde_json::to_vec(&Value::Object(import))
            .map_err(|e| Error::internal("serialize").with_source(e))?;
        let what = format!("partial import into realm '{realm}'");
        let answer = self
            .client
            .call(
                Method::POST,
                self.client
                    .url(&["admin", "realms", &realm, "partialImport"]),
                Some(&body),
                &what,
            )
            .await?;
        if !answer.status.is_success() {
            let mut e = http::status_error(&answer, &what);
            if answer.status.as_u16() == 409 {
                e = e.with_hint(
                    "nothing was written (the import is one transaction); restore with the \
                     Skip or Overwrite policy to keep or replace existing resources",
                );
            }
            return Err(e);
        }
        let result: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        report.created = result["added"].as_u64().unwrap_or(0);
        report.updated = result["overwritten"].as_u64().unwrap_or(0);
        report.skipped = result["skipped"].as_u64().unwrap_or(0);
        if options.existing == ExistingDataPolicy::Overwrite {
            let mut settings = rep.clone();
            if let Some(m) = settings.as_object_mut() {
                for k in [
                    "users",
                    "clients",
                    "groups",
                    "roles",
                    "identityProviders",
                    "identityProviderMappers",
                    "id",
                ] {
                    m.remove(k);
                }
            }
            let body = serde_json::to_vec(&settings)
                .map_err(|e| Error::internal("serialize").with_source(e))?;
            let what = format!("updating the settings of realm '{realm}'");
            let answer = self
                .client
                .call(
                    Method::PUT,
                    self.client.url(&["admin", "realms", &realm]),
                    Some(&body),
                    &what,
                )
                .await?;
            if !answer.status.is_success() {
                return Err(http::status_error(&answer, &what));
            }
        }
        Ok(report)
    }

    /// partialImport ignores components, so the declarative user profile (KC 24+: custom
    /// attributes not declared there are dropped) is compared and, under `Overwrite`,
    /// restored before the users.
    async fn user_profile(
        &self,
        realm: &str,
        rep: &Value,
        options: &RestoreOptions,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let Some(text) = rep["components"]["org.keycloak.userprofile.UserProfileProvider"][0]
            ["config"]["kc.user.profile.config"][0]
            .as_str()
        else {
            return Ok(());
        };
        let Ok(wanted) = serde_json::from_str::<Value>(text) else {
            report
                .notes
                .push("the backed-up user-profile configuration is not valid JSON".into());
            return Ok(());
        };
        let url = self
            .client
            .url(&["admin", "realms", realm, "users", "profile"]);
        let current = self
            .client
            .get_json(url.clone(), "reading the user profile")
            .await?;
        if current == wanted {
            return Ok(());
        }
        if options.existing != ExistingDataPolicy::Overwrite {
            report.notes.push(
                "warning: the target's user profile differs from the backup: user attributes it \
                 does not declare will be dropped (restore with Overwrite to apply the backed-up \
                 profile first)"
                    .into(),
            );
            return Ok(());
        }
        if options.dry_run {
            report
                .notes
                .push("dry run: the user profile would be restored before the users".into());
            return Ok(());
        }
        let body =
            serde_json::to_vec(&wanted).map_err(|e| Error::internal("serialize").with_source(e))?;
        let what = "restoring the user profile";
        let answer = self
            .client
            .call(Method::PUT, url, Some(&body), what)
            .await?;
        if !answer.status.is_success() {
            return Err(http::status_error(&answer, what));
        }
        report
            .notes
            .push("user profile restored before the users".into());
        Ok(())
    }

    /// What partialImport of `import` into the existing `realm` would do, read from the
    /// realm's partial export and its users: the same counts the import answers with.
    /// Under `Fail`, the objects the realm holds are conflicts (the import would refuse
    /// them all, and the restore driver refuses such a plan before anything is written).
    async fn dry_run(
        &self,
        realm: &str,
        import: &serde_json::Map<String, Value>,
        policy: ExistingDataPolicy,
        mut report: RestoreReport,
    ) -> Result<RestoreReport> {
        let mut url = self
            .client
            .url(&["admin", "realms", realm, "partial-export"]);
        url.query_pairs_mut()
            .append_pair("exportClients", "true")
            .append_pair("exportGroupsAndRoles", "true");
        let what = format!("partial export of realm '{realm}'");
        let resp = self.client.send(Method::POST, url, None, &what).await?;
        let existing = http::json_ok(resp, &what).await?;
        let mut users = Vec::new();
        let mut first = 0;
        loop {
            let mut url = self.client.url(&["admin", "realms", realm, "users"]);
            url.query_pairs_mut()
                .append_pair("first", &first.to_string())
                .append_pair("max", "500")
                .append_pair("briefRepresentation", "true");
            let page = self.client.get_json(url, "listing users").await?;
            let page = page.as_array().cloned().unwrap_or_default();
            users.extend(
                page.iter()
                    .filter_map(|u| u["username"].as_str().map(str::to_string)),
            );
            if page.len() < 500 {
                break;
            }
            first += page.len();
        }
        let plan = objects::plan_import(&Value::Object(import.clone()), &existing, users, policy);
        let present = plan.present.len() as u64;
        report.created = plan.added;
        match policy {
            ExistingDataPolicy::Fail => report.conflicts = present,
            ExistingDataPolicy::Skip => report.skipped = present,
            ExistingDataPolicy::Overwrite => report.updated = present,
        }
        if policy == ExistingDataPolicy::Fail && present > 0 {
            let first: Vec<String> = plan
                .present
                .iter()
                .take(5)
                .map(|o| format!("{} '{}'", o.kind, o.name))
                .collect();
            report.notes.push(format!(
                "dry run: partial import into realm '{realm}' would fail: {present} resources \
                 already exist (first: {}); restore with the Skip or Overwrite policy",
                first.join(", ")
            ));
        }
        report.notes.push(format!(
            "dry run: {} resources would be added, {present} exist already",
            plan.added
        ));
        Ok(report)
    }
}

/// What an existing realm does not get from this backup: partialImport ignores realm-level
/// settings, authentication flows, client scopes and components, and `PUT
/// /admin/realms/{realm}` (under `Overwrite`) updates the top-level settings only.
fn left_alone_note(rep: &Value, policy: ExistingDataPolicy) -> String {
    let count = |k: &str| rep[k].as_array().map_or(0, Vec::len);
    // The user profile is a component too, but restored on its own (see user_profile).
    let components: usize = rep["components"].as_object().map_or(0, |types| {
        types
            .iter()
            .filter(|(t, _)| t.as_str() != "org.keycloak.userprofile.UserProfileProvider")
            .map(|(_, list)| list.as_array().map_or(0, Vec::len))
            .sum()
    });
    let found: Vec<String> = [
        (count("authenticationFlows"), "authentication flows"),
        (count("authenticatorConfig"), "authenticator configs"),
        (count("clientScopes"), "client scopes"),
        (count("requiredActions"), "required actions"),
        (components, "components"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let settings = if policy == ExistingDataPolicy::Overwrite {
        "top-level realm settings are updated with PUT"
    } else {
        "top-level realm settings are not updated (only under Overwrite)"
    };
    if found.is_empty() {
        format!(
            "partialImport does not restore realm-level settings, authentication flows, client \
             scopes or components; {settings}"
        )
    } else {
        format!(
            "the realm exists: {} in the backup are not restored (partialImport ignores them and \
             PUT updates top-level settings only; recreate them in the admin console or restore \
             into a new realm); {settings}",
            found.join(", ")
        )
    }
}

#[async_trait]
impl Restorer for KeycloakRestorer {
    fn component(&self) -> &str {
        &self.component
    }

    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        restore_each(self, ctx).await
    }
}

#[async_trait]
impl PerArtifact for KeycloakRestorer {
    async fn restore_one(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let facts: KeycloakFacts = artifact.facts_as()?;
        if facts.mode == Some(ExportMode::KcSh) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "this artifact is a kc.sh export; restore it with kc.sh import",
            ));
        }
        let bytes = stream::collect(plain).await?;
        let rep: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::integrity("the Keycloak backup is not valid JSON").with_source(e)
        })?;
        self.restore_realm(rep, facts.redaction.as_ref(), options)
            .await
    }
}
