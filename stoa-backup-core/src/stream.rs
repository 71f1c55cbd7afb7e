//! Byte streams: the currency between sources, codec stages and sinks.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
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
pub fn prefetch(stream: ByteStream, depth: usize) -> ByteStream {
    prefetch_batched(stream, depth, 0)
}

/// [`prefetch`], and chunks smaller than `min_batch` bytes are gathered into one of at
/// least that size (the last may be smaller) before being handed on. A pipe read returns
/// whatever the child wrote since the last read, often a few KiB: passing each piece through
/// hashing, compression and the sink on its own costs a task wake-up per piece and dominates
/// the CPU time. Chunks at least `min_batch` long pass through without a copy. Memory is
/// bounded by `depth + 1` chunks of at most `max(min_batch, largest input chunk)`.
pub fn prefetch_batched(mut stream: ByteStream, depth: usize, min_batch: usize) -> ByteStream {
    let (tx, rx) = mpsc::channel(depth.max(1));
    let task = tokio::spawn(async move {
        let mut batch = BytesMut::new();
        while let Some(item) = stream.next().await {
            let item = match item {
                Ok(chunk) if batch.is_empty() && chunk.len() >= min_batch => Ok(chunk),
                Ok(chunk) => {
                    if batch.is_empty() {
                        batch.reserve(min_batch.max(chunk.len()));
                    }
                    batch.extend_from_slice(&chunk);
                    if batch.len() < min_batch {
                        continue;
                    }
                    Ok(batch.split().freeze())
                }
                Err(e) => {
                    // What came before the error still goes first, in order.
                    if !batch.is_empty() && tx.send(Ok(batch.split().freeze())).await.is_err() {
                        return;
                    }
                    // The receiver may be gone; then nobody needs the error either.
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if tx.send(item).await.is_err() {
                return;
            }
        }
        if !batch.is_empty() {
            // The receiver may be gone; then nobody needs the rest.
            let _ = tx.send(Ok(batch.freeze())).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[usize]) -> Vec<Result<Bytes>> {
        let mut n = 0u8;
        sizes
            .iter()
            .map(|&len| {
                n = n.wrapping_add(1);
                Ok(Bytes::from(vec![n; len]))
            })
            .collect()
    }

    #[tokio::test]
    async fn batching_gathers_small_chunks_in_order_and_passes_large_ones() {
        let input = chunks(&[3, 4, 5, 20, 2, 1]);
        let expected: Vec<u8> = input
            .iter()
            .flat_map(|c| c.as_ref().unwrap().to_vec())
            .collect();
        let out: Vec<Bytes> = prefetch_batched(Box::pin(futures::stream::iter(input)), 2, 10)
            .try_collect()
            .await
            .unwrap();
        let sizes: Vec<usize> = out.iter().map(Bytes::len).collect();
        // 3+4+5 reach 10; 20 passes as is; the tail 2+1 is flushed at the end.
        assert_eq!(sizes, [12, 20, 3]);
        assert_eq!(out.concat(), expected);
    }

    #[tokio::test]
    async fn batching_delivers_what_came_before_an_error_then_the_error() {
        let mut input = chunks(&[3, 4]);
        input.push(Err(Error::internal("source broke")));
        input.extend(chunks(&[50]));
        let mut s = prefetch_batched(Box::pin(futures::stream::iter(input)), 2, 10);
        assert_eq!(s.next().await.unwrap().unwrap().len(), 7);
        assert!(s.next().await.unwrap().is_err());
        assert!(s.next().await.is_none(), "nothing after the error");
    }
}
