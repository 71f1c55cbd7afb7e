//! Retention applied through the catalog on a real sink: what is deleted, in which order,
//! and what happens when listing fails; on a local directory: damaged runs, unfinished runs
//! aged by their files' times, per-component rules and pins set between plan and apply.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use stoa_backup::core::manifest::{
    ArtifactRecord, Manifest, RunId, RunStatus, MANIFEST_FORMAT_VERSION,
};
use stoa_backup::core::sink::{ObjectMeta, PutResult};
use stoa_backup::core::{
    ByteStream, Catalog, ComponentRules, Error, ErrorKind, KeepCount, KeepReason, KeepRules,
    MemorySink, ObjectKey, Result, RunSummary, Sink, SinkExt,
};
use stoa_backup::storage::LocalSink;

/// Records deletions and can fail listings. Its listing dates every object of a run at the
/// time in the run's id, as if the fabricated history had been written as it happened
/// (the catalog ages unfinished runs by their write times, by the storage's clock).
#[derive(Debug, Default)]
struct RecordingSink {
    inner: MemorySink,
    deleted: Mutex<Vec<String>>,
    fail_list: AtomicBool,
}

#[async_trait]
impl Sink for RecordingSink {
    fn describe(&self) -> String {
        "recording".into()
    }
    async fn preflight(&self) -> Result<()> {
        Ok(())
    }
    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        self.inner.put(key, stream).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        if self.fail_list.load(Ordering::SeqCst) {
            return Err(Error::storage("listing failed (injected)"));
        }
        let mut objects = self.inner.list(prefix).await?;
        for o in &mut objects {
            let run = o.key.segments().nth(1).and_then(|id| RunId::parse(id).ok());
            o.last_modified = run.and_then(|r| r.timestamp());
        }
        Ok(objects)
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.deleted.lock().unwrap().push(key.to_string());
        self.inner.delete(key).await
    }
}

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn run_id(t: DateTime<Utc>, n: u32) -> RunId {
    RunId::parse(format!("{}-{n:06x}", t.format("%Y%m%dT%H%M%SZ"))).unwrap()
}

async fn write_run(
    sink: &dyn Sink,
    t: DateTime<Utc>,
    n: u32,
    status: RunStatus,
    verified: bool,
) -> RunId {
    write_run_of(sink, t, n, status, verified, &["postgres"]).await
}

/// A run holding one 4-byte artifact of each component, and its manifest (complete runs),
/// its report (failed and partial runs), or nothing more (incomplete runs).
async fn write_run_of(
    sink: &dyn Sink,
    t: DateTime<Utc>,
    n: u32,
    status: RunStatus,
    verified: bool,
    components: &[&str],
) -> RunId {
    let id = run_id(t, n);
    let mut artifacts = Vec::new();
    for component in components {
        artifacts.push(write_artifact(sink, &id, t, component, verified).await);
    }
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        run_id: id.clone(),
        status,
        started_at: t,
        finished_at: t + Duration::minutes(5),
        library_version: "test".into(),
        host: "test".into(),
        labels: BTreeMap::new(),
        artifacts,
        failures: vec![],
        pinned: false,
    };
    let key = match status {
        RunStatus::Complete => id.manifest_key(),
        RunStatus::Incomplete => return id,
        _ => id.report_key(),
    };
    sink.put_bytes(&key, manifest.to_json().unwrap().into())
        .await
        .unwrap();
    id
}

async fn write_artifact(
    sink: &dyn Sink,
    id: &RunId,
    t: DateTime<Utc>,
    component: &str,
    verified: bool,
) -> ArtifactRecord {
    let key = ObjectKey::new(format!("{}/{component}/stoa.dump", id.prefix())).unwrap();
    sink.put_bytes(&key, bytes::Bytes::from_static(b"dump"))
        .await
        .unwrap();
    ArtifactRecord {
        component: component.into(),
        provider: "test".into(),
        name: "stoa.dump".into(),
        key,
        content_type: "application/octet-stream".into(),
        plain_size: 4,
        plain_sha256: String::new(),
        stored_size: 4,
        stored_sha256: String::new(),
        codecs: vec![],
        sensitive: false,
        facts: Default::default(),
        duration_ms: 1,
        verification: if verified {
            vec![stoa_backup::core::manifest::VerificationRecord {
                verifier: "checksum".into(),
                at: t,
                ok: true,
                detail: String::new(),
                warnings: vec![],
                method: None,
                duration_ms: None,
            }]
        } else {
            vec![]
        },
        timings: None,
    }
}

