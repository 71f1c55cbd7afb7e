//! [`TestDatabases`]: a template per migration set, fresh clones for concurrent tests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stoa_backup_core::error::{Error, ErrorKind, Result};
use tokio::sync::Semaphore;
use tokio_postgres::Client;

use crate::cleanup::{cleanup, CleanupReport, StalePolicy};
use crate::migrations::Migrations;
use crate::server::{
    clone_database, drop_database, exec, ident, literal, mark, pg_error, wait_sessions_gone,
    CloneStrategy, Marker, MarkerKind, Server,
};
use crate::worker;

/// The environment variables [`TestDatabases::from_env`] reads, in order.
pub const URL_VARIABLES: [&str; 2] = ["STOA_TEST_DATABASE_URL", "DATABASE_URL"];

/// At most this many clones are made at once (each holds a server connection).
const CONCURRENT_CLONES: usize = 8;

/// First key of the advisory lock under which a template is built ("STPL").
const TEMPLATE_LOCK: i64 = 0x5354_504c;

/// Options of a pool; [`TestDatabases::builder`].
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    url: String,
    migrations: Migrations,
    strategy: CloneStrategy,
    stale: StalePolicy,
}

impl PoolBuilder {
    /// How clones copy the template ([`CloneStrategy::Auto`]: `WAL_LOG` for a template
    /// under 64 MiB).
    pub fn strategy(mut self, strategy: CloneStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// When leftovers of crashed runs are removed (at [`build`](Self::build)).
    pub fn stale_policy(mut self, policy: StalePolicy) -> Self {
        self.stale = policy;
        self
    }

    /// Connects, removes stale databases, and builds the template unless a complete one
    /// for the same migrations is already on the server.
    pub async fn build(self) -> Result<TestDatabases> {
        let server = Server::from_url(&self.url, "")?;
        worker::run(async move {
            let admin = server.admin().await?;
            let hash = self.migrations.hash();
            let cleaned = cleanup(&admin, &self.stale, Some(&hash)).await?;
            let (template, built) =
                ensure_template(&server, &admin, &self.migrations, &hash).await?;
            let size: i64 = admin
                .query_one("SELECT pg_database_size($1::text)", &[&template])
                .await
                .map_err(|e| pg_error(e, "read the template's size", &template))?
                .get(0);
            Ok(TestDatabases {
                inner: Arc::new(Inner {
                    server,
                    hash,
                    template,
                    template_built: built,
                    template_size: size,
                    strategy: self.strategy,
                    admins: Mutex::new(vec![admin]),
                    seq: AtomicU64::new(0),
                    clones: Semaphore::new(CONCURRENT_CLONES),
                    cleaned,
                }),
            })
        })
        .await
    }
}

/// Fresh databases for tests, cloned from a template built once per migration set.
///
/// The template is named after the migrations' hash (`stoa_tpl_<hash>`) and reused by
/// every pool with the same migrations, in this and later test binaries and runs; a
/// changed migration builds a new one (under an advisory lock, so two test binaries
/// starting at once build it once). Each [`checkout`](Self::checkout) clones it into a new
/// database of the test's own, dropped when the [`TestDatabase`] is dropped, also while a
/// panicking test unwinds. Leftovers of crashed runs (and templates unused for two weeks)
/// are removed when a pool is built.
///
/// A pool may be kept in a `static` and shared by tests that each run on their own
/// runtime: its connections live on the crate's own background runtime.
///
/// An unreachable server is an error, never a skipped test.
#[derive(Clone)]
pub struct TestDatabases {
    inner: Arc<Inner>,
}

struct Inner {
    server: Server,
    hash: String,
    template: String,
    template_built: bool,
    template_size: i64,
    strategy: CloneStrategy,
    admins: Mutex<Vec<Client>>,
    seq: AtomicU64,
    clones: Semaphore,
    cleaned: CleanupReport,
}

impl fmt::Debug for TestDatabases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabases")
            .field("server", &self.inner.server)
            .field("template", &self.inner.template)
            .finish_non_exhaustive()
    }
}

impl TestDatabases {
    /// A pool on the server of `url` for `migrations`.
    pub async fn new(url: &str, migrations: Migrations) -> Result<TestDatabases> {
        TestDatabases::builder(url, migrations).build().await
    }

    /// A pool on the server named by `STOA_TEST_DATABASE_URL` (or `DATABASE_URL`); an
    /// error, never a skip, when neither is set.
    pub async fn from_env(migrations: Migrations) -> Result<TestDatabases> {
        let url = url_from(|v| std::env::var(v).ok())?;
        TestDatabases::new(&url, migrations).await
    }

