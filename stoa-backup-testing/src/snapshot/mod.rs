//! [`PgSnapshot`]: a PostgreSQL database copied aside and put back, by a template clone
//! where the server allows it, by the library's own dump and restore where it does not.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stoa_backup_core::error::{Error, ErrorKind, Result};
use tokio::sync::Mutex;

use crate::dump::DumpCopy;
use crate::server::{
    self, clear_sessions, clone_database, drop_database, exec, ident, mark, props, CloneStrategy,
    DatabaseProps, Marker, MarkerKind, Server,
};
use crate::worker;

mod job;
mod spare;

use job::Job;
use spare::Spare;

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
    spare_now: bool,
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

    /// Start making the spare copy right after the snapshot is taken, so that even the
    /// first [`restore`](PgSnapshot::restore) only renames it in (when the test ran longer
    /// than the copy takes). Off by default: the spare is made after the first `restore()`
    /// (a snapshot restored once with it is likely restored again), so a snapshot used
    /// through its [guard](PgSnapshot::guard) or [`restore_once`](PgSnapshot::restore_once)
    /// never pays for one. Template snapshots only.
    pub fn spare_at_once(mut self, on: bool) -> Self {
        self.spare_now = on;
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
/// # Fast repeated restores
/// A template snapshot restored with [`restore`](Self::restore) keeps a spare: a second
/// copy made in the background after each restore (the database it replaced dropped
/// first), so that the next restore only renames the spare in — milliseconds, whatever the
/// size — while the test runs. It costs a second copy's disk space; a restore that comes
/// before the spare is ready waits for it.
///
/// Dropping a snapshot removes its copies in the background: [`settle`](crate::settle)
/// waits for that, and so does the process before it exits. [`discard`](Self::discard)
/// removes them before it returns.
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
        spare: Arc<Mutex<Spare>>,
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
            spare_now: false,
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
    /// and can be restored again. The database is replaced whole: by the spare copy,
    /// renamed in, when one is ready (see [fast repeated restores](Self#fast-repeated-restores));
    /// otherwise the changed database is dropped (its unwritten pages discarded, not
    /// flushed) and the copy cloned in under its name. The dump way restores beside it and
    /// swaps it in.
    pub async fn restore(&self) -> Result<Duration> {
        let job = self.job();
        let state = match &self.state {
            State::Template { copy, spare } => Ok((copy.clone(), spare.clone())),
            State::Dump(d) => Err(d.clone()),
            State::Gone => return Err(consumed(&self.database)),
        };
        worker::run(async move {
            let start = Instant::now();
            match state {
                Ok((copy, spare)) => {
                    // One restore at a time: the spare is used once.
                    let mut spare = spare.lock().await;
                    // A spare that is gone (dropped by hand, say) is not an error: the copy
                    // is cloned in as without one.
                    let ready = match spare.take_ready().await {
                        Some(name) if job.exists(&name).await? => Some(name),
                        _ => None,
                    };
                    let replaced = match ready {
                        Some(ready) => match job.rename_in(&ready, false).await {
                            Ok(replaced) => replaced,
                            Err(e) => {
                                spare.put_back(ready);
                                return Err(e);
                            }
                        },
                        None => {
                            job.clone_in(&copy).await?;
                            None
                        }
                    };
                    spare.refill(&job, &copy, replaced);
                }
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
    /// is renamed to the database's name (no second copy: the fastest way back). The
    /// changed database and any spare are dropped in the background.
    pub async fn restore_once(mut self) -> Result<Duration> {
        let state = std::mem::replace(&mut self.state, State::Gone);
        let job = self.job();
        worker::run(async move {
            let start = Instant::now();
            put_back_once(&job, state).await?;
            Ok(start.elapsed())
        })
        .await
    }

    /// Removes the snapshot (its copies) without restoring, before it returns.
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
        let what = format!("removing the snapshot of '{}'", self.database);
        worker::spawn_tracked(what, async move { discard(&server, state).await });
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
        let result = worker::block_on(async move { put_back_once(&job, state).await });
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

async fn take(server: Server, opts: SnapshotBuilder) -> Result<PgSnapshot> {
    let start = Instant::now();
    let db = opts.database.clone();
    let admin = server.admin().await?;
    let props = props(&admin, &db).await?;
    let dump_reason =
        match opts.method {
            MethodChoice::Dump => Some("asked for".to_string()),
            MethodChoice::Template | MethodChoice::Auto => {
                clear_sessions(&admin, &db, opts.terminate, "take a snapshot").await?;
                let copy = server::fit_name(&db, &format!("_snap_{:08x}", rand::random::<u32>()));
                match clone_database(
                    &server,
                    &admin,
                    &db,
                    &copy,
                    opts.strategy,
                    props.size,
                    Some(&props),
                )
                .await
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
                        let snapshot = PgSnapshot {
                            server,
                            database: db,
                            props,
                            terminate: opts.terminate,
                            strategy: opts.strategy,
                            method: SnapshotMethod::Template {
                                copy: copy.clone(),
                                strategy,
                            },
                            state: State::Template {
                                copy: copy.clone(),
                                spare: Arc::default(),
                            },
                            took: start.elapsed(),
                        };
                        if opts.spare_now {
                            if let State::Template { spare, .. } = &snapshot.state {
                                spare.lock().await.refill(&snapshot.job(), &copy, None);
                            }
                        }
                        return Ok(snapshot);
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
                    Err(e) => return Err(e.with_hint(
                        "a template clone needs the CREATEDB right and ownership of the database \
                         (or a superuser); MethodChoice::Dump works with what a backup needs",
                    )),
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

/// Renames the snapshot's copy in (the dump way: restores it); what it replaced and any
/// spare are dropped in the background.
async fn put_back_once(job: &Job, state: State) -> Result<()> {
    match state {
        State::Template { copy, spare } => {
            let leftovers = spare.lock().await.shut_down().await;
            let replaced = job.rename_in(&copy, true).await;
            let mut doomed = leftovers;
            let result = match replaced {
                Ok(replaced) => {
                    doomed.extend(replaced);
                    Ok(())
                }
                Err(e) => {
                    // Used up either way: nothing of the snapshot may outlive it.
                    doomed.push(copy);
                    Err(e.with_hint(
                        "the snapshot was used up by this attempt; restore() keeps it for another",
                    ))
                }
            };
            drop_later(&job.server, &job.database, doomed);
            result
        }
        State::Dump(dump) => {
            dump.restore(&job.server, &job.database, job.terminate)
                .await
        }
        State::Gone => Err(consumed(&job.database)),
    }
}

/// Drops `databases` in the background (tracked: [`settle`](crate::settle) and the
/// process's exit wait for it).
fn drop_later(server: &Server, of: &str, databases: Vec<String>) {
    if databases.is_empty() {
        return;
    }
    let server = server.clone();
    let what = format!("dropping the replaced copies of '{of}'");
    worker::spawn_tracked(what, async move {
        let admin = server.admin().await?;
        for name in databases {
            drop_database(&admin, &name).await?;
        }
        Ok(())
    });
}

/// Drops the snapshot's copy and spare (the dump way: its directory).
async fn discard(server: &Server, state: State) -> Result<()> {
    match state {
        State::Template { copy, spare } => {
            let mut doomed = spare.lock().await.shut_down().await;
            doomed.push(copy);
            let admin = server.admin().await?;
            for name in doomed {
                drop_database(&admin, &name).await?;
            }
            Ok(())
        }
        // The temporary directory goes with it.
        State::Dump(dump) => {
            drop(dump);
            Ok(())
        }
        State::Gone => Ok(()),
    }
}
