//! The dump way of a [`PgSnapshot`](crate::PgSnapshot): the library's own PostgreSQL
//! backup into a temporary directory, in the production format, and its restorer.

use std::path::Path;
use std::sync::Arc;

use stoa_backup_core::codec::Keyring;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::manifest::Manifest;
use stoa_backup_core::pipeline::Pipeline;
use stoa_backup_core::restore::{ExistingDataPolicy, Restore, RunRestored};
use stoa_backup_core::sink::Sink;
use stoa_backup_providers::postgres::{PostgresRestorer, PostgresSource, RestoreTarget};
use stoa_backup_storage::LocalSink;

use crate::server::{
    self, clear_sessions, drop_database, exec, ident, props, DatabaseProps, Server,
};

/// A database's backup kept for a snapshot; cloned cheaply (the directory is shared and
/// removed with the last clone).
#[derive(Debug, Clone)]
pub(crate) struct DumpCopy {
    _dir: Arc<tempfile::TempDir>,
    sink: Arc<LocalSink>,
    manifest: Manifest,
    /// The database's own properties when it was backed up.
    props: DatabaseProps,
    /// Restore inside the live database (`DROP OWNED BY CURRENT_USER`, then the dump)
    /// rather than beside it and swapped in: for a role that cannot create or rename the
    /// database.
    in_place: bool,
}

impl DumpCopy {
    /// Backs `database` up into a new temporary directory (in `scratch`, or the system's).
    pub(crate) async fn take(
        server: &Server,
        database: &str,
        scratch: Option<&Path>,
    ) -> Result<DumpCopy> {
        let in_place = must_restore_in_place(server, database).await?;
        let props = props(&server.admin().await?, database).await?;
        let dir = match scratch {
            Some(d) => tempfile::Builder::new()
                .prefix("stoa-snapshot-")
                .tempdir_in(d),
            None => tempfile::Builder::new().prefix("stoa-snapshot-").tempdir(),
        }
        .map_err(|e| Error::from_io(e, "cannot create the snapshot's temporary directory"))?;
        let sink = Arc::new(LocalSink::new(dir.path())?);
        let source = PostgresSource::builder(server.connection())
            .database(database)
            .no_owner(false)
            .no_privileges(false)
            .build()?;
        let report = Pipeline::builder()
            .source(source)
            .sink(sink.clone())
            // A test's scratch copy, removed with the snapshot.
            .store_secrets_unencrypted(true)
            .heartbeat_interval(None)
            .build()?
            .run()
            .await?
            .into_result()?;
        Ok(DumpCopy {
            _dir: Arc::new(dir),
            sink,
            manifest: report.manifest,
            props,
            in_place,
        })
    }

    /// Puts `database` back from the backup.
    pub(crate) async fn restore(
        &self,
        server: &Server,
        database: &str,
        terminate: bool,
    ) -> Result<()> {
        let sink: Arc<dyn Sink> = self.sink.clone();
        PgPart {
            server: server.clone(),
            database: database.to_string(),
            from_database: database.to_string(),
            in_place: self.in_place,
            terminate,
            props: Some(self.props.clone()),
        }
        .restore(sink, &self.manifest, Keyring::default())
        .await
    }
}

/// Whether restores into `database` must happen inside it: the current role can neither
/// create databases nor rename this one (not a superuser, not its owner with CREATEDB).
pub(crate) async fn must_restore_in_place(server: &Server, database: &str) -> Result<bool> {
    let admin = server.admin().await?;
    let row = admin
        .query_one(
            "SELECT rolsuper, rolcreatedb, current_user::text FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| server::pg_error(e, "read the role's rights", database))?;
    let (superuser, createdb, me): (bool, bool, String) = (row.get(0), row.get(1), row.get(2));
    let owner = props(&admin, database).await?.owner;
    Ok(!(superuser || (createdb && owner == me)))
}

/// A PostgreSQL database restored from a run in the production format.
#[derive(Debug, Clone)]
pub(crate) struct PgPart {
    pub server: Server,
    /// The database put back.
    pub database: String,
    /// The database's name in the backup.
    pub from_database: String,
    pub in_place: bool,
    pub terminate: bool,
    /// The properties to put back (the owner, privileges, settings, comment); `None`:
    /// those the database has before the restore.
    pub props: Option<DatabaseProps>,
}

impl PgPart {
    /// Replaces `database` with the dump of `from_database` in `manifest`: beside it and
    /// swapped in (the replaced one dropped, the owner, privileges, settings and comment
    /// put back), or inside it after `DROP OWNED BY CURRENT_USER`.
    pub(crate) async fn restore(
        &self,
        sink: Arc<dyn Sink>,
        manifest: &Manifest,
        keyring: Keyring,
    ) -> Result<()> {
        let database = self.database.as_str();
        let admin = self.server.admin().await?;
        let exists = server::database_exists(&admin, database, "find the database").await?;
        if exists {
            clear_sessions(&admin, database, self.terminate, "restore the snapshot").await?;
        }
        if self.in_place {
            let inside = self.server.connect(database).await?;
            exec(
                &inside,
                "DROP OWNED BY CURRENT_USER",
                "empty the database",
                database,
            )
            .await?;
            drop(inside);
            server::wait_sessions_gone(&admin, database).await?;
            let target = RestoreTarget::Clean {
                database: database.to_string(),
            };
            self.run(sink, manifest, keyring, target).await?;
            if let Some(p) = &self.props {
                server::apply_props(&admin, database, p).await?;
            }
            return Ok(());
        }
        let before = match (&self.props, exists) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => Some(props(&admin, database).await?),
            (None, false) => None,
        };
        let target = RestoreTarget::NewDatabase {
            name: database.to_string(),
            swap: exists,
        };
        let restored = self.run(sink, manifest, keyring, target).await?;
        // The restorer keeps the replaced database for an operator; a test wants it gone.
        for c in &restored.components {
            if let Some(old) = c
                .report
                .facts
                .get("previous_database")
                .and_then(|v| v.as_str())
            {
                drop_database(&admin, old).await?;
            }
        }
        let Some(before) = before else {
            return Ok(());
        };
        exec(
            &admin,
            &format!(
                "ALTER DATABASE {} OWNER TO {}",
                ident(database),
                ident(&before.owner)
            ),
            "restore database properties",
            database,
        )
        .await?;
        server::apply_props(&admin, database, &before).await
    }

    async fn run(
        &self,
        sink: Arc<dyn Sink>,
        manifest: &Manifest,
        keyring: Keyring,
        target: RestoreTarget,
    ) -> Result<RunRestored> {
        let restorer = PostgresRestorer::new(self.server.connection(), target)
            .from_database(&self.from_database)
            .no_owner(false)
            .no_privileges(false)
            .check_row_counts(true);
        let restore = Restore::builder()
            .sink(sink)
            .keyring(keyring)
            .restorer(restorer)
            .existing(ExistingDataPolicy::Overwrite)
            .build()?;
        let plan = restore.plan(manifest).await?;
        restore.apply(&plan).await.map_err(|e| {
            if e.kind() == ErrorKind::PermissionDenied {
                e.or_hint("restoring inside the database needs the role to own its objects")
            } else {
                e
            }
        })
    }
}
