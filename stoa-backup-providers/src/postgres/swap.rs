//! Swapping a restored database into place under the live name, so that the live name always
//! resolves to a whole database that accepts connections:
//!
//! - the admin session has a lock timeout: a session holding a lock on the live database
//!   makes the swap fail fast (naming that session), never wait with the live database
//!   closed to connections;
//! - both renames (live → old, staging → live) run in one transaction, with the old
//!   database's `ALLOW_CONNECTIONS` put back and the marker cleared: PostgreSQL allows
//!   `ALTER DATABASE … RENAME` and `… ALLOW_CONNECTIONS` in a transaction block (only
//!   `CREATE`/`DROP DATABASE` are not), so the swap happens whole or not at all. Each
//!   statement is sent on its own, so the server never goes on with a swap whose client died;
//! - closing the live database to new connections has to be committed before the
//!   transaction to work at all, so every failure path opens it again (on a fresh session
//!   when the admin one broke);
//! - before it begins, the swap is recorded in a [`SwapMarker`], the comment of the staging
//!   database: it lives in the server's shared catalog (found from any host a rerun runs
//!   on, unlike a local file), is transactional, moves with the database when it is renamed
//!   and goes away with it when it is dropped, and needs no table in the user's databases.
//!   A rerun that finds it finishes the swap (same run: the staging copy was restored and
//!   verified) or undoes it (another run), and says which.
//!
//! A session-level advisory lock on the live name keeps two restores into it from running
//! at once, so a rerun that finds a marker knows its restore is gone, not in progress.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::retry::{RetryDecision, RetryPolicy};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::conn::{quote_ident, quote_literal, PgConnection};
use super::queries;

/// Start of the comment a staging database carries while its swap is in progress.
pub(crate) const MARKER_PREFIX: &str = "stoa-backup swap in progress: ";

/// How long the admin session may sit idle inside a transaction: the swap's transaction
/// holds the live database's lock, which new connections to it wait for, so a client that
/// hangs (rather than dies) must not hold it for long.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// First key of the advisory lock a restore into a live name holds ("STOA").
const RESTORE_LOCK_CLASS: i32 = 0x5354_4f41;

/// A swap in progress, as recorded in the staging database's comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SwapMarker {
    /// The live name.
    pub live: String,
    /// The staging database (restored and verified) that takes the live name.
    pub staging: String,
    /// The name the live database is kept under.
    pub old: String,
    /// The run restored.
    pub run: String,
    /// Whether the live database accepted connections before the swap closed it.
    pub live_allowed_connections: bool,
    /// When the swap began.
    pub started_at: DateTime<Utc>,
    /// Process id of the restore that began it.
    pub pid: u32,
}

impl SwapMarker {
    fn comment(&self) -> Result<String> {
        let json = serde_json::to_string(self)
            .map_err(|e| Error::internal("cannot serialize the swap marker").with_source(e))?;
        Ok(format!("{MARKER_PREFIX}{json}"))
    }

    /// The marker in a database comment: `None` for comments that are not markers.
    fn parse(comment: &str) -> Option<std::result::Result<SwapMarker, serde_json::Error>> {
        comment
            .strip_prefix(MARKER_PREFIX)
            .map(serde_json::from_str::<SwapMarker>)
    }
}

/// The session for `CREATE`/`ALTER`/`DROP DATABASE`, with the lock timeout set.
pub(crate) struct AdminSession {
    conn: PgConnection,
    dbname: String,
    lock_timeout: Duration,
    client: Client,
}

