//! PostgreSQL provider against the real server (`STOA_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`): a STOA-like schema is backed up with the
//! real pg_dump, verified, restored into new databases and compared table by table.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::pg;
use crate::restore_support::restore_component;
use stoa_backup::core::codec::hash::sha256_hex;
use stoa_backup::core::manifest::{ArtifactRecord, VerifyMethod};
use stoa_backup::core::source::{ExportContext, Facts};
use stoa_backup::core::stream::collect;
use stoa_backup::core::{
    Catalog, ExistingDataPolicy, Keyring, MemorySink, ObjectKey, PerArtifact, Pipeline,
    RestoreOptions, RunFilter, RunId, Sink, SinkExt, Source, Verifier, VerifyContext, ZstdCodec,
};
use stoa_backup::providers::postgres::verify::drop_database_force;
use stoa_backup::providers::postgres::{
    CompressionLocation, PgArchiveVerifier, PgConnection, PostgresRestorer, PostgresSource,
    RestoreTarget, ScratchRestoreVerifier, SqlCheck, DUMP_CONTENT_TYPE, GLOBALS_ARTIFACT,
};
use stoa_backup::storage::LocalSink;
use stoa_backup_test_support::{test_database_url, TestDatabase};
use tokio_postgres::NoTls;

const STOA_SCHEMA: &str = r#"
CREATE SCHEMA stoa;
CREATE TYPE stoa.plan_tier AS ENUM ('free', 'pro', 'enterprise');
CREATE TYPE stoa.sub_status AS ENUM ('active', 'suspended', 'cancelled');
CREATE SEQUENCE stoa.invoice_number_seq START 1000;

CREATE TABLE stoa.tenants (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE,
    display_name text NOT NULL,
    tier stoa.plan_tier NOT NULL,
    settings jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE stoa.apis (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES stoa.tenants (id),
    name text NOT NULL,
    spec json,
    tags text[] NOT NULL DEFAULT '{}',
    price numeric(12, 4),
    published_on timestamp,
    logo bytea
);
CREATE TABLE stoa.consumers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES stoa.tenants (id),
    display_name text NOT NULL,
    email text NOT NULL,
    metadata jsonb
);
CREATE TABLE stoa.subscriptions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    api_id uuid NOT NULL REFERENCES stoa.apis (id),
    consumer_id bigint NOT NULL REFERENCES stoa.consumers (id),
    status stoa.sub_status NOT NULL,
    invoice_number bigint NOT NULL DEFAULT nextval('stoa.invoice_number_seq'),
    quotas integer[],
    started_at timestamptz NOT NULL
);
CREATE TABLE stoa.audit_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid,
    actor text NOT NULL,
    action text NOT NULL,
    payload jsonb,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION stoa.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stoa.audit_events is append-only';
END
$$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON stoa.audit_events
    FOR EACH ROW EXECUTE FUNCTION stoa.audit_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON stoa.audit_events
    FOR EACH ROW EXECUTE FUNCTION stoa.audit_append_only();
CREATE VIEW stoa.active_subscriptions AS
    SELECT s.id, s.status, a.name AS api_name, c.email
    FROM stoa.subscriptions s
    JOIN stoa.apis a ON a.id = s.api_id
    JOIN stoa.consumers c ON c.id = s.consumer_id
    WHERE s.status = 'active';

INSERT INTO stoa.tenants (name, display_name, tier, settings, created_at)
SELECT format('tenant-%s', g),
       (ARRAY['Société Générale', '東京データ', 'Ünïcødé GmbH', 'Αθήνα Ltd', 'Zürich ☃ AG'])[1 + g % 5] || ' #' || g,
       (ARRAY['free', 'pro', 'enterprise']::stoa.plan_tier[])[1 + g % 3],
       jsonb_build_object('region', (ARRAY['eu-west', 'ap-northeast'])[1 + g % 2], 'limits',
                          jsonb_build_object('rps', g * 10), 'emoji', '🚀', 'note', E'quote '' and backslash \\'),
       timestamptz '2025-01-01 00:00:00+00' + g * interval '37 minutes'
