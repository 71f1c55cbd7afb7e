//! One old run's manifest damaged on disk: not JSON, truncated, or of a newer format. The
//! catalog still lists every run and reports that one as damaged; a newer run restores into
//! a fresh database; backups and retention go on, and retention leaves the damaged run alone.

use std::path::Path;

use stoa_backup::core::manifest::MANIFEST_FORMAT_VERSION;
use stoa_backup::core::{
    Catalog, ErrorKind, ExistingDataPolicy, KeepRules, Keyring, RunFilter, RunId, RunStatus,
    RunSummary,
};
use stoa_backup::providers::postgres::verify::drop_database_force;
use stoa_backup::providers::postgres::{
    PgConnection, PostgresRestorer, RestoreTarget, DUMP_CONTENT_TYPE,
};
use stoa_backup_test_support::{test_database_url, TestDatabase};

use crate::restore_support::restore_component;

use super::checks::{assert_complete_runs_have_their_data, run_digests};
use super::{complete_backup, fault_database, local_sink, retention, row_counts};

/// Rows of the database the damaged-manifest tests back up (small: nothing is killed here).
const EVENTS: u32 = 2_000;

/// How the old manifest is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Replaced by `{not json`.
    NotJson,
    /// Cut to half its length.
    Truncated,
    /// Rewritten with a format version newer than this library reads.
    NewerFormat,
}

impl Damage {
    fn apply(self, path: &Path) {
        let bytes = std::fs::read(path).expect("read the manifest");
        let damaged = match self {
            Damage::NotJson => b"{not json".to_vec(),
            Damage::Truncated => bytes[..bytes.len() / 2].to_vec(),
            Damage::NewerFormat => {
                let mut v: serde_json::Value =
                    serde_json::from_slice(&bytes).expect("the manifest is JSON");
                v["format_version"] = (MANIFEST_FORMAT_VERSION + 1).into();
                serde_json::to_vec_pretty(&v).unwrap()
            }
        };
        std::fs::write(path, damaged).expect("damage the manifest");
    }

    /// The kind of damage the catalog should report.
    fn kind(self) -> ErrorKind {
        match self {
            Damage::NotJson | Damage::Truncated => ErrorKind::Integrity,
            Damage::NewerFormat => ErrorKind::Unsupported,
        }
    }
}

#[tokio::test]
async fn a_manifest_that_is_not_json_is_reported_and_nothing_else_stops() {
    damaged_manifest(Damage::NotJson).await;
}

#[tokio::test]
async fn a_truncated_manifest_is_reported_and_nothing_else_stops() {
    damaged_manifest(Damage::Truncated).await;
}

#[tokio::test]
async fn a_manifest_of_a_newer_format_is_reported_and_nothing_else_stops() {
    damaged_manifest(Damage::NewerFormat).await;
}

/// The run `id` is listed as damaged ([`RunStatus::Damaged`]), its damage naming its
/// manifest, the kind of damage, a reason and a hint.
fn assert_reported_damaged(runs: &[RunSummary], id: &RunId, kind: ErrorKind) {
    let run = runs
        .iter()
        .find(|r| &r.run_id == id)
        .unwrap_or_else(|| panic!("the damaged run {id} is not listed: {runs:#?}"));
    assert_eq!(run.status, RunStatus::Damaged, "{run:#?}");
    let damage = run.damage.as_ref().expect("a damaged run says why");
    assert_eq!(
        (damage.kind, &damage.key),
        (kind, &id.manifest_key()),
        "{damage:#?}"
    );
    assert!(
        !damage.reason.is_empty() && !damage.hint.is_empty(),
        "{damage:#?}"
    );
}

/// A name for a database the restore creates, dropped at the end of the test (also on
/// panic, through the returned guard).
async fn fresh_target(prefix: &str) -> (String, TestDatabase) {
    let guard = TestDatabase::create(prefix).await;
    let name = guard.name().to_string();
    let server = PgConnection::from_url(&test_database_url()).unwrap();
    drop_database_force(&server, &name).await.unwrap();
    (name, guard)
}

async fn damaged_manifest(damage: Damage) {
    let db = fault_database("faults_damaged", EVENTS).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let sink = local_sink(&root);
    let catalog = Catalog::new(sink.clone());

    // An old run and a newer one, both complete; then the old manifest is damaged.
    let old = complete_backup(db.url(), sink.clone(), retention())
        .await
        .run_id;
    let newer = complete_backup(db.url(), sink.clone(), retention()).await;
    damage.apply(&root.join(old.manifest_key().as_str()));
    let old_files = run_digests(&root, &old);

    // The newer run restores into a fresh database, with the rows it recorded. It is read by
    // its id (reading one manifest lists nothing); that the listing offers it as the restore
    // candidate is checked next.
    let manifest = catalog.read_manifest(&newer.run_id).await.unwrap();
    let dump = manifest
        .artifacts
        .iter()
        .find(|a| a.content_type == DUMP_CONTENT_TYPE)
        .expect("the newer run holds a dump");
    assert_eq!(dump.facts["row_counts"]["faults.events"], EVENTS);
    let (target, _target_guard) = fresh_target("faults_restored").await;
    let server = PgConnection::from_url(&test_database_url()).unwrap();
    let restorer = PostgresRestorer::new(
        server.clone(),
        RestoreTarget::NewDatabase {
            name: target.clone(),
            swap: false,
        },
    );
    let restored = restore_component(
        sink.clone(),
        &manifest,
        &Keyring::default(),
        restorer,
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("restore the newer run: {e}"));
    assert_eq!(restored.facts["restored_database"], target.as_str());
    let source_counts = row_counts(db.url()).await;
    assert_eq!(
        source_counts,
        vec![
            ("faults.tenants".to_string(), 40),
            ("faults.events".to_string(), i64::from(EVENTS))
        ]
    );
    assert_eq!(row_counts(&server.conninfo(&target)).await, source_counts);

    // The listing shows every run, the damaged one as damaged; it is no restore candidate.
    let runs = catalog
        .list_all()
        .await
        .unwrap_or_else(|e| panic!("list the runs with one damaged manifest: {e}"));
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_reported_damaged(&runs, &old, damage.kind());
    let damaged: Vec<RunId> = catalog
        .damaged_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(damaged, vec![old.clone()]);
    let newer_summary = runs.iter().find(|r| r.run_id == newer.run_id).unwrap();
    assert_eq!(newer_summary.status, RunStatus::Complete);
    assert_eq!(
        assert_complete_runs_have_their_data(&sink).await,
        vec![newer.run_id.clone()]
    );
    let latest = catalog.latest_verified("postgres").await.unwrap();
    assert_eq!(latest.map(|m| m.run_id), Some(newer.run_id.clone()));

    // A backup with retention keeping one complete run: the newer run goes, the damaged one
    // stays as it is.
    let next = complete_backup(db.url(), sink.clone(), KeepRules::new().keep_last(1)).await;
    assert_eq!(next.removed_runs, vec![newer.run_id.clone()]);
    assert_eq!(run_digests(&root, &old), old_files);
    let runs = catalog.list_all().await.expect("list the runs");
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_reported_damaged(&runs, &old, damage.kind());
    assert_eq!(
        catalog
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect::<Vec<_>>(),
        vec![next.run_id.clone()]
    );
    db.drop_db().await;
}
