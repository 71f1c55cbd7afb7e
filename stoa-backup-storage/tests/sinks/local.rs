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

/// Writes `len` bytes at `rel` under `root` (creating directories) and sets its modification
/// time `age` into the past: a file an interrupted write left behind that long ago.
fn leftover(root: &Path, rel: &str, len: usize, age: Duration) -> std::path::PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0u8; len]).unwrap();
    set_age(&path, age);
    path
}

/// Sets the modification time of a file or directory `age` into the past.
fn set_age(path: &Path, age: Duration) {
    let f = std::fs::File::open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - age).unwrap();
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn cleanup_removes_old_temporary_files_and_empty_directories_only() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    let root = sink.root().to_path_buf();
    sink.put_bytes(
        &ObjectKey::new("runs/r1/manifest.json").unwrap(),
        Bytes::from_static(b"{}"),
    )
    .await
    .unwrap();
    sink.put_bytes(
        &ObjectKey::new("runs/r1/db/dump").unwrap(),
        Bytes::from_static(b"dump"),
    )
    .await
    .unwrap();
    // Left by killed runs two days ago: a temporary file alone in its run, one beside a
    // stored object, a preflight probe at the root, an empty run directory.
    leftover(
        &root,
        "runs/r2/db/.dump.tmp-00000000000000aa",
        1000,
        2 * DAY,
    );
    leftover(&root, "runs/r1/db/.dump.tmp-00000000000000bb", 500, 2 * DAY);
    leftover(&root, ".preflight.tmp-00000000000000cc", 22, 2 * DAY);
    std::fs::create_dir_all(root.join("runs/r4")).unwrap();
    set_age(&root.join("runs/r4"), 2 * DAY);
    // Not to be touched: a temporary file written a minute ago (a write in progress), an
    // empty directory just created (a run starting), and old files that are no temporary
    // files (an object named like one but without the leading dot, a hidden file).
    leftover(
        &root,
        "runs/r3/db/.dump.tmp-00000000000000dd",
        300,
        Duration::from_secs(60),
    );
    std::fs::create_dir_all(root.join("runs/r5")).unwrap();
    leftover(&root, "runs/r1/db/dump.tmp-1", 7, 2 * DAY);
    leftover(&root, "runs/r1/.notes", 7, 2 * DAY);
    let listed_before = sink.list("").await.unwrap();

    let report = sink
        .cleanup(chrono::Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.temp_files_removed, 3, "{report:?}");
    assert_eq!(report.bytes_freed, 1522, "{report:?}");
    // runs/r2/db and runs/r2 (emptied by this pass), runs/r4 (old and empty).
    assert_eq!(report.empty_dirs_removed, 3, "{report:?}");
    assert_eq!(report.multipart_uploads_aborted, 0);
    assert_eq!(
        files_under(&root),
        [
            "runs/r1/.notes",
            "runs/r1/db/dump",
            "runs/r1/db/dump.tmp-1",
            "runs/r1/manifest.json",
            "runs/r3/db/.dump.tmp-00000000000000dd",
        ]
    );
    assert!(!root.join("runs/r2").exists() && !root.join("runs/r4").exists());
    assert!(
        root.join("runs/r5").is_dir(),
        "a fresh empty directory was removed"
    );
    assert_eq!(sink.list("").await.unwrap(), listed_before);

    // A second pass finds nothing more; a cutoff in the future takes the fresh file too.
    let again = sink
        .cleanup(chrono::Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(!again.removed_anything(), "{again:?}");
    let later = sink
        .cleanup(chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(later.temp_files_removed, 1, "{later:?}");
    assert!(!root.join("runs/r3").exists());
}

#[tokio::test]
async fn preflight_sweeps_stale_temporary_files_and_never_fresh_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let stale = leftover(
        &root,
        "runs/r1/db/.dump.tmp-0000000000000001",
        100,
        3 * HOUR,
    );
    let fresh = leftover(
        &root,
        "runs/r2/db/.dump.tmp-0000000000000002",
        100,
        HOUR / 2,
    );

    // The default age (a day) keeps both.
    let sink = LocalSink::new(&root).unwrap();
    assert_eq!(
        sink.stale_temp_after(),
        stoa_backup_storage::local::DEFAULT_STALE_TEMP_AFTER
    );
    sink.preflight().await.unwrap();
    assert!(stale.exists() && fresh.exists());

    let sink = LocalSink::builder(&root)
        .stale_temp_after(2 * HOUR)
        .build()
        .unwrap();
    sink.preflight().await.unwrap();
    assert!(
        !stale.exists(),
        "the stale temporary file survived preflight"
    );
    assert!(
        !root.join("runs/r1").exists(),
        "its emptied directories were left"
    );
    assert!(fresh.exists(), "preflight removed a fresh temporary file");
    assert_eq!(
        files_under(&root),
        ["runs/r2/db/.dump.tmp-0000000000000002"]
    );
}

#[tokio::test]
async fn a_failed_run_deleted_by_retention_leaves_no_directory_behind() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    let root = sink.root().to_path_buf();
    for k in [
        "runs/r1/db/dump",
        "runs/r1/kc/realm.json",
        "runs/r2/db/dump",
        "runs/r2/manifest.json",
    ] {
        sink.put_bytes(&ObjectKey::new(k).unwrap(), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    // r1 failed: its Keycloak export was killed mid-write a day ago.
    leftover(
        &root,
        "runs/r1/kc/.users.json.tmp-0000000000000003",
        64,
        2 * DAY,
    );

    // Retention forgets r1: every listed object of it is deleted.
    for o in sink.list("runs/r1").await.unwrap() {
        sink.delete(&o.key).await.unwrap();
    }
    assert!(sink.list("runs/r1").await.unwrap().is_empty());
    assert!(
        !root.join("runs/r1/db").exists(),
        "delete left an empty directory"
    );
    // The temporary file keeps runs/r1/kc alive until a cleanup pass.
    let report = sink
        .cleanup(chrono::Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(
        (report.temp_files_removed, report.empty_dirs_removed),
        (1, 2),
        "{report:?}"
    );
    assert!(!root.join("runs/r1").exists());
    assert_eq!(
        files_under(&root),
        ["runs/r2/db/dump", "runs/r2/manifest.json"]
    );
}
