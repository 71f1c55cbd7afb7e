//! Sink layers: wrappers that leave bytes alone (retry, metrics).
//!
//! Retrying a `put` would need the stream again, which a layer cannot have: the pipeline
//! retries a whole artifact by re-running the source's export instead. [`RetrySink`]
//! retries the other operations. Every layer forwards every method, `cleanup` included.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;

use crate::error::Result;
use crate::key::ObjectKey;
use crate::retry::RetryPolicy;
use crate::sink::{
    CleanupReport, ObjectMeta, PutCondition, PutOutcome, PutResult, Sink, SinkCapabilities,
    VersionedObject,
};
use crate::stream::ByteStream;

/// Retries `preflight`, `get`, `list`, `delete`, `cleanup`, `get_versioned` and `put_if` on
/// retryable errors as its
/// [`RetryPolicy`] says (exponential back-off with jitter, bounded attempts, the remote's
/// `Retry-After` honoured).
#[derive(Debug, Clone)]
pub struct RetrySink<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S: Sink> RetrySink<S> {
    /// Wraps `inner`: 4 attempts, starting at 100 ms and doubling (up to 30 s), equal jitter.
    pub fn new(inner: S) -> Self {
        RetrySink {
            inner,
            policy: RetryPolicy {
                attempts: 4,
                base_delay: Duration::from_millis(100),
                ..RetryPolicy::default()
            },
        }
    }

    /// Sets the retry policy.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    async fn retry<T, F, Fut>(&self, op: &str, f: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T>> + Send,
    {
        let what = format!("{op} on {}", self.inner.describe());
        self.policy.retry(&what, f).await
    }
}

#[async_trait]
impl<S: Sink> Sink for RetrySink<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }
    async fn preflight(&self) -> Result<()> {
        self.retry("preflight", || self.inner.preflight()).await
    }
    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        self.inner.put(key, stream).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        self.retry("get", || self.inner.get(key)).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.retry("list", || self.inner.list(prefix)).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.retry("delete", || self.inner.delete(key)).await
    }
    async fn cleanup(&self, older_than: DateTime<Utc>) -> Result<CleanupReport> {
        // A pass only removes what is still there, so running it again is harmless.
        self.retry("cleanup", || self.inner.cleanup(older_than))
            .await
    }
    async fn get_versioned(&self, key: &ObjectKey) -> Result<Option<VersionedObject>> {
        self.retry("get versioned", || self.inner.get_versioned(key))
            .await
    }
    async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        condition: PutCondition,
    ) -> Result<PutOutcome> {
        // A retry after a write whose answer was lost finds the condition failed; its
        // caller reads the object back to tell (SinkLock does).
        self.retry("conditional put", || {
            self.inner.put_if(key, bytes.clone(), condition.clone())
        })
        .await
    }
}

/// Counters kept by [`MetricsSink`].
#[derive(Debug, Default)]
pub struct SinkMetrics {
    /// Successful puts.
    pub puts: AtomicU64,
    /// Bytes written by successful puts.
    pub bytes_written: AtomicU64,
    /// Bytes read through `get` streams.
    pub bytes_read: AtomicU64,
    /// Failed operations of any kind.
    pub errors: AtomicU64,
    /// Deletes.
    pub deletes: AtomicU64,
}

/// Counts operations and bytes, and traces each call.
#[derive(Debug, Clone)]
pub struct MetricsSink<S> {
    inner: S,
    metrics: Arc<SinkMetrics>,
}

impl<S: Sink> MetricsSink<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        MetricsSink {
            inner,
            metrics: Arc::default(),
        }
    }

    /// The counters (shared; read them at any time).
    pub fn metrics(&self) -> Arc<SinkMetrics> {
        self.metrics.clone()
    }

    fn count<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

struct CountingStream {
    inner: ByteStream,
    metrics: Arc<SinkMetrics>,
}

impl Stream for CountingStream {
    type Item = Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let r = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(b))) = &r {
            self.metrics
                .bytes_read
                .fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        r
    }
}

