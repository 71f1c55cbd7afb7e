//! Connection settings shared by the source, the verifiers and the restorer.
//!
//! The password never reaches a command line: children get it through `PGPASSWORD` (or a
//! passfile through `PGPASSFILE`), and `Debug`, URLs in messages and errors redact it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::process::CommandSpec;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::COMPONENT;

/// How to reach a PostgreSQL server: host (or Unix socket directory), port, user, password
/// and the database to connect to for server-wide queries.
#[derive(Clone, PartialEq, Eq)]
pub struct PgConnection {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    dbname: String,
    sslmode: Option<String>,
    passfile: Option<PathBuf>,
    connect_timeout: Duration,
    application_name: String,
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("passfile", &self.passfile)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Default for PgConnection {
    fn default() -> Self {
        PgConnection {
            host: "localhost".to_string(),
            port: 5432,
            user: "postgres".to_string(),
            password: None,
            dbname: "postgres".to_string(),
            sslmode: None,
            passfile: None,
            connect_timeout: Duration::from_secs(10),
            application_name: "stoa-backup".to_string(),
        }
    }
}

impl PgConnection {
    /// Settings for `host:port` as `user`, connecting to the `postgres` database.
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> Self {
        PgConnection {
            host: host.into(),
            port,
            user: user.into(),
            ..Default::default()
        }
    }

    /// Parses a `postgres://user:password@host:port/db?sslmode=…` URL (or a libpq
    /// `key=value` string). Errors never echo the URL (it may hold a password).
    pub fn from_url(url: &str) -> Result<Self> {
        PgConnection::default().overlay_url(url)
    }

