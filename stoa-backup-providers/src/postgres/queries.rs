//! SQL the provider runs: server facts, database lists, user tables and row counts.

use std::collections::BTreeMap;

use stoa_backup_core::error::{Error, Result};
use tokio_postgres::Client;

use super::conn::quote_ident;
use super::COMPONENT;

fn query_error(e: tokio_postgres::Error, what: &str) -> Error {
    let msg = match e.as_db_error() {
        Some(db) => format!("{what} failed: {} ({})", db.message(), db.code().code()),
        None => format!("{what} failed: {e}"),
    };
    let kind = match e.code() {
        Some(c) if *c == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE => {
            stoa_backup_core::ErrorKind::PermissionDenied
        }
        _ if e.is_closed() => stoa_backup_core::ErrorKind::Unavailable,
        _ => stoa_backup_core::ErrorKind::Source,
    };
    Error::new(kind, msg).with_component(COMPONENT)
}

/// Server version string and number (`15.20 (Debian …)`, 150020).
pub(crate) async fn server_version(client: &Client) -> Result<(String, i32)> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int",
            &[],
        )
        .await
        .map_err(|e| query_error(e, "reading the server version"))?;
    Ok((row.get(0), row.get(1)))
}

/// Databases that can be dumped: not templates, accepting connections.
pub(crate) async fn list_databases(client: &Client) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| query_error(e, "listing databases"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Whether a database exists.
pub(crate) async fn database_exists(client: &Client, name: &str) -> Result<bool> {
    let rows = client
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| query_error(e, "looking up a database"))?;
    Ok(!rows.is_empty())
}

/// Size, encoding and locale of the connected database.
pub(crate) struct DatabaseInfo {
    pub size: i64,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
}

pub(crate) async fn database_info(client: &Client) -> Result<DatabaseInfo> {
    let row = client
        .query_one(
            "SELECT pg_database_size(d.oid), pg_encoding_to_char(d.encoding)::text, d.datcollate::text, d.datctype::text \
             FROM pg_database d WHERE d.datname = current_database()",
            &[],
        )
        .await
        .map_err(|e| query_error(e, "reading the database size"))?;
    Ok(DatabaseInfo {
        size: row.get(0),
        encoding: row.get(1),
        collate: row.get(2),
        ctype: row.get(3),
    })
}

/// `schema.table` as an unambiguous display name (quoted like `quote_ident` when needed).
pub fn qualified_name(schema: &str, table: &str) -> String {
    fn q(s: &str) -> String {
        let plain = !s.is_empty()
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if plain {
            s.to_string()
        } else {
            quote_ident(s)
        }
    }
    format!("{}.{}", q(schema), q(table))
}

const USER_TABLES: &str = "SELECT n.nspname::text, c.relname::text, c.reltuples::float8 \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind = 'r' AND c.relpersistence <> 't' \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                       AND d.objid = c.oid AND d.deptype = 'e') \
     ORDER BY 1, 2";

/// User tables with the planner's row estimate (`None` when never analyzed).
pub(crate) async fn user_tables(client: &Client) -> Result<Vec<(String, String, Option<i64>)>> {
    let rows = client
        .query(USER_TABLES, &[])
        .await
        .map_err(|e| query_error(e, "listing tables"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let est: f64 = r.get(2);
            (
                r.get(0),
                r.get(1),
                if est < 0.0 {
                    None
                } else {
                    Some(est.round() as i64)
                },
            )
        })
        .collect())
}

/// Exact `count(*)` of each table, keyed by [`qualified_name`].
pub(crate) async fn exact_counts(
    client: &Client,
    tables: &[(String, String)],
) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for (schema, table) in tables {
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            quote_ident(schema),
            quote_ident(table)
        );
        let row = client.query_one(&sql, &[]).await.map_err(|e| {
            query_error(
                e,
                &format!("counting rows of {}", qualified_name(schema, table)),
            )
        })?;
        out.insert(qualified_name(schema, table), row.get::<_, i64>(0));
    }
    Ok(out)
}

/// Exact counts of every user table of the connected database.
pub(crate) async fn all_exact_counts(client: &Client) -> Result<BTreeMap<String, i64>> {
    let tables: Vec<(String, String)> = user_tables(client)
        .await?
        .into_iter()
        .map(|(s, t, _)| (s, t))
        .collect();
    exact_counts(client, &tables).await
}

pub(crate) fn map_query_error(e: tokio_postgres::Error, what: &str) -> Error {
    query_error(e, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_quote_only_when_needed() {
        assert_eq!(qualified_name("stoa", "tenants"), "stoa.tenants");
        assert_eq!(
            qualified_name("Stoa", "audit.events"),
            "\"Stoa\".\"audit.events\""
        );
        assert_eq!(qualified_name("s", "café"), "s.\"café\"");
    }
}