#[tokio::test]
async fn two_year_daily_history_is_pruned_to_the_gfs_set_and_never_keeps_failed_runs() {
    let sink = Arc::new(RecordingSink::default());
    let start = at(2024, 11, 25, 2);
    let now = at(2026, 11, 24, 12);
    let mut complete = Vec::new();
    let mut failed = Vec::new();
    let mut day = start;
    let mut n = 0;
    while day <= now {
        n += 1;
        complete.push((
            day,
            write_run(sink.as_ref(), day, n, RunStatus::Complete, true).await,
        ));
        if n % 7 == 3 {
            // A later failed run the same day must not take the day's slot.
            failed.push(
                write_run(
                    sink.as_ref(),
                    day + Duration::hours(1),
                    n,
                    RunStatus::Failed,
                    false,
                )
                .await,
            );
        }
        day += Duration::days(1);
    }
    assert_eq!(complete.len(), 730);

    let rules = KeepRules::new()
        .keep_daily(KeepCount::Last(30))
        .keep_weekly(KeepCount::Last(12))
        .keep_monthly(KeepCount::Unlimited);
    let catalog = Catalog::new(sink.clone());
    let plan = catalog.plan_retention(&rules, now).await.unwrap();

    // Expected, computed independently: the 30 newest days; the newest day of each of the 12
    // newest ISO weeks; the newest day of every calendar month.
    use chrono::Datelike;
    let mut expected = std::collections::BTreeSet::new();
    for (_, id) in complete.iter().rev().take(30) {
        expected.insert(id.clone());
    }
    let mut weeks = BTreeMap::new();
    let mut months = BTreeMap::new();
    for (t, id) in &complete {
        let w = t.iso_week();
        weeks.insert((w.year(), w.week()), id.clone()); // later days overwrite: newest wins
        months.insert((t.year(), t.month()), id.clone());
    }
    expected.extend(weeks.values().rev().take(12).cloned());
    expected.extend(months.values().cloned());

    let kept: std::collections::BTreeSet<RunId> = plan.kept().map(|d| d.run_id.clone()).collect();
    assert_eq!(kept, expected);
    // 30 days + weeks before them (12 weeks reach back ~84 days: 12 - 5 weeks already inside
    // the 30 days) + 25 month-ends (minus those already kept).
    assert!(kept.len() > 40 && kept.len() < 80, "{}", kept.len());
    for f in &failed {
        assert!(!kept.contains(f), "failed run {f} kept");
    }

    // Apply: forgotten runs disappear, each manifest deleted before its artifacts.
    let removed = catalog.apply_retention(&plan).await.unwrap();
    assert_eq!(removed.len(), complete.len() + failed.len() - kept.len());
    let deleted = sink.deleted.lock().unwrap().clone();
    for id in &removed {
        let positions: Vec<usize> = deleted
            .iter()
            .enumerate()
            .filter(|(_, k)| k.starts_with(&format!("{}/", id.prefix())))
            .map(|(i, _)| i)
            .collect();
        assert!(!positions.is_empty());
        let first = &deleted[positions[0]];
        if complete.iter().any(|(_, c)| c == id) {
            assert!(
                first.ends_with("/manifest.json"),
                "{id}: first deletion was {first}"
            );
        }
    }
    let left: std::collections::BTreeSet<RunId> = catalog
        .list_all()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(left, kept);
}

