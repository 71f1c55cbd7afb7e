//! [`PgSnapshot`]: a PostgreSQL database copied aside and put back, by a template clone
//! where the server allows it, by the library's own dump and restore where it does not.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use stoa_backup_core::error::{Error, ErrorKind, Result};

use crate::dump::DumpCopy;
use crate::server::{
    self, clear_sessions, clone_database, drop_database, exec, ident, mark, props, CloneStrategy,
    DatabaseProps, Marker, MarkerKind, Server,
};
use crate::worker;

/// How a snapshot was taken (and is put back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotMethod {
    /// `CREATE DATABASE … TEMPLATE`: a copy of the files on the server, in milliseconds
    /// for a test database.
    Template {
        /// The copy's name on the server.
        copy: String,
        /// `WAL_LOG` or `FILE_COPY`, as chosen.
        strategy: CloneStrategy,
    },
    /// The library's PostgreSQL backup (`pg_dump -Fc`, stored in the production format in a
    /// temporary directory) and its restorer: slower, but needs only what a backup needs.
    Dump {
        /// Why a template clone was not used (the server's answer, or "asked for").
        reason: String,
    },
}

impl fmt::Display for SnapshotMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotMethod::Template { copy, .. } => write!(f, "template clone (copy {copy})"),
            SnapshotMethod::Dump { reason } => write!(f, "dump and restore ({reason})"),
        }
    }
}

/// Which way to take a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MethodChoice {
    /// A template clone; the dump when the server refuses the clone for lack of a right
    /// or a feature (a managed service, a role that cannot create databases). The default.
    #[default]
    Auto,
    /// A template clone or an error.
    Template,
    /// Always the dump.
    Dump,
}

/// Options of a snapshot; [`PgSnapshot::builder`].
#[derive(Debug, Clone)]
pub struct SnapshotBuilder {
    url: String,
    database: String,
    terminate: bool,
    strategy: CloneStrategy,
    method: MethodChoice,
    scratch_dir: Option<PathBuf>,
}

impl SnapshotBuilder {
    /// Terminate the other sessions on the database (when taking and when restoring)
    /// instead of failing with an error naming them. Off by default.
    pub fn terminate_connections(mut self, on: bool) -> Self {
        self.terminate = on;
        self
    }

    /// How the clone copies files ([`CloneStrategy::Auto`] by default).
    pub fn strategy(mut self, strategy: CloneStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Template clone, dump, or the clone with the dump as fallback (the default).
    pub fn method(mut self, method: MethodChoice) -> Self {
        self.method = method;
        self
    }

    /// Where the dump method keeps its backup (a temporary directory in the system's
    /// temporary directory by default; removed with the snapshot).
    pub fn scratch_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch_dir = Some(dir.into());
        self
    }

    /// Takes the snapshot.
    pub async fn take(self) -> Result<PgSnapshot> {
        let server = Server::from_url(&self.url, &self.database)?;
        let opts = self.clone();
        worker::run(async move { take(server, opts).await }).await
    }
}

/// A copy of one PostgreSQL database, to put it back exactly (schema, data, sequences, and
/// the database's owner, privileges, settings and comment).
///
/// ```no_run
/// # async fn demo() -> stoa_backup_core::Result<()> {
/// use stoa_backup_testing::PgSnapshot;
///
/// let url = "postgres://postgres@127.0.0.1:5432/postgres";
/// let snapshot = PgSnapshot::take(url, "app").await?;
/// // … the test changes `app` …
/// snapshot.restore().await?; // `app` is as it was; the snapshot can be restored again
/// let _guard = snapshot.guard(); // or: put back when the test ends, also on a panic
/// # Ok(()) }
/// ```
///
/// Nobody may be connected to the database when it is copied or put back (a template
/// clone requires it): close the test's pool first, or ask for
/// [`terminate_connections`](SnapshotBuilder::terminate_connections). A template clone with
/// `FILE_COPY` forces a checkpoint, which is fine on a test server.
///
/// Dropping a snapshot removes its copy (blocking the thread for the `DROP DATABASE`).
pub struct PgSnapshot {
    server: Server,
    database: String,
    props: DatabaseProps,
    terminate: bool,
    strategy: CloneStrategy,
    method: SnapshotMethod,
    state: State,
    took: Duration,
}

