//! Verification of stored artifacts.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::codec::{decode_chain, hashing, Keyring};
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{ArtifactRecord, VerificationRecord, VerifyMethod};
use crate::sink::Sink;
use crate::stream::ByteStream;

/// Smallest chunk a read-back verifier gets from [`VerifyContext::open_stored`].
pub const READ_BACK_CHUNK: usize = 256 * 1024;

/// Chunks read ahead of a read-back verifier: the next reads overlap the work on the last.
const READ_BACK_DEPTH: usize = 4;

/// What a verifier gets: the sink, the artifact's record and the keys to decrypt it.
pub struct VerifyContext<'a> {
    /// Where the artifact is stored.
    pub sink: &'a dyn Sink,
    /// Its manifest record.
    pub artifact: &'a ArtifactRecord,
    /// Keys for encrypted artifacts (may be empty).
    pub keyring: &'a Keyring,
}

impl fmt::Debug for VerifyContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyContext")
            .field("sink", &self.sink.describe())
            .field("artifact", &self.artifact.key)
            .finish()
    }
}

impl VerifyContext<'_> {
    /// The stored bytes, as they are in the sink, read ahead in chunks of at least
    /// [`READ_BACK_CHUNK`] bytes: network bodies arrive in frames of a few KiB, and passing
    /// each through hashing and decoding on its own costs more than the work on the bytes.
    pub async fn open_stored(&self) -> Result<ByteStream> {
        let stored = self.sink.get(&self.artifact.key).await?;
        Ok(crate::stream::prefetch_batched(
            stored,
            READ_BACK_DEPTH,
            READ_BACK_CHUNK,
        ))
    }

    /// The plain bytes: the stored bytes through the inverse of the recorded codec chain.
    /// The stream fails at its end if the stored bytes do not match the manifest's SHA-256 and
    /// size, so a verifier reading plain bytes also checks storage integrity.
    pub async fn open_plain(&self) -> Result<ByteStream> {
        let stored = self.open_stored().await?;
        let checked = check_digest(
            stored,
            &self.artifact.stored_sha256,
            self.artifact.stored_size,
            self.artifact.key.as_str(),
        );
        if self.artifact.codecs.is_empty() {
            return Ok(checked);
        }
        // Decoded in a task of its own: reading and hashing the stored bytes, decoding them,
        // and what the reader does with the plain bytes then run on separate cores.
        let plain = decode_chain(checked, &self.artifact.codecs, self.keyring).await?;
        Ok(crate::stream::prefetch(plain, READ_BACK_DEPTH))
    }
}

/// What an inline check gets ([`Verifier::verify_inline`]): the artifact as planned, a copy
/// of its plain bytes as the source produces them, and — once it is stored — its record.
pub struct InlineContext {
    /// The artifact's record as planned: component, provider, name, key, content type, and
    /// the facts known before the export. Sizes, digests and the facts the source reports at
    /// the end of its export are not known yet: [`StoredRecord::get`] has them.
    pub planned: ArtifactRecord,
    /// The plain bytes as the source produces them, while the pipeline stores them. Read it
    /// to its end, or drop it when the check needs no more (a check of a header): the store
    /// goes on either way. It ends with an error when the store was abandoned. Holding it
    /// unread while awaiting [`StoredRecord::get`] would stall the store: drop it first.
    pub plain: ByteStream,
    /// The artifact's record once it is stored.
    pub stored: StoredRecord,
}

impl fmt::Debug for InlineContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineContext")
            .field("artifact", &self.planned.key)
            .finish_non_exhaustive()
    }
}

/// The record of an artifact an inline check reads, handed over once the artifact is
/// stored.
#[derive(Debug)]
pub struct StoredRecord(tokio::sync::oneshot::Receiver<ArtifactRecord>);

impl StoredRecord {
    /// A handle and the sender that fulfils it.
    pub(crate) fn channel() -> (tokio::sync::oneshot::Sender<ArtifactRecord>, StoredRecord) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (tx, StoredRecord(rx))
    }

    /// Waits until the artifact is stored and returns its record: sizes, digests, and the
    /// facts the source reported at the end of its export (a dump's table of contents).
    /// Fails with [`ErrorKind::Cancelled`] when the artifact was not stored; nothing the
    /// check found matters then.
    pub async fn get(self) -> Result<ArtifactRecord> {
        self.0.await.map_err(|_| {
            Error::cancelled("the artifact was not stored, so its inline check has no verdict")
        })
    }
}

