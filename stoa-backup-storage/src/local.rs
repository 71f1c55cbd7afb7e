//! A sink over a local directory: a mounted volume (a Kubernetes PVC), a NAS mount, or a
//! plain directory.
//!
//! Objects are files under the root; key segments are directories. Writes are atomic: each
//! `put` streams into a hidden temporary file in the target directory (`.<name>.tmp-<random>`),
//! fsyncs it, renames it into place and fsyncs the directory. A failed, erroring or
//! cancelled `put` removes its temporary file and leaves any existing object untouched.
//!
//! No operation follows a symbolic link out of the root: intermediate directories and
//! objects are resolved and checked against the canonical root before use.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::{validate_prefix, ObjectKey};
use stoa_backup_core::sink::{not_found, ObjectMeta, PutResult, Sink};
use stoa_backup_core::stream::{self, ByteStream};
use tokio::io::AsyncWriteExt;

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
}

impl LocalSink {
    /// A sink rooted at `root`, which is created if missing and then canonicalized.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| {
            io_error(
                e,
                "new",
                None,
                format!("cannot create the root directory {}", root.display()),
            )
            .or_hint(
                "check that the volume is mounted and the backup user may create the directory",
            )
        })?;
        let root = fs::canonicalize(&root).map_err(|e| {
            io_error(
                e,
                "new",
                None,
                format!("cannot resolve the root directory {}", root.display()),
            )
        })?;
        if !root.is_dir() {
            return Err(
                Error::config(format!("{} is not a directory", root.display()))
                    .with_component(COMPONENT)
                    .with_operation("new")
                    .with_hint(
                        "point the local sink at a directory (the mount point of the volume)",
                    ),
            );
        }
        Ok(LocalSink { root })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
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

    async fn preflight(&self) -> Result<()> {
        let root = self.root.clone();
        blocking(move || preflight_blocking(&root)).await
    }

    async fn put(&self, key: &ObjectKey, mut stream: ByteStream) -> Result<PutResult> {
        if is_temp_name(key.file_name()) {
            return Err(Error::config(format!(
                "the file name {:?} is reserved for temporary files",
                key.file_name()
            ))
            .with_component(COMPONENT)
            .with_operation("put")
            .with_artifact(key.as_str())
            .with_hint(
                "choose a key whose last segment does not start with '.' and contain '.tmp-'",
            ));
        }

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
        Ok(PutResult { size })
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

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TMP_MARKER)
}

fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Removes a temporary file when dropped, unless disarmed after the rename.
#[derive(Debug)]
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl TempGuard {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove temporary file");
                }
            }
        }
    }
}

/// Creates (or walks) the directories of `key`'s parent one segment at a time, refusing
/// symbolic links that leave the root and files in the way. Returns the parent directory.
fn ensure_parent(root: &Path, key: &ObjectKey) -> Result<PathBuf> {
    let segments: Vec<&str> = key.segments().collect();
    let mut dir = root.to_path_buf();
    for seg in &segments[..segments.len() - 1] {
        dir.push(seg);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::canonicalize(&dir).map_err(|e| {
                    io_error(
                        e,
                        "put",
                        Some(key),
                        format!("cannot resolve the link {}", dir.display()),
                    )
                })?;
                if !target.starts_with(root) {
                    return Err(escape_error(
                        "put",
                        key,
                        "a symbolic link in the key's path",
                    ));
                }
                if !target.is_dir() {
                    return Err(not_a_directory(key, &dir));
                }
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(not_a_directory(key, &dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) => {
                    return Err(io_error(
                        e,
                        "put",
                        Some(key),
                        format!("cannot create the directory {}", dir.display()),
                    )
                    .or_hint("check free space and permissions on the volume"))
                }
            },
            Err(e) => {
                return Err(io_error(
                    e,
                    "put",
                    Some(key),
                    format!("cannot inspect {}", dir.display()),
                ))
            }
        }
    }
    // Belt and braces: the resolved parent must be under the root.
    let parent = fs::canonicalize(&dir).map_err(|e| {
        io_error(
            e,
            "put",
            Some(key),
            format!("cannot resolve the directory {}", dir.display()),
        )
    })?;
    if !parent.starts_with(root) {
        return Err(escape_error(
            "put",
            key,
            "a symbolic link in the key's path",
        ));
    }
    Ok(parent)
}

fn not_a_directory(key: &ObjectKey, path: &Path) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("{} is in the way: it is not a directory", path.display()),
    )
    .with_component(COMPONENT)
    .with_operation("put")
    .with_artifact(key.as_str())
    .with_hint("an object already exists where this key needs a directory; choose another key")
}