    /// A pool with options.
    pub fn builder(url: &str, migrations: Migrations) -> PoolBuilder {
        PoolBuilder {
            url: url.to_string(),
            migrations,
            strategy: CloneStrategy::Auto,
            stale: StalePolicy::default(),
        }
    }

    /// The template's name.
    pub fn template(&self) -> &str {
        &self.inner.template
    }

    /// Whether this pool built the template (`false`: it found one complete).
    pub fn built_template(&self) -> bool {
        self.inner.template_built
    }

    /// What was removed as stale when the pool was built.
    pub fn cleaned_up(&self) -> &CleanupReport {
        &self.inner.cleaned
    }

    /// A new database, a clone of the template, for one test.
    pub async fn checkout(&self) -> Result<TestDatabase> {
        let inner = self.inner.clone();
        let start = Instant::now();
        let name = worker::run(async move {
            let _permit = inner
                .clones
                .acquire()
                .await
                .map_err(|_| Error::internal("the pool's clone limit was closed"))?;
            let admin = inner.admin().await?;
            let seq = inner.seq.fetch_add(1, Ordering::Relaxed);
            let name = crate::server::fit_name(
                &format!("stoa_t_{}_{}_{seq}", &inner.hash[..8], std::process::id()),
                &format!("_{:04x}", rand::random::<u16>()),
            );
            let result = async {
                clone_database(
                    &inner.server,
                    &admin,
                    &inner.template,
                    &name,
                    inner.strategy,
                    inner.template_size,
                    None,
                )
                .await?;
                let marker = Marker::new(MarkerKind::Clone)
                    .hash(&inner.hash)
                    .source(&inner.template);
                mark(&admin, &name, &marker).await
            }
            .await;
            inner.give_back(admin);
            result.map(|()| name)
        })
        .await?;
        Ok(TestDatabase {
            url: self.inner.server.url_for(&name),
            name,
            pool: self.inner.clone(),
            took: start.elapsed(),
            dropped: false,
        })
    }

    /// Removes stale databases now (see [`StalePolicy`]).
    pub async fn cleanup_stale(&self, policy: StalePolicy) -> Result<CleanupReport> {
        let inner = self.inner.clone();
        worker::run(async move {
            let admin = inner.admin().await?;
            let report = cleanup(&admin, &policy, Some(&inner.hash)).await;
            inner.give_back(admin);
            report
        })
        .await
    }
}

impl Inner {
    async fn admin(&self) -> Result<Client> {
        let cached = self.admins.lock().map(|mut a| a.pop()).unwrap_or(None);
        match cached {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.server.admin().await,
        }
    }

    fn give_back(&self, client: Client) {
        if let Ok(mut admins) = self.admins.lock() {
            if !client.is_closed() && admins.len() < CONCURRENT_CLONES {
                admins.push(client);
            }
        }
    }
}

/// One test's database, dropped (`DROP DATABASE … WITH (FORCE)`, in the background) when
/// this is dropped.
pub struct TestDatabase {
    name: String,
    url: String,
    pool: Arc<Inner>,
    took: Duration,
    dropped: bool,
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .field("took", &self.took)
            .finish_non_exhaustive()
    }
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL for it, with the pool's credentials (keep it out of logs when they hold a
    /// password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How long the checkout took.
    pub fn took(&self) -> Duration {
        self.took
    }

    /// A tokio-postgres connection to it, driven on the caller's runtime.
    pub async fn connect(&self) -> Result<Client> {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(|e| pg_error(e, "connect", &self.name))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Drops the database now and reports how it went (instead of at drop).
    pub async fn close(mut self) -> Result<()> {
        self.dropped = true;
        let pool = self.pool.clone();
        let name = self.name.clone();
        worker::run(async move { drop_clone(&pool, &name).await }).await
    }
}

async fn drop_clone(pool: &Inner, name: &str) -> Result<()> {
    let admin = pool.admin().await?;
    let result = drop_database(&admin, name).await;
    pool.give_back(admin);
    result
}

impl Drop for TestDatabase {
    /// Drops the database in the background: the test does not wait for it, and
    /// [`settle`](crate::settle) and the process's exit do.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let pool = self.pool.clone();
        let name = self.name.clone();
        let what = format!("dropping test database '{}'", self.name);
        worker::spawn_tracked(what, async move { drop_clone(&pool, &name).await });
    }
}