impl AdminSession {
    /// Connects to the configured database, unless that is `avoid` (a database cannot be
    /// renamed or dropped from a session connected to it).
    pub(crate) async fn open(
        conn: &PgConnection,
        avoid: &str,
        lock_timeout: Duration,
    ) -> Result<Self> {
        let dbname = if conn.get_dbname() != avoid {
            conn.get_dbname()
        } else if avoid == "postgres" {
            "template1"
        } else {
            "postgres"
        }
        .to_string();
        let client = connect(conn, &dbname, lock_timeout).await?;
        Ok(AdminSession {
            conn: conn.clone(),
            dbname,
            lock_timeout,
            client,
        })
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The session, connected again if its connection broke: failure paths must still be
    /// able to open the live database again.
    async fn usable(&mut self) -> Result<&Client> {
        if self.client.is_closed() {
            self.client = connect(&self.conn, &self.dbname, self.lock_timeout).await?;
        }
        Ok(&self.client)
    }

    /// Takes the restore lock of `live` for the rest of the session, or fails with
    /// [`ErrorKind::Conflict`] when another restore into it holds it.
    pub(crate) async fn lock_target(&self, live: &str) -> Result<()> {
        let row = self
            .client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&RESTORE_LOCK_CLASS, &live],
            )
            .await
            .map_err(|e| admin_error(e, &format!("taking the restore lock of '{live}'")))?;
        if row.get::<_, bool>(0) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("another restore into database '{live}' is running"),
        )
        .with_context("database", live)
        .with_hint(format!(
            "wait for it to end (its session holds an advisory lock with classid {RESTORE_LOCK_CLASS} in pg_locks), then rerun"
        )))
    }

    /// Releases the restore lock of `live` now. Closing the session releases it too, but only
    /// once the server has noticed, so a restore starting right after (the apply of a plan)
    /// could find it still held.
    pub(crate) async fn unlock_target(&self, live: &str) {
        // A failure means the session is gone, and the lock with it.
        self.client
            .query_one(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&RESTORE_LOCK_CLASS, &live],
            )
            .await
            .ok();
    }
}

async fn connect(conn: &PgConnection, dbname: &str, lock_timeout: Duration) -> Result<Client> {
    let client = conn
        .connect(dbname)
        .await
        .map_err(|e| e.or_operation("restore"))?;
    let lock_ms = lock_timeout.as_millis().max(1);
    let idle_ms = IDLE_IN_TRANSACTION_TIMEOUT.as_millis();
    client
        .batch_execute(&format!(
            "SET lock_timeout = '{lock_ms}ms'; SET idle_in_transaction_session_timeout = '{idle_ms}ms'"
        ))
        .await
        .map_err(|e| admin_error(e, "setting the lock timeout"))?;
    Ok(client)
}

/// The error of an administrative statement; a lock timeout is [`ErrorKind::Unavailable`]
/// (retrying once the other session is done helps).
pub(crate) fn admin_error(e: tokio_postgres::Error, what: &str) -> Error {
    let lock_timeout = e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
    let err = queries::map_query_error(e, what).with_operation("restore");
    if lock_timeout {
        err.with_kind(ErrorKind::Unavailable)
    } else {
        err
    }
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

/// Drops a database, terminating its connections.
async fn try_drop_database(admin: &Client, name: &str) -> Result<()> {
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    admin
        .batch_execute(&sql)
        .await
        .map_err(|e| admin_error(e, &format!("dropping database '{name}'")))
}

/// Drops a database, terminating its connections; failures are logged, not returned (this
/// runs on error paths).
pub(crate) async fn drop_database(admin: &Client, name: &str) {
    if let Err(e) = try_drop_database(admin, name).await {
        tracing::warn!(database = name, error = %e, "could not drop database; drop it by hand");
    }
}

/// `datallowconn` of a database, `None` when there is none of that name.
pub(crate) async fn allows_connections(admin: &Client, name: &str) -> Result<Option<bool>> {
    let row = admin
        .query_opt(
            "SELECT datallowconn FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .map_err(|e| admin_error(e, "looking up a database"))?;
    Ok(row.map(|r| r.get(0)))
}

/// Records the swap in the staging database's comment (before anything of it happens).
pub(crate) async fn write_marker(admin: &Client, marker: &SwapMarker) -> Result<()> {
    let sql = format!(
        "COMMENT ON DATABASE {} IS {}",
        quote_ident(&marker.staging),
        quote_literal(&marker.comment()?)
    );
    admin.batch_execute(&sql).await.map_err(|e| {
        admin_error(
            e,
            &format!("recording the swap on database '{}'", marker.staging),
        )
    })
}

/// The swaps into `live` that were begun and never finished, and warnings about markers
/// that cannot be acted on.
pub(crate) async fn find_markers(
    admin: &Client,
    live: &str,
) -> Result<(Vec<SwapMarker>, Vec<String>)> {
    let rows = admin
        .query(
            "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
             WHERE starts_with(shobj_description(oid, 'pg_database'), $1) ORDER BY datname",
            &[&MARKER_PREFIX],
        )
        .await
        .map_err(|e| admin_error(e, "looking for interrupted swaps"))?;
    let mut markers = Vec::new();
    let mut warnings = Vec::new();
    for row in rows {
        let (datname, comment): (String, String) = (row.get(0), row.get(1));
        match SwapMarker::parse(&comment) {
            Some(Ok(m)) if m.live != live => {}
            Some(Ok(m)) if m.staging != datname => warnings.push(format!(
                "database '{datname}' carries the marker of a swap of '{}' into '{live}' but was renamed since; left alone, inspect it",
                m.staging
            )),
            Some(Ok(m)) => markers.push(m),
            Some(Err(e)) => warnings.push(format!(
                "database '{datname}' carries an unreadable swap marker ({e}); left alone, inspect it"
            )),
            None => {}
        }
    }
    Ok((markers, warnings))
}

/// Undoes a swap that was begun and never finished: the live database accepts connections
/// again (if it did before) and the staging database is dropped, marker and all (last, so
/// that a failure leaves the marker for the next rerun). Returns whether the live database
/// had to be opened again.
pub(crate) async fn undo(admin: &Client, m: &SwapMarker) -> Result<bool> {
    let reopened = match allows_connections(admin, &m.live).await? {
        Some(false) if m.live_allowed_connections => {
            set_allow_connections(admin, &m.live, true).await?;
            true
        }
        _ => false,
    };
    try_drop_database(admin, &m.staging).await?;
    Ok(reopened)
}

fn rename_sql(from: &str, to: &str) -> String {
    format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(from),
        quote_ident(to)
    )
}

fn allow_sql(name: &str, allow: bool) -> String {
    format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
        quote_ident(name)
    )
}