FROM generate_series(1, 200) g;

INSERT INTO stoa.apis (tenant_id, name, spec, tags, price, published_on, logo)
SELECT t.id, format('api-%s-%s', g, (ARRAY['paiement', 'ödeme', '決済'])[1 + g % 3]),
       json_build_object('openapi', '3.0.3', 'info', json_build_object('title', 'API ' || g)),
       ARRAY['v' || (g % 3), 'café', 'tag with space'],
       (g * 1.2345)::numeric(12, 4),
       timestamp '2024-02-29 12:00:00' + g * interval '1 hour',
       decode(md5(g::text), 'hex')
FROM generate_series(1, 2000) g
JOIN (SELECT id, row_number() OVER (ORDER BY name) AS rn FROM stoa.tenants) t ON t.rn = 1 + g % 200;

INSERT INTO stoa.consumers (tenant_id, display_name, email, metadata)
SELECT t.id, (ARRAY['Ñandú', 'Łukasz', 'Ølberg', 'Борис', 'مرحبا'])[1 + g % 5] || ' ' || g,
       format('consumer%s@example.com', g),
       CASE WHEN g % 7 = 0 THEN NULL ELSE jsonb_build_object('plan', g % 4, 'tags', jsonb_build_array('a', g)) END
FROM generate_series(1, 3000) g
JOIN (SELECT id, row_number() OVER (ORDER BY name) AS rn FROM stoa.tenants) t ON t.rn = 1 + g % 200;

INSERT INTO stoa.subscriptions (api_id, consumer_id, status, quotas, started_at)
SELECT a.id, 1 + g % 3000, (ARRAY['active', 'suspended', 'cancelled']::stoa.sub_status[])[1 + g % 3],
       ARRAY[g % 100, g % 1000, g], timestamptz '2025-06-01 00:00:00+02' + g * interval '1 minute'
FROM generate_series(1, 5000) g
JOIN (SELECT id, row_number() OVER (ORDER BY name) AS rn FROM stoa.apis) a ON a.rn = 1 + g % 2000;

INSERT INTO stoa.audit_events (tenant_id, actor, action, payload)
SELECT t.id, 'user-' || (g % 50), (ARRAY['login', 'subscribe', 'révoquer'])[1 + g % 3],
       jsonb_build_object('ip', '10.0.' || (g % 255) || '.1', 'ua', 'Mozilla/5.0 ✓')
FROM generate_series(1, 5000) g
JOIN (SELECT id, row_number() OVER (ORDER BY name) AS rn FROM stoa.tenants) t ON t.rn = 1 + g % 200;

ANALYZE;
"#;

const STOA_TABLES: [&str; 5] = [
    "stoa.tenants",
    "stoa.apis",
    "stoa.consumers",
    "stoa.subscriptions",
    "stoa.audit_events",
];

pub(super) async fn client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to test database");
    tokio::spawn(conn);
    c
}

pub(crate) fn server() -> PgConnection {
    PgConnection::from_url(&test_database_url()).unwrap()
}

pub(super) fn url_for(db: &str) -> String {
    let c = server();
    format!(
        "postgres://{}@{}:{}/{}",
        c.get_user(),
        c.get_host(),
        c.get_port(),
        db
    )
}

pub(crate) async fn stoa_database(prefix: &str) -> TestDatabase {
    let db = TestDatabase::create(prefix).await;
    client(db.url())
        .await
        .batch_execute(STOA_SCHEMA)
        .await
        .expect("create the STOA schema");
    db
}

