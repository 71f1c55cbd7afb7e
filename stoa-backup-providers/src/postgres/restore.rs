//! [`PostgresRestorer`]: restores a custom-format dump, by default into a new database
//! that can be swapped into place, never leaving a half-restored database under the live
//! name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::manifest::ArtifactRecord;
use stoa_backup_core::process::{run_with_stdin, CommandSpec};
use stoa_backup_core::restore::{ExistingDataPolicy, RestoreOptions, RestoreReport, Restorer};
use stoa_backup_core::retry::{RetryDecision, RetryPolicy};
use stoa_backup_core::stream::ByteStream;
use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;

use super::conn::{quote_ident, quote_literal, PgConnection};
use super::facts::PostgresFacts;
use super::queries;
use super::{COMPONENT, DUMP_CONTENT_TYPE, GLOBALS_CONTENT_TYPE};

/// Where a dump is restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The safe default: create database `name` and restore into it. With `swap`, the dump
    /// is restored into a staging database beside the live one, and only once it restored
    /// completely are connections to the live database terminated, the live database
    /// renamed to `<name>_old_<run id>`, and the staging database renamed to `name`.
    /// Without `swap`, `name` must not exist yet.
    NewDatabase {
        /// Name the restored database ends up with.
        name: String,
        /// Whether to swap it in place of an existing database of that name.
        swap: bool,
    },
    /// Restore over an existing database with `pg_restore --clean --if-exists`, in a single
    /// transaction (a failure leaves the database as it was). Needs
    /// [`ExistingDataPolicy::Overwrite`] when the database holds tables.
    Clean {
        /// The existing database.
        database: String,
    },
}

/// Restores PostgreSQL custom-format dumps with `pg_restore --exit-on-error`.
#[derive(Debug, Clone)]
pub struct PostgresRestorer {
    conn: PgConnection,
    target: RestoreTarget,
    jobs: u32,
    no_owner: bool,
    no_privileges: bool,
    pg_restore: String,
    spool_dir: Option<PathBuf>,
    check_counts: bool,
    component: String,
    lock_timeout: Duration,
}

/// How long a statement of the restore waits for a lock another session holds (on the live
/// database, say) before it fails; see [`PostgresRestorer::lock_timeout`].
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

