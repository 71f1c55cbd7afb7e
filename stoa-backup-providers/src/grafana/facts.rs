//! The facts Grafana artifacts record in the manifest, as typed structs: written by the
//! source, read by it (the index) and the restorer (and by callers, with
//! [`ArtifactRecord::facts_as`](stoa_backup_core::ArtifactRecord::facts_as)).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Kind;

/// Facts of one exported object (`folders/<uid>.json`, `dashboards/<folder>/<uid>.json`,
/// …). `kind`, `uid` and the folder facts are known at discovery; what the object holds
/// (secure fields, redacted settings, provisioning) once it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrafanaObjectFacts {
    /// What the object is.
    pub kind: Kind,
    /// Its uid (a template's name; `policies` for the policy tree).
    pub uid: String,
    /// A dashboard's folder (`general` for the root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder_uid: Option<String>,
    /// A nested folder's parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_uid: Option<String>,
    /// Set on dashboards Grafana provisions from files (they cannot be saved over the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<bool>,
    /// A datasource's `secureJsonFields` that are set: values Grafana never returns, so
    /// restore needs them from the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_fields: Option<Vec<String>>,
    /// A contact point's settings Grafana answered as `[REDACTED]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_settings: Option<Vec<String>>,
}

impl GrafanaObjectFacts {
    /// The facts known at discovery of object `uid` of `kind`.
    pub(crate) fn planned(kind: Kind, uid: &str) -> Self {
        GrafanaObjectFacts {
            kind,
            uid: uid.to_string(),
            folder_uid: None,
            parent_uid: None,
            provisioned: None,
            secure_fields: None,
            redacted_settings: None,
        }
    }
}

/// Facts of `index.json`: the Grafana version and, from what the run stored, the objects
/// per kind and the redaction report.
///
/// ```
/// # fn demo(record: &stoa_backup_core::ArtifactRecord) -> stoa_backup_core::Result<()> {
/// use stoa_backup_providers::grafana::GrafanaIndexFacts;
///
/// let index: GrafanaIndexFacts = record.facts_as()?;
/// for (uid, fields) in index.redaction.unwrap_or_default().datasources_secure_json_fields {
///     println!("datasource {uid} needs {} at restore", fields.join(", "));
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrafanaIndexFacts {
    /// [`Kind::Index`].
    pub kind: Kind,
    /// `index`.
    pub uid: String,
    /// The server's version, when `/api/health` told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_version: Option<String>,
    /// Objects stored per kind (`dashboard`, `folder`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<BTreeMap<String, u64>>,
    /// What Grafana does not export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<GrafanaRedaction>,
}

/// What a Grafana export lacks: secrets restore must get from elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrafanaRedaction {
    /// Per datasource uid, its set `secureJsonFields`.
    pub datasources_secure_json_fields: BTreeMap<String, Vec<String>>,
    /// Per contact-point uid, its `[REDACTED]` settings.
    pub contact_points_redacted_settings: BTreeMap<String, Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use stoa_backup_core::source::to_facts;

    fn record(name: &str, facts: Value) -> stoa_backup_core::ArtifactRecord {
        crate::record_with_facts("grafana", super::super::PROVIDER, name, facts)
    }

    #[test]
    fn reads_the_facts_objects_recorded_before_typed_facts() {
        for (name, today, kind) in [
            (
                "folders/ops.json",
                json!({"kind": "folder", "uid": "ops", "parent_uid": "platform"}),
                Kind::Folder,
            ),
            (
                "dashboards/ops/stoa-mcp-tools.json",
                json!({"kind": "dashboard", "uid": "stoa-mcp-tools", "folder_uid": "ops", "provisioned": true}),
                Kind::Dashboard,
            ),
            (
                "datasources/prometheus.json",
                json!({"kind": "datasource", "uid": "prometheus", "secure_fields": ["basicAuthPassword"]}),
                Kind::Datasource,
            ),
            (
                "alerting/contact-points/stoa-oncall.json",
                json!({"kind": "contact_point", "uid": "stoa-oncall", "redacted_settings": ["settings.password"]}),
                Kind::ContactPoint,
            ),
            (
                "library-panels/lp-latency.json",
                json!({"kind": "library_panel", "uid": "lp-latency"}),
                Kind::LibraryPanel,
            ),
            (
                "alerting/alert-rules/r.json",
                json!({"kind": "alert_rule", "uid": "r"}),
                Kind::AlertRule,
            ),
        ] {
            let f: GrafanaObjectFacts = record(name, today.clone()).facts_as().unwrap();
            assert_eq!(f.kind, kind);
            assert_eq!(Value::Object(to_facts(&f).unwrap()), today);
        }
    }

    #[test]
    fn reads_the_facts_the_index_recorded_before_typed_facts() {
        let today = json!({
            "kind": "index",
            "uid": "index",
            "grafana_version": "11.3.0",
            "counts": {"dashboard": 3, "folder": 3, "index": 1},
            "redaction": {
                "datasources_secure_json_fields": {"prometheus": ["basicAuthPassword"]},
                "contact_points_redacted_settings": {"stoa-oncall": ["settings.password"]},
            },
        });
        let f: GrafanaIndexFacts = record("index.json", today.clone()).facts_as().unwrap();
        assert_eq!(f.counts.as_ref().unwrap()["dashboard"], 3);
        assert_eq!(
            f.redaction
                .as_ref()
                .unwrap()
                .contact_points_redacted_settings["stoa-oncall"],
            ["settings.password"]
        );
        assert_eq!(Value::Object(to_facts(&f).unwrap()), today);
        // The restorer reads every record of the component as an object: the index too.
        let o: GrafanaObjectFacts = record("index.json", today).facts_as().unwrap();
        assert_eq!(o.kind, Kind::Index);
    }

    #[test]
    fn an_unknown_kind_is_unsupported() {
        let err = record("x.json", json!({"kind": "playlist", "uid": "p"}))
            .facts_as::<GrafanaObjectFacts>()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            stoa_backup_core::ErrorKind::Unsupported,
            "{err}"
        );
    }
}
