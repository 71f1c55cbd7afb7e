//! The catalog over a sink whose clock the test sets: aging of unfinished runs by their
//! newest write, damaged runs, and what `apply_retention` re-checks before deleting.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Duration;

use super::*;
use crate::key::validate_prefix;
use crate::manifest::{ArtifactRecord, MANIFEST_FORMAT_VERSION};
use crate::retention::{
    KeepReason, KeepRules, RetentionAction, RetentionPlan, RetentionPolicy, RunDecision,
};
use crate::sink::{ObjectMeta, PutResult};
use crate::stream::ByteStream;

/// `YYYY-MM-DDTHH:MM:SSZ` → time.
fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_else(|e| panic!("bad time {s}: {e}"))
}

fn id_at(at: DateTime<Utc>, tag: &str) -> RunId {
    RunId::parse(format!("{}-{tag}", at.format("%Y%m%dT%H%M%SZ"))).unwrap()
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

/// A sink that stamps every write with a clock the test sets (the storage's clock), and can
/// run a hook on the first delete (to change the sink while a plan is being applied).
#[derive(Debug)]
struct TimedSink {
    objects: Mutex<BTreeMap<ObjectKey, (Bytes, DateTime<Utc>)>>,
    clock: Mutex<DateTime<Utc>>,
    deleted: Mutex<Vec<ObjectKey>>,
    on_first_delete: Mutex<Option<(ObjectKey, Bytes)>>,
    fail_get: Mutex<Option<ObjectKey>>,
}

impl TimedSink {
    fn at(clock: DateTime<Utc>) -> Arc<Self> {
        Arc::new(TimedSink {
            objects: Mutex::default(),
            clock: Mutex::new(clock),
            deleted: Mutex::default(),
            on_first_delete: Mutex::default(),
            fail_get: Mutex::default(),
        })
    }

    fn set_clock(&self, clock: DateTime<Utc>) {
        *self.clock.lock().unwrap() = clock;
    }

    fn write(&self, key: &ObjectKey, bytes: impl Into<Bytes>) {
        let now = *self.clock.lock().unwrap();
        self.objects
            .lock()
            .unwrap()
            .insert(key.clone(), (bytes.into(), now));
    }

    fn has(&self, key: &ObjectKey) -> bool {
        self.objects.lock().unwrap().contains_key(key)
    }

    fn run_exists(&self, run: &RunId) -> bool {
        self.objects
            .lock()
            .unwrap()
            .keys()
            .any(|k| k.starts_with_prefix(&run.prefix()))
    }

    fn deleted(&self) -> Vec<ObjectKey> {
        self.deleted.lock().unwrap().clone()
    }
}

#[async_trait]
impl Sink for TimedSink {
    fn describe(&self) -> String {
        "timed".into()
    }
    async fn preflight(&self) -> Result<()> {
        Ok(())
    }
    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        let bytes = crate::stream::collect(stream).await?;
        let size = bytes.len() as u64;
        self.write(key, bytes);
        Ok(PutResult::new(size))
    }
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        if self.fail_get.lock().unwrap().as_ref() == Some(key) {
            return Err(Error::storage("read failed (injected)").with_artifact(key.as_str()));
        }
        let objects = self.objects.lock().unwrap();
        let (bytes, _) = objects
            .get(key)
            .ok_or_else(|| crate::sink::not_found("timed", key))?;
        Ok(crate::stream::once(bytes.clone()))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with_prefix(prefix))
            .map(|(k, (b, at))| ObjectMeta {
                key: k.clone(),
                size: b.len() as u64,
                last_modified: Some(*at),
            })
            .collect())
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        if let Some((k, b)) = self.on_first_delete.lock().unwrap().take() {
            self.write(&k, b);
        }
        self.deleted.lock().unwrap().push(key.clone());
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }
}

