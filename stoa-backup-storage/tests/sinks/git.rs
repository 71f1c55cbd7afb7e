//! The Git sink against real bare repositories (local paths and `file://` URLs).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use stoa_backup_core::sink::{Sink, SinkExt};
use stoa_backup_core::{ErrorKind, ObjectKey};
use stoa_backup_storage::git::git2::{self, Repository};
use stoa_backup_storage::git::GitSink;
use stoa_backup_test_support::conformance::run_sink_conformance_with_prefix;

mod concurrent;
mod worktree;

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

/// A bare remote in a temporary directory.
fn bare_remote(dir: &Path) -> PathBuf {
    let path = dir.join("remote.git");
    Repository::init_bare(&path).unwrap();
    path
}

/// A complete run's manifest listing `artifacts` (component, name) under the run's keys.
fn manifest(
    run: &stoa_backup_core::manifest::RunId,
    artifacts: &[(&str, &str)],
) -> stoa_backup_core::manifest::Manifest {
    use stoa_backup_core::manifest::{ArtifactRecord, Manifest, RunStatus};
    let artifacts = artifacts
        .iter()
        .map(|(component, name)| ArtifactRecord {
            component: component.to_string(),
            provider: "test".into(),
            name: name.to_string(),
            key: key(&format!("runs/{run}/{component}/{name}")),
            content_type: "application/yaml".into(),
            plain_size: 1,
            plain_sha256: String::new(),
            stored_size: 1,
            stored_sha256: String::new(),
            codecs: Vec::new(),
            sensitive: false,
            facts: Default::default(),
            duration_ms: 0,
            verification: Vec::new(),
            timings: None,
        })
        .collect();
    Manifest {
        format_version: stoa_backup_core::manifest::MANIFEST_FORMAT_VERSION,
        run_id: run.clone(),
        status: RunStatus::Complete,
        started_at: chrono::Utc::now(),
        finished_at: chrono::Utc::now(),
        library_version: "test".into(),
        host: "test".into(),
        labels: Default::default(),
        artifacts,
        failures: Vec::new(),
        pinned: false,
    }
}

async fn open(remote: &str, workdir: PathBuf) -> GitSink {
    GitSink::builder(remote, workdir)
        .author("stoa-test", "test@example.com")
        .build()
        .await
        .unwrap()
}

fn commits_on(remote: &Path, branch: &str) -> Vec<git2::Oid> {
    let repo = Repository::open_bare(remote).unwrap();
    let Ok(tip) = repo.refname_to_id(&format!("refs/heads/{branch}")) else {
        return Vec::new();
    };
    let mut walk = repo.revwalk().unwrap();
    walk.push(tip).unwrap();
    walk.map(|o| o.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_on_a_local_path_remote() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare_remote(dir.path());
    let sink = open(remote.to_str().unwrap(), dir.path().join("clone")).await;
    let t0 = std::time::Instant::now();
    run_sink_conformance_with_prefix(&sink, "conformance").await;
    eprintln!("conformance on git took {:?}", t0.elapsed());
}

#[tokio::test]
async fn plain_keys_are_committed_pushed_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare_remote(dir.path());
    let url = format!("file://{}", remote.display());
    let sink = open(&url, dir.path().join("a")).await;
    assert!(sink.describe().starts_with("git:file://"));
    assert!(sink.capabilities().versioned && sink.capabilities().prefers_plain_text);
    sink.preflight().await.unwrap();
    sink.put_bytes(&key("notes/one.txt"), Bytes::from_static(b"1\n"))
        .await
        .unwrap();
    assert_eq!(commits_on(&remote, "main").len(), 1);
    // The same bytes again: nothing changes, no commit.
    sink.put_bytes(&key("notes/one.txt"), Bytes::from_static(b"1\n"))
        .await
        .unwrap();
    assert_eq!(commits_on(&remote, "main").len(), 1);
    // The working tree shows the file.
    assert_eq!(
        std::fs::read(dir.path().join("a/.stoa-backup/keys/notes/one.txt")).unwrap(),
        b"1\n"
    );

    // Another clone sees it.
    let other = open(&url, dir.path().join("b")).await;
    assert_eq!(
        other.get_bytes(&key("notes/one.txt")).await.unwrap(),
        b"1\n"
    );
    other.delete(&key("notes/one.txt")).await.unwrap();
    assert_eq!(commits_on(&remote, "main").len(), 2);

    // The first clone still has its old view until it syncs; a write from it is re-based.
    sink.put_bytes(&key("notes/two.txt"), Bytes::from_static(b"2\n"))
        .await
        .unwrap();
    let commits = commits_on(&remote, "main");
    assert_eq!(commits.len(), 3, "the other clone's commit must be kept");
    sink.refresh().await.unwrap();
    let keys: Vec<String> = sink
        .list("notes")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(keys, vec!["notes/two.txt".to_string()]);
    let err = sink.get(&key("notes/one.txt")).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Reopening an existing working clone works; one for another remote is refused.
    drop(sink);
    let again = open(&url, dir.path().join("a")).await;
    assert_eq!(
        again.get_bytes(&key("notes/two.txt")).await.unwrap(),
        b"2\n"
    );
    let err = GitSink::builder(
        bare_remote(&dir.path().join("x")).to_str().unwrap(),
        dir.path().join("a"),
    )
    .build()
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test]
async fn an_unreachable_remote_fails_clearly_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let err = GitSink::builder(
        "https://user:sekrit@127.0.0.1:9/nothing.git",
        dir.path().join("w"),
    )
    .credentials(stoa_backup_storage::GitCredentials::https_token(
        "user", "tok-123",
    ))
    .build()
    .await
    .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("sekrit") && !text.contains("tok-123"),
        "{text}"
    );
    assert_eq!(err.component(), Some("storage/git"), "{err}");
}

