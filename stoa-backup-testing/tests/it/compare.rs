//! What "the database equals the snapshot" means in these tests: the schema as pg_dump
//! prints it, every table's rows (ordered md5), every sequence's position, and the
//! database's own owner, privileges, settings and comment.

use std::collections::BTreeMap;

use stoa_backup_test_support::{connect, test_database_url};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub schema: String,
    pub tables: BTreeMap<String, (i64, String)>,
    pub sequences: BTreeMap<String, (i64, bool)>,
    pub database: Vec<String>,
}

pub fn with_database(url: &str, db: &str) -> String {
    let (head, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{head}/{db}")
}

pub async fn fingerprint(db: &str) -> Fingerprint {
    let url = with_database(&test_database_url(), db);
    let out = std::process::Command::new("pg_dump")
        .args(["--schema-only", "--dbname", &url])
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // pg_dump 15.14+ writes a random \restrict key per dump.
    let schema = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n");
    let client = connect(&url).await;
    let mut tables = BTreeMap::new();
    for row in client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
    {
        let t: String = row.get(0);
        let r = client
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x"
                ),
                &[],
            )
            .await
            .unwrap();
        tables.insert(t, (r.get(0), r.get(1)));
    }
    let mut sequences = BTreeMap::new();
    for row in client
        .query(
            "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
    {
        let s: String = row.get(0);
        let r = client
            .query_one(&format!("SELECT last_value, is_called FROM {s}"), &[])
            .await
            .unwrap();
        sequences.insert(s, (r.get(0), r.get(1)));
    }
    drop(client);
    let admin = connect(&test_database_url()).await;
    let props = admin
        .query_one(
            "SELECT pg_get_userbyid(d.datdba)::text, coalesce(d.datacl::text, 'default'), \
             coalesce(shobj_description(d.oid, 'pg_database'), ''), d.datconnlimit::text, \
             coalesce((SELECT string_agg(array_to_string(setconfig, ','), ';' ORDER BY setrole) \
                       FROM pg_db_role_setting WHERE setdatabase = d.oid), '') \
             FROM pg_database d WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap();
    let database = (0..5).map(|i| props.get::<_, String>(i)).collect();
    Fingerprint {
        schema,
        tables,
        sequences,
        database,
    }
}

/// A STOA-like schema: schemas, FKs, jsonb with non-ASCII text, bytea, a view, an index,
/// sequences moved, and database-level settings, privileges and a comment.
pub async fn seed(db: &str) {
    let client = connect(&with_database(&test_database_url(), db)).await;
    client
        .batch_execute(
            "CREATE SCHEMA catalog;
             CREATE TABLE tenants (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, settings jsonb NOT NULL DEFAULT '{}');
             CREATE TABLE catalog.apis (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant bigint NOT NULL REFERENCES tenants,
                 path text NOT NULL, spec bytea, created timestamptz NOT NULL DEFAULT now());
             CREATE INDEX apis_path ON catalog.apis (path);
             CREATE TABLE subscriptions (id serial PRIMARY KEY, api uuid REFERENCES catalog.apis, consumer text);
             CREATE VIEW tenant_apis AS SELECT t.name, a.path FROM tenants t JOIN catalog.apis a ON a.tenant = t.id;
             INSERT INTO tenants (name, settings)
                 SELECT 'tenant-' || g, jsonb_build_object('région', 'Île-de-France', 'n', g, 'emoji', '✓')
                 FROM generate_series(1, 50) g;
             INSERT INTO catalog.apis (tenant, path, spec)
                 SELECT 1 + g % 50, '/v1/api/' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 300) g;
             INSERT INTO subscriptions (api, consumer) SELECT id, 'consumer-' || left(path, 12) FROM catalog.apis;",
        )
        .await
        .unwrap();
    let admin = connect(&test_database_url()).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{db}\" SET search_path TO \"$user\", public, catalog;
             ALTER DATABASE \"{db}\" SET application_name TO 'stoa control plane';
             COMMENT ON DATABASE \"{db}\" IS 'the control plane''s data';
             REVOKE ALL ON DATABASE \"{db}\" FROM PUBLIC; GRANT CONNECT ON DATABASE \"{db}\" TO PUBLIC;"
        ))
        .await
        .unwrap();
}

/// Inserts, updates, deletes, DDL, sequence moves, and database-level changes.
pub async fn mutate(db: &str) {
    let client = connect(&with_database(&test_database_url(), db)).await;
    client
        .batch_execute(
            "INSERT INTO tenants (name) VALUES ('intruder');
             UPDATE catalog.apis SET path = path || '/v2' WHERE tenant < 10;
             DELETE FROM subscriptions WHERE id % 3 = 0;
             ALTER TABLE tenants ADD COLUMN plan text DEFAULT 'gold';
             DROP INDEX catalog.apis_path;
             CREATE TABLE audit (at timestamptz DEFAULT now());
             DROP VIEW tenant_apis;
             SELECT setval('subscriptions_id_seq', 100000);",
        )
        .await
        .unwrap();
    let admin = connect(&test_database_url()).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{db}\" SET work_mem TO '64MB'; COMMENT ON DATABASE \"{db}\" IS 'changed';
             GRANT TEMPORARY ON DATABASE \"{db}\" TO PUBLIC;"
        ))
        .await
        .unwrap();
}

/// Databases whose name starts with `prefix`, once this process's background drops have
/// ended.
pub async fn databases_like(prefix: &str) -> Vec<String> {
    stoa_backup_testing::settle().await;
    databases_now(prefix).await
}

/// Databases whose name starts with `prefix`, now.
pub async fn databases_now(prefix: &str) -> Vec<String> {
    let admin = connect(&test_database_url()).await;
    admin
        .query(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
            &[&prefix],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The OID of database `name`.
pub async fn database_oid(name: &str) -> Option<u32> {
    let admin = connect(&test_database_url()).await;
    admin
        .query_opt("SELECT oid FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .map(|r| r.get(0))
}
