//! Writes: the temporary file beside the object, its guard, the directories on the way, the
//! commit (fsync, rename, fsync); and deletes, which prune the directories left empty.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::ObjectKey;

use super::{escape_error, io_error, random_suffix, COMPONENT, PREPARE_ATTEMPTS, TMP_MARKER};

/// Removes a temporary file when dropped, unless disarmed after the rename.
#[derive(Debug)]
pub(super) struct TempGuard {
    pub(super) path: PathBuf,
    pub(super) armed: bool,
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
pub(super) fn ensure_parent(root: &Path, key: &ObjectKey) -> Result<PathBuf> {
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
            Err(e) if e.kind() == io::ErrorKind::NotFound => match create_dir_durably(&dir) {
                Ok(()) => {}
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

pub(super) fn not_a_directory(key: &ObjectKey, path: &Path) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("{} is in the way: it is not a directory", path.display()),
    )
    .with_component(COMPONENT)
    .with_operation("put")
    .with_artifact(key.as_str())
    .with_hint("an object already exists where this key needs a directory; choose another key")
}

pub(super) fn create_temp(root: &Path, key: &ObjectKey) -> Result<(fs::File, TempGuard, PathBuf)> {
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

pub(super) fn commit(
    file: fs::File,
    mut guard: TempGuard,
    final_path: &Path,
    key: &ObjectKey,
) -> Result<()> {
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

/// Creates the directory `dir`, whose parent exists, and fsyncs the parent so that the new
/// entry survives a crash (the objects later fsynced inside it would be lost with it). A
/// directory created concurrently by someone else counts as created, and is synced too:
/// its creator may not have got that far yet.
pub(super) fn create_dir_durably(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    synced::record(dir);
    fs::File::open(dir)?.sync_all()
}

pub(super) fn delete_blocking(root: &Path, key: &ObjectKey) -> Result<()> {
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

/// The directories fsynced so far, for tests to check what was made durable.
#[cfg(test)]
pub(super) mod synced {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static SYNCED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    pub(in super::super) fn record(dir: &Path) {
        SYNCED.lock().unwrap().push(dir.to_path_buf());
    }

    /// The fsynced directories under `base` (tests run in parallel, each in its own
    /// directory), relative to it; `""` is `base` itself.
    pub(in super::super) fn under(base: &Path) -> Vec<String> {
        let mut out: Vec<String> = SYNCED
            .lock()
            .unwrap()
            .iter()
            .filter_map(|d| d.strip_prefix(base).ok())
            .map(|d| d.display().to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
