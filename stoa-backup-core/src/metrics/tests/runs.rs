//! Metrics after a success, a failure, a cancelled run and a prune; the RPO gauges against
//! a moving clock; no secret anywhere; instances and registries independent.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::catalog::Catalog;
use crate::manifest::RunStatus;
use crate::metrics::{encode_text, METRIC_NAMES};
use crate::retention::KeepRules;

const HOUR: Duration = Duration::from_secs(3600);

/// A file of `len` compressible bytes in a fresh directory.
pub(super) fn data_file(len: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.bin");
    std::fs::write(&file, vec![b'a'; len]).unwrap();
    (dir, file)
}

#[tokio::test]
async fn a_successful_run_counts_its_bytes_result_duration_and_times() {
    let clock = TestClock::at(at("2026-05-01T02:00:00Z"));
    let metrics = clock.metrics();
    let (_dir, file) = data_file(10_000);
    let sink = Arc::new(MemorySink::new());
    let report = pipeline("db", &file, &sink, &metrics)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Complete);
    let stored = report.manifest.artifacts[0].stored_size;
    assert!(stored < 10_000, "compressed: {stored}");

    let s = parse(&metrics.encode_text());
    let db = [("component", "db")];
    assert_eq!(
        value(
            &s,
            "stoa_backup_bytes_total",
            &[("component", "db"), ("kind", "plain")]
        ),
        Some(10_000.0)
    );
    assert_eq!(
        value(
            &s,
            "stoa_backup_bytes_total",
            &[("component", "db"), ("kind", "stored")]
        ),
        Some(stored as f64)
    );
    let runs = |result| {
        value(
            &s,
            "stoa_backup_runs_total",
            &[("component", "db"), ("result", result)],
        )
    };
    assert_eq!(runs("success"), Some(1.0));
    // The other results are there at zero, so that a first failure is an increase.
    assert_eq!(runs("failure"), Some(0.0));
    assert_eq!(runs("cancelled"), Some(0.0));
    let two_am = at("2026-05-01T02:00:00Z").timestamp() as f64;
    assert_eq!(
        value(&s, "stoa_backup_last_success_timestamp_seconds", &db),
        Some(two_am)
    );
    assert_eq!(
        value(&s, "stoa_backup_last_verified_timestamp_seconds", &db),
        Some(two_am)
    );
    assert_eq!(
        value(&s, "stoa_backup_run_duration_seconds_count", &db),
        Some(1.0)
    );
    let sum = value(&s, "stoa_backup_run_duration_seconds_sum", &db).unwrap();
    assert!((0.0..60.0).contains(&sum), "{sum}");
    assert_eq!(
        value(
            &s,
            "stoa_backup_run_duration_seconds_bucket",
            &[("component", "db"), ("le", "+Inf")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "stoa_backup_retention_deleted_total", &db),
        Some(0.0)
    );
    // No RPO without a target.
    assert!(
        !s.iter().any(|x| x.name.starts_with("stoa_backup_rpo")),
        "{s:?}"
    );
}

