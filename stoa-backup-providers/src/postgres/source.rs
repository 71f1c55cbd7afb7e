//! [`PostgresSource`]: streams `pg_dump --format=custom` of one or more databases (and
//! optionally `pg_dumpall --globals-only`) into the pipeline, without temp files.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::process::{spawn_stdout_stream, CommandSpec};
use stoa_backup_core::source::{
    to_facts, ArtifactPlan, Export, ExportContext, PreflightReport, Source,
};
use tokio::task::JoinHandle;

use super::conn::PgConnection;
use super::dump_header;
use super::facts::{PostgresFacts, PostgresGlobalsFacts, TocFacts};
use super::queries::{self, qualified_name};
use super::tools::{check_tool_for_server, tool_version, PgTools};
use super::{COMPONENT, DUMP_CONTENT_TYPE, GLOBALS_ARTIFACT, GLOBALS_CONTENT_TYPE};

/// Where dump compression happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionLocation {
    /// pg_dump writes uncompressed data (`-Z0`) and the pipeline's zstd stage compresses
    /// (the default: several times faster than pg_dump's gzip at a similar size).
    #[default]
    External,
    /// pg_dump compresses its data blocks with gzip at this level (1–9).
    InPgDump(u8),
}

/// Which databases to dump.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DatabaseSelection {
    /// The database of the connection (URL path or [`PostgresSourceBuilder::database`]).
    #[default]
    Connection,
    /// These databases.
    Named(Vec<String>),
    /// Every database that is not a template and accepts connections, found at discovery.
    All,
}

/// Builds a [`PostgresSource`] from [`PostgresSource::builder`];
/// [`PostgresSourceBuilder::build`] validates everything without connecting.
#[derive(Clone)]
pub struct PostgresSourceBuilder {
    conn: PgConnection,
    connect_db: Option<String>,
    databases: DatabaseSelection,
    include_schemas: Vec<String>,
    exclude_schemas: Vec<String>,
    include_tables: Vec<String>,
    exclude_tables: Vec<String>,
    keep_owner: bool,
    keep_privileges: bool,
    compression: CompressionLocation,
    globals: bool,
    globals_role_passwords: Option<bool>,
    no_exact_counts: bool,
    tools: Option<PgTools>,
    component: Option<String>,
    dumps_sensitive: bool,
    lock_wait_timeout: Option<Duration>,
}

impl fmt::Debug for PostgresSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSourceBuilder")
            .field("conn", &self.conn)
            .field("databases", &self.databases)
            .finish_non_exhaustive()
    }
}

impl PostgresSourceBuilder {
    /// Dumps this one database (and connects to it for server-wide queries).
    pub fn database(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.connect_db = Some(name.clone());
        self.databases = DatabaseSelection::Named(vec![name]);
        self
    }

