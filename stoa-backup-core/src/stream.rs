//! Byte streams: the currency between sources, codec stages and sinks.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::{ReaderStream, StreamReader};
use tokio_util::sync::PollSender;

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

/// Copies a stream into `copies` more streams as the returned main stream is read: each
/// chunk goes to every copy (a reference-counted [`Bytes`], not a copy of the bytes) before
/// the main stream yields it. Each copy buffers up to `depth` chunks; a copy whose reader lags
/// holds the main stream back (backpressure, so memory stays bounded), and a copy whose reader
/// went away is dropped while the others go on.
///
/// A copy ends when the main stream ends. When the input fails, or the main stream is dropped
/// before its end, every copy still being read yields an error instead of ending, so no
/// reader takes a cut stream for a whole one.
///
/// The readers of the copies must keep reading (or drop their copy) without waiting on the
/// main stream's reader, or both wait for ever.
pub fn tee(input: ByteStream, copies: usize, depth: usize) -> (ByteStream, Vec<ByteStream>) {
    let complete = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::with_capacity(copies);
    let mut outputs = Vec::with_capacity(copies);
    for _ in 0..copies {
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(depth.max(1));
        senders.push(PollSender::new(tx));
        outputs.push(Box::pin(TeeCopy {
            rx,
            complete: complete.clone(),
            done: false,
        }) as ByteStream);
    }
    let main = Tee {
        input,
        copies: senders,
        pending: None,
        complete,
    };
    (Box::pin(main), outputs)
}

/// The main stream of [`tee`]: it reads the input and feeds the copies.
struct Tee {
    input: ByteStream,
    copies: Vec<PollSender<Result<Bytes>>>,
    /// A chunk read from the input, waiting until every copy has room for it.
    pending: Option<Bytes>,
    complete: Arc<AtomicBool>,
}

impl Stream for Tee {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.pending.is_some() {
                let mut i = 0;
                while i < this.copies.len() {
                    match this.copies[i].poll_reserve(cx) {
                        Poll::Ready(Ok(())) => i += 1,
                        // Its reader is gone: the others go on without it.
                        Poll::Ready(Err(_)) => drop(this.copies.swap_remove(i)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                let chunk = this.pending.take().expect("a pending chunk");
                for copy in &mut this.copies {
                    // Reserved above; a reader that left since is no loss.
                    let _ = copy.send_item(Ok(chunk.clone()));
                }
                return Poll::Ready(Some(Ok(chunk)));
            }
            match ready!(this.input.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => this.pending = Some(chunk),
                Some(Err(e)) => {
                    for copy in &mut this.copies {
                        if let Some(tx) = copy.get_ref() {
                            // A full buffer is fine: the copy reports the cut at its end.
                            let _ = tx.try_send(Err(Error::new(e.kind(), e.message().to_string())));
                        }
                    }
                    this.copies.clear();
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.complete.store(true, Ordering::SeqCst);
                    this.copies.clear();
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// A copy of [`tee`]: the chunks the main stream passed on, then the end or an error.
struct TeeCopy {
    rx: mpsc::Receiver<Result<Bytes>>,
    complete: Arc<AtomicBool>,
    done: bool,
}

impl Stream for TeeCopy {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match ready!(self.rx.poll_recv(cx)) {
            Some(Ok(chunk)) => Poll::Ready(Some(Ok(chunk))),
            Some(Err(e)) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                self.done = true;
                if self.complete.load(Ordering::SeqCst) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(Error::cancelled(
                        "the stream this copy was taken from stopped before its end",
                    ))))
                }
            }
        }
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

    async fn read_all(s: ByteStream) -> Result<Vec<u8>> {
        collect(s).await
    }

    #[tokio::test]
    async fn tee_gives_every_copy_the_whole_stream() {
        let input = chunks(&[3, 4, 5, 20, 2, 1]);
        let expected: Vec<u8> = input
            .iter()
            .flat_map(|c| c.as_ref().unwrap().to_vec())
            .collect();
        let (main, copies) = tee(Box::pin(futures::stream::iter(input)), 2, 1);
        let mut readers: Vec<_> = copies
            .into_iter()
            .map(|c| tokio::spawn(read_all(c)))
            .collect();
        assert_eq!(read_all(main).await.unwrap(), expected);
        for r in readers.drain(..) {
            assert_eq!(r.await.unwrap().unwrap(), expected);
        }
    }

    #[tokio::test]
    async fn tee_goes_on_without_a_copy_whose_reader_left() {
        let input = chunks(&[10; 50]);
        let (main, mut copies) = tee(Box::pin(futures::stream::iter(input)), 2, 1);
        let kept = tokio::spawn(read_all(copies.pop().unwrap()));
        let mut dropped = copies.pop().unwrap();
        // Copies get chunks only as the main stream is read: read both at once.
        let early = tokio::spawn(async move {
            let first = dropped.next().await.unwrap().unwrap();
            drop(dropped);
            first.len()
        });
        assert_eq!(read_all(main).await.unwrap().len(), 500);
        assert_eq!(early.await.unwrap(), 10);
        assert_eq!(kept.await.unwrap().unwrap().len(), 500);
    }

    #[tokio::test]
    async fn a_copy_of_a_failed_or_abandoned_stream_ends_with_an_error() {
        let mut input = chunks(&[3, 4]);
        input.push(Err(Error::integrity("source broke")));
        let (main, mut copies) = tee(Box::pin(futures::stream::iter(input)), 1, 4);
        let copy = tokio::spawn(read_all(copies.pop().unwrap()));
        let err = read_all(main).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Integrity);
        let err = copy.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Integrity, "{err}");

        // The main stream dropped half-way: its copies must not look complete.
        let (mut main, mut copies) = tee(Box::pin(futures::stream::iter(chunks(&[5; 10]))), 1, 4);
        main.next().await.unwrap().unwrap();
        drop(main);
        let err = read_all(copies.pop().unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Cancelled, "{err}");
    }
}