async fn set_allow_connections(admin: &Client, name: &str, allow: bool) -> Result<()> {
    let what = format!("setting ALLOW_CONNECTIONS {allow} on database '{name}'");
    match admin.batch_execute(&allow_sql(name, allow)).await {
        Ok(()) => Ok(()),
        Err(e) => Err(statement_error(admin, e, &what, &[name]).await),
    }
}

async fn terminate(admin: &Client, databases: &[&str]) {
    let names: Vec<String> = databases.iter().map(|d| d.to_string()).collect();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
            &[&names],
        )
        .await
        .ok();
}

/// Swaps `m.staging` in under `m.live` (moving an existing live database to `m.old`), as
/// recorded in the marker. Returns whether there was a live database to move aside.
///
/// On failure the live database is as it was and accepts connections again as it did
/// before (the error says so, or says how to open it when that failed too), and the staging
/// database is kept with its marker: rerunning the same restore swaps it in without
/// restoring again.
pub(crate) async fn swap_in(admin: &mut AdminSession, m: &SwapMarker) -> Result<bool> {
    let client = admin.client();
    let live_exists = allows_connections(client, &m.live).await?.is_some();
    if live_exists {
        // Committed, or it would not keep clients from connecting again between the
        // termination and the rename.
        set_allow_connections(client, &m.live, false)
            .await
            .map_err(|e| add_hint(e, &kept(m, "is unchanged")))?;
    }
    // Clients connected before connections were refused are terminated; a session of ours
    // that is still closing may keep the rename waiting a moment ("in use"): try again.
    let policy = RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let outcome = policy
        .retry_when(
            &format!("swapping '{}' in as '{}'", m.staging, m.live),
            || async {
                terminate(client, &[&m.live, &m.staging]).await;
                swap_transaction(client, m, live_exists).await
            },
            |outcome| match outcome {
                Err((_, e)) if e.code() == Some(&SqlState::OBJECT_IN_USE) => RetryDecision::Retry {
                    after: None,
                    reason: "the database is still in use".into(),
                },
                _ => RetryDecision::Done,
            },
        )
        .await;
    let (what, e) = match outcome {
        Ok(()) => return Ok(live_exists),
        Err(failure) => failure,
    };
    let in_use = e.code() == Some(&SqlState::OBJECT_IN_USE);
    let mut err = statement_error(client, e, &what, &[&m.live, &m.staging]).await;
    if in_use {
        err = add_hint(
            err,
            "something keeps connecting to it (a role allowed to bypass ALLOW_CONNECTIONS, or sessions this role may not terminate); stop those clients",
        );
    }
    if !live_exists {
        return Err(add_hint(err, &kept(m, "did not exist and still does not")));
    }
    let reopen = match admin.usable().await {
        Ok(client) => set_allow_connections(client, &m.live, m.live_allowed_connections).await,
        Err(e) => Err(e),
    };
    Err(match reopen {
        Ok(()) => add_hint(err, &kept(m, "is unchanged and accepts connections again")),
        Err(again) => add_hint(
            err,
            &format!(
                "'{}' is unchanged but still refuses connections: opening it again failed too ({again}); run `ALTER DATABASE {} ALLOW_CONNECTIONS true`, or rerun the same restore, which finishes the swap",
                m.live,
                quote_ident(&m.live)
            ),
        ),
    })
}

