//! Verifying a stored kc.sh export against the facts recorded at backup time.

use async_trait::async_trait;
use stoa_backup_core::manifest::VerificationRecord;
use stoa_backup_core::{ArtifactRecord, ErrorKind, Result, Verifier, VerifyContext};

use super::archive::{check_against, parse_stream};
use super::PROVIDER_KCSH;
use crate::keycloak::facts::KcShFacts;

/// Checks a stored kc.sh export: the realm file and every users file are present (no gap
/// in `…-users-<n>.json`), the files are those recorded, and the user counts (per file and
/// in total) match the manifest. The classic failure it catches: a realm file without its
/// user files, which `kc.sh import` accepts with exit code 0 and 0 users.
#[derive(Debug, Clone, Copy, Default)]
pub struct KcShExportVerifier;

#[async_trait]
impl Verifier for KcShExportVerifier {
    fn name(&self) -> &str {
        "keycloak-kcsh"
    }

    fn applies_to(&self, artifact: &ArtifactRecord) -> bool {
        artifact.provider == PROVIDER_KCSH
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord> {
        let a = ctx.artifact;
        let facts: KcShFacts = a.facts_as()?;
        let record = |ok: bool, detail: String| VerificationRecord::now(self.name(), ok, detail);
        let files = match ctx.open_plain().await {
            Ok(s) => parse_stream(s).await,
            Err(e) => Err(e),
        };
        let files = match files {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::Integrity => {
                return Ok(record(false, format!("'{}' cannot be read: {e}", a.key)))
            }
            Err(e) => return Err(e),
        };
        let problems = check_against(&facts, &files);
        if problems.is_empty() {
            let users: u64 = files.iter().map(|f| f.users).sum();
            Ok(record(
                true,
                format!(
                    "{} files, {users} users, all users files present",
                    files.len()
                ),
            ))
        } else {
            Ok(record(false, problems.join("; ")))
        }
    }
}
