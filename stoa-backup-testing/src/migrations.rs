//! [`Migrations`]: the SQL a pool's template is built from, and the hash that names it.

use std::path::Path;

use sha2::{Digest, Sha256};
use stoa_backup_core::error::{Error, Result};

/// The SQL that makes a service's schema, in order. Its content hash names the pool's
/// template, so a changed migration builds a new template and unchanged ones reuse the
/// template built by an earlier test binary or run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrations {
    steps: Vec<(String, String)>,
}

impl Migrations {
    /// No migrations yet (an empty database is a valid template).
    pub fn new() -> Self {
        Migrations::default()
    }

    /// Adds one step: a name (for errors and the hash) and its SQL (several statements
    /// allowed).
    pub fn sql(mut self, name: impl Into<String>, sql: impl Into<String>) -> Self {
        self.steps.push((name.into(), sql.into()));
        self
    }

    /// Every `*.sql` file of `dir`, in file-name order (`0001_init.sql`, `0002_…`), as
    /// sqlx, refinery and most migration tools name them.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Error::from_io(
                e,
                format!("cannot read the migrations directory {}", dir.display()),
            )
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| Error::from_io(e, format!("cannot list {}", dir.display())))?
                .path();
            if path.extension().is_some_and(|e| e == "sql") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(
                Error::config(format!("no *.sql migration in {}", dir.display()))
                    .with_hint("point from_dir at the directory holding the service's migrations"),
            );
        }
        let mut m = Migrations::new();
        for path in files {
            let sql = std::fs::read_to_string(&path)
                .map_err(|e| Error::from_io(e, format!("cannot read {}", path.display())))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            m = m.sql(name, sql);
        }
        Ok(m)
    }

    /// The steps, in order.
    pub fn steps(&self) -> impl Iterator<Item = (&str, &str)> {
        self.steps.iter().map(|(n, s)| (n.as_str(), s.as_str()))
    }

    /// SHA-256 over every step's name and SQL (length-prefixed, so no two sets collide by
    /// concatenation), hex.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for (name, sql) in &self.steps {
            for part in [name.as_bytes(), sql.as_bytes()] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_changes_with_any_byte_and_with_the_split_between_steps() {
        let a = Migrations::new().sql("1", "CREATE TABLE a();");
        assert_eq!(
            a.hash(),
            Migrations::new().sql("1", "CREATE TABLE a();").hash()
        );
        assert_ne!(
            a.hash(),
            Migrations::new().sql("1", "CREATE TABLE b();").hash()
        );
        assert_ne!(
            a.hash(),
            Migrations::new().sql("2", "CREATE TABLE a();").hash()
        );
        let split = Migrations::new().sql("x", "ab").sql("c", "d");
        let other = Migrations::new().sql("x", "a").sql("bc", "d");
        assert_ne!(split.hash(), other.hash());
        assert_eq!(a.hash().len(), 64);
    }

    #[test]
    fn a_directory_is_read_in_file_name_order_and_an_empty_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0002_b.sql"), "B").unwrap();
        std::fs::write(dir.path().join("0001_a.sql"), "A").unwrap();
        std::fs::write(dir.path().join("README.md"), "not sql").unwrap();
        let m = Migrations::from_dir(dir.path()).unwrap();
        let steps: Vec<_> = m.steps().collect();
        assert_eq!(steps, vec![("0001_a.sql", "A"), ("0002_b.sql", "B")]);
        let empty = tempfile::tempdir().unwrap();
        let err = Migrations::from_dir(empty.path()).unwrap_err();
        assert!(err.to_string().contains("no *.sql migration"), "{err}");
    }
}