    /// Settings from the environment, the way libpq and most PostgreSQL tools read it:
    /// `DATABASE_URL` (a URL or `key=value` string) when set, with libpq's variables
    /// `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGPASSFILE`, `PGDATABASE`, `PGSSLMODE`
    /// and `PGCONNECT_TIMEOUT` for what it leaves out (or for everything, without
    /// `DATABASE_URL`). What neither sets keeps the [`Default`]: `localhost:5432`, user and
    /// database `postgres`. Empty variables count as unset; a URL naming a host without a
    /// port means port 5432. Errors name the variable but never echo the URL or the password.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`PgConnection::from_env`] reading each variable through `lookup` instead of the
    /// process environment (a configuration map, or a test).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let bad = |name: &str, what: String| {
            Error::config(what)
                .with_component(COMPONENT)
                .with_operation("read environment")
                .with_context("variable", name)
        };
        let mut c = PgConnection::default();
        if let Some(h) = var("PGHOST") {
            c.host = h;
        }
        if let Some(p) = var("PGPORT") {
            c.port = p.trim().parse().map_err(|_| {
                bad("PGPORT", format!("PGPORT is not a port number: {p:?}"))
                    .with_hint("set PGPORT to a number such as 5432, or unset it")
            })?;
        }
        if let Some(u) = var("PGUSER") {
            c.user = u;
        }
        c.password = var("PGPASSWORD");
        c.passfile = var("PGPASSFILE").map(PathBuf::from);
        if let Some(d) = var("PGDATABASE") {
            c.dbname = d;
        }
        if let Some(t) = var("PGCONNECT_TIMEOUT") {
            let secs: u64 = t.trim().parse().map_err(|_| {
                bad(
                    "PGCONNECT_TIMEOUT",
                    format!("PGCONNECT_TIMEOUT is not a number of seconds: {t:?}"),
                )
            })?;
            c.connect_timeout = Duration::from_secs(secs);
        }
        if let Some(m) = var("PGSSLMODE") {
            c.sslmode = match m.as_str() {
                "disable" => Some("disable".to_string()),
                "allow" | "prefer" => None,
                "require" => Some("require".to_string()),
                other => {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!("PGSSLMODE={other} is not supported yet for the SQL connections stoa-backup makes"),
                    )
                    .with_component(COMPONENT)
                    .with_operation("read environment")
                    .with_context("variable", "PGSSLMODE")
                    .with_hint("use disable or prefer"))
                }
            };
        }
        match var("DATABASE_URL") {
            Some(url) => c.overlay_url(&url).map_err(|e| {
                e.with_context("variable", "DATABASE_URL")
                    .or_operation("read environment")
            }),
            None => {
                c.validate()?;
                Ok(c)
            }
        }
    }

    /// These settings with the parts `url` names replaced.
    fn overlay_url(self, url: &str) -> Result<Self> {
        let cfg = tokio_postgres::Config::from_str(url).map_err(|e| {
            Error::config(format!("invalid PostgreSQL connection URL: {e}"))
                .with_component(COMPONENT)
                .with_hint("use the form postgres://user:password@host:5432/database")
        })?;
        let mut c = self;
        match cfg.get_hosts() {
            [] => {}
            [h] => {
                c.host = match h {
                    tokio_postgres::config::Host::Tcp(s) => s.clone(),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                }
            }
            _ => {
                return Err(
                    Error::config("several hosts in one PostgreSQL URL are not supported")
                        .with_component(COMPONENT)
                        .with_hint("give one host (the primary, or the replica to dump from)"),
                )
            }
        }
        match cfg.get_ports() {
            [] => {}
            [p] => c.port = *p,
            _ => {
                return Err(
                    Error::config("several ports in one PostgreSQL URL are not supported")
                        .with_component(COMPONENT),
                )
            }
        }
        if let Some(u) = cfg.get_user() {
            c.user = u.to_string();
        }
        if let Some(p) = cfg.get_password() {
            c.password = Some(String::from_utf8(p.to_vec()).map_err(|_| {
                Error::config("the password in the PostgreSQL URL is not valid UTF-8")
                    .with_component(COMPONENT)
            })?);
        }
        if let Some(d) = cfg.get_dbname() {
            c.dbname = d.to_string();
        }
        if let Some(t) = cfg.get_connect_timeout() {
            c.connect_timeout = *t;
        }
        match cfg.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => c.sslmode = Some("disable".to_string()),
            tokio_postgres::config::SslMode::Require => c.sslmode = Some("require".to_string()),
            _ => {}
        }
        c.validate()?;
        Ok(c)
    }

    /// Sets the host name, IP address, or Unix socket directory (starting with `/`).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Sets the password (passed to child processes through `PGPASSWORD`, never argv).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Uses a libpq passfile (`host:port:db:user:password` lines) instead of a password.
    pub fn passfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.passfile = Some(path.into());
        self
    }

    /// Sets the database used for server-wide queries (default `postgres`).
    pub fn dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = dbname.into();
        self
    }

    /// Sets the connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The host (or socket directory).
    pub fn get_host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn get_port(&self) -> u16 {
        self.port
    }

    /// The user.
    pub fn get_user(&self) -> &str {
        &self.user
    }

    /// The database used for server-wide queries.
    pub fn get_dbname(&self) -> &str {
        &self.dbname
    }

    /// Whether a password or passfile is configured.
    pub fn has_password(&self) -> bool {
        self.password.is_some() || self.passfile.is_some()
    }

    /// Checks the settings without connecting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| {
            Err(Error::config(m.to_string())
                .with_component(COMPONENT)
                .with_operation("validate config"))
        };
        if self.host.trim().is_empty() {
            return bad("PostgreSQL host is empty");
        }
        if self.port == 0 {
            return bad("PostgreSQL port is 0");
        }
        if self.user.trim().is_empty() {
            return bad("PostgreSQL user is empty");
        }
        if self.dbname.is_empty() {
            return bad("PostgreSQL database name is empty");
        }
        for v in [&self.host, &self.user, &self.dbname] {
            if v.contains('\0') {
                return bad("PostgreSQL connection settings contain a NUL byte");
            }
        }
        if self.sslmode.as_deref() == Some("require") {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "sslmode=require is not supported yet for the SQL connections stoa-backup makes",
            )
            .with_component(COMPONENT)
            .with_operation("validate config")
            .with_hint("connect without TLS inside the cluster network, or use sslmode=prefer"));
        }
        Ok(())
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        if self.host.starts_with('/') {
            format!("{}/.s.PGSQL.{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The connection as a URL with the password masked: `postgres://user:***@host:5432/db`.
    pub fn redacted_url(&self, dbname: &str) -> String {
        let pw = if self.password.is_some() { ":***" } else { "" };
        format!(
            "postgres://{}{}@{}:{}/{}",
            self.user, pw, self.host, self.port, dbname
        )
    }

    /// A copy connecting to another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut c = self.clone();
        c.dbname = dbname.to_string();
        c
    }

    /// A libpq conninfo string without the password, for `--dbname=` of the pg tools.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conninfo_quote(&self.host),
            self.port,
            conninfo_quote(&self.user),
            conninfo_quote(dbname)
        )
    }

    /// Puts the secrets and TLS/timeout settings into a child's environment.
    pub fn apply_env(&self, mut spec: CommandSpec) -> CommandSpec {
        if let Some(p) = &self.password {
            spec = spec.env("PGPASSWORD", p.clone());
        }
        if let Some(f) = &self.passfile {
            spec = spec.env("PGPASSFILE", f.display().to_string());
            if self.password.is_none() {
                spec = spec.env_remove("PGPASSWORD");
            }
        }
        if let Some(m) = &self.sslmode {
            spec = spec.env("PGSSLMODE", m.clone());
        }
        spec = spec.env(
            "PGCONNECT_TIMEOUT",
            self.connect_timeout.as_secs().max(2).to_string(),
        );
        spec = spec.env("PGAPPNAME", self.application_name.clone());
        spec
    }

    fn resolve_password(&self, dbname: &str) -> Option<String> {
        if let Some(p) = &self.password {
            return Some(p.clone());
        }
        let path = self.passfile.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        passfile_lookup(&text, &self.host, self.port, dbname, &self.user)
    }

    /// Connects to `dbname` with tokio-postgres; errors are mapped to clear kinds
    /// (unreachable → Unavailable, bad password → Unauthenticated, no such database →
    /// NotFound).
    pub async fn connect(&self, dbname: &str) -> Result<Client> {
        let mut cfg = tokio_postgres::Config::new();
        if self.host.starts_with('/') {
            cfg.host_path(&self.host);
        } else {
            cfg.host(&self.host);
        }
        cfg.port(self.port)
            .user(&self.user)
            .dbname(dbname)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout);
        if self.sslmode.as_deref() == Some("disable") {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        if let Some(p) = self.resolve_password(dbname) {
            cfg.password(p);
        }
        let (client, connection) = cfg
            .connect(NoTls)
            .await
            .map_err(|e| self.map_error(e, dbname))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection ended with an error");
            }
        });
        Ok(client)
    }

    /// Maps a tokio-postgres error to a stoa-backup error with a hint.
    pub(crate) fn map_error(&self, e: tokio_postgres::Error, dbname: &str) -> Error {
        map_pg_error(e, &self.endpoint(), &self.user, dbname)
    }
}

