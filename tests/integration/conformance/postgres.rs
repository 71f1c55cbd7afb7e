//! [`PostgresRestorer`] restoring a dump taken by [`PostgresSource`] (compressed,
//! encrypted) on the local server into a new database, uniquely named per target and
//! dropped afterwards; once without swap (the database must not exist), once with swap (the
//! dump goes into a staging database that takes the name only once it restored completely).
//!
//! The state is the rows of every table of the target database, and of every database
//! named after it (a staging copy left behind, the previous database a swap keeps); the
//! writes are what the server shows of the target name: the databases seen under it (polled
//! every few milliseconds, so that one created and dropped again shows) and its rows.
//!
//! Without swap the dump is checked while it is restored into the new database, which is
//! dropped when the check fails. Over an existing database every policy is refused without
//! swap, and with it, the database is replaced under every policy (the swap is the
//! operator's choice; the previous one is kept as `<name>_old_<run>`).

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use stoa_backup::core::{MemorySink, Pipeline, Restorer, RunStatus, ZstdCodec};
use stoa_backup::providers::postgres::{
    PgConnection, PostgresRestorer, PostgresSource, RestoreTarget,
};
use stoa_backup_test_support::artifacts::age_keys;
use stoa_backup_test_support::restorer_conformance::{
    run_restorer_conformance, Capabilities, DigestCheck, ExistingData, HarnessBackup,
    RestorerHarness, TargetState,
};
use stoa_backup_test_support::{test_database_url, TestDatabase};
use tokio_postgres::NoTls;

