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
//! - `checks`: [`checks`] — the checklist run after a recovery and on demand: HTTP health,
//!   an OIDC client-credentials login, Prometheus `up`; with `kubernetes` pods Running and
//!   Ready, with `postgres` row counts against the backup's.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "checks")]
#[cfg_attr(docsrs, doc(cfg(feature = "checks")))]
pub mod checks;
#[cfg(feature = "grafana")]
#[cfg_attr(docsrs, doc(cfg(feature = "grafana")))]
pub mod grafana;
#[cfg(feature = "http-client")]
// Each HTTP provider uses a part of this module: with only some of them on, the rest is unused.
#[cfg_attr(
    not(all(
        feature = "grafana",
        feature = "keycloak",
        feature = "vault",
        feature = "infisical"
    )),
    allow(dead_code)
)]
mod http;
#[cfg(feature = "infisical")]
#[cfg_attr(docsrs, doc(cfg(feature = "infisical")))]
pub mod infisical;
#[cfg(feature = "keycloak")]
#[cfg_attr(docsrs, doc(cfg(feature = "keycloak")))]
pub mod keycloak;
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub mod kubernetes;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "vault")]
#[cfg_attr(docsrs, doc(cfg(feature = "vault")))]
pub mod vault;

/// An artifact record of `component` and `provider` whose facts are `facts` (a JSON
/// object), for the tests that read facts as earlier versions recorded them.
#[cfg(test)]
pub(crate) fn record_with_facts(
    component: &str,
    provider: &str,
    name: &str,
    facts: serde_json::Value,
) -> stoa_backup_core::ArtifactRecord {
    let serde_json::Value::Object(facts) = facts else {
        panic!("facts are a JSON object")
    };
    stoa_backup_core::ArtifactRecord {
        component: component.into(),
        provider: provider.into(),
        name: name.into(),
        key: stoa_backup_core::ObjectKey::new(format!("runs/r/{component}/{name}"))
            .expect("a valid key"),
        content_type: "application/octet-stream".into(),
        plain_size: 1,
        plain_sha256: String::new(),
        stored_size: 1,
        stored_sha256: String::new(),
        codecs: vec![],
        sensitive: false,
        facts,
        duration_ms: 0,
        verification: vec![],
        timings: None,
    }
}

/// A `from_lookup` environment made of fixed pairs, for the `from_env` tests.
#[cfg(test)]
pub(crate) fn test_env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}
