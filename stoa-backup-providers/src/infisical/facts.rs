//! The facts Infisical artifacts record in the manifest, as a typed struct: written and
//! read by the source (and by callers, with
//! [`ArtifactRecord::facts_as`](stoa_backup_core::ArtifactRecord::facts_as)).

use serde::{Deserialize, Serialize};

use super::client::InfisicalApi;

/// Facts of one `<project-id>/<environment>.json` document of
/// [`InfisicalSource`](super::InfisicalSource). The project, environment and API are known
/// at discovery; the counts once the document is stored.
///
/// ```
/// # fn demo(record: &stoa_backup_core::ArtifactRecord) -> stoa_backup_core::Result<()> {
/// use stoa_backup_providers::infisical::InfisicalFacts;
///
/// let facts: InfisicalFacts = record.facts_as()?;
/// if facts.hidden_values.unwrap_or(0) > 0 {
///     println!("{}/{}: some values were not readable", facts.project_name, facts.environment);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfisicalFacts {
    /// The project's id.
    pub project_id: String,
    /// The project's name.
    pub project_name: String,
    /// The environment's slug (`dev`, `prod`, …).
    pub environment: String,
    /// The secrets API the server was read with.
    pub api: InfisicalApi,
    /// Secrets in the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<u64>,
    /// Folders in the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folders: Option<u64>,
    /// Secrets whose value the identity may not read (listed, not stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_values: Option<u64>,
    /// Secret imports (kept as references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imports: Option<u64>,
    /// Personal overrides left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_skipped: Option<u64>,
    /// Tags used by the secrets, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stoa_backup_core::source::to_facts;

    #[test]
    fn reads_the_facts_documents_recorded_before_typed_facts() {
        let today = json!({
            "project_id": "proj-1",
            "project_name": "stoa",
            "environment": "dev",
            "api": "v3",
            "secrets": 303,
            "folders": 4,
            "hidden_values": 1,
            "imports": 1,
            "personal_skipped": 1,
            "tags": ["internal", "pci"],
        });
        let record = crate::record_with_facts(
            "infisical",
            super::super::PROVIDER,
            "proj-1/dev.json",
            today.clone(),
        );
        let f: InfisicalFacts = record.facts_as().unwrap();
        assert_eq!(f.api, InfisicalApi::V3);
        assert_eq!((f.secrets, f.hidden_values), (Some(303), Some(1)));
        assert_eq!(serde_json::Value::Object(to_facts(&f).unwrap()), today);
    }
}
