//! Which run a PostgreSQL restore takes its dump from, with two databases backed up into one
//! directory: the newest complete, verified run holding a dump of the database asked for
//! (by default the target's own name), never the newest run whatever it holds.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use stoa_backup::core::{
    Catalog, ErrorKind, ExistingDataPolicy, Keyring, Manifest, ObjectKey, RunId, SinkExt,
};
use stoa_backup::providers::postgres::{
    find_dump, DumpQuery, FoundDump, PostgresRestorer, RestoreTarget,
};
use stoa_backup::storage::LocalSink;
use stoa_backup_test_support::TestDatabase;

use crate::restore_support::restore_component;

use super::support::{
    backup_into, drop_all_like, rows_in, server, set_rows, tagged_database, DropAllLike,
};

/// Databases `a` (table `t_a`) and `b` (`t_b`) backed up into one directory: `a` twice (10
/// rows, then 11), then `b` (20 rows), so that `b`'s run is the newest.
struct TwoDatabases {
    a: TestDatabase,
    b: TestDatabase,
    dir: tempfile::TempDir,
    a_first: Manifest,
    a_second: Manifest,
    b_run: Manifest,
}

impl TwoDatabases {
    async fn new(tag: &str) -> TwoDatabases {
        let a = tagged_database(&format!("{tag}_a"), "a", 10).await;
        let b = tagged_database(&format!("{tag}_b"), "b", 20).await;
        let dir = tempfile::tempdir().unwrap();
        let a_first = backup_into(dir.path(), &a).await;
        set_rows(&a, "a", 11).await;
        let a_second = backup_into(dir.path(), &a).await;
        let b_run = backup_into(dir.path(), &b).await;
        assert!(b_run.started_at > a_second.started_at);
        TwoDatabases {
            a,
            b,
            dir,
            a_first,
            a_second,
            b_run,
        }
    }

    fn catalog(&self) -> Catalog {
        Catalog::new(LocalSink::new(self.dir.path()).unwrap())
    }

    async fn find(&self, query: DumpQuery) -> stoa_backup::core::Result<FoundDump> {
        find_dump(&self.catalog(), &query).await
    }
}

fn recorded_rows(found: &FoundDump, table: &str) -> i64 {
    found.facts.row_counts.as_ref().unwrap()[table]
}

