//! The facts PostgreSQL artifacts record in the manifest, as typed structs: written by the
//! sources, read by the restorer and the verifiers (and by callers, with
//! [`ArtifactRecord::facts_as`](stoa_backup_core::ArtifactRecord::facts_as)).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stoa_backup_core::error::{Error, Result};

use super::dump_header::{DumpSummary, ParseError};

/// Facts of a database dump (`<db>.dump`), as [`PostgresSource`](super::PostgresSource)
/// and `PostgresPodSource` record them. Only `database` is known at discovery; the rest is
/// recorded once the dump is stored. Facts a mode does not take are absent (exec mode has
/// no SQL connection: no server facts, no exact counts), and a dump another source stored
/// (e.g. a `pg_dump -Fc` command) may have none: restore and verification still work, they
/// only compare less.
///
/// ```
/// # fn demo(record: &stoa_backup_core::ArtifactRecord) -> stoa_backup_core::Result<()> {
/// use stoa_backup_providers::postgres::PostgresFacts;
///
/// let facts: PostgresFacts = record.facts_as()?;
/// for (table, rows) in facts.row_counts.unwrap_or_default() {
///     println!("{table} had {rows} rows in {:?}", facts.database);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresFacts {
    /// The database dumped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The server's version (`16.4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The server's `server_version_num` (`160004`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version_num: Option<i32>,
    /// `pg_dump --version` of the pg_dump that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_dump_version: Option<String>,
    /// `pg_database_size` at backup time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_size_bytes: Option<i64>,
    /// The database's encoding (`UTF8`); restores create the database with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The database's `LC_COLLATE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lc_collate: Option<String>,
    /// The database's `LC_CTYPE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lc_ctype: Option<String>,
    /// The pg_dump command line (no password in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Planner row estimates of the tables whose data was dumped (`None`: never analyzed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_estimates: Option<BTreeMap<String, Option<i64>>>,
    /// Exact row counts per table (keyed by [`qualified_name`](super::qualified_name)),
    /// taken in the snapshot pg_dump dumped; restores and the scratch-restore verifier
    /// compare against them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<BTreeMap<String, i64>>,
    /// Why exact counts were not taken (exec mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_counts: Option<String>,
    /// Bytes pg_dump wrote (exec mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_bytes: Option<u64>,
    /// What the dump's header and table of contents said, read as the dump passed.
    #[serde(flatten)]
    pub toc: TocFacts,
}

/// What a dump's header and table of contents said (flattened into [`PostgresFacts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TocFacts {
    /// TOC entries the header announces; the archive verifier checks `pg_restore --list`
    /// against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toc_entries: Option<u64>,
    /// Archive format version (`1.14-0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_version: Option<String>,
    /// Compression of the data blocks (`none`, `gzip`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_compression: Option<String>,
    /// Number of tables whose data is in the dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables_with_data: Option<u64>,
    /// Why the table of contents was not read (an archive version this reader does not know).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toc_note: Option<String>,
}

impl TocFacts {
    /// The facts of what the dump inspector learned (`None`: the stream ended before its
    /// table of contents). An archive that is not a readable custom-format dump is an
    /// integrity error (the pipeline names the artifact); `pg_dump` names the program for
    /// the hint.
    pub(crate) fn read(
        summary: Option<&std::result::Result<Arc<DumpSummary>, ParseError>>,
        pg_dump: &str,
    ) -> Result<TocFacts> {
        match summary {
            Some(Ok(s)) => Ok(TocFacts {
                toc_entries: Some(s.header.toc_entries),
                archive_version: Some(s.header.version_string()),
                dump_compression: Some(s.header.compression.to_string()),
                tables_with_data: Some(s.table_data.len() as u64),
                toc_note: None,
            }),
            Some(Err(ParseError::Unsupported(m))) => Ok(TocFacts {
                toc_note: Some(format!("table of contents not read: {m}")),
                ..TocFacts::default()
            }),
            Some(Err(e)) => Err(Error::integrity(
                "pg_dump output is not a readable custom-format archive",
            )
            .with_source(e.clone())
            .with_hint(format!(
                "check that {pg_dump} is the real PostgreSQL pg_dump and re-run"
            ))),
            None => Ok(TocFacts::default()),
        }
    }
}

/// The value of the `kind` fact of the globals artifact.
pub const GLOBALS_KIND: &str = "globals";