/// Writes a complete run of `component` (one 4-byte artifact, then the manifest) at the
/// sink's clock.
fn write_complete(sink: &TimedSink, id: &RunId, component: &str, verified: bool) -> ObjectKey {
    let artifact_key = key(&format!("{}/{component}/data.bin", id.prefix()));
    sink.write(&artifact_key, Bytes::from_static(b"data"));
    let mut artifact = ArtifactRecord {
        key: artifact_key.clone(),
        plain_size: 4,
        stored_size: 4,
        ..ArtifactRecord::for_test(component, "data.bin")
    };
    if verified {
        artifact.verification = vec![VerificationRecord {
            verifier: "checksum".into(),
            at: id.timestamp().unwrap(),
            ok: true,
            detail: String::new(),
            warnings: vec![],
            method: None,
            duration_ms: None,
        }];
    }
    let started_at = id.timestamp().unwrap();
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        run_id: id.clone(),
        status: RunStatus::Complete,
        started_at,
        finished_at: started_at + Duration::minutes(5),
        library_version: "test".into(),
        host: "test".into(),
        labels: BTreeMap::new(),
        artifacts: vec![artifact],
        failures: vec![],
        pinned: false,
    };
    sink.write(&id.manifest_key(), manifest.to_json().unwrap());
    artifact_key
}

// ---- unfinished runs are aged by their newest write, by both clocks ----

#[tokio::test]
async fn an_unfinished_run_is_aged_by_its_newest_write_not_by_its_id() {
    let storage_now = t("2026-05-10T12:00:00Z");
    let sink = TimedSink::at(storage_now - Duration::days(3));
    let old = id_at(storage_now - Duration::days(3), "000001");
    write_complete(&sink, &old, "postgres", true);

    // Started 30 hours ago and still running: its heartbeat was refreshed a minute ago.
    let long = id_at(storage_now - Duration::hours(30), "000002");
    sink.set_clock(storage_now - Duration::hours(30));
    sink.write(&key(&format!("{}/postgres/big.dump", long.prefix())), "x");
    // Started an hour ago, heartbeat a minute ago.
    let young = id_at(storage_now - Duration::hours(1), "000003");
    sink.set_clock(storage_now - Duration::hours(1));
    sink.write(&key(&format!("{}/postgres/stoa.dump", young.prefix())), "y");
    sink.set_clock(storage_now - Duration::minutes(1));
    sink.write(&key(&format!("{}/heartbeat.json", long.prefix())), "{}");
    sink.write(&key(&format!("{}/heartbeat.json", young.prefix())), "{}");
    // Crashed: last write 26 hours before the newest write in the storage.
    let crashed = id_at(storage_now - Duration::hours(28), "000004");
    sink.set_clock(storage_now - Duration::hours(26));
    sink.write(
        &key(&format!("{}/postgres/stoa.dump", crashed.prefix())),
        "z",
    );
    // Something was written just now (another run's artifact): the storage's clock.
    sink.set_clock(storage_now);
    sink.write(
        &key(&format!("{}/keycloak/realm.json", young.prefix())),
        "r",
    );

    let catalog = Catalog::new(sink.clone());
    for (clock, now) in [
        ("planner clock right", storage_now),
        (
            "planner clock 25 h ahead",
            storage_now + Duration::hours(25),
        ),
    ] {
        let plan = catalog
            .plan_retention(&KeepRules::new(), now)
            .await
            .unwrap();
        for live in [&long, &young] {
            let d = plan.decision(live).unwrap();
            assert!(d.is_kept(), "{clock}: live run {live} forgotten: {plan}");
        }
        assert!(
            !plan.decision(&crashed).unwrap().is_kept(),
            "{clock}: crashed run kept: {plan}"
        );
    }
    // The heartbeat is activity, not an artifact: it names no component.
    let runs = catalog.list_all().await.unwrap();
    let long_summary = runs.iter().find(|r| r.run_id == long).unwrap();
    assert_eq!(long_summary.components, vec!["postgres".to_string()]);
}