async fn connect(db: Option<&str>) -> tokio_postgres::Client {
    let mut cfg: tokio_postgres::Config = test_database_url().parse().unwrap();
    if let Some(db) = db {
        cfg.dbname(db);
    }
    let (client, conn) = cfg
        .connect(NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(conn);
    client
}

/// Names and oids of the databases whose name starts with `prefix`.
async fn databases_like(admin: &tokio_postgres::Client, prefix: &str) -> Vec<(String, u32)> {
    admin
        .query(
            "SELECT datname::text, oid FROM pg_database WHERE starts_with(datname, $1)",
            &[&prefix],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Every table of `db` with its rows, as JSON text, keyed `<key prefix><table>`.
async fn tables_of(db: &str, key_prefix: &str, out: &mut TargetState) {
    let c = connect(Some(db)).await;
    let tables: Vec<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in tables {
        let rows: String = c
            .query_one(
                &format!(
                    "SELECT coalesce(json_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]')::text \
                     FROM \"{t}\" t"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        out.insert(format!("{key_prefix}{t}"), rows);
    }
}

/// What the server holds under `name` and beside it (`<name>_…`).
async fn state_of(name: &str) -> TargetState {
    let admin = connect(None).await;
    let mut out = TargetState::new();
    for (db, _) in databases_like(&admin, name).await {
        if db == name {
            tables_of(&db, "", &mut out).await;
        } else if let Some(rest) = db.strip_prefix(&format!("{name}_")) {
            // The run id in the name varies: keep its kind (`restore`, `old`).
            let kind = rest.split('_').next().unwrap_or(rest);
            tables_of(&db, &format!("{kind} copy: "), &mut out).await;
        }
    }
    out
}

const SOURCE_SQL: &str = "
    CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
    INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5) g;
    CREATE TABLE notes (id int PRIMARY KEY, body text);
    INSERT INTO notes VALUES (1, 'first'), (2, NULL);";

struct PostgresHarness {
    swap: bool,
    source: TestDatabase,
    /// Every target name starts with this (to find, and drop, what the suite left).
    prefix: String,
    target: Mutex<String>,
    next: Mutex<u32>,
    /// (name, oid) of every database seen under the prefix.
    seen: Arc<Mutex<BTreeSet<(String, u32)>>>,
    poller: tokio::task::JoinHandle<()>,
}

impl PostgresHarness {
    async fn new(swap: bool) -> Self {
        let source = TestDatabase::create("conf_pg_src").await;
        connect(Some(source.name()))
            .await
            .batch_execute(SOURCE_SQL)
            .await
            .unwrap();
        let prefix = format!("conf_pg_{:08x}", rand::random::<u32>());
        let seen: Arc<Mutex<BTreeSet<(String, u32)>>> = Arc::default();
        let (p, s) = (prefix.clone(), seen.clone());
        let admin = connect(None).await;
        let poller = tokio::spawn(async move {
            loop {
                let found = databases_like(&admin, &p).await;
                s.lock().unwrap().extend(found);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        PostgresHarness {
            swap,
            source,
            target: Mutex::new(format!("{prefix}_t0")),
            next: Mutex::new(0),
            prefix,
            seen,
            poller,
        }
    }

    fn target(&self) -> String {
        self.target.lock().unwrap().clone()
    }
}

impl Drop for PostgresHarness {
    fn drop(&mut self) {
        self.poller.abort();
        let prefix = self.prefix.clone();
        // On a thread with its own runtime: Drop may run inside the test's runtime.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let admin = connect(None).await;
                    for (db, _) in databases_like(&admin, &prefix).await {
                        admin
                            .batch_execute(&format!(
                                "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                            ))
                            .await
                            .unwrap();
                    }
                })
        })
        .join();
        if dropped.is_err() {
            eprintln!(
                "warning: could not drop the databases starting with {}",
                self.prefix
            );
        }
    }
}

#[async_trait]
impl RestorerHarness for PostgresHarness {
    fn name(&self) -> String {
        format!("postgres (new database, swap: {})", self.swap)
    }

    fn capabilities(&self) -> Capabilities {
        if self.swap {
            Capabilities {
                existing: ExistingData::ReplacedKeepingPrevious,
                ..Capabilities::default()
            }
        } else {
            Capabilities {
                existing: ExistingData::AbsentOnly,
                digest_check: DigestCheck::WhileRestoringUndone,
                ..Capabilities::default()
            }
        }
    }

    async fn backup(&self) -> HarnessBackup {
        let (encryption, keyring) = age_keys();
        let sink = Arc::new(MemorySink::new());
        let report = Pipeline::builder()
            .source(
                PostgresSource::builder(PgConnection::from_url(self.source.url()).unwrap())
                    .build()
                    .unwrap(),
            )
            .sink(sink.clone())
            .compression(ZstdCodec::new(1).unwrap())
            .encryption(encryption)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert_eq!(
            report.status,
            RunStatus::Complete,
            "{:?}",
            report.manifest.failures
        );
        HarnessBackup {
            sink,
            manifest: report.manifest,
            keyring,
        }
    }

    async fn source_state(&self) -> TargetState {
        let mut out = TargetState::new();
        tables_of(self.source.name(), "", &mut out).await;
        out
    }

    async fn fresh_target(&self) {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        *self.target.lock().unwrap() = format!("{}_t{n}", self.prefix);
    }

    async fn restorer(&self) -> Arc<dyn Restorer> {
        let server = PgConnection::from_url(&test_database_url()).unwrap();
        Arc::new(PostgresRestorer::new(
            server,
            RestoreTarget::NewDatabase {
                name: self.target(),
                swap: self.swap,
            },
        ))
    }

    async fn target_state(&self) -> TargetState {
        state_of(&self.target()).await
    }

    async fn populate_target_differently(&self) {
        let name = self.target();
        connect(None)
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        connect(Some(&name))
            .await
            .batch_execute(
                "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
                 INSERT INTO items VALUES (1, 'changed since');",
            )
            .await
            .unwrap();
    }

    async fn writes(&self) -> u64 {
        let name = self.target();
        let admin = connect(None).await;
        let now = databases_like(&admin, &name).await;
        let under_name: Vec<u32> = {
            let mut seen = self.seen.lock().unwrap();
            seen.extend(now);
            seen.iter()
                .filter(|(db, _)| *db == name)
                .map(|(_, oid)| *oid)
                .collect()
        };
        let mut rows: Vec<(String, String)> = state_of(&name).await.into_iter().collect();
        rows.retain(|(k, _)| !k.contains(" copy: "));
        let mut h = DefaultHasher::new();
        (under_name, rows).hash(&mut h);
        h.finish()
    }
}

#[tokio::test]
async fn the_postgres_restorer_into_a_new_database_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&PostgresHarness::new(false).await).await;
}

#[tokio::test]
async fn the_postgres_restorer_swapping_a_new_database_in_passes_the_restorer_conformance_suite() {
    run_restorer_conformance(&PostgresHarness::new(true).await).await;
}
