//! Several writers pushing to one bare remote at once: no run a writer reported as committed
//! may be lost from the branch (issue #12, bug 5).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stoa_backup_core::manifest::RunId;
use stoa_backup_core::sink::SinkExt;
use stoa_backup_core::{Jitter, RetryPolicy};
use stoa_backup_storage::git::git2::Repository;
use stoa_backup_storage::git::GitSink;
use tokio::sync::Barrier;

use super::{bare_remote, key, manifest};

/// A writer with its own working clone and prefix, patient enough to outlast the others
/// (short back-off, so the test is quick; jitter, so writers that collided spread out).
async fn writer(remote: &str, workdir: PathBuf, prefix: &str) -> GitSink {
    GitSink::builder(remote, workdir)
        .prefix(prefix)
        .author("stoa-test", "test@example.com")
        .push_retry(RetryPolicy {
            attempts: 100,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(250),
            jitter: Jitter::Equal,
        })
        .build()
        .await
        .unwrap()
}

fn state_key(run: &RunId) -> stoa_backup_core::ObjectKey {
    key(&format!("runs/{run}/crds/state.yaml"))
}

/// Puts one artifact and the manifest, waiting at `barrier` in between so that all writers
/// reach their commit point together (a writer whose put failed still waits, so the others
/// are not left hanging). Returns the run if the sink said it is committed.
async fn commit_run(
    sink: &GitSink,
    barrier: &Barrier,
    body: String,
) -> stoa_backup_core::Result<RunId> {
    let run = RunId::generate(chrono::Utc::now());
    let staged = sink.put_bytes(&state_key(&run), Bytes::from(body)).await;
    barrier.wait().await;
    staged?;
    let manifest = manifest(&run, &[("crds", "state.yaml")]).to_json()?;
    sink.put_bytes(&run.manifest_key(), manifest.into()).await?;
    Ok(run)
}

/// Every run is recorded on the remote, its content commit is on the remote's `main`, and
/// a fresh clone reads the run's artifact back.
async fn assert_all_on_main(
    remote: &Path,
    url: &str,
    scratch: &Path,
    runs: &[(String, RunId, String)],
) {
    {
        let repo = Repository::open_bare(remote).unwrap();
        let main = repo.refname_to_id("refs/heads/main").unwrap();
        let mut lost = Vec::new();
        for (prefix, run, body) in runs {
            let refname = format!("refs/stoa-backup/{prefix}/runs/{run}");
            let record = repo
                .refname_to_id(&refname)
                .unwrap_or_else(|e| panic!("{refname} missing on the remote: {e}"));
            let content = repo.find_commit(record).unwrap().parent_id(0).unwrap();
            let on_main = main == content || repo.graph_descendant_of(main, content).unwrap();
            if !on_main {
                lost.push(format!("{prefix} {run}"));
                continue;
            }
            // The content commit holds this run's bytes.
            let tree = repo.find_commit(content).unwrap().tree().unwrap();
            let entry = tree
                .get_path(Path::new(&format!("{prefix}/crds/state.yaml")))
                .unwrap();
            let blob = repo.find_blob(entry.id()).unwrap();
            assert_eq!(blob.content(), body.as_bytes(), "{prefix} {run}");
        }
        assert!(
            lost.is_empty(),
            "{} of {} committed runs are not on main: {lost:?}",
            lost.len(),
            runs.len()
        );
    }
    for (i, (prefix, run, body)) in runs.iter().enumerate() {
        let fresh = writer(url, scratch.join(format!("fresh-{i}")), prefix).await;
        assert_eq!(
            fresh.get_bytes(&state_key(run)).await.unwrap(),
            body.as_bytes(),
            "{prefix} {run}"
        );
        assert!(fresh.exists(&run.manifest_key()).await.unwrap());
    }
}

/// Creates the remote's branch, so that a race is about moving it, not creating it.
async fn seed(url: &str, dir: &Path) {
    let sink = writer(url, dir.join("seed"), "seed").await;
    sink.put_bytes(&key("seed.txt"), Bytes::from_static(b"seed\n"))
        .await
        .unwrap();
}

/// `writers` sinks with their own work dirs and prefixes commit `runs` runs each, all at
/// once; returns every run reported as committed, with its writer's prefix and content.
async fn race(url: &str, dir: &Path, writers: usize, runs: usize) -> Vec<(String, RunId, String)> {
    let barrier = Arc::new(Barrier::new(writers));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let prefix = format!("w{w}");
        let sink = writer(url, dir.join(format!("clone-{w}")), &prefix).await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            let mut failed = Vec::new();
            for r in 0..runs {
                let body = format!("writer {w}, run {r}\n");
                match commit_run(&sink, &barrier, body.clone()).await {
                    Ok(run) => committed.push((prefix.clone(), run, body)),
                    Err(e) => failed.push(format!("writer {w}, run {r}: {e}")),
                }
            }
            (committed, failed)
        }));
    }
    let mut all = Vec::new();
    let mut failures = Vec::new();
    for t in tasks {
        let (committed, failed) = t.await.unwrap();
        all.extend(committed);
        failures.extend(failed);
    }
    assert!(failures.is_empty(), "runs failed: {failures:#?}");
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_a_local_path_remote_lose_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare_remote(dir.path());
    let url = remote.to_str().unwrap().to_string();
    seed(&url, dir.path()).await;
    let runs = race(&url, dir.path(), 4, 6).await;
    assert_eq!(runs.len(), 24);
    assert_all_on_main(&remote, &url, dir.path(), &runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_a_file_url_remote_lose_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare_remote(dir.path());
    let url = format!("file://{}", remote.display());
    seed(&url, dir.path()).await;
    let runs = race(&url, dir.path(), 4, 5).await;
    assert_eq!(runs.len(), 20);
    assert_all_on_main(&remote, &url, dir.path(), &runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_pushes_to_an_empty_remote_all_succeed() {
    // Each round starts from an empty remote: every writer's first push creates the branch.
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let remote = bare_remote(dir.path());
        let url = remote.to_str().unwrap().to_string();
        let runs = race(&url, dir.path(), 4, 1).await;
        assert_eq!(runs.len(), 4, "round {round}");
        assert_all_on_main(&remote, &url, dir.path(), &runs).await;
    }
}

/// A `git daemon` serving the bare repositories under a directory, with pushes enabled.
struct Daemon {
    child: std::process::Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Daemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("git")
            .arg("daemon")
            .args(["--reuseaddr", "--export-all", "--enable=receive-pack"])
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("this test needs `git daemon` (the git package) on PATH");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "git daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, port }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_a_network_remote_lose_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare_remote(dir.path());
    let daemon = Daemon::start(dir.path());
    let url = format!("git://127.0.0.1:{}/remote.git", daemon.port);
    // From an empty remote: the first pushes race to create the branch, too.
    let runs = race(&url, dir.path(), 3, 4).await;
    assert_eq!(runs.len(), 12);
    assert_all_on_main(&remote, &url, dir.path(), &runs).await;
}
