//! Codec stages: hashing, compression and encryption as stream adapters.
//!
//! The pipeline applies them in a fixed order — hash plain bytes → compress → encrypt →
//! hash stored bytes — and records the chain in the manifest. [`decode_chain`] inverts
//! exactly the recorded chain.

#[cfg(feature = "age")]
#[cfg_attr(docsrs, doc(cfg(feature = "age")))]
pub mod age;
pub mod hash;
mod keyring;
pub mod zstd;

use std::fmt;

use futures::TryStreamExt;
use tokio::io::AsyncRead;
use tokio_util::io::ReaderStream;

#[cfg(feature = "age")]
#[cfg_attr(docsrs, doc(cfg(feature = "age")))]
pub use self::age::{AgeCodec, AgeEncryption};
pub use self::hash::{hashing, sha256_hex, DigestHandle, StreamDigest};
pub use self::keyring::Keyring;
pub use self::zstd::{ZstdCodec, DEFAULT_ZSTD_LEVEL};

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::CodecStep;
use crate::stream::ByteStream;

/// A stage that transforms bytes on the way to storage.
pub trait Codec: Send + Sync + fmt::Debug {
    /// How this stage is recorded in the manifest.
    fn step(&self) -> CodecStep;
    /// Wraps a stream of plain bytes.
    fn encode(&self, input: ByteStream) -> Result<ByteStream>;
}

/// Turns stored bytes back into plain bytes by inverting `steps` in reverse order.
pub async fn decode_chain(
    mut stream: ByteStream,
    steps: &[CodecStep],
    keyring: &Keyring,
) -> Result<ByteStream> {
    for step in steps.iter().rev() {
        stream = match step {
            CodecStep::Zstd { .. } => zstd::decode(stream),
            #[cfg(feature = "age")]
            CodecStep::Age { .. } => age::decode(stream, step, keyring).await?,
            #[cfg(not(feature = "age"))]
            CodecStep::Age { .. } => {
                let _ = keyring;
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "this artifact is age-encrypted and this build has no age support",
                )
                .with_component("codec/age")
                .with_operation("decrypt")
                .with_hint("enable the `age` feature of stoa-backup (on by default)"));
            }
        };
    }
    Ok(stream)
}

/// A stream over a decoder's output. I/O errors raised by the decoder itself (as opposed to
/// errors of ours travelling through it) mean corrupt or truncated input.
pub(crate) fn decoded_stream<R: AsyncRead + Send + 'static>(
    reader: R,
    codec: &'static str,
    kind: ErrorKind,
) -> ByteStream {
    Box::pin(
        ReaderStream::with_capacity(reader, crate::stream::CHUNK_SIZE).map_err(move |e| {
            if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
                Error::from(e)
            } else {
                Error::new(kind, format!("{codec} data is corrupt or truncated: {e}"))
                    .with_component(format!("codec/{codec}"))
                    .with_operation("decode")
                    .with_hint("the stored artifact is damaged: restore from another run")
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{collect, once};

    fn sample() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[tokio::test]
    async fn zstd_round_trip() {
        let data = sample();
        let enc = ZstdCodec::new(3)
            .unwrap()
            .encode(once(data.clone()))
            .unwrap();
        let stored = collect(enc).await.unwrap();
        assert!(stored.len() < data.len() / 4);
        let dec = decode_chain(
            once(stored),
            &[CodecStep::Zstd { level: 3 }],
            &Keyring::new(),
        )
        .await
        .unwrap();
        assert_eq!(collect(dec).await.unwrap(), data);
    }

    #[cfg(feature = "age")]
    #[tokio::test]
    async fn zstd_then_age_round_trip_with_two_recipients() {
        let (sk1, pk1) = self::age::generate_identity();
        let (_sk2, pk2) = self::age::generate_identity();
        let enc = AgeEncryption::recipients([pk1.as_str(), pk2.as_str()]).unwrap();
        let z = ZstdCodec::default();
        let a = AgeCodec::new(enc);
        let data = sample();
        let steps = vec![z.step(), a.step()];
        let stored = collect(a.encode(z.encode(once(data.clone())).unwrap()).unwrap())
            .await
            .unwrap();
        use ::age::secrecy::ExposeSecret;
        let keyring = Keyring::new().with_identity(sk1.expose_secret()).unwrap();
        let plain = decode_chain(once(stored.clone()), &steps, &keyring)
            .await
            .unwrap();
        assert_eq!(collect(plain).await.unwrap(), data);

        // A stranger's key cannot decrypt, and says so.
        let (sk3, _) = self::age::generate_identity();
        let wrong = Keyring::new().with_identity(sk3.expose_secret()).unwrap();
        let err = match decode_chain(once(stored), &steps, &wrong).await {
            Ok(_) => panic!("decrypted with the wrong key"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    }

    #[cfg(feature = "age")]
    #[tokio::test]
    async fn age_passphrase_round_trip_and_truncation_is_detected() {
        let enc = AgeEncryption::passphrase("correct horse battery staple").unwrap();
        let a = AgeCodec::new(enc.clone());
        let data = sample();
        let stored = collect(a.encode(once(data.clone())).unwrap())
            .await
            .unwrap();
        let keyring = Keyring::for_encryption(&enc);
        let plain = decode_chain(once(stored.clone()), &[a.step()], &keyring)
            .await
            .unwrap();
        assert_eq!(collect(plain).await.unwrap(), data);

        let truncated = stored[..stored.len() - 100].to_vec();
        let plain = decode_chain(once(truncated), &[a.step()], &keyring)
            .await
            .unwrap();
        let err = collect(plain).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    }

    #[cfg(not(feature = "age"))]
    #[tokio::test]
    async fn without_age_an_encrypted_artifact_is_unsupported_and_says_why() {
        let step = CodecStep::Age {
            recipients: vec!["age1example".into()],
            passphrase: false,
        };
        let err = match decode_chain(once(b"x".to_vec()), &[step], &Keyring::new()).await {
            Ok(_) => panic!("decoded age without age support"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("`age` feature"), "{err}");
    }

    #[cfg(feature = "age")]
    #[test]
    fn debug_never_shows_secrets() {
        let enc = AgeEncryption::passphrase("hunter2-secret").unwrap();
        let k = Keyring::new().with_passphrase("hunter2-secret");
        assert!(!format!("{enc:?}{k:?}").contains("hunter2"));
    }
}
