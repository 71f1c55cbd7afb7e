//! The restore side of a provider.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::manifest::ArtifactRecord;
use crate::stream::ByteStream;

/// What to do when the target already holds data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExistingDataPolicy {
    /// Refuse to touch existing data (the default).
    #[default]
    Fail,
    /// Leave existing objects alone, restore only missing ones.
    Skip,
    /// Replace existing data.
    Overwrite,
}

/// Options common to every restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// What to do with existing data.
    pub existing: ExistingDataPolicy,
    /// Report what would change without changing anything.
    pub dry_run: bool,
}

/// What a restore did (or would do, in a dry run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Objects created.
    pub created: u64,
    /// Objects updated or overwritten.
    pub updated: u64,
    /// Objects left unchanged or skipped.
    pub skipped: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Notes and warnings for the operator.
    pub notes: Vec<String>,
    /// Provider facts (e.g. the database restored into, row counts).
    pub facts: crate::source::Facts,
}

/// Takes an artifact back into the system it came from.
#[async_trait]
pub trait Restorer: Send + Sync + fmt::Debug {
    /// The component this restorer handles.
    fn component(&self) -> &str;

    /// Restores one artifact from its plain bytes (codecs already undone).
    async fn restore(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport>;
}

macro_rules! forward_restorer {
    ($($ptr:ident),+) => {$(
        /// Forwards every method to the wrapped restorer, so a shared or boxed restorer (also
        /// `Arc<dyn Restorer>`, `Box<dyn Restorer>`) is a restorer itself.
        #[async_trait]
        impl<R: Restorer + ?Sized> Restorer for $ptr<R> {
            fn component(&self) -> &str {
                (**self).component()
            }
            async fn restore(
                &self,
                artifact: &ArtifactRecord,
                plain: ByteStream,
                options: &RestoreOptions,
            ) -> Result<RestoreReport> {
                (**self).restore(artifact, plain, options).await
            }
        }
    )+};
}

forward_restorer!(Arc, Box);

/// Opens an artifact's plaintext as it was before the pipeline's codecs: decrypted with
/// `keyring`, decompressed, and checked against the recorded digest and size as it is read
/// (a mismatch ends the stream with an integrity error). For restorers that need the
/// content of several artifacts before they act (e.g. CRDs before the objects).
pub async fn open_artifact(
    sink: &dyn crate::sink::Sink,
    artifact: &ArtifactRecord,
    keyring: &crate::codec::Keyring,
) -> Result<ByteStream> {
    crate::verify::VerifyContext {
        sink,
        artifact,
        keyring,
    }
    .open_plain()
    .await
    .map_err(|e| {
        e.or_component(artifact.component.clone())
            .or_operation("restore")
            .or_artifact(artifact.key.to_string())
    })
}

/// Restores one stored artifact: reads it from `sink`, checks it against the manifest's
/// stored SHA-256 and size, inverts the recorded codec chain with `keyring`, and hands the
/// plain bytes to `restorer`. Corrupt or truncated artifacts fail with an integrity error.
///
/// Every error names the artifact's component, the operation (`restore` unless a more
/// specific one was set) and the artifact key, so restorers need not add them.
pub async fn restore_artifact(
    sink: &dyn crate::sink::Sink,
    artifact: &ArtifactRecord,
    keyring: &crate::codec::Keyring,
    restorer: &dyn Restorer,
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    if restorer.component() != artifact.component {
        return Err(crate::error::Error::config(format!(
            "restorer for '{}' cannot restore a '{}' artifact",
            restorer.component(),
            artifact.component
        ))
        .with_component(artifact.component.clone())
        .with_operation("restore")
        .with_artifact(artifact.key.to_string()));
    }
    let plain = open_artifact(sink, artifact, keyring).await?;
    let span =
        tracing::info_span!("restore", component = %artifact.component, artifact = %artifact.key);
    tracing::Instrument::instrument(restorer.restore(artifact, plain, options), span)
        .await
        .map_err(|e| {
            e.or_component(artifact.component.clone())
                .or_operation("restore")
                .or_artifact(artifact.key.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::hash::sha256_hex;
    use crate::error::{Error, ErrorKind};
    use crate::key::ObjectKey;
    use crate::sink::{MemorySink, SinkExt};

    /// A restorer that reads the artifact, then fails with an error that carries no context.
    #[derive(Debug)]
    struct Bare;

    #[async_trait]
    impl Restorer for Bare {
        fn component(&self) -> &str {
            "db"
        }
        async fn restore(
            &self,
            _: &ArtifactRecord,
            plain: ByteStream,
            _: &RestoreOptions,
        ) -> Result<RestoreReport> {
            crate::stream::collect(plain).await?;
            Err(Error::new(ErrorKind::PermissionDenied, "refused"))
        }
    }

    #[tokio::test]
    async fn restorer_errors_without_context_come_out_named() {
        let sink = MemorySink::new();
        let key = ObjectKey::new("runs/20260101T000000Z-000001/db/a.bin").unwrap();
        sink.put_bytes(&key, bytes::Bytes::from_static(b"data"))
            .await
            .unwrap();
        let mut record = ArtifactRecord {
            provider: "bare".into(),
            plain_size: 4,
            plain_sha256: sha256_hex(b"data"),
            stored_size: 4,
            stored_sha256: sha256_hex(b"data"),
            ..ArtifactRecord::for_test("db", "a.bin")
        };
        assert_eq!(record.key, key);
        let keyring = crate::codec::Keyring::default();
        let options = RestoreOptions::default();
        let e = restore_artifact(&sink, &record, &keyring, &Bare, &options)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(
            (e.component(), e.operation(), e.artifact()),
            (Some("db"), Some("restore"), Some(key.as_str()))
        );

        // A stored artifact that does not match the manifest fails while it is read.
        record.stored_sha256 = sha256_hex(b"other");
        let e = restore_artifact(&sink, &record, &keyring, &Bare, &options)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        assert_eq!(
            (e.component(), e.operation(), e.artifact()),
            (Some("db"), Some("read"), Some(key.as_str()))
        );

        // So does a restorer for another component.
        record.component = "other".into();
        let e = restore_artifact(&sink, &record, &keyring, &Bare, &options)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert_eq!(
            (e.component(), e.operation(), e.artifact()),
            (Some("other"), Some("restore"), Some(key.as_str()))
        );
    }

    /// Counts the plain bytes it is given as "created" objects.
    #[derive(Debug)]
    struct Counting;

    #[async_trait]
    impl Restorer for Counting {
        fn component(&self) -> &str {
            "counting"
        }
        async fn restore(
            &self,
            _artifact: &ArtifactRecord,
            plain: ByteStream,
            options: &RestoreOptions,
        ) -> Result<RestoreReport> {
            Ok(RestoreReport {
                created: crate::stream::collect(plain).await?.len() as u64,
                dry_run: options.dry_run,
                ..RestoreReport::default()
            })
        }
    }

    async fn check(restorer: &dyn Restorer) {
        assert_eq!(restorer.component(), "counting");
        let options = RestoreOptions {
            dry_run: true,
            ..RestoreOptions::default()
        };
        let artifact = ArtifactRecord::for_test("counting", "x");
        let plain = crate::stream::once(bytes::Bytes::from_static(b"four"));
        let report = restorer.restore(&artifact, plain, &options).await.unwrap();
        assert_eq!((report.created, report.dry_run), (4, true));
    }

    #[tokio::test]
    async fn shared_and_boxed_restorers_forward_every_method() {
        check(&Arc::new(Counting)).await;
        check(&(Arc::new(Counting) as Arc<dyn Restorer>)).await;
        check(&Box::new(Counting)).await;
        check(&(Box::new(Counting) as Box<dyn Restorer>)).await;
    }
}
