//! Whole pipeline runs into a Git sink pushing to a real bare repository: one commit per
//! change (none for an unchanged run), readable diffs, byte-identical restores, concurrent
//! writers, catalog and retention over run records, and history compaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use stoa_backup::core::source::{ArtifactPlan, Export, ExportContext, PreflightReport, Source};
use stoa_backup::core::stream::{from_reader, ByteStream};
use stoa_backup::core::verify::ChecksumVerifier;
use stoa_backup::core::{
    restore_each, ArtifactRecord, Catalog, ExistingDataPolicy, KeepRules, Keyring, Manifest,
    PerArtifact, Pipeline, RestoreContext, RestoreOptions, RestoreReport, Restorer, RunFilter,
    RunStatus, ZstdCodec,
};
use stoa_backup::storage::git::git2::{self, Oid, Repository, Signature};
use stoa_backup::storage::GitSink;

use crate::restore_support::restore_component;

const PREFIX: &str = "clusters/test";

type Hook = Box<dyn FnOnce() + Send>;

/// Every `*.yaml` file of a directory, as diffable text artifacts of one component.
struct YamlDir {
    component: String,
    dir: PathBuf,
    /// Called once, when the first artifact is exported (to interleave another writer).
    on_export: Mutex<Option<Hook>>,
}

