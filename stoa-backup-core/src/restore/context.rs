//! [`RestoreContext`]: what a restorer restores, and how it reads it.

use std::fmt;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::codec::Keyring;
use crate::error::{Error, Result};
use crate::manifest::ArtifactRecord;
use crate::sink::Sink;
use crate::stream::ByteStream;

use super::{ExistingDataPolicy, RestoreOptions};

/// The artifacts a [`Restorer`](super::Restorer) restores (all of its component's in one
/// run), the options it restores with, and the way to read them.
#[derive(Clone)]
pub struct RestoreContext<'a> {
    sink: &'a dyn Sink,
    keyring: &'a Keyring,
    artifacts: Vec<&'a ArtifactRecord>,
    options: RestoreOptions,
    cancel: CancellationToken,
}

impl fmt::Debug for RestoreContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestoreContext")
            .field("sink", &self.sink.describe())
            .field(
                "artifacts",
                &self
                    .artifacts
                    .iter()
                    .map(|a| a.key.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("options", &self.options)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl<'a> RestoreContext<'a> {
    /// A context for restoring `artifacts` stored in `sink` (decrypted with `keyring` where
    /// they are encrypted). [`Restore`](super::Restore) builds these; tests and callers that
    /// drive one restorer by hand may too.
    pub fn new(
        sink: &'a dyn Sink,
        keyring: &'a Keyring,
        artifacts: Vec<&'a ArtifactRecord>,
        options: RestoreOptions,
    ) -> Self {
        RestoreContext {
            sink,
            keyring,
            artifacts,
            options,
            cancel: CancellationToken::new(),
        }
    }

    /// The same context, cancelled by `token`: reads through [`open_plain`](Self::open_plain)
    /// then end with a `Cancelled` error once it fires.
    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The same context as a dry run: the restorer reports what it would do and writes
    /// nothing.
    pub fn as_dry_run(&self) -> RestoreContext<'a> {
        let mut ctx = self.clone();
        ctx.options.dry_run = true;
        ctx
    }

    /// The artifacts to restore, in manifest order.
    pub fn artifacts(&self) -> &[&'a ArtifactRecord] {
        &self.artifacts
    }

    /// The options (existing-data policy, dry run).
    pub fn options(&self) -> &RestoreOptions {
        &self.options
    }

    /// Whether this is a dry run: report, never write.
    pub fn dry_run(&self) -> bool {
        self.options.dry_run
    }

    /// What to do with data the target already holds.
    pub fn existing(&self) -> ExistingDataPolicy {
        self.options.existing
    }

    /// Fires when the restore is to stop; long restores check it between objects.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The sink the artifacts are read from.
    pub fn sink(&self) -> &'a dyn Sink {
        self.sink
    }

    /// Fails with a `Cancelled` error once the restore is to stop.
    pub fn check_cancelled(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::cancelled("the restore was cancelled"));
        }
        Ok(())
    }

    /// The plain bytes of `artifact` (one of [`artifacts`](Self::artifacts)) as they were
    /// before the pipeline's codecs: read from the sink, checked against the recorded stored
    /// digest and size, decrypted, decompressed, and checked against the recorded plain
    /// digest and size as they are read. A mismatch ends the stream with an integrity error,
    /// which the restorer must let through: a restorer writes nothing it has not read to the
    /// end of a stream that then ended without error.
    pub async fn open_plain(&self, artifact: &ArtifactRecord) -> Result<ByteStream> {
        if !self.artifacts.iter().any(|a| a.key == artifact.key) {
            return Err(Error::internal(format!(
                "'{}' is not one of the artifacts this restore was given",
                artifact.key
            ))
            .with_component(artifact.component.clone())
            .with_operation("restore"));
        }
        self.check_cancelled()?;
        let plain = super::open_artifact(self.sink, artifact, self.keyring).await?;
        Ok(cancellable(
            plain,
            self.cancel.clone(),
            artifact.key.to_string(),
        ))
    }
}

/// `plain`, ended by a `Cancelled` error (naming `key`) once `cancel` fires. Fused: readers
/// that drain what is left after an error may poll it past its end.
fn cancellable(plain: ByteStream, cancel: CancellationToken, key: String) -> ByteStream {
    Box::pin(
        futures::stream::unfold(Some((plain, cancel, key)), |state| async move {
            let (mut plain, cancel, key) = state?;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => Some((
                    Err(Error::cancelled("the restore was cancelled").with_artifact(key)),
                    None,
                )),
                item = plain.next() => item.map(|i| (i, Some((plain, cancel, key)))),
            }
        })
        .fuse(),
    )
}
