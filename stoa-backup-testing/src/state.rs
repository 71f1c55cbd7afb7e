//! [`StateSnapshot`]: the platform state a test touches (PostgreSQL and any of the
//! library's sources: custom resources, a Keycloak realm, Grafana, Vault KV…) backed up
//! through the real providers in the production format, and put back through their
//! restorers. A production backup loads the same way, as a fixture.

use std::fmt;
use std::sync::Arc;

use stoa_backup_core::catalog::{Catalog, RunFilter};
use stoa_backup_core::codec::Keyring;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::manifest::{Manifest, RunId, RunStatus};
use stoa_backup_core::pipeline::Pipeline;
use stoa_backup_core::restore::{ExistingDataPolicy, Restore, Restorer, RunRestored};
use stoa_backup_core::sink::Sink;
use stoa_backup_core::source::Source;
use stoa_backup_providers::postgres::PostgresSource;
use stoa_backup_storage::LocalSink;

use crate::dump::{must_restore_in_place, PgPart};
use crate::server::Server;
use crate::worker;

/// The component PostgreSQL is stored under in a state snapshot.
pub const POSTGRES_COMPONENT: &str = "postgres";

/// A snapshot of platform state across providers; see the [module docs](self).
///
/// Restoring puts every object of the snapshot back as it was: the PostgreSQL database is
/// replaced whole; the other parts go through their restorers with
/// [`ExistingDataPolicy::Overwrite`], so changed and deleted objects come back. Objects a
/// test *created* in those other systems stay (the providers' restorers never delete);
/// give them names of the test's own. Likewise server-side apply leaves fields another
/// field manager *added* to a custom resource (a new label, say); edited and removed
/// fields come back. Configure each restorer to take its objects back from
/// whoever changed them (custom resources: `ConflictPolicy::Force`, since a test's edits
/// come from another field manager).
pub struct StateSnapshot {
    sink: Arc<dyn Sink>,
    manifest: Manifest,
    keyring: Keyring,
    postgres: Option<PgPart>,
    restorers: Vec<Arc<dyn Restorer>>,
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl fmt::Debug for StateSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSnapshot")
            .field("run", &self.manifest.run_id)
            .field("components", &self.components())
            .finish_non_exhaustive()
    }
}

/// Builds a [`StateSnapshot`] by taking one; [`StateSnapshot::builder`].
#[derive(Default)]
pub struct StateSnapshotBuilder {
    postgres: Vec<(String, String)>,
    parts: Vec<(Box<dyn Source>, Arc<dyn Restorer>)>,
    sink: Option<Arc<dyn Sink>>,
    terminate: bool,
}

impl fmt::Debug for StateSnapshotBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSnapshotBuilder")
            .field("parts", &self.parts.len())
            .finish_non_exhaustive()
    }
}

impl StateSnapshotBuilder {
    /// Includes PostgreSQL database `database` on the server of `url` (one per snapshot;
    /// use [`PgSnapshot`](crate::PgSnapshot) for more).
    pub fn postgres(mut self, url: &str, database: &str) -> Self {
        self.postgres.push((url.to_string(), database.to_string()));
        self
    }

    /// Includes a provider: its source to take the snapshot, its restorer (for the same
    /// component) to put it back.
    pub fn part(
        mut self,
        source: impl Source + 'static,
        restorer: impl Restorer + 'static,
    ) -> Self {
        self.parts.push((Box::new(source), Arc::new(restorer)));
        self
    }

    /// Where the snapshot is stored (a new temporary directory by default; a
    /// [`MemorySink`](stoa_backup_core::sink::MemorySink) keeps it in memory).
    pub fn sink(mut self, sink: impl Sink + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Terminate other sessions on the database when restoring it (off: an error names
    /// them).
    pub fn terminate_connections(mut self, on: bool) -> Self {
        self.terminate = on;
        self
    }

    /// Backs every part up, in one run.
    pub async fn take(self) -> Result<StateSnapshot> {
        if self.postgres.len() > 1 {
            return Err(Error::config(
                "a StateSnapshot holds one PostgreSQL database; snapshot the others with PgSnapshot",
            ));
        }
        if self.postgres.is_empty() && self.parts.is_empty() {
            return Err(Error::config("a StateSnapshot needs at least one part"));
        }
        worker::run(async move {
            let (sink, dir) = match self.sink {
                Some(s) => (s, None),
                None => temp_sink()?,
            };
            let mut pipeline = Pipeline::builder()
                .sink(sink.clone())
                // A test's scratch state, in a directory of its own.
                .store_secrets_unencrypted(true)
                .heartbeat_interval(None)
                .label("kind", "test-state-snapshot");
            let mut postgres = None;
            if let Some((url, database)) = self.postgres.first() {
                let server = Server::from_url(url, database)?;
                let source = PostgresSource::builder(server.connection())
                    .database(database)
                    .component(POSTGRES_COMPONENT)
                    .no_owner(false)
                    .no_privileges(false)
                    .build()?;
                pipeline = pipeline.source(source);
                let props = crate::server::props(&server.admin().await?, database).await?;
                postgres = Some(PgPart {
                    props: Some(props),
                    in_place: must_restore_in_place(&server, database).await?,
                    server,
                    database: database.clone(),
                    from_database: database.clone(),
                    terminate: self.terminate,
                });
            }
            let mut restorers = Vec::new();
            for (source, restorer) in self.parts {
                pipeline = pipeline.source(source);
                restorers.push(restorer);
            }
            let report = pipeline.build()?.run().await?.into_result()?;
            Ok(StateSnapshot {
                sink,
                manifest: report.manifest,
                keyring: Keyring::default(),
                postgres,
                restorers,
                _dir: dir,
            })
        })
        .await
    }
}

/// Loads a stored run (a production backup, say) as a [`StateSnapshot`];
/// [`StateSnapshot::load`].
pub struct FixtureBuilder {
    sink: Arc<dyn Sink>,
    run: Option<RunId>,
    keyring: Keyring,
    postgres: Option<(String, String, Option<String>)>,
    restorers: Vec<Arc<dyn Restorer>>,
    terminate: bool,
}

impl fmt::Debug for FixtureBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixtureBuilder")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl FixtureBuilder {
    /// This run (the newest complete one by default).
    pub fn run(mut self, run: RunId) -> Self {
        self.run = Some(run);
        self
    }

    /// The keys of an encrypted backup.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = keyring;
        self
    }