impl std::fmt::Debug for YamlDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YamlDir")
            .field("component", &self.component)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl YamlDir {
    fn new(component: &str, dir: &Path) -> Self {
        YamlDir {
            component: component.to_string(),
            dir: dir.to_path_buf(),
            on_export: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Source for YamlDir {
    fn component(&self) -> &str {
        &self.component
    }
    fn provider(&self) -> &str {
        "yaml-dir"
    }
    async fn preflight(&self) -> stoa_backup::core::Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> stoa_backup::core::Result<Vec<ArtifactPlan>> {
        Ok(yaml_files(&self.dir)
            .into_iter()
            .map(|name| ArtifactPlan::new(name, "application/yaml").text(true))
            .collect())
    }
    async fn export(
        &self,
        artifact: &ArtifactPlan,
        _ctx: &ExportContext,
    ) -> stoa_backup::core::Result<Export> {
        let hook = self.on_export.lock().unwrap().take();
        if let Some(hook) = hook {
            tokio::task::spawn_blocking(hook).await.unwrap();
        }
        let f = tokio::fs::File::open(self.dir.join(&artifact.name)).await?;
        Ok(Export::new(from_reader(f)))
    }
}

/// Collects restored bytes in memory, by artifact name (reads them in a plan too, keeps them
/// only when restoring).
#[derive(Debug, Default)]
struct Collect {
    got: Mutex<BTreeMap<String, Vec<u8>>>,
}

#[async_trait]
impl Restorer for Collect {
    fn component(&self) -> &str {
        "crds"
    }
    async fn restore(&self, ctx: &RestoreContext<'_>) -> stoa_backup::core::Result<RestoreReport> {
        restore_each(self, ctx).await
    }
}

#[async_trait]
impl PerArtifact for Collect {
    async fn restore_one(
        &self,
        artifact: &ArtifactRecord,
        plain: ByteStream,
        options: &RestoreOptions,
    ) -> stoa_backup::core::Result<RestoreReport> {
        let bytes = stoa_backup::core::stream::collect(plain).await?;
        if !options.dry_run {
            self.got
                .lock()
                .unwrap()
                .insert(artifact.name.clone(), bytes);
        }
        Ok(RestoreReport::default())
    }
}

fn yaml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// A copy of the CRD fixtures to back up (and change).
fn source_dir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("source");
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = stoa_backup_test_support::fixtures::path("crds");
    let names = yaml_files(&fixtures);
    assert!(
        names.len() >= 3,
        "fixtures missing under {}",
        fixtures.display()
    );
    for n in names {
        std::fs::copy(fixtures.join(&n), dir.join(&n)).unwrap();
    }
    dir
}

fn bare_remote(tmp: &Path) -> PathBuf {
    let path = tmp.join("remote.git");
    Repository::init_bare(&path).unwrap();
    path
}

async fn git_sink(remote: &Path, workdir: PathBuf) -> Arc<GitSink> {
    Arc::new(
        GitSink::builder(format!("file://{}", remote.display()), workdir)
            .prefix(PREFIX)
            .author("stoa-backup-test", "backup@example.com")
            .build()
            .await
            .expect("open the git sink"),
    )
}

fn pipeline(sink: Arc<GitSink>, source: YamlDir) -> Pipeline {
    Pipeline::builder()
        .source(source)
        .sink(sink)
        .compression(ZstdCodec::default())
        .verifier(ChecksumVerifier::new())
        .build()
        .unwrap()
}

/// Commits of the remote's branch, newest first.
fn history(remote: &Path) -> Vec<Oid> {
    let repo = Repository::open_bare(remote).unwrap();
    let Ok(tip) = repo.refname_to_id("refs/heads/main") else {
        return Vec::new();
    };
    let mut walk = repo.revwalk().unwrap();
    walk.push(tip).unwrap();
    walk.map(|o| o.unwrap()).collect()
}

/// Paths changed between two commits of the remote.
fn changed_paths(remote: &Path, old: Oid, new: Oid) -> Vec<String> {
    let repo = Repository::open_bare(remote).unwrap();
    let a = repo.find_commit(old).unwrap().tree().unwrap();
    let b = repo.find_commit(new).unwrap().tree().unwrap();
    let diff = repo.diff_tree_to_tree(Some(&a), Some(&b), None).unwrap();
    diff.deltas()
        .map(|d| d.new_file().path().unwrap().display().to_string())
        .collect()
}

fn file_at(remote: &Path, commit: Oid, path: &str) -> Vec<u8> {
    let repo = Repository::open_bare(remote).unwrap();
    let tree = repo.find_commit(commit).unwrap().tree().unwrap();
    let entry = tree.get_path(Path::new(path)).unwrap();
    let bytes = repo.find_blob(entry.id()).unwrap().content().to_vec();
    bytes
}

/// Restores the run and returns the bytes of its artifact `name`.
async fn restore(sink: &Arc<GitSink>, manifest: &Manifest, name: &str) -> Vec<u8> {
    let collect = Arc::new(Collect::default());
    restore_component(
        sink.clone(),
        manifest,
        &Keyring::default(),
        collect.clone(),
        ExistingDataPolicy::Fail,
        false,
    )
    .await
    .unwrap();
    let mut got = collect.got.lock().unwrap();
    got.remove(name)
        .unwrap_or_else(|| panic!("{name} not in run {}", manifest.run_id))
}

#[tokio::test]
async fn unchanged_runs_make_no_commit_and_a_change_makes_a_one_file_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_dir(tmp.path());
    let remote = bare_remote(tmp.path());
    let sink = git_sink(&remote, tmp.path().join("clone")).await;
    let names = yaml_files(&src);

    let run1 = pipeline(sink.clone(), YamlDir::new("crds", &src))
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let commits = history(&remote);
    assert_eq!(commits.len(), 1, "the first run makes one commit");
    // Plain text, not compressed: the pipeline skipped zstd for text artifacts.
    for a in &run1.manifest.artifacts {
        assert!(
            a.codecs.is_empty(),
            "{} was encoded: {:?}",
            a.name,
            a.codecs
        );
    }
    for n in &names {
        assert_eq!(
            file_at(&remote, commits[0], &format!("{PREFIX}/crds/{n}")),
            std::fs::read(src.join(n)).unwrap(),
            "{n} is not stored as the same plain file"
        );
    }
    let repo = Repository::open_bare(&remote).unwrap();
    let c = repo.find_commit(commits[0]).unwrap();
    let msg = c.message().unwrap().to_string();
    assert!(
        msg.contains(run1.run_id.as_str()) && msg.contains("crds"),
        "{msg}"
    );
    assert_eq!(c.author().name().ok(), Some("stoa-backup-test"));
    // The run is recorded on the remote.
    assert!(repo.refname_to_id(&sink.run_ref(&run1.run_id)).is_ok());
    drop(c);
    drop(repo);

    // The same directory again: a complete run, but no new commit.
    let run2 = pipeline(sink.clone(), YamlDir::new("crds", &src))
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(
        history(&remote),
        commits,
        "an unchanged run must not commit"
    );

    // Change one file: one more commit, touching only that file.
    let changed = &names[1];
    let original = std::fs::read(src.join(changed)).unwrap();
    let mut edited = original.clone();
    edited.extend_from_slice(b"# edited by the test\n");
    std::fs::write(src.join(changed), &edited).unwrap();
    let run3 = pipeline(sink.clone(), YamlDir::new("crds", &src))
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let after = history(&remote);
    assert_eq!(after.len(), 2, "one change, one commit");
    assert_eq!(
        changed_paths(&remote, after[1], after[0]),
        vec![format!("{PREFIX}/crds/{changed}")]
    );

    // The catalog lists the three runs from the run records.
    let catalog = Catalog::new(sink.clone());
    let runs = catalog.list_runs(&RunFilter::default()).await.unwrap();
    let ids: Vec<_> = runs.iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(
        ids,
        vec![
            run3.run_id.clone(),
            run2.run_id.clone(),
            run1.run_id.clone()
        ]
    );
    assert!(runs
        .iter()
        .all(|r| r.status == RunStatus::Complete && r.verified));

    // Restores: the first run gives the original bytes back, the last one the edit; also
    // through a fresh clone that only knows the remote.
    let fresh = git_sink(&remote, tmp.path().join("fresh")).await;
    let fresh_catalog = Catalog::new(fresh.clone());
    for s in [&sink, &fresh] {
        let m1 = Catalog::new(s.clone())
            .read_manifest(&run1.run_id)
            .await
            .unwrap();
        assert_eq!(restore(s, &m1, changed).await, original);
        for n in &names {
            let want = if n == changed {
                original.clone()
            } else {
                std::fs::read(src.join(n)).unwrap()
            };
            assert_eq!(restore(s, &m1, n).await, want, "{n} of run 1");
        }
        let m3 = Catalog::new(s.clone())
            .read_manifest(&run3.run_id)
            .await
            .unwrap();
        assert_eq!(restore(s, &m3, changed).await, edited);
    }
    assert_eq!(
        fresh_catalog
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn a_push_after_another_clone_advanced_the_remote_keeps_its_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_dir(tmp.path());
    let remote = bare_remote(tmp.path());
    let sink = git_sink(&remote, tmp.path().join("clone")).await;
    pipeline(sink.clone(), YamlDir::new("crds", &src))
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(history(&remote).len(), 1);

    // While the next run exports (after the sink's preflight fetched), another clone
    // pushes a commit of its own.
    let other_dir = tmp.path().join("other");
    let remote_url = format!("file://{}", remote.display());
    let source = YamlDir::new("crds", &src);
    let other = other_dir.clone();
    *source.on_export.lock().unwrap() = Some(Box::new(move || {
        let repo = git2::build::RepoBuilder::new()
            .branch("main")
            .clone(&remote_url, &other)
            .unwrap();
        std::fs::write(other.join("README.md"), "Backups of the test cluster\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("README.md")).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        let sig = Signature::now("someone else", "else@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "docs: readme", &tree, &[&head])
            .unwrap();
        repo.find_remote("origin")
            .unwrap()
            .push(&["refs/heads/main:refs/heads/main"], None)
            .unwrap();
    }));
    let names = yaml_files(&src);
    let changed = &names[0];
    let mut edited = std::fs::read(src.join(changed)).unwrap();
    edited.extend_from_slice(b"# second run\n");
    std::fs::write(src.join(changed), &edited).unwrap();
    let run2 = pipeline(sink.clone(), source)
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();

    let commits = history(&remote);
    assert_eq!(
        commits.len(),
        3,
        "first run, the other clone's commit, the second run"
    );
    let repo = Repository::open_bare(&remote).unwrap();
    let tip = repo.find_commit(commits[0]).unwrap();
    assert!(tip.message().unwrap().contains(run2.run_id.as_str()));
    assert_eq!(
        repo.find_commit(commits[1]).unwrap().message().ok(),
        Some("docs: readme")
    );
    assert_eq!(
        file_at(&remote, commits[0], "README.md"),
        b"Backups of the test cluster\n"
    );
    assert_eq!(
        file_at(&remote, commits[0], &format!("{PREFIX}/crds/{changed}")),
        edited
    );
    assert_eq!(
        changed_paths(&remote, commits[1], commits[0]),
        vec![format!("{PREFIX}/crds/{changed}")]
    );
    let m2 = Catalog::new(sink.clone())
        .read_manifest(&run2.run_id)
        .await
        .unwrap();
    assert_eq!(restore(&sink, &m2, changed).await, edited);
}

#[tokio::test]
async fn retention_forgets_run_records_while_history_keeps_the_content() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_dir(tmp.path());
    let remote = bare_remote(tmp.path());
    let sink = git_sink(&remote, tmp.path().join("clone")).await;
    let names = yaml_files(&src);
    let changed = &names[2];
    let original = std::fs::read(src.join(changed)).unwrap();

    let run1 = pipeline(sink.clone(), YamlDir::new("crds", &src))
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    std::fs::write(src.join(changed), b"kind: Changed\n").unwrap();
    let run2 = pipeline(sink.clone(), YamlDir::new("crds", &src))
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();

    // Another clone applies retention (keep the newest run only).
    let other = git_sink(&remote, tmp.path().join("other")).await;
    let catalog = Catalog::new(other.clone());
    let plan = catalog
        .plan_retention(&KeepRules::new().keep_last(1), chrono::Utc::now())
        .await
        .unwrap();
    let removed = catalog.apply_retention(&plan).await.unwrap();
    assert_eq!(removed, vec![run1.run_id.clone()]);
    let listed: Vec<_> = catalog
        .list_all()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(listed, vec![run2.run_id.clone()]);

    // The remote no longer records run 1; the first clone sees that once it syncs.
    let repo = Repository::open_bare(&remote).unwrap();
    assert!(repo.refname_to_id(&sink.run_ref(&run1.run_id)).is_err());
    assert!(repo.refname_to_id(&sink.run_ref(&run2.run_id)).is_ok());
    sink.refresh().await.unwrap();
    let listed = Catalog::new(sink.clone()).list_all().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].run_id, run2.run_id);

    // History still holds run 1's content.
    let commits = history(&remote);
    assert_eq!(commits.len(), 2);
    assert_eq!(
        file_at(&remote, commits[1], &format!("{PREFIX}/crds/{changed}")),
        original
    );
}

