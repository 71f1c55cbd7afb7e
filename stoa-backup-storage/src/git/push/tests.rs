//! Pushes racing other writers, made deterministic by the race hook: on a local path remote
//! and on a network remote (`git daemon`, which compares and swaps like any Git server).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use git2::{Commit, Oid, Repository};
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::sink::{Sink, SinkExt};

use super::*;
use crate::git::{blocking, GitSink};

/// A `git daemon` serving the bare repositories under a directory, with pushes enabled.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("git")
            .arg("daemon")
            .args(["--reuseaddr", "--export-all", "--enable=receive-pack"])
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("these tests need `git daemon` (the git package) on PATH");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, port }
    }

    fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A bare remote `r.git` in `dir`, reached as a local path or through a `git daemon`.
struct Remote {
    path: PathBuf,
    url: String,
    _daemon: Option<Daemon>,
}

fn remote(dir: &Path, network: bool) -> Remote {
    let path = dir.join("r.git");
    Repository::init_bare(&path).unwrap();
    let daemon = network.then(|| Daemon::start(dir));
    let url = match &daemon {
        Some(d) => d.url("r.git"),
        None => path.to_str().unwrap().to_string(),
    };
    Remote {
        path,
        url,
        _daemon: daemon,
    }
}

async fn sink_on(remote: &Remote, workdir: PathBuf) -> GitSink {
    GitSink::builder(&remote.url, workdir)
        .push_retry(stoa_backup_core::RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(5),
            ..stoa_backup_core::RetryPolicy::default()
        })
        .build()
        .await
        .unwrap()
}

fn main_tip(remote: &Path) -> Option<Oid> {
    Repository::open_bare(remote)
        .unwrap()
        .refname_to_id("refs/heads/main")
        .ok()
}

/// Another writer's commit of `path` on the remote's `main`, made directly in the bare
/// repository on top of `parent` (the current tip when `None`; the branch is created if
/// missing) and forced onto the branch.
fn commit_behind_our_back(remote: &Path, path: &str, parent: Option<Oid>) -> Oid {
    let repo = Repository::open_bare(remote).unwrap();
    let parent = parent
        .or_else(|| repo.refname_to_id("refs/heads/main").ok())
        .map(|o| repo.find_commit(o).unwrap());
    let base = match &parent {
        Some(p) => p.tree().unwrap(),
        None => repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap(),
    };
    let blob = repo.blob(b"theirs\n").unwrap();
    let mut b = git2::build::TreeUpdateBuilder::new();
    b.upsert(path, blob, git2::FileMode::Blob);
    let tree = repo
        .find_tree(b.create_updated(&repo, &base).unwrap())
        .unwrap();
    let sig = git2::Signature::now("other", "other@example.com").unwrap();
    let parents: Vec<&Commit<'_>> = parent.iter().collect();
    let commit = repo
        .commit(None, &sig, &sig, "another writer", &tree, &parents)
        .unwrap();
    repo.reference("refs/heads/main", commit, true, "another writer")
        .unwrap();
    commit
}

/// At the first time a push reaches `point`, runs `race` (the other writer) once.
fn race_once(sink: &GitSink, point: RacePoint, race: impl FnOnce() + Send + 'static) {
    let mut race = Some(race);
    *sink.shared.race_hook.lock().unwrap() = Some(Box::new(move |at| {
        if at == point {
            if let Some(race) = race.take() {
                race();
            }
        }
    }));
}

fn tip_has(remote: &Path, path: &str) -> bool {
    let repo = Repository::open_bare(remote).unwrap();
    let tip = repo.refname_to_id("refs/heads/main").unwrap();
    let tree = repo.find_commit(tip).unwrap().tree().unwrap();
    tree.get_path(Path::new(path)).is_ok()
}

async fn put(sink: &GitSink, key: &str) {
    sink.put_bytes(&ObjectKey::new(key).unwrap(), Bytes::from_static(b"ours\n"))
        .await
        .unwrap();
}