    /// Dumps these databases.
    pub fn databases<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.databases = DatabaseSelection::Named(names.into_iter().map(Into::into).collect());
        self
    }

    /// Dumps every non-template database found on the server at discovery.
    pub fn all_databases(mut self) -> Self {
        self.databases = DatabaseSelection::All;
        self
    }

    /// Only schemas matching this pg_dump pattern (`--schema`); repeatable.
    pub fn include_schema(mut self, pattern: impl Into<String>) -> Self {
        self.include_schemas.push(pattern.into());
        self
    }

    /// Leaves out schemas matching this pattern (`--exclude-schema`); repeatable.
    pub fn exclude_schema(mut self, pattern: impl Into<String>) -> Self {
        self.exclude_schemas.push(pattern.into());
        self
    }

    /// Only tables matching this pattern (`--table`); repeatable.
    pub fn include_table(mut self, pattern: impl Into<String>) -> Self {
        self.include_tables.push(pattern.into());
        self
    }

    /// Leaves out tables matching this pattern (`--exclude-table`); repeatable.
    pub fn exclude_table(mut self, pattern: impl Into<String>) -> Self {
        self.exclude_tables.push(pattern.into());
        self
    }

    /// `--no-owner` (default on: dumps restore into clusters with other roles).
    pub fn no_owner(mut self, on: bool) -> Self {
        self.keep_owner = !on;
        self
    }

    /// `--no-privileges` (default on).
    pub fn no_privileges(mut self, on: bool) -> Self {
        self.keep_privileges = !on;
        self
    }

    /// Where compression happens (default [`CompressionLocation::External`]).
    pub fn compression(mut self, location: CompressionLocation) -> Self {
        self.compression = location;
        self
    }

    /// Adds a `globals.sql` artifact from `pg_dumpall --globals-only` (roles, tablespaces).
    /// It holds role password hashes, so it is marked sensitive: the pipeline then needs
    /// encryption.
    pub fn globals(mut self, on: bool) -> Self {
        self.globals = on;
        self
    }

    /// Whether the globals artifact includes role password hashes (default yes; `false`
    /// passes `--no-role-passwords`, which also works for non-superusers).
    pub fn globals_role_passwords(mut self, on: bool) -> Self {
        self.globals_role_passwords = Some(on);
        self
    }

    /// Exact per-table `count(*)` in the dump's snapshot, recorded as `row_counts` (default
    /// on; it reads every table once more while pg_dump runs). The snapshot is exported
    /// from a transaction held open until the dump is stored, so the connection must reach
    /// PostgreSQL directly (not through a transaction-mode pooler such as PgBouncer).
    pub fn exact_row_counts(mut self, on: bool) -> Self {
        self.no_exact_counts = !on;
        self
    }

    /// Paths of the client programs.
    pub fn tools(mut self, tools: PgTools) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Path of pg_dump only.
    pub fn pg_dump_path(mut self, path: impl Into<String>) -> Self {
        let mut t = self.tools.take().unwrap_or_default();
        t.pg_dump = path.into();
        self.tools = Some(t);
        self
    }

    /// Component name in keys and the manifest (default `postgres`).
    pub fn component(mut self, name: impl Into<String>) -> Self {
        self.component = Some(name.into());
        self
    }

    /// Marks database dumps as sensitive (the pipeline then requires encryption).
    pub fn dumps_sensitive(mut self, on: bool) -> Self {
        self.dumps_sensitive = on;
        self
    }

    /// `--lock-wait-timeout` for pg_dump: fail instead of waiting behind a long lock.
    pub fn lock_wait_timeout(mut self, timeout: Duration) -> Self {
        self.lock_wait_timeout = Some(timeout);
        self
    }

    /// Validates the configuration (no connection is made).
    pub fn build(self) -> Result<PostgresSource> {
        let cfg_err = |m: String| {
            Error::config(m)
                .with_component(COMPONENT)
                .with_operation("validate config")
        };
        let mut conn = self.conn;
        if let Some(d) = self.connect_db {
            conn = conn.dbname(d);
        }
        conn.validate()?;
        let databases = match self.databases {
            DatabaseSelection::Connection => {
                DatabaseSelection::Named(vec![conn.get_dbname().to_string()])
            }
            DatabaseSelection::Named(v) if v.is_empty() => {
                return Err(cfg_err("no database to dump".into())
                    .with_hint("name at least one database, or use all_databases()"))
            }
            other => other,
        };
        if let DatabaseSelection::Named(names) = &databases {
            for n in names {
                if n.is_empty() || n.len() > 63 || n.contains('\0') {
                    return Err(cfg_err(format!("invalid database name {n:?}"))
                        .with_hint("PostgreSQL database names are 1 to 63 bytes"));
                }
            }
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            if sorted.len() != names.len() {
                return Err(cfg_err("a database is listed twice".into()));
            }
        }
        for p in self
            .include_schemas
            .iter()
            .chain(&self.exclude_schemas)
            .chain(&self.include_tables)
            .chain(&self.exclude_tables)
        {
            if p.trim().is_empty() || p.contains('\0') {
                return Err(cfg_err(format!("invalid schema/table pattern {p:?}")));
            }
        }
        if let CompressionLocation::InPgDump(level) = self.compression {
            if !(1..=9).contains(&level) {
                return Err(
                    cfg_err(format!("pg_dump compression level {level} is out of range"))
                        .with_hint(
                        "use 1–9, or CompressionLocation::External to let the pipeline compress",
                    ),
                );
            }
        }
        let component = self.component.unwrap_or_else(|| COMPONENT.to_string());
        if component.is_empty() || component.contains('/') {
            return Err(cfg_err(format!("invalid component name {component:?}")));
        }
        Ok(PostgresSource {
            conn,
            databases,
            include_schemas: self.include_schemas,
            exclude_schemas: self.exclude_schemas,
            include_tables: self.include_tables,
            exclude_tables: self.exclude_tables,
            no_owner: !self.keep_owner,
            no_privileges: !self.keep_privileges,
            compression: self.compression,
            globals: self.globals,
            globals_role_passwords: self.globals_role_passwords.unwrap_or(true),
            exact_counts: !self.no_exact_counts,
            tools: self.tools.unwrap_or_default(),
            component,
            dumps_sensitive: self.dumps_sensitive,
            lock_wait_timeout: self.lock_wait_timeout,
        })
    }
}