#[tokio::test]
async fn compaction_squashes_old_history_and_keeps_recorded_runs_restorable() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_dir(tmp.path());
    let remote = bare_remote(tmp.path());
    let sink = git_sink(&remote, tmp.path().join("clone")).await;
    let names = yaml_files(&src);
    let changed = &names[0];
    let original = std::fs::read(src.join(changed)).unwrap();
    let mut runs = Vec::new();
    for i in 0..3 {
        if i > 0 {
            std::fs::write(src.join(changed), format!("kind: Version{i}\n")).unwrap();
        }
        runs.push(
            pipeline(sink.clone(), YamlDir::new("crds", &src))
                .run()
                .await
                .unwrap()
                .into_result()
                .unwrap(),
        );
    }
    assert_eq!(history(&remote).len(), 3);

    // Nothing is older than a day: nothing to do.
    let report = sink
        .compact_history(Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(report.squashed_commits, 0);
    assert_eq!(history(&remote).len(), 3);

    // Everything older than now (commit times have a one-second resolution).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = sink.compact_history(Duration::ZERO).await.unwrap();
    assert_eq!(report.squashed_commits, 3);
    assert_eq!(report.runs_rewritten, 3);
    let commits = history(&remote);
    assert_eq!(commits.len(), 1, "history squashed into one commit");
    assert_eq!(
        file_at(&remote, commits[0], &format!("{PREFIX}/crds/{changed}")),
        b"kind: Version2\n"
    );

    // Every recorded run is still listed and restorable, from a fresh clone too.
    let fresh = git_sink(&remote, tmp.path().join("fresh")).await;
    for s in [&sink, &fresh] {
        let catalog = Catalog::new(s.clone());
        assert_eq!(
            catalog
                .list_runs(&RunFilter::default())
                .await
                .unwrap()
                .len(),
            3
        );
        let m1 = catalog.read_manifest(&runs[0].run_id).await.unwrap();
        assert_eq!(restore(s, &m1, changed).await, original);
    }
    // The sink keeps working on the rewritten branch.
    std::fs::write(src.join(changed), b"kind: Version3\n").unwrap();
    pipeline(fresh.clone(), YamlDir::new("crds", &src))
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(history(&remote).len(), 2);
}

