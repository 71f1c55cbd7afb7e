//! Backs up a Keycloak realm over the admin REST API into a directory (e.g. a PVC),
//! encrypted with age, and verifies it (counts, redaction report).
//!
//! ```text
//! KEYCLOAK_URL=https://keycloak.example.org KEYCLOAK_CLIENT_ID=stoa-backup \
//! KEYCLOAK_CLIENT_SECRET=… STOA_AGE_RECIPIENT=age1… STOA_BACKUP_DIR=/backups \
//!     cargo run --example keycloak_backup --features keycloak,local
//! ```
//!
//! Environment:
//! - The server and credentials, as Keycloak's Terraform provider reads them
//!   (`KeycloakConnection::from_env`): `KEYCLOAK_URL`, `KEYCLOAK_CLIENT_ID`, then
//!   `KEYCLOAK_CLIENT_SECRET` (client credentials) or `KEYCLOAK_USER` and
//!   `KEYCLOAK_PASSWORD` (password grant, e.g. with `admin-cli`); `KEYCLOAK_REALM` is the
//!   realm to log in to (default `master`).
//! - `STOA_KEYCLOAK_REALM`: the realm to back up (default `stoa`).
//! - `STOA_AGE_RECIPIENT` (required: the export holds personal data and is marked
//!   sensitive, so the pipeline refuses to store it unencrypted).
//! - `STOA_AGE_IDENTITY` (optional, `AGE-SECRET-KEY-1…`): with it, the export is decrypted
//!   and verified (counts, redaction report); without it only the stored bytes are checked.
//! - `STOA_BACKUP_DIR` (default `./backups`, created if missing; a directory named here must
//!   exist, since a missing one may be a volume that is not mounted).
//!
//! The manifest records the Keycloak version, counts and the redaction report: which
//! secrets the server masked (client secrets, IdP secrets, SMTP password…) and what REST
//! cannot export (credentials, realm keys). The verifier prints them as warnings.

use std::process::ExitCode;

use stoa_backup::prelude::*;
use stoa_backup::providers::keycloak::KeycloakFacts;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    // SIGINT / SIGTERM cancel the run: its partial writes are removed, no manifest is
    // written, and the program exits 130 / 143 (a second signal exits at once).
    let shutdown = stoa_backup::signals::listen()?;
    let recipient = env("STOA_AGE_RECIPIENT")
        .ok_or_else(|| Error::config("STOA_AGE_RECIPIENT is not set (age1…)"))?;
    let source = KeycloakSource::builder(KeycloakConnection::from_env()?)
        .realm(env("STOA_KEYCLOAK_REALM").unwrap_or_else(|| "stoa".into()))
        .build()?;
    // The default directory is created; a configured one must exist (it may be a volume).
    let dir = env("STOA_BACKUP_DIR");
    let sink = LocalSink::builder(dir.clone().unwrap_or_else(|| "./backups".into()))
        .create_root(dir.is_none())
        .build()?;
    let mut pipeline = Pipeline::builder()
        .source(source)
        .sink(sink)
        .compression(ZstdCodec::new(3)?)
        .encryption(AgeEncryption::recipients([recipient])?)
        .verifier(ChecksumVerifier::new())
        .label("example", "keycloak_backup")
        .cancel(shutdown.token());
    // The export verifier reads the realm back, so it needs the age identity to decrypt.
    match env("STOA_AGE_IDENTITY") {
        Some(identity) => {
            pipeline = pipeline
                .keyring(Keyring::new().with_identity(&identity)?)
                .verifier(KeycloakExportVerifier::new());
        }
        None => {
            println!("STOA_AGE_IDENTITY is not set: the stored bytes are checked, not the realm")
        }
    }
    let report = pipeline.build()?.run().await;
    shutdown.exit_if_received("the run was cancelled and nothing of it was kept");
    let report = report?.into_result()?;
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
    Ok(ExitCode::SUCCESS)
}