/// Backs up PostgreSQL databases with the real `pg_dump` in custom format, streaming its
/// stdout (no temp file). One artifact per database (`<db>.dump`) plus, optionally,
/// `globals.sql`.
///
/// Facts recorded per dump: [`PostgresFacts`] (server and pg_dump versions, size, encoding
/// and locale, planner row estimates, exact row counts in the dump's snapshot, the dump's
/// table of contents, the command); for `globals.sql`: [`PostgresGlobalsFacts`].
#[derive(Debug, Clone)]
pub struct PostgresSource {
    conn: PgConnection,
    databases: DatabaseSelection,
    include_schemas: Vec<String>,
    exclude_schemas: Vec<String>,
    include_tables: Vec<String>,
    exclude_tables: Vec<String>,
    no_owner: bool,
    no_privileges: bool,
    compression: CompressionLocation,
    globals: bool,
    globals_role_passwords: bool,
    exact_counts: bool,
    tools: PgTools,
    component: String,
    dumps_sensitive: bool,
    lock_wait_timeout: Option<Duration>,
}

/// Name of the artifact holding database `db`: `<db>.dump`, with `/`, `\`, `%` and control
/// characters percent-encoded so every database name gives a valid, distinct key.
pub fn dump_artifact_name(db: &str) -> String {
    let mut s = String::with_capacity(db.len() + 5);
    for c in db.chars() {
        if c == '/' || c == '\\' || c == '%' || c.is_control() {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                s.push_str(&format!("%{byte:02X}"));
            }
        } else {
            s.push(c);
        }
    }
    s.push_str(".dump");
    s
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PostgresSource {
    /// Starts building a source that dumps through `connection` (by default the database it
    /// names): [`PgConnection::from_url`], [`PgConnection::from_env`] or
    /// [`PgConnection::new`].
    pub fn builder(connection: PgConnection) -> PostgresSourceBuilder {
        PostgresSourceBuilder {
            conn: connection,
            connect_db: None,
            databases: DatabaseSelection::default(),
            include_schemas: Vec::new(),
            exclude_schemas: Vec::new(),
            include_tables: Vec::new(),
            exclude_tables: Vec::new(),
            keep_owner: false,
            keep_privileges: false,
            compression: CompressionLocation::default(),
            globals: false,
            globals_role_passwords: None,
            no_exact_counts: false,
            tools: None,
            component: None,
            dumps_sensitive: false,
            lock_wait_timeout: None,
        }
    }

    /// The connection settings.
    pub fn connection(&self) -> &PgConnection {
        &self.conn
    }

    /// Which databases this source dumps.
    pub fn database_selection(&self) -> &DatabaseSelection {
        &self.databases
    }

    /// The pg_dump command for `database` (password in the environment, not in argv).
    /// `snapshot` is an exported snapshot id to dump from. Exposed so other runners (e.g.
    /// exec inside a pod) build the same command.
    pub fn pg_dump_command(&self, database: &str, snapshot: Option<&str>) -> CommandSpec {
        let level = match self.compression {
            CompressionLocation::External => 0,
            CompressionLocation::InPgDump(l) => l,
        };
        let mut spec = CommandSpec::new(&self.tools.pg_dump)
            .arg("--format=custom")
            .arg(format!("--compress={level}"));
        if self.no_owner {
            spec = spec.arg("--no-owner");
        }
        if self.no_privileges {
            spec = spec.arg("--no-privileges");
        }
        for p in &self.include_schemas {
            spec = spec.arg(format!("--schema={p}"));
        }
        for p in &self.exclude_schemas {
            spec = spec.arg(format!("--exclude-schema={p}"));
        }
        for p in &self.include_tables {
            spec = spec.arg(format!("--table={p}"));
        }
        for p in &self.exclude_tables {
            spec = spec.arg(format!("--exclude-table={p}"));
        }
        if let Some(s) = snapshot {
            spec = spec.arg(format!("--snapshot={s}"));
        }
        if let Some(t) = self.lock_wait_timeout {
            spec = spec.arg(format!("--lock-wait-timeout={}", t.as_millis().max(1)));
        }
        spec = spec.arg(format!("--dbname={}", self.conn.conninfo(database)));
        self.conn.apply_env(spec)
    }

    fn pg_dumpall_command(&self) -> CommandSpec {
        let mut spec = CommandSpec::new(&self.tools.pg_dumpall).arg("--globals-only");
        if !self.globals_role_passwords {
            spec = spec.arg("--no-role-passwords");
        }
        spec = spec.arg(format!(
            "--dbname={}",
            self.conn.conninfo(self.conn.get_dbname())
        ));
        self.conn.apply_env(spec)
    }

    async fn connect(&self, db: &str, operation: &str) -> Result<tokio_postgres::Client> {
        self.conn
            .connect(db)
            .await
            .map_err(|e| e.or_operation(operation.to_string()))
    }

    async fn existing_databases(
        &self,
        client: &tokio_postgres::Client,
        operation: &str,
    ) -> Result<Vec<String>> {
        let all = queries::list_databases(client)
            .await
            .map_err(|e| e.or_operation(operation.to_string()))?;
        match &self.databases {
            DatabaseSelection::All => Ok(all),
            DatabaseSelection::Named(names) => {
                for n in names {
                    if !queries::database_exists(client, n).await? {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!("database '{n}' does not exist on {}", self.conn.endpoint()),
                        )
                        .with_operation(operation.to_string())
                        .with_hint(format!(
                            "check the name; databases there: {}",
                            all.join(", ")
                        )));
                    }
                }
                Ok(names.clone())
            }
            DatabaseSelection::Connection => Ok(vec![self.conn.get_dbname().to_string()]),
        }
    }

    async fn export_globals(&self) -> Result<Export> {
        let client = self.connect(self.conn.get_dbname(), "export").await?;
        let (server_version, _) = queries::server_version(&client).await?;
        drop(client);
        let tool = tool_version(&self.tools.pg_dumpall).await?;
        let spec = self.pg_dumpall_command();
        let ps = spawn_stdout_stream(&spec, COMPONENT, None)?;
        let command = spec.display();
        let role_passwords = self.globals_role_passwords;
        Ok(Export::with_finish(ps.stream, async move {
            to_facts(&PostgresGlobalsFacts {
                server_version: Some(server_version),
                pg_dumpall_version: Some(tool.full),
                role_passwords: Some(role_passwords),
                command: Some(command),
                ..PostgresGlobalsFacts::default()
            })
        }))
    }

    async fn export_dump(&self, db: String) -> Result<Export> {
        let client = self.connect(&db, "export").await?;
        let (server_version, server_num) = queries::server_version(&client).await?;
        let info = queries::database_info(&client).await?;
        let tables = queries::user_tables(&client).await?;
        let tool = tool_version(&self.tools.pg_dump).await?;
        check_tool_for_server("pg_dump", &tool, (server_num / 10000) as u32)?;

        let mut snapshot = None;
        if self.exact_counts {
            // One backend per count: the counts run beside the dump, and parallel workers
            // would compete with it for CPU (the count is cheap either way).
            client
                .batch_execute(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
                     SET LOCAL max_parallel_workers_per_gather = 0",
                )
                .await
                .map_err(|e| queries::map_query_error(e, "starting the snapshot transaction"))?;
            let row = client
                .query_one("SELECT pg_export_snapshot()", &[])
                .await
                .map_err(|e| queries::map_query_error(e, "exporting a snapshot for pg_dump"))?;
            snapshot = Some(row.get::<_, String>(0));
        }

        let spec = self.pg_dump_command(&db, snapshot.as_deref());
        let command = spec.display();
        let ps = spawn_stdout_stream(&spec, COMPONENT, None)?;
        let (stream, toc_rx) = dump_header::inspect(ps.stream);

        // Exact counts run in the exported snapshot, alongside pg_dump, once the TOC says
        // which tables' data the dump holds. The transaction stays open until the dump is
        // stored (the client comes back to `finish`).
        let counter = if self.exact_counts {
            let mut rx = toc_rx.clone();
            Some(AbortOnDrop(tokio::spawn(async move {
                let summary = rx
                    .wait_for(|v| v.is_some())
                    .await
                    .ok()
                    .and_then(|v| v.clone());
                let result = match summary {
                    Some(Ok(s)) => queries::exact_counts(&client, &s.table_data)
                        .await
                        .map(Some),
                    _ => Ok(None),
                };
                (client, result)
            })))
        } else {
            drop(client);
            None
        };

        let mut facts = PostgresFacts {
            database: Some(db),
            server_version: Some(server_version),
            server_version_num: Some(server_num),
            pg_dump_version: Some(tool.full),
            database_size_bytes: Some(info.size),
            encoding: Some(info.encoding),
            lc_collate: Some(info.collate),
            lc_ctype: Some(info.ctype),
            command: Some(command),
            ..PostgresFacts::default()
        };

        Ok(Export::with_finish(stream, async move {
            let summary = toc_rx.borrow().clone();
            facts.toc = TocFacts::read(summary.as_ref(), "pg_dump")?;
            let dumped: Option<Vec<String>> = match &summary {
                Some(Ok(s)) => Some(
                    s.table_data
                        .iter()
                        .map(|(s, t)| qualified_name(s, t))
                        .collect(),
                ),
                _ => None,
            };
            facts.row_estimates = Some(
                tables
                    .iter()
                    .map(|(s, t, est)| (qualified_name(s, t), *est))
                    .filter(|(q, _)| dumped.as_ref().is_none_or(|d| d.contains(q)))
                    .collect(),
            );
            if let Some(mut counter) = counter {
                let (client, result) = (&mut counter.0)
                    .await
                    .map_err(|e| Error::internal(format!("row counting task failed: {e}")))?;
                let counts = result.map_err(|e| e.or_operation("count rows"))?;
                client.batch_execute("COMMIT").await.ok();
                drop(client);
                facts.row_counts = counts;
            }
            to_facts(&facts)
        }))
    }
}

