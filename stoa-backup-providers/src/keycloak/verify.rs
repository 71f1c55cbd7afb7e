//! A verifier for Keycloak REST exports: re-reads the stored realm, checks it parses and its
//! counts match the manifest, and flags every redacted field as a warning.

use async_trait::async_trait;
use serde_json::Value;
use stoa_backup_core::manifest::VerificationRecord;
use stoa_backup_core::{stream, ArtifactRecord, ErrorKind, Result, Verifier, VerifyContext};

use super::facts::KeycloakFacts;
use super::redaction::{masked_paths, remedy, RedactionReport};
use super::source::{count_groups, count_roles};
use super::{CONTENT_TYPE, PROVIDER_REST};

/// Checks a stored Keycloak realm export: valid JSON realm representation; clients, roles,
/// groups and users counted again and compared with the manifest; every masked field found
/// in the file listed in the recorded redaction report. Redactions are reported as warnings
/// (the backup is still usable, but those values must come from elsewhere on restore).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeycloakExportVerifier;

impl KeycloakExportVerifier {
    /// A new verifier.
    pub fn new() -> Self {
        KeycloakExportVerifier
    }
}

#[async_trait]
impl Verifier for KeycloakExportVerifier {
    fn name(&self) -> &str {
        "keycloak-export"
    }

    fn applies_to(&self, artifact: &ArtifactRecord) -> bool {
        artifact.provider == PROVIDER_REST && artifact.content_type == CONTENT_TYPE
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord> {
        let a = ctx.artifact;
        let facts: KeycloakFacts = a.facts_as()?;
        let record = |ok: bool, detail: String, warnings: Vec<String>| {
            VerificationRecord::now(self.name(), ok, detail).with_warnings(warnings)
        };
        let bytes = match ctx.open_plain().await {
            Ok(s) => stream::collect(s).await,
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Integrity => {
                return Ok(record(
                    false,
                    format!("'{}' cannot be read back: {e}", a.key),
                    vec![],
                ))
            }
            Err(e) => return Err(e),
        };
        let rep: Value = match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Ok(record(
                    false,
                    format!("'{}' is not a JSON realm representation", a.key),
                    vec![],
                ))
            }
        };
        let recorded = facts.redaction;
        let mut warnings = recorded
            .as_ref()
            .map(RedactionReport::warnings)
            .unwrap_or_default();
        let mut problems = Vec::new();
        let users = rep["users"].as_array().map_or(0, |u| {
            u.iter()
                .filter(|u| u.get("serviceAccountClientId").is_none())
                .count()
        }) as u64;
        let counts = [
            (
                "clients",
                rep["clients"].as_array().map_or(0, Vec::len) as u64,
                facts.clients,
            ),
            ("roles", count_roles(&rep), facts.roles),
            ("groups", count_groups(&rep["groups"]), facts.groups),
            ("users", users, facts.users),
        ];
        for (k, n, recorded) in counts {
            if let Some(expected) = recorded {
                if expected != n {
                    problems.push(format!("{k}: {n} in the file, {expected} recorded"));
                }
            }
        }
        let found = masked_paths(&rep);
        match &recorded {
            Some(r) => {
                for p in &found {
                    if !r.masked.contains(p) {
                        problems.push(format!(
                            "{p} is masked but missing from the redaction report"
                        ));
                    }
                }
            }
            None => {
                let realm = rep["realm"].as_str();
                warnings.extend(
                    found
                        .iter()
                        .map(|p| format!("{p} was masked by Keycloak: {}", remedy(p, realm))),
                );
                warnings.push("no redaction report recorded in the manifest".into());
            }
        }
        if problems.is_empty() {
            Ok(record(
                true,
                format!(
                    "realm '{}': {} clients, {} roles, {} groups, {} users; {} masked fields",
                    rep["realm"].as_str().unwrap_or("?"),
                    counts[0].1,
                    counts[1].1,
                    counts[2].1,
                    counts[3].1,
                    found.len()
                ),
                warnings,
            ))
        } else {
            Ok(record(false, problems.join("; "), warnings))
        }
    }
}