#[tokio::test]
async fn a_failed_run_counts_as_a_failure_and_leaves_the_success_times_alone() {
    let metrics = BackupMetrics::new();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemorySink::new());
    let missing = dir.path().join("missing.bin");
    let report = pipeline("db", &missing, &sink, &metrics)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);

    let s = parse(&metrics.encode_text());
    let db = [("component", "db")];
    let runs = |s: &[Sample], result| {
        value(
            s,
            "stoa_backup_runs_total",
            &[("component", "db"), ("result", result)],
        )
    };
    assert_eq!(runs(&s, "failure"), Some(1.0));
    assert_eq!(runs(&s, "success"), Some(0.0));
    assert_eq!(
        value(&s, "stoa_backup_run_duration_seconds_count", &db),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "stoa_backup_last_success_timestamp_seconds", &db),
        None
    );
    assert_eq!(
        value(&s, "stoa_backup_last_verified_timestamp_seconds", &db),
        None
    );
    assert_eq!(
        value(
            &s,
            "stoa_backup_bytes_total",
            &[("component", "db"), ("kind", "plain")]
        ),
        Some(0.0)
    );

    // A run that cannot happen at all (cancelled before it starts) is counted too.
    let (_d, file) = data_file(10);
    let token = CancellationToken::new();
    token.cancel();
    let err = pipeline("db", &file, &sink, &metrics)
        .cancel(token)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Cancelled);
    let s = parse(&metrics.encode_text());
    assert_eq!(runs(&s, "cancelled"), Some(1.0));
    assert_eq!(runs(&s, "failure"), Some(1.0));
    assert_eq!(
        value(&s, "stoa_backup_run_duration_seconds_count", &db),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_prune_counts_the_runs_it_deletes_per_component() {
    let metrics = BackupMetrics::new();
    let (_dir, file) = data_file(100);
    let sink = Arc::new(MemorySink::new());
    let run = |component: &'static str| {
        let p = pipeline(component, &file, &sink, &metrics)
            .retention(KeepRules::new().keep_last(1))
            .apply_retention(true)
            .build()
            .unwrap();
        async move { p.run().await.unwrap().into_result().unwrap() }
    };
    let first = run("db").await;
    assert!(first.removed_runs.is_empty());
    let s = parse(&metrics.encode_text());
    assert_eq!(
        value(
            &s,
            "stoa_backup_retention_deleted_total",
            &[("component", "db")]
        ),
        Some(0.0)
    );
    let second = run("db").await;
    assert_eq!(second.removed_runs, [first.run_id]);
    let third = run("db").await;
    assert_eq!(third.removed_runs, [second.run_id]);

    let s = parse(&metrics.encode_text());
    assert_eq!(
        value(
            &s,
            "stoa_backup_retention_deleted_total",
            &[("component", "db")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &s,
            "stoa_backup_runs_total",
            &[("component", "db"), ("result", "success")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &s,
            "stoa_backup_bytes_total",
            &[("component", "db"), ("kind", "plain")]
        ),
        Some(300.0)
    );
    let runs = Catalog::new(sink.clone())
        .list_runs(&Default::default())
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "keep_last(1) left one run");
}

#[tokio::test]
async fn the_rpo_remaining_crosses_zero_as_the_newest_verified_run_ages() {
    let clock = TestClock::at(Utc::now());
    let metrics = clock.metrics();
    let db = [("component", "db")];
    let web = [("component", "web")];
    metrics.set_rpo_target("db", HOUR);
    // A target alone: no remaining time yet (the newest backup is not known), no "never".
    let s = parse(&metrics.encode_text());
    assert_eq!(
        value(&s, "stoa_backup_rpo_target_seconds", &db),
        Some(3600.0)
    );
    assert_eq!(value(&s, "stoa_backup_rpo_remaining_seconds", &db), None);

    let (_dir, file) = data_file(100);
    let sink = Arc::new(MemorySink::new());
    let report = pipeline("db", &file, &sink, &metrics)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    // From the run's event: its id's start, to the second.
    let started = report.run_id.timestamp().unwrap();
    let remaining_at = |t| {
        clock.set(t);
        value(
            &parse(&metrics.encode_text()),
            "stoa_backup_rpo_remaining_seconds",
            &db,
        )
        .unwrap()
    };
    assert_eq!(remaining_at(started + TimeDelta::seconds(3599)), 1.0);
    assert_eq!(remaining_at(started + TimeDelta::seconds(3600)), 0.0);
    assert_eq!(remaining_at(started + TimeDelta::seconds(3601)), -1.0);
    assert_eq!(remaining_at(started + TimeDelta::hours(3)), -7200.0);

    // From the catalog: its start to the microsecond, and "never" for a component without
    // a backup.
    let catalog = Catalog::new(sink.clone());
    let now = started + TimeDelta::minutes(30);
    clock.set(now);
    let statuses = metrics
        .update_rpo(&catalog, [("db", HOUR), ("web", 2 * HOUR)], now)
        .await
        .unwrap();
    assert!(statuses[0].is_met());
    let precise = report.manifest.started_at;
    let s = parse(&metrics.encode_text());
    let left = value(&s, "stoa_backup_rpo_remaining_seconds", &db).unwrap();
    let expected = 3600.0 - (now - precise).num_microseconds().unwrap() as f64 / 1e6;
    assert!((left - expected).abs() < 1e-3, "{left} vs {expected}");
    assert!(left > 0.0);
    let verified_at = value(&s, "stoa_backup_last_verified_timestamp_seconds", &db).unwrap();
    let recorded = statuses[0]
        .newest_verified
        .as_ref()
        .unwrap()
        .verified_at
        .unwrap();
    assert!((verified_at - recorded.timestamp_millis() as f64 / 1000.0).abs() < 1e-6);
    assert_eq!(
        value(&s, "stoa_backup_rpo_target_seconds", &web),
        Some(7200.0)
    );
    assert_eq!(
        value(&s, "stoa_backup_rpo_remaining_seconds", &web),
        Some(-7200.0)
    );
    assert_eq!(
        value(&s, "stoa_backup_last_verified_timestamp_seconds", &web),
        Some(0.0)
    );
    // The remaining time runs down with the clock alone, past zero.
    clock.set(precise + TimeDelta::seconds(3600) + TimeDelta::milliseconds(1500));
    let late = value(
        &parse(&metrics.encode_text()),
        "stoa_backup_rpo_remaining_seconds",
        &db,
    )
    .unwrap();
    assert!((late + 1.5).abs() < 1e-3, "{late}");
}

const SECRET: &str = "s3cr3t-Pa55w0rd-do-not-leak";

#[tokio::test]
async fn no_secret_reaches_a_metric_and_labels_are_components_and_fixed_words() {
    let metrics = BackupMetrics::new();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemorySink::new());
    // A run label, a file name and an error message hold the secret.
    let secret_dir = dir.path().join(SECRET);
    std::fs::create_dir(&secret_dir).unwrap();
    let file = secret_dir.join("data.bin");
    std::fs::write(&file, b"data").unwrap();
    let ok = pipeline("db", &file, &sink, &metrics)
        .label("token", SECRET)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(ok.status, RunStatus::Complete);
    let failed = pipeline("vault", &secret_dir.join("missing"), &sink, &metrics)
        .label("password", SECRET)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(
        failed.manifest.failures[0].error.contains(SECRET),
        "the error does hold the secret: the test can fail"
    );
    metrics.set_rpo_target("db", HOUR);

    let text = metrics.encode_text();
    assert!(!text.contains(SECRET), "{text}");
    assert!(
        !text.contains("token") && !text.contains("password"),
        "{text}"
    );
    for sample in parse(&text) {
        for (key, value) in &sample.labels {
            let allowed = match key.as_str() {
                "component" => ["db", "vault"].contains(&value.as_str()),
                "kind" => ["plain", "stored"].contains(&value.as_str()),
                "result" => ["success", "failure", "cancelled"].contains(&value.as_str()),
                "le" => sample.name.ends_with("_bucket"),
                _ => false,
            };
            assert!(allowed, "label {key}={value} on {}", sample.name);
        }
    }
}