#[async_trait]
impl<S: Sink> Sink for MetricsSink<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }
    async fn preflight(&self) -> Result<()> {
        let r = self.inner.preflight().await;
        self.count(r)
    }
    #[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        let r = self.inner.put(key, stream).await;
        if let Ok(p) = &r {
            self.metrics.puts.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .bytes_written
                .fetch_add(p.size, Ordering::Relaxed);
        }
        self.count(r)
    }
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        let r = self.inner.get(key).await.map(|s| {
            Box::pin(CountingStream {
                inner: s,
                metrics: self.metrics.clone(),
            }) as ByteStream
        });
        self.count(r)
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let r = self.inner.list(prefix).await;
        self.count(r)
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let r = self.inner.delete(key).await;
        if r.is_ok() {
            self.metrics.deletes.fetch_add(1, Ordering::Relaxed);
        }
        self.count(r)
    }
    async fn cleanup(&self, older_than: DateTime<Utc>) -> Result<CleanupReport> {
        let r = self.inner.cleanup(older_than).await;
        self.count(r)
    }
    async fn get_versioned(&self, key: &ObjectKey) -> Result<Option<VersionedObject>> {
        let r = self.inner.get_versioned(key).await;
        if let Ok(Some(o)) = &r {
            self.metrics
                .bytes_read
                .fetch_add(o.bytes.len() as u64, Ordering::Relaxed);
        }
        self.count(r)
    }
    async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        condition: PutCondition,
    ) -> Result<PutOutcome> {
        let size = bytes.len() as u64;
        let r = self.inner.put_if(key, bytes, condition).await;
        if let Ok(PutOutcome::Written(_)) = &r {
            self.metrics.puts.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .bytes_written
                .fetch_add(size, Ordering::Relaxed);
        }
        self.count(r)
    }
}

impl fmt::Display for SinkMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "puts={} written={}B read={}B deletes={} errors={}",
            self.puts.load(Ordering::Relaxed),
            self.bytes_written.load(Ordering::Relaxed),
            self.bytes_read.load(Ordering::Relaxed),
            self.deletes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind};
    use crate::sink::{MemorySink, SinkExt};
    use std::sync::atomic::AtomicU32;

    #[derive(Debug, Default)]
    struct Flaky {
        inner: MemorySink,
        list_failures_left: AtomicU32,
    }

    #[async_trait]
    impl Sink for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }
        async fn preflight(&self) -> Result<()> {
            Ok(())
        }
        async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
            self.inner.put(key, stream).await
        }
        async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
            if self.list_failures_left.load(Ordering::SeqCst) > 0 {
                self.list_failures_left.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::new(ErrorKind::Unavailable, "503 slow down"));
            }
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &ObjectKey) -> Result<()> {
            self.inner.delete(key).await
        }
        async fn cleanup(
            &self,
            _older_than: chrono::DateTime<chrono::Utc>,
        ) -> Result<crate::sink::CleanupReport> {
            if self.list_failures_left.load(Ordering::SeqCst) > 0 {
                self.list_failures_left.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::new(ErrorKind::Unavailable, "503 slow down"));
            }
            Ok(crate::sink::CleanupReport {
                temp_files_removed: 2,
                ..Default::default()
            })
        }
    }

    #[tokio::test]
    async fn layers_pass_cleanup_on_to_the_wrapped_sink() {
        let flaky = Flaky::default();
        flaky.list_failures_left.store(1, Ordering::SeqCst);
        let s = MetricsSink::new(RetrySink::new(flaky).with_policy(RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        }));
        let report = s.cleanup(chrono::Utc::now()).await.unwrap();
        assert_eq!(report.temp_files_removed, 2, "{report:?}");
    }

    #[tokio::test]
    async fn retry_recovers_from_transient_errors_but_gives_up_eventually() {
        let flaky = Flaky::default();
        flaky.list_failures_left.store(2, Ordering::SeqCst);
        let s = RetrySink::new(flaky).with_policy(RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        });
        assert!(s.list("").await.is_ok());
        s.inner.list_failures_left.store(5, Ordering::SeqCst);
        let err = s.list("").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert_eq!(s.inner.list_failures_left.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn metrics_count_bytes_both_ways() {
        let s = MetricsSink::new(MemorySink::new());
        let k = ObjectKey::new("a/b").unwrap();
        s.put_bytes(&k, Bytes::from_static(b"12345")).await.unwrap();
        assert_eq!(s.get_bytes(&k).await.unwrap(), b"12345");
        assert!(s.get(&ObjectKey::new("missing").unwrap()).await.is_err());
        let m = s.metrics();
        assert_eq!(m.bytes_written.load(Ordering::Relaxed), 5);
        assert_eq!(m.bytes_read.load(Ordering::Relaxed), 5);
        assert_eq!(m.errors.load(Ordering::Relaxed), 1);
    }
}
