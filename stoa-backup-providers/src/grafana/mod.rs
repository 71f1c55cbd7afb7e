//! Grafana: folders, dashboards, datasources, library panels and alerting exported one file
//! per object (for the Git sink), and restored in dependency order.
//!
//! - [`GrafanaSource`] authenticates with a service-account token or basic auth, walks nested
//!   folders level by level, pages through dashboard search and fetches each dashboard by uid
//!   (keeping its folder), reads datasources (recording which `secureJsonFields` exist — the
//!   values are never returned), alert rules, contact points, notification policies and
//!   templates through the provisioning API, and library panels. `index.json` records the
//!   Grafana version, counts and the redaction report, built from what the run stored (each
//!   object is read once).
//! - [`GrafanaRestorer`] restores folders (parents first), datasources (secrets supplied by
//!   the caller, with a warning for each missing one), library panels, dashboards (`id`
//!   cleared, `folderUid` kept, `overwrite` by policy), then alerting (contact points,
//!   templates, policies, rules). Dry runs only read.
//! - [`GrafanaSource::change_probe`] gives a [`ChangeProbe`](stoa_backup_core::ChangeProbe)
//!   for the scheduler's on-change trigger: a digest of the exported objects' versions.
//!
//! ```no_run
//! # async fn demo() -> stoa_backup_core::Result<()> {
//! use stoa_backup_core::{MemorySink, Pipeline};
//! use stoa_backup_providers::grafana::{GrafanaAuth, GrafanaConnection, GrafanaSource};
//!
//! let conn = GrafanaConnection::new(
//!     "https://grafana.example.org",
//!     GrafanaAuth::Token(std::env::var("GRAFANA_TOKEN").unwrap_or_default()),
//! )?;
//! let report = Pipeline::builder()
//!     .source(GrafanaSource::builder(conn).build()?)
//!     .sink(MemorySink::new())
//!     .build()?
//!     .run()
//!     .await?;
//! assert!(report.is_complete());
//! # Ok(()) }
//! ```

mod client;
pub mod facts;
mod probe;
mod restore;
mod source;

pub use client::{GrafanaAuth, GrafanaConnection};
pub use facts::{GrafanaIndexFacts, GrafanaObjectFacts, GrafanaRedaction};
pub use probe::GrafanaChangeProbe;
pub use restore::GrafanaRestorer;
pub use source::{GrafanaSource, GrafanaSourceBuilder};

/// Component name.
pub const COMPONENT: &str = "grafana";

/// Provider name in the manifest.
pub const PROVIDER: &str = "grafana-api";

/// Content type of every artifact.
pub const CONTENT_TYPE: &str = "application/json";

/// What Grafana's provisioning API puts in place of secure contact-point settings.
pub const REDACTED: &str = "[REDACTED]";

/// The kinds of objects exported (recorded as the `kind` fact, named as [`Kind::as_str`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A folder.
    Folder,
    /// A datasource.
    Datasource,
    /// A library panel.
    LibraryPanel,
    /// A dashboard.
    Dashboard,
    /// A contact point.
    ContactPoint,
    /// A notification template.
    Template,
    /// The notification policy tree.
    Policies,
    /// An alert rule.
    AlertRule,
    /// The index (version, counts, redaction report).
    Index,
}

impl Kind {
    /// Name used in facts.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Folder => "folder",
            Kind::Datasource => "datasource",
            Kind::LibraryPanel => "library_panel",
            Kind::Dashboard => "dashboard",
            Kind::ContactPoint => "contact_point",
            Kind::Template => "template",
            Kind::Policies => "policies",
            Kind::AlertRule => "alert_rule",
            Kind::Index => "index",
        }
    }

    /// Parses [`Kind::as_str`].
    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Folder,
            Kind::Datasource,
            Kind::LibraryPanel,
            Kind::Dashboard,
            Kind::ContactPoint,
            Kind::Template,
            Kind::Policies,
            Kind::AlertRule,
            Kind::Index,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A uid as a safe key segment (anything outside `[A-Za-z0-9._-]` becomes `_`).
/// The names of a datasource's secure fields that Grafana says are set
/// (`secureJsonFields.<name> == true`); the values themselves never leave Grafana.
fn secure_field_names(datasource: &serde_json::Value) -> Vec<String> {
    datasource["secureJsonFields"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, set)| set.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn segment(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.chars().all(|c| c == '.') {
        format!("_{out}")
    } else {
        out
    }
}

/// The artifact name of an object.
pub fn artifact_name(kind: Kind, uid: &str, folder: Option<&str>) -> String {
    let u = segment(uid);
    match kind {
        Kind::Folder => format!("folders/{u}.json"),
        Kind::Datasource => format!("datasources/{u}.json"),
        Kind::LibraryPanel => format!("library-panels/{u}.json"),
        Kind::Dashboard => format!(
            "dashboards/{}/{u}.json",
            segment(folder.unwrap_or("general"))
        ),
        Kind::ContactPoint => format!("alerting/contact-points/{u}.json"),
        Kind::Template => format!("alerting/templates/{u}.json"),
        Kind::Policies => "alerting/policies.json".into(),
        Kind::AlertRule => format!("alerting/alert-rules/{u}.json"),
        Kind::Index => "index.json".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_stable() {
        assert_eq!(
            artifact_name(Kind::Dashboard, "mcp-tools", Some("ops")),
            "dashboards/ops/mcp-tools.json"
        );
        assert_eq!(
            artifact_name(Kind::Folder, "../x", None),
            "folders/.._x.json"
        );
        assert_eq!(artifact_name(Kind::Folder, "..", None), "folders/_...json");
        for k in ["folder", "dashboard", "alert_rule", "index"] {
            assert_eq!(Kind::parse(k).unwrap().as_str(), k);
            // The fact is written by serde: the same names.
            assert_eq!(serde_json::to_value(Kind::parse(k).unwrap()).unwrap(), k);
        }
    }
}
