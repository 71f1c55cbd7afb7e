//! A temporary backup directory with an age key pair: where the secret-store tests (Vault,
//! Infisical) back up to, encrypted as they must be.

use std::sync::Arc;

use stoa_backup::prelude::*;
use stoa_backup_test_support::artifacts::age_keys;

/// The directory, its sink and the key pair; the directory goes with the value.
pub struct Env {
    _tmp: tempfile::TempDir,
    /// The sink's root.
    pub dir: std::path::PathBuf,
    /// A local sink on `dir`.
    pub sink: Arc<dyn Sink>,
    /// Encryption to the test recipient.
    pub encryption: AgeEncryption,
    /// The matching identity.
    pub keyring: Keyring,
}

/// A fresh directory and key pair.
pub fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::builder(&dir).create_root(true).build().unwrap());
    let (encryption, keyring) = age_keys();
    Env {
        dir,
        sink,
        encryption,
        keyring,
        _tmp: tmp,
    }
}
