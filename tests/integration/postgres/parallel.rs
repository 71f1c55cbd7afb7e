//! Parallel restores (`jobs(n)`): everything restored, the spool file removed, tables loaded
//! while the dump is still arriving, and a damaged dump failing with its own error.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use stoa_backup::core::{
    ByteStream, Error, ErrorKind, MemorySink, PerArtifact, RestoreOptions, Sink,
};
use stoa_backup::providers::postgres::spool_index::SpoolIndex;
use stoa_backup::providers::postgres::{PostgresRestorer, PostgresSource, RestoreTarget};

use super::backup_restore::{
    database_exists, export_plain, fingerprint, fresh_target, server, stoa_database, store_plain,
    url_for,
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
    assert!(
        parallel["tables_streamed"].as_u64().unwrap() >= 5,
        "{parallel}"
    );
    assert_eq!(parallel["whole_file_fallback"], false, "{parallel}");
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

/// Whether any table of the stoa schema in `db` has a row yet.
async fn any_rows(db: &str) -> bool {
    let Ok((c, conn)) = tokio_postgres::connect(&url_for(db), tokio_postgres::NoTls).await else {
        return false; // not created yet
    };
    tokio::spawn(conn);
    let Ok(tables) = c
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'stoa'",
            &[],
        )
        .await
    else {
        return false;
    };
    for t in tables {
        let name: String = t.get(0);
        let q = format!("SELECT EXISTS (SELECT 1 FROM stoa.{name})");
        if c.query_one(&q, &[])
            .await
            .is_ok_and(|r| r.get::<_, bool>(0))
        {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn a_parallel_restore_loads_tables_while_the_dump_is_still_arriving() {
    let src = stoa_database("pgrt_pipe").await;
    let source = PostgresSource::builder(pg(src.url())).build().unwrap();
    let (bytes, facts) = export_plain(&source).await;
    let sink = MemorySink::new();
    let record = store_plain(&sink, "pipe.dump", bytes.clone(), facts).await;

    // Hold the dump back after the first data block that holds rows: a restore that waits
    // for the whole dump before loading anything never sees the rest.
    let mut index = SpoolIndex::default();
    index.feed(&bytes);
    let cut = index
        .blocks()
        .iter()
        .find(|b| b.end.unwrap() - b.start > 64)
        .and_then(|b| b.end)
        .expect("a data block with rows");
    assert!(cut < bytes.len() as u64, "more blocks follow the first one");
    let (target, _guard) = fresh_target("pgrt_pipe_dst").await;
    let (head, tail) = (
        bytes[..cut as usize].to_vec(),
        bytes[cut as usize..].to_vec(),
    );
    let watched = target.clone();
    let held_back = futures::stream::once(async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !any_rows(&watched).await {
            assert!(
                Instant::now() < deadline,
                "no table was loaded while the rest of the dump was held back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        futures::stream::iter([Ok(Bytes::from(tail))])
    })
    .flatten();
    let plain: ByteStream = Box::pin(pieces(head).chain(held_back));

    let spool = tempfile::tempdir().unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(90),
        restorer(&target, 2, spool.path()).restore_one(&record, plain, &RestoreOptions::default()),
    )
    .await
    .expect("the restore finished")
    .unwrap();
    let parallel = &r.facts["parallel"];
    assert!(
        parallel["tables_started_before_the_dump_was_in"]
            .as_u64()
            .unwrap()
            >= 1,
        "{parallel}"
    );
    let (want, wseq) = fingerprint(src.name()).await;
    let (got, gseq) = fingerprint(&target).await;
    assert_eq!(got, want);
    assert_eq!(gseq, wseq);
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
