//! Reads: opening an object (links followed only inside the root) and listing a prefix.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::sink::{not_found, ObjectMeta};

use super::{escape_error, io_error, is_temp_name, COMPONENT};

/// Resolves `path` (following links only inside the root) and opens it for reading.
pub(super) fn open_for_read(root: &Path, path: &Path, key: &ObjectKey) -> Result<fs::File> {
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

pub(super) fn local_not_found(key: &ObjectKey) -> Error {
    not_found("local", key)
}

pub(super) fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>> {
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

pub(super) fn object_meta(key: ObjectKey, meta: &fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        key,
        size: meta.len(),
        last_modified: meta.modified().ok().map(DateTime::<Utc>::from),
    }
}