/// Another writer moves the branch after the sink read the remote and before it moved the
/// ref: its commit must stay, and ours must land on top of it.
async fn branch_moved_during_the_push(network: bool) {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path(), network);
    let sink = sink_on(&remote, dir.path().join("w")).await;
    put(&sink, "first").await;
    let path = remote.path.clone();
    race_once(&sink, RacePoint::Negotiated, move || {
        commit_behind_our_back(&path, "theirs.txt", None);
    });
    put(&sink, "second").await;
    assert!(
        tip_has(&remote.path, "theirs.txt"),
        "the other writer's commit was lost"
    );
    assert!(
        tip_has(&remote.path, ".stoa-backup/keys/second"),
        "our commit is not on main"
    );
    assert!(tip_has(&remote.path, ".stoa-backup/keys/first"));
}

#[tokio::test]
async fn a_branch_moved_during_the_push_keeps_both_commits() {
    branch_moved_during_the_push(false).await;
}

#[tokio::test]
async fn a_branch_moved_during_a_network_push_keeps_both_commits() {
    branch_moved_during_the_push(true).await;
}

/// Another writer creates the branch on the empty remote while the sink's first push is
/// under way: a race to replay on top of it, not an error.
async fn branch_created_during_the_first_push(network: bool) {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path(), network);
    let sink = sink_on(&remote, dir.path().join("w")).await;
    let path = remote.path.clone();
    race_once(&sink, RacePoint::Negotiated, move || {
        commit_behind_our_back(&path, "theirs.txt", None);
    });
    put(&sink, "mine").await;
    assert!(
        tip_has(&remote.path, "theirs.txt"),
        "the other writer's commit was lost"
    );
    assert!(
        tip_has(&remote.path, ".stoa-backup/keys/mine"),
        "our commit is not on main"
    );
}

#[tokio::test]
async fn a_branch_created_during_the_first_push_is_built_upon() {
    branch_created_during_the_first_push(false).await;
}

#[tokio::test]
async fn a_branch_created_during_the_first_network_push_is_built_upon() {
    branch_created_during_the_first_push(true).await;
}

#[tokio::test]
async fn a_network_push_the_remote_lost_afterwards_is_detected_and_replayed() {
    // A server that does not compare and swap: right after our push, another writer's
    // forced push replaces our commit by one on our parent. The verification must see it.
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path(), true);
    let sink = sink_on(&remote, dir.path().join("w")).await;
    put(&sink, "first").await;
    let first = main_tip(&remote.path).unwrap();
    let path = remote.path.clone();
    race_once(&sink, RacePoint::Pushed, move || {
        commit_behind_our_back(&path, "theirs.txt", Some(first));
    });
    put(&sink, "second").await;
    assert!(tip_has(&remote.path, "theirs.txt"));
    assert!(
        tip_has(&remote.path, ".stoa-backup/keys/second"),
        "the lost commit was not replayed"
    );
}

#[tokio::test]
async fn a_network_push_built_upon_at_once_is_confirmed_without_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path(), true);
    let sink = sink_on(&remote, dir.path().join("w")).await;
    put(&sink, "first").await;
    let path = remote.path.clone();
    race_once(&sink, RacePoint::Pushed, move || {
        commit_behind_our_back(&path, "theirs.txt", None);
    });
    put(&sink, "second").await;
    // Our commit is the parent of theirs: it was confirmed as it was, not replayed.
    let ours: Oid = sink.head_commit().await.unwrap().unwrap().parse().unwrap();
    let repo = Repository::open_bare(&remote.path).unwrap();
    let tip = repo.find_commit(main_tip(&remote.path).unwrap()).unwrap();
    assert_eq!(tip.parent_id(0).unwrap(), ours);
    assert!(tip_has(&remote.path, ".stoa-backup/keys/second"));
}

