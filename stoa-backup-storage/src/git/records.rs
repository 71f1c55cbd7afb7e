//! Puts: streaming objects into the repository, committing plain keys in groups, and the
//! commit point of a run: its content on the branch and its run record
//! (`refs/<namespace>/runs/<id>`).

use std::collections::BTreeMap;
use std::io::Write as _;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use git2::build::TreeUpdateBuilder;
use git2::{Commit, FileMode, Oid, Repository};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::manifest::{Manifest, RunId, MANIFEST_FILE, REPORT_FILE, RUNS_PREFIX};
use stoa_backup_core::stream::ByteStream;

use super::push::{PushFailure, RefUpdate};
use super::tree::{apply_changes, empty_tree, Change};
use super::{
    blocking, git_error, GitSink, KeyKind, PendingRun, Queued, Shared, Staged, State, COMPONENT,
    PUT_CHANNEL,
};

impl GitSink {
    /// Commits a change to a plain key, together with whatever other plain changes are
    /// queued at the time (one commit and one push for a burst of concurrent puts).
    pub(super) async fn plain_change(&self, key: &ObjectKey, oid: Option<Oid>) -> Result<()> {
        let shared = self.shared.clone();
        let item = Queued {
            ticket: 0,
            key: key.clone(),
            path: shared.cfg.plain_path(key),
            oid,
        };
        let op = if oid.is_some() { "put" } else { "delete" };
        blocking(move || {
            let ticket = {
                let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
                let ticket = q.next_ticket;
                q.next_ticket += 1;
                q.items.push(Queued { ticket, ..item });
                ticket
            };
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            let batch = {
                let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(done) = q.results.remove(&ticket) {
                    return done;
                }
                std::mem::take(&mut q.items)
            };
            let result = shared.commit_plain(&mut st, &batch).map_err(|e| {
                shared
                    .cfg
                    .scrub_error(e)
                    .or_component(COMPONENT)
                    .or_operation(op)
            });
            // Publish the outcome to the other writers of the batch before releasing the
            // repository, so each finds its result when it gets the lock.
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            for item in batch.iter().filter(|i| i.ticket != ticket) {
                let r = match &result {
                    Ok(()) => Ok(()),
                    // Every writer of the failed group gets the same failure, with its own key.
                    Err(e) => Err(e.duplicate().with_artifact(item.key.as_str())),
                };
                q.results.insert(item.ticket, r);
            }
            drop(q);
            drop(st);
            result
        })
        .await
        .map_err(|e| e.or_artifact(key.as_str()))
    }

    /// Streams `stream` into a new blob, with bounded memory, without holding the lock. A
    /// failing or dropped stream leaves no blob (libgit2 removes its temporary file).
    pub(super) async fn stage_blob(
        &self,
        key: &ObjectKey,
        mut stream: ByteStream,
    ) -> Result<Staged> {
        enum Msg {
            Chunk(Bytes),
            End,
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(PUT_CHANNEL);
        let gitdir = self.gitdir();
        let k = key.clone();
        let writer = tokio::task::spawn_blocking(move || -> Result<Option<Oid>> {
            let repo = Repository::open(&gitdir)
                .map_err(|e| git_error(e, "put", "cannot open the working clone"))?;
            let mut w = repo
                .blob_writer(None)
                .map_err(|e| git_error(e, "put", "cannot start writing the object"))?;
            loop {
                match rx.blocking_recv() {
                    Some(Msg::Chunk(b)) => w.write_all(&b).map_err(|e| {
                        Error::from_io(e, "writing the object into the repository failed")
                            .with_artifact(k.as_str())
                            .with_hint("check free space on the working clone's volume")
                    })?,
                    Some(Msg::End) => {
                        let oid = w
                            .commit()
                            .map_err(|e| git_error(e, "put", "cannot store the object"))?;
                        return Ok(Some(oid));
                    }
                    // The put was dropped or its stream failed: drop the writer, which
                    // removes its temporary file.
                    None => return Ok(None),
                }
            }
        });
        let mut size = 0u64;
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(b) => {
                    size += b.len() as u64;
                    if b.is_empty() {
                        continue;
                    }
                    if tx.send(Msg::Chunk(b)).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    failed = Some(e.or_operation("put").or_artifact(key.as_str()));
                    break;
                }
            }
        }
        if let Some(e) = failed {
            drop(tx);
            // The stream's error is the one to report; the writer only stops on it.
            writer.await.ok();
            return Err(e);
        }
        // If the writer is gone, awaiting it below returns its error.
        tx.send(Msg::End).await.ok();
        drop(tx);
        let oid = writer
            .await
            .map_err(|e| Error::internal(format!("the object writer task failed: {e}")))?
            .map_err(|e| {
                self.shared
                    .cfg
                    .scrub_error(e)
                    .or_component(COMPONENT)
                    .or_operation("put")
                    .or_artifact(key.as_str())
            })?
            .ok_or_else(|| {
                Error::internal("the object writer stopped early")
                    .with_component(COMPONENT)
                    .with_operation("put")
                    .with_artifact(key.as_str())
            })?;
        Ok(Staged {
            oid,
            size,
            at: Utc::now(),
        })
    }
}

