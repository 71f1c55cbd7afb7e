//! Parallel restores (`jobs(n)`): everything restored, the spool file removed, and a damaged
//! dump failing with its own error before pg_restore runs.

use bytes::Bytes;
use futures::StreamExt;
use stoa_backup::core::{
    ByteStream, Error, ErrorKind, MemorySink, PerArtifact, RestoreOptions, Sink,
};
use stoa_backup::providers::postgres::{PostgresRestorer, PostgresSource, RestoreTarget};

use super::backup_restore::{
    database_exists, export_plain, fingerprint, fresh_target, server, stoa_database, store_plain,
};
use super::pg;

fn restorer(target: &str, jobs: u32, spool: &std::path::Path) -> PostgresRestorer {
    PostgresRestorer::new(
        server(),
        RestoreTarget::NewDatabase {
            name: target.to_string(),
            swap: false,
        },
    )
    .jobs(jobs)
    .spool_dir(spool)
}

/// `bytes` in 8 KiB pieces.
fn pieces(bytes: Vec<u8>) -> impl futures::Stream<Item = stoa_backup::core::Result<Bytes>> {
    let bytes = Bytes::from(bytes);
    let n = bytes.len().div_ceil(8192);
    futures::stream::iter(
        (0..n).map(move |i| Ok(bytes.slice(i * 8192..((i + 1) * 8192).min(bytes.len())))),
    )
}

#[tokio::test]
async fn parallel_restore_spools_to_a_file_and_restores_everything() {
    let src = stoa_database("pgrt_jobs").await;
    let source = PostgresSource::builder(pg(src.url())).build().unwrap();
    let (bytes, facts) = export_plain(&source).await;
    let sink = MemorySink::new();
    let record = store_plain(&sink, "jobs.dump", bytes, facts).await;
    let (target, _guard) = fresh_target("pgrt_jobs_dst").await;
    let spool = tempfile::tempdir().unwrap();
    let r = restorer(&target, 3, spool.path())
        .restore_one(
            &record,
            sink.get(&record.key).await.unwrap(),
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.facts["jobs"], 3);
    let parallel = &r.facts["parallel"];
    assert!(parallel["total_ms"].as_u64().is_some(), "{parallel}");
    assert_eq!(parallel["offsets_recorded"], true, "{parallel}");
    let (want, wseq) = fingerprint(src.name()).await;
    let (got, gseq) = fingerprint(&target).await;
    assert_eq!(got, want);
    assert_eq!(gseq, wseq);
    assert_eq!(
        std::fs::read_dir(spool.path()).unwrap().count(),
        0,
        "the spool and list files are removed"
    );
    src.drop_db().await;
}

#[tokio::test]
async fn a_dump_failing_mid_way_fails_the_parallel_restore_with_its_own_error() {
    let src = stoa_database("pgrt_pdmg").await;
    let source = PostgresSource::builder(pg(src.url())).build().unwrap();
    let (bytes, facts) = export_plain(&source).await;
    let sink = MemorySink::new();
    let record = store_plain(&sink, "damaged.dump", bytes.clone(), facts).await;
    let (target, _guard) = fresh_target("pgrt_pdmg_dst").await;
    // Past the TOC and into the data, then the digest check at the end fails.
    let head = bytes[..bytes.len() * 3 / 4].to_vec();
    let plain: ByteStream = Box::pin(pieces(head).chain(futures::stream::iter([Err(
        Error::integrity("the artifact's sha256 does not match the manifest"),
    )])));
    let spool = tempfile::tempdir().unwrap();
    let err = restorer(&target, 2, spool.path())
        .restore_one(&record, plain, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err:?}");
    assert!(err.to_string().contains("sha256"), "{err}");
    assert!(
        !database_exists(&target).await,
        "the half-restored database is dropped"
    );
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
    src.drop_db().await;
}