    /// Restores the backup's dump of `from_database` (its name in production; `None`: the
    /// run's only dump) into `database` on the server of `url`.
    pub fn postgres(mut self, url: &str, database: &str, from_database: Option<&str>) -> Self {
        self.postgres = Some((
            url.to_string(),
            database.to_string(),
            from_database.map(String::from),
        ));
        self
    }

    /// Restores another component with `restorer` (pointed at the test's systems).
    pub fn restorer(mut self, restorer: impl Restorer + 'static) -> Self {
        self.restorers.push(Arc::new(restorer));
        self
    }

    /// Terminate other sessions on the database when restoring it.
    pub fn terminate_connections(mut self, on: bool) -> Self {
        self.terminate = on;
        self
    }

    /// Reads the run's manifest (the run must be complete).
    pub async fn load(self) -> Result<StateSnapshot> {
        worker::run(async move {
            let catalog = Catalog::new(self.sink.clone());
            let run = match self.run {
                Some(r) => r,
                None => catalog
                    .list_runs(&RunFilter::default())
                    .await?
                    .into_iter()
                    .rev()
                    .find(|r| r.status == RunStatus::Complete && r.damage.is_none())
                    .map(|r| r.run_id)
                    .ok_or_else(|| {
                        Error::new(ErrorKind::NotFound, "the fixture holds no complete run")
                            .with_operation("load fixture")
                            .with_hint("copy a whole run (runs/<id>/ with its manifest.json) into the fixture")
                    })?,
            };
            let manifest = catalog.read_manifest(&run).await?;
            let postgres = match self.postgres {
                None => None,
                Some((url, database, from)) => {
                    let from = match from {
                        Some(f) => f,
                        None => only_dump(&manifest)?,
                    };
                    let server = Server::from_url(&url, &database)?;
                    Some(PgPart {
                        props: None,
                        in_place: false,
                        server,
                        database,
                        from_database: from,
                        terminate: self.terminate,
                    })
                }
            };
            Ok(StateSnapshot {
                sink: self.sink,
                manifest,
                keyring: self.keyring,
                postgres,
                restorers: self.restorers,
                _dir: None,
            })
        })
        .await
    }
}

/// The database name of the run's only PostgreSQL dump.
fn only_dump(manifest: &Manifest) -> Result<String> {
    let dbs: Vec<String> = manifest
        .artifacts
        .iter()
        .filter(|a| a.content_type == stoa_backup_providers::postgres::DUMP_CONTENT_TYPE)
        .filter_map(|a| {
            a.facts
                .get("database")
                .and_then(|v| v.as_str())
                .map(String::from)
        })
        .collect();
    match dbs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::config(format!(
            "run {} holds {} PostgreSQL dumps; name the one to restore",
            manifest.run_id,
            dbs.len()
        ))),
    }
}

/// A sink and the temporary directory it lives in (removed with the snapshot).
type TempSink = (Arc<dyn Sink>, Option<Arc<tempfile::TempDir>>);

fn temp_sink() -> Result<TempSink> {
    let dir = tempfile::Builder::new()
        .prefix("stoa-state-")
        .tempdir()
        .map_err(|e| Error::from_io(e, "cannot create the state snapshot's directory"))?;
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::new(dir.path())?);
    Ok((sink, Some(Arc::new(dir))))
}

impl StateSnapshot {
    /// A snapshot to take.
    pub fn builder() -> StateSnapshotBuilder {
        StateSnapshotBuilder::default()
    }

    /// A stored run in `sink` (a directory in the test's fixtures, a copy of a production
    /// backup) to restore into the test's systems.
    pub fn load(sink: impl Sink + 'static) -> FixtureBuilder {
        FixtureBuilder {
            sink: Arc::new(sink),
            run: None,
            keyring: Keyring::default(),
            postgres: None,
            restorers: Vec::new(),
            terminate: false,
        }
    }

    /// The run's manifest (its artifacts, digests and provider facts).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The components stored.
    pub fn components(&self) -> Vec<String> {
        let mut c: Vec<String> = self
            .manifest
            .artifacts
            .iter()
            .map(|a| a.component.clone())
            .collect();
        c.dedup();
        c
    }

    /// Puts every part back: PostgreSQL first, then the others in the order given.
    pub async fn restore(&self) -> Result<Vec<RunRestored>> {
        let sink = self.sink.clone();
        let manifest = self.manifest.clone();
        let keyring = self.keyring.clone();
        let postgres = self.postgres.clone();
        let restorers = self.restorers.clone();
        worker::run(async move {
            let mut done = Vec::new();
            if let Some(pg) = postgres {
                pg.restore(sink.clone(), &manifest, keyring.clone()).await?;
            }
            if !restorers.is_empty() {
                let mut builder = Restore::builder()
                    .sink(sink)
                    .keyring(keyring)
                    .existing(ExistingDataPolicy::Overwrite);
                for r in restorers {
                    builder = builder.restorer(r);
                }
                let restore = builder.build()?;
                let plan = restore.plan(&manifest).await?;
                done.push(restore.apply(&plan).await?);
            }
            Ok(done)
        })
        .await
    }
}