fn create_temp(root: &Path, key: &ObjectKey) -> Result<(fs::File, TempGuard, PathBuf)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let parent = ensure_parent(root, key)?;
        let final_path = parent.join(key.file_name());
        match fs::symlink_metadata(&final_path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    "refusing to replace a symbolic link with an object",
                )
                .with_component(COMPONENT)
                .with_operation("put")
                .with_artifact(key.as_str())
                .with_hint("remove the symbolic link under the backup directory"));
            }
            Ok(m) if m.is_dir() => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "a directory exists under this key, so no object can be stored there",
                )
                .with_component(COMPONENT)
                .with_operation("put")
                .with_artifact(key.as_str())
                .with_hint("keys must not name both an object and a prefix of other objects"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io_error(
                    e,
                    "put",
                    Some(key),
                    "cannot inspect the object's path",
                ));
            }
        }
        let tmp = parent.join(format!(
            ".{}{TMP_MARKER}{}",
            key.file_name(),
            random_suffix()
        ));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(file) => {
                let guard = TempGuard {
                    path: tmp,
                    armed: true,
                };
                return Ok((file, guard, final_path));
            }
            // A concurrent delete removed the (empty) parent between our mkdir and open.
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < PREPARE_ATTEMPTS => continue,
            Err(e) => {
                return Err(
                    io_error(e, "put", Some(key), "cannot create the temporary file")
                        .or_hint("check free space and permissions on the volume"),
                );
            }
        }
    }
}

fn commit(file: fs::File, mut guard: TempGuard, final_path: &Path, key: &ObjectKey) -> Result<()> {
    file.sync_all().map_err(|e| {
        io_error(e, "put", Some(key), "flushing the object to disk failed")
            .or_hint("check the health of the volume")
    })?;
    drop(file);
    fs::rename(&guard.path, final_path).map_err(|e| {
        io_error(e, "put", Some(key), "moving the object into place failed")
            .or_hint("check permissions on the volume")
    })?;
    guard.disarm();
    if let Some(dir) = final_path.parent() {
        sync_dir(dir).map_err(|e| {
            io_error(e, "put", Some(key), "flushing the directory to disk failed")
                .or_hint("check the health of the volume")
        })?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Resolves `path` (following links only inside the root) and opens it for reading.
fn open_for_read(root: &Path, path: &Path, key: &ObjectKey) -> Result<fs::File> {
    let resolved = match fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(local_not_found(key)),
        // A file where a directory is expected: no such object either.
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Err(local_not_found(key)),
        Err(e) => {
            return Err(io_error(
                e,
                "get",
                Some(key),
                "cannot resolve the object's path",
            ))
        }
    };
    if !resolved.starts_with(root) {
        return Err(escape_error("get", key, "a symbolic link"));
    }
    let file = match fs::File::open(&resolved) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(local_not_found(key)),
        Err(e) => return Err(io_error(e, "get", Some(key), "cannot open the object")),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_error(e, "get", Some(key), "cannot inspect the object"))?;
    if !meta.is_file() {
        return Err(local_not_found(key));
    }
    Ok(file)
}

fn local_not_found(key: &ObjectKey) -> Error {
    not_found("local", key)
}

fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>> {
    let list_err =
        |e: io::Error, what: String| io_error(e, "list", None, what).with_artifact(prefix);
    let mut start = root.to_path_buf();
    if !prefix.is_empty() {
        start.extend(prefix.split('/'));
    }
    let resolved = match fs::canonicalize(&start) {
        Ok(p) => p,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(list_err(e, format!("cannot resolve {}", start.display()))),
    };
    if !resolved.starts_with(root) {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            "refusing to follow a symbolic link: it leads outside the sink's root",
        )
        .with_component(COMPONENT)
        .with_operation("list")
        .with_artifact(prefix)
        .with_hint("remove the symbolic link under the backup directory"));
    }
    let meta = fs::metadata(&resolved)
        .map_err(|e| list_err(e, format!("cannot inspect {}", start.display())))?;
    let mut out = Vec::new();
    if meta.is_file() {
        // The prefix names an object exactly.
        let name = prefix.rsplit('/').next().unwrap_or(prefix);
        if !is_temp_name(name) {
            if let Ok(key) = ObjectKey::new(prefix) {
                out.push(object_meta(key, &meta));
            }
        }
        return Ok(out);
    }
    let mut stack: Vec<(PathBuf, String)> = vec![(start, prefix.to_string())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            // Removed concurrently (a delete pruning empty directories).
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(list_err(
                    e,
                    format!("cannot read the directory {}", dir.display()),
                ))
            }
        };
        for entry in entries {
            let entry = entry
                .map_err(|e| list_err(e, format!("cannot read the directory {}", dir.display())))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                tracing::warn!(path = %entry.path().display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let path = entry.path();
            let ft = match entry.file_type() {
                Ok(ft) => ft,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(list_err(e, format!("cannot inspect {}", path.display()))),
            };
            if ft.is_dir() {
                stack.push((path, child_rel));
                continue;
            }
            if is_temp_name(&name) {
                continue;
            }
            let meta = if ft.is_symlink() {
                // Only links to files inside the root count as objects; directory links are
                // not followed (no cycles, no escapes).
                match fs::canonicalize(&path) {
                    Ok(t) if t.starts_with(root) => match fs::metadata(&t) {
                        Ok(m) if m.is_file() => m,
                        _ => continue,
                    },
                    _ => continue,
                }
            } else if ft.is_file() {
                match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(list_err(e, format!("cannot inspect {}", path.display())))
                    }
                }
            } else {
                continue;
            };
            match ObjectKey::new(child_rel.as_str()) {
                Ok(key) if key.starts_with_prefix(prefix) => out.push(object_meta(key, &meta)),
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(path = %path.display(), "skipping a file whose path is not a valid key")
                }
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn object_meta(key: ObjectKey, meta: &fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        key,
        size: meta.len(),
        last_modified: meta.modified().ok().map(DateTime::<Utc>::from),
    }
}

