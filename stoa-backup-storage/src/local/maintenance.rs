//! Checks and sweeps: the preflight probe, and the cleanup pass that removes what killed
//! writes left behind (their temporary files, and the directories only those kept alive).
//!
//! A killed process cannot run the guard that removes its temporary file, and `list` does
//! not show temporary files, so nothing else would ever find them. The pass walks the whole
//! tree (names first: only temporary files are inspected further) without following links.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;
use std::time::{Duration, SystemTime};

use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::sink::{CleanupFailure, CleanupReport};

use super::write::TempGuard;
use super::{io_error, is_temp_name, random_suffix, COMPONENT, TMP_MARKER};

/// Where runs live: directories under it that are empty and old are leftovers of killed runs
/// (or of deletes interrupted between removing the last object and pruning).
const RUNS_DIR: &str = "runs";

/// Removes temporary files last modified before `cutoff`, the directories that this left
/// empty, and empty directories under `runs/` last modified before `cutoff`. An entry that
/// cannot be removed is reported and the pass goes on; only an unreadable root fails it.
pub(super) fn cleanup_blocking(root: &Path, cutoff: SystemTime) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    fs::read_dir(root).map_err(|e| {
        io_error(
            e,
            "cleanup",
            None,
            format!("cannot read the root directory {}", root.display()),
        )
        .or_hint("check that the volume is mounted at this path")
    })?;
    sweep_dir(root, "", cutoff, &mut report);
    Ok(report)
}

/// What a swept directory holds afterwards.
#[derive(Debug, PartialEq, Eq)]
enum Swept {
    /// Entries that stay (objects, fresh temporary files, anything not ours).
    Kept,
    /// Nothing left, and nothing was there to begin with.
    WasEmpty,
    /// Nothing left, because this pass removed what it held.
    Emptied,
}

/// Sweeps the directory `rel` under `root`, children first.
fn sweep_dir(root: &Path, rel: &str, cutoff: SystemTime, report: &mut CleanupReport) -> Swept {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        // Removed concurrently (a delete pruning it): nothing to do here.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Swept::WasEmpty,
        Err(e) => {
            failure(report, rel, e, "cannot read the directory");
            return Swept::Kept;
        }
    };
    let (mut kept, mut removed) = (false, false);
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                failure(report, rel, e, "cannot read the directory");
                kept = true;
                continue;
            }
        };
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            kept = true;
            continue;
        };
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                failure(report, &child, e, "cannot inspect");
                kept = true;
                continue;
            }
        };
        if file_type.is_dir() {
            let gone = match sweep_dir(root, &child, cutoff, report) {
                Swept::Kept => false,
                Swept::Emptied => remove_empty_dir(root, &child, report),
                Swept::WasEmpty => {
                    is_under_runs(&child)
                        && older_than(&entry.path(), cutoff)
                        && remove_empty_dir(root, &child, report)
                }
            };
            kept |= !gone;
            removed |= gone;
        } else if file_type.is_file() && is_temp_name(&name) {
            match remove_if_stale(&entry.path(), cutoff) {
                Ok(Some(bytes)) => {
                    report.temp_files_removed += 1;
                    report.bytes_freed += bytes;
                    removed = true;
                }
                Ok(None) => kept = true,
                Err(e) => {
                    failure(report, &child, e, "cannot remove the temporary file");
                    kept = true;
                }
            }
        } else {
            // Objects, links (never followed nor removed), anything else.
            kept = true;
        }
    }
    match (kept, removed) {
        (true, _) => Swept::Kept,
        (false, true) => Swept::Emptied,
        (false, false) => Swept::WasEmpty,
    }
}

/// Removes the temporary file at `path` if it was last modified before `cutoff`; returns
/// its size, or `None` when it is fresh (or already gone).
fn remove_if_stale(path: &Path, cutoff: SystemTime) -> io::Result<Option<u64>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if meta.modified()? >= cutoff {
        return Ok(None);
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(Some(meta.len())),
        // Its own write finished or failed in between, and took care of it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `rel` lies strictly under `runs/`.
fn is_under_runs(rel: &str) -> bool {
    rel.strip_prefix(RUNS_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|r| !r.is_empty())
}

/// Whether `path` was last modified before `cutoff` (not when that cannot be told).
fn older_than(path: &Path, cutoff: SystemTime) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t < cutoff)
}

/// Removes the empty directory `rel`; returns whether it is gone. A directory that is no
/// longer empty (a concurrent put just wrote into it) stays, and that is no failure.
fn remove_empty_dir(root: &Path, rel: &str, report: &mut CleanupReport) -> bool {
    match fs::remove_dir(root.join(rel)) {
        Ok(()) => {
            report.empty_dirs_removed += 1;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => false,
        Err(e) => {
            failure(report, rel, e, "cannot remove the empty directory");
            false
        }
    }
}

fn failure(report: &mut CleanupReport, rel: &str, err: io::Error, what: &str) {
    let item = if rel.is_empty() { "." } else { rel };
    let error = io_error(err, "cleanup", None, format!("{what} {item}"))
        .with_artifact(item)
        .or_hint("check the permissions of the backup directory; the next cleanup retries");
    tracing::warn!(item, error = %error, "cleanup could not remove an item");
    report.errors.push(CleanupFailure {
        item: item.to_string(),
        error,
    });
}

/// Checks the root is a writable directory (a probe file, fsynced and removed), then sweeps
/// temporary files older than `stale_after` (see [`cleanup_blocking`]); what the sweep
/// cannot remove is logged, never a preflight failure.
pub(super) fn preflight_blocking(root: &Path, stale_after: Duration) -> Result<()> {
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

    let cutoff = SystemTime::now()
        .checked_sub(stale_after)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    match cleanup_blocking(root, cutoff) {
        Ok(report) if report.removed_anything() => tracing::info!(
            root = %root.display(),
            temp_files = report.temp_files_removed,
            bytes = report.bytes_freed,
            empty_dirs = report.empty_dirs_removed,
            "removed what interrupted writes left behind"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(root = %root.display(), error = %e, "cannot sweep stale temporary files")
        }
    }
    Ok(())
}
