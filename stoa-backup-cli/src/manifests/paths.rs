//! The directories of the pod, and paths of the configuration as the pod sees them.

use std::path::{Component, Path, PathBuf};

/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/stoa-backup";

/// The configuration file's name in the ConfigMap and in [`CONFIG_DIR`].
pub const CONFIG_FILE: &str = "stoa-backup.yaml";

/// The working directory of the command: relative paths of the configuration are relative
/// to it. The image creates it (read-only, as the whole root file system).
pub const WORKDIR: &str = "/var/lib/stoa-backup";

/// Temporary files (spools): an emptyDir.
pub const TMP: &str = "/tmp";

/// `XDG_CACHE_HOME`: the working clones of Git targets (an emptyDir: each run clones).
pub const CACHE: &str = "/var/cache/stoa-backup";

/// Directories a volume may not be mounted at: they hold the image's own files.
pub const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
    "/var/lib",
    "/var/cache",
];

/// `path` as the pod sees it: relative paths under [`WORKDIR`], `.` and `..` resolved
/// lexically.
pub fn in_pod(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        Path::new(WORKDIR).join(path)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether `inner` is `outer` or inside it.
pub fn is_within(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_under_the_working_directory() {
        assert_eq!(
            in_pod(Path::new("./stoa-backups")),
            Path::new("/var/lib/stoa-backup/stoa-backups")
        );
        assert_eq!(
            in_pod(Path::new("/run/secrets/../secrets/pg/./password")),
            Path::new("/run/secrets/pg/password")
        );
        assert_eq!(in_pod(Path::new("../../../..")), Path::new("/"));
        assert!(is_within(Path::new("/tmp/a"), Path::new("/tmp")));
        assert!(is_within(Path::new("/tmp"), Path::new("/tmp")));
        assert!(!is_within(Path::new("/tmpx"), Path::new("/tmp")));
    }
}
