//! Unit tests of the local sink (the contract itself: tests/sinks/local.rs).

use std::fs;

use super::*;
use bytes::Bytes;
use stoa_backup_core::sink::SinkExt;

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

/// All file names under `dir`, recursively (including hidden temporary files).
fn all_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
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

#[tokio::test]
async fn symlink_escape_is_refused_for_put_get_list_and_delete() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), b"outside").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::builder(dir.path().join("root"))
        .create_root(true)
        .build()
        .unwrap();
    std::os::unix::fs::symlink(outside.path(), sink.root().join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), sink.root().join("leak")).unwrap();

    let err = sink
        .put_bytes(&key("escape/x"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let err = sink
        .put_bytes(&key("escape/sub/x"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!outside.path().join("x").exists());
    assert!(
        !outside.path().join("sub").exists(),
        "put created a directory outside the root"
    );

    let err = sink
        .get(&key("escape/secret"))
        .await
        .err()
        .expect("get through a link must fail");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let err = sink
        .get(&key("leak"))
        .await
        .err()
        .expect("get of an escaping link must fail");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    // Replacing a link (which could point anywhere) is refused too.
    let err = sink
        .put_bytes(&key("leak"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(fs::read(outside.path().join("secret")).unwrap(), b"outside");

    let err = sink.list("escape").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        sink.list("").await.unwrap().is_empty(),
        "escaping links must not be listed"
    );

    let err = sink.delete(&key("escape/secret")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(outside.path().join("secret").exists());
}

#[tokio::test]
async fn symlinks_inside_the_root_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    fs::create_dir(sink.root().join("real")).unwrap();
    std::os::unix::fs::symlink(sink.root().join("real"), sink.root().join("alias")).unwrap();
    sink.put_bytes(&key("alias/a"), Bytes::from_static(b"hi"))
        .await
        .unwrap();
    assert_eq!(sink.get_bytes(&key("real/a")).await.unwrap(), b"hi");
    assert_eq!(sink.get_bytes(&key("alias/a")).await.unwrap(), b"hi");
}

#[tokio::test]
async fn failed_stream_removes_the_temp_file_and_keeps_the_old_object() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    let k = key("a/b/obj");
    sink.put_bytes(&k, Bytes::from_static(b"old"))
        .await
        .unwrap();
    let s: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from(vec![7u8; 100_000])),
        Err(Error::source_failed("boom")),
    ]));
    let err = sink.put(&k, s).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert_eq!(err.message(), "boom");
    assert_eq!(err.operation(), Some("put"));
    assert_eq!(err.artifact(), Some("a/b/obj"));
    assert_eq!(sink.get_bytes(&k).await.unwrap(), b"old");
    assert_eq!(all_files(sink.root()), vec!["a/b/obj".to_string()]);
}

#[tokio::test]
async fn dropped_put_removes_the_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    let k = key("x/obj");
    let s: ByteStream = Box::pin(
        futures::stream::iter(vec![Ok(Bytes::from(vec![1u8; 4096]))])
            .chain(futures::stream::pending()),
    );
    let res = tokio::time::timeout(std::time::Duration::from_millis(200), sink.put(&k, s)).await;
    assert!(
        res.is_err(),
        "the put should still be waiting for the stream"
    );
    assert!(
        all_files(sink.root()).is_empty(),
        "left behind: {:?}",
        all_files(sink.root())
    );
    assert!(!sink.exists(&k).await.unwrap());
}

#[tokio::test]
async fn delete_prunes_empty_directories_but_not_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::builder(dir.path().join("r"))
        .create_root(true)
        .build()
        .unwrap();
    sink.put_bytes(&key("a/b/c"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    sink.put_bytes(&key("a/d"), Bytes::from_static(b"2"))
        .await
        .unwrap();
    sink.delete(&key("a/b/c")).await.unwrap();
    assert!(!sink.root().join("a/b").exists());
    assert!(sink.root().join("a").exists());
    sink.delete(&key("a/d")).await.unwrap();
    assert!(!sink.root().join("a").exists());
    assert!(sink.root().exists());
    sink.delete(&key("a/d")).await.unwrap();
}

#[tokio::test]
async fn temp_names_are_reserved_and_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    let err = sink
        .put_bytes(&key("a/.x.tmp-1"), Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    fs::create_dir(sink.root().join("a")).unwrap();
    fs::write(sink.root().join("a/.x.tmp-1"), b"partial").unwrap();
    assert!(sink.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn preflight_and_describe() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    sink.preflight().await.unwrap();
    assert!(
        all_files(sink.root()).is_empty(),
        "preflight must clean up its probe"
    );
    assert!(sink.describe().starts_with("local:/"));
    fs::remove_dir(sink.root()).unwrap();
    let err = sink.preflight().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.hint().unwrap().contains("mounted"));
}

#[tokio::test]
async fn a_file_in_the_way_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    sink.put_bytes(&key("a"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    let err = sink
        .put_bytes(&key("a/b"), Bytes::from_static(b"2"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(sink.get(&key("a/b")).await.err().unwrap().kind() == ErrorKind::NotFound);
    assert!(sink.list("a/b").await.unwrap().is_empty());
}

#[test]
fn a_missing_root_is_refused() {
    // An unmounted volume: the mount point's parent exists, the directory does not.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("volume/backups");
    let err = LocalSink::new(&missing).unwrap_err();
    assert!(!missing.exists(), "new created the missing root");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(err.component(), Some(COMPONENT));
    assert!(
        err.message().contains(&missing.display().to_string()),
        "{err}"
    );
    let hint = err.hint().unwrap_or_default();
    assert!(
        hint.contains("mounted") && hint.contains("create_root(true)"),
        "{err}"
    );
    // The builder without create_root says the same.
    let err = LocalSink::builder(&missing).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!missing.exists());
}

#[test]
fn create_root_creates_the_missing_root_and_its_parents() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("a/b/backups");
    let sink = LocalSink::builder(&missing)
        .create_root(true)
        .build()
        .unwrap();
    assert!(missing.is_dir());
    assert_eq!(sink.root(), fs::canonicalize(&missing).unwrap());
    // An existing root is fine either way.
    LocalSink::builder(&missing)
        .create_root(true)
        .build()
        .unwrap();
    LocalSink::new(&missing).unwrap();
    // A file is not a root.
    fs::write(dir.path().join("file"), b"x").unwrap();
    let err = LocalSink::new(dir.path().join("file")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let err = LocalSink::builder(dir.path().join("file/below"))
        .create_root(true)
        .build()
        .unwrap_err();
    assert_eq!(err.component(), Some(COMPONENT), "{err}");
}

#[test]
fn stale_temp_after_must_leave_running_writes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalSink::builder(dir.path())
        .stale_temp_after(std::time::Duration::from_secs(5))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    LocalSink::builder(dir.path())
        .stale_temp_after(MIN_STALE_TEMP_AFTER)
        .build()
        .unwrap();
}

#[tokio::test]
async fn new_directories_are_made_durable_in_their_parents() {
    let dir = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(dir.path()).unwrap();
    let sink = LocalSink::builder(base.join("volume/backups"))
        .create_root(true)
        .build()
        .unwrap();
    // The created root and its created parent are entries of their parents.
    assert_eq!(write::synced::under(&base), ["", "volume"]);

    sink.put_bytes(&key("runs/r1/postgres/dump"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let root = sink.root().to_path_buf();
    // Every directory the put created is fsynced in its parent (root, runs, runs/r1), and
    // the object in its own directory.
    assert_eq!(
        write::synced::under(&root),
        ["", "runs", "runs/r1", "runs/r1/postgres"]
    );
}
