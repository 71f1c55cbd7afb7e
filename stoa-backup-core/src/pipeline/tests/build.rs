//! What `build()` refuses before anything connects.

use super::support::Fixed;
use crate::error::ErrorKind;
use crate::pipeline::Pipeline;
use crate::sink::MemorySink;

#[cfg(feature = "age")]
mod keys {
    use super::*;
    use crate::codec::age::generate_identity;
    use crate::pipeline::PipelineBuilder;
    use crate::verify::ChecksumVerifier;

    fn builder() -> PipelineBuilder {
        Pipeline::builder()
            .sink(MemorySink::new())
            .source(Fixed::one("db", "dump.bin", b"rows"))
    }
    use crate::codec::age::ExposeSecret;
    use crate::codec::{AgeEncryption, Keyring};

    fn to_recipient() -> (AgeEncryption, Keyring) {
        let (secret, public) = generate_identity();
        let keyring = Keyring::new()
            .with_identity(secret.expose_secret())
            .unwrap();
        (AgeEncryption::recipients([public]).unwrap(), keyring)
    }

    #[test]
    fn a_verifier_that_decrypts_without_a_keyring_fails_build_naming_the_fix() {
        let (encryption, _) = to_recipient();
        let e = builder()
            .encryption(encryption)
            .verifier(ChecksumVerifier::new())
            .verifier(ChecksumVerifier::deep())
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("checksum-deep"), "{e}");
        assert!(e.hint().unwrap().contains(".keyring("), "{e}");
    }

    #[test]
    fn decrypting_verifiers_build_with_a_keyring_or_a_passphrase() {
        let (encryption, keyring) = to_recipient();
        let deep = || ChecksumVerifier::deep();
        builder()
            .encryption(encryption.clone())
            .verifier(deep())
            .keyring(keyring)
            .build()
            .unwrap();
        builder()
            .encryption(AgeEncryption::passphrase("correct horse battery").unwrap())
            .verifier(deep())
            .build()
            .unwrap();
        // Stored bytes alone need no key.
        builder()
            .encryption(encryption)
            .verifier(ChecksumVerifier::new())
            .build()
            .unwrap();
    }
}

#[test]
fn component_names_the_run_uses_for_its_own_files_are_refused() {
    for reserved in [
        "verifications",
        "manifest.json",
        "heartbeat.json",
        "pin.json",
    ] {
        let e = Pipeline::builder()
            .sink(MemorySink::new())
            .source(Fixed::one(reserved, "x.bin", b"x"))
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{reserved}: {e}");
        assert!(e.to_string().contains(reserved), "{e}");
        assert!(e.hint().is_some(), "{e}");
    }
}
