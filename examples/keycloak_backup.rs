//! Backs up a Keycloak realm over the admin REST API into a directory (e.g. a PVC),
//! encrypted with age, and verifies it (counts, redaction report).
//!
//! ```text
//! STOA_KEYCLOAK_URL=https://keycloak.example.org STOA_KEYCLOAK_CLIENT_SECRET=… \
//! STOA_AGE_RECIPIENT=age1… STOA_BACKUP_DIR=/backups \
//!     cargo run --example keycloak_backup --features keycloak,local
//! ```
//!
//! Environment:
//! - `STOA_KEYCLOAK_URL` (required), `STOA_KEYCLOAK_REALM` (default `stoa`).
//! - Client credentials: `STOA_KEYCLOAK_CLIENT_ID` (default `stoa-backup`) and
//!   `STOA_KEYCLOAK_CLIENT_SECRET`; or the password grant with `STOA_KEYCLOAK_USER` and
//!   `STOA_KEYCLOAK_PASSWORD` (client `admin-cli`).
//! - `STOA_AGE_RECIPIENT` (required: the export holds personal data and is marked
//!   sensitive, so the pipeline refuses to store it unencrypted).
//! - `STOA_BACKUP_DIR` (default `./backups`).
//!
//! The manifest records the Keycloak version, counts and the redaction report: which
//! secrets the server masked (client secrets, IdP secrets, SMTP password…) and what REST
//! cannot export (credentials, realm keys). The verifier prints them as warnings.

use std::sync::Arc;

use stoa_backup::core::{AgeEncryption, Error, Pipeline, Result, ZstdCodec};
use stoa_backup::providers::keycloak::{
    KeycloakAuth, KeycloakConnection, KeycloakExportVerifier, KeycloakFacts, KeycloakSource,
};
use stoa_backup::storage::LocalSink;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> Result<()> {
    let url =
        env("STOA_KEYCLOAK_URL").ok_or_else(|| Error::config("STOA_KEYCLOAK_URL is not set"))?;
    let auth = match (env("STOA_KEYCLOAK_USER"), env("STOA_KEYCLOAK_PASSWORD")) {
        (Some(username), Some(password)) => KeycloakAuth::Password {
            client_id: "admin-cli".into(),
            username,
            password,
        },
        _ => KeycloakAuth::ClientCredentials {
            client_id: env("STOA_KEYCLOAK_CLIENT_ID").unwrap_or_else(|| "stoa-backup".into()),
            client_secret: env("STOA_KEYCLOAK_CLIENT_SECRET").ok_or_else(|| {
                Error::config("set STOA_KEYCLOAK_CLIENT_SECRET (or STOA_KEYCLOAK_USER/PASSWORD)")
            })?,
        },
    };
    let recipient = env("STOA_AGE_RECIPIENT")
        .ok_or_else(|| Error::config("STOA_AGE_RECIPIENT is not set (age1…)"))?;
    let source = KeycloakSource::builder()
        .connection(KeycloakConnection::new(&url, auth)?)
        .realm(env("STOA_KEYCLOAK_REALM").unwrap_or_else(|| "stoa".into()))
        .build()?;
    let sink = Arc::new(LocalSink::new(
        env("STOA_BACKUP_DIR").unwrap_or_else(|| "./backups".into()),
    )?);
    let report = Pipeline::builder()
        .source(Arc::new(source))
        .sink(sink)
        .compression(ZstdCodec::new(3)?)
        .encryption(AgeEncryption::recipients([recipient])?)
        .verifier(Arc::new(KeycloakExportVerifier::new()))
        .label("example", "keycloak_backup")
        .build()?
        .run()
        .await?
        .into_result()?;
    for a in &report.manifest.artifacts {
        let f: KeycloakFacts = a.facts_as()?;
        let n = |c: Option<u64>| c.map_or("?".to_string(), |c| c.to_string());
        println!(
            "{}: {} bytes stored; users {}, clients {}, groups {}, roles {}",
            a.key,
            a.stored_size,
            n(f.users),
            n(f.clients),
            n(f.groups),
            n(f.roles)
        );
        for v in &a.verification {
            for w in &v.warnings {
                println!("  warning: {w}");
            }
        }
    }
    Ok(())
}