#[tokio::test]
async fn retention_deletes_nothing_when_listing_fails() {
    let sink = Arc::new(RecordingSink::default());
    let now = at(2026, 6, 1, 12);
    for d in 0..10 {
        write_run(
            sink.as_ref(),
            now - Duration::days(d + 1),
            d as u32,
            RunStatus::Complete,
            true,
        )
        .await;
    }
    let catalog = Catalog::new(sink.clone());
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(2), now)
        .await
        .unwrap();
    assert_eq!(plan.forgotten().count(), 8);

    sink.fail_list.store(true, Ordering::SeqCst);
    assert!(catalog
        .plan_retention(&KeepRules::new().keep_last(2), now)
        .await
        .is_err());
    assert!(catalog.apply_retention(&plan).await.is_err());
    assert!(sink.deleted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn newest_verified_run_survives_and_stale_incomplete_runs_are_removed() {
    let sink = Arc::new(RecordingSink::default());
    let now = at(2026, 3, 10, 12);
    // Newest verified is 5 days old; newer complete runs are unverified.
    let verified = write_run(
        sink.as_ref(),
        now - Duration::days(5),
        1,
        RunStatus::Complete,
        true,
    )
    .await;
    let unverified = write_run(
        sink.as_ref(),
        now - Duration::days(1),
        2,
        RunStatus::Complete,
        false,
    )
    .await;
    let stale = write_run(
        sink.as_ref(),
        now - Duration::days(3),
        3,
        RunStatus::Incomplete,
        false,
    )
    .await;
    let fresh = write_run(
        sink.as_ref(),
        now - Duration::hours(2),
        4,
        RunStatus::Incomplete,
        false,
    )
    .await;

    let catalog = Catalog::new(sink.clone());
    let rules = KeepRules::new()
        .keep_last(1)
        .incomplete_grace(Duration::hours(24));
    let plan = catalog.plan_retention(&rules, now).await.unwrap();
    let kept: Vec<RunId> = plan.kept().map(|d| d.run_id.clone()).collect();
    assert!(kept.contains(&verified), "newest verified must be kept");
    assert!(kept.contains(&unverified), "keep_last(1)");
    assert!(
        kept.contains(&fresh),
        "incomplete within grace may still be running"
    );
    assert!(!kept.contains(&stale));
    catalog.apply_retention(&plan).await.unwrap();
    assert!(sink.list(&stale.prefix()).await.unwrap().is_empty());
    assert!(!sink.list(&verified.prefix()).await.unwrap().is_empty());
}

// ---- on a local directory ----

fn local_sink(dir: &std::path::Path) -> Arc<LocalSink> {
    Arc::new(
        LocalSink::builder(dir.join("backups"))
            .create_root(true)
            .build()
            .expect("local sink"),
    )
}

/// The file of `key` under the local sink's root.
fn file_of(sink: &LocalSink, key: &str) -> std::path::PathBuf {
    key.split('/')
        .fold(sink.root().to_path_buf(), |p, s| p.join(s))
}

/// Sets a file's modification time, as if it was last written at `at`.
fn set_mtime(sink: &LocalSink, key: &str, at: DateTime<Utc>) {
    let file = std::fs::File::options()
        .write(true)
        .open(file_of(sink, key))
        .unwrap();
    file.set_modified(at.into()).unwrap();
}

fn find(runs: &[RunSummary], id: &RunId) -> RunSummary {
    runs.iter()
        .find(|r| &r.run_id == id)
        .unwrap_or_else(|| panic!("{id} not listed"))
        .clone()
}

#[tokio::test]
async fn damaged_manifests_on_disk_are_reported_kept_and_do_not_block_pruning() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = local_sink(tmp.path());
    let now = Utc::now();
    let mut runs = Vec::new();
    for d in 0..5 {
        let at = now - Duration::days(50 - d);
        runs.push(write_run(sink.as_ref(), at, d as u32, RunStatus::Complete, true).await);
    }
    // Oldest: not JSON. Next: truncated. Newest: its artifact lost a byte.
    std::fs::write(file_of(&sink, runs[0].manifest_key().as_str()), "{not json").unwrap();
    let manifest = std::fs::read(file_of(&sink, runs[1].manifest_key().as_str())).unwrap();
    std::fs::write(
        file_of(&sink, runs[1].manifest_key().as_str()),
        &manifest[..manifest.len() / 2],
    )
    .unwrap();
    let newest_dump = format!("{}/postgres/stoa.dump", runs[4].prefix());
    std::fs::write(file_of(&sink, &newest_dump), "dum").unwrap();

    let catalog = Catalog::new(sink.clone());
    let all = catalog.list_all().await.unwrap();
    assert_eq!(all.len(), 5);
    for (id, kind, why) in [
        (
            &runs[0],
            ErrorKind::Integrity,
            "its manifest cannot be read",
        ),
        (
            &runs[1],
            ErrorKind::Integrity,
            "its manifest cannot be read",
        ),
        (
            &runs[4],
            ErrorKind::Integrity,
            "holds 3 bytes, the manifest records 4",
        ),
    ] {
        let r = find(&all, id);
        assert_eq!(r.status, RunStatus::Damaged, "{id}");
        let damage = r.damage.unwrap();
        assert_eq!(damage.kind, kind);
        assert!(damage.reason.contains(why), "{id}: {damage}");
    }
    assert_eq!(catalog.damaged_runs().await.unwrap().len(), 3);
    let latest = catalog.latest_verified("postgres").await.unwrap().unwrap();
    assert_eq!(latest.run_id, runs[3]);

    let plan = catalog
        .plan_retention(&KeepRules::new().keep_within(Duration::days(7)), now)
        .await
        .unwrap();
    for id in [&runs[0], &runs[1], &runs[4]] {
        assert_eq!(
            plan.decision(id).unwrap().reasons(),
            [KeepReason::Damaged],
            "{plan}"
        );
    }
    // Nothing is within 7 days: the newest complete, verified run stays anyway.
    assert_eq!(
        plan.decision(&runs[3]).unwrap().reasons(),
        [KeepReason::NewestVerified, KeepReason::NewestComplete]
    );
    let removed = catalog.apply_retention(&plan).await.unwrap();
    assert_eq!(removed, vec![runs[2].clone()]);
    for id in [&runs[0], &runs[1], &runs[3], &runs[4]] {
        assert!(file_of(&sink, &id.prefix()).is_dir(), "{id} deleted");
    }
    assert!(!file_of(&sink, &runs[2].prefix()).exists());
}

