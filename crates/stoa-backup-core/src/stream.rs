//! Byte streams: the currency between sources, codec stages and sinks.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncRead;
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