/// Maps a tokio-postgres error (from connecting or querying) to our error kinds.
pub(crate) fn map_pg_error(
    e: tokio_postgres::Error,
    endpoint: &str,
    user: &str,
    dbname: &str,
) -> Error {
    let base = |kind: ErrorKind, msg: String| Error::new(kind, msg).with_component(COMPONENT);
    if let Some(db) = e.as_db_error() {
        let code = db.code().clone();
        let detail = db.message().to_string();
        let err = if code == SqlState::INVALID_PASSWORD
            || code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            base(ErrorKind::Unauthenticated, format!("PostgreSQL at {endpoint} refused user '{user}': {detail}"))
                .with_hint("check the user and password (or passfile), and that pg_hba.conf allows this client")
        } else if code == SqlState::INVALID_CATALOG_NAME {
            base(
                ErrorKind::NotFound,
                format!("database '{dbname}' does not exist on {endpoint}"),
            )
            .with_hint("check the database name (list them with `psql -l`), or create it first")
        } else if code == SqlState::INSUFFICIENT_PRIVILEGE {
            base(ErrorKind::PermissionDenied, format!("user '{user}' lacks a privilege on {endpoint}: {detail}"))
                .with_hint("grant the backup role what it needs (e.g. `GRANT pg_read_all_data TO <role>` on PostgreSQL 14+)")
        } else if code == SqlState::CANNOT_CONNECT_NOW
            || code == SqlState::TOO_MANY_CONNECTIONS
            || code == SqlState::ADMIN_SHUTDOWN
        {
            base(
                ErrorKind::Unavailable,
                format!("PostgreSQL at {endpoint} is not accepting connections: {detail}"),
            )
            .with_hint("wait for the server to finish starting, or raise max_connections")
        } else {
            base(
                ErrorKind::Source,
                format!(
                    "PostgreSQL at {endpoint} answered {}: {detail}",
                    code.code()
                ),
            )
            .with_hint("read the server's message; fix the cause and re-run")
        };
        return err;
    }
    let text = e.to_string();
    let cause = std::error::Error::source(&e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    if text.contains("invalid configuration") && cause.contains("password missing") {
        return base(
            ErrorKind::Unauthenticated,
            format!(
                "PostgreSQL at {endpoint} asks user '{user}' for a password and none is configured"
            ),
        )
        .with_hint("set a password (URL, .password(...), or a passfile)");
    }
    if text.contains("error connecting")
        || text.contains("timeout")
        || text.contains("communicating")
        || e.is_closed()
    {
        let why = if cause.is_empty() {
            text.clone()
        } else {
            cause
        };
        return base(ErrorKind::Unavailable, format!("cannot reach PostgreSQL at {endpoint}: {why}"))
            .with_hint("check the server is running and host/port are right (and that network policies allow the connection)");
    }
    if text.contains("authentication") {
        return base(
            ErrorKind::Unauthenticated,
            format!(
                "authentication with PostgreSQL at {endpoint} failed for user '{user}': {cause}"
            ),
        )
        .with_hint("check the user and password (or passfile)");
    }
    base(
        ErrorKind::Source,
        format!(
            "PostgreSQL at {endpoint}: {text}{}",
            if cause.is_empty() {
                String::new()
            } else {
                format!(": {cause}")
            }
        ),
    )
}