fn delete_blocking(root: &Path, key: &ObjectKey) -> Result<()> {
    let mut path = root.to_path_buf();
    path.extend(key.segments());
    let parent = path
        .parent()
        .expect("a key has at least one segment")
        .to_path_buf();
    match fs::canonicalize(&parent) {
        Ok(p) if !p.starts_with(root) => {
            return Err(escape_error(
                "delete",
                key,
                "a symbolic link in the key's path",
            ))
        }
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(())
        }
        Err(e) => {
            return Err(io_error(
                e,
                "delete",
                Some(key),
                "cannot resolve the object's path",
            ))
        }
    }
    match fs::symlink_metadata(&path) {
        // A directory under the key is a prefix of other objects, not an object.
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e, "delete", Some(key), "cannot remove the object")),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(io_error(
                e,
                "delete",
                Some(key),
                "cannot inspect the object",
            ))
        }
    }
    if let Err(e) = sync_dir(&parent) {
        tracing::debug!(dir = %parent.display(), error = %e, "cannot fsync directory after delete");
    }
    // Prune now-empty parents, up to (not including) the root. `remove_dir` refuses
    // non-empty directories, so a concurrent put into one of them is not disturbed.
    let mut dir = parent;
    while dir != root && dir.starts_with(root) {
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            _ => break,
        }
        if fs::remove_dir(&dir).is_err() {
            break;
        }
        if !dir.pop() {
            break;
        }
    }
    Ok(())
}