enum State {
    Template {
        copy: String,
    },
    Dump(Box<DumpCopy>),
    /// Restored once and consumed, or discarded.
    Gone,
}

impl fmt::Debug for PgSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSnapshot")
            .field("server", &self.server)
            .field("database", &self.database)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl PgSnapshot {
    /// Snapshots `database` on the server of `url` (any database of it; administrative
    /// statements run there or, when it is `database`, in `postgres`).
    pub async fn take(url: &str, database: &str) -> Result<PgSnapshot> {
        PgSnapshot::builder(url, database).take().await
    }

    /// A snapshot with options.
    pub fn builder(url: &str, database: &str) -> SnapshotBuilder {
        SnapshotBuilder {
            url: url.to_string(),
            database: database.to_string(),
            terminate: false,
            strategy: CloneStrategy::Auto,
            method: MethodChoice::Auto,
            scratch_dir: None,
        }
    }

    /// The database snapshotted.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Which way it was taken.
    pub fn method(&self) -> &SnapshotMethod {
        &self.method
    }

    /// How long taking it took.
    pub fn took(&self) -> Duration {
        self.took
    }

    /// Puts the database back as it was when the snapshot was taken; the snapshot stays
    /// and can be restored again. The database is replaced whole: the changed one is
    /// dropped (its unwritten pages discarded, not flushed), then the copy is cloned in
    /// under its name (the dump way: restored beside it and swapped in).
    pub async fn restore(&self) -> Result<Duration> {
        let job = self.job();
        let state = match &self.state {
            State::Template { copy } => Ok(copy.clone()),
            State::Dump(d) => Err(d.clone()),
            State::Gone => return Err(consumed(&self.database)),
        };
        worker::run(async move {
            let start = Instant::now();
            match state {
                Ok(copy) => job.restore_template(&copy, true).await?,
                Err(dump) => {
                    dump.restore(&job.server, &job.database, job.terminate)
                        .await?
                }
            }
            Ok(start.elapsed())
        })
        .await
    }

    /// Puts the database back and uses the snapshot up: a template snapshot's copy itself
    /// is renamed to the database's name (no second copy: the fastest way back).
    pub async fn restore_once(mut self) -> Result<Duration> {
        let state = std::mem::replace(&mut self.state, State::Gone);
        let job = self.job();
        worker::run(async move {
            let start = Instant::now();
            match state {
                State::Template { copy } => job.restore_template(&copy, false).await?,
                State::Dump(dump) => {
                    dump.restore(&job.server, &job.database, job.terminate)
                        .await?
                }
                State::Gone => return Err(consumed(&job.database)),
            }
            Ok(start.elapsed())
        })
        .await
    }

    /// Removes the snapshot without restoring.
    pub async fn discard(mut self) -> Result<()> {
        let state = std::mem::replace(&mut self.state, State::Gone);
        let server = self.server.clone();
        worker::run(async move { discard(&server, state).await }).await
    }

    /// A guard that puts the database back when it is dropped: at the end of the test, and
    /// also while a panicking test unwinds. The sessions still on the database then are the
    /// test's own and are terminated (a pool dropped just before cannot finish closing
    /// while the drop blocks its runtime). [`SnapshotGuard::restore`] restores sooner,
    /// following [`terminate_connections`](SnapshotBuilder::terminate_connections).
    pub fn guard(self) -> SnapshotGuard {
        SnapshotGuard {
            snapshot: Some(self),
        }
    }

    fn job(&self) -> Job {
        Job {
            server: self.server.clone(),
            database: self.database.clone(),
            props: self.props.clone(),
            terminate: self.terminate,
            strategy: self.strategy,
        }
    }
}

