//! Conditional puts on a directory (Unix): create-if-absent with a hard link, which the
//! filesystem refuses when the name exists, and compare-and-swap under an exclusive `flock`
//! of the object's current file.
//!
//! - Versions are content digests ([`ObjectVersion::of_content`]).
//! - [`PutCondition::Absent`]: the bytes go to a temporary file beside the object (fsynced),
//!   which is then hard-linked to the object's name: `link(2)` fails with `EEXIST` when the
//!   name exists, atomically, so of concurrent creates exactly one wins.
//! - [`PutCondition::Matches`]: the object's file is opened and locked (`flock`, exclusive:
//!   other processes and other open files of this one wait). Once locked, the name must
//!   still lead to that file (same device and inode): a writer that replaced it meanwhile
//!   is seen, and the lock is taken again on the new file. Under the lock the content is
//!   compared with the version and the new file (written and fsynced beforehand) is renamed
//!   over the name. A writer waiting on the old file then finds the name moved on.
//!
//! Both work on local filesystems and NFS (whose client turns `flock` into byte-range locks
//! the server keeps), provided every writer of the key goes through conditional puts.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use bytes::Bytes;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::sink::{ObjectVersion, PutCondition, PutOutcome, VersionedObject};

use super::read::open_for_read;
use super::write::{commit, create_temp, sync_dir};
use super::{io_error, COMPONENT};

/// How often a compare-and-swap takes the lock again after the object was replaced while
/// it waited for it.
const LOCK_ATTEMPTS: usize = 8;

/// Reads the object whole with its content digest; `None` when there is none.
pub(super) fn get_versioned_blocking(
    root: &Path,
    path: &Path,
    key: &ObjectKey,
) -> Result<Option<VersionedObject>> {
    let mut file = match open_for_read(root, path, key) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.with_operation("get versioned")),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| io_error(e, "get versioned", Some(key), "cannot read the object"))?;
    Ok(Some(VersionedObject {
        version: ObjectVersion::of_content(&bytes),
        bytes: Bytes::from(bytes),
    }))
}

/// Writes `bytes` under `key` if `condition` holds (see the module documentation).
pub(super) fn put_if_blocking(
    root: &Path,
    key: &ObjectKey,
    bytes: &[u8],
    condition: &PutCondition,
) -> Result<PutOutcome> {
    let (mut file, guard, final_path) = create_temp(root, key)?;
    let write_err = |e: io::Error| {
        io_error(e, "conditional put", Some(key), "writing the object failed")
            .or_hint("check free space and the health of the volume")
    };
    file.write_all(bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    let version = ObjectVersion::of_content(bytes);
    match condition {
        PutCondition::Absent => {
            match fs::hard_link(&guard.path, &final_path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Ok(PutOutcome::ConditionFailed)
                }
                Err(e) => {
                    return Err(io_error(
                        e,
                        "conditional put",
                        Some(key),
                        "cannot link the object into place",
                    )
                    .or_hint("the volume must support hard links (local filesystems and NFS do)"))
                }
            }
            if let Some(dir) = final_path.parent() {
                sync_dir(dir).map_err(|e| {
                    io_error(
                        e,
                        "conditional put",
                        Some(key),
                        "flushing the directory failed",
                    )
                })?;
            }
            // The guard removes the temporary name; the object keeps the file.
            drop(guard);
            Ok(PutOutcome::Written(version))
        }
        PutCondition::Matches(expected) => {
            for _ in 0..LOCK_ATTEMPTS {
                let current = match fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&final_path)
                {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Ok(PutOutcome::ConditionFailed)
                    }
                    Err(e) => {
                        return Err(io_error(
                            e,
                            "conditional put",
                            Some(key),
                            "cannot open the object",
                        ))
                    }
                };
                current.lock().map_err(|e| {
                    io_error(e, "conditional put", Some(key), "cannot lock the object")
                        .or_hint("the volume must support file locks (flock)")
                })?;
                if !same_file(&current, &final_path, key)? {
                    continue; // replaced while we waited: lock the new one
                }
                let mut content = Vec::new();
                (&current).read_to_end(&mut content).map_err(|e| {
                    io_error(e, "conditional put", Some(key), "cannot read the object")
                })?;
                if ObjectVersion::of_content(&content) != *expected {
                    return Ok(PutOutcome::ConditionFailed);
                }
                commit(file, guard, &final_path, key)?;
                // Unlocked when `current` closes, after the rename.
                drop(current);
                return Ok(PutOutcome::Written(version));
            }
            Err(Error::new(
                ErrorKind::Conflict,
                format!("the object was replaced {LOCK_ATTEMPTS} times while waiting for its lock"),
            )
            .with_component(COMPONENT)
            .with_operation("conditional put")
            .with_artifact(key.as_str())
            .with_hint("many writers race for this object: try again"))
        }
    }
}

