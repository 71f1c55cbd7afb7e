//! The statements that put a template snapshot back: the live database moved aside or
//! dropped, the copy (or its spare) cloned or renamed in under its name.

use stoa_backup_core::error::Result;
use tokio_postgres::Client;

use crate::server::{
    self, clear_sessions, clone_database, drop_database, exec, ident, literal, mark, CloneStrategy,
    DatabaseProps, Marker, MarkerKind, Server,
};

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
    /// Clones `copy` in under the database's name, the live database dropped first: that
    /// discards the test's dirty pages instead of letting the clone's checkpoint write them
    /// back only to throw them away. Dropping it beside the clone instead (on a connection
    /// of its own, the clone started once the drop had discarded its buffers) was measured
    /// and is not kept: 0.32-0.35 s against 0.52 s at 230 MB in one run, but 0.53-0.92 s in
    /// the next and 3.4 s against 1.6 s at 1.1 GB — the unlinking beside the copy slows the
    /// copy's writes on this machine's disk. Should the clone fail, the snapshot is intact
    /// and `restore()` can be called again.
    pub async fn clone_in(&self, copy: &str) -> Result<()> {
        let admin = self.server.admin().await?;
        if let Some(old) = self.move_aside(&admin).await? {
            drop_database(&admin, &old).await?;
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
        server::database_exists(&admin, name, "restore snapshot").await
    }

    /// Moves the live database aside (closed, its sessions gone, renamed and marked as
    /// replaced); `None` when there is none.
    async fn move_aside(&self, admin: &Client) -> Result<Option<String>> {
        let db = &self.database;
        if !server::database_exists(admin, db, "restore snapshot").await? {
            return Ok(None);
        }
        if self.terminate {
            server::allow_connections(admin, db, false, "restore snapshot").await?;
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
            // Best effort on a path that already fails: the caller returns the rename's
            // error, and this only puts back the comment the move aside replaced.
            let _ = server::apply_props(admin, &self.database, &self.props).await;
        }
    }

    async fn open(&self, admin: &Client) -> Result<()> {
        server::allow_connections(admin, &self.database, true, "restore snapshot").await
    }

    /// Opens `database` again after a failed restore closed it (only `terminate` closes
    /// it). Best effort: the caller returns the error that stopped the restore.
    async fn reopen(&self, admin: &Client, database: &str) {
        if self.terminate {
            let _ = server::allow_connections(admin, database, true, "restore snapshot").await;
        }
    }
}
