//! [`RowCounts`]: tables hold as many rows as the PostgreSQL backup recorded.

use std::collections::BTreeMap;

use async_trait::async_trait;
use stoa_backup_core::recovery::{Check, CheckContext, CheckOutcome};
use stoa_backup_core::{Error, ErrorKind, Result};
use tokio_postgres::error::SqlState;

use crate::postgres::{qualified_name, PgConnection, PostgresFacts, DUMP_CONTENT_TYPE};

/// The component recorded on this check's errors (and the manifest component looked in,
/// unless told otherwise).
const COMPONENT: &str = crate::postgres::COMPONENT;

/// Compares `SELECT count(*)` of the tables named with the exact counts the PostgreSQL
/// backup recorded in its manifest ([`PostgresFacts::row_counts`], taken in the snapshot
/// pg_dump dumped), from the runs the [`CheckContext`] holds (the newest first).
///
/// - Passes when every table holds the count recorded: `public.apis: 12, public.subscriptions: 40 (as backed up)`.
/// - Fails naming each table whose count differs (`public.apis: 11 rows, backup had 12`)
///   or that is missing from the database.
/// - Is skipped, saying why, when the context holds no dump of the database, or the dump
///   recorded no exact counts (exec mode) or none for a table named (a table with no
///   count recorded is skipped even when the others match; a difference fails first).
///
/// The database counted is the connection's unless [`database`](Self::database) says
/// otherwise; the dump compared with is that of the same name unless
/// [`backed_up_as`](Self::backed_up_as) says otherwise (a drill restoring `stoa` into
/// `stoa_drill` counts in `stoa_drill` and compares with the dump of `stoa`).
#[derive(Debug, Clone)]
pub struct RowCounts {
    name: String,
    named: bool,
    conn: PgConnection,
    database: String,
    backed_up_as: Option<String>,
    component: String,
    tables: Vec<(String, String)>,
}

impl RowCounts {
    /// The check of `tables` (each `schema.table`, or `table` for `public.table`, e.g.
    /// `public.apis`, `public.subscriptions`) in the connection's database, through `conn`
    /// (whose password `Debug` and errors mask). Named `row counts of <database>` unless
    /// [`named`](Self::named) says otherwise.
    pub fn new<S: AsRef<str>>(
        conn: PgConnection,
        tables: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let tables = tables
            .into_iter()
            .map(|t| parse_table(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        if tables.is_empty() {
            return Err(Error::config("no table to count")
                .with_component(COMPONENT)
                .with_operation("configure check")
                .with_hint("name the tables to compare, e.g. public.apis"));
        }
        let database = conn.get_dbname().to_string();
        let mut c = RowCounts {
            name: String::new(),
            named: false,
            conn,
            database,
            backed_up_as: None,
            component: COMPONENT.to_string(),
            tables,
        };
        c.default_name();
        Ok(c)
    }

    /// Counts in `database` instead of the connection's (e.g. the scratch database a drill
    /// restored into).
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = database.into();
        self.default_name();
        self
    }

    /// Compares with the dump of `database` (default: the database counted).
    pub fn backed_up_as(mut self, database: impl Into<String>) -> Self {
        self.backed_up_as = Some(database.into());
        self
    }

    /// Looks for the dump among the artifacts of `component` (default `postgres`, as
    /// [`PostgresSource`](crate::postgres::PostgresSource) names it unless told otherwise).
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = component.into();
        self
    }

    /// Renames the check (for the report and the journal).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.named = true;
        self
    }

    fn default_name(&mut self) {
        if !self.named {
            self.name = format!("row counts of {}", self.database);
        }
    }

    fn dump_database(&self) -> &str {
        self.backed_up_as.as_deref().unwrap_or(&self.database)
    }

    /// The recorded facts of the newest dump of the database compared with, or why there is
    /// none.
    fn recorded(&self, ctx: &CheckContext) -> Result<std::result::Result<PostgresFacts, String>> {
        let want = self.dump_database();
        let mut seen = Vec::new();
        for a in ctx
            .artifacts_of(&self.component)
            .filter(|a| a.content_type == DUMP_CONTENT_TYPE)
        {
            let facts: PostgresFacts = a.facts_as().map_err(|e| {
                e.or_component(COMPONENT)
                    .with_operation(super::operation(&self.name))
            })?;
            match facts.database.as_deref() {
                Some(db) if db == want => return Ok(Ok(facts)),
                Some(db) => seen.push(db.to_string()),
                None => {}
            }
        }
        Ok(Err(if seen.is_empty() {
            format!(
                "the runs checked hold no PostgreSQL dump (component '{}') to compare with",
                self.component
            )
        } else {
            seen.sort();
            seen.dedup();
            format!(
                "the runs checked hold no dump of database '{want}' (only of {})",
                seen.join(", ")
            )
        }))
    }

    fn error(&self, kind: ErrorKind, message: String) -> Error {
        Error::new(kind, message)
            .with_component(COMPONENT)
            .with_operation(super::operation(&self.name))
    }

    /// `count(*)` of each table now, `None` for a table that does not exist.
    async fn count(&self) -> Result<BTreeMap<String, Option<i64>>> {
        let client = self.conn.connect(&self.database).await.map_err(|e| {
            e.with_operation(super::operation(&self.name))
                .or_hint("check that the database is up and the recovery restored it")
        })?;
        let mut out = BTreeMap::new();
        for (schema, table) in &self.tables {
            let key = qualified_name(schema, table);
            let sql = format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(schema),
                quote_ident(table)
            );
            match client.query_one(&sql, &[]).await {
                Ok(row) => {
                    out.insert(key, Some(row.get::<_, i64>(0)));
                }
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {
                    out.insert(key, None);
                }
                Err(e) => {
                    let why = match e.as_db_error() {
                        Some(db) => format!("{} ({})", db.message(), db.code().code()),
                        None => e.to_string(),
                    };
                    let kind = match e.code() {
                        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
                            ErrorKind::PermissionDenied
                        }
                        _ if e.is_closed() => ErrorKind::Unavailable,
                        _ => ErrorKind::Source,
                    };
                    return Err(self
                        .error(
                            kind,
                            format!("counting rows of {key} in '{}': {why}", self.database),
                        )
                        .with_hint("grant the checking role SELECT on the tables checked"));
                }
            }
        }
        Ok(out)
    }
}

