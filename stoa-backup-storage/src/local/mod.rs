//! A sink over a local directory: a mounted volume (a Kubernetes PVC), a NAS mount, or a
//! plain directory.
//!
//! Objects are files under the root; key segments are directories. Writes are atomic: each
//! `put` streams into a hidden temporary file in the target directory (`.<name>.tmp-<random>`),
//! fsyncs it, renames it into place and fsyncs the directory; every directory it creates
//! is fsynced in its parent. A failed, erroring or cancelled `put` (its future dropped)
//! removes its temporary file and leaves any existing object untouched.
//!
//! A killed process (SIGKILL, OOM, node loss) cannot remove its temporary file. `preflight`
//! removes temporary files not written to for [`LocalSink::stale_temp_after`] (a day by
//! default, so never one of a write still running), and [`Sink::cleanup`] does the same
//! with a cutoff of the caller's choosing, also pruning the empty directories left behind.
//!
//! The root must exist ([`LocalSink::new`]): a missing root may be an unmounted volume, and
//! writing into the mount point would fill the node's disk instead. [`LocalSink::builder`]
//! with [`create_root(true)`](LocalSinkBuilder::create_root) creates it.
//!
//! No operation follows a symbolic link out of the root: intermediate directories and
//! objects are resolved and checked against the canonical root before use.
//!
//! On Unix the sink has conditional puts ([`Sink::put_if`], for a run lock in the sink):
//! create-if-absent through a hard link, compare-and-swap of content digests under an
//! exclusive `flock` of the object (see `conditional.rs`); the volume needs hard links and
//! file locks, which local filesystems and NFS have.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::{validate_prefix, ObjectKey};
use stoa_backup_core::sink::{
    CleanupReport, ObjectMeta, PutCondition, PutOutcome, PutResult, Sink, SinkCapabilities,
    VersionedObject,
};
use stoa_backup_core::stream::{self, ByteStream};
use tokio::io::AsyncWriteExt;

mod builder;
#[cfg(unix)]
mod conditional;
mod maintenance;
mod read;
mod write;

pub use builder::{LocalSinkBuilder, DEFAULT_STALE_TEMP_AFTER, MIN_STALE_TEMP_AFTER};

#[cfg(test)]
mod tests;

use maintenance::{cleanup_blocking, preflight_blocking};
use read::{list_blocking, open_for_read};
use write::{commit, create_temp, delete_blocking};

const COMPONENT: &str = "storage/local";

/// Marker inside the names of temporary files; with a leading `.` it identifies files that
/// `list` skips and `put` refuses as keys.
const TMP_MARKER: &str = ".tmp-";

/// How often `put` retries preparing its directory when a concurrent `delete` removed an
/// empty parent directory in between.
const PREPARE_ATTEMPTS: usize = 5;

/// A [`Sink`] storing objects as files under a root directory (the PVC case).
///
/// ```no_run
/// # fn main() -> stoa_backup_core::Result<()> {
/// let sink = stoa_backup_storage::LocalSink::new("/backups")?;
/// # let _ = sink; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LocalSink {
    root: PathBuf,
    stale_temp_after: Duration,
}

impl LocalSink {
    /// A sink rooted at the existing directory `root` (canonicalized), with the default
    /// settings. A missing root is an error ([`ErrorKind::NotFound`]): it may be a volume
    /// that is not mounted. To create it, use [`LocalSink::builder`] with
    /// [`create_root(true)`](LocalSinkBuilder::create_root).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        LocalSinkBuilder::new(root).build()
    }

    /// A builder for a sink rooted at `root`, to create a missing root or to set how old
    /// temporary files of interrupted writes must be before `preflight` removes them.
    pub fn builder(root: impl Into<PathBuf>) -> LocalSinkBuilder {
        LocalSinkBuilder::new(root)
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How old a temporary file must be before `preflight` removes it
    /// ([`LocalSinkBuilder::stale_temp_after`]).
    pub fn stale_temp_after(&self) -> Duration {
        self.stale_temp_after
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(key.segments());
        p
    }
}