impl PostgresRestorer {
    /// A restorer reaching the server through `conn` (its database is used for
    /// administrative statements such as `CREATE DATABASE`).
    pub fn new(conn: PgConnection, target: RestoreTarget) -> Self {
        PostgresRestorer {
            conn,
            target,
            jobs: 1,
            no_owner: true,
            no_privileges: true,
            pg_restore: "pg_restore".to_string(),
            spool_dir: None,
            check_counts: true,
            component: COMPONENT.to_string(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// Parallel restore with `n` jobs. The dump is first spooled to a local temp file (a
    /// parallel restore needs a seekable file). Not available with [`RestoreTarget::Clean`].
    pub fn jobs(mut self, n: u32) -> Self {
        self.jobs = n.max(1);
        self
    }

    /// `--no-owner` (default on).
    pub fn no_owner(mut self, on: bool) -> Self {
        self.no_owner = on;
        self
    }

    /// `--no-privileges` (default on).
    pub fn no_privileges(mut self, on: bool) -> Self {
        self.no_privileges = on;
        self
    }

    /// Path of pg_restore.
    pub fn pg_restore_path(mut self, path: impl Into<String>) -> Self {
        self.pg_restore = path.into();
        self
    }

    /// Directory for the spool file of parallel restores (default: the system temp dir).
    pub fn spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(dir.into());
        self
    }

    /// Whether to compare exact row counts after the restore with those recorded at backup
    /// time, failing on a difference (default on).
    pub fn check_row_counts(mut self, on: bool) -> Self {
        self.check_counts = on;
        self
    }

    /// The component this restorer accepts (default `postgres`).
    pub fn component(mut self, name: impl Into<String>) -> Self {
        self.component = name.into();
        self
    }

    /// How long each administrative statement (create, rename, drop a database) waits for a
    /// lock another session holds before failing with [`ErrorKind::Unavailable`] naming that
    /// session (default [`DEFAULT_LOCK_TIMEOUT`], at least 1 ms). Without it, a session
    /// holding a lock on the live database would block the swap for as long as it likes.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    fn restore_args(&self) -> Vec<String> {
        let mut args = vec!["--exit-on-error".to_string()];
        if self.no_owner {
            args.push("--no-owner".into());
        }
        if self.no_privileges {
            args.push("--no-privileges".into());
        }
        args
    }

    /// A connection for `CREATE`/`ALTER`/`DROP DATABASE`: to the configured database,
    /// unless that is the one being replaced (a database cannot rename itself).
    async fn admin(&self, avoid: &str) -> Result<Client> {
        let db = if self.conn.get_dbname() != avoid {
            self.conn.get_dbname()
        } else if avoid == "postgres" {
            "template1"
        } else {
            "postgres"
        };
        let admin = self
            .conn
            .connect(db)
            .await
            .map_err(|e| e.or_operation("restore"))?;
        let ms = self.lock_timeout.as_millis();
        admin
            .batch_execute(&format!("SET lock_timeout = '{ms}ms'"))
            .await
            .map_err(|e| admin_error(e, "setting the lock timeout"))?;
        Ok(admin)
    }

    async fn restore_new(
        &self,
        artifact: &ArtifactRecord,
        facts: &PostgresFacts,
        plain: ByteStream,
        options: &RestoreOptions,
        name: &str,
        swap: bool,
    ) -> Result<RestoreReport> {
        check_db_name(name)?;
        let run = run_suffix(artifact);
        let admin = self.admin(name).await?;
        let live_exists = queries::database_exists(&admin, name).await?;
        if live_exists && !swap {
            return Err(Error::new(ErrorKind::Conflict, format!("database '{name}' already exists on {}", self.conn.endpoint()))
                .with_hint("restore with swap: true (the old database is kept as <name>_old_<run id>), use RestoreTarget::Clean, or pick another name"));
        }
        let staging = if swap {
            derived_name(name, "_restore_", &run)
        } else {
            name.to_string()
        };
        let old = derived_name(name, "_old_", &run);
        if swap && queries::database_exists(&admin, &staging).await? {
            return Err(conflict(&staging, "a staging database of an earlier restore of this run is still there: drop it first"));
        }
        if swap && live_exists && queries::database_exists(&admin, &old).await? {
            return Err(conflict(
                &old,
                "this run was already swapped in once; drop or rename the old copy first",
            ));
        }
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        if options.dry_run {
            report.notes.push(format!(
                "would create database '{staging}' and pg_restore '{}' into it",
                artifact.key
            ));
            if swap {
                if live_exists {
                    report.notes.push(format!(
                        "would rename '{name}' to '{old}' and '{staging}' to '{name}'"
                    ));
                } else {
                    report
                        .notes
                        .push(format!("would rename '{staging}' to '{name}'"));
                }
            }
            return Ok(report);
        }
        create_database(&admin, &staging, facts.encoding.as_deref()).await?;
        let restored = async {
            self.run_pg_restore(&staging, plain, &[]).await?;
            self.count_and_compare(facts, &staging).await
        }
        .await;
        let counts = match restored {
            Ok(c) => c,
            Err(e) => {
                // Never leave a half-restored database behind.
                drop_database(&admin, &staging).await;
                return Err(e);
            }
        };
        report.created = 1;
        if swap {
            if live_exists {
                if let Err(e) = swap_in(&admin, name, &staging, &old).await {
                    drop_database(&admin, &staging).await;
                    return Err(e);
                }
                report
                    .facts
                    .insert("previous_database".into(), old.clone().into());
                report.notes.push(format!(
                    "the previous '{name}' is kept as '{old}'; drop it once satisfied"
                ));
            } else if let Err(e) = rename_database(&admin, &staging, name).await {
                drop_database(&admin, &staging).await;
                return Err(e);
            }
        }
        report.facts.insert("restored_database".into(), name.into());
        report
            .facts
            .insert("row_counts".into(), counts_json(&counts));
        Ok(report)
    }

    async fn restore_clean(
        &self,
        artifact: &ArtifactRecord,
        facts: &PostgresFacts,
        plain: ByteStream,
        options: &RestoreOptions,
        database: &str,
    ) -> Result<RestoreReport> {
        check_db_name(database)?;
        if self.jobs > 1 {
            return Err(Error::config("parallel restore (jobs > 1) cannot run in a single transaction, so it is refused over an existing database")
                .with_hint("use RestoreTarget::NewDatabase { swap: true } for parallel restores"));
        }
        let admin = self.admin(database).await?;
        if !queries::database_exists(&admin, database).await? {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "database '{database}' does not exist on {}",
                    self.conn.endpoint()
                ),
            )
            .with_hint("create it first, or use RestoreTarget::NewDatabase"));
        }
        drop(admin);
        let target = self
            .conn
            .connect(database)
            .await
            .map_err(|e| e.or_operation("restore"))?;
        let tables = queries::user_tables(&target).await?;
        drop(target);
        if !tables.is_empty() && options.existing != ExistingDataPolicy::Overwrite {
            return Err(Error::new(ErrorKind::Conflict, format!("database '{database}' holds {} tables", tables.len()))
                .with_hint("set RestoreOptions.existing to Overwrite to replace its contents, or restore into a new database"));
        }
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        if options.dry_run {
            report.notes.push(format!(
                "would pg_restore --clean --if-exists '{}' into '{database}' in one transaction",
                artifact.key
            ));
            return Ok(report);
        }
        self.run_pg_restore(
            database,
            plain,
            &["--clean", "--if-exists", "--single-transaction"],
        )
        .await?;
        let counts = self.count_and_compare(facts, database).await?;
        report.updated = 1;
        report
            .facts
            .insert("restored_database".into(), database.into());
        report
            .facts
            .insert("row_counts".into(), counts_json(&counts));
        Ok(report)
    }

    async fn run_pg_restore(
        &self,
        database: &str,
        plain: ByteStream,
        extra: &[&str],
    ) -> Result<()> {
        let mut args = self.restore_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        if self.jobs > 1 {
            let spool = spool_to_file(plain, self.spool_dir.as_deref()).await?;
            args.push(format!("--jobs={}", self.jobs));
            args.push(spool.path().display().to_string());
            pg_restore(&self.pg_restore, &self.conn, database, &args, None).await
        } else {
            pg_restore(&self.pg_restore, &self.conn, database, &args, Some(plain)).await
        }
    }

    async fn count_and_compare(
        &self,
        facts: &PostgresFacts,
        database: &str,
    ) -> Result<BTreeMap<String, i64>> {
        let client = self
            .conn
            .connect(database)
            .await
            .map_err(|e| e.or_operation("restore"))?;
        let counts = queries::all_exact_counts(&client).await?;
        drop(client);
        if self.check_counts {
            if let Some(recorded) = &facts.row_counts {
                let diffs = compare_counts(recorded, &counts);
                if !diffs.is_empty() {
                    return Err(Error::integrity(format!("restored row counts differ from the backup: {}", diffs.join("; ")))
                        .with_hint("the dump does not hold what was recorded at backup time; restore another run"));
                }
            }
        }
        Ok(counts)
    }
}

