//! The age keys of a configuration: the recipients backups encrypt to, the identities
//! restores and verifications decrypt with.

use stoa_backup::core::{AgeEncryption, Keyring};

use crate::config::model::Config;

/// The encryption of new artifacts, when the configuration has `encryption:`.
pub fn encryption(config: &Config) -> Result<Option<AgeEncryption>, String> {
    match &config.encryption {
        Some(e) => AgeEncryption::recipients(&e.recipients)
            .map(Some)
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// Every identity of the configuration (empty without `identities_file` / `identity`).
pub fn keyring(config: &Config) -> Result<Keyring, String> {
    let mut keyring = Keyring::new();
    for identity in config.encryption.iter().flat_map(|e| &e.identity_texts) {
        keyring = keyring
            .with_identity_file_contents(identity.expose())
            .map_err(|e| e.to_string())?;
    }
    Ok(keyring)
}
