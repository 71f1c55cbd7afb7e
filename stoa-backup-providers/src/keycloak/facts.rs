//! The facts Keycloak artifacts record in the manifest, as typed structs: written by the
//! sources, read by the verifiers and restorers (and by callers, with
//! [`ArtifactRecord::facts_as`](stoa_backup_core::ArtifactRecord::facts_as)).

#[cfg(feature = "kubernetes")]
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::redaction::RedactionReport;

/// How a realm was exported (the `mode` fact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportMode {
    /// Over the admin REST API ([`KeycloakSource`](super::KeycloakSource)): `rest`.
    #[serde(rename = "rest")]
    Rest,
    /// With `kc.sh export` in the Keycloak pod (`KcShSource`): `kc.sh`.
    #[serde(rename = "kc.sh")]
    KcSh,
}

/// Facts of a REST realm export (`<realm>-realm.json`). `realm` and `mode` are known at
/// discovery; the rest is recorded once the export is stored. All are optional: the REST
/// restorer also takes a realm representation another source stored.
///
/// ```
/// # fn demo(record: &stoa_backup_core::ArtifactRecord) -> stoa_backup_core::Result<()> {
/// use stoa_backup_providers::keycloak::KeycloakFacts;
///
/// let facts: KeycloakFacts = record.facts_as()?;
/// println!("realm {:?}: {:?} users", facts.realm, facts.users);
/// for w in facts.redaction.map(|r| r.warnings()).unwrap_or_default() {
///     println!("warning: {w}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeycloakFacts {
    /// The realm exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// [`ExportMode::Rest`] for these artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ExportMode>,
    /// The server's version, when `/admin/serverinfo` told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keycloak_version: Option<String>,
    /// Clients in the export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<u64>,
    /// Realm and client roles in the export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<u64>,
    /// Groups in the export, subgroups included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<u64>,
    /// Users exported (service-account users not included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<u64>,
    /// Service-account users exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_users: Option<u64>,
    /// The user count the server reported when the export started, recorded only when it
    /// differs from `users` (users were added or removed during the export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_count_at_start: Option<u64>,
    /// What the server masked or cannot export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<RedactionReport>,
}

impl KeycloakFacts {
    /// The facts known at discovery of `realm`.
    pub(crate) fn planned(realm: String) -> Self {
        KeycloakFacts {
            realm: Some(realm),
            mode: Some(ExportMode::Rest),
            ..KeycloakFacts::default()
        }
    }
}

/// Facts of a `kc.sh export` artifact (`<realm>-kcsh.tar`). `realm`, `mode` and the users
/// options are known at discovery; the files and user counts once the tar was read.
#[cfg(feature = "kubernetes")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KcShFacts {
    /// The realm exported.
    pub realm: String,
    /// [`ExportMode::KcSh`] for these artifacts.
    pub mode: ExportMode,
    /// The `--users` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_mode: Option<super::kcsh::UsersMode>,
    /// The `--users-per-file` setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_per_file: Option<u64>,
    /// Every file `kc.sh` wrote, as in the tar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
    /// Users found per file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_per_file_found: Option<BTreeMap<String, u64>>,
    /// Users in all files (service-account users not included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<u64>,
    /// Service-account users in all files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_users: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stoa_backup_core::source::to_facts;

    fn record(facts: serde_json::Value) -> stoa_backup_core::ArtifactRecord {
        crate::record_with_facts(
            "keycloak",
            super::super::PROVIDER_REST,
            "stoa-realm.json",
            facts,
        )
    }

    #[test]
    fn reads_the_facts_rest_exports_recorded_before_typed_facts() {
        let today = json!({
            "realm": "stoa",
            "mode": "rest",
            "keycloak_version": "26.0.5",
            "clients": 8,
            "roles": 6,
            "groups": 3,
            "users": 7,
            "service_account_users": 4,
            "users_count_at_start": 6,
            "redaction": {
                "masked": ["clients[stoa-api].secret"],
                "absent": ["user sessions and offline tokens"],
            },
        });
        let f: KeycloakFacts = record(today.clone()).facts_as().unwrap();
        assert_eq!(
            (f.realm.as_deref(), f.mode),
            (Some("stoa"), Some(ExportMode::Rest))
        );
        assert_eq!((f.clients, f.users, f.roles), (Some(8), Some(7), Some(6)));
        assert_eq!(
            f.redaction.as_ref().unwrap().masked,
            ["clients[stoa-api].secret"]
        );
        assert_eq!(serde_json::Value::Object(to_facts(&f).unwrap()), today);
        assert_eq!(
            serde_json::Value::Object(to_facts(&KeycloakFacts::planned("stoa".into())).unwrap()),
            json!({"realm": "stoa", "mode": "rest"})
        );
        // A realm representation another source stored reads with no facts.
        let none: KeycloakFacts = record(json!({"path": "/x/stoa-realm.json"}))
            .facts_as()
            .unwrap();
        assert_eq!(none, KeycloakFacts::default());
    }

    #[cfg(feature = "kubernetes")]
    #[test]
    fn reads_the_facts_kcsh_exports_recorded_before_typed_facts() {
        let today = json!({
            "realm": "stoa",
            "mode": "kc.sh",
            "users_mode": "different_files",
            "users_per_file": 50,
            "files": ["stoa-realm.json", "stoa-users-0.json"],
            "users_per_file_found": {"stoa-realm.json": 0, "stoa-users-0.json": 2},
            "users": 2,
            "service_account_users": 1,
        });
        let f: KcShFacts = record(today.clone()).facts_as().unwrap();
        assert_eq!(f.mode, ExportMode::KcSh);
        assert_eq!(
            f.users_mode,
            Some(super::super::kcsh::UsersMode::DifferentFiles)
        );
        assert_eq!(f.users, Some(2));
        assert_eq!(serde_json::Value::Object(to_facts(&f).unwrap()), today);
        // The REST restorer reads a kc.sh record far enough to see its mode.
        let rest: KeycloakFacts = record(today).facts_as().unwrap();
        assert_eq!(rest.mode, Some(ExportMode::KcSh));
    }

    #[test]
    fn an_unknown_mode_is_unsupported() {
        let err = record(json!({"realm": "stoa", "mode": "ldif"}))
            .facts_as::<KeycloakFacts>()
            .unwrap_err();
        assert_eq!(err.kind(), stoa_backup_core::ErrorKind::Unsupported);
        assert!(err.to_string().contains("ldif"), "{err}");
    }
}
