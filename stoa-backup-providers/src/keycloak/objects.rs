//! The objects a realm restore counts, the way partialImport counts them (contract §1.4), so
//! that a plan, the creation of a realm and an import into an existing realm all give the
//! same counts: clients, realm roles, client roles, identity providers, identity-provider
//! mappers, top-level groups (a subgroup travels with its parent) and users, in the order
//! partialImport processes them.

use std::collections::HashSet;

use serde_json::Value;
use stoa_backup_core::ExistingDataPolicy;

/// One object of a realm representation, as partialImport names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Object {
    /// What it is (`client`, `realm role`, …), for messages.
    pub(crate) kind: &'static str,
    /// Its name within its kind (`<client>/<role>` for a client role, `<alias>/<name>` for
    /// a mapper).
    pub(crate) name: String,
}

impl Object {
    fn new(kind: &'static str, name: impl Into<String>) -> Self {
        Object {
            kind,
            name: name.into(),
        }
    }
}

fn list<'a>(rep: &'a Value, key: &str) -> &'a [Value] {
    rep[key].as_array().map_or(&[], Vec::as_slice)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// The objects of `rep` in partialImport's processing order.
pub(crate) fn objects(rep: &Value) -> Vec<Object> {
    let mut out = Vec::new();
    for c in list(rep, "clients") {
        out.push(Object::new("client", text(c, "clientId")));
    }
    for r in list(&rep["roles"], "realm") {
        out.push(Object::new("realm role", text(r, "name")));
    }
    if let Some(by_client) = rep["roles"]["client"].as_object() {
        for (client, roles) in by_client {
            for r in roles.as_array().into_iter().flatten() {
                out.push(Object::new(
                    "client role",
                    format!("{client}/{}", text(r, "name")),
                ));
            }
        }
    }
    for i in list(rep, "identityProviders") {
        out.push(Object::new("identity provider", text(i, "alias")));
    }
    for m in list(rep, "identityProviderMappers") {
        out.push(Object::new(
            "identity-provider mapper",
            format!("{}/{}", text(m, "identityProviderAlias"), text(m, "name")),
        ));
    }
    for g in list(rep, "groups") {
        out.push(Object::new("group", text(g, "name")));
    }
    for u in list(rep, "users") {
        out.push(Object::new("user", text(u, "username")));
    }
    out
}

/// What partialImport of a representation into an existing realm would do, by object.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ImportPlan {
    /// Objects the realm lacks: added.
    pub(crate) added: u64,
    /// Objects the realm holds: skipped, overwritten, or (under `Fail`) conflicts.
    pub(crate) present: Vec<Object>,
}

/// Plans partialImport of `rep` with `policy` into a realm whose current objects are
/// `existing` (its partial export: clients, roles, identity providers, mappers, groups and
/// service-account users) and whose other users are named `usernames`.
///
/// A client written by the import (absent, or replaced under `Overwrite`) with service
/// accounts enabled brings its service-account user with it, so that user, processed
/// after the clients, is found present — as the import itself reports it.
pub(crate) fn plan_import(
    rep: &Value,
    existing: &Value,
    usernames: impl IntoIterator<Item = String>,
    policy: ExistingDataPolicy,
) -> ImportPlan {
    let mut held: HashSet<Object> = objects(existing).into_iter().collect();
    held.extend(usernames.into_iter().map(|u| Object::new("user", u)));
    let mut with_service_account: HashSet<&str> = HashSet::new();
    for c in list(rep, "clients") {
        let id = text(c, "clientId");
        let written =
            !held.contains(&Object::new("client", id)) || policy == ExistingDataPolicy::Overwrite;
        if written && c["serviceAccountsEnabled"].as_bool() == Some(true) {
            with_service_account.insert(id);
        }
    }
    let mut plan = ImportPlan::default();
    let users = list(rep, "users");
    let first_user = objects(rep).len() - users.len();
    for (i, o) in objects(rep).into_iter().enumerate() {
        let brought_along = i >= first_user
            && users[i - first_user]["serviceAccountClientId"]
                .as_str()
                .is_some_and(|c| with_service_account.contains(c));
        if brought_along || held.contains(&o) {
            plan.present.push(o);
        } else {
            plan.added += 1;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn realm() -> Value {
        json!({
            "clients": [{"clientId": "app", "serviceAccountsEnabled": true}, {"clientId": "web"}],
            "roles": {"realm": [{"name": "reader"}], "client": {"app": [{"name": "invoke"}]}},
            "identityProviders": [{"alias": "corp"}],
            "identityProviderMappers": [{"identityProviderAlias": "corp", "name": "email"}],
            "groups": [{"name": "ops", "subGroups": [{"name": "oncall"}]}],
            "users": [{"username": "service-account-app", "serviceAccountClientId": "app"},
                      {"username": "alice"}],
        })
    }

    #[test]
    fn every_kind_partial_import_counts_is_an_object_and_subgroups_are_not() {
        let names: Vec<String> = objects(&realm())
            .iter()
            .map(|o| format!("{} {}", o.kind, o.name))
            .collect();
        assert_eq!(
            names,
            [
                "client app",
                "client web",
                "realm role reader",
                "client role app/invoke",
                "identity provider corp",
                "identity-provider mapper corp/email",
                "group ops",
                "user service-account-app",
                "user alice",
            ]
        );
    }

    #[test]
    fn an_import_into_a_realm_that_holds_some_finds_them_present() {
        let existing = json!({
            "clients": [{"clientId": "web"}],
            "roles": {"realm": [{"name": "reader"}], "client": {"app": []}},
            "identityProviderMappers": [{"identityProviderAlias": "corp", "name": "email"}],
        });
        let plan = plan_import(
            &realm(),
            &existing,
            ["alice".to_string()],
            ExistingDataPolicy::Skip,
        );
        let present: Vec<String> = plan.present.iter().map(|o| o.name.clone()).collect();
        // app is added, and brings its service-account user along.
        assert_eq!(
            present,
            [
                "web",
                "reader",
                "corp/email",
                "service-account-app",
                "alice"
            ]
        );
        assert_eq!(plan.added, 4);
    }

    #[test]
    fn a_skipped_client_brings_no_service_account_user() {
        let existing = json!({"clients": [{"clientId": "app"}]});
        let skip = plan_import(&realm(), &existing, [], ExistingDataPolicy::Skip);
        assert!(!skip.present.iter().any(|o| o.kind == "user"), "{skip:?}");
        let over = plan_import(&realm(), &existing, [], ExistingDataPolicy::Overwrite);
        assert!(
            over.present.iter().any(|o| o.name == "service-account-app"),
            "{over:?}"
        );
    }
}