impl Drop for PgSnapshot {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Gone);
        if matches!(state, State::Gone) {
            return;
        }
        let server = self.server.clone();
        if let Err(e) = worker::block_on(async move { discard(&server, state).await }) {
            eprintln!(
                "stoa-backup-testing: the snapshot of '{}' could not be removed ({e}); \
                 a later pool or snapshot cleans it up by age",
                self.database
            );
        }
    }
}

/// Puts a database back when dropped; [`PgSnapshot::guard`].
#[derive(Debug)]
pub struct SnapshotGuard {
    snapshot: Option<PgSnapshot>,
}

impl SnapshotGuard {
    /// Puts the database back now and reports how it went (instead of at drop).
    pub async fn restore(mut self) -> Result<Duration> {
        match self.snapshot.take() {
            Some(s) => s.restore_once().await,
            None => Ok(Duration::ZERO),
        }
    }

    /// The snapshot, to restore it more than once.
    pub fn snapshot(&self) -> &PgSnapshot {
        self.snapshot
            .as_ref()
            .expect("a guard holds its snapshot until dropped")
    }
}

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        let Some(mut snapshot) = self.snapshot.take() else {
            return;
        };
        let state = std::mem::replace(&mut snapshot.state, State::Gone);
        let mut job = snapshot.job();
        // The test is over: what is still connected is its own, and a dropped client on a
        // runtime this drop is blocking could not even finish closing.
        job.terminate = true;
        let database = job.database.clone();
        let result = worker::block_on(async move {
            match state {
                State::Template { copy } => job.restore_template(&copy, false).await,
                State::Dump(dump) => {
                    dump.restore(&job.server, &job.database, job.terminate)
                        .await
                }
                State::Gone => Ok(()),
            }
        });
        if let Err(e) = result {
            if std::thread::panicking() {
                eprintln!("stoa-backup-testing: could not put database '{database}' back: {e}");
            } else {
                panic!("stoa-backup-testing: could not put database '{database}' back: {e}");
            }
        }
    }
}

fn consumed(database: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("the snapshot of '{database}' was already restored once or discarded"),
    )
    .with_component("postgres")
    .with_operation("restore snapshot")
    .with_artifact(database.to_string())
    .with_hint("use restore() (which keeps the snapshot) to restore more than once")
}

/// What a restore needs, owned (it runs on the background runtime).
struct Job {
    server: Server,
    database: String,
    props: DatabaseProps,
    terminate: bool,
    strategy: CloneStrategy,
}

impl Job {
    /// Template restore: the live database is dropped first, then the copy is cloned
    /// (`keep`) or renamed (the copy itself) in under its name. Dropping first discards the
    /// test's dirty pages instead of letting the clone's checkpoint write them back only to
    /// throw them away; should the clone then fail, the snapshot is intact and `restore()`
    /// can be called again.
    async fn restore_template(&self, copy: &str, keep: bool) -> Result<()> {
        let admin = self.server.admin().await?;
        let db = &self.database;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[db])
            .await
            .map_err(|e| server::pg_error(e, "restore snapshot", db))?
            .is_some();
        if exists {
            if self.terminate {
                exec(
                    &admin,
                    &format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", ident(db)),
                    "restore snapshot",
                    db,
                )
                .await?;
            }
            let old = server::fit_name(db, &format!("_old_{:08x}", rand::random::<u32>()));
            let aside = async {
                clear_sessions(&admin, db, self.terminate, "restore the snapshot").await?;
                exec(
                    &admin,
                    &format!("ALTER DATABASE {} RENAME TO {}", ident(db), ident(&old)),
                    "move the changed database aside",
                    db,
                )
                .await
            }
            .await;
            if let Err(e) = aside {
                self.reopen(&admin).await;
                return Err(e);
            }
            mark(&admin, &old, &Marker::new(MarkerKind::Replaced).source(db)).await?;
            drop_database(&admin, &old).await?;
        }
        let put_back = async {
            if keep {
                clone_database(
                    &admin,
                    copy,
                    db,
                    self.strategy,
                    self.props.size,
                    Some(&self.props),
                )
                .await?;
            } else {
                exec(
                    &admin,
                    &format!("ALTER DATABASE {} RENAME TO {}", ident(copy), ident(db)),
                    "restore snapshot",
                    db,
                )
                .await?;
            }
            exec(
                &admin,
                &format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", ident(db)),
                "restore snapshot",
                db,
            )
            .await?;
            server::apply_props(&admin, db, &self.props).await
        }
        .await;
        put_back.map_err(|e| {
            e.with_hint(format!(
                "database '{db}' was dropped to be replaced and the snapshot's copy '{copy}' is \
                 intact: fix the cause and restore again"
            ))
        })
    }

    /// Opens the live database again after a failed restore closed it.
    async fn reopen(&self, admin: &tokio_postgres::Client) {
        if self.terminate {
            let _ = exec(
                admin,
                &format!(
                    "ALTER DATABASE {} ALLOW_CONNECTIONS true",
                    ident(&self.database)
                ),
                "restore snapshot",
                &self.database,
            )
            .await;
        }
    }
}