/// Ordered md5 of every row of every table, and every sequence's last value.
pub(crate) async fn fingerprint(
    db: &str,
) -> (
    BTreeMap<String, (i64, String)>,
    BTreeMap<String, Option<i64>>,
) {
    let c = client(&url_for(db)).await;
    let mut tables = BTreeMap::new();
    for t in STOA_TABLES {
        let row = c
            .query_one(
                &format!("SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {t} t"),
                &[],
            )
            .await
            .unwrap();
        tables.insert(t.to_string(), (row.get(0), row.get(1)));
    }
    let mut seqs = BTreeMap::new();
    for r in c
        .query("SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences WHERE schemaname = 'stoa'", &[])
        .await
        .unwrap()
    {
        seqs.insert(r.get::<_, String>(0), r.get::<_, Option<i64>>(1));
    }
    (tables, seqs)
}

/// Exports one database straight from the source: the plain dump bytes and the facts.
pub(super) async fn export_plain(source: &PostgresSource) -> (Vec<u8>, Facts) {
    let plans = source.discover().await.unwrap();
    let plan = plans
        .iter()
        .find(|p| p.content_type == DUMP_CONTENT_TYPE)
        .unwrap();
    let ctx = ExportContext {
        cancel: Default::default(),
        run_id: RunId::parse("20260101T000000Z-000001").unwrap(),
        stored: Vec::new(),
    };
    let export = source.export(plan, &ctx).await.unwrap();
    let bytes = collect(export.stream).await.unwrap();
    let mut facts = plan.facts.clone();
    facts.extend(export.finish.unwrap().await.unwrap());
    (bytes, facts)
}

/// Stores plain bytes in a memory sink with a record as the pipeline would write it
/// (no codecs).
pub(super) async fn store_plain(
    sink: &MemorySink,
    name: &str,
    bytes: Vec<u8>,
    facts: Facts,
) -> ArtifactRecord {
    let key = ObjectKey::new(format!("runs/20260101T000000Z-000001/postgres/{name}")).unwrap();
    let sha = sha256_hex(&bytes);
    let size = bytes.len() as u64;
    sink.put_bytes(&key, bytes.into()).await.unwrap();
    ArtifactRecord {
        component: "postgres".into(),
        provider: "pg_dump".into(),
        name: name.into(),
        key,
        content_type: DUMP_CONTENT_TYPE.into(),
        plain_size: size,
        plain_sha256: sha.clone(),
        stored_size: size,
        stored_sha256: sha,
        codecs: vec![],
        sensitive: false,
        facts,
        duration_ms: 0,
        verification: vec![],
        timings: None,
    }
}