/// Files libgit2 left in the object database's top directory (temporary blob streams).
fn stray_temp_files(workdir: &Path) -> Vec<String> {
    std::fs::read_dir(workdir.join(".git/objects"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn failed_and_dropped_puts_leave_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare_remote(dir.path());
    let workdir = dir.path().join("clone");
    let sink = open(remote.to_str().unwrap(), workdir.clone()).await;
    let run_key = key("runs/20260101T000000Z-abcdef/crds/a.yaml");
    for k in [key("plain/x"), run_key.clone()] {
        let failing: stoa_backup_core::ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from(vec![b'a'; 300_000])),
            Err(stoa_backup_core::Error::source_failed("boom")),
        ]));
        let err = sink.put(&k, failing).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Source);
        let endless: stoa_backup_core::ByteStream = Box::pin(
            futures::stream::iter(vec![Ok(Bytes::from(vec![b'b'; 300_000]))])
                .chain(futures::stream::pending()),
        );
        let r = tokio::time::timeout(std::time::Duration::from_millis(300), sink.put(&k, endless))
            .await;
        assert!(r.is_err(), "the put should still be waiting");
        assert!(!sink.exists(&k).await.unwrap());
    }
    // The blocking writer notices the dropped put on its own thread.
    for _ in 0..50 {
        if stray_temp_files(&workdir).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(stray_temp_files(&workdir), Vec::<String>::new());
    assert!(sink.list("").await.unwrap().is_empty());
    assert!(commits_on(&remote, "main").is_empty());
}

#[tokio::test]
async fn a_manifest_naming_artifacts_never_put_is_refused() {
    use stoa_backup_core::manifest::RunId;
    let dir = tempfile::tempdir().unwrap();
    let remote = bare_remote(dir.path());
    let sink = open(remote.to_str().unwrap(), dir.path().join("clone")).await;
    let run = RunId::generate(chrono::Utc::now());
    let manifest = manifest(&run, &[("crds", "a.yaml")]);
    let err = sink
        .put_bytes(&run.manifest_key(), manifest.to_json().unwrap().into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(!sink.exists(&run.manifest_key()).await.unwrap());
    // Once the artifact is there, the same manifest records the run.
    sink.put_bytes(
        &key(&format!("runs/{run}/crds/a.yaml")),
        Bytes::from_static(b"x"),
    )
    .await
    .unwrap();
    sink.put_bytes(&run.manifest_key(), manifest.to_json().unwrap().into())
        .await
        .unwrap();
    let keys: Vec<String> = sink
        .list("runs")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(
        keys,
        vec![
            format!("runs/{run}/crds/a.yaml"),
            format!("runs/{run}/manifest.json")
        ]
    );
    // Deleting a recorded artifact keeps it (history); forgetting the run hides it.
    sink.delete(&key(&format!("runs/{run}/crds/a.yaml")))
        .await
        .unwrap();
    assert!(sink
        .exists(&key(&format!("runs/{run}/crds/a.yaml")))
        .await
        .unwrap());
    sink.delete(&run.manifest_key()).await.unwrap();
    assert!(sink.list("runs").await.unwrap().is_empty());
    assert_eq!(commits_on(&remote, "main").len(), 1);
}