/// `schema.table` (or `table`, in `public`) as the pair it names.
fn parse_table(name: &str) -> Result<(String, String)> {
    let name = name.trim();
    let (schema, table) = match name.split_once('.') {
        Some((s, t)) => (s, t),
        None => ("public", name),
    };
    if schema.is_empty() || table.is_empty() || table.contains('.') {
        return Err(Error::config(format!("'{name}' is not a table name"))
            .with_component(COMPONENT)
            .with_operation("configure check")
            .with_hint("name tables as schema.table, e.g. public.apis"));
    }
    Ok((schema.to_string(), table.to_string()))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[async_trait]
impl Check for RowCounts {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, ctx: &CheckContext) -> Result<CheckOutcome> {
        let facts = match self.recorded(ctx)? {
            Ok(f) => f,
            Err(why) => return Ok(CheckOutcome::skipped(why)),
        };
        let dump = self.dump_database();
        let Some(recorded) = facts.row_counts else {
            let why = facts
                .exact_counts
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            return Ok(CheckOutcome::skipped(format!(
                "the dump of '{dump}' recorded no row counts{why}"
            )));
        };
        let now = self.count().await?;
        let (mut matched, mut differ, mut uncounted) = (Vec::new(), Vec::new(), Vec::new());
        for (table, found) in &now {
            match (recorded.get(table), found) {
                (None, _) => uncounted.push(table.clone()),
                (Some(want), Some(got)) if want == got => matched.push(format!("{table}: {got}")),
                (Some(want), Some(got)) => {
                    differ.push(format!("{table}: {got} rows, backup had {want}"))
                }
                (Some(want), None) => {
                    differ.push(format!("{table}: missing (backup had {want} rows)"))
                }
            }
        }
        let in_db = if dump == self.database {
            format!("'{}'", self.database)
        } else {
            format!("'{}' (backed up as '{dump}')", self.database)
        };
        if !differ.is_empty() {
            return Ok(CheckOutcome::failed(format!(
                "row counts in {in_db} differ from the backup: {}",
                differ.join("; ")
            )));
        }
        if !uncounted.is_empty() {
            let others = if matched.is_empty() {
                String::new()
            } else {
                format!("; the others match ({})", matched.join(", "))
            };
            return Ok(CheckOutcome::skipped(format!(
                "the dump of '{dump}' recorded no count for {}{others}",
                uncounted.join(", ")
            )));
        }
        Ok(CheckOutcome::passed(format!(
            "{} in {in_db}, as backed up",
            matched.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_default_to_public() {
        assert_eq!(
            parse_table("public.apis").unwrap(),
            ("public".into(), "apis".into())
        );
        assert_eq!(
            parse_table("subscriptions").unwrap(),
            ("public".into(), "subscriptions".into())
        );
        for bad in ["", ".x", "a.", "a.b.c"] {
            assert!(parse_table(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_masks_the_password_and_names_follow_the_database() {
        let conn = PgConnection::from_url("postgres://u:pg-s3cret@h:5432/stoa").unwrap();
        let c = RowCounts::new(conn, ["public.apis"]).unwrap();
        assert_eq!(c.name(), "row counts of stoa");
        let c = c.database("stoa_drill").backed_up_as("stoa");
        assert_eq!(c.name(), "row counts of stoa_drill");
        assert_eq!(c.dump_database(), "stoa");
        assert!(!format!("{c:?}").contains("pg-s3cret"));
        assert!(RowCounts::new(PgConnection::default(), Vec::<&str>::new()).is_err());
    }
}