#[async_trait]
impl Sink for LocalSink {
    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }

    fn capabilities(&self) -> SinkCapabilities {
        let mut c = SinkCapabilities::default();
        c.conditional_put = cfg!(unix);
        c
    }

    /// Checks the root is a writable directory, and removes temporary files of interrupted
    /// writes older than [`LocalSink::stale_temp_after`] (a day by default).
    async fn preflight(&self) -> Result<()> {
        let (root, stale_after) = (self.root.clone(), self.stale_temp_after);
        blocking(move || preflight_blocking(&root, stale_after)).await
    }

    async fn put(&self, key: &ObjectKey, mut stream: ByteStream) -> Result<PutResult> {
        check_not_temp(key)?;

        // Create the parent directories (without following links out of the root) and the
        // temporary file beside the final path.
        let (root, k) = (self.root.clone(), key.clone());
        let (std_file, guard, final_path) = blocking(move || create_temp(&root, &k)).await?;
        let mut file = tokio::fs::File::from_std(std_file);

        // Stream chunk by chunk: memory stays bounded by one chunk plus tokio's write buffer.
        let mut size: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.or_operation("put").or_artifact(key.as_str()))?;
            file.write_all(&chunk).await.map_err(|e| {
                io_error(e, "put", Some(key), "writing the object failed")
                    .or_hint("check free space and the health of the volume")
            })?;
            size += chunk.len() as u64;
        }
        file.flush().await.map_err(|e| {
            io_error(e, "put", Some(key), "writing the object failed")
                .or_hint("check free space and the health of the volume")
        })?;
        let std_file = file.into_std().await;

        // Commit: fsync, rename into place, fsync the directory. Once started, this finishes
        // even if the caller drops the future (the stream has been consumed whole by then).
        let k = key.clone();
        blocking(move || commit(std_file, guard, &final_path, &k)).await?;
        Ok(PutResult::new(size))
    }

    #[cfg(unix)]
    async fn get_versioned(&self, key: &ObjectKey) -> Result<Option<VersionedObject>> {
        let (root, path, k) = (self.root.clone(), self.path_of(key), key.clone());
        blocking(move || conditional::get_versioned_blocking(&root, &path, &k)).await
    }

    #[cfg(unix)]
    async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        condition: PutCondition,
    ) -> Result<PutOutcome> {
        check_not_temp(key)?;
        let (root, k) = (self.root.clone(), key.clone());
        blocking(move || conditional::put_if_blocking(&root, &k, &bytes, &condition)).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        let (root, path, k) = (self.root.clone(), self.path_of(key), key.clone());
        let file = blocking(move || open_for_read(&root, &path, &k)).await?;
        Ok(stream::from_reader(tokio::fs::File::from_std(file)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix).map_err(|e| e.or_component(COMPONENT).or_operation("list"))?;
        let root = self.root.clone();
        let prefix = prefix.trim_end_matches('/').to_string();
        blocking(move || list_blocking(&root, &prefix)).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let (root, k) = (self.root.clone(), key.clone());
        blocking(move || delete_blocking(&root, &k)).await
    }

    /// Removes temporary files (`.<name>.tmp-<random>`) last written before `older_than`,
    /// the directories that only they kept, and empty directories under `runs/` older than
    /// `older_than`. Objects, links and other files are never touched.
    async fn cleanup(&self, older_than: DateTime<Utc>) -> Result<CleanupReport> {
        let (root, cutoff) = (self.root.clone(), SystemTime::from(older_than));
        blocking(move || cleanup_blocking(&root, cutoff)).await
    }
}

/// Keys whose last segment looks like a temporary file's are refused: such files are never
/// listed, and cleanup removes them.
fn check_not_temp(key: &ObjectKey) -> Result<()> {
    if !is_temp_name(key.file_name()) {
        return Ok(());
    }
    Err(Error::config(format!(
        "the file name {:?} is reserved for temporary files",
        key.file_name()
    ))
    .with_component(COMPONENT)
    .with_operation("put")
    .with_artifact(key.as_str())
    .with_hint("choose a key whose last segment does not start with '.' and contain '.tmp-'"))
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::internal(format!("a filesystem task failed: {e}")).with_component(COMPONENT)
    })?
}

fn io_error(err: io::Error, op: &str, key: Option<&ObjectKey>, msg: impl Into<String>) -> Error {
    let mut e = Error::from_io(err, msg)
        .with_component(COMPONENT)
        .with_operation(op);
    if let Some(k) = key {
        e = e.with_artifact(k.as_str());
    }
    if e.kind() == ErrorKind::PermissionDenied {
        e = e.or_hint("the backup user needs read and write access to the volume");
    }
    e
}

fn escape_error(op: &str, key: &ObjectKey, what: &str) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        format!("refusing to follow {what}: it leads outside the sink's root"),
    )
    .with_component(COMPONENT)
    .with_operation(op)
    .with_artifact(key.as_str())
    .with_hint(
        "remove the symbolic link under the backup directory; objects must stay under the root",
    )
}

/// Whether a file name is that of a write in progress (`.<name>.tmp-<random>`): never an
/// object, never listed; [`Sink::cleanup`] and preflight remove stale ones. For tools and
/// tests that look at a backup directory themselves.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TMP_MARKER)
}

fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}
