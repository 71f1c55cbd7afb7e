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
#![cfg_attr(docsrs, feature(doc_cfg))]

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