/// Whether `path` still names the open `file`.
fn same_file(file: &fs::File, path: &Path, key: &ObjectKey) -> Result<bool> {
    let open = file
        .metadata()
        .map_err(|e| io_error(e, "conditional put", Some(key), "cannot inspect the object"))?;
    match fs::symlink_metadata(path) {
        Ok(now) => Ok(now.dev() == open.dev() && now.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(
            e,
            "conditional put",
            Some(key),
            "cannot inspect the object",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    fn key() -> ObjectKey {
        ObjectKey::new("locks/db.json").unwrap()
    }

    fn read(root: &Path) -> Option<VersionedObject> {
        get_versioned_blocking(root, &root.join("locks/db.json"), &key()).unwrap()
    }

    #[test]
    fn a_create_succeeds_once_and_a_swap_needs_the_version_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        assert!(read(&root).is_none());
        let v1 = match put_if_blocking(&root, &key(), b"one", &PutCondition::Absent).unwrap() {
            PutOutcome::Written(v) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(v1, ObjectVersion::of_content(b"one"));
        assert_eq!(
            put_if_blocking(&root, &key(), b"two", &PutCondition::Absent).unwrap(),
            PutOutcome::ConditionFailed
        );
        let stale = PutCondition::Matches(ObjectVersion::of_content(b"zero"));
        assert_eq!(
            put_if_blocking(&root, &key(), b"two", &stale).unwrap(),
            PutOutcome::ConditionFailed
        );
        let got = read(&root).unwrap();
        assert_eq!((&got.bytes[..], &got.version), (&b"one"[..], &v1));
        assert!(
            put_if_blocking(&root, &key(), b"two", &PutCondition::Matches(v1))
                .unwrap()
                .is_written()
        );
        assert_eq!(&read(&root).unwrap().bytes[..], b"two");
        // No temporary file is left beside the object.
        let names: Vec<_> = fs::read_dir(root.join("locks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["db.json"]);
    }

    #[test]
    fn a_swap_of_a_missing_object_fails() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let c = PutCondition::Matches(ObjectVersion::of_content(b"x"));
        assert_eq!(
            put_if_blocking(&root, &key(), b"y", &c).unwrap(),
            PutOutcome::ConditionFailed
        );
        assert!(read(&root).is_none());
    }

    /// Threads racing to create, then to increment a counter by compare-and-swap: exactly
    /// one create wins, and no increment is lost.
    #[test]
    fn racing_writers_never_both_win() {
        let dir = tempfile::tempdir().unwrap();
        let root = Arc::new(dir.path().canonicalize().unwrap());
        const THREADS: usize = 8;
        const ROUNDS: usize = 25;
        let barrier = Arc::new(Barrier::new(THREADS));
        let created: usize = (0..THREADS)
            .map(|_| {
                let (root, barrier) = (root.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    put_if_blocking(&root, &key(), b"0", &PutCondition::Absent)
                        .unwrap()
                        .is_written()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum();
        assert_eq!(created, 1);
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (root, barrier) = (root.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..ROUNDS {
                        loop {
                            let now = read(&root).unwrap();
                            let n: usize =
                                std::str::from_utf8(&now.bytes).unwrap().parse().unwrap();
                            let next = (n + 1).to_string();
                            let c = PutCondition::Matches(now.version);
                            if put_if_blocking(&root, &key(), next.as_bytes(), &c)
                                .unwrap()
                                .is_written()
                            {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let last = read(&root).unwrap();
        assert_eq!(
            std::str::from_utf8(&last.bytes).unwrap(),
            (THREADS * ROUNDS).to_string()
        );
    }
}