// ---- damaged runs ----

/// Three complete verified runs of postgres, a day apart; returns them oldest first.
fn three_runs(sink: &TimedSink, base: DateTime<Utc>) -> Vec<RunId> {
    (0..3)
        .map(|d| {
            let at = base + Duration::days(d);
            sink.set_clock(at);
            let id = id_at(at, &format!("00000{d}"));
            write_complete(sink, &id, "postgres", true);
            id
        })
        .collect()
}

#[tokio::test]
async fn one_unreadable_manifest_does_not_block_the_catalog() {
    let base = t("2026-03-01T02:00:00Z");
    let now = base + Duration::days(40);
    let newer_format = format!(
        r#"{{"format_version": {}, "run_id": "x"}}"#,
        MANIFEST_FORMAT_VERSION + 1
    );
    for (what, damage) in [
        ("not json", b"{not json".to_vec()),
        (
            "truncated",
            b"{\"format_version\": 1, \"run_id\": \"20".to_vec(),
        ),
        ("newer format", newer_format.into_bytes()),
    ] {
        let sink = TimedSink::at(base);
        let runs = three_runs(&sink, base);
        sink.write(&runs[0].manifest_key(), damage);
        let catalog = Catalog::new(sink.clone());

        let all = catalog
            .list_all()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(all.len(), 3, "{what}");
        let latest = catalog.latest_verified("postgres").await.unwrap().unwrap();
        assert_eq!(latest.run_id, runs[2], "{what}");
        let damaged = catalog.damaged_runs().await.unwrap();
        assert_eq!(damaged.len(), 1, "{what}");
        assert_eq!(damaged[0].run_id, runs[0]);
        assert_eq!(damaged[0].status, RunStatus::Damaged);
        assert!(!damaged[0].verified);
        let damage = damaged[0].damage.as_ref().unwrap();
        assert_eq!(damage.key, runs[0].manifest_key(), "{what}");
        assert!(
            damage.reason.contains("manifest cannot be read"),
            "{what}: {damage}"
        );
        let kind = if what == "newer format" {
            assert!(damage.hint.contains("upgrade"), "{damage}");
            ErrorKind::Unsupported
        } else {
            ErrorKind::Integrity
        };
        assert_eq!(damage.kind, kind, "{what}");
        assert!(catalog.incomplete_runs().await.unwrap().is_empty());
        let complete = catalog.list_runs(&RunFilter::default()).await.unwrap();
        assert_eq!(complete.len(), 2, "{what}");
        let table = format_runs_table(&all);
        assert!(table.contains("damaged  "), "{table}");
        assert!(
            table.contains("(damaged: its manifest cannot be read"),
            "{table}"
        );

        let plan = catalog
            .plan_retention(&KeepRules::new().keep_last(1), now)
            .await
            .unwrap();
        assert!(plan.decision(&runs[0]).unwrap().is_kept(), "{what}: {plan}");
        assert_eq!(
            plan.decision(&runs[0]).unwrap().reasons(),
            [KeepReason::Damaged],
            "{what}"
        );
        assert!(
            plan.to_string()
                .contains("(damaged: its manifest cannot be read"),
            "{plan}"
        );
        assert!(
            !plan.decision(&runs[1]).unwrap().is_kept(),
            "{what}: {plan}"
        );
        let removed = catalog.apply_retention(&plan).await.unwrap();
        assert_eq!(removed, vec![runs[1].clone()], "{what}");
        assert!(sink.run_exists(&runs[0]), "{what}: damaged run deleted");
        assert!(sink.run_exists(&runs[2]), "{what}");
    }
}

