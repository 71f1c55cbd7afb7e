//! Retention applied through the catalog on a real sink: what is deleted, in which order,
//! and what happens when listing fails.

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
    ByteStream, Catalog, Error, KeepCount, KeepRules, MemorySink, ObjectKey, Result, Sink, SinkExt,
};

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
    let id = run_id(t, n);
    let key = ObjectKey::new(format!("{}/postgres/stoa.dump", id.prefix())).unwrap();
    sink.put_bytes(&key, bytes::Bytes::from_static(b"dump"))
        .await
        .unwrap();
    let artifact = ArtifactRecord {
        component: "postgres".into(),
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
            }]
        } else {
            vec![]
        },
    };
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        run_id: id.clone(),
        status,
        started_at: t,
        finished_at: t + Duration::minutes(5),
        library_version: "test".into(),
        host: "test".into(),
        labels: BTreeMap::new(),
        artifacts: vec![artifact],
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
