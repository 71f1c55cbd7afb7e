//! Reading stored artifacts back in tests: fresh age keys, an artifact's plain bytes, and a
//! check that no secret is stored in clear.

use std::path::Path;

use stoa_backup_core::codec::age::{generate_identity, ExposeSecret as _};
use stoa_backup_core::manifest::ArtifactRecord;
use stoa_backup_core::verify::VerifyContext;
use stoa_backup_core::{AgeEncryption, Keyring, Sink};

/// A fresh X25519 identity: the encryption for a pipeline and the keyring that opens it.
/// (X25519 rather than a passphrase: scrypt is slow in debug builds.)
pub fn age_keys() -> (AgeEncryption, Keyring) {
    let (secret, public) = generate_identity();
    let encryption = AgeEncryption::recipients([public]).expect("a generated recipient");
    let keyring = Keyring::new()
        .with_identity(secret.expose_secret())
        .expect("a generated identity");
    (encryption, keyring)
}

/// The plain bytes of a stored artifact, read as a restore reads them (digest checked,
/// codecs undone). Panics on any error.
pub async fn plain_bytes(sink: &dyn Sink, artifact: &ArtifactRecord, keyring: &Keyring) -> Vec<u8> {
    let ctx = VerifyContext {
        sink,
        artifact,
        keyring,
    };
    let plain = ctx.open_plain().await.expect("open the artifact");
    stoa_backup_core::stream::collect(plain)
        .await
        .expect("read the artifact")
}

/// Panics if any file under `dir` holds one of `needles` in clear (or if there are none).
pub fn assert_no_plaintext(dir: &Path, needles: &[String]) {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir)
            .expect("read the directory")
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    assert!(!files.is_empty(), "nothing stored under {}", dir.display());
    for path in &files {
        let bytes = std::fs::read(path).expect("read a stored file");
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "{} holds the plaintext {n:?}",
                path.display()
            );
        }
    }
}