fn preflight_blocking(root: &Path) -> Result<()> {
    let pf = |e: io::Error, msg: String| {
        Error::from_io(e, msg)
            .with_component(COMPONENT)
            .with_operation("preflight")
    };
    let meta = fs::metadata(root).map_err(|e| {
        pf(
            e,
            format!("the root directory {} is not accessible", root.display()),
        )
        .or_hint("check that the volume is mounted at this path")
    })?;
    if !meta.is_dir() {
        return Err(
            Error::config(format!("{} is not a directory", root.display()))
                .with_component(COMPONENT)
                .with_operation("preflight")
                .with_hint("point the local sink at a directory (the mount point of the volume)"),
        );
    }
    let probe = root.join(format!(".preflight{TMP_MARKER}{}", random_suffix()));
    let guard = TempGuard {
        path: probe.clone(),
        armed: true,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| {
            pf(e, format!("cannot create a file in {}", root.display())).or_hint(
                "the backup user needs write access to the volume; check permissions and that it is not mounted read-only",
            )
        })?;
    f.write_all(b"stoa-backup preflight\n")
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            pf(e, format!("cannot write to {}", root.display()))
                .or_hint("check free space and the health of the volume")
        })?;
    drop(f);
    drop(guard);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use stoa_backup_core::sink::SinkExt;

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k).unwrap()
    }

    /// All file names under `dir`, recursively (including hidden temporary files).
    fn all_files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn symlink_escape_is_refused_for_put_get_list_and_delete() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"outside").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path().join("root")).unwrap();
        std::os::unix::fs::symlink(outside.path(), sink.root().join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), sink.root().join("leak"))
            .unwrap();

        let err = sink
            .put_bytes(&key("escape/x"), Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let err = sink
            .put_bytes(&key("escape/sub/x"), Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(!outside.path().join("x").exists());
        assert!(
            !outside.path().join("sub").exists(),
            "put created a directory outside the root"
        );

        let err = sink
            .get(&key("escape/secret"))
            .await
            .err()
            .expect("get through a link must fail");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let err = sink
            .get(&key("leak"))
            .await
            .err()
            .expect("get of an escaping link must fail");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

        // Replacing a link (which could point anywhere) is refused too.
        let err = sink
            .put_bytes(&key("leak"), Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert_eq!(fs::read(outside.path().join("secret")).unwrap(), b"outside");

        let err = sink.list("escape").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(
            sink.list("").await.unwrap().is_empty(),
            "escaping links must not be listed"
        );

        let err = sink.delete(&key("escape/secret")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(outside.path().join("secret").exists());
    }

    #[tokio::test]
    async fn symlinks_inside_the_root_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path()).unwrap();
        fs::create_dir(sink.root().join("real")).unwrap();
        std::os::unix::fs::symlink(sink.root().join("real"), sink.root().join("alias")).unwrap();
        sink.put_bytes(&key("alias/a"), Bytes::from_static(b"hi"))
            .await
            .unwrap();
        assert_eq!(sink.get_bytes(&key("real/a")).await.unwrap(), b"hi");
        assert_eq!(sink.get_bytes(&key("alias/a")).await.unwrap(), b"hi");
    }

    #[tokio::test]
    async fn failed_stream_removes_the_temp_file_and_keeps_the_old_object() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path()).unwrap();
        let k = key("a/b/obj");
        sink.put_bytes(&k, Bytes::from_static(b"old"))
            .await
            .unwrap();
        let s: ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from(vec![7u8; 100_000])),
            Err(Error::source_failed("boom")),
        ]));
        let err = sink.put(&k, s).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Source);
        assert_eq!(err.message(), "boom");
        assert_eq!(err.operation(), Some("put"));
        assert_eq!(err.artifact(), Some("a/b/obj"));
        assert_eq!(sink.get_bytes(&k).await.unwrap(), b"old");
        assert_eq!(all_files(sink.root()), vec!["a/b/obj".to_string()]);
    }

    #[tokio::test]
    async fn dropped_put_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path()).unwrap();
        let k = key("x/obj");
        let s: ByteStream = Box::pin(
            futures::stream::iter(vec![Ok(Bytes::from(vec![1u8; 4096]))])
                .chain(futures::stream::pending()),
        );
        let res =
            tokio::time::timeout(std::time::Duration::from_millis(200), sink.put(&k, s)).await;
        assert!(
            res.is_err(),
            "the put should still be waiting for the stream"
        );
        assert!(
            all_files(sink.root()).is_empty(),
            "left behind: {:?}",
            all_files(sink.root())
        );
        assert!(!sink.exists(&k).await.unwrap());
    }

    #[tokio::test]
    async fn delete_prunes_empty_directories_but_not_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path().join("r")).unwrap();
        sink.put_bytes(&key("a/b/c"), Bytes::from_static(b"1"))
            .await
            .unwrap();
        sink.put_bytes(&key("a/d"), Bytes::from_static(b"2"))
            .await
            .unwrap();
        sink.delete(&key("a/b/c")).await.unwrap();
        assert!(!sink.root().join("a/b").exists());
        assert!(sink.root().join("a").exists());
        sink.delete(&key("a/d")).await.unwrap();
        assert!(!sink.root().join("a").exists());
        assert!(sink.root().exists());
        sink.delete(&key("a/d")).await.unwrap();
    }

    #[tokio::test]
    async fn temp_names_are_reserved_and_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path()).unwrap();
        let err = sink
            .put_bytes(&key("a/.x.tmp-1"), Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        fs::create_dir(sink.root().join("a")).unwrap();
        fs::write(sink.root().join("a/.x.tmp-1"), b"partial").unwrap();
        assert!(sink.list("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn preflight_and_describe() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path()).unwrap();
        sink.preflight().await.unwrap();
        assert!(
            all_files(sink.root()).is_empty(),
            "preflight must clean up its probe"
        );
        assert!(sink.describe().starts_with("local:/"));
        fs::remove_dir(sink.root()).unwrap();
        let err = sink.preflight().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.hint().unwrap().contains("mounted"));
    }

    #[tokio::test]
    async fn a_file_in_the_way_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path()).unwrap();
        sink.put_bytes(&key("a"), Bytes::from_static(b"1"))
            .await
            .unwrap();
        let err = sink
            .put_bytes(&key("a/b"), Bytes::from_static(b"2"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(sink.get(&key("a/b")).await.err().unwrap().kind() == ErrorKind::NotFound);
        assert!(sink.list("a/b").await.unwrap().is_empty());
    }
}
