//! What forgetting runs and removing files leaves behind: no empty directories in the
//! working tree, no empty trees in the commits (issue #12, "Also").

use std::path::{Path, PathBuf};

use bytes::Bytes;
use stoa_backup_core::manifest::{RunId, RunStatus};
use stoa_backup_core::sink::{Sink, SinkExt};
use stoa_backup_storage::git::git2::{ObjectType, Repository, Tree, TreeWalkMode, TreeWalkResult};

use super::{bare_remote, key, manifest, open};

/// Directories under `root` (`.git` aside) that hold nothing.
fn empty_dirs(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries = std::fs::read_dir(&dir).unwrap().flatten().peekable();
        if entries.peek().is_none() {
            found.push(dir.strip_prefix(root).unwrap().to_path_buf());
        }
        for e in entries {
            if e.file_type().unwrap().is_dir() && e.file_name() != ".git" {
                stack.push(e.path());
            }
        }
    }
    found
}

/// Trees without entries under `tree` (named by path).
fn empty_trees(repo: &Repository, tree: &Tree<'_>) -> Vec<String> {
    let mut found = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(ObjectType::Tree) {
            let sub = repo.find_tree(entry.id()).unwrap();
            if sub.is_empty() {
                found.push(format!("{dir}{}", entry.name().unwrap_or("?")));
            }
        }
        TreeWalkResult::Ok
    })
    .unwrap();
    found
}

fn assert_clean(workdir: &Path, remote: &Path) {
    assert_eq!(
        empty_dirs(workdir),
        Vec::<PathBuf>::new(),
        "empty directories in {}",
        workdir.display()
    );
    let repo = Repository::open_bare(remote).unwrap();
    for r in repo.references().unwrap().flatten() {
        let name = r.name().unwrap().to_string();
        let tree = r.peel_to_tree().unwrap();
        assert_eq!(
            empty_trees(&repo, &tree),
            Vec::<String>::new(),
            "empty trees in {name}"
        );
    }
}

async fn put(sink: &impl Sink, k: &str, body: &'static [u8]) {
    sink.put_bytes(&key(k), Bytes::from_static(body))
        .await
        .unwrap();
}

/// Records a run of `files` (component, name) with the given status: its manifest (or, if
/// not complete, its report) is put last.
async fn run_of(sink: &impl Sink, status: RunStatus, files: &[(&str, &str)]) -> RunId {
    let run = RunId::generate(chrono::Utc::now());
    for (component, name) in files {
        put(sink, &format!("runs/{run}/{component}/{name}"), b"x: 1\n").await;
    }
    let mut m = manifest(&run, files);
    m.status = status;
    let k = if status == RunStatus::Complete {
        run.manifest_key()
    } else {
        run.report_key()
    };
    sink.put_bytes(&k, m.to_json().unwrap().into())
        .await
        .unwrap();
    run
}

#[tokio::test]
async fn forgotten_runs_and_removed_files_leave_no_empty_directories() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare_remote(dir.path());
    let url = remote.to_str().unwrap();
    let workdir = dir.path().join("clone");
    let sink = open(url, workdir.clone()).await;

    // A complete run with a nested resource, then one in which it disappeared.
    let first = run_of(
        &sink,
        RunStatus::Complete,
        &[("crds", "ns/a/b.yaml"), ("crds", "c.yaml")],
    )
    .await;
    assert!(workdir.join("crds/ns/a/b.yaml").is_file());
    let second = run_of(&sink, RunStatus::Complete, &[("crds", "c.yaml")]).await;
    assert!(
        !workdir.join("crds/ns").exists(),
        "the removed resource's directories stay"
    );
    assert_clean(&workdir, &remote);

    // A failed run (content only in its record), a verification put and deleted again.
    let failed = run_of(&sink, RunStatus::Failed, &[("grafana", "folders/x/d.json")]).await;
    assert!(!workdir.join("grafana").exists());
    let verification = key(&format!("runs/{second}/verifications/check.json"));
    sink.put_bytes(&verification, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    sink.delete(&verification).await.unwrap();
    assert_clean(&workdir, &remote);

    // Retention forgets the failed run and the first complete one.
    sink.delete(&failed.report_key()).await.unwrap();
    sink.delete(&first.manifest_key()).await.unwrap();
    assert!(!sink.exists(&failed.report_key()).await.unwrap());
    assert_clean(&workdir, &remote);

    // Plain keys in nested directories, deleted here and by another clone.
    put(&sink, "notes/deep/one.txt", b"1\n").await;
    put(&sink, "notes/deep/two.txt", b"2\n").await;
    sink.delete(&key("notes/deep/one.txt")).await.unwrap();
    assert_clean(&workdir, &remote);
    let other = open(url, dir.path().join("other")).await;
    other.delete(&key("notes/deep/two.txt")).await.unwrap();
    sink.refresh().await.unwrap();
    assert!(!workdir.join(".stoa-backup/keys/notes").exists());
    assert_clean(&workdir, &remote);
    assert_clean(&dir.path().join("other"), &remote);
}

#[test]
fn the_emptiness_checks_find_what_they_look_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::create_dir_all(dir.path().join(".git/x")).unwrap();
    std::fs::write(dir.path().join("a/f"), b"").unwrap();
    assert_eq!(empty_dirs(dir.path()), vec![PathBuf::from("a/b")]);

    let repo = Repository::init_bare(dir.path().join("r.git")).unwrap();
    let empty = repo.treebuilder(None).unwrap().write().unwrap();
    let mut b = repo.treebuilder(None).unwrap();
    b.insert("hollow", empty, 0o040000).unwrap();
    let tree = repo.find_tree(b.write().unwrap()).unwrap();
    assert_eq!(empty_trees(&repo, &tree), vec!["hollow".to_string()]);
}
