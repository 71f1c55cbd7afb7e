//! A sink wrapper that injects faults, to test retry, atomicity and error paths.
//!
//! ```
//! # async fn demo() {
//! use stoa_backup_core::{MemorySink, ObjectKey, SinkExt};
//! use stoa_backup_test_support::faulty::{FaultySink, PutFault};
//!
//! let sink = FaultySink::new(MemorySink::new());
//! // The second put from now fails after 10 bytes reached the inner sink.
//! sink.fail_nth_put(2, PutFault::AfterBytes(10));
//! let k = ObjectKey::new("a").unwrap();
//! sink.put_bytes(&k, vec![0u8; 100].into()).await.unwrap();
//! assert!(sink.put_bytes(&k, vec![0u8; 100].into()).await.is_err());
//! assert_eq!(sink.counts().puts, 2);
//! # }
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::sink::{ObjectMeta, PutResult, Sink, SinkCapabilities};
use stoa_backup_core::stream::ByteStream;

/// The message of every injected error.
pub const INJECTED: &str = "injected fault";

/// When a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trigger {
    /// Never (the default).
    #[default]
    Never,
    /// On every call until cleared.
    Always,
    /// Once, on the n-th call after the trigger was set (`Nth(1)` is the next call).
    Nth(u64),
}

impl Trigger {
    /// Advances the trigger by one call; returns whether the fault fires on this call.
    fn fire(&mut self) -> bool {
        match *self {
            Trigger::Never => false,
            Trigger::Always => true,
            Trigger::Nth(n) if n <= 1 => {
                *self = Trigger::Never;
                true
            }
            Trigger::Nth(n) => {
                *self = Trigger::Nth(n - 1);
                false
            }
        }
    }
}

/// How an injected `put` fault happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutFault {
    /// Fail before the inner sink is called; the stream is not consumed.
    BeforeStream,
    /// Pass the first `n` bytes of the stream to the inner sink, then make the stream yield
    /// the injected error (so the inner sink's atomicity is exercised). If the stream ends
    /// before `n` bytes, the error is yielded at its end instead: the put always fails.
    AfterBytes(u64),
}

/// How many calls each operation received, and how many faults were injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallCounts {
    /// Calls to `preflight`.
    pub preflights: u64,
    /// Calls to `put`.
    pub puts: u64,
    /// Calls to `get`.
    pub gets: u64,
    /// Calls to `list`.
    pub lists: u64,
    /// Calls to `delete`.
    pub deletes: u64,
    /// Faults injected so far (over all operations).
    pub injected: u64,
}

#[derive(Debug, Default)]
struct Faults {
    preflight: Trigger,
    put: Trigger,
    put_fault: Option<PutFault>,
    get: Trigger,
    list: Trigger,
    delete: Trigger,
}

#[derive(Debug, Default)]
struct State {
    faults: Mutex<Faults>,
    retryable: AtomicBool,
    preflights: AtomicU64,
    puts: AtomicU64,
    gets: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
    injected: AtomicU64,
}

/// Wraps any [`Sink`] and injects faults configured at runtime (through `&self`, so a
/// sink shared with a pipeline can be reconfigured between steps). Clones share the
/// configuration and counters.
#[derive(Debug, Clone)]
pub struct FaultySink<S> {
    inner: S,
    state: Arc<State>,
}