fn kept(m: &SwapMarker, live_state: &str) -> String {
    format!(
        "'{}' {live_state}; the restored copy is kept as '{}': rerun the same restore to swap it in without restoring again, or restore another run (which drops it)",
        m.live, m.staging
    )
}

fn add_hint(err: Error, more: &str) -> Error {
    let hint = match err.hint() {
        Some(h) => format!("{h}; {more}"),
        None => more.to_string(),
    };
    err.with_hint(hint)
}

/// Both renames, the old database's `ALLOW_CONNECTIONS` and the marker's removal, in one
/// transaction. Each statement is sent on its own: if this process dies, its session rolls
/// back at the next read instead of going on with a swap nobody watches. Fails with the
/// statement that failed (after rolling back).
async fn swap_transaction(
    client: &Client,
    m: &SwapMarker,
    live_exists: bool,
) -> std::result::Result<(), (String, tokio_postgres::Error)> {
    let mut steps: Vec<(String, String)> = Vec::new();
    if live_exists {
        steps.push((
            format!("renaming database '{}' to '{}'", m.live, m.old),
            rename_sql(&m.live, &m.old),
        ));
    }
    steps.push((
        format!("renaming database '{}' to '{}'", m.staging, m.live),
        rename_sql(&m.staging, &m.live),
    ));
    if live_exists && m.live_allowed_connections {
        steps.push((
            format!("opening database '{}' to connections again", m.old),
            allow_sql(&m.old, true),
        ));
    }
    steps.push((
        format!("removing the swap marker from '{}'", m.live),
        format!("COMMENT ON DATABASE {} IS NULL", quote_ident(&m.live)),
    ));
    steps.push(("committing the swap".to_string(), "COMMIT".to_string()));
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| ("starting the swap transaction".to_string(), e))?;
    for (what, sql) in steps {
        if let Err(e) = client.batch_execute(&sql).await {
            client.batch_execute("ROLLBACK").await.ok();
            return Err((what, e));
        }
    }
    Ok(())
}

/// The error of a failed statement on `databases`; a lock timeout is
/// [`ErrorKind::Unavailable`] naming the sessions holding a lock on them.
async fn statement_error(
    admin: &Client,
    e: tokio_postgres::Error,
    what: &str,
    databases: &[&str],
) -> Error {
    if e.code() != Some(&SqlState::LOCK_NOT_AVAILABLE) {
        return admin_error(e, what);
    }
    let holders = lock_holders(admin, databases).await;
    admin_error(e, what)
        .with_context("database", databases.join(", "))
        .with_hint(format!(
            "another session holds a lock on the database ({holders}): end its transaction (or `SELECT pg_terminate_backend(<pid>)`), then rerun the restore"
        ))
}

/// The sessions holding a lock on any of `databases` (as database objects), described for
/// an operator: process id, user, application, where connected and state (never the query
/// text, which may hold secrets).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn marker() -> SwapMarker {
        SwapMarker {
            live: "stoa".into(),
            staging: "stoa_restore_20261124t080000z_1a2b3c".into(),
            old: "stoa_old_20261124t080000z_1a2b3c".into(),
            run: "20261124T080000Z-1a2b3c".into(),
            live_allowed_connections: true,
            started_at: "2026-11-24T08:05:00Z".parse().unwrap(),
            pid: 4242,
        }
    }

    #[test]
    fn markers_round_trip_through_the_comment_and_other_comments_are_not_markers() {
        let m = marker();
        let comment = m.comment().unwrap();
        assert!(comment.starts_with(MARKER_PREFIX), "{comment}");
        assert_eq!(SwapMarker::parse(&comment).unwrap().unwrap(), m);
        assert!(SwapMarker::parse("the billing database").is_none());
        assert!(SwapMarker::parse(&format!("{MARKER_PREFIX}{{\"live\":"))
            .unwrap()
            .is_err());
    }

    #[test]
    fn hints_add_up_instead_of_replacing_each_other() {
        let e = add_hint(Error::config("x").with_hint("first"), "second");
        assert_eq!(e.hint(), Some("first; second"));
        assert_eq!(add_hint(Error::config("x"), "only").hint(), Some("only"));
        let k = kept(&marker(), "is unchanged");
        assert!(k.contains("'stoa' is unchanged"), "{k}");
        assert!(k.contains("'stoa_restore_20261124t080000z_1a2b3c'"), "{k}");
    }
}