/// The first non-empty one of [`URL_VARIABLES`] as `get` reads them; an error naming them
/// when there is none.
fn url_from(get: impl Fn(&str) -> Option<String>) -> Result<String> {
    URL_VARIABLES
        .iter()
        .find_map(|v| get(v).filter(|u| !u.trim().is_empty()))
        .ok_or_else(|| {
            Error::config(format!(
                "no test database server: set {} (e.g. postgres://postgres@127.0.0.1:5432/postgres)",
                URL_VARIABLES.join(" or ")
            ))
            .with_operation("connect")
            .with_hint("tests that need PostgreSQL fail without one; they are never skipped")
        })
}

/// The template for `migrations`, built unless a complete one exists; whether it was
/// built now.
async fn ensure_template(
    server: &Server,
    admin: &Client,
    migrations: &Migrations,
    hash: &str,
) -> Result<(String, bool)> {
    let template = format!("stoa_tpl_{}", &hash[..16]);
    let key = i64::from_str_radix(&hash[..12], 16).unwrap_or(0) ^ (TEMPLATE_LOCK << 32);
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .map_err(|e| pg_error(e, "lock the template", &template))?;
    let result = build_locked(server, admin, migrations, hash, &template).await;
    let unlocked = admin
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await;
    let built = result?;
    unlocked.map_err(|e| pg_error(e, "unlock the template", &template))?;
    Ok((template, built))
}

async fn build_locked(
    server: &Server,
    admin: &Client,
    migrations: &Migrations,
    hash: &str,
    template: &str,
) -> Result<bool> {
    let existing = admin
        .query_opt(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&template],
        )
        .await
        .map_err(|e| pg_error(e, "find the template", template))?;
    if let Some(row) = existing {
        let comment: Option<String> = row.get(0);
        match comment.as_deref().and_then(Marker::parse) {
            Some(mut m) if m.kind == MarkerKind::Template && m.hash.as_deref() == Some(hash) => {
                m.last_used_at = Some(chrono::Utc::now());
                mark(admin, template, &m).await?;
                return Ok(false);
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "database '{template}' exists but is not a stoa-backup-testing template"
                    ),
                )
                .with_component("postgres")
                .with_artifact(template.to_string())
                .with_hint("drop it or rename it; the name is reserved for the pool's template"))
            }
        }
    }
    let building = format!("{template}_b");
    // A build that crashed; nobody else builds while we hold the lock.
    drop_database(admin, &building).await?;
    exec(
        admin,
        &format!("CREATE DATABASE {}", ident(&building)),
        "create the template",
        &building,
    )
    .await?;
    mark(
        admin,
        &building,
        &Marker::new(MarkerKind::Building).hash(hash),
    )
    .await?;
    let migrated = async {
        let client = server.connect(&building).await?;
        for (name, sql) in migrations.steps() {
            client.batch_execute(sql).await.map_err(|e| {
                let position = e
                    .as_db_error()
                    .and_then(|d| d.position())
                    .map(|p| format!(" at {p:?}"))
                    .unwrap_or_default();
                pg_error(e, &format!("migration {name}{position}"), &building)
                    .with_kind(ErrorKind::Config)
                    .with_hint(format!(
                        "fix migration {name}; the template is built again once it runs"
                    ))
            })?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = migrated {
        let _ = wait_sessions_gone(admin, &building).await;
        let _ = drop_database(admin, &building).await;
        return Err(e);
    }
    wait_sessions_gone(admin, &building).await?;
    let marker = Marker::new(MarkerKind::Template).hash(hash);
    let finish = format!(
        "ALTER DATABASE {b} RENAME TO {t}; ALTER DATABASE {t} IS_TEMPLATE true; \
         ALTER DATABASE {t} ALLOW_CONNECTIONS false; COMMENT ON DATABASE {t} IS {c}",
        b = ident(&building),
        t = ident(template),
        c = literal(&marker.comment()),
    );
    exec(admin, &finish, "finish the template", template).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_comes_from_the_first_variable_set_and_none_is_a_loud_error() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = env(&[
            ("STOA_TEST_DATABASE_URL", "postgres://a/x"),
            ("DATABASE_URL", "postgres://b/y"),
        ]);
        assert_eq!(url_from(both).unwrap(), "postgres://a/x");
        let fallback = env(&[
            ("STOA_TEST_DATABASE_URL", " "),
            ("DATABASE_URL", "postgres://b/y"),
        ]);
        assert_eq!(url_from(fallback).unwrap(), "postgres://b/y");
        let err = url_from(env(&[])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let text = format!("{err:#}");
        assert!(
            text.contains("STOA_TEST_DATABASE_URL") && text.contains("never skipped"),
            "{text}"
        );
    }
}
