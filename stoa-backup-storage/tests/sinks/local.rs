//! The local directory sink keeps the sink contract.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use stoa_backup_core::{ByteStream, ErrorKind, ObjectKey, Sink, SinkExt};
use stoa_backup_storage::LocalSink;
use stoa_backup_test_support::conformance::run_sink_conformance;
use stoa_backup_test_support::faulty::{FaultySink, PutFault};

/// Every regular file under `dir`, relative, including hidden temporary files.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_sink_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::builder(dir.path().join("backups"))
        .create_root(true)
        .build()
        .unwrap();
    run_sink_conformance(&sink).await;
    // The suite cleaned up, and no temporary file or empty directory is left.
    assert_eq!(files_under(sink.root()), Vec::<String>::new());
    assert_eq!(
        std::fs::read_dir(sink.root()).unwrap().count(),
        0,
        "directories left behind"
    );
}

#[tokio::test]
async fn dot_dot_keys_cannot_even_be_constructed() {
    for k in ["../etc/passwd", "runs/../../x", "/etc/passwd", "a/./b"] {
        let err = ObjectKey::new(k).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{k}");
    }
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    assert_eq!(
        sink.list("../").await.unwrap_err().kind(),
        ErrorKind::Config
    );
}

#[tokio::test]
async fn an_interrupted_put_leaves_no_visible_file() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    let key = ObjectKey::new("runs/r1/postgres/stoa.dump").unwrap();

    // Cancelled: the stream never ends and the future is dropped.
    let s: ByteStream = Box::pin(
        futures::stream::iter((0..4).map(|_| Ok(Bytes::from(vec![0u8; 256 * 1024]))))
            .chain(futures::stream::pending()),
    );
    let r = tokio::time::timeout(Duration::from_millis(300), sink.put(&key, s)).await;
    assert!(r.is_err(), "the put cannot finish: its stream never ends");
    assert!(
        files_under(sink.root()).is_empty(),
        "{:?}",
        files_under(sink.root())
    );

    // Failed by the storage side after 1 MiB reached the sink.
    let faulty = FaultySink::new(sink.clone());
    faulty.fail_next_put(PutFault::AfterBytes(1 << 20));
    let s = stoa_backup_test_support::conformance::pseudo_random_stream(7, 4 << 20);
    let err = faulty.put(&key, s).await.unwrap_err();
    assert_eq!(err.message(), "injected fault");
    assert_eq!(
        err.component(),
        None,
        "the stream's error is passed on unchanged: {err}"
    );
    assert_eq!(err.artifact(), Some(key.as_str()));
    assert!(
        files_under(sink.root()).is_empty(),
        "{:?}",
        files_under(sink.root())
    );
    assert!(!sink.exists(&key).await.unwrap());

    // A later put of the same key works.
    faulty
        .put_bytes(&key, Bytes::from_static(b"ok"))
        .await
        .unwrap();
    assert_eq!(
        files_under(sink.root()),
        vec!["runs/r1/postgres/stoa.dump".to_string()]
    );
}