impl<S: Sink> FaultySink<S> {
    /// Wraps `inner`; no fault is armed and injected errors are not retryable.
    pub fn new(inner: S) -> Self {
        FaultySink {
            inner,
            state: Arc::new(State::default()),
        }
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Whether injected errors say retrying may help.
    pub fn set_retryable(&self, retryable: bool) {
        self.state.retryable.store(retryable, Ordering::SeqCst);
    }

    /// Arms a `put` fault.
    pub fn set_put_fault(&self, trigger: Trigger, fault: PutFault) {
        let mut f = self.faults();
        f.put = trigger;
        f.put_fault = Some(fault);
    }

    /// Fails the `n`-th put from now (1 = the next one), once.
    pub fn fail_nth_put(&self, n: u64, fault: PutFault) {
        self.set_put_fault(Trigger::Nth(n), fault);
    }

    /// Fails the next put, once.
    pub fn fail_next_put(&self, fault: PutFault) {
        self.set_put_fault(Trigger::Nth(1), fault);
    }

    /// Arms a `get` fault.
    pub fn set_get_fault(&self, trigger: Trigger) {
        self.faults().get = trigger;
    }

    /// Arms a `list` fault.
    pub fn set_list_fault(&self, trigger: Trigger) {
        self.faults().list = trigger;
    }

    /// Arms a `delete` fault.
    pub fn set_delete_fault(&self, trigger: Trigger) {
        self.faults().delete = trigger;
    }

    /// Arms a `preflight` fault.
    pub fn set_preflight_fault(&self, trigger: Trigger) {
        self.faults().preflight = trigger;
    }

    /// Disarms every fault (counters are kept).
    pub fn clear_faults(&self) {
        *self.faults() = Faults::default();
    }

    /// Calls and injected faults so far.
    pub fn counts(&self) -> CallCounts {
        let s = &self.state;
        CallCounts {
            preflights: s.preflights.load(Ordering::SeqCst),
            puts: s.puts.load(Ordering::SeqCst),
            gets: s.gets.load(Ordering::SeqCst),
            lists: s.lists.load(Ordering::SeqCst),
            deletes: s.deletes.load(Ordering::SeqCst),
            injected: s.injected.load(Ordering::SeqCst),
        }
    }

    /// Resets the counters to zero.
    pub fn reset_counts(&self) {
        let s = &self.state;
        for c in [
            &s.preflights,
            &s.puts,
            &s.gets,
            &s.lists,
            &s.deletes,
            &s.injected,
        ] {
            c.store(0, Ordering::SeqCst);
        }
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        // A panic while holding the lock (in a test) must not hide the real failure.
        self.state.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fires(&self, pick: impl FnOnce(&mut Faults) -> &mut Trigger) -> bool {
        let fired = pick(&mut self.faults()).fire();
        if fired {
            self.state.injected.fetch_add(1, Ordering::SeqCst);
        }
        fired
    }
}

fn injected(state: &State, operation: &str, artifact: Option<&str>) -> Error {
    let e = Error::storage(INJECTED)
        .with_retryable(state.retryable.load(Ordering::SeqCst))
        .with_operation(operation);
    match artifact {
        Some(a) => e.with_artifact(a),
        None => e,
    }
}

/// Passes `limit` bytes through, then yields the injected error (at the latest at the end).
fn fail_after(stream: ByteStream, limit: u64, error: Error) -> ByteStream {
    struct St {
        inner: ByteStream,
        left: u64,
        error: Option<Error>,
    }
    let st = St {
        inner: stream,
        left: limit,
        error: Some(error),
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        let error = st.error.take()?;
        if st.left == 0 {
            return Some((Err(error), st));
        }
        match st.inner.next().await {
            Some(Ok(chunk)) => {
                let chunk: Bytes = if chunk.len() as u64 > st.left {
                    chunk.slice(..st.left as usize)
                } else {
                    chunk
                };
                st.left -= chunk.len() as u64;
                st.error = Some(error);
                Some((Ok(chunk), st))
            }
            // The source failed on its own first: pass its error on, inject nothing.
            Some(Err(e)) => Some((Err(e), st)),
            None => Some((Err(error), st)),
        }
    }))
}