#[tokio::test]
async fn a_run_whose_artifact_is_missing_or_resized_is_no_restore_candidate() {
    let base = t("2026-03-01T02:00:00Z");
    for what in ["missing", "resized"] {
        let sink = TimedSink::at(base);
        let runs = three_runs(&sink, base);
        let artifact = key(&format!("{}/postgres/data.bin", runs[2].prefix()));
        match what {
            "missing" => {
                sink.objects.lock().unwrap().remove(&artifact);
            }
            _ => sink.write(&artifact, Bytes::from_static(b"dat")),
        }
        let catalog = Catalog::new(sink.clone());
        let latest = catalog.latest_verified("postgres").await.unwrap().unwrap();
        assert_eq!(latest.run_id, runs[1], "{what}");
        let complete = catalog.list_runs(&RunFilter::default()).await.unwrap();
        assert!(complete.iter().all(|r| r.run_id != runs[2]), "{what}");
        let damaged = catalog.damaged_runs().await.unwrap();
        assert_eq!(damaged.len(), 1, "{what}");
        let damage = damaged[0].damage.as_ref().unwrap();
        assert_eq!(
            (damage.kind, &damage.key),
            (ErrorKind::Integrity, &artifact)
        );
        let want = match what {
            "missing" => "artifact data.bin of postgres is missing",
            _ => "artifact data.bin of postgres holds 3 bytes, the manifest records 4",
        };
        assert_eq!(damage.reason, want);
        // Still the component's run by its manifest, so filters find it.
        assert_eq!(damaged[0].components, vec!["postgres".to_string()]);
    }
}

#[tokio::test]
async fn unreadable_reports_verifications_and_foreign_manifests_are_damage() {
    let base = t("2026-03-01T02:00:00Z");
    let sink = TimedSink::at(base);
    let runs = three_runs(&sink, base);
    // A later verification record that is not JSON.
    let verification = key(&format!("{}/verifications/x.json", runs[0].prefix()));
    sink.write(&verification, "{not json");
    // The manifest of runs[1] copied into runs[2].
    let copied = sink.objects.lock().unwrap()[&runs[1].manifest_key()]
        .0
        .clone();
    sink.write(&runs[2].manifest_key(), copied);
    // A failed run whose report is truncated.
    let failed = id_at(base + Duration::days(3), "000009");
    sink.write(&failed.report_key(), "{\"format_version\": 1,");
    let catalog = Catalog::new(sink.clone());
    let all = catalog.list_all().await.unwrap();
    let reason = |id: &RunId| {
        let r = all.iter().find(|r| &r.run_id == id).unwrap();
        assert_eq!(r.status, RunStatus::Damaged, "{id}");
        r.damage.as_ref().unwrap().clone()
    };
    let v = reason(&runs[0]);
    assert_eq!(v.key, verification);
    assert!(v.reason.contains("latest verification record"), "{v}");
    assert!(v.hint.contains("verify_run"), "{v}");
    let m = reason(&runs[2]);
    assert!(
        m.reason
            .contains(&format!("record of another run ({})", runs[1])),
        "{m}"
    );
    let f = reason(&failed);
    assert_eq!(f.key, failed.report_key());
    assert!(f.reason.contains("its report cannot be read"), "{f}");
    assert_eq!(
        catalog
            .latest_verified("postgres")
            .await
            .unwrap()
            .unwrap()
            .run_id,
        runs[1]
    );
}

#[tokio::test]
async fn a_storage_failure_reading_a_manifest_fails_the_listing_and_deletes_nothing() {
    let base = t("2026-03-01T02:00:00Z");
    let sink = TimedSink::at(base);
    let runs = three_runs(&sink, base);
    let catalog = Catalog::new(sink.clone());
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), base + Duration::days(10))
        .await
        .unwrap();
    *sink.fail_get.lock().unwrap() = Some(runs[2].manifest_key());
    let err = catalog.list_all().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage);
    assert_eq!(err.artifact(), Some(runs[2].manifest_key().as_str()));
    let err = catalog.apply_retention(&plan).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage);
    assert_eq!(err.operation(), Some("read manifest"));
    assert!(sink.deleted().is_empty());
}