#[tokio::test]
async fn verifications_and_pins_update_the_run_record_without_touching_the_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_dir(tmp.path());
    let remote = bare_remote(tmp.path());
    let sink = git_sink(&remote, tmp.path().join("clone")).await;
    let run = pipeline(sink.clone(), YamlDir::new("crds", &src))
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let catalog = Catalog::new(sink.clone());
    let repo = Repository::open_bare(&remote).unwrap();
    let record_ref = sink.run_ref(&run.run_id);
    let record0 = repo.refname_to_id(&record_ref).unwrap();

    let v = catalog
        .verify_run(&run.run_id, &[ChecksumVerifier::new()], &Keyring::default())
        .await
        .unwrap();
    assert!(v.ok);
    catalog.set_pinned(&run.run_id, true).await.unwrap();
    let record2 = repo.refname_to_id(&record_ref).unwrap();
    // Record updates fast-forward: the new record commit descends from the first.
    assert!(repo.graph_descendant_of(record2, record0).unwrap());
    assert_eq!(
        history(&remote).len(),
        1,
        "record updates make no branch commit"
    );

    let fresh = git_sink(&remote, tmp.path().join("fresh")).await;
    let runs = Catalog::new(fresh.clone()).list_all().await.unwrap();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].pinned && runs[0].verified);

    catalog.set_pinned(&run.run_id, false).await.unwrap();
    fresh.refresh().await.unwrap();
    let runs = Catalog::new(fresh).list_all().await.unwrap();
    assert!(!runs[0].pinned);
}