#[tokio::test]
async fn unfinished_runs_on_disk_are_aged_by_their_files_by_both_clocks() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = local_sink(tmp.path());
    let now = Utc::now();
    let backup = write_run(
        sink.as_ref(),
        now - Duration::days(2),
        1,
        RunStatus::Complete,
        true,
    )
    .await;
    // Running for 30 hours: its first artifact is that old, its heartbeat is fresh.
    let long = write_run(
        sink.as_ref(),
        now - Duration::hours(30),
        2,
        RunStatus::Incomplete,
        false,
    )
    .await;
    set_mtime(
        &sink,
        &format!("{}/postgres/stoa.dump", long.prefix()),
        now - Duration::hours(30),
    );
    sink.put_bytes(&long.heartbeat_key(), bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap();
    // Crashed three days ago, a failed run two days ago: both past the 24-hour grace.
    let crashed = write_run(
        sink.as_ref(),
        now - Duration::days(3),
        3,
        RunStatus::Incomplete,
        false,
    )
    .await;
    set_mtime(
        &sink,
        &format!("{}/postgres/stoa.dump", crashed.prefix()),
        now - Duration::days(3),
    );
    let failed = write_run(
        sink.as_ref(),
        now - Duration::days(2),
        4,
        RunStatus::Failed,
        false,
    )
    .await;
    for key in [
        format!("{}/postgres/stoa.dump", failed.prefix()),
        failed.report_key().to_string(),
    ] {
        set_mtime(&sink, &key, now - Duration::days(2));
    }

    let catalog = Catalog::new(sink.clone());
    let listed = find(&catalog.list_all().await.unwrap(), &long);
    assert_eq!(listed.components, vec!["postgres".to_string()]);
    assert!(listed.inactive_for(now + Duration::hours(25)) < Duration::hours(1));
    for planner in [now, now + Duration::hours(25)] {
        let plan = catalog
            .plan_retention(&KeepRules::new(), planner)
            .await
            .unwrap();
        assert_eq!(
            plan.decision(&long).unwrap().reasons(),
            [KeepReason::GracePeriod],
            "{plan}"
        );
        assert!(!plan.decision(&crashed).unwrap().is_kept(), "{plan}");
        assert!(!plan.decision(&failed).unwrap().is_kept(), "{plan}");
    }
    let plan = catalog
        .plan_retention(&KeepRules::new(), now + Duration::hours(25))
        .await
        .unwrap();
    let mut removed = catalog.apply_retention(&plan).await.unwrap();
    removed.sort();
    assert_eq!(removed, vec![crashed.clone(), failed.clone()]);
    assert!(file_of(&sink, long.heartbeat_key().as_str()).is_file());
    assert!(file_of(&sink, backup.manifest_key().as_str()).is_file());
}

