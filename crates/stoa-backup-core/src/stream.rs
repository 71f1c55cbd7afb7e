//! Byte streams: the currency between sources, codec stages and sinks.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::error::{Error, Result};

/// A boxed, sendable stream of byte chunks; an `Err` item aborts whatever consumes it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// Chunk size used when turning readers into streams (large enough for throughput, small
/// enough that a handful in flight keep memory flat).
pub const CHUNK_SIZE: usize = 256 * 1024;

/// A stream over a reader, in chunks of [`CHUNK_SIZE`].
pub fn from_reader<R: AsyncRead + Send + 'static>(reader: R) -> ByteStream {
    Box::pin(ReaderStream::with_capacity(reader, CHUNK_SIZE).map_err(Error::from))
}

/// A reader over a stream (errors become `io::Error`s that carry the original [`Error`]).
pub fn into_reader(stream: ByteStream) -> impl AsyncRead + Send + Unpin + 'static {
    StreamReader::new(stream.map_err(std::io::Error::from))
}

/// A stream of one chunk (tests, small metadata artifacts).
pub fn once(bytes: impl Into<Bytes>) -> ByteStream {
    let b: Bytes = bytes.into();
    Box::pin(futures::stream::once(async move { Ok(b) }))
}

/// An empty stream.
pub fn empty() -> ByteStream {
    Box::pin(futures::stream::empty())
}

/// Collects a whole stream into memory. Only for small artifacts (manifests, reports) and
/// tests: the backup path never calls this.
pub async fn collect(mut stream: ByteStream) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Reads `stream` ahead in its own task, up to `depth` chunks, so the producer (a child's
/// stdout, a network body) keeps going while the consumer compresses or writes. Memory is
/// bounded by `depth` chunks. Dropping the returned stream stops the task and drops the
/// source stream (killing a child process behind it).
pub fn prefetch(mut stream: ByteStream, depth: usize) -> ByteStream {
    let (tx, rx) = mpsc::channel(depth.max(1));
    let task = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    Box::pin(TaskStream { rx, task })
}

/// The receiving end of a producer task; aborts the task when dropped.
pub(crate) struct TaskStream {
    pub(crate) rx: mpsc::Receiver<Result<Bytes>>,
    pub(crate) task: JoinHandle<()>,
}

impl Stream for TaskStream {
    type Item = Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for TaskStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
