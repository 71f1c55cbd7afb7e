//! The storage side: where artifacts and manifests go.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::RwLock;

use crate::error::{Error, ErrorKind, Result};
use crate::key::{validate_prefix, ObjectKey};
use crate::stream::ByteStream;

mod conditional;

pub use conditional::{
    conditional_unsupported, ObjectVersion, PutCondition, PutOutcome, VersionedObject,
};

/// What a sink can do, so callers and layers can adapt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkCapabilities {
    /// `put` is atomic: a reader sees the whole object or nothing.
    pub atomic_put: bool,
    /// The sink keeps history of its own (Git), so deleting does not destroy content.
    pub versioned: bool,
    /// Human-readable diffs matter (Git): text artifacts are better stored uncompressed.
    pub prefers_plain_text: bool,
    /// Largest object the sink accepts, if it has a limit.
    pub max_object_size: Option<u64>,
    /// Small writes are cheap (a file, an object). `false` where each write costs much (Git:
    /// a commit and a push), so the pipeline writes no heartbeat there.
    pub cheap_small_writes: bool,
    /// [`Sink::get_versioned`] and [`Sink::put_if`] work: small objects can be created only
    /// if absent and replaced only if unchanged, atomically with respect to each other (what
    /// a lease in the sink, [`SinkLock`](crate::lock::SinkLock), needs).
    pub conditional_put: bool,
}

impl Default for SinkCapabilities {
    fn default() -> Self {
        SinkCapabilities {
            atomic_put: true,
            versioned: false,
            prefers_plain_text: false,
            max_object_size: None,
            cheap_small_writes: true,
            conditional_put: false,
        }
    }
}

/// Metadata of a stored object, as returned by [`Sink::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: ObjectKey,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, if the backend knows it.
    pub last_modified: Option<DateTime<Utc>>,
}

/// The result of a successful [`Sink::put`]: [`PutResult::new`], and
/// [`PutResult::store_checked`] where the store itself checked what it received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutResult {
    /// Bytes written.
    pub size: u64,
    /// How the store itself checked every byte it received against checksums the sink
    /// computed from the bytes it was handed (S3's `x-amz-checksum-sha256` on every part,
    /// say), when it did. The pipeline then takes the stored bytes as checked and does not
    /// read them back; `None` (a plain file, a Git blob) makes it read them back once.
    pub store_checked: Option<String>,
}

impl PutResult {
    /// `size` bytes written, checked by nobody but the sink.
    pub fn new(size: u64) -> Self {
        PutResult {
            size,
            store_checked: None,
        }
    }

    /// The store checked the bytes it received, as `how` says (recorded in the manifest).
    pub fn store_checked(mut self, how: impl Into<String>) -> Self {
        self.store_checked = Some(how.into());
        self
    }
}

/// What a [`Sink::cleanup`] pass removed, and what it could not.
///
/// One item that cannot be removed (a permission, a vanished file) is recorded in
/// [`errors`](Self::errors) and the pass goes on with the others.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Temporary files of interrupted writes removed.
    pub temp_files_removed: u64,
    /// Bytes those temporary files held.
    pub bytes_freed: u64,
    /// Multipart uploads (object storage) aborted, so their parts stop being stored.
    pub multipart_uploads_aborted: u64,
    /// Empty directories removed.
    pub empty_dirs_removed: u64,
    /// Items that could not be cleaned up, each with its error.
    pub errors: Vec<CleanupFailure>,
}

impl CleanupReport {
    /// Whether anything was removed or aborted.
    pub fn removed_anything(&self) -> bool {
        self.temp_files_removed > 0
            || self.multipart_uploads_aborted > 0
            || self.empty_dirs_removed > 0
    }

    /// Adds the counts and errors of `other` to this report.
    pub fn merge(&mut self, other: CleanupReport) {
        self.temp_files_removed += other.temp_files_removed;
        self.bytes_freed += other.bytes_freed;
        self.multipart_uploads_aborted += other.multipart_uploads_aborted;
        self.empty_dirs_removed += other.empty_dirs_removed;
        self.errors.extend(other.errors);
    }
}