#[async_trait]
impl Restorer for PostgresRestorer {
    fn component(&self) -> &str {
        &self.component
    }

    async fn restore(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        if artifact.content_type == GLOBALS_CONTENT_TYPE {
            return Err(Error::new(ErrorKind::Unsupported, "globals.sql is not restored automatically")
                .with_hint("review it (it holds roles and password hashes) and apply what you need with `psql -f globals.sql`"));
        }
        if artifact.content_type != DUMP_CONTENT_TYPE {
            return Err(Error::config(format!(
                "'{}' is not a PostgreSQL custom-format dump ({})",
                artifact.key, artifact.content_type
            )));
        }
        let facts: PostgresFacts = artifact.facts_as()?;
        self.conn.validate()?;
        let r = match &self.target {
            RestoreTarget::NewDatabase { name, swap } => {
                self.restore_new(artifact, &facts, plain, options, name, *swap)
                    .await
            }
            RestoreTarget::Clean { database } => {
                self.restore_clean(artifact, &facts, plain, options, database)
                    .await
            }
        };
        r.map(|mut report| {
            report.facts.insert("jobs".into(), self.jobs.into());
            report
        })
    }
}

fn conflict(name: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("database '{name}' already exists: {why}"),
    )
    .with_hint(format!(
        "inspect it, then `DROP DATABASE \"{name}\"` and retry"
    ))
}