/// Restores the run of the dump found (its database's dump: the one it holds).
async fn restore_found(dir: &Path, found: &FoundDump, target: RestoreTarget) {
    let mut restorer = PostgresRestorer::new(server(), target);
    if let Some(database) = &found.facts.database {
        restorer = restorer.from_database(database);
    }
    restore_component(
        Arc::new(LocalSink::new(dir).unwrap()),
        &found.manifest,
        &Keyring::default(),
        restorer,
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn restoring_a_database_picks_its_newest_run_even_when_another_database_ran_later() {
    let t = TwoDatabases::new("pgpick_db").await;

    let found = t.find(DumpQuery::database(t.a.name())).await.unwrap();
    assert_eq!(found.manifest.run_id, t.a_second.run_id, "A's newest run");
    assert_eq!(found.facts.database.as_deref(), Some(t.a.name()));
    assert_eq!(recorded_rows(&found, "public.t_a"), 11);
    assert!(found.warnings.is_empty(), "{:?}", found.warnings);

    let found_b = t.find(DumpQuery::database(t.b.name())).await.unwrap();
    assert_eq!(found_b.manifest.run_id, t.b_run.run_id);

    // The dump found restores A, not B.
    let restored = format!("{}_r", t.a.name());
    let _restored = DropAllLike(restored.clone());
    restore_found(
        t.dir.path(),
        &found,
        RestoreTarget::NewDatabase {
            name: restored.clone(),
            swap: false,
        },
    )
    .await;
    assert_eq!(rows_in(&restored, "a").await, 11);

    // An explicit run: that run, if it holds a dump of the database.
    let first = t
        .find(DumpQuery::database(t.a.name()).run(t.a_first.run_id.clone()))
        .await
        .unwrap();
    assert_eq!(first.manifest.run_id, t.a_first.run_id);
    assert_eq!(recorded_rows(&first, "public.t_a"), 10);
    let err = t
        .find(DumpQuery::database(t.a.name()).run(t.b_run.run_id.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let text = format!("{err} {}", err.hint().unwrap_or_default());
    assert!(text.contains(t.b_run.run_id.as_str()), "{text}");
    assert!(text.contains(t.b.name()), "says what the run holds: {text}");

    // A database no run holds: the error lists those the runs do hold.
    let err = t
        .find(DumpQuery::database("pgpick_nope"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let hint = err.hint().unwrap_or_default().to_string();
    assert!(
        hint.contains(t.a.name()) && hint.contains(t.b.name()),
        "{hint}"
    );
    drop_all_like(&restored).await;
}

#[tokio::test]
async fn without_a_database_name_the_targets_own_name_decides() {
    let t = TwoDatabases::new("pgpick_tg").await;
    let _old = DropAllLike(format!("{}_old_", t.a.name()));

    let target = RestoreTarget::NewDatabase {
        name: t.a.name().to_string(),
        swap: true,
    };
    assert_eq!(target.database(), t.a.name());
    let found = t.find(DumpQuery::for_target(&target)).await.unwrap();
    assert_eq!(
        found.manifest.run_id, t.a_second.run_id,
        "A's run, not B's newer one"
    );
    let clean_b = RestoreTarget::Clean {
        database: t.b.name().to_string(),
    };
    let found_b = t.find(DumpQuery::for_target(&clean_b)).await.unwrap();
    assert_eq!(found_b.manifest.run_id, t.b_run.run_id);

    // Swapped in under A's name, the dump found is A's, and so are the counts compared.
    set_rows(&t.a, "a", 2).await;
    restore_found(t.dir.path(), &found, target).await;
    assert_eq!(rows_in(t.a.name(), "a").await, 11);
    drop_all_like(&format!("{}_old_", t.a.name())).await;
}

/// Copies a run under a new id dated `at` (as a host with a wrong clock would have written
/// it): its objects, then its manifest.
async fn copy_run_dated(dir: &Path, run: &Manifest, at: DateTime<Utc>) -> RunId {
    let sink = LocalSink::new(dir).unwrap();
    let id = RunId::generate(at);
    let mut copy = run.clone();
    copy.run_id = id.clone();
    copy.started_at = at;
    copy.finished_at = at + Duration::seconds(1);
    for a in &mut copy.artifacts {
        let key =
            ObjectKey::new(a.key.as_str().replacen(run.run_id.as_str(), id.as_str(), 1)).unwrap();
        let bytes = sink.get_bytes(&a.key).await.unwrap();
        sink.put_bytes(&key, bytes.into()).await.unwrap();
        a.key = key;
    }
    sink.put_bytes(&id.manifest_key(), copy.to_json().unwrap().into())
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn a_run_dated_in_the_future_yields_a_warning() {
    let t = TwoDatabases::new("pgpick_fut").await;
    let future = copy_run_dated(t.dir.path(), &t.a_first, Utc::now() + Duration::days(3)).await;

    let found = t.find(DumpQuery::database(t.a.name())).await.unwrap();
    // It sorts as the newest, so it is the one picked; the warning says why that is suspect.
    assert_eq!(found.manifest.run_id, future);
    assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);
    let w = &found.warnings[0];
    assert!(w.contains(future.as_str()) && w.contains("future"), "{w}");

    // Measured against a later "now", it is not in the future: no warning.
    let later = t
        .find(DumpQuery::database(t.a.name()).now(Utc::now() + Duration::days(4)))
        .await
        .unwrap();
    assert!(later.warnings.is_empty(), "{:?}", later.warnings);

    // B's runs are not A's concern: a future-dated B run gives A no warning.
    copy_run_dated(t.dir.path(), &t.b_run, Utc::now() + Duration::days(3)).await;
    let b_future = t.find(DumpQuery::database(t.b.name())).await.unwrap();
    assert_eq!(b_future.warnings.len(), 1, "{:?}", b_future.warnings);
    let a_again = t.find(DumpQuery::database(t.a.name())).await.unwrap();
    assert_eq!(
        a_again.warnings.len(),
        1,
        "only A's own future run: {:?}",
        a_again.warnings
    );
}