/// One item a [`Sink::cleanup`] pass could not remove.
#[derive(Debug)]
pub struct CleanupFailure {
    /// The item: a path under the sink's root, or an object key with its upload id.
    pub item: String,
    /// Why (with the component, the operation and a hint).
    pub error: Error,
}

/// A place to store artifacts.
///
/// Contract (checked for every backend by the conformance suite in test support):
/// - `put` consumes the stream with bounded buffering and is atomic: if the stream fails,
///   is dropped, or the write fails, nothing becomes visible under the key and an existing
///   object under the key is left as it was;
/// - `put` under an existing key replaces it;
/// - `get` of a missing key fails with [`ErrorKind::NotFound`];
/// - `list` returns every object under a prefix (recursively, however many pages);
/// - `delete` of a missing key succeeds;
/// - every key is an [`ObjectKey`], so no operation reaches outside the sink's root;
/// - with [`SinkCapabilities::conditional_put`]: of concurrent [`put_if`](Sink::put_if)s on
///   one key under the same condition at most one writes, and [`get_versioned`](Sink::get_versioned)
///   returns the version the last one wrote. Plain `put` and `delete` of the same key are not
///   ordered with them: keep conditional keys for conditional writes.
#[async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// A short, secret-free description for logs and errors (e.g. `local:/backups`).
    fn describe(&self) -> String;

    /// What this sink can do.
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::default()
    }

    /// Checks the sink is reachable and writable before a run starts.
    async fn preflight(&self) -> Result<()>;

    /// Stores a stream under `key`, atomically.
    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult>;

    /// Reads the object under `key` as a stream.
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream>;

    /// Lists all objects whose key starts with `prefix` (segment-wise; `""` lists all).
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Deletes the object under `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Removes what interrupted writes left behind and `list` cannot show: temporary files
    /// of a killed process (local directory), multipart uploads never completed nor aborted
    /// (object storage), empty directories. Only items last written (or started) before
    /// `older_than` are touched: a newer one may belong to a write still running.
    ///
    /// An item that cannot be removed is recorded in the report's errors; `Err` means the
    /// pass could not run at all (the storage is unreachable, or cannot enumerate such
    /// items). The default does nothing: a sink whose writes leave nothing behind.
    async fn cleanup(&self, older_than: DateTime<Utc>) -> Result<CleanupReport> {
        let _ = older_than;
        Ok(CleanupReport::default())
    }

    /// Reads a small object whole with its version, `None` when there is none. Where the
    /// sink keeps objects written by [`put_if`](Sink::put_if) apart from the others (Git
    /// keeps them as refs), this is how they are read. The default fails with
    /// [`ErrorKind::Unsupported`] (see [`SinkCapabilities::conditional_put`]).
    async fn get_versioned(&self, key: &ObjectKey) -> Result<Option<VersionedObject>> {
        Err(conditional_unsupported(
            &self.describe(),
            key,
            "get versioned",
        ))
    }

    /// Writes a small object only if `condition` holds, atomically: an absent key
    /// ([`PutCondition::Absent`]) or the version last read ([`PutCondition::Matches`]).
    /// `Ok(PutOutcome::ConditionFailed)` when it does not hold (nothing written). The
    /// default fails with [`ErrorKind::Unsupported`] (see
    /// [`SinkCapabilities::conditional_put`]).
    async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        condition: PutCondition,
    ) -> Result<PutOutcome> {
        let _ = (bytes, condition);
        Err(conditional_unsupported(
            &self.describe(),
            key,
            "conditional put",
        ))
    }
}

macro_rules! forward_sink {
    ($($ptr:ident),+) => {$(
        /// Forwards every method (the defaulted `capabilities` too) to the wrapped sink, so a
        /// shared or boxed sink (also `Arc<dyn Sink>`, `Box<dyn Sink>`) is a sink itself.
        #[async_trait]
        impl<S: Sink + ?Sized> Sink for $ptr<S> {
            fn describe(&self) -> String {
                (**self).describe()
            }
            fn capabilities(&self) -> SinkCapabilities {
                (**self).capabilities()
            }
            async fn preflight(&self) -> Result<()> {
                (**self).preflight().await
            }
            async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
                (**self).put(key, stream).await
            }
            async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
                (**self).get(key).await
            }
            async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
                (**self).list(prefix).await
            }
            async fn delete(&self, key: &ObjectKey) -> Result<()> {
                (**self).delete(key).await
            }
            async fn cleanup(&self, older_than: DateTime<Utc>) -> Result<CleanupReport> {
                (**self).cleanup(older_than).await
            }
            async fn get_versioned(&self, key: &ObjectKey) -> Result<Option<VersionedObject>> {
                (**self).get_versioned(key).await
            }
            async fn put_if(
                &self,
                key: &ObjectKey,
                bytes: Bytes,
                condition: PutCondition,
            ) -> Result<PutOutcome> {
                (**self).put_if(key, bytes, condition).await
            }
        }
    )+};
}

forward_sink!(Arc, Box);

/// Convenience methods on every sink.
#[async_trait]
pub trait SinkExt: Sink {
    /// Stores a small in-memory value (manifests, reports).
    async fn put_bytes(&self, key: &ObjectKey, bytes: Bytes) -> Result<PutResult> {
        self.put(key, crate::stream::once(bytes)).await
    }

    /// Reads a small object whole (manifests, reports).
    async fn get_bytes(&self, key: &ObjectKey) -> Result<Vec<u8>> {
        crate::stream::collect(self.get(key).await?).await
    }

    /// Whether an object exists under `key`.
    async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        match self.get(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<S: Sink + ?Sized> SinkExt for S {}

/// A sink that keeps objects in memory: for tests and for callers that snapshot small
/// state in-process. Puts are atomic (the object appears only once the stream ends well);
/// conditional puts compare content digests ([`ObjectVersion::of_content`]) under the
/// sink's lock.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    objects: Arc<RwLock<MemoryObjects>>,
}

type MemoryObjects = BTreeMap<ObjectKey, (Bytes, DateTime<Utc>)>;

impl MemorySink {
    /// An empty in-memory sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the bytes of an object in place (tests use this to simulate corruption).
    pub async fn overwrite_raw(&self, key: &ObjectKey, bytes: Bytes) {
        self.objects
            .write()
            .await
            .insert(key.clone(), (bytes, Utc::now()));
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            conditional_put: true,
            ..SinkCapabilities::default()
        }
    }

    async fn preflight(&self) -> Result<()> {
        Ok(())
    }

    async fn put(&self, key: &ObjectKey, mut stream: ByteStream) -> Result<PutResult> {
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.or_operation("put").or_artifact(key.as_str()))?;
            buf.extend_from_slice(&chunk);
        }
        let size = buf.len() as u64;
        self.objects
            .write()
            .await
            .insert(key.clone(), (buf.freeze(), Utc::now()));
        Ok(PutResult::new(size))
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        let objects = self.objects.read().await;
        let (bytes, _) = objects.get(key).ok_or_else(|| not_found("memory", key))?;
        Ok(crate::stream::once(bytes.clone()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let objects = self.objects.read().await;
        Ok(objects
            .iter()
            .filter(|(k, _)| k.starts_with_prefix(prefix))
            .map(|(k, (b, t))| ObjectMeta {
                key: k.clone(),
                size: b.len() as u64,
                last_modified: Some(*t),
            })
            .collect())
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.objects.write().await.remove(key);
        Ok(())
    }

    async fn get_versioned(&self, key: &ObjectKey) -> Result<Option<VersionedObject>> {
        Ok(self
            .objects
            .read()
            .await
            .get(key)
            .map(|(b, _)| VersionedObject {
                bytes: b.clone(),
                version: ObjectVersion::of_content(b),
            }))
    }

    async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        condition: PutCondition,
    ) -> Result<PutOutcome> {
        let mut objects = self.objects.write().await;
        let holds = match (&condition, objects.get(key)) {
            (PutCondition::Absent, current) => current.is_none(),
            (PutCondition::Matches(v), Some((b, _))) => ObjectVersion::of_content(b) == *v,
            (PutCondition::Matches(_), None) => false,
        };
        if !holds {
            return Ok(PutOutcome::ConditionFailed);
        }
        let version = ObjectVersion::of_content(&bytes);
        objects.insert(key.clone(), (bytes, Utc::now()));
        Ok(PutOutcome::Written(version))
    }
}

/// The standard "no such object" error for sinks.
pub fn not_found(sink: &str, key: &ObjectKey) -> Error {
    Error::new(ErrorKind::NotFound, "no object under this key")
        .with_component(format!("storage/{sink}"))
        .with_operation("get")
        .with_artifact(key.as_str())
        .with_hint("list the catalog to see which runs and artifacts exist")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memory sink that says it prefers plain text (not the default capabilities).
    #[derive(Debug, Default)]
    struct PlainText(MemorySink);

    #[async_trait]
    impl Sink for PlainText {
        fn describe(&self) -> String {
            "plain-text".into()
        }
        fn capabilities(&self) -> SinkCapabilities {
            SinkCapabilities {
                prefers_plain_text: true,
                max_object_size: Some(7),
                ..SinkCapabilities::default()
            }
        }
        async fn preflight(&self) -> Result<()> {
            Err(Error::new(
                ErrorKind::Unavailable,
                "preflight reached the inner sink",
            ))
        }
        async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
            self.0.put(key, stream).await
        }
        async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
            self.0.get(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
            self.0.list(prefix).await
        }
        async fn delete(&self, key: &ObjectKey) -> Result<()> {
            self.0.delete(key).await
        }
        async fn cleanup(&self, older_than: DateTime<Utc>) -> Result<CleanupReport> {
            // The cutoff comes back as a count, so the test sees it was passed on.
            Ok(CleanupReport {
                temp_files_removed: older_than.timestamp() as u64,
                ..CleanupReport::default()
            })
        }
    }

    async fn check(sink: &dyn Sink) {
        assert_eq!(sink.describe(), "plain-text");
        let caps = sink.capabilities();
        assert!(caps.prefers_plain_text);
        assert_eq!(caps.max_object_size, Some(7));
        let e = sink.preflight().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let key = ObjectKey::new("a/b").unwrap();
        sink.put_bytes(&key, Bytes::from_static(b"bytes"))
            .await
            .unwrap();
        assert_eq!(sink.get_bytes(&key).await.unwrap(), b"bytes");
        assert_eq!(sink.list("a").await.unwrap().len(), 1);
        sink.delete(&key).await.unwrap();
        assert!(!sink.exists(&key).await.unwrap());
        let cutoff = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let report = sink.cleanup(cutoff).await.unwrap();
        assert_eq!(report.temp_files_removed, 1_700_000_000);
    }

    #[tokio::test]
    async fn cleanup_does_nothing_by_default() {
        let sink = MemorySink::new();
        let report = sink.cleanup(Utc::now()).await.unwrap();
        assert!(!report.removed_anything());
        assert!(report.errors.is_empty());
    }

    #[tokio::test]
    async fn shared_and_boxed_sinks_forward_every_method() {
        check(&Arc::new(PlainText::default())).await;
        check(&(Arc::new(PlainText::default()) as Arc<dyn Sink>)).await;
        check(&Box::new(PlainText::default())).await;
        check(&(Box::new(PlainText::default()) as Box<dyn Sink>)).await;
    }
}