async fn pg_restore_list(path: &std::path::Path) -> (std::process::ExitStatus, String) {
    let out = tokio::process::Command::new("pg_restore")
        .arg("--list")
        .arg(path)
        .output()
        .await
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

pub(crate) async fn database_exists(name: &str) -> bool {
    let c = client(&test_database_url()).await;
    !c.query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_empty()
}

/// A name for a database the restore creates, dropped at the end of the test (also on
/// panic, through the returned guard).
pub(crate) async fn fresh_target(prefix: &str) -> (String, TestDatabase) {
    let guard = TestDatabase::create(prefix).await;
    let name = guard.name().to_string();
    drop_database_force(&server(), &name).await.unwrap();
    (name, guard)
}

#[tokio::test]
async fn stoa_schema_round_trips_through_the_pipeline_and_a_new_database() {
    let src = stoa_database("pgrt_src").await;
    let tmp = tempfile::tempdir().unwrap();
    let sink = LocalSink::builder(tmp.path().join("backups")).create_root(true);
    let sink: Arc<dyn Sink> = Arc::new(sink.build().unwrap());
    let source = PostgresSource::builder(pg(src.url())).build().unwrap();
    let report = Pipeline::builder()
        .source(source)
        .sink(sink.clone())
        .compression(ZstdCodec::new(3).unwrap())
        .verifier(PgArchiveVerifier::new())
        .verifier(
            ScratchRestoreVerifier::new(server())
                .check(SqlCheck::at_least(
                    "subscriptions",
                    "select count(*) from stoa.subscriptions",
                    5000,
                ))
                .check(SqlCheck::is_true(
                    "audit trigger",
                    "select count(*) = 2 from pg_trigger where tgname like 'audit_events_no_%'",
                )),
        )
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_complete(), "{:?}", report.manifest.failures);

    let catalog = Catalog::new(sink.clone());
    let manifest = catalog
        .latest_verified("postgres")
        .await
        .unwrap()
        .expect("a verified run");
    assert_eq!(manifest.run_id, report.run_id);
    let a = &manifest.artifacts[0];
    assert_eq!(a.name, format!("{}.dump", src.name()));
    assert_eq!(a.content_type, DUMP_CONTENT_TYPE);
    // The archive check ran on the dump as it streamed, the scratch restore read it back,
    // and the stored bytes were checked against the digest computed while writing.
    let how: Vec<(&str, Option<VerifyMethod>)> = a
        .verification
        .iter()
        .map(|v| (v.verifier.as_str(), v.method))
        .collect();
    assert_eq!(
        how,
        [
            ("postgres-archive", Some(VerifyMethod::Inline)),
            ("postgres-scratch-restore", Some(VerifyMethod::ReadBack)),
            ("checksum", Some(VerifyMethod::ReadBack)),
        ]
    );
    assert!(a.verification.iter().all(|v| v.ok), "{:?}", a.verification);
    assert!(
        a.verification[1].detail.contains("5 tables match"),
        "{}",
        a.verification[1].detail
    );
    let f = &a.facts;
    assert_eq!(f["database"], src.name());
    assert!(
        f["server_version"].as_str().unwrap().starts_with("15"),
        "{f:?}"
    );
    assert!(
        f["pg_dump_version"].as_str().unwrap().starts_with("15"),
        "{f:?}"
    );
    assert!(f["database_size_bytes"].as_i64().unwrap() > 1_000_000);
    assert!(f["toc_entries"].as_u64().unwrap() > 30);
    assert_eq!(f["dump_compression"], "none");
    assert_eq!(f["row_counts"]["stoa.tenants"], 200);
    assert_eq!(f["row_counts"]["stoa.apis"], 2000);
    assert_eq!(f["row_counts"]["stoa.subscriptions"], 5000);
    assert_eq!(f["row_estimates"]["stoa.consumers"], 3000);
    assert!(a.stored_size < a.plain_size, "zstd compressed the -Z0 dump");

    let (target, _guard) = fresh_target("pgrt_dst").await;
    let restorer = PostgresRestorer::new(
        server(),
        RestoreTarget::NewDatabase {
            name: target.clone(),
            swap: false,
        },
    );
    let r = restore_component(
        sink.clone(),
        &manifest,
        &Keyring::default(),
        restorer,
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.facts["restored_database"], target.as_str());
    assert_eq!(r.facts["row_counts"]["stoa.audit_events"], 5000);

    let (want_tables, want_seqs) = fingerprint(src.name()).await;
    let (got_tables, got_seqs) = fingerprint(&target).await;
    assert_eq!(got_tables, want_tables);
    assert_eq!(got_seqs, want_seqs);
    assert_eq!(want_seqs["stoa.invoice_number_seq"], Some(1000 + 5000 - 1));

    // The restored audit table is still append-only, and the view works.
    let c = client(&url_for(&target)).await;
    let err = c
        .execute("UPDATE stoa.audit_events SET actor = 'x'", &[])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
        "{err:?}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM stoa.active_subscriptions", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    let tenant: String = c
        .query_one(
            "SELECT display_name FROM stoa.tenants WHERE name = 'tenant-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tenant, "東京データ #1");
    drop(c);
    src.drop_db().await;
}

#[tokio::test]
async fn toc_count_and_header_match_pg_restore_for_z0_and_z9() {
    let src = stoa_database("pgrt_toc").await;
    let tmp = tempfile::tempdir().unwrap();
    for (compression, expect) in [
        (CompressionLocation::External, "none"),
        (CompressionLocation::InPgDump(9), "gzip:9"),
    ] {
        let source = PostgresSource::builder(pg(src.url()))
            .compression(compression)
            .build()
            .unwrap();
        let (bytes, facts) = export_plain(&source).await;
        let path = tmp.path().join(format!("{expect}.dump"));
        std::fs::write(&path, &bytes).unwrap();
        let (status, listing) = pg_restore_list(&path).await;
        assert!(status.success());
        let header: u64 = listing
            .lines()
            .find_map(|l| {
                l.trim_start_matches(';')
                    .trim()
                    .strip_prefix("TOC Entries:")
            })
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(facts["toc_entries"].as_u64().unwrap(), header, "{listing}");
        let verbose = tokio::process::Command::new("pg_restore")
            .args(["--list", "--verbose"])
            .arg(&path)
            .output()
            .await
            .unwrap();
        let listed = String::from_utf8_lossy(&verbose.stdout)
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .count() as u64;
        assert_eq!(listed, header);
        assert_eq!(facts["dump_compression"], expect);
        assert_eq!(facts["archive_version"], "1.14-0");
        // Every table's data entry is known: counts cover exactly the five tables.
        assert_eq!(
            facts["row_counts"].as_object().unwrap().len(),
            5,
            "{facts:?}"
        );
        // The archive check reads gzip-compressed data blocks as well as raw ones.
        let sink = MemorySink::new();
        let record = store_plain(&sink, &format!("{expect}.dump"), bytes, facts).await;
        let ctx = VerifyContext {
            sink: &sink,
            artifact: &record,
            keyring: &Keyring::default(),
        };
        let v = PgArchiveVerifier::new().verify(&ctx).await.unwrap();
        assert!(v.ok, "{expect}: {v:?}");
        // Raw blocks are walked in process, gzip blocks read by pg_restore, which
        // decompresses them; pg_restore reads raw ones too when asked.
        let by = if expect == "none" {
            "read in process"
        } else {
            "read by pg_restore"
        };
        assert!(v.detail.contains(by), "{expect}: {}", v.detail);
        let v = PgArchiveVerifier::new()
            .full_read_by_pg_restore(true)
            .verify(&ctx)
            .await
            .unwrap();
        assert!(v.ok, "{expect}: {v:?}");
        assert!(v.detail.contains("read by pg_restore"), "{}", v.detail);
    }
    src.drop_db().await;
}

#[tokio::test]
async fn truncated_dump_passes_pg_restore_list_but_fails_both_verifiers() {
    let src = stoa_database("pgrt_trunc").await;
    let source = PostgresSource::builder(pg(src.url())).build().unwrap();
    let (bytes, facts) = export_plain(&source).await;
    let cut = bytes.len() * 40 / 100;
    let truncated = bytes[..cut].to_vec();

    // The documented check (`pg_restore --list`) accepts the truncated dump…
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("truncated.dump");
    std::fs::write(&path, &truncated).unwrap();
    let (status, listing) = pg_restore_list(&path).await;
    assert_eq!(
        status.code(),
        Some(0),
        "pg_restore --list must exit 0 on a dump cut at 40%"
    );
    assert!(listing.contains("TABLE DATA stoa"), "{listing}");

    // …ours does not.
    let sink = MemorySink::new();
    let record = store_plain(&sink, "truncated.dump", truncated, facts.clone()).await;
    let ctx = VerifyContext {
        sink: &sink,
        artifact: &record,
        keyring: &Keyring::default(),
    };
    for by_pg_restore in [false, true] {
        let v = PgArchiveVerifier::new()
            .full_read_by_pg_restore(by_pg_restore)
            .verify(&ctx)
            .await
            .unwrap();
        assert!(!v.ok, "{v:?}");
        assert!(v.detail.contains("full read"), "{}", v.detail);
    }

    let prefix = format!("stoa_vfy_{}_", &src.name()[src.name().len() - 8..]);
    let scratch = ScratchRestoreVerifier::new(server()).prefix(prefix.clone());
    let v = scratch.verify(&ctx).await.unwrap();
    assert!(!v.ok, "{v:?}");
    assert!(
        v.detail.contains("restore into a scratch database failed"),
        "{}",
        v.detail
    );
    let c = client(&test_database_url()).await;
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE $1",
            &[&format!("{prefix}%")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        left, 0,
        "the scratch database was dropped after the failure"
    );

    // The whole dump passes both.
    let whole = store_plain(&sink, "whole.dump", bytes, facts).await;
    let ctx = VerifyContext {
        sink: &sink,
        artifact: &whole,
        keyring: &Keyring::default(),
    };
    let v = PgArchiveVerifier::new().verify(&ctx).await.unwrap();
    assert!(v.ok, "{v:?}");
    let v = scratch.verify(&ctx).await.unwrap();
    assert!(v.ok, "{v:?}");

    // A record whose counts disagree with the dump fails the scratch restore.
    let mut wrong = whole.clone();
    wrong.facts.insert(
        "row_counts".into(),
        serde_json::json!({"stoa.tenants": 201}),
    );
    let ctx = VerifyContext {
        sink: &sink,
        artifact: &wrong,
        keyring: &Keyring::default(),
    };
    let v = scratch.verify(&ctx).await.unwrap();
    assert!(
        !v.ok && v.detail.contains("stoa.tenants: 200 rows, backup had 201"),
        "{v:?}"
    );
    src.drop_db().await;
}

#[tokio::test]
async fn exact_counts_and_data_come_from_the_same_snapshot() {
    let src = stoa_database("pgrt_snap").await;
    let source = PostgresSource::builder(pg(src.url())).build().unwrap();
    let plans = source.discover().await.unwrap();
    let ctx = ExportContext {
        cancel: Default::default(),
        run_id: RunId::parse("20260101T000000Z-000002").unwrap(),
        stored: Vec::new(),
    };
    let export = source.export(&plans[0], &ctx).await.unwrap();
    // Rows committed after the export started are neither in the dump nor in the counts.
    client(src.url())
        .await
        .batch_execute(
            "INSERT INTO stoa.audit_events (actor, action) SELECT 'late', 'x' FROM generate_series(1, 77);",
        )
        .await
        .unwrap();
    let bytes = collect(export.stream).await.unwrap();
    let facts = export.finish.unwrap().await.unwrap();
    assert_eq!(facts["row_counts"]["stoa.audit_events"], 5000);

    let sink = MemorySink::new();
    let mut all = plans[0].facts.clone();
    all.extend(facts);
    let record = store_plain(&sink, "snap.dump", bytes, all).await;
    let (target, _guard) = fresh_target("pgrt_snap_dst").await;
    let restorer = PostgresRestorer::new(
        server(),
        RestoreTarget::NewDatabase {
            name: target.clone(),
            swap: false,
        },
    );
    let stored = sink.get(&record.key).await.unwrap();
    let r = restorer
        .restore_one(&record, stored, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(r.facts["row_counts"]["stoa.audit_events"], 5000);
    let live: i64 = client(src.url())
        .await
        .query_one("SELECT count(*) FROM stoa.audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(live, 5077);
    src.drop_db().await;
}

#[tokio::test]
async fn all_databases_and_globals_are_discovered_and_globals_need_encryption() {
    let a = TestDatabase::create("pgrt_all_a").await;
    let source = PostgresSource::builder(pg(test_database_url()))
        .all_databases()
        .globals(true)
        .build()
        .unwrap();
    let report = source.preflight().await.unwrap();
    assert!(report.server_version.unwrap().starts_with("15"));
    let plans = source.discover().await.unwrap();
    assert!(
        plans.iter().any(|p| p.name == format!("{}.dump", a.name())),
        "{plans:?}"
    );
    assert!(
        !plans.iter().any(|p| p.name.starts_with("template")),
        "{plans:?}"
    );
    let globals = plans.iter().find(|p| p.name == GLOBALS_ARTIFACT).unwrap();
    assert!(globals.sensitive);

    let ctx = ExportContext {
        cancel: Default::default(),
        run_id: RunId::parse("20260101T000000Z-000003").unwrap(),
        stored: Vec::new(),
    };
    let export = source.export(globals, &ctx).await.unwrap();
    let text = String::from_utf8(collect(export.stream).await.unwrap()).unwrap();
    assert!(text.contains("CREATE ROLE postgres"), "{text}");

    // Without encryption the pipeline refuses to store the globals (role password hashes).
    let only_globals = PostgresSource::builder(pg(a.url()))
        .globals(true)
        .build()
        .unwrap();
    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let report = Pipeline::builder()
        .source(only_globals)
        .sink(sink.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(!report.is_complete());
    assert!(report
        .manifest
        .failures
        .iter()
        .any(|f| f.name.as_deref() == Some(GLOBALS_ARTIFACT) && f.error.contains("secrets")));
    assert!(Catalog::new(sink)
        .list_runs(&RunFilter::default())
        .await
        .unwrap()
        .is_empty());
    a.drop_db().await;
}

#[tokio::test]
async fn filters_limit_the_dump_and_the_recorded_counts() {
    let src = stoa_database("pgrt_filter").await;
    let source = PostgresSource::builder(pg(src.url()))
        .include_schema("stoa")
        .exclude_table("stoa.audit_*")
        .build()
        .unwrap();
    let (bytes, facts) = export_plain(&source).await;
    let counts = facts["row_counts"].as_object().unwrap();
    let mut names: Vec<&str> = counts.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "stoa.apis",
            "stoa.consumers",
            "stoa.subscriptions",
            "stoa.tenants"
        ],
        "{facts:?}"
    );
    assert!(facts["row_estimates"].get("stoa.audit_events").is_none());
    assert!(facts["command"]
        .as_str()
        .unwrap()
        .contains("--exclude-table=stoa.audit_*"));

    // The scratch restore compares exactly those tables.
    let sink = MemorySink::new();
    let record = store_plain(&sink, "filtered.dump", bytes.clone(), facts).await;
    let ctx = VerifyContext {
        sink: &sink,
        artifact: &record,
        keyring: &Keyring::default(),
    };
    let v = ScratchRestoreVerifier::new(server())
        .verify(&ctx)
        .await
        .unwrap();
    assert!(v.ok && v.detail.contains("4 tables match"), "{v:?}");

    // Leaving out a table a view depends on gives a dump that does not restore: pg_dump
    // and `pg_restore --list` accept it, the scratch restore does not.
    let broken = PostgresSource::builder(pg(src.url()))
        .exclude_table("stoa.subscriptions")
        .build()
        .unwrap();
    let (bytes_broken, facts_broken) = export_plain(&broken).await;
    let record = store_plain(&sink, "broken.dump", bytes_broken, facts_broken).await;
    let ctx = VerifyContext {
        sink: &sink,
        artifact: &record,
        keyring: &Keyring::default(),
    };
    assert!(PgArchiveVerifier::new().verify(&ctx).await.unwrap().ok);
    let v = ScratchRestoreVerifier::new(server())
        .verify(&ctx)
        .await
        .unwrap();
    assert!(!v.ok, "{v:?}");
    assert!(
        v.detail.contains("\"stoa.subscriptions\" does not exist"),
        "{v:?}"
    );

    // Without exact counts nothing is compared, and the verifier says so.
    let source = PostgresSource::builder(pg(src.url()))
        .exact_row_counts(false)
        .build()
        .unwrap();
    let (bytes, facts) = export_plain(&source).await;
    assert!(facts.get("row_counts").is_none());
    assert!(!facts["command"].as_str().unwrap().contains("--snapshot"));
    let record = store_plain(&sink, "uncounted.dump", bytes, facts).await;
    let ctx = VerifyContext {
        sink: &sink,
        artifact: &record,
        keyring: &Keyring::default(),
    };
    let v = ScratchRestoreVerifier::new(server())
        .verify(&ctx)
        .await
        .unwrap();
    assert!(v.ok, "{v:?}");
    assert!(
        v.warnings.iter().any(|w| w.contains("not compared")),
        "{v:?}"
    );
    src.drop_db().await;
}
