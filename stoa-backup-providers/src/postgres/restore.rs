//! [`PostgresRestorer`]: restores a custom-format dump, by default into a new database
//! that can be swapped into place, never leaving a half-restored database under the live
//! name (the swap itself is in `swap.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::manifest::ArtifactRecord;
use stoa_backup_core::restore::{
    ExistingDataPolicy, PerArtifact, RestoreContext, RestoreOptions, RestoreReport, Restorer,
};
use stoa_backup_core::stream::ByteStream;
use tokio_postgres::Client;

use super::conn::{quote_ident, PgConnection};
use super::facts::PostgresFacts;
use super::find::{choose_dump, globals_refused};
use super::parallel::{restore_parallel, ParallelStats};
use super::pg_restore::{check_spool_space, pg_restore};
use super::queries;
use super::swap::{self, create_database, drop_database, AdminSession, SwapMarker};
use super::{COMPONENT, DUMP_CONTENT_TYPE, GLOBALS_CONTENT_TYPE};

/// Where a dump is restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The safe default: create database `name` and restore into it. Without `swap`, `name`
    /// must not exist yet.
    ///
    /// With `swap`, the dump is restored into a staging database `<name>_restore_<run id>`
    /// beside the live one, and only once it restored completely (and its row counts match)
    /// is it swapped in: the swap is recorded on the staging database (its comment), the
    /// live database stops accepting connections and its sessions are terminated, then one
    /// transaction renames the live database to `<name>_old_<run id>` and the staging one to
    /// `name`. The live name always resolves to a whole database:
    ///
    /// - a session holding a lock on the live database makes the swap fail after the
    ///   [lock timeout](PostgresRestorer::lock_timeout) with [`ErrorKind::Unavailable`]
    ///   naming that session; on this and every other failure of the swap the live
    ///   database accepts connections again, and the restored copy is kept, so that
    ///   rerunning the same restore swaps it in without restoring again;
    /// - if the restoring process dies during the swap, the transaction rolls back; the next
    ///   restore into `name` finds the record and finishes the swap (same run) or undoes it
    ///   (another run: the copy is dropped, the live database opened again), and says which
    ///   in its notes and in the `interrupted_swaps` fact.
    ///
    /// Only one restore into `name` runs at a time (an advisory lock; another fails with
    /// [`ErrorKind::Conflict`]).
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

impl RestoreTarget {
    /// The database the restore ends up in: `name`, or the `database` restored over.
    pub fn database(&self) -> &str {
        match self {
            RestoreTarget::NewDatabase { name, .. } => name,
            RestoreTarget::Clean { database } => database,
        }
    }
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
    /// Which dump of a run to restore (see [`PostgresRestorer::from_database`]).
    from_database: Option<String>,
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
            from_database: None,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// Restores into `target` instead of the one given to [`new`](Self::new).
    pub fn target(mut self, target: RestoreTarget) -> Self {
        self.target = target;
        self
    }

    /// Parallel restore with `n` jobs: table data and indexes are restored by `n` sessions
    /// at once. `pg_restore --jobs` needs a seekable file, so the decoded dump is first
    /// spooled to a local temp file in [`spool_dir`](Self::spool_dir) (its free space is
    /// checked against the dump's size before anything is created) and removed afterwards.
    /// Once the whole dump is in (and its digest checked), each data block's offset is
    /// recorded in the file, as pg_dump does in a file of its own, and `pg_restore --jobs=n`
    /// restores it. A damaged dump fails the restore with its own error before pg_restore
    /// runs. Not available with [`RestoreTarget::Clean`] (a parallel restore cannot run in
    /// one transaction). The report's `parallel` fact gives the phases' times.
    ///
    /// On 2 cores, a restore with two jobs measured 0.83x (512 MiB dump) and 0.95x (2 GiB)
    /// the time of a single-job `pg_restore` of a plain file (see
    /// `benches/postgres_vs_pg_dump.rs`). Measure before choosing more jobs than cores.
    pub fn jobs(mut self, n: u32) -> Self {
        self.jobs = n.max(1);
        self
    }

