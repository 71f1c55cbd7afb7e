//! Running the command, writing configurations, small test databases.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
pub use stoa_backup_test_support::connect;
pub use stoa_backup_test_support::TestDatabase;
use tokio::process::Command;

/// The built command.
pub const BIN: &str = env!("CARGO_BIN_EXE_stoa-backup");

/// Variables of the test process that would change what the command does.
const CLEARED: &[&str] = &[
    "STOA_BACKUP_CONFIG",
    "DATABASE_URL",
    "RUST_LOG",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGPASSFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
];

/// What a run of the command printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as the one JSON document `--json` prints.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }

    /// Asserts the exit status, showing the output when it is another.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit status:\n{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A command in `dir` with a clean environment plus `env`.
pub fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    for var in CLEARED {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.kill_on_drop(true);
    cmd
}

/// Runs the command to its end.
pub async fn stoa(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = command(dir, args, env)
        .output()
        .await
        .expect("run stoa-backup");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temporary directory holding `stoa-backup.yaml` (and what the test puts beside it).
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` in the workspace, returning its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Where the local target of [`local_config`] keeps its runs.
    pub fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    /// The run directories under the local target.
    pub fn run_dirs(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.backups().join("runs")) {
            Ok(entries) => entries.map(|e| e.expect("entry").path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The runs that have a manifest (complete runs).
    pub fn manifests(&self) -> Vec<PathBuf> {
        self.run_dirs()
            .into_iter()
            .map(|d| d.join("manifest.json"))
            .filter(|m| m.is_file())
            .collect()
    }
}

/// A configuration with one local target (`<workspace>/backups`) and the given components
/// (YAML, indented under `components:`).
pub fn local_config(ws: &Workspace, components: &str) -> String {
    format!(
        "storage:\n  local:\n    type: local\n    path: {}\n    create: true\ncomponents:\n{components}",
        ws.backups().display()
    )
}

/// A database of its own with a small table (`rows` rows).
pub async fn small_database(prefix: &str, rows: i32) -> TestDatabase {
    let db = TestDatabase::create(prefix).await;
    let client = connect(db.url()).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, {rows}) g;"
        ))
        .await
        .expect("seed the test database");
    db
}

/// A random token (secrets and names that must not collide across parallel tests).
pub fn token(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("{prefix}-{nanos:08x}-{:x}", std::process::id())
}

/// A database with a STOA-like schema of its own: a schema, tables with a foreign key,
/// jsonb, bytea and timestamps, an index, a view and sequences advanced by `rows` inserts.
pub async fn rich_database(prefix: &str, rows: i32) -> TestDatabase {
    let db = TestDatabase::create(prefix).await;
    let client = connect(db.url()).await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA stoa;
             CREATE TABLE stoa.tenants (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE,
                                        settings jsonb NOT NULL DEFAULT '{{}}');
             CREATE TABLE stoa.apis (id bigserial PRIMARY KEY,
                                     tenant_id bigint NOT NULL REFERENCES stoa.tenants(id),
                                     spec bytea, title text,
                                     created timestamptz NOT NULL DEFAULT '2026-01-01T00:00:00Z');
             CREATE INDEX apis_tenant ON stoa.apis (tenant_id);
             CREATE VIEW stoa.api_counts AS SELECT tenant_id, count(*) AS apis FROM stoa.apis GROUP BY 1;
             INSERT INTO stoa.tenants (name, settings)
               SELECT 'tenant ' || g, jsonb_build_object('plan', 'gold', 'n', g, 'ü', 'ñ')
               FROM generate_series(1, 10) g;
             INSERT INTO stoa.apis (tenant_id, spec, title)
               SELECT 1 + g % 10, decode(md5(g::text), 'hex'), 'API « ' || g || ' »'
               FROM generate_series(1, {rows}) g;"
        ))
        .await
        .expect("seed the test database");
    db
}

/// What a database holds, to compare a restore with its source: its schema (pg_dump
/// `--schema-only`, without comments and pg_dump's per-run `\restrict` keys), every table's
/// row count and ordered md5, and every sequence's last value.
#[derive(Debug, PartialEq, Eq)]
pub struct DatabaseState {
    pub schema: String,
    pub tables: std::collections::BTreeMap<String, (i64, String)>,
    pub sequences: std::collections::BTreeMap<String, Option<i64>>,
}

/// Reads the [`DatabaseState`] of the database at `url`.
pub async fn database_state(url: &str) -> DatabaseState {
    let out = Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--dbname",
            url,
        ])
        .output()
        .await
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump --schema-only failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let schema = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("--")
                && !l.starts_with("\\restrict")
                && !l.starts_with("\\unrestrict")
                && !l.trim().is_empty()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let client = connect(url).await;
    let mut tables = std::collections::BTreeMap::new();
    for row in client
        .query(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .expect("list tables")
    {
        let table: String = row.get(0);
        let r = client
            .query_one(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {table} t"
                ),
                &[],
            )
            .await
            .expect("fingerprint a table");
        tables.insert(table, (r.get(0), r.get(1)));
    }
    let mut sequences = std::collections::BTreeMap::new();
    for r in client
        .query(
            "SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences",
            &[],
        )
        .await
        .expect("list sequences")
    {
        sequences.insert(r.get::<_, String>(0), r.get::<_, Option<i64>>(1));
    }
    assert!(!tables.is_empty(), "no table in {url}");
    DatabaseState {
        schema,
        tables,
        sequences,
    }
}

/// A free database name that is dropped when the value is: the name a restore creates.
pub async fn restore_target(prefix: &str) -> TestDatabase {
    let db = TestDatabase::create(prefix).await;
    connect(db.admin_url())
        .await
        .batch_execute(&format!("DROP DATABASE \"{}\"", db.name()))
        .await
        .expect("free the name");
    db
}

/// Whether database `name` exists on the test server.
pub async fn database_exists(name: &str) -> bool {
    let client = connect(&stoa_backup_test_support::test_database_url()).await;
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("query pg_database")
        .is_some()
}
