//! Shared test support for stoa-backup: the sink and restorer conformance suites, a
//! fault-injecting sink, throwaway PostgreSQL databases, fake servers, a log capture to grep
//! for secrets, and a harness that re-runs the test binary as a child process to kill.
//!
//! Tests that need a server never skip: if PostgreSQL is unreachable, [`TestDatabase::create`]
//! panics and says how to point the tests at one (`STOA_TEST_DATABASE_URL`).
#![deny(missing_docs)]

pub mod artifacts;
#[cfg(target_os = "linux")]
pub mod child;
pub mod conformance;
pub mod faulty;
pub mod fixtures;
#[cfg(feature = "grafana")]
pub mod grafana_fake;
#[cfg(feature = "health")]
pub mod health_fake;
#[cfg(feature = "http-fake")]
mod http_fake;
#[cfg(feature = "infisical")]
pub mod infisical_fake;
#[cfg(feature = "keycloak")]
pub mod keycloak_fake;
#[cfg(feature = "kube")]
pub mod kube_fake;
#[cfg(feature = "percent")]
mod percent;
#[cfg(feature = "prometheus")]
pub mod prometheus_fake;
pub mod restorer_conformance;
#[cfg(feature = "s3")]
pub mod s3;
pub mod trace;
#[cfg(feature = "vault")]
pub mod vault_fake;

use std::time::Duration;

use tokio_postgres::NoTls;

/// Environment variable naming the PostgreSQL server tests use.
pub const DATABASE_URL_ENV: &str = "STOA_TEST_DATABASE_URL";

/// Server used when [`DATABASE_URL_ENV`] is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The URL of the PostgreSQL server for tests: `$STOA_TEST_DATABASE_URL`, or
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub fn test_database_url() -> String {
    match std::env::var(DATABASE_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => DEFAULT_DATABASE_URL.to_string(),
    }
}

/// A uniquely named database created for one test, dropped (with `FORCE`) by
/// [`TestDatabase::drop_db`] or, best effort, when the value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates a database named `<prefix>_<random>` (lowercased, sanitized) on the server at
    /// [`test_database_url`].
    ///
    /// # Panics
    /// If the server is unreachable or refuses: tests must fail, never skip silently.
    pub async fn create(prefix: &str) -> Self {
        let admin_url = test_database_url();
        let name = database_name(prefix);
        let client = connect(&admin_url).await;
        if let Err(e) = client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await
        {
            panic!(
                "cannot create the test database {name} on {}: {e}; the user in {DATABASE_URL_ENV} \
                 needs the CREATEDB privilege",
                redact_url(&admin_url)
            );
        }
        TestDatabase {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
            dropped: false,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection URL for the database (the server URL with the database replaced).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of the server's admin database the test database was created from.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Drops the database now (terminating its connections).
    ///
    /// # Panics
    /// If the server cannot be reached or refuses.
    pub async fn drop_db(mut self) {
        let client = connect(&self.admin_url).await;
        if let Err(e) = client.batch_execute(&drop_sql(&self.name)).await {
            panic!(
                "cannot drop the test database {} on {}: {e}",
                self.name,
                redact_url(&self.admin_url)
            );
        }
        self.dropped = true;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Best effort, on a thread with its own runtime: Drop may run inside (or outside) a
        // runtime, and blocking a runtime thread on itself would deadlock.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let handle = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return Err(format!("cannot start a runtime: {e}")),
            };
            rt.block_on(async {
                let (client, conn) = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio_postgres::connect(&admin_url, NoTls),
                )
                .await
                .map_err(|_| "connecting timed out".to_string())?
                .map_err(|e| e.to_string())?;
                let conn = tokio::spawn(conn);
                let r = client
                    .batch_execute(&drop_sql(&name))
                    .await
                    .map_err(|e| e.to_string());
                drop(client);
                // The connection ends when the client is dropped; its result adds nothing.
                conn.await.ok();
                r
            })
        });
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: cannot drop the test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping the test database {} panicked", self.name),
        }
    }
}