    /// Restores the dump of database `name` when a run holds several (`pg_dumpall`-style
    /// runs of every database). Without it, a run's only dump is restored, or, among
    /// several, the one of the target's own name; anything else is refused, naming the
    /// databases the run holds.
    pub fn from_database(mut self, name: impl Into<String>) -> Self {
        self.from_database = Some(name.into());
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
        let mut admin = AdminSession::open(&self.conn, name, self.lock_timeout).await?;
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        if swap {
            let restored = self
                .restore_swapped(&mut admin, artifact, facts, plain, options, name, report)
                .await;
            admin.unlock_target(name).await;
            return restored;
        }
        let admin = admin.client();
        if queries::database_exists(admin, name).await? {
            return Err(Error::new(ErrorKind::Conflict, format!("database '{name}' already exists on {}", self.conn.endpoint()))
                .with_hint("restore with swap: true (the old database is kept as <name>_old_<run id>), use RestoreTarget::Clean, or pick another name"));
        }
        if options.dry_run {
            // The same count the restore reports: one database created.
            report.created = 1;
            report.notes.push(format!(
                "would create database '{name}' and pg_restore '{}' into it",
                artifact.key
            ));
            return Ok(report);
        }
        let (counts, stats) = self.restore_into_new(admin, facts, plain, name).await?;
        ParallelStats::add_to(stats, &mut report);
        report.created = 1;
        report.facts.insert("restored_database".into(), name.into());
        report
            .facts
            .insert("row_counts".into(), counts_json(&counts));
        Ok(report)
    }

    /// Creates `database`, restores into it and checks the counts; drops it on failure, so
    /// that no half-restored database is left behind.
    async fn restore_into_new(
        &self,
        admin: &Client,
        facts: &PostgresFacts,
        plain: ByteStream,
        database: &str,
    ) -> Result<(BTreeMap<String, i64>, Option<ParallelStats>)> {
        create_database(admin, database, facts.encoding.as_deref()).await?;
        let restored = async {
            let stats = self.run_pg_restore(database, plain, &[]).await?;
            Ok((self.count_and_compare(facts, database).await?, stats))
        }
        .await;
        if restored.is_err() {
            drop_database(admin, database).await;
        }
        restored
    }

    /// Restores into a staging database and swaps it in under `name` (see
    /// [`RestoreTarget::NewDatabase`]), first finishing or undoing a swap into `name` that an
    /// interrupted restore began.
    #[allow(clippy::too_many_arguments)]
    async fn restore_swapped(
        &self,
        admin: &mut AdminSession,
        artifact: &ArtifactRecord,
        facts: &PostgresFacts,
        plain: ByteStream,
        options: &RestoreOptions,
        name: &str,
        mut report: RestoreReport,
    ) -> Result<RestoreReport> {
        admin.lock_target(name).await?;
        let run = run_id(artifact);
        let suffix = name_suffix(&run);
        let staging = derived_name(name, "_restore_", &suffix);
        let old = derived_name(name, "_old_", &suffix);
        let (markers, warnings) = swap::find_markers(admin.client(), name).await?;
        report.notes.extend(warnings);
        let mut resume = None;
        for m in markers {
            if m.staging == staging {
                resume = Some(m);
            } else {
                self.undo_interrupted(admin.client(), &m, options, &mut report)
                    .await?;
            }
        }
        if let Some(m) = resume {
            match self
                .finish_interrupted(admin, facts, options, &m, &mut report)
                .await?
            {
                Resumed::Finished { moved_live, counts } => {
                    return Ok(finish_report(report, name, &old, moved_live, &counts))
                }
                Resumed::WouldFinish => {
                    // The same count the finished swap reports: one database created.
                    report.created = 1;
                    return Ok(report);
                }
                Resumed::Dropped => {}
            }
        }
        let live = swap::allows_connections(admin.client(), name).await?;
        if queries::database_exists(admin.client(), &staging).await? {
            return Err(conflict(&staging, "a staging database of an earlier restore of this run is still there (it never finished restoring: no swap was recorded on it)"));
        }
        if live.is_some() {
            self.check_old_free(admin.client(), name, &old).await?;
        }
        if options.dry_run {
            report.created = 1;
            report.notes.push(format!(
                "would create database '{staging}' and pg_restore '{}' into it",
                artifact.key
            ));
            report.notes.push(if live.is_some() {
                format!("would rename '{name}' to '{old}' and '{staging}' to '{name}'")
            } else {
                format!("would rename '{staging}' to '{name}'")
            });
            return Ok(report);
        }
        let (counts, stats) = self
            .restore_into_new(admin.client(), facts, plain, &staging)
            .await?;
        ParallelStats::add_to(stats, &mut report);
        let marker = SwapMarker {
            live: name.to_string(),
            staging: staging.clone(),
            old: old.clone(),
            run,
            live_allowed_connections: live.unwrap_or(true),
            started_at: chrono::Utc::now(),
            pid: std::process::id(),
        };
        if let Err(e) = swap::write_marker(admin.client(), &marker).await {
            drop_database(admin.client(), &staging).await;
            return Err(e);
        }
        let moved_live = swap::swap_in(admin, &marker).await?;
        Ok(finish_report(report, name, &old, moved_live, &counts))
    }