/// A source whose only artifact always fails.
#[derive(Debug)]
struct Broken;

#[async_trait]
impl Source for Broken {
    fn component(&self) -> &str {
        "broken"
    }
    fn provider(&self) -> &str {
        "test"
    }
    async fn preflight(&self) -> stoa_backup::core::Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> stoa_backup::core::Result<Vec<ArtifactPlan>> {
        Ok(vec![
            ArtifactPlan::new("x.yaml", "application/yaml").text(true)
        ])
    }
    async fn export(
        &self,
        _artifact: &ArtifactPlan,
        _ctx: &ExportContext,
    ) -> stoa_backup::core::Result<Export> {
        Err(stoa_backup::core::Error::source_failed(
            "the test source always fails",
        ))
    }
}

#[tokio::test]
async fn a_partial_run_is_recorded_off_the_branch_and_retention_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_dir(tmp.path());
    let remote = bare_remote(tmp.path());
    let sink = git_sink(&remote, tmp.path().join("clone")).await;
    let partial = Pipeline::builder()
        .source(YamlDir::new("crds", &src))
        .source(Broken)
        .sink(sink.clone())
        .attempts(1)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(partial.status, RunStatus::Partial);
    assert!(
        history(&remote).is_empty(),
        "only complete runs reach the branch"
    );
    let catalog = Catalog::new(sink.clone());
    let incomplete = catalog.incomplete_runs().await.unwrap();
    assert_eq!(incomplete.len(), 1);
    assert_eq!(incomplete[0].status, RunStatus::Partial);
    // Its stored artifacts are kept in its record, for diagnosis.
    let name = &yaml_files(&src)[0];
    let key =
        stoa_backup::core::ObjectKey::new(format!("runs/{}/crds/{name}", partial.run_id)).unwrap();
    assert_eq!(
        stoa_backup::core::SinkExt::get_bytes(sink.as_ref(), &key)
            .await
            .unwrap(),
        std::fs::read(src.join(name)).unwrap()
    );

    let good = pipeline(sink.clone(), YamlDir::new("crds", &src))
        .run()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(history(&remote).len(), 1);
    let plan = catalog
        .plan_retention(
            &KeepRules::new()
                .keep_last(5)
                .incomplete_grace(chrono::Duration::zero()),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let removed = catalog.apply_retention(&plan).await.unwrap();
    assert_eq!(removed, vec![partial.run_id.clone()]);
    let all: Vec<_> = catalog
        .list_all()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(all, vec![good.run_id]);
    let repo = Repository::open_bare(&remote).unwrap();
    assert!(repo.refname_to_id(&sink.run_ref(&partial.run_id)).is_err());
}
