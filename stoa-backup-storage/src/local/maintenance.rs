//! Checks and sweeps: the preflight probe.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use stoa_backup_core::error::{Error, Result};

use super::write::TempGuard;
use super::{random_suffix, COMPONENT, TMP_MARKER};

pub(super) fn preflight_blocking(root: &Path) -> Result<()> {
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
