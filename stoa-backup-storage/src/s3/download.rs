//! Reads: one `GetObject` for small objects; for large ones, byte ranges of the same object
//! version fetched in parallel and handed on in order.
//!
//! One HTTP connection to S3 carries far less than a machine can take in (AWS's guidance
//! is about 100 MB/s per connection, and it recommends parallel ranged GETs of 8-16 MB);
//! read-backs and restores of multi-gigabyte artifacts would run at a single connection's
//! speed otherwise. Every range after the first carries `If-Match` with the ETag the first
//! answer gave, and its answer must name that ETag, so an object replaced while it is read
//! fails the read (`Conflict`) instead of mixing two versions, even on servers that ignore
//! `If-Match`. Memory is bounded: at most `ranges_in_flight` ranges of
//! `range_size` bytes are held, fetched ahead of the consumer, which holds the rest back.

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use stoa_backup_core::error::Result;
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::stream::ByteStream;

use super::errors::map_error;
use super::S3Sink;

/// Default size of one ranged read: 8 MiB, AWS's recommended lower bound.
pub const DEFAULT_RANGE_SIZE: usize = 8 * 1024 * 1024;

/// Default number of ranges of one `get` in flight at once.
pub const DEFAULT_RANGES_IN_FLIGHT: usize = 4;

/// Smallest range size the builder accepts.
pub(super) const MIN_RANGE_SIZE: usize = 64 * 1024;

/// Most ranges of one `get` the builder accepts in flight.
pub(super) const MAX_RANGES_IN_FLIGHT: usize = 64;

impl S3Sink {
    pub(super) async fn get_inner(&self, key: &ObjectKey, path: Path) -> Result<ByteStream> {
        let err = {
            let (bucket, full, k) = (
                self.inner.bucket.clone(),
                self.full(key.as_str()),
                key.as_str().to_string(),
            );
            move |e: object_store::Error| map_error(&bucket, &full, e, "get", Some(&k))
        };
        let first = self
            .inner
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(&err)?;
        let size = first.meta.size;
        let range = self.inner.read_range_size as u64;
        let in_flight = self.inner.ranges_in_flight;
        let etag = first.meta.e_tag.clone();
        // Ranges only pay off past a few of them, and are safe only with an ETag to pin the
        // version they read.
        let (true, Some(etag)) = (in_flight > 1 && size > 2 * range, etag) else {
            return Ok(Box::pin(first.into_stream().map_err(err)));
        };
        let head = first.into_stream();
        let store = self.inner.store.clone();
        let later = (1..size.div_ceil(range)).map(move |i| {
            let (store, path, etag) = (store.clone(), path.clone(), etag.clone());
            let bounds = i * range..((i + 1) * range).min(size);
            async move { fetch_range(&store, &path, etag, bounds).await }.boxed()
        });
        let first = async move { take_prefix(head, range).await }.boxed();
        let ranges: BoxStream<'static, object_store::Result<Bytes>> =
            stream::iter(std::iter::once(first).chain(later))
                .buffered(in_flight)
                .boxed();
        Ok(Box::pin(ranges.map_err(err)))
    }
}

/// One range of the version `etag`, collected (at most `range_size` bytes).
async fn fetch_range(
    store: &object_store::aws::AmazonS3,
    path: &Path,
    etag: String,
    bounds: std::ops::Range<u64>,
) -> object_store::Result<Bytes> {
    let options = GetOptions {
        range: Some(GetRange::Bounded(bounds)),
        if_match: Some(etag.clone()),
        ..GetOptions::default()
    };
    let answer = store.get_opts(path, options).await?;
    // Servers that ignore If-Match (s3s-fs does) still name the version they answered with.
    if answer.meta.e_tag.as_deref() != Some(etag.as_str()) {
        return Err(object_store::Error::Precondition {
            path: path.to_string(),
            source: format!(
                "the object was replaced while it was read: ETag {etag} at the start, {:?} now",
                answer.meta.e_tag
            )
            .into(),
        });
    }
    answer.bytes().await
}

/// The first `n` bytes of the whole-object answer; the rest of it is not read (dropping the
/// body closes that one connection).
async fn take_prefix(
    mut body: BoxStream<'static, object_store::Result<Bytes>>,
    n: u64,
) -> object_store::Result<Bytes> {
    let mut out = BytesMut::with_capacity(n as usize);
    while (out.len() as u64) < n {
        let Some(chunk) = body.next().await else {
            break;
        };
        let chunk = chunk?;
        let want = (n as usize - out.len()).min(chunk.len());
        out.extend_from_slice(&chunk[..want]);
    }
    if (out.len() as u64) < n {
        return Err(object_store::Error::Generic {
            store: "S3",
            source: format!(
                "the object's body ended after {} bytes, before the {n} its size promised",
                out.len()
            )
            .into(),
        });
    }
    Ok(out.freeze())
}
