//! The suite's view of the backup's sink (reads recorded, a byte flipped, a token fired
//! mid-read) and the observer that cancels a restore as it starts.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use stoa_backup_core::error::Result;
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::manifest::ArtifactRecord;
use stoa_backup_core::observer::{Event, Observer};
use stoa_backup_core::sink::{ObjectMeta, PutResult, Sink, SinkCapabilities};
use stoa_backup_core::stream::ByteStream;
use tokio_util::sync::CancellationToken;

/// A token and whether to fire it as the apply starts.
pub(super) struct Cancel {
    pub(super) token: CancellationToken,
    pub(super) on_start: bool,
}

/// Fires its token when a component's restore (not its plan) starts.
#[derive(Debug)]
pub(super) struct CancelOnStart(pub(super) CancellationToken);

impl Observer for CancelOnStart {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::RestoreStarted { dry_run: false, .. } = event {
            self.0.cancel();
        }
    }
}

/// Size of the chunks the probe hands out, so that "after the first chunk" is mid-read.
const PROBE_CHUNK: usize = 1024;

#[derive(Default)]
struct ProbeState {
    reads: Vec<ObjectKey>,
    /// The artifact whose stored bytes get one byte flipped, and where.
    corrupt: Option<(ObjectKey, u64)>,
    /// Fire the token after the first chunk of the read with this index (counted from
    /// when it was armed).
    cancel: Option<(usize, CancellationToken)>,
    reads_since_armed: usize,
}

/// The suite's view of the backup's sink: records reads, flips a byte of one object as it
/// is read (same size), and fires a token after the first chunk of a chosen read. Every
/// read comes in small chunks.
pub(super) struct ProbeSink {
    inner: Arc<dyn Sink>,
    state: Mutex<ProbeState>,
}

impl fmt::Debug for ProbeSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeSink")
            .field("inner", &self.inner.describe())
            .finish_non_exhaustive()
    }
}

impl ProbeSink {
    pub(super) fn new(inner: Arc<dyn Sink>) -> Self {
        ProbeSink {
            inner,
            state: Mutex::new(ProbeState::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut ProbeState) -> R) -> R {
        f(&mut self.state.lock().expect("probe state"))
    }

    pub(super) fn clear_reads(&self) {
        self.with(|s| s.reads.clear());
    }

    pub(super) fn reads(&self) -> Vec<ObjectKey> {
        self.with(|s| s.reads.clone())
    }

    pub(super) fn corrupt(&self, artifact: Option<&ArtifactRecord>) {
        self.with(|s| s.corrupt = artifact.map(|a| (a.key.clone(), a.stored_size / 2)));
    }

    pub(super) fn cancel_on_read(&self, n: usize, token: CancellationToken) {
        self.with(|s| {
            s.cancel = Some((n, token));
            s.reads_since_armed = 0;
        });
    }

    pub(super) fn disarm_cancel(&self) {
        self.with(|s| s.cancel = None);
    }
}

#[async_trait]
impl Sink for ProbeSink {
    fn describe(&self) -> String {
        format!("probe({})", self.inner.describe())
    }

    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }

    async fn preflight(&self) -> Result<()> {
        self.inner.preflight().await
    }

    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        self.inner.put(key, stream).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        let (flip, cancel) = self.with(|s| {
            s.reads.push(key.clone());
            let flip = s
                .corrupt
                .as_ref()
                .filter(|(k, _)| k == key)
                .map(|(_, at)| *at);
            let n = s.reads_since_armed;
            s.reads_since_armed += 1;
            let cancel = s
                .cancel
                .as_ref()
                .filter(|(at, _)| *at == n)
                .map(|(_, t)| t.clone());
            (flip, cancel)
        });
        let inner = self.inner.get(key).await?;
        let mut offset = 0u64;
        let mut first = true;
        let chunks = inner.flat_map(move |item| {
            let pieces: Vec<Result<Bytes>> = match item {
                Err(e) => vec![Err(e)],
                Ok(b) => {
                    let mut b = b.to_vec();
                    if let Some(at) = flip {
                        let end = offset + b.len() as u64;
                        if (offset..end).contains(&at) {
                            b[(at - offset) as usize] ^= 0x01;
                        }
                    }
                    offset += b.len() as u64;
                    b.chunks(PROBE_CHUNK)
                        .map(|c| Ok(Bytes::copy_from_slice(c)))
                        .collect()
                }
            };
            futures::stream::iter(pieces)
        });
        let at_end = cancel.clone();
        let out = chunks
            .map(move |item| {
                if first {
                    first = false;
                    if let Some(t) = &cancel {
                        t.cancel();
                    }
                }
                item
            })
            // An empty object has no first chunk: fire as it ends.
            .chain(
                futures::stream::once(async move {
                    if let Some(t) = at_end {
                        t.cancel();
                    }
                    None
                })
                .filter_map(futures::future::ready),
            );
        Ok(Box::pin(out))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.delete(key).await
    }
}