fn check_db_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(Error::config(format!("invalid database name {name:?}"))
            .with_hint("PostgreSQL database names are 1 to 63 bytes"));
    }
    Ok(())
}

/// A short suffix from the run id in the artifact's key (`runs/<id>/…`).
fn run_suffix(artifact: &ArtifactRecord) -> String {
    let mut seg = artifact.key.segments();
    let id = match (seg.next(), seg.next()) {
        (Some("runs"), Some(id)) => id.to_string(),
        _ => format!("{}", std::process::id()),
    };
    id.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `<name><infix><suffix>`, shortening `name` so the result fits in 63 bytes.
pub(crate) fn derived_name(name: &str, infix: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(infix.len() + suffix.len());
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{infix}{suffix}", &name[..cut])
}

fn counts_json(counts: &BTreeMap<String, i64>) -> Value {
    Value::Object(counts.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// Differences between recorded and restored counts, as messages.
pub(crate) fn compare_counts(
    recorded: &BTreeMap<String, i64>,
    restored: &BTreeMap<String, i64>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (table, want) in recorded {
        match restored.get(table) {
            Some(got) if got == want => {}
            Some(got) => diffs.push(format!("{table}: {got} rows, backup had {want}")),
            None => diffs.push(format!("{table}: missing (backup had {want} rows)")),
        }
    }
    diffs
}

fn admin_error(e: tokio_postgres::Error, what: &str) -> Error {
    queries::map_query_error(e, what).with_operation("restore")
}

/// `CREATE DATABASE` from `template0`, with the recorded encoding when there is one.
pub(crate) async fn create_database(
    admin: &Client,
    name: &str,
    encoding: Option<&str>,
) -> Result<()> {
    let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    if let Some(enc) = encoding {
        sql.push_str(&format!(" ENCODING {}", quote_literal(enc)));
    }
    admin
        .batch_execute(&sql)
        .await
        .map_err(|e| admin_error(e, &format!("creating database '{name}'")))
}

/// Drops a database, terminating its connections; failures are logged, not returned (this
/// runs on error paths).
pub(crate) async fn drop_database(admin: &Client, name: &str) {
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    if let Err(e) = admin.batch_execute(&sql).await {
        tracing::warn!(database = name, error = %e, "could not drop database; drop it by hand");
    }
}

async fn terminate(admin: &Client, name: &str) {
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .ok();
}

async fn rename_database(admin: &Client, from: &str, to: &str) -> Result<()> {
    let sql = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(from),
        quote_ident(to)
    );
    let what = format!("renaming database '{from}' to '{to}'");
    // Clients may reconnect between the termination and the rename: try again a few times.
    let policy = RetryPolicy {
        attempts: 10,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let in_use = |e: &tokio_postgres::Error| {
        e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
    };
    let outcome = policy
        .retry_when(
            &what,
            || async {
                terminate(admin, from).await;
                admin.batch_execute(&sql).await
            },
            |outcome| match outcome {
                Err(e) if in_use(e) => RetryDecision::Retry {
                    after: None,
                    reason: "the database is still in use".into(),
                },
                _ => RetryDecision::Done,
            },
        )
        .await;
    match outcome {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            let holders = lock_holders(admin, &[from]).await;
            Err(admin_error(e, &what)
                .with_kind(ErrorKind::Unavailable)
                .with_context("database", from)
                .with_hint(format!(
                    "another session holds a lock on database '{from}' ({holders}): end its transaction (or `SELECT pg_terminate_backend(<pid>)`), then rerun the restore"
                )))
        }
        Err(e) => {
            let still_in_use = in_use(&e);
            let err = admin_error(e, &what);
            Err(if still_in_use {
                err.with_hint("something keeps connecting to it; stop those clients and retry")
            } else {
                err
            })
        }
    }
}

/// The sessions holding a lock on any of `databases` (as database objects), described for
/// an operator: process id, user, application, where connected and state (never the
/// query text, which may hold secrets).
async fn lock_holders(admin: &Client, databases: &[&str]) -> String {
    let names: Vec<String> = databases.iter().map(|d| d.to_string()).collect();
    let rows = admin
        .query(
            "SELECT a.pid, coalesce(a.usename::text, '?'), coalesce(a.application_name, ''), \
                    coalesce(a.datname::text, '?'), coalesce(a.state, '?') \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             JOIN pg_database d ON d.oid = l.objid \
             WHERE l.locktype = 'object' AND l.classid = 'pg_database'::regclass \
               AND l.granted AND l.pid <> pg_backend_pid() AND d.datname = ANY($1) \
             ORDER BY a.pid",
            &[&names],
        )
        .await;
    match rows {
        Ok(rows) if !rows.is_empty() => rows
            .iter()
            .map(|r| {
                format!(
                    "pid {} (user {}, application '{}', connected to '{}', {})",
                    r.get::<_, i32>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3),
                    r.get::<_, String>(4)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Ok(_) => "it has ended since".to_string(),
        Err(e) => format!("could not list them: {e}"),
    }
}

async fn set_allow_connections(admin: &Client, name: &str, allow: bool) {
    let sql = format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
        quote_ident(name)
    );
    if let Err(e) = admin.batch_execute(&sql).await {
        tracing::warn!(database = name, error = %e, "could not change ALLOW_CONNECTIONS");
    }
}

/// Moves `live` aside to `old` and `staging` into its place.
async fn swap_in(admin: &Client, live: &str, staging: &str, old: &str) -> Result<()> {
    set_allow_connections(admin, live, false).await;
    if let Err(e) = rename_database(admin, live, old).await {
        set_allow_connections(admin, live, true).await;
        return Err(e);
    }
    set_allow_connections(admin, old, true).await;
    if let Err(e) = rename_database(admin, staging, live).await {
        // Put the previous database back under the live name.
        if let Err(back) = rename_database(admin, old, live).await {
            return Err(e.with_hint(format!(
                "the previous database is '{old}' and could not be renamed back ({back}); rename it to '{live}' by hand"
            )));
        }
        return Err(e);
    }
    Ok(())
}

/// A stream read through a shared handle, so that what its reader left unread can still
/// be read after the reader is gone.
struct SharedStream(Arc<Mutex<ByteStream>>);

impl futures::Stream for SharedStream {
    type Item = Result<bytes::Bytes>;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.lock().expect("stream").as_mut().poll_next(cx)
    }
}

/// Passes a stream through, but on its first error ends it and keeps the error, so a child
/// reading it sees EOF and the caller can report the real cause.
pub(crate) fn capture_error(stream: ByteStream) -> (ByteStream, Arc<Mutex<Option<Error>>>) {
    let slot: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
    let s = slot.clone();
    let out = stream
        .map(move |item| match item {
            Ok(b) => Some(Ok(b)),
            Err(e) => {
                s.lock().expect("slot").get_or_insert(e);
                None
            }
        })
        .take_while(|x| futures::future::ready(x.is_some()))
        .filter_map(futures::future::ready);
    (Box::pin(out), slot)
}

/// Runs pg_restore into `database` (stdin when `input` is given, otherwise the file path in
/// `args`). Failures are [`ErrorKind::Restore`] with pg_restore's stderr; a damaged input
/// stream fails with its own (integrity) error.
pub(crate) async fn pg_restore(
    program: &str,
    conn: &PgConnection,
    database: &str,
    args: &[String],
    input: Option<ByteStream>,
) -> Result<()> {
    let mut spec = CommandSpec::new(program)
        .args(args.iter().cloned())
        .arg(format!("--dbname={}", conn.conninfo(database)));
    spec = conn.apply_env(spec);
    let (input, slot, rest) = match input {
        Some(s) => {
            let rest = Arc::new(Mutex::new(s));
            let (s, slot) = capture_error(Box::pin(SharedStream(rest.clone())));
            (Some(s), Some(slot), Some(rest))
        }
        None => (None, None, None),
    };
    let result = run_with_stdin(&spec, COMPONENT, input).await;
    if let Some(e) = slot.and_then(|s| s.lock().expect("slot").take()) {
        return Err(e);
    }
    if let (Err(_), Some(rest)) = (&result, rest) {
        // pg_restore can trip over damage (and stop reading) before the digest check at the
        // end of the stream sees it: read the rest, so that a damaged artifact is reported
        // as such rather than as whatever pg_restore made of the garbage.
        let mut remaining = std::mem::replace(
            &mut *rest.lock().expect("stream"),
            stoa_backup_core::stream::empty(),
        );
        while let Some(item) = remaining.next().await {
            item?;
        }
    }
    result.map(|_| ()).map_err(|e| {
        if e.kind() == ErrorKind::Source {
            Error::new(
                ErrorKind::Restore,
                format!("pg_restore into '{database}' failed: {}", e.message()),
            )
            .with_hint("read pg_restore's error above; nothing was left under the live name")
        } else {
            e.or_operation("restore")
        }
    })
}

/// Writes a stream to a temp file (for parallel restores, which need a seekable file).
pub(crate) async fn spool_to_file(
    mut plain: ByteStream,
    dir: Option<&std::path::Path>,
) -> Result<tempfile::NamedTempFile> {
    let mut b = tempfile::Builder::new();
    b.prefix("stoa-restore-").suffix(".dump");
    let tmp = match dir {
        Some(d) => b.tempfile_in(d),
        None => b.tempfile(),
    }
    .map_err(|e| Error::from_io(e, "cannot create a spool file for the parallel restore"))?;
    let std_file = tmp
        .reopen()
        .map_err(|e| Error::from_io(e, "cannot open the spool file"))?;
    let mut f = tokio::fs::File::from_std(std_file);
    while let Some(chunk) = plain.next().await {
        let chunk = chunk?;
        f.write_all(&chunk)
            .await
            .map_err(|e| Error::from_io(e, "writing the spool file failed"))?;
    }
    f.flush()
        .await
        .map_err(|e| Error::from_io(e, "flushing the spool file failed"))?;
    f.sync_all().await.ok();
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_fit_postgres_limits() {
        let run = "20261124t080000z_1a2b3c";
        assert_eq!(
            derived_name("stoa", "_old_", run),
            "stoa_old_20261124t080000z_1a2b3c"
        );
        let long = "é".repeat(40);
        let n = derived_name(&long, "_old_", run);
        assert!(n.len() <= 63, "{}", n.len());
        assert!(n.ends_with(run));
    }

    #[test]
    fn count_comparison_lists_differences() {
        let rec: BTreeMap<String, i64> = [("a.x".to_string(), 3), ("a.y".to_string(), 1)].into();
        let got: BTreeMap<String, i64> = [("a.x".to_string(), 2)].into();
        let d = compare_counts(&rec, &got);
        assert_eq!(d.len(), 2);
        assert!(d[0].contains("2 rows, backup had 3"));
        assert!(d[1].contains("missing"));
    }

    #[tokio::test]
    async fn capture_error_ends_the_stream_and_keeps_the_error() {
        let s: ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"ab")),
            Err(Error::integrity("bad")),
            Ok(bytes::Bytes::from_static(b"cd")),
        ]));
        let (s, slot) = capture_error(s);
        let out = stoa_backup_core::stream::collect(s).await.unwrap();
        assert_eq!(out, b"ab");
        assert_eq!(
            slot.lock().unwrap().as_ref().unwrap().kind(),
            ErrorKind::Integrity
        );
    }
}