#[tokio::test]
async fn a_report_never_makes_a_backup_and_a_heartbeat_alone_is_an_unfinished_run() {
    let base = t("2026-03-01T02:00:00Z");
    let sink = TimedSink::at(base);
    let runs = three_runs(&sink, base);
    // A report claiming completeness, without a manifest.
    let claimed = id_at(base + Duration::days(3), "00000a");
    let report = sink.objects.lock().unwrap()[&runs[2].manifest_key()]
        .0
        .clone();
    let report = String::from_utf8(report.to_vec())
        .unwrap()
        .replace(runs[2].as_str(), claimed.as_str());
    sink.write(&claimed.report_key(), report);
    // A run that has only written its heartbeat.
    let starting = id_at(base + Duration::days(3), "00000b");
    sink.write(&starting.heartbeat_key(), "{}");
    let catalog = Catalog::new(sink.clone());
    let all = catalog.list_all().await.unwrap();
    let find = |id: &RunId| all.iter().find(|r| &r.run_id == id).unwrap().clone();
    assert_eq!(find(&claimed).status, RunStatus::Incomplete);
    let s = find(&starting);
    assert_eq!((s.status, s.components.len()), (RunStatus::Incomplete, 0));
    assert_eq!(s.last_activity, Some(base + Duration::days(2)));
    assert_eq!(s.storage_now, Some(base + Duration::days(2)));
    let latest = catalog.latest_verified("postgres").await.unwrap().unwrap();
    assert_eq!(latest.run_id, runs[2]);
}

// ---- apply refuses plans that would delete what must stay ----

/// A policy forgetting every run (ignoring the always-rules).
#[derive(Debug)]
struct ForgetAll;

impl RetentionPolicy for ForgetAll {
    fn plan(&self, runs: &[RunSummary], now: DateTime<Utc>) -> RetentionPlan {
        RetentionPlan {
            now,
            decisions: runs
                .iter()
                .map(|r| RunDecision::new(r, RetentionAction::Forget))
                .collect(),
        }
    }
}

#[tokio::test]
async fn apply_refuses_to_delete_a_damaged_run_and_deletes_nothing() {
    let base = t("2026-03-01T02:00:00Z");
    let now = base + Duration::days(40);
    // Damaged before planning, and a plan (from a policy ignoring damage) forgetting it.
    let sink = TimedSink::at(base);
    let runs = three_runs(&sink, base);
    sink.write(&runs[0].manifest_key(), "{not json");
    let catalog = Catalog::new(sink.clone());
    let mut plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), now)
        .await
        .unwrap();
    for d in &mut plan.decisions {
        if d.run_id == runs[0] {
            d.action = RetentionAction::Forget;
        }
    }
    let err = catalog.apply_retention(&plan).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert_eq!(err.operation(), Some("apply retention"));
    assert_eq!(err.artifact(), Some(runs[0].manifest_key().as_str()));
    assert!(
        err.to_string()
            .contains(&format!("run {} is damaged", runs[0])),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("nothing was deleted"), "{err}");
    assert!(sink.deleted().is_empty());

    // Damaged between planning and applying: the plan forgets it as an old backup.
    let sink = TimedSink::at(base);
    let runs = three_runs(&sink, base);
    let catalog = Catalog::new(sink.clone());
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), now)
        .await
        .unwrap();
    sink.objects
        .lock()
        .unwrap()
        .remove(&key(&format!("{}/postgres/data.bin", runs[0].prefix())));
    let err = catalog.apply_retention(&plan).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains("is missing"), "{err}");
    assert!(sink.deleted().is_empty());
}

