//! Providers for stoa-backup.
//!
//! One module per system, each behind its own cargo feature:
//! - `postgres`: [`postgres`] — streamed `pg_dump` backups, archive and scratch-restore
//!   verification, safe restores.
//! - `kubernetes`: [`kubernetes`] — STOA custom resources and their CRDs (deterministic
//!   YAML, ordered server-side-apply restore), Helm values, pod exec.
//! - `vault`: [`vault`] — HashiCorp Vault / OpenBao KV exports and restores, raft snapshots
//!   with a structural verifier.
//! - `infisical`: [`infisical`] — Infisical project secrets (folders, tags, comments) and
//!   their batch restore.
//! - `keycloak`: [`keycloak`] — realm exports over the admin REST API (paged users, token
//!   refresh, redaction report), partialImport restores; with `kubernetes` too, `kc.sh`
//!   export/import in the pod.
//! - `grafana`: [`grafana`] — folders, dashboards, datasources, library panels and alerting,
//!   one stable JSON file per object, restored in dependency order.
#![deny(missing_docs)]

#[cfg(feature = "grafana")]
pub mod grafana;
#[cfg(any(
    feature = "keycloak",
    feature = "grafana",
    feature = "vault",
    feature = "infisical"
))]
pub mod http;
#[cfg(feature = "infisical")]
pub mod infisical;
#[cfg(feature = "keycloak")]
pub mod keycloak;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "vault")]
pub mod vault;

/// A `from_lookup` environment made of fixed pairs, for the `from_env` tests.
#[cfg(test)]
pub(crate) fn test_env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}