#[tokio::test]
async fn per_component_rules_prune_one_local_sink_holding_every_component() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = local_sink(tmp.path());
    let now = Utc::now();
    let run = |days: i64, n: u32, components: &'static [&'static str]| {
        let sink = sink.clone();
        async move {
            let at = now - Duration::days(days);
            write_run_of(sink.as_ref(), at, n, RunStatus::Complete, true, components).await
        }
    };
    let helm_old = run(400, 1, &["keycloak", "helm-values"]).await;
    let keycloak_60 = run(60, 2, &["postgres", "keycloak"]).await;
    let postgres_45 = run(45, 3, &["postgres"]).await;
    let postgres_40 = run(40, 4, &["postgres", "crds"]).await;
    let all_10 = run(10, 5, &["postgres", "keycloak", "crds", "helm-values"]).await;
    let grafana = run(200, 6, &["grafana"]).await;

    let policy = ComponentRules::new()
        .component("postgres", KeepRules::new().keep_within(Duration::days(30)))
        .component("keycloak", KeepRules::new().keep_within(Duration::days(90)))
        .component("crds", KeepRules::new().keep_within(Duration::days(30)))
        .component("helm-values", KeepRules::new().keep_forever());
    policy.validate().unwrap();
    let catalog = Catalog::new(sink.clone());
    let plan = catalog.plan_retention(&policy, now).await.unwrap();
    let of = |id: &RunId, c: &str| plan.decision(id).unwrap().components[c].clone();
    assert_eq!(of(&helm_old, "helm-values"), vec![KeepReason::Forever]);
    assert!(of(&helm_old, "keycloak").is_empty());
    assert_eq!(of(&keycloak_60, "keycloak"), vec![KeepReason::Within]);
    assert!(of(&keycloak_60, "postgres").is_empty());
    assert!(!plan.decision(&postgres_45).unwrap().is_kept(), "{plan}");
    assert!(!plan.decision(&postgres_40).unwrap().is_kept(), "{plan}");
    // A component without rules is kept forever.
    assert_eq!(of(&grafana, "grafana")[0], KeepReason::Forever);

    let mut removed = catalog.apply_retention(&plan).await.unwrap();
    removed.sort();
    assert_eq!(removed, vec![postgres_45.clone(), postgres_40.clone()]);
    let left: std::collections::BTreeSet<RunId> = catalog
        .list_runs(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(
        left,
        [helm_old, keycloak_60, all_10, grafana]
            .into_iter()
            .collect()
    );
}

#[tokio::test]
async fn a_pin_set_between_plan_and_apply_keeps_the_run_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = local_sink(tmp.path());
    let now = Utc::now();
    let mut runs = Vec::new();
    for d in 0..3 {
        let at = now - Duration::days(10 - d);
        runs.push(write_run(sink.as_ref(), at, d as u32, RunStatus::Complete, true).await);
    }
    let catalog = Catalog::new(sink.clone());
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), now)
        .await
        .unwrap();
    assert_eq!(plan.forgotten().count(), 2);
    catalog.set_pinned(&runs[0], true).await.unwrap();
    let removed = catalog.apply_retention(&plan).await.unwrap();
    assert_eq!(removed, vec![runs[1].clone()]);
    assert!(file_of(&sink, runs[0].manifest_key().as_str()).is_file());
    let pinned = find(&catalog.list_all().await.unwrap(), &runs[0]);
    assert!(pinned.pinned);
}