#[tokio::test]
async fn apply_refuses_a_plan_forgetting_a_components_newest_run() {
    let base = t("2026-03-01T02:00:00Z");
    let sink = TimedSink::at(base);
    let runs = three_runs(&sink, base);
    let catalog = Catalog::new(sink.clone());
    let plan = catalog
        .plan_retention(&ForgetAll, base + Duration::days(40))
        .await
        .unwrap();
    assert_eq!(plan.forgotten().count(), 3);
    let err = catalog.apply_retention(&plan).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(
        err.to_string().contains(&format!(
            "forgets run {}, the newest complete run of component postgres",
            runs[2]
        )),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("nothing was deleted"));
    assert!(sink.deleted().is_empty());
}

#[tokio::test]
async fn apply_leaves_runs_alone_that_finished_or_wrote_since_the_plan() {
    let base = t("2026-03-01T02:00:00Z");
    let sink = TimedSink::at(base);
    let runs = three_runs(&sink, base);
    // Two crashed-looking runs, last written four days before the newest run.
    let resumed = id_at(base - Duration::days(2), "00000c");
    let finishing = id_at(base - Duration::days(2), "00000d");
    let gone = id_at(base - Duration::days(2), "00000e");
    sink.set_clock(base - Duration::days(2));
    for id in [&resumed, &finishing, &gone] {
        sink.write(&key(&format!("{}/postgres/part", id.prefix())), "p");
    }
    let catalog = Catalog::new(sink.clone());
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), base + Duration::days(3))
        .await
        .unwrap();
    for id in [&resumed, &finishing, &gone, &runs[0]] {
        assert!(!plan.decision(id).unwrap().is_kept(), "{plan}");
    }
    // Since: one wrote its heartbeat, one wrote its manifest, one was removed by hand.
    sink.set_clock(base + Duration::days(3));
    sink.write(&resumed.heartbeat_key(), "{}");
    write_complete(&sink, &finishing, "postgres", false);
    sink.objects
        .lock()
        .unwrap()
        .retain(|k, _| !k.starts_with_prefix(&gone.prefix()));
    let removed = catalog.apply_retention(&plan).await.unwrap();
    assert_eq!(removed, vec![runs[1].clone(), runs[0].clone()]);
    assert!(sink.run_exists(&resumed));
    assert!(sink.has(&finishing.manifest_key()));
}

// ---- apply re-checks ----

#[tokio::test]
async fn a_pin_set_after_planning_is_honoured_by_apply() {
    let base = t("2026-03-01T02:00:00Z");
    let sink = TimedSink::at(base);
    let runs = three_runs(&sink, base);
    let catalog = Catalog::new(sink.clone());
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), base + Duration::days(10))
        .await
        .unwrap();
    assert_eq!(plan.forgotten().count(), 2);
    catalog.set_pinned(&runs[0], true).await.unwrap();
    let removed = catalog.apply_retention(&plan).await.unwrap();
    assert_eq!(removed, vec![runs[1].clone()]);
    assert!(sink.has(&runs[0].manifest_key()), "pinned run deleted");
}

#[tokio::test]
async fn a_pin_set_while_apply_runs_is_honoured() {
    let base = t("2026-03-01T02:00:00Z");
    let sink = TimedSink::at(base);
    let runs = three_runs(&sink, base);
    let catalog = Catalog::new(sink.clone());
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), base + Duration::days(10))
        .await
        .unwrap();
    // Runs are deleted newest first: the oldest is pinned once the first deletion happens,
    // after apply has listed the sink.
    *sink.on_first_delete.lock().unwrap() = Some((
        key(&format!("{}/pin.json", runs[0].prefix())),
        Bytes::from_static(b"{\"pinned\":true}\n"),
    ));
    let removed = catalog.apply_retention(&plan).await.unwrap();
    assert_eq!(removed, vec![runs[1].clone()]);
    assert!(sink.has(&runs[0].manifest_key()), "pinned run deleted");
    assert!(sink
        .deleted()
        .iter()
        .all(|k| !k.starts_with_prefix(&runs[0].prefix())));
}
