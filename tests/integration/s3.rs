//! Whole backup runs into S3 (s3s-fs in-process, with injected faults): transient 503s are
//! retried and the run completes with a verified manifest; permanent 403s fail clearly,
//! naming bucket and key and never the secret key.

use std::sync::Arc;
use std::time::Duration;

use stoa_backup::core::process::CommandSpec;
use stoa_backup::core::verify::ChecksumVerifier;
use stoa_backup::core::{
    Catalog, CommandSource, ErrorKind, ExistingDataPolicy, FileRestorer, Keyring, Pipeline,
    RunFilter, RunStatus, Sink,
};
use stoa_backup::storage::{S3Credentials, S3Retry, S3Sink, S3SinkBuilder};
use stoa_backup_test_support::s3::{self as s3t, FaultScope, S3Target};

use crate::restore_support::restore_component;

const MIB: usize = 1024 * 1024;

fn builder(t: &S3Target, secret: &str) -> S3SinkBuilder {
    S3Sink::builder(&t.bucket)
        .endpoint(&t.endpoint)
        .region(&t.region)
        .allow_http(true)
        .prefix("stoa/test")
        .part_size(5 * MIB)
        .max_parts_in_flight(2)
        .credentials(S3Credentials::new(&t.access_key, secret))
        .retry(S3Retry {
            max_retries: 6,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            retry_timeout: Duration::from_secs(60),
        })
}

/// `seq 1 N` as a source: about 20 MB of text for N = 3,000,000 (several parts).
fn seq_source(n: u64) -> CommandSource {
    CommandSource::new(
        "numbers",
        "numbers.txt",
        CommandSpec::new("seq").args(["1".to_string(), n.to_string()]),
    )
    .content_type("text/plain")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_transient_503s_and_ends_verified() {
    let t = s3t::s3s_fs_target().await;
    let server = t.server().unwrap();
    let s3 = builder(&t, &t.secret_key).build().unwrap();
    let metrics = s3.metrics();
    let sink: Arc<dyn Sink> = Arc::new(s3);

    // Every third request on an object answers 503 SlowDown, for the whole run.
    server.faults().fail_every(3, 503, FaultScope::Objects);
    let n = 3_000_000u64;
    let pipeline = Pipeline::builder()
        .source(seq_source(n))
        .source(CommandSource::new(
            "small",
            "hello.txt",
            CommandSpec::new("echo").arg("hello"),
        ))
        .sink(sink.clone())
        .verifier(ChecksumVerifier::deep())
        .label("test", "s3-transient")
        .build()
        .unwrap();
    let report = pipeline.run().await.unwrap().into_result().unwrap();
    server.faults().clear();
    let faults = server.requests().faults;
    assert!(faults >= 3, "only {faults} faults injected");
    assert!(
        metrics.multipart_completed() >= 1,
        "the big artifact did not go multipart"
    );
    assert!(metrics.parts_uploaded() >= 4);
    assert_eq!(report.manifest.artifacts.len(), 2);
    for a in &report.manifest.artifacts {
        assert!(a.is_verified(), "{a:?}");
    }

    // The catalog lists the run from its manifest, and it restores byte for byte.
    let catalog = Catalog::new(sink.clone());
    let runs = catalog
        .list_runs(&RunFilter::default().label("test", "s3-transient"))
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run_id, report.run_id);
    assert_eq!(runs[0].status, RunStatus::Complete);
    let manifest = catalog.read_manifest(&report.run_id).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("numbers.txt");
    restore_component(
        sink.clone(),
        &manifest,
        &Keyring::new(),
        FileRestorer::new("numbers", &target),
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    let restored = std::fs::read_to_string(&target).unwrap();
    let expected: String = (1..=n).map(|i| format!("{i}\n")).collect();
    assert!(restored == expected, "restored content differs");
    assert!(t.pending_uploads().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_403s_fail_the_run_naming_bucket_and_key_not_the_secret() {
    let t = s3t::s3s_fs_target().await;
    // A wrong secret: the server's signature check answers 403 to every request.
    let wrong_secret = "stoa-WRONG-secret-key-0b5f-must-not-leak";
    let sink: Arc<dyn Sink> = Arc::new(builder(&t, wrong_secret).build().unwrap());

    // With preflight (the default), the run does not start.
    let pipeline = Pipeline::builder()
        .source(seq_source(1000))
        .sink(sink.clone())
        .verifier(ChecksumVerifier::new())
        .build()
        .unwrap();
    let err = pipeline.run().await.unwrap_err();
    let text = format!("{err} | {err:?}");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{text}");
    assert!(
        text.contains(&format!("s3://{}/stoa/test/", t.bucket)),
        "{text}"
    );
    assert!(!text.contains(wrong_secret), "the secret leaked: {text}");

    // Writes under runs/ refused (a bucket policy): preflight passes, the artifact's put
    // fails, and the report names bucket and key.
    let server = t.server().unwrap();
    server
        .faults()
        .fail_always(403, FaultScope::PathContains("/runs/".into()));
    let sink: Arc<dyn Sink> = Arc::new(builder(&t, &t.secret_key).build().unwrap());
    let pipeline = Pipeline::builder()
        .source(seq_source(1000))
        .sink(sink)
        .attempts(2)
        .build()
        .unwrap();
    let report = pipeline.run().await.unwrap();
    assert!(!report.is_complete());
    let failure = report
        .manifest
        .failures
        .first()
        .expect("a failure is recorded")
        .error
        .clone();
    let err = report.into_result().unwrap_err();
    let text = format!("{failure} | {err} | {err:?}");
    assert!(
        text.contains(&format!("s3://{}/stoa/test/runs/", t.bucket)),
        "bucket not named: {text}"
    );
    assert!(
        text.contains("numbers/numbers.txt"),
        "key not named: {text}"
    );
    assert!(
        text.contains("denied (403)"),
        "not clearly a permission error: {text}"
    );
    assert!(
        !text.contains(s3t::TEST_SECRET_KEY),
        "the secret leaked: {text}"
    );
    assert!(server.requests().faults >= 1);
}
