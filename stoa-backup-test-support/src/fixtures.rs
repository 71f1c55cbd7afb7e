//! The STOA fixtures this repository carries (`stoa-backup-test-support/fixtures/stoa`):
//! real CRDs, example resources, a Keycloak realm, Grafana dashboards and Helm values copied
//! from stoa-platform/stoa (Apache-2.0; see the folder's README and NOTICE).
//!
//! Every test, bench and example finds them through [`stoa_dir`] or [`path`], never through
//! a path outside the repository. `STOA_FIXTURES_DIR` points them at another copy.

use std::path::{Path, PathBuf};

/// Environment variable that overrides the fixture directory (the folder holding `crds/`,
/// `keycloak/`, `grafana/` and `helm/`).
pub const FIXTURES_DIR_ENV: &str = "STOA_FIXTURES_DIR";

/// The fixture directory: `$STOA_FIXTURES_DIR`, or the copy inside this crate.
pub fn stoa_dir() -> PathBuf {
    match std::env::var_os(FIXTURES_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/stoa"),
    }
}

/// The path of one fixture (relative to [`stoa_dir`]), checked to exist.
///
/// # Panics
/// When the fixture is missing, naming the path looked at and how to fix it.
pub fn path(relative: &str) -> PathBuf {
    let p = stoa_dir().join(relative);
    if !p.exists() {
        panic!(
            "STOA fixture `{relative}` is missing: looked at {}. The repository carries the \
             fixtures under stoa-backup-test-support/fixtures/stoa; restore them from git, or \
             point {FIXTURES_DIR_ENV} at a directory that holds them",
            p.display()
        );
    }
    p
}

/// The text of one fixture (relative to [`stoa_dir`]).
///
/// # Panics
/// When the fixture is missing or unreadable, naming it.
pub fn read(relative: &str) -> String {
    let p = path(relative);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("cannot read STOA fixture {}: {e}", p.display()))
}

/// The files of one fixture folder (relative to [`stoa_dir`]) whose names end in
/// `extension`, sorted by name.
///
/// # Panics
/// When the folder is missing or holds no such file.
pub fn files(folder: &str, extension: &str) -> Vec<PathBuf> {
    let dir = path(folder);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read STOA fixture folder {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    out.sort();
    assert!(
        !out.is_empty(),
        "STOA fixture folder {} holds no .{extension} file",
        dir.display()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_carried_fixtures_are_found() {
        assert!(read("keycloak/keycloak-realm.json").contains("\"realm\""));
        assert_eq!(files("crds", "yaml").len(), 7);
        assert!(path("helm/values.yaml").is_file());
    }

    #[test]
    #[should_panic(expected = "is missing")]
    fn a_missing_fixture_is_named() {
        path("crds/no-such-file.yaml");
    }
}
