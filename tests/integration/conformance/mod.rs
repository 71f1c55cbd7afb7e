//! The restorer conformance suite (`stoa_backup_test_support::restorer_conformance`) run on
//! every restorer, as the sink suite runs on every sink: one harness per restorer, each
//! backing up a small populated source with its real source and the pipeline and restoring
//! it into a target of its own (a directory, the local PostgreSQL server, the fakes).
#![cfg(unix)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{Map, Value};

#[cfg(feature = "kubernetes")]
mod custom_resources;
mod file;
#[cfg(feature = "grafana")]
mod grafana;
#[cfg(feature = "kubernetes")]
mod helm;
#[cfg(feature = "infisical")]
mod infisical;
#[cfg(all(feature = "keycloak", feature = "kubernetes"))]
mod kcsh;
#[cfg(feature = "keycloak")]
mod keycloak;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "vault")]
mod vault_kv;
#[cfg(feature = "vault")]
mod vault_raft;

/// `v` as text with every object's keys sorted, so that two equal documents compare equal
/// whatever order their fields came in.
pub(crate) fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// A hash of the paths, kinds, sizes, inodes and modification times under `path` (and of
/// whether it exists): it changes with every write there.
pub(crate) fn fingerprint(path: &Path) -> u64 {
    fn walk(p: &Path, h: &mut DefaultHasher) {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            "absent".hash(h);
            return;
        };
        (p, m.is_dir(), m.len(), m.mtime(), m.mtime_nsec(), m.ino()).hash(h);
        if m.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            names.sort();
            for n in names {
                walk(&n, h);
            }
        }
    }
    let mut h = DefaultHasher::new();
    walk(path, &mut h);
    h.finish()
}
