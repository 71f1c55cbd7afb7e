//! Keycloak: complete realm exports over the admin REST API, honest about what the server
//! withholds, and restores that work.
//!
//! - [`KeycloakSource`] obtains a token (client credentials or password grant, refreshed
//!   before it expires and re-obtained after a 401 — master-realm tokens last ~60 s), calls
//!   `partial-export` (clients, groups, roles), pages through every user (with groups, realm
//!   and client role mappings and federated identities), adds the service-account users, and
//!   streams one merged realm representation per realm. The manifest records
//!   [`KeycloakFacts`]: the Keycloak version, the realm, counts and a [`RedactionReport`]:
//!   which fields the server masked (`**********`: client secrets, IdP secrets, SMTP
//!   password, secret component settings) and what REST cannot give (credentials, realm
//!   keys, sessions).
//! - [`KeycloakExportVerifier`] re-reads a stored export, checks its counts and flags every
//!   redaction as a warning.
//! - [`KeycloakRestorer`] creates the realm when absent, else runs `partialImport` with
//!   `FAIL` / `SKIP` / `OVERWRITE` from the [`ExistingDataPolicy`](stoa_backup_core::ExistingDataPolicy);
//!   it never sends a mask back as a value, and supports dry runs.
//! - With the `kubernetes` feature too, the `kcsh` module runs `kc.sh export` / `kc.sh import` in the
//!   Keycloak pod through the exec API (credentials and keys included, every users file
//!   checked).
//!
//! ```no_run
//! # async fn demo() -> stoa_backup_core::Result<()> {
//! use stoa_backup_core::{MemorySink, Pipeline};
//! use stoa_backup_providers::keycloak::{KeycloakAuth, KeycloakConnection, KeycloakSource};
//!
//! let conn = KeycloakConnection::new(
//!     "https://keycloak.example.org",
//!     KeycloakAuth::ClientCredentials {
//!         client_id: "stoa-backup".into(),
//!         client_secret: std::env::var("KC_SECRET").unwrap_or_default(),
//!     },
//! )?;
//! // Or KeycloakConnection::from_env(): KEYCLOAK_URL, KEYCLOAK_CLIENT_ID…
//! let source = KeycloakSource::builder(conn).realm("stoa").build()?;
//! let report = Pipeline::builder()
//!     .source(source)
//!     .sink(MemorySink::new())
//!     .store_secrets_unencrypted(true) // use .encryption(...) in production
//!     .build()?
//!     .run()
//!     .await?;
//! assert!(report.is_complete());
//! # Ok(()) }
//! ```

mod client;
pub mod drill;
pub mod facts;
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub mod kcsh;
mod objects;
mod redaction;
mod restore;
mod source;
mod verify;

pub use client::{KeycloakAuth, KeycloakConnection};
pub use drill::ScratchRealm;
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub use facts::KcShFacts;
pub use facts::{ExportMode, KeycloakFacts};
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub use kcsh::{KcShExportVerifier, KcShRestorer, KcShSource, UsersMode};
pub use redaction::{RedactionReport, MASK};
pub use restore::KeycloakRestorer;
pub use source::{KeycloakSource, KeycloakSourceBuilder};
pub use verify::KeycloakExportVerifier;

use stoa_backup_core::{Error, Result};

/// Component name (keys, manifest, errors).
pub const COMPONENT: &str = "keycloak";

/// Provider name of REST exports in the manifest.
pub const PROVIDER_REST: &str = "keycloak-rest";

/// Content type of realm exports.
pub const CONTENT_TYPE: &str = "application/json";

/// `<realm>-realm.json`, the name `kc.sh` also uses.
pub fn realm_artifact_name(realm: &str) -> String {
    format!("{realm}-realm.json")
}

pub(crate) fn validate_realm(realm: &str) -> Result<()> {
    let ok = !realm.is_empty()
        && realm.len() <= 255
        && !realm.contains(['/', '\\'])
        && realm != "."
        && realm != ".."
        && !realm.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!("invalid realm name {realm:?}")).with_component(COMPONENT))
    }
}