/// Facts of the `pg_dumpall --globals-only` artifact (`globals.sql`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresGlobalsFacts {
    /// Always [`GLOBALS_KIND`].
    pub kind: String,
    /// The server's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// `pg_dumpall --version` of the pg_dumpall that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_dumpall_version: Option<String>,
    /// Whether role passwords (hashes) are in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_passwords: Option<bool>,
    /// The pg_dumpall command line (no password in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl Default for PostgresGlobalsFacts {
    fn default() -> Self {
        PostgresGlobalsFacts {
            kind: GLOBALS_KIND.to_string(),
            server_version: None,
            pg_dumpall_version: None,
            role_passwords: None,
            command: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stoa_backup_core::source::to_facts;

    fn record(facts: serde_json::Value) -> stoa_backup_core::ArtifactRecord {
        crate::record_with_facts("postgres", "pg_dump", "stoa.dump", facts)
    }

    /// A direct-mode dump's facts as the code before typed facts wrote them.
    fn direct_mode_facts() -> serde_json::Value {
        json!({
            "database": "stoa",
            "server_version": "16.4",
            "server_version_num": 160004,
            "pg_dump_version": "pg_dump (PostgreSQL) 16.4",
            "database_size_bytes": 8_000_000,
            "encoding": "UTF8",
            "lc_collate": "C.UTF-8",
            "lc_ctype": "C.UTF-8",
            "command": "pg_dump --format=custom --compress=0 'dbname=stoa'",
            "row_estimates": {"stoa.audit_events": 5000, "stoa.tenants": null},
            "toc_entries": 42,
            "archive_version": "1.14-0",
            "dump_compression": "none",
            "tables_with_data": 2,
            "row_counts": {"stoa.audit_events": 5000, "stoa.tenants": 3},
        })
    }

    #[test]
    fn reads_the_facts_dumps_recorded_before_typed_facts() {
        let f: PostgresFacts = record(direct_mode_facts()).facts_as().unwrap();
        assert_eq!(f.database.as_deref(), Some("stoa"));
        assert_eq!(f.server_version_num, Some(160004));
        assert_eq!(f.encoding.as_deref(), Some("UTF8"));
        assert_eq!(f.toc.toc_entries, Some(42));
        assert_eq!(f.toc.dump_compression.as_deref(), Some("none"));
        assert_eq!(f.row_counts.as_ref().unwrap()["stoa.tenants"], 3);
        assert_eq!(f.row_estimates.as_ref().unwrap()["stoa.tenants"], None);
        // Written back, the keys are exactly those.
        assert_eq!(
            serde_json::Value::Object(to_facts(&f).unwrap()),
            direct_mode_facts()
        );

        let exec = json!({
            "database": "stoa",
            "command": "kubectl exec … pg_dump",
            "exact_counts": "not taken in exec mode (no SQL connection)",
            "stdout_bytes": 1234,
            "toc_note": "table of contents not read: archive version 1.99",
        });
        let f: PostgresFacts = record(exec.clone()).facts_as().unwrap();
        assert_eq!(f.row_counts, None);
        assert_eq!(f.stdout_bytes, Some(1234));
        assert!(f.toc.toc_note.is_some());
        assert_eq!(serde_json::Value::Object(to_facts(&f).unwrap()), exec);

        let globals = json!({
            "kind": "globals",
            "server_version": "16.4",
            "pg_dumpall_version": "pg_dumpall (PostgreSQL) 16.4",
            "role_passwords": true,
            "command": "pg_dumpall --globals-only",
        });
        let g: PostgresGlobalsFacts = record(globals.clone()).facts_as().unwrap();
        assert_eq!(g.role_passwords, Some(true));
        assert_eq!(serde_json::Value::Object(to_facts(&g).unwrap()), globals);
        // A dump another source stored: no facts, nothing to compare, still readable.
        let none: PostgresFacts = record(json!({"path": "/backups/stoa.dump"}))
            .facts_as()
            .unwrap();
        assert_eq!(none, PostgresFacts::default());
        // At discovery a plan holds only what is known then.
        assert_eq!(
            serde_json::Value::Object(to_facts(&PostgresGlobalsFacts::default()).unwrap()),
            json!({"kind": "globals"})
        );
    }

    #[test]
    fn a_damaged_row_count_is_an_integrity_error_naming_the_fact() {
        let mut facts = direct_mode_facts();
        facts["row_counts"]["stoa.tenants"] = json!("three");
        let err = record(facts).facts_as::<PostgresFacts>().unwrap_err();
        assert_eq!(err.kind(), stoa_backup_core::ErrorKind::Integrity);
        assert_eq!(err.artifact(), Some("runs/r/postgres/stoa.dump"));
        assert!(err.to_string().contains("'row_counts'"), "{err}");
    }
}
