//! The replication metrics: copies counted per component, target and result, and the lag
//! of a replica read from both catalogs.

use std::sync::Arc;

use super::runs::data_file;
use super::*;
use crate::catalog::Catalog;
use crate::replicate::Replicator;

#[tokio::test]
async fn copies_are_counted_and_the_lag_falls_to_zero_once_the_replica_holds_the_run() {
    let clock = TestClock::at(Utc::now());
    let metrics = clock.metrics();
    let (_dir, file) = data_file(100);
    let primary = Arc::new(MemorySink::new());
    let replica = Arc::new(MemorySink::new());
    // The first run is not replicated; the second is, to `dr`.
    pipeline("db", &file, &primary, &metrics)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let replicator = Replicator::new(
        &Catalog::new(primary.clone()),
        &Catalog::new(replica.clone()),
    )
    .named("dr");
    let lags = metrics
        .update_replication_lag(
            &replicator,
            ["db"],
            Utc::now() + chrono::Duration::seconds(3600),
        )
        .await
        .unwrap();
    assert_eq!(lags[0].missing_runs, 1);
    let s = parse(&metrics.encode_text());
    let lag = value(
        &s,
        "stoa_backup_replication_lag_seconds",
        &[("component", "db"), ("target", "dr")],
    )
    .unwrap();
    assert!((3599.0..3700.0).contains(&lag), "{lag}");
    assert_eq!(
        value(
            &s,
            "stoa_backup_replications_total",
            &[("component", "db"), ("target", "dr"), ("result", "failure")]
        ),
        Some(0.0),
        "the counters start at zero"
    );

    let report = pipeline("db", &file, &primary, &metrics)
        .replicate_to_named("dr", replica.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let s = parse(&metrics.encode_text());
    assert_eq!(
        value(
            &s,
            "stoa_backup_replications_total",
            &[("component", "db"), ("target", "dr"), ("result", "success")]
        ),
        Some(1.0)
    );
    // The first run is still missing there; once a pass copies it the lag is zero.
    replicator.replicate(&Default::default()).await.unwrap();
    metrics
        .update_replication_lag(
            &replicator,
            ["db"],
            Utc::now() + chrono::Duration::seconds(3600),
        )
        .await
        .unwrap();
    let s = parse(&metrics.encode_text());
    assert_eq!(
        value(
            &s,
            "stoa_backup_replication_lag_seconds",
            &[("component", "db"), ("target", "dr")]
        ),
        Some(0.0)
    );
}