impl Shared {
    /// Creates the run record ref (`previous` is `None`) or moves it from `previous` to
    /// `record` (a fast-forward: new record commits descend from the previous one), as a
    /// compare-and-swap on the remote.
    fn push_record(
        &self,
        st: &mut State,
        run: &RunId,
        previous: Option<Oid>,
        record: Oid,
    ) -> Result<()> {
        let refname = self.cfg.run_ref(run);
        match self.push(&st.repo, &[RefUpdate::set(&refname, previous, record)]) {
            Ok(()) => {}
            Err(PushFailure::Rejected(why)) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "the run record of {run} was changed by another writer: {}",
                        self.cfg.scrub(&why)
                    ),
                )
                .with_operation("push run record")
                .with_hint("refresh the sink and retry"))
            }
            Err(PushFailure::Failed(e)) => return Err(e),
        }
        st.repo
            .reference(&refname, record, true, "stoa-backup: run record")
            .map_err(|e| git_error(e, "record run", "cannot write the run record ref"))?;
        Ok(())
    }

    fn commit_plain(&self, st: &mut State, batch: &[Queued]) -> Result<()> {
        // The last change per path wins (queue order is arrival order).
        let mut last: BTreeMap<&str, (&ObjectKey, Option<Oid>)> = BTreeMap::new();
        for q in batch {
            last.insert(q.path.as_str(), (&q.key, q.oid));
        }
        let changes: Vec<Change> = last
            .iter()
            .map(|(path, (_, oid))| match oid {
                Some(oid) => Change::Put(path.to_string(), *oid),
                None => Change::Remove(path.to_string()),
            })
            .collect();
        let describe = |(k, oid): &(&ObjectKey, Option<Oid>)| {
            format!("{} {k}", if oid.is_some() { "put" } else { "delete" })
        };
        let message = if last.len() == 1 {
            format!(
                "stoa-backup: {}\n",
                describe(last.values().next().expect("one"))
            )
        } else {
            let mut m = format!("stoa-backup: {} objects changed\n\n", last.len());
            for d in last.values().take(50) {
                m.push_str(&format!("  {}\n", describe(d)));
            }
            m
        };
        self.update_branch(st, &changes, &message, false)?;
        Ok(())
    }

    pub(super) fn put_staged(
        &self,
        st: &mut State,
        key: &ObjectKey,
        kind: KeyKind,
        staged: Staged,
    ) -> Result<()> {
        match kind {
            KeyKind::Plain => Err(Error::internal(
                "plain keys are committed through the queue",
            )),
            KeyKind::Artifact { run, .. } => {
                if self.record_of(st, &run)?.is_some() {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!("run {run} is already recorded; its artifacts are part of Git history and cannot be replaced"),
                    )
                    .with_operation("put")
                    .with_hint("write the artifact in a new run"));
                }
                st.pending
                    .entry(run)
                    .or_default()
                    .artifacts
                    .insert(key.clone(), staged);
                Ok(())
            }
            KeyKind::RunFile { run, file } => {
                if let Some(record) = self.record_of(st, &run)? {
                    let changes = [Change::Put(self.cfg.run_file_path(&file), staged.oid)];
                    return self.update_record(st, &run, record, &changes, &format!("put {file}"));
                }
                if file == MANIFEST_FILE || file == REPORT_FILE {
                    return self.record_run(st, &run, &file, staged);
                }
                st.pending
                    .entry(run)
                    .or_default()
                    .files
                    .insert(file, staged);
                Ok(())
            }
        }
    }

    /// The commit point of a run: commits its content (complete runs only) and records it.
    fn record_run(&self, st: &mut State, run: &RunId, file: &str, staged: Staged) -> Result<()> {
        let cfg = self.cfg.clone();
        let complete = file == MANIFEST_FILE;
        let manifest = {
            let blob = st
                .repo
                .find_blob(staged.oid)
                .map_err(|e| git_error(e, "record run", "cannot read the manifest back"))?;
            Manifest::from_json(blob.content())?
        };
        if &manifest.run_id != run {
            return Err(Error::integrity(format!(
                "the manifest stored under run {run} names run {}",
                manifest.run_id
            ))
            .with_operation("record run"));
        }
        let empty = PendingRun::default();
        let pending = st.pending.get(run).unwrap_or(&empty);

        // One tree per component of the run, holding exactly the run's artifacts.
        let mut by_component: BTreeMap<&str, Vec<(&str, Staged)>> = BTreeMap::new();
        for a in &manifest.artifacts {
            let staged = pending.artifacts.get(&a.key).copied().ok_or_else(|| {
                Error::integrity(format!(
                    "the manifest lists {} but no such artifact was put in this run",
                    a.key
                ))
                .with_operation("record run")
                .with_hint("artifacts must be put through the same sink before the manifest")
            })?;
            let prefix = format!("{RUNS_PREFIX}/{run}/{}/", a.component);
            let name = a.key.as_str().strip_prefix(&prefix).ok_or_else(|| {
                Error::integrity(format!(
                    "artifact key {} does not follow runs/<id>/<component>/<name>",
                    a.key
                ))
                .with_operation("record run")
            })?;
            by_component
                .entry(a.component.as_str())
                .or_default()
                .push((name, staged));
        }
        let mut content_changes = Vec::new();
        for (component, files) in &by_component {
            let mut b = TreeUpdateBuilder::new();
            for (name, s) in files {
                b.upsert(*name, s.oid, FileMode::Blob);
            }
            let empty_tree = empty_tree(&st.repo)?;
            let tree = b
                .create_updated(&st.repo, &empty_tree)
                .map_err(|e| git_error(e, "record run", "cannot build the component's tree"))?;
            content_changes.push(Change::Dir(cfg.path(component), Some(tree)));
        }
        let mut record_changes: Vec<Change> = pending
            .files
            .iter()
            .map(|(f, s)| Change::Put(cfg.run_file_path(f), s.oid))
            .collect();
        record_changes.push(Change::Put(cfg.run_file_path(file), staged.oid));

        let components: Vec<&str> = by_component.keys().copied().collect();
        let base = if complete {
            let message = format!(
                "stoa-backup run {run}: {}\n",
                if components.is_empty() {
                    "(no artifacts)".to_string()
                } else {
                    components.join(", ")
                }
            );
            self.update_branch(st, &content_changes, &message, true)?
        } else {
            self.branch_tip(&st.repo)?.map(|c| c.id())
        };

        // The record commit: the run's content plus its run files, on top of `base`.
        let repo = &st.repo;
        let base_commit = match base {
            Some(oid) => Some(
                repo.find_commit(oid)
                    .map_err(|e| git_error(e, "record run", "cannot read the branch commit"))?,
            ),
            None => None,
        };
        let base_tree = match &base_commit {
            Some(c) => Some(
                c.tree()
                    .map_err(|e| git_error(e, "record run", "cannot read tree"))?,
            ),
            None => None,
        };
        let content_tree = if complete {
            base_tree.as_ref().map(|t| t.id())
        } else {
            Some(apply_changes(repo, base_tree.as_ref(), &content_changes)?)
        };
        let content_tree = match content_tree {
            Some(t) => Some(
                repo.find_tree(t)
                    .map_err(|e| git_error(e, "record run", "cannot read tree"))?,
            ),
            None => None,
        };
        let record_tree = apply_changes(repo, content_tree.as_ref(), &record_changes)?;
        let record_tree = repo
            .find_tree(record_tree)
            .map_err(|e| git_error(e, "record run", "cannot read tree"))?;
        let sig = cfg.signature()?;
        let parents: Vec<&Commit<'_>> = base_commit.iter().collect();
        let message = format!(
            "stoa-backup run record {run} ({})\n\nStoa-Backup-Run: {run}\nStoa-Backup-Status: {}\n",
            if components.is_empty() {
                "no artifacts".to_string()
            } else {
                components.join(", ")
            },
            manifest.status
        );
        let record = repo
            .commit(None, &sig, &sig, &message, &record_tree, &parents)
            .map_err(|e| git_error(e, "record run", "cannot create the run record commit"))?;
        drop((record_tree, content_tree, base_tree, base_commit));
        self.push_record(st, run, None, record)?;
        st.pending.remove(run);
        Ok(())
    }

    /// A new record commit on top of `record` with `changes` applied to its tree.
    pub(super) fn update_record(
        &self,
        st: &mut State,
        run: &RunId,
        record: Oid,
        changes: &[Change],
        what: &str,
    ) -> Result<()> {
        let repo = &st.repo;
        let old = repo
            .find_commit(record)
            .map_err(|e| git_error(e, "update run record", "cannot read the run record"))?;
        let old_tree = old
            .tree()
            .map_err(|e| git_error(e, "update run record", "cannot read tree"))?;
        let new_tree = apply_changes(repo, Some(&old_tree), changes)?;
        if new_tree == old_tree.id() {
            return Ok(());
        }
        let tree = repo
            .find_tree(new_tree)
            .map_err(|e| git_error(e, "update run record", "cannot read tree"))?;
        let sig = self.cfg.signature()?;
        let message = format!("stoa-backup run record {run}: {what}\n\nStoa-Backup-Run: {run}\n");
        let commit = repo
            .commit(None, &sig, &sig, &message, &tree, &[&old])
            .map_err(|e| git_error(e, "update run record", "cannot create the commit"))?;
        drop((tree, old_tree, old));
        self.push_record(st, run, Some(record), commit)
    }
}