/// Checks an artifact and reports. A failed check is an `Ok` report with `ok: false`; an
/// `Err` means the check itself could not run.
///
/// A verifier may also check artifacts *inline* ([`Verifier::inline`]): on a copy of the
/// plain bytes while the pipeline stores them, instead of reading the stored artifact back
/// afterwards. The pipeline then makes sure the store holds what it was sent (a read-back of
/// the stored bytes against the digest computed while writing, or the store's own checksum),
/// so an inline check plus that digest check covers what a read-back check covers, without
/// the second read and without the keys of an encrypted artifact.
#[async_trait]
pub trait Verifier: Send + Sync + fmt::Debug {
    /// Name recorded in the manifest (`checksum`, `postgres-archive`…).
    fn name(&self) -> &str;

    /// Whether this verifier applies to an artifact (by component or content type).
    fn applies_to(&self, artifact: &ArtifactRecord) -> bool;

    /// Whether it reads plain bytes ([`VerifyContext::open_plain`]), and so needs a key for
    /// encrypted artifacts: a pipeline that encrypts to recipients with such a verifier and
    /// no keyring fails to build. `true` unless the verifier says it reads stored bytes only.
    fn needs_plain_bytes(&self) -> bool {
        true
    }

    /// Checks the artifact.
    async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord>;

    /// Whether this verifier can check an artifact inline, with
    /// [`verify_inline`](Self::verify_inline). `false` unless the verifier says so. A
    /// pipeline runs inline checks where it can (see
    /// [`PipelineBuilder::inline_verification`](crate::pipeline::PipelineBuilder::inline_verification));
    /// [`verify`](Self::verify) stays the check of an artifact already stored (a later
    /// [`Catalog::verify_run`](crate::catalog::Catalog::verify_run)).
    fn inline(&self) -> bool {
        false
    }

    /// Checks an artifact from a copy of its plain bytes as they are produced; called only
    /// when [`inline`](Self::inline) says so, with an artifact [`applies_to`](Self::applies_to)
    /// accepted as planned (sizes and digests unknown yet). The record returned should say
    /// [`VerifyMethod::Inline`]; the pipeline sets it when it does not.
    async fn verify_inline(&self, ctx: InlineContext) -> Result<VerificationRecord> {
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("verifier '{}' has no inline check", self.name()),
        )
        .with_artifact(ctx.planned.key.to_string())
        .with_hint("a verifier implementing verify_inline must also return true from inline()"))
    }
}

macro_rules! forward_verifier {
    ($($ptr:ident),+) => {$(
        /// Forwards every method to the wrapped verifier, so a shared or boxed verifier (also
        /// `Arc<dyn Verifier>`, `Box<dyn Verifier>`) is a verifier itself.
        #[async_trait]
        impl<V: Verifier + ?Sized> Verifier for $ptr<V> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn applies_to(&self, artifact: &ArtifactRecord) -> bool {
                (**self).applies_to(artifact)
            }
            fn needs_plain_bytes(&self) -> bool {
                (**self).needs_plain_bytes()
            }
            async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord> {
                (**self).verify(ctx).await
            }
            fn inline(&self) -> bool {
                (**self).inline()
            }
            async fn verify_inline(&self, ctx: InlineContext) -> Result<VerificationRecord> {
                (**self).verify_inline(ctx).await
            }
        }
    )+};
}

forward_verifier!(Arc, Box);

/// The default verifier: re-reads the stored bytes and compares SHA-256 and size with the
/// manifest. With `deep`, also decodes them (decompress, decrypt) and checks the plain
/// SHA-256 and size — this needs the keys for encrypted artifacts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChecksumVerifier {
    deep: bool,
}

impl ChecksumVerifier {
    /// Checks stored bytes only (needs no keys).
    pub fn new() -> Self {
        ChecksumVerifier { deep: false }
    }

    /// Also decodes and checks the plain bytes.
    pub fn deep() -> Self {
        ChecksumVerifier { deep: true }
    }
}

#[async_trait]
impl Verifier for ChecksumVerifier {
    fn name(&self) -> &str {
        if self.deep {
            "checksum-deep"
        } else {
            "checksum"
        }
    }

    fn applies_to(&self, _artifact: &ArtifactRecord) -> bool {
        true
    }

    fn needs_plain_bytes(&self) -> bool {
        self.deep
    }