    /// Finishes the swap of this very run that an interrupted restore began: its staging copy
    /// was restored and its counts checked before the swap began; they are counted again
    /// (someone may have written to it since) and it is swapped in. A copy that no longer
    /// matches is dropped (the caller restores again).
    async fn finish_interrupted(
        &self,
        admin: &mut AdminSession,
        facts: &PostgresFacts,
        options: &RestoreOptions,
        m: &SwapMarker,
        report: &mut RestoreReport,
    ) -> Result<Resumed> {
        let what = format!(
            "the swap of run {} that an interrupted restore began at {}",
            m.run, m.started_at
        );
        let counts = match self.count_and_compare(facts, &m.staging).await {
            Ok(counts) => counts,
            Err(e) if e.kind() == ErrorKind::Integrity => {
                report.notes.push(format!(
                    "the restored copy '{}' of {what} no longer matches the backup ({e}): it is dropped and restored again",
                    m.staging
                ));
                self.undo_interrupted(admin.client(), m, options, report)
                    .await?;
                return Ok(Resumed::Dropped);
            }
            Err(e) => return Err(e),
        };
        if options.dry_run {
            report.notes.push(format!(
                "would finish {what}: swap its restored copy '{}' in as '{}' without restoring again",
                m.staging, m.live
            ));
            return Ok(Resumed::WouldFinish);
        }
        let moved_live = match self.check_old_free(admin.client(), &m.live, &m.old).await {
            Ok(moved_live) => moved_live,
            Err(e) => {
                // It cannot be finished: do not leave the live database closed.
                self.undo_interrupted(admin.client(), m, options, report)
                    .await?;
                return Err(e);
            }
        };
        swap::swap_in(admin, m).await?;
        let note = format!(
            "finished {what}: its restored copy '{}' (verified then, its row counts checked again now) is now '{}'; nothing was restored again",
            m.staging, m.live
        );
        tracing::warn!(database = %m.live, run = %m.run, "{note}");
        report.notes.push(note);
        push_interrupted(report, "finished", m);
        Ok(Resumed::Finished { moved_live, counts })
    }

    /// Undoes (or, in a dry run, says it would undo) a swap into the same live name that an
    /// interrupted restore of another run began.
    async fn undo_interrupted(
        &self,
        admin: &Client,
        m: &SwapMarker,
        options: &RestoreOptions,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let what = format!(
            "the swap of run {} into '{}' that an interrupted restore began at {}",
            m.run, m.live, m.started_at
        );
        if options.dry_run {
            report.notes.push(format!(
                "would undo {what}: drop its restored copy '{}' and open '{}' to connections again",
                m.staging, m.live
            ));
            return Ok(());
        }
        let reopened = swap::undo(admin, m).await.map_err(|e| {
            e.with_hint(format!(
                "{what} could not be undone; rerun the restore, or drop '{}' and run `ALTER DATABASE {} ALLOW_CONNECTIONS true` by hand",
                m.staging,
                quote_ident(&m.live)
            ))
        })?;
        let note = format!(
            "undid {what}: dropped its restored copy '{}'{}",
            m.staging,
            if reopened {
                format!("; '{}' accepts connections again", m.live)
            } else {
                String::new()
            }
        );
        tracing::warn!(database = %m.live, run = %m.run, "{note}");
        report.notes.push(note);
        push_interrupted(report, "undone", m);
        Ok(())
    }