/// Pushes with a stale expectation are refused and push nothing; with the right one they
/// go through, even when they rewind the branch (compaction does).
async fn expectations_are_compared(network: bool) {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path(), network);
    let sink = sink_on(&remote, dir.path().join("w")).await;
    put(&sink, "a").await;
    put(&sink, "b").await;
    let shared = sink.shared.clone();
    let path = remote.path.clone();
    blocking(move || {
        let st = shared.state.lock().unwrap();
        let second = main_tip(&path).unwrap();
        let first = st.repo.find_commit(second).unwrap().parent_id(0).unwrap();
        let main = "refs/heads/main";
        let rewind = |expected| [RefUpdate::set(main, expected, first)];
        for stale in [Some(first), None] {
            let pushed = shared.push(&st.repo, &rewind(stale));
            assert!(
                matches!(pushed, Err(PushFailure::Rejected(_))),
                "{pushed:?}"
            );
            assert_eq!(main_tip(&path), Some(second), "a stale expectation pushed");
        }
        shared.push(&st.repo, &rewind(Some(second))).unwrap();
        assert_eq!(main_tip(&path), Some(first));

        // A ref that must not exist yet; then deleting it, stale and right.
        let other = "refs/stoa-backup/test";
        shared
            .push(&st.repo, &[RefUpdate::set(other, None, first)])
            .unwrap();
        let again = shared.push(&st.repo, &[RefUpdate::set(other, None, second)]);
        assert!(matches!(again, Err(PushFailure::Rejected(_))), "{again:?}");
        let stale = shared.push(&st.repo, &[RefUpdate::delete(other, Some(second))]);
        assert!(matches!(stale, Err(PushFailure::Rejected(_))), "{stale:?}");
        shared
            .push(&st.repo, &[RefUpdate::delete(other, Some(first))])
            .unwrap();
        let repo = Repository::open_bare(&path).unwrap();
        assert!(repo.find_reference(other).is_err());
        // Deleting what is already gone is done.
        shared
            .push(&st.repo, &[RefUpdate::delete(other, Some(first))])
            .unwrap();
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn local_pushes_compare_and_swap() {
    expectations_are_compared(false).await;
}

#[tokio::test]
async fn network_pushes_compare_and_swap() {
    expectations_are_compared(true).await;
}

#[tokio::test]
async fn a_held_ref_lock_is_a_race_and_pushes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path(), false);
    let sink = sink_on(&remote, dir.path().join("w")).await;
    put(&sink, "a").await;
    let before = main_tip(&remote.path);
    let lock = remote.path.join("refs/heads/main.lock");
    std::fs::write(&lock, b"").unwrap();
    let err = sink
        .put_bytes(&ObjectKey::new("b").unwrap(), Bytes::from_static(b"b"))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        stoa_backup_core::ErrorKind::Unavailable,
        "{err}"
    );
    assert!(err.to_string().contains("main.lock"), "{err}");
    assert_eq!(main_tip(&remote.path), before);
    // Once the lock is gone, the next put goes through.
    std::fs::remove_file(&lock).unwrap();
    put(&sink, "b").await;
    assert!(tip_has(&remote.path, ".stoa-backup/keys/b"));
}

#[tokio::test]
async fn a_non_bare_local_remote_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("checkout");
    Repository::init(&remote).unwrap();
    let sink = GitSink::builder(remote.to_str().unwrap(), dir.path().join("w"))
        .build()
        .await
        .unwrap();
    let err = sink
        .put_bytes(&ObjectKey::new("a").unwrap(), Bytes::from_static(b"a"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), stoa_backup_core::ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("bare"), "{err}");
    let err = sink.preflight().await.unwrap_err();
    assert_eq!(err.kind(), stoa_backup_core::ErrorKind::Config, "{err}");
    assert_eq!(err.operation(), Some("preflight"), "{err}");
}

#[test]
fn local_remotes_are_recognised_like_libgit2_does() {
    let dir = tempfile::tempdir().unwrap();
    let spaced = dir.path().join("with space");
    std::fs::create_dir(&spaced).unwrap();
    let shown = spaced.to_str().unwrap();
    assert_eq!(local_remote_path(shown), Some(spaced.clone()));
    assert_eq!(
        local_remote_path(&format!("file://{}", shown.replace(' ', "%20"))),
        Some(spaced.clone())
    );
    assert_eq!(
        local_remote_path(&format!("file://localhost{shown}")),
        Some(spaced.clone())
    );
    // An escape that is not one stays as it is.
    assert_eq!(
        local_remote_path("file:///a%2/b%zz%41"),
        Some(PathBuf::from("/a%2/b%zzA"))
    );
    assert_eq!(local_remote_path("file://host/x"), None);
    assert_eq!(
        local_remote_path(&dir.path().join("missing").display().to_string()),
        None
    );
    for url in [
        "https://example.com/r.git",
        "ssh://git@example.com/r.git",
        "git@example.com:r.git",
        "git://127.0.0.1/r.git",
    ] {
        assert_eq!(local_remote_path(url), None, "{url}");
    }
}