async fn take(server: Server, opts: SnapshotBuilder) -> Result<PgSnapshot> {
    let start = Instant::now();
    let db = opts.database.clone();
    let admin = server.admin().await?;
    let props = props(&admin, &db).await?;
    let dump_reason = match opts.method {
        MethodChoice::Dump => Some("asked for".to_string()),
        MethodChoice::Template | MethodChoice::Auto => {
            clear_sessions(&admin, &db, opts.terminate, "take a snapshot").await?;
            let copy = server::fit_name(&db, &format!("_snap_{:08x}", rand::random::<u32>()));
            match clone_database(&admin, &db, &copy, opts.strategy, props.size, Some(&props)).await
            {
                Ok(()) => {
                    mark(
                        &admin,
                        &copy,
                        &Marker::new(MarkerKind::Snapshot).source(&db),
                    )
                    .await?;
                    // Nobody connects to the copy: that would block cloning it back.
                    exec(
                        &admin,
                        &format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", ident(&copy)),
                        "take a snapshot",
                        &db,
                    )
                    .await?;
                    let strategy = opts.strategy.resolve(props.size);
                    return Ok(PgSnapshot {
                        server,
                        database: db,
                        props,
                        terminate: opts.terminate,
                        strategy: opts.strategy,
                        method: SnapshotMethod::Template {
                            copy: copy.clone(),
                            strategy,
                        },
                        state: State::Template { copy },
                        took: start.elapsed(),
                    });
                }
                Err(e)
                    if opts.method == MethodChoice::Auto
                        && matches!(
                            e.kind(),
                            ErrorKind::PermissionDenied | ErrorKind::Unsupported
                        ) =>
                {
                    Some(format!("the server refused a template clone: {e}"))
                }
                Err(e) => {
                    return Err(e.with_hint(
                        "a template clone needs the CREATEDB right and ownership of the database \
                         (or a superuser); MethodChoice::Dump works with what a backup needs",
                    ))
                }
            }
        }
    };
    let reason = dump_reason.unwrap_or_default();
    let copy = DumpCopy::take(&server, &db, opts.scratch_dir.as_deref()).await?;
    Ok(PgSnapshot {
        server,
        database: db,
        props,
        terminate: opts.terminate,
        strategy: opts.strategy,
        method: SnapshotMethod::Dump { reason },
        state: State::Dump(Box::new(copy)),
        took: start.elapsed(),
    })
}

async fn discard(server: &Server, state: State) -> Result<()> {
    match state {
        State::Template { copy } => {
            let admin = server.admin().await?;
            drop_database(&admin, &copy).await
        }
        // The temporary directory goes with it.
        State::Dump(dump) => {
            drop(dump);
            Ok(())
        }
        State::Gone => Ok(()),
    }
}