#[async_trait]
impl Source for PostgresSource {
    fn component(&self) -> &str {
        &self.component
    }

    fn provider(&self) -> &str {
        "pg_dump"
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        self.conn.validate()?;
        let client = self.connect(self.conn.get_dbname(), "preflight").await?;
        let (server_version, server_num) = queries::server_version(&client)
            .await
            .map_err(|e| e.or_operation("preflight"))?;
        let server_major = (server_num / 10000) as u32;
        let dump = tool_version(&self.tools.pg_dump).await?;
        check_tool_for_server("pg_dump", &dump, server_major)?;
        let mut notes = vec![format!("pg_dump {}", dump.full)];
        if self.globals {
            let all = tool_version(&self.tools.pg_dumpall).await?;
            check_tool_for_server("pg_dumpall", &all, server_major)?;
            notes.push(format!("pg_dumpall {}", all.full));
        }
        let dbs = self.existing_databases(&client, "preflight").await?;
        notes.push(format!("databases: {}", dbs.join(", ")));
        Ok(PreflightReport {
            server_version: Some(server_version),
            notes,
        })
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        let client = self.connect(self.conn.get_dbname(), "discover").await?;
        let dbs = self.existing_databases(&client, "discover").await?;
        let mut plans = dbs
            .into_iter()
            .map(|db| dump_plan(db, self.dumps_sensitive))
            .collect::<Result<Vec<_>>>()?;
        if self.globals {
            let mut plan = ArtifactPlan::new(GLOBALS_ARTIFACT, GLOBALS_CONTENT_TYPE)
                .sensitive(true)
                .text(true);
            plan.facts = to_facts(&PostgresGlobalsFacts::default())?;
            plans.push(plan);
        }
        Ok(plans)
    }

