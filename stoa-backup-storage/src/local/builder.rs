//! Configuration of a [`LocalSink`]: whether a missing root may be created, and the age at
//! which `preflight` sweeps temporary files left by interrupted writes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stoa_backup_core::error::{Error, Result};

use super::write::create_dir_durably;
use super::{io_error, LocalSink, COMPONENT};

/// How old a temporary file must be before `preflight` removes it, by default: a day, far
/// longer than any write keeps a temporary file without writing to it.
pub const DEFAULT_STALE_TEMP_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The youngest [`LocalSinkBuilder::stale_temp_after`] accepted: a younger temporary file
/// may belong to a write that is waiting for its source.
pub const MIN_STALE_TEMP_AFTER: Duration = Duration::from_secs(60);

/// Configures a [`LocalSink`] ([`LocalSink::builder`]).
///
/// ```no_run
/// # fn main() -> stoa_backup_core::Result<()> {
/// use std::time::Duration;
/// use stoa_backup_storage::LocalSink;
///
/// let sink = LocalSink::builder("./stoa-backups")
///     .create_root(true)
///     .stale_temp_after(Duration::from_secs(6 * 60 * 60))
///     .build()?;
/// # let _ = sink; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LocalSinkBuilder {
    root: PathBuf,
    create_root: bool,
    stale_temp_after: Duration,
}

impl LocalSinkBuilder {
    /// A builder for a sink rooted at `root`; the root must exist unless
    /// [`create_root`](Self::create_root) says otherwise.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalSinkBuilder {
            root: root.into(),
            create_root: false,
            stale_temp_after: DEFAULT_STALE_TEMP_AFTER,
        }
    }

    /// Creates the root directory (and its missing parents) when it does not exist
    /// (default: no). Leave it off for a mounted volume: if the volume is not mounted, the
    /// sink must fail rather than fill the disk underneath the mount point.
    pub fn create_root(mut self, yes: bool) -> Self {
        self.create_root = yes;
        self
    }

    /// Age after which `preflight` removes temporary files of interrupted writes (default
    /// [`DEFAULT_STALE_TEMP_AFTER`], at least [`MIN_STALE_TEMP_AFTER`]). A temporary file's
    /// age counts from its last write, so a write in progress keeps its file young.
    pub fn stale_temp_after(mut self, age: Duration) -> Self {
        self.stale_temp_after = age;
        self
    }

    /// Checks the root (creating it if asked) and builds the sink.
    pub fn build(self) -> Result<LocalSink> {
        if self.stale_temp_after < MIN_STALE_TEMP_AFTER {
            return Err(Error::config(format!(
                "stale_temp_after of {:?} is too short",
                self.stale_temp_after
            ))
            .with_component(COMPONENT)
            .with_operation("new")
            .with_hint(format!(
                "use at least {MIN_STALE_TEMP_AFTER:?}: a younger temporary file may belong to a \
                 write still waiting for its source"
            )));
        }
        let root = self.root;
        match fs::metadata(&root) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.create_root => {
                create_root(&root)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io_error(
                    e,
                    "new",
                    None,
                    format!("the root directory {} does not exist", root.display()),
                )
                .with_hint(
                    "check that the volume is mounted at this path (writing into an unmounted \
                     mount point would fill the node's disk); create the directory, or build the \
                     sink with LocalSink::builder(path).create_root(true)",
                ))
            }
            Err(e) => {
                return Err(io_error(
                    e,
                    "new",
                    None,
                    format!("the root directory {} is not accessible", root.display()),
                )
                .or_hint("check that the volume is mounted and readable by the backup user"))
            }
        }
        let canonical = fs::canonicalize(&root).map_err(|e| {
            io_error(
                e,
                "new",
                None,
                format!("cannot resolve the root directory {}", root.display()),
            )
        })?;
        if !canonical.is_dir() {
            return Err(
                Error::config(format!("{} is not a directory", canonical.display()))
                    .with_component(COMPONENT)
                    .with_operation("new")
                    .with_hint(
                        "point the local sink at a directory (the mount point of the volume)",
                    ),
            );
        }
        Ok(LocalSink {
            root: canonical,
            stale_temp_after: self.stale_temp_after,
        })
    }
}

/// Creates `root` and its missing parents, each made durable in its parent directory.
fn create_root(root: &Path) -> Result<()> {
    // The missing directories, outermost first.
    let mut missing = Vec::new();
    let mut dir = root;
    loop {
        match fs::symlink_metadata(dir) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(dir),
            Err(e) => {
                return Err(io_error(
                    e,
                    "new",
                    None,
                    format!("cannot inspect {}", dir.display()),
                ))
            }
        }
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p,
            _ => break,
        }
    }
    for dir in missing.into_iter().rev() {
        create_dir_durably(dir).map_err(|e| {
            io_error(
                e,
                "new",
                None,
                format!("cannot create the root directory {}", root.display()),
            )
            .or_hint("check that the backup user may create the directory")
        })?;
    }
    Ok(())
}