    async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord> {
        let a = ctx.artifact;
        let stored = ctx.open_stored().await?;
        let (stored, stored_digest) = hashing(stored);
        let outcome = if self.deep {
            match decode_chain(stored, &a.codecs, ctx.keyring).await {
                Ok(plain) => {
                    let (plain, plain_digest) = hashing(plain);
                    drain(plain)
                        .await
                        .map(|_| (stored_digest.get(), plain_digest.get()))
                }
                Err(e) => Err(e),
            }
        } else {
            drain(stored).await.map(|_| (stored_digest.get(), None))
        };
        let record = |ok: bool, detail: String| {
            VerificationRecord::now(self.name(), ok, detail).with_method(VerifyMethod::ReadBack)
        };
        let (stored, plain) = match outcome {
            Ok(d) => d,
            Err(e) if matches!(e.kind(), ErrorKind::Integrity) => {
                return Ok(record(false, format!("'{}' cannot be decoded: {e}", a.key)));
            }
            Err(e) => return Err(e.or_operation("verify").or_artifact(a.key.as_str())),
        };
        let stored =
            stored.ok_or_else(|| Error::internal("stored digest missing after full read"))?;
        if stored.size != a.stored_size || stored.sha256 != a.stored_sha256 {
            return Ok(record(
                false,
                format!(
                    "'{}' does not match the manifest: stored {} bytes sha256 {}, expected {} bytes sha256 {}",
                    a.key, stored.size, stored.sha256, a.stored_size, a.stored_sha256
                ),
            ));
        }
        if let Some(plain) = plain {
            if plain.size != a.plain_size || plain.sha256 != a.plain_sha256 {
                return Ok(record(
                    false,
                    format!(
                        "'{}' decodes to {} bytes sha256 {}, expected {} bytes sha256 {}",
                        a.key, plain.size, plain.sha256, a.plain_size, a.plain_sha256
                    ),
                ));
            }
        }
        Ok(record(
            true,
            format!(
                "{} bytes, sha256 {}{}",
                stored.size,
                stored.sha256,
                if self.deep { ", plain bytes match" } else { "" }
            ),
        ))
    }
}

async fn drain(mut s: ByteStream) -> Result<u64> {
    use futures::StreamExt;
    let mut n = 0;
    while let Some(c) = s.next().await {
        n += c?.len() as u64;
    }
    Ok(n)
}

/// Passes a stream through and fails at its end if its SHA-256 or size differ from
/// `sha256`/`size` (so consumers never take tampered bytes for good ones).
pub fn check_digest(stream: ByteStream, sha256: &str, size: u64, artifact: &str) -> ByteStream {
    use futures::StreamExt;
    let (hashed, digest) = hashing(stream);
    let expected = (sha256.to_string(), size);
    let artifact = artifact.to_string();
    let tail = futures::stream::once(async move {
        match digest.get() {
            Some(d) if d.sha256 == expected.0 && d.size == expected.1 => None,
            Some(d) => Some(Err(Error::integrity(format!(
                "stored bytes do not match the manifest ({} bytes sha256 {}, expected {} bytes sha256 {})",
                d.size, d.sha256, expected.1, expected.0
            ))
            .with_operation("read")
            .with_artifact(artifact)
            .with_hint("the stored artifact is damaged: restore from another run"))),
            None => None,
        }
    })
    .filter_map(|x| async move { x });
    Box::pin(hashed.chain(tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemorySink;

    /// Applies to `keycloak` artifacts only, reads no bytes and passes them, naming the
    /// artifact.
    #[derive(Debug)]
    struct OnlyKeycloak;

    #[async_trait]
    impl Verifier for OnlyKeycloak {
        fn name(&self) -> &str {
            "only-keycloak"
        }
        fn applies_to(&self, artifact: &ArtifactRecord) -> bool {
            artifact.component == "keycloak"
        }
        fn needs_plain_bytes(&self) -> bool {
            false
        }
        async fn verify(&self, ctx: &VerifyContext<'_>) -> Result<VerificationRecord> {
            Ok(VerificationRecord::now(
                self.name(),
                true,
                format!("checked {}", ctx.artifact.name),
            ))
        }
    }

    async fn check(verifier: &dyn Verifier) {
        assert_eq!(verifier.name(), "only-keycloak");
        // Not the default, so a forwarding impl that forgot it would say `true`.
        assert!(!verifier.needs_plain_bytes());
        let realm = ArtifactRecord::for_test("keycloak", "stoa.json");
        assert!(verifier.applies_to(&realm));
        assert!(!verifier.applies_to(&ArtifactRecord::for_test("postgres", "stoa.dump")));
        let sink = MemorySink::new();
        let keyring = Keyring::new();
        let ctx = VerifyContext {
            sink: &sink,
            artifact: &realm,
            keyring: &keyring,
        };
        assert_eq!(
            verifier.verify(&ctx).await.unwrap().detail,
            "checked stoa.json"
        );
    }

    #[test]
    fn only_the_deep_checksum_needs_plain_bytes() {
        assert!(ChecksumVerifier::deep().needs_plain_bytes());
        assert!(!ChecksumVerifier::new().needs_plain_bytes());
    }

    #[tokio::test]
    async fn shared_and_boxed_verifiers_forward_every_method() {
        check(&Arc::new(OnlyKeycloak)).await;
        check(&(Arc::new(OnlyKeycloak) as Arc<dyn Verifier>)).await;
        check(&Box::new(OnlyKeycloak)).await;
        check(&(Box::new(OnlyKeycloak) as Box<dyn Verifier>)).await;
    }
}