/// Connects to `url`, spawning the connection task (whose error, if it ends with one, is
/// printed); panics loudly if the server is unreachable.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let redacted = redact_url(url);
    let res = tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(url, NoTls)).await;
    let (client, connection) = match res {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => panic!(
            "cannot connect to the test PostgreSQL server at {redacted}: {e}. Start one (e.g. \
             `docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:17`) or set \
             {DATABASE_URL_ENV} to a reachable server's URL; tests that need a database fail \
             rather than skip"
        ),
        Err(_) => panic!(
            "connecting to the test PostgreSQL server at {redacted} timed out after {}s; set \
             {DATABASE_URL_ENV} to a reachable server's URL",
            CONNECT_TIMEOUT.as_secs()
        ),
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("test database connection error: {e}");
        }
    });
    client
}

fn drop_sql(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `<prefix>_<16 hex digits>`, lowercase, only `[a-z0-9_]`, starting with a letter, at most
/// 63 bytes (PostgreSQL's identifier limit).
fn database_name(prefix: &str) -> String {
    let mut p: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if !p.starts_with(|c: char| c.is_ascii_lowercase()) {
        p.insert_str(0, "t_");
    }
    format!("{p}_{:016x}", rand::random::<u64>())
}

/// The connection string `url` with its database replaced by `db`. Handles URLs
/// (`postgres://user@host:port/db?opts`) and key-value strings (`host=... dbname=...`).
fn with_database(url: &str, db: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest_start = scheme_end + 3;
        let rest = &url[rest_start..];
        let query_pos = rest.find('?').unwrap_or(rest.len());
        let (before_query, query) = rest.split_at(query_pos);
        let authority_end = before_query.find('/').unwrap_or(before_query.len());
        format!(
            "{}{}/{db}{query}",
            &url[..rest_start],
            &before_query[..authority_end]
        )
    } else {
        let mut parts: Vec<String> = url
            .split_whitespace()
            .filter(|t| !t.starts_with("dbname="))
            .map(str::to_string)
            .collect();
        parts.push(format!("dbname={db}"));
        parts.join(" ")
    }
}

/// `url` with any password replaced by `***`, for messages.
fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest_start = scheme_end + 3;
        let rest = &url[rest_start..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..rest_start],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        url.to_string()
    } else {
        url.split_whitespace()
            .map(|t| {
                if t.starts_with("password=") {
                    "password=***"
                } else {
                    t
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t_1"),
            "postgres://postgres@127.0.0.1:5432/t_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
        assert_eq!(
            with_database("postgresql://h?user=u", "x"),
            "postgresql://h/x?user=u"
        );
        assert_eq!(
            with_database("host=h dbname=postgres user=u", "x"),
            "host=h user=u dbname=x"
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:1/db"),
            "postgres://u:***@h:1/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("host=h password=secret"), "host=h password=***");
    }

    #[test]
    fn database_names_are_safe_identifiers() {
        let n = database_name("Keycloak-Restore Test");
        assert!(n.starts_with("keycloak_restore_test_"), "{n}");
        assert!(n.len() <= 63);
        assert!(database_name("1x").starts_with("t_1x_"));
        assert_ne!(database_name("a"), database_name("a"));
    }

    #[tokio::test]
    async fn creates_and_drops_a_database() {
        let db = TestDatabase::create("stoa_support_selftest").await;
        let (client, conn) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
        tokio::spawn(conn);
        let row = client
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), db.name());
        drop(client);
        let name = db.name().to_string();
        drop(db); // best-effort drop on Drop
        let admin = connect(&test_database_url()).await;
        let n = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .unwrap();
        assert!(n.is_none(), "{name} still exists after Drop");

        let db = TestDatabase::create("stoa_support_selftest").await;
        let name = db.name().to_string();
        db.drop_db().await;
        let n = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .unwrap();
        assert!(n.is_none(), "{name} still exists after drop_db");
    }
}