#[async_trait]
impl<S: Sink> Sink for FaultySink<S> {
    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }

    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }

    async fn preflight(&self) -> Result<()> {
        self.state.preflights.fetch_add(1, Ordering::SeqCst);
        if self.fires(|f| &mut f.preflight) {
            return Err(injected(&self.state, "preflight", None));
        }
        self.inner.preflight().await
    }

    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        self.state.puts.fetch_add(1, Ordering::SeqCst);
        let fault = {
            let mut f = self.faults();
            if f.put.fire() {
                f.put_fault
            } else {
                None
            }
        };
        match fault {
            None => self.inner.put(key, stream).await,
            Some(PutFault::BeforeStream) => {
                self.state.injected.fetch_add(1, Ordering::SeqCst);
                Err(injected(&self.state, "put", Some(key.as_str())))
            }
            Some(PutFault::AfterBytes(n)) => {
                self.state.injected.fetch_add(1, Ordering::SeqCst);
                let err = injected(&self.state, "put", Some(key.as_str()));
                self.inner.put(key, fail_after(stream, n, err)).await
            }
        }
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        self.state.gets.fetch_add(1, Ordering::SeqCst);
        if self.fires(|f| &mut f.get) {
            return Err(injected(&self.state, "get", Some(key.as_str())));
        }
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.state.lists.fetch_add(1, Ordering::SeqCst);
        if self.fires(|f| &mut f.list) {
            return Err(injected(&self.state, "list", Some(prefix)));
        }
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.state.deletes.fetch_add(1, Ordering::SeqCst);
        if self.fires(|f| &mut f.delete) {
            return Err(injected(&self.state, "delete", Some(key.as_str())));
        }
        self.inner.delete(key).await
    }

    // Maintenance is passed through untouched: no fault is injected there.
    async fn cleanup(
        &self,
        older_than: chrono::DateTime<chrono::Utc>,
    ) -> Result<stoa_backup_core::CleanupReport> {
        self.inner.cleanup(older_than).await
    }

    // Conditional puts (run locks) too.
    async fn get_versioned(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<stoa_backup_core::VersionedObject>> {
        self.inner.get_versioned(key).await
    }

    async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        condition: stoa_backup_core::PutCondition,
    ) -> Result<stoa_backup_core::PutOutcome> {
        self.inner.put_if(key, bytes, condition).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoa_backup_core::{ErrorKind, MemorySink, SinkExt};

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k).unwrap()
    }

    #[tokio::test]
    async fn nth_put_fails_once_and_leaves_nothing() {
        let sink = FaultySink::new(MemorySink::new());
        sink.fail_nth_put(2, PutFault::AfterBytes(3));
        sink.put_bytes(&key("a"), Bytes::from_static(b"hello"))
            .await
            .unwrap();
        let err = sink
            .put_bytes(&key("b"), Bytes::from_static(b"hello"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Storage);
        assert_eq!(err.message(), INJECTED);
        assert!(!err.is_retryable());
        assert!(!sink.exists(&key("b")).await.unwrap());
        sink.put_bytes(&key("b"), Bytes::from_static(b"hello"))
            .await
            .unwrap();
        let c = sink.counts();
        assert_eq!((c.puts, c.injected), (3, 1));
    }

    #[tokio::test]
    async fn after_bytes_passes_exactly_n_bytes() {
        #[derive(Debug, Default)]
        struct Recorder(Mutex<Vec<u8>>);
        #[async_trait]
        impl Sink for Recorder {
            fn describe(&self) -> String {
                "recorder".into()
            }
            async fn preflight(&self) -> Result<()> {
                Ok(())
            }
            async fn put(&self, _: &ObjectKey, mut s: ByteStream) -> Result<PutResult> {
                while let Some(c) = s.next().await {
                    self.0.lock().unwrap().extend_from_slice(&c?);
                }
                Ok(PutResult::new(0))
            }
            async fn get(&self, k: &ObjectKey) -> Result<ByteStream> {
                Err(stoa_backup_core::sink::not_found("recorder", k))
            }
            async fn list(&self, _: &str) -> Result<Vec<ObjectMeta>> {
                Ok(vec![])
            }
            async fn delete(&self, _: &ObjectKey) -> Result<()> {
                Ok(())
            }
        }
        let sink = FaultySink::new(Recorder::default());
        sink.fail_next_put(PutFault::AfterBytes(5));
        let s: ByteStream = Box::pin(futures::stream::iter(
            [&b"abc"[..], b"defg", b"hij"].map(|c| Ok(Bytes::from_static(c))),
        ));
        assert!(sink.put(&key("k"), s).await.is_err());
        assert_eq!(&*sink.inner().0.lock().unwrap(), b"abcde");
    }

    #[tokio::test]
    async fn other_operations_fail_when_armed() {
        let sink = FaultySink::new(MemorySink::new());
        sink.set_retryable(true);
        sink.put_bytes(&key("a"), Bytes::from_static(b"x"))
            .await
            .unwrap();
        sink.set_get_fault(Trigger::Always);
        sink.set_list_fault(Trigger::Nth(1));
        sink.set_delete_fault(Trigger::Always);
        sink.set_preflight_fault(Trigger::Always);
        assert!(sink.get(&key("a")).await.err().unwrap().is_retryable());
        assert!(sink.get(&key("a")).await.is_err());
        assert!(sink.list("").await.is_err());
        assert_eq!(sink.list("").await.unwrap().len(), 1);
        assert!(sink.delete(&key("a")).await.is_err());
        assert!(sink.preflight().await.is_err());
        sink.set_put_fault(Trigger::Always, PutFault::BeforeStream);
        assert!(sink.put_bytes(&key("b"), Bytes::new()).await.is_err());
        sink.clear_faults();
        sink.delete(&key("a")).await.unwrap();
        let c = sink.counts();
        assert_eq!(
            c,
            CallCounts {
                preflights: 1,
                puts: 2,
                gets: 2,
                lists: 2,
                deletes: 2,
                injected: 6
            }
        );
        sink.reset_counts();
        assert_eq!(sink.counts(), CallCounts::default());
    }
}
