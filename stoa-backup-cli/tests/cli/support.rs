//! Running the command, writing configurations, small test databases.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
pub use stoa_backup_test_support::connect;
use stoa_backup_test_support::TestDatabase;
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