    async fn export(&self, artifact: &ArtifactPlan, _ctx: &ExportContext) -> Result<Export> {
        let result = if artifact.content_type == GLOBALS_CONTENT_TYPE {
            self.export_globals().await
        } else {
            let db = planned_database(artifact)?;
            self.export_dump(db).await
        };
        result
    }
}

/// The plan of database `db`'s dump: its name and, as facts, the database.
pub(crate) fn dump_plan(db: String, sensitive: bool) -> Result<ArtifactPlan> {
    let mut plan =
        ArtifactPlan::new(dump_artifact_name(&db), DUMP_CONTENT_TYPE).sensitive(sensitive);
    plan.facts = to_facts(&PostgresFacts {
        database: Some(db),
        ..PostgresFacts::default()
    })?;
    Ok(plan)
}

/// The database a dump plan of [`dump_plan`] names.
pub(crate) fn planned_database(plan: &ArtifactPlan) -> Result<String> {
    plan.facts_as::<PostgresFacts>()?.database.ok_or_else(|| {
        Error::config(format!("artifact plan '{}' names no database", plan.name))
            .with_operation("export")
            .with_hint("export only plans returned by this source's discover()")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_validates_before_connecting() {
        let url = || PgConnection::from_url("postgres://u@h/db").unwrap();
        let err = PostgresSource::builder(url())
            .compression(CompressionLocation::InPgDump(12))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let err = PostgresSource::builder(PgConnection::default())
            .databases(Vec::<String>::new())
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let err = PostgresSource::builder(PgConnection::default().host(""))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(PostgresSource::builder(url()).build().is_ok());
    }

    #[test]
    fn pg_dump_command_has_defaults_and_no_password() {
        let conn = PgConnection::from_url("postgres://backup:hunter2@db:5432/stoa").unwrap();
        let s = PostgresSource::builder(conn)
            .include_schema("stoa")
            .exclude_table("stoa.audit_*")
            .build()
            .unwrap();
        let spec = s.pg_dump_command("stoa", Some("00000003-1"));
        let line = spec.display();
        for want in [
            "--format=custom",
            "--compress=0",
            "--no-owner",
            "--no-privileges",
            "--schema=stoa",
            "--exclude-table=stoa.audit_*",
            "--snapshot=00000003-1",
            "dbname='stoa'",
        ] {
            assert!(line.contains(want), "{line}");
        }
        assert!(!line.contains("hunter2"), "{line}");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(spec.env.iter().any(|(k, _)| k == "PGPASSWORD"));
    }

    #[test]
    fn artifact_names_are_valid_keys() {
        assert_eq!(dump_artifact_name("stoa"), "stoa.dump");
        assert_eq!(dump_artifact_name("a/b%"), "a%2Fb%25.dump");
        assert_eq!(dump_artifact_name(".."), "...dump");
        stoa_backup_core::ObjectKey::new(format!("runs/x/postgres/{}", dump_artifact_name("../x")))
            .unwrap();
    }
}
