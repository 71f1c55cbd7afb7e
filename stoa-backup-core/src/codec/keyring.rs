//! The keys that decrypt stored artifacts.

use std::fmt;

/// Identities able to decrypt: X25519 secret keys and/or a passphrase. Verifiers and restores
/// take one, empty for unencrypted backups. Filling it (`with_identity`, `with_passphrase`…)
/// needs the `age` feature; without it a keyring is always empty.
#[derive(Clone, Default)]
pub struct Keyring {
    #[cfg(feature = "age")]
    pub(super) identities: Vec<::age::x25519::Identity>,
    #[cfg(feature = "age")]
    pub(super) passphrase: Option<::age::secrecy::SecretString>,
    /// Keeps the struct opaque when no field is compiled in.
    _private: (),
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Keyring");
        #[cfg(feature = "age")]
        d.field("identities", &self.identities.len()).field(
            "passphrase",
            &self.passphrase.as_ref().map(|_| "<redacted>"),
        );
        d.finish()
    }
}

impl Keyring {
    /// An empty keyring (enough for unencrypted backups).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the keyring holds a passphrase (for passphrase-encrypted artifacts).
    pub fn has_passphrase(&self) -> bool {
        #[cfg(feature = "age")]
        return self.passphrase.is_some();
        #[cfg(not(feature = "age"))]
        false
    }

    /// Whether one of the keyring's identities is the secret key of `recipient` (an
    /// `age1…` public key, as the manifest records it).
    pub fn decrypts_for(&self, recipient: &str) -> bool {
        #[cfg(feature = "age")]
        return self
            .identities
            .iter()
            .any(|id| id.to_public().to_string() == recipient);
        #[cfg(not(feature = "age"))]
        {
            let _ = recipient;
            false
        }
    }

    /// Whether the keyring holds anything to decrypt with.
    pub fn is_empty(&self) -> bool {
        #[cfg(feature = "age")]
        return self.identities.is_empty() && self.passphrase.is_none();
        #[cfg(not(feature = "age"))]
        true
    }
}
