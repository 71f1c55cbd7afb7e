//! The restorer conformance suite (`stoa_backup_test_support::restorer_conformance`) run on
//! every restorer, as the sink suite runs on every sink: one harness per restorer, each
//! backing up a small populated source with its real source and the pipeline and restoring
//! it into a target of its own (a directory, the local PostgreSQL server, the fakes).

use serde_json::{Map, Value};

mod file;
#[cfg(feature = "infisical")]
mod infisical;
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