#[tokio::test]
async fn instances_are_independent_and_register_into_the_callers_registry() {
    let (a, b) = (BackupMetrics::new(), BackupMetrics::new());
    let (_dir, file) = data_file(10);
    let sink = Arc::new(MemorySink::new());
    pipeline("db", &file, &sink, &a)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let success = [("component", "db"), ("result", "success")];
    assert_eq!(
        value(&parse(&a.encode_text()), "stoa_backup_runs_total", &success),
        Some(1.0)
    );
    assert!(parse(&b.encode_text()).is_empty(), "{}", b.encode_text());

    // The service's registry, with its own metric beside ours, under a label.
    let mut registry = Registry::default();
    let own: Counter = Counter::default();
    own.inc();
    registry.register("service_requests", "Requests served", own);
    a.register(registry.sub_registry_with_label(("service".into(), "api".into())));
    let s = parse(&encode_text(&registry).unwrap());
    assert_eq!(value(&s, "service_requests_total", &[]), Some(1.0));
    assert_eq!(
        value(
            &s,
            "stoa_backup_runs_total",
            &[
                ("component", "db"),
                ("result", "success"),
                ("service", "api")
            ]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn every_metric_name_is_in_the_exposition() {
    let metrics = BackupMetrics::new();
    metrics.set_rpo_target("db", HOUR);
    let (_dir, file) = data_file(10);
    let sink = Arc::new(MemorySink::new());
    pipeline("db", &file, &sink, &metrics)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    metrics.set_replication_lag(&crate::replicate::ReplicationLag {
        component: "db".into(),
        target: "dr".into(),
        newest_missing: None,
        missing_runs: 0,
        lag: Duration::ZERO,
    });
    let text = metrics.encode_text();
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut expected = METRIC_NAMES.to_vec();
    expected.sort_unstable();
    let mut typed_sorted = typed.clone();
    typed_sorted.sort_unstable();
    assert_eq!(typed_sorted, expected, "{text}");
}