    /// Fails when the live database exists and this run was already swapped in once (its
    /// `<name>_old_<run>` exists). Returns whether the live database exists.
    async fn check_old_free(&self, admin: &Client, name: &str, old: &str) -> Result<bool> {
        let live_exists = queries::database_exists(admin, name).await?;
        if live_exists && queries::database_exists(admin, old).await? {
            return Err(conflict(
                old,
                "this run was already swapped in once; drop or rename the old copy first",
            ));
        }
        Ok(live_exists)
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
        let admin = AdminSession::open(&self.conn, database, self.lock_timeout).await?;
        if !queries::database_exists(admin.client(), database).await? {
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
            report.updated = 1;
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
    ) -> Result<Option<ParallelStats>> {
        let mut args = self.restore_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        if self.jobs > 1 {
            let stats = restore_parallel(
                &self.pg_restore,
                &self.conn,
                database,
                &args,
                self.jobs,
                plain,
                self.spool_dir.as_deref(),
            )
            .await?;
            Ok(Some(stats))
        } else {
            pg_restore(&self.pg_restore, &self.conn, database, &args, Some(plain)).await?;
            Ok(None)
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

    /// Restores one database of the run: its only dump, or the one
    /// [`from_database`](PostgresRestorer::from_database) names, or the target's own; a
    /// `globals.sql` beside it is passed over with a note.
    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        let (artifact, globals) = choose_dump(
            ctx.artifacts(),
            self.from_database.as_deref(),
            self.target.database(),
        )?;
        let plain = ctx.open_plain(artifact).await?;
        let mut report = self
            .restore_one(artifact, plain, ctx.options())
            .await
            .map_err(|e| e.or_artifact(artifact.key.to_string()))?;
        if globals {
            let why = globals_refused();
            let hint = why.hint().unwrap_or_default();
            report.notes.push(format!("{}: {hint}", why.message()));
        }
        Ok(report)
    }
}

#[async_trait]
impl PerArtifact for PostgresRestorer {
    async fn restore_one(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        if artifact.content_type == GLOBALS_CONTENT_TYPE {
            return Err(globals_refused());
        }
        if artifact.content_type != DUMP_CONTENT_TYPE {
            return Err(Error::config(format!(
                "'{}' is not a PostgreSQL custom-format dump ({})",
                artifact.key, artifact.content_type
            )));
        }
        let facts: PostgresFacts = artifact.facts_as()?;
        self.conn.validate()?;
        if self.jobs > 1 && matches!(self.target, RestoreTarget::NewDatabase { .. }) {
            // Before a database is created: the spool file must fit.
            check_spool_space(self.spool_dir.as_deref(), artifact.plain_size)?;
        }
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

/// The run id in the artifact's key (`runs/<id>/…`); the process id for an artifact stored
/// elsewhere.
fn run_id(artifact: &ArtifactRecord) -> String {
    let mut seg = artifact.key.segments();
    match (seg.next(), seg.next()) {
        (Some("runs"), Some(id)) => id.to_string(),
        _ => format!("{}", std::process::id()),
    }
}

/// A run id as a database name suffix (lowercase, `_` for anything else).
fn name_suffix(run: &str) -> String {
    run.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Adds an interrupted swap that was finished or undone to the report's `interrupted_swaps`.
fn push_interrupted(report: &mut RestoreReport, action: &str, m: &SwapMarker) {
    let entry = json!({
        "action": action,
        "run": m.run,
        "staging": m.staging,
        "started_at": m.started_at.to_rfc3339(),
    });
    match report
        .facts
        .entry("interrupted_swaps")
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(list) => list.push(entry),
        other => *other = Value::Array(vec![entry]),
    }
}

/// What became of a swap of this run that an interrupted restore began.
enum Resumed {
    /// Swapped in now.
    Finished {
        moved_live: bool,
        counts: BTreeMap<String, i64>,
    },
    /// A dry run: it would be.
    WouldFinish,
    /// Its copy no longer matched the backup and was dropped.
    Dropped,
}

/// The report of a swap that happened: `name` holds the restored database, the previous one
/// (if there was one) is `old`.
fn finish_report(
    mut report: RestoreReport,
    name: &str,
    old: &str,
    moved_live: bool,
    counts: &BTreeMap<String, i64>,
) -> RestoreReport {
    report.created = 1;
    if moved_live {
        report.facts.insert("previous_database".into(), old.into());
        report.notes.push(format!(
            "the previous '{name}' is kept as '{old}'; drop it once satisfied"
        ));
    }
    report.facts.insert("restored_database".into(), name.into());
    report
        .facts
        .insert("row_counts".into(), counts_json(counts));
    report
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

#[cfg(test)]
mod tests;