/// Quotes a conninfo value: `'…'` with `\'` and `\\` escapes.
pub(crate) fn conninfo_quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('\'');
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('\'');
    s
}

/// Quotes an SQL identifier (always quoted: safe for any name).
pub(crate) fn quote_ident(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub(crate) fn quote_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

fn passfile_lookup(text: &str, host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    let host_key = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let m = |pat: &str, v: &str| pat == "*" || pat == v;
        if m(&fields[0], host_key)
            && m(&fields[1], &port)
            && m(&fields[2], dbname)
            && m(&fields[3], user)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_env as lookup;

    #[test]
    fn url_is_parsed_and_debug_redacts_the_password() {
        let c = PgConnection::from_url("postgres://backup:s3cr3t@db.example:6543/stoa").unwrap();
        assert_eq!(c.get_host(), "db.example");
        assert_eq!(c.get_port(), 6543);
        assert_eq!(c.get_user(), "backup");
        assert_eq!(c.get_dbname(), "stoa");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert_eq!(
            c.redacted_url("stoa"),
            "postgres://backup:***@db.example:6543/stoa"
        );
        assert!(!c.conninfo("stoa").contains("s3cr3t"));
    }

    #[test]
    fn bad_url_error_does_not_echo_the_url() {
        let err = PgConnection::from_url("postgres://u:topsecret@h:notaport/db").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }

    #[test]
    fn env_reads_libpq_variables_and_debug_redacts_the_password() {
        let c = PgConnection::from_lookup(lookup(&[
            ("PGHOST", "db.stoa.svc"),
            ("PGPORT", "6543"),
            ("PGUSER", "backup"),
            ("PGPASSWORD", "env-s3cr3t"),
            ("PGDATABASE", "stoa"),
            ("PGCONNECT_TIMEOUT", "4"),
            ("PGSSLMODE", "disable"),
        ]))
        .unwrap();
        assert_eq!(c.endpoint(), "db.stoa.svc:6543");
        assert_eq!((c.get_user(), c.get_dbname()), ("backup", "stoa"));
        assert!(c.has_password());
        assert_eq!(c.connect_timeout, Duration::from_secs(4));
        assert_eq!(c.sslmode.as_deref(), Some("disable"));
        assert!(!format!("{c:?}").contains("env-s3cr3t"));
        let spec = c.apply_env(CommandSpec::new("pg_dump"));
        assert!(spec
            .env
            .iter()
            .any(|(k, v)| k == "PGPASSWORD" && v == "env-s3cr3t"));
    }

    #[test]
    fn database_url_wins_over_libpq_variables_which_fill_the_rest() {
        let c = PgConnection::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://app@primary.example:6000/stoa"),
            ("PGHOST", "ignored.example"),
            ("PGPORT", "6111"),
            ("PGCONNECT_TIMEOUT", "3"),
            ("PGPASSWORD", "from-env"),
            ("PGDATABASE", "ignored"),
        ]))
        .unwrap();
        assert_eq!(c.endpoint(), "primary.example:6000");
        assert_eq!((c.get_user(), c.get_dbname()), ("app", "stoa"));
        assert_eq!(c.resolve_password("stoa").as_deref(), Some("from-env"));
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn empty_environment_gives_the_defaults() {
        let c = PgConnection::from_lookup(lookup(&[("PGHOST", "")])).unwrap();
        assert_eq!(c, PgConnection::default());
    }

    #[test]
    fn env_errors_name_the_variable_and_never_echo_secrets() {
        let err = PgConnection::from_lookup(lookup(&[("PGPORT", "54x2")])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(err.context_value("variable"), Some("PGPORT"));
        let err = PgConnection::from_lookup(lookup(&[(
            "DATABASE_URL",
            "postgres://u:topsecret@h:notaport/db",
        )]))
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(err.context_value("variable"), Some("DATABASE_URL"));
        assert!(!err.to_string().contains("topsecret"), "{err}");
        assert!(!format!("{err:?}").contains("topsecret"), "{err:?}");
        let err = PgConnection::from_lookup(lookup(&[("PGSSLMODE", "verify-full")])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert_eq!(err.context_value("variable"), Some("PGSSLMODE"));
    }

    #[test]
    fn password_goes_to_env_not_args() {
        let c = PgConnection::new("h", 5432, "u").password("pw-value");
        let spec =
            c.apply_env(CommandSpec::new("pg_dump").arg(format!("--dbname={}", c.conninfo("d"))));
        assert!(spec.args.iter().all(|a| !a.contains("pw-value")));
        assert!(spec
            .env
            .iter()
            .any(|(k, v)| k == "PGPASSWORD" && v == "pw-value"));
        assert!(!format!("{spec:?}").contains("pw-value"));
    }

    #[test]
    fn conninfo_quotes_awkward_names() {
        assert_eq!(conninfo_quote(r"it's\x"), r"'it\'s\\x'");
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    }

    #[test]
    fn passfile_matching() {
        let text = "# comment\nother:5432:*:u:no\nh:5432:*:u:p\\:w\n";
        assert_eq!(
            passfile_lookup(text, "h", 5432, "db", "u").as_deref(),
            Some("p:w")
        );
        assert_eq!(passfile_lookup(text, "h", 5433, "db", "u"), None);
    }
}
