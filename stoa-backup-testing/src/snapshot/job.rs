//! The statements that put a template snapshot back: the live database moved aside or
//! dropped, the copy (or its spare) cloned or renamed in under its name.

use stoa_backup_core::error::Result;
use tokio_postgres::Client;

use crate::server::{
    self, clear_sessions, clone_database, drop_database, exec, ident, literal, mark, CloneStrategy,
    DatabaseProps, Marker, MarkerKind, Server,
};
use crate::worker;

/// How long a clone waits for the drop of the database it replaces to discard its pages.
const DROP_HEAD_START_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// What a restore needs, owned (it runs on the background runtime).
#[derive(Clone)]
pub(crate) struct Job {
    pub server: Server,
    pub database: String,
    pub props: DatabaseProps,
    pub terminate: bool,
    pub strategy: CloneStrategy,
}

impl Job {
    /// Clones `copy` in under the database's name. The live database is moved aside and
    /// dropped on a connection of its own, and the clone starts once that `DROP` has
    /// discarded the database's pages from the buffer cache (it is then waiting for its
    /// checkpoint, or unlinking files): the test's dirty pages are thrown away rather than
    /// written back by the clone's own checkpoint, and the test does not wait for the
    /// unlinking, which runs beside the copy. Should the clone fail, the snapshot is
    /// intact and `restore()` can be called again.
    pub async fn clone_in(&self, copy: &str) -> Result<()> {
        let admin = self.server.admin().await?;
        if let Some(old) = self.move_aside(&admin).await? {
            let server = self.server.clone();
            let (started, pid) = tokio::sync::oneshot::channel();
            let what = format!("dropping the replaced database '{old}'");
            worker::spawn_tracked(what, async move {
                let admin = server.admin().await?;
                let pid: i32 = admin
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .map_err(|e| server::pg_error(e, "drop database", &old))?
                    .get(0);
                let _ = started.send(pid);
                drop_database(&admin, &old).await
            });
            if let Ok(pid) = pid.await {
                wait_pages_discarded(&admin, pid).await;
            }
        }
        let db = &self.database;
        let put_back = async {
            clone_database(
                &self.server,
                &admin,
                copy,
                db,
                self.strategy,
                self.props.size,
                Some(&self.props),
            )
            .await?;
            self.open(&admin).await?;
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

    /// Renames `copy` (the snapshot's copy itself, or its spare, already closed to
    /// connections and marked) in under the database's name. Returns the live database it
    /// moved aside, to be dropped later; when the rename fails, that one is put back.
    /// `full_props`: the copy has only the owner and connection limit (the snapshot's own
    /// copy), not yet the privileges and settings (a spare has them).
    pub async fn rename_in(&self, copy: &str, full_props: bool) -> Result<Option<String>> {
        let admin = self.server.admin().await?;
        let old = self.move_aside(&admin).await?;
        let db = &self.database;
        let renamed = exec(
            &admin,
            &format!("ALTER DATABASE {} RENAME TO {}", ident(copy), ident(db)),
            "restore snapshot",
            db,
        )
        .await;
        if let Err(e) = renamed {
            if let Some(old) = &old {
                self.undo_aside(&admin, old).await;
            }
            return Err(e);
        }
        self.open(&admin).await?;
        if full_props {
            server::apply_props(&admin, db, &self.props).await?;
        } else {
            let comment = self
                .props
                .comment
                .as_deref()
                .map(literal)
                .unwrap_or_else(|| "NULL".into());
            exec(
                &admin,
                &format!("COMMENT ON DATABASE {} IS {comment}", ident(db)),
                "restore snapshot",
                db,
            )
            .await?;
        }
        Ok(old)
    }

    /// Whether database `name` is on the server.
    pub async fn exists(&self, name: &str) -> Result<bool> {
        let admin = self.server.admin().await?;
        Ok(admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(|e| server::pg_error(e, "restore snapshot", name))?
            .is_some())
    }

    /// Moves the live database aside (closed, its sessions gone, renamed and marked as
    /// replaced); `None` when there is none.
    async fn move_aside(&self, admin: &Client) -> Result<Option<String>> {
        let db = &self.database;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[db])
            .await
            .map_err(|e| server::pg_error(e, "restore snapshot", db))?
            .is_some();
        if !exists {
            return Ok(None);
        }
        if self.terminate {
            exec(
                admin,
                &format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", ident(db)),
                "restore snapshot",
                db,
            )
            .await?;
        }
        let old = server::fit_name(db, &format!("_old_{:08x}", rand::random::<u32>()));
        let aside = async {
            clear_sessions(admin, db, self.terminate, "restore the snapshot").await?;
            exec(
                admin,
                &format!("ALTER DATABASE {} RENAME TO {}", ident(db), ident(&old)),
                "move the changed database aside",
                db,
            )
            .await
        }
        .await;
        if let Err(e) = aside {
            self.reopen(admin, db).await;
            return Err(e);
        }
        mark(admin, &old, &Marker::new(MarkerKind::Replaced).source(db)).await?;
        Ok(Some(old))
    }

    /// Gives the moved-aside database its name back after a failed rename.
    async fn undo_aside(&self, admin: &Client, old: &str) {
        let back = exec(
            admin,
            &format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(old),
                ident(&self.database)
            ),
            "restore snapshot",
            &self.database,
        )
        .await;
        if back.is_ok() {
            self.reopen(admin, &self.database).await;
            let _ = server::apply_props(admin, &self.database, &self.props).await;
        }
    }

    async fn open(&self, admin: &Client) -> Result<()> {
        exec(
            admin,
            &format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS true",
                ident(&self.database)
            ),
            "restore snapshot",
            &self.database,
        )
        .await
    }

    /// Opens `database` again after a failed restore closed it.
    async fn reopen(&self, admin: &Client, database: &str) {
        if self.terminate {
            let _ = exec(
                admin,
                &format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", ident(database)),
                "restore snapshot",
                database,
            )
            .await;
        }
    }
}

/// Waits until backend `pid`'s `DROP DATABASE` is past discarding the database's buffers:
/// seen waiting for the checkpoint `DROP DATABASE` requests right after (or the signal
/// barrier after that), done, or gone. A wait that misses those moments lasts until the
/// drop is done; at most [`DROP_HEAD_START_MAX`], and a failed look ends it (the clone is
/// correct either way, only slower).
async fn wait_pages_discarded(admin: &Client, pid: i32) {
    let start = std::time::Instant::now();
    while start.elapsed() < DROP_HEAD_START_MAX {
        let row = admin
            .query_opt(
                "SELECT state = 'active', starts_with(query, 'DROP DATABASE'), \
                 coalesce(wait_event, '') \
                 FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await;
        let Ok(Some(row)) = row else { return };
        let (active, dropping, wait): (bool, bool, String) = (row.get(0), row.get(1), row.get(2));
        let past_buffers = matches!(
            wait.as_str(),
            "CheckpointStart" | "CheckpointDone" | "ProcSignalBarrier"
        );
        if dropping && (!active || past_buffers) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
