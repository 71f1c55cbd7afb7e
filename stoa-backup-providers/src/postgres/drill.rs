//! Restore drills into a scratch database: [`ScratchDatabase`] gives a recovery step that
//! restores the PostgreSQL run into a database of its own and a clean-up that drops it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use stoa_backup_core::recovery::{CleanUp, Step};
use stoa_backup_core::{
    Error, ErrorKind, KeyNeeded, RestoreContext, RestoreReport, Restorer, Result,
};

use super::queries::database_exists;
use super::restore::{PostgresRestorer, RestoreTarget};
use super::verify::drop_database_force;
use super::PgConnection;

/// A database a drill restores into and drops afterwards.
///
/// It only ever drops a database the drill created: the step's preflight refuses a name
/// that exists already (a production database, or a scratch database a crashed drill left:
/// drop it by hand after a look), and the clean-up drops the database only once the step's
/// restore started.
#[derive(Debug, Clone)]
pub struct ScratchDatabase {
    conn: PgConnection,
    name: String,
    started: Arc<AtomicBool>,
}

impl ScratchDatabase {
    /// A scratch database `name` on the server `conn` reaches. Refuses the connection's own
    /// database and the server's system databases.
    pub fn new(conn: PgConnection, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let reserved = ["postgres", "template0", "template1"];
        if name.is_empty() || reserved.contains(&name.as_str()) || name == conn.get_dbname() {
            return Err(
                Error::config(format!("'{name}' cannot be a drill's scratch database"))
                    .with_component(super::COMPONENT)
                    .with_operation("drill")
                    .with_hint("name a database that does not exist, e.g. stoa_drill"),
            );
        }
        Ok(ScratchDatabase {
            conn,
            name,
            started: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The scratch database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A restore step into the scratch database, with `restorer`'s settings (jobs, the dump
    /// to pick…) but its target replaced by the scratch database; cleaned up by this.
    pub fn step(&self, restorer: PostgresRestorer) -> Step {
        let inner = restorer.target(RestoreTarget::NewDatabase {
            name: self.name.clone(),
            swap: false,
        });
        Step::restore(IntoScratch {
            inner,
            scratch: self.clone(),
        })
        .clean_up(self.clone())
    }
}

#[async_trait]
impl CleanUp for ScratchDatabase {
    async fn clean_up(&self) -> Result<String> {
        if !self.started.load(Ordering::SeqCst) {
            return Ok(format!(
                "nothing to drop: no restore into '{}' started",
                self.name
            ));
        }
        drop_database_force(&self.conn, &self.name)
            .await
            .map_err(|e| {
                e.or_component(super::COMPONENT)
                    .or_operation("drop scratch database")
            })?;
        Ok(format!("dropped database '{}'", self.name))
    }
}

/// The PostgreSQL restorer of a drill: refuses a scratch database that exists, and marks the
/// restore started for the clean-up.
#[derive(Debug)]
struct IntoScratch {
    inner: PostgresRestorer,
    scratch: ScratchDatabase,
}

#[async_trait]
impl Restorer for IntoScratch {
    fn component(&self) -> &str {
        Restorer::component(&self.inner)
    }

    async fn preflight(&self, ctx: &RestoreContext<'_>) -> Result<()> {
        let admin = self
            .scratch
            .conn
            .connect(self.scratch.conn.get_dbname())
            .await?;
        if database_exists(&admin, &self.scratch.name).await? {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "the drill's scratch database '{}' exists already",
                    self.scratch.name
                ),
            )
            .with_operation("preflight drill")
            .with_hint("a drill restores only into a database it creates: look at it, drop it, or name another scratch database"));
        }
        self.inner.preflight(ctx).await
    }

    async fn keys_needed(&self, ctx: &RestoreContext<'_>) -> Result<Vec<KeyNeeded>> {
        self.inner.keys_needed(ctx).await
    }

    async fn plan(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        self.inner.plan(ctx).await
    }

    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        if !ctx.dry_run() {
            self.scratch.started.store(true, Ordering::SeqCst);
        }
        self.inner.restore(ctx).await
    }
}
