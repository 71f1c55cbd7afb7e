//! Reads: resolving keys to blobs (branch, run records, pending runs) and listing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use git2::{ErrorCode, ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};
use stoa_backup_core::error::Result;
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::manifest::{Manifest, RunId, RUNS_PREFIX};
use stoa_backup_core::sink::ObjectMeta;

use super::tree::{blob_at, commit_time};
use super::{classify, git_error, GitSinkConfig, KeyKind, Shared, State, KEYS_DIR, META_DIR};

/// The keys of one recorded run, read from its record commit.
pub(super) struct RecordInfo {
    time: DateTime<Utc>,
    pub(super) complete: bool,
    pub(super) keys: BTreeMap<ObjectKey, (Oid, u64)>,
}

impl Shared {
    pub(super) fn record_of(&self, st: &State, run: &RunId) -> Result<Option<Oid>> {
        match st.repo.refname_to_id(&self.cfg.run_ref(run)) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git_error(
                e,
                "read run record",
                "cannot read the run record",
            )),
        }
    }

    pub(super) fn record_info(
        &self,
        st: &mut State,
        run: &RunId,
        record: Oid,
    ) -> Result<Arc<RecordInfo>> {
        if let Some(info) = st.records.get(&record) {
            return Ok(info.clone());
        }
        let info = Arc::new(read_record(&self.cfg, &st.repo, run, record)?);
        st.records.insert(record, info.clone());
        Ok(info)
    }

    /// The blob (and size) under `key`, if any.
    pub(super) fn resolve(&self, st: &mut State, key: &ObjectKey) -> Result<Option<(Oid, u64)>> {
        match classify(key) {
            KeyKind::Plain => {
                let Some(tip) = self.branch_tip(&st.repo)? else {
                    return Ok(None);
                };
                let tree = tip
                    .tree()
                    .map_err(|e| git_error(e, "get", "cannot read tree"))?;
                blob_at(&st.repo, &tree, &self.cfg.plain_path(key))
            }
            KeyKind::Artifact { ref run, .. } | KeyKind::RunFile { ref run, .. } => {
                if let Some(record) = self.record_of(st, run)? {
                    let info = self.record_info(st, run, record)?;
                    return Ok(info.keys.get(key).copied());
                }
                let Some(p) = st.pending.get(run) else {
                    return Ok(None);
                };
                let staged = match classify(key) {
                    KeyKind::RunFile { file, .. } => p.files.get(&file).copied(),
                    _ => p.artifacts.get(key).copied(),
                };
                Ok(staged.map(|s| (s.oid, s.size)))
            }
        }
    }

    pub(super) fn list(&self, st: &mut State, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        // Plain keys: files under <prefix>/.stoa-backup/keys on the branch.
        if let Some(tip) = self.branch_tip(&st.repo)? {
            let tree = tip
                .tree()
                .map_err(|e| git_error(e, "list", "cannot read tree"))?;
            let root = self.cfg.path(&format!("{META_DIR}/{KEYS_DIR}"));
            let (start, rel_base) = if prefix.is_empty() {
                (root.clone(), String::new())
            } else {
                (format!("{root}/{prefix}"), prefix.to_string())
            };
            let odb = st
                .repo
                .odb()
                .map_err(|e| git_error(e, "list", "cannot open the object database"))?;
            let time = commit_time(&tip);
            match tree.get_path(Path::new(&start)) {
                Ok(entry) if entry.kind() == Some(ObjectType::Blob) => {
                    let size = odb.read_header(entry.id()).map(|h| h.0 as u64).unwrap_or(0);
                    if let Ok(key) = ObjectKey::new(rel_base.as_str()) {
                        out.push(ObjectMeta {
                            key,
                            size,
                            last_modified: Some(time),
                        });
                    }
                }
                Ok(entry) if entry.kind() == Some(ObjectType::Tree) => {
                    let sub = st
                        .repo
                        .find_tree(entry.id())
                        .map_err(|e| git_error(e, "list", "cannot read tree"))?;
                    sub.walk(TreeWalkMode::PreOrder, |dir, e| {
                        if e.kind() != Some(ObjectType::Blob) {
                            return TreeWalkResult::Ok;
                        }
                        let Ok(name) = e.name() else {
                            return TreeWalkResult::Ok;
                        };
                        let rel = match (rel_base.is_empty(), dir.is_empty()) {
                            (true, _) => format!("{dir}{name}"),
                            (false, _) => format!("{rel_base}/{dir}{name}"),
                        };
                        if let Ok(key) = ObjectKey::new(rel) {
                            let size = odb.read_header(e.id()).map(|h| h.0 as u64).unwrap_or(0);
                            out.push(ObjectMeta {
                                key,
                                size,
                                last_modified: Some(time),
                            });
                        }
                        TreeWalkResult::Ok
                    })
                    .map_err(|e| git_error(e, "list", "cannot walk the tree"))?;
                }
                _ => {}
            }
        }

        // Run keys: recorded runs and pending runs.
        let covers_runs = prefix.is_empty()
            || prefix == RUNS_PREFIX
            || prefix.starts_with(&format!("{RUNS_PREFIX}/"));
        if covers_runs {
            let only_run = prefix.split('/').nth(1).map(str::to_string);
            let mut records = Vec::new();
            {
                let refs = st
                    .repo
                    .references_glob(&self.cfg.runs_glob())
                    .map_err(|e| git_error(e, "list", "cannot list run records"))?;
                let base = format!("refs/{}/runs/", self.cfg.namespace);
                for r in refs.flatten() {
                    let (Ok(name), Some(oid)) = (r.name(), r.target()) else {
                        continue;
                    };
                    let Some(id) = name.strip_prefix(&base) else {
                        continue;
                    };
                    if id.contains('/') || only_run.as_deref().is_some_and(|o| o != id) {
                        continue;
                    }
                    if let Ok(run) = RunId::parse(id) {
                        records.push((run, oid));
                    }
                }
            }
            let recorded: BTreeSet<RunId> = records.iter().map(|(r, _)| r.clone()).collect();
            for (run, oid) in records {
                let info = match self.record_info(st, &run, oid) {
                    Ok(i) => i,
                    Err(e) => {
                        tracing::warn!(run = %run, error = %e, "skipping an unreadable run record");
                        continue;
                    }
                };
                for (key, (_, size)) in &info.keys {
                    if key.starts_with_prefix(prefix) {
                        out.push(ObjectMeta {
                            key: key.clone(),
                            size: *size,
                            last_modified: Some(info.time),
                        });
                    }
                }
            }
            for (run, p) in &st.pending {
                if recorded.contains(run) || only_run.as_deref().is_some_and(|o| o != run.as_str())
                {
                    continue;
                }
                let files = p.files.iter().filter_map(|(f, s)| {
                    ObjectKey::new(format!("{}/{f}", run.prefix()))
                        .ok()
                        .map(|k| (k, *s))
                });
                for (key, s) in p
                    .artifacts
                    .iter()
                    .map(|(k, s)| (k.clone(), *s))
                    .chain(files)
                {
                    if key.starts_with_prefix(prefix) {
                        out.push(ObjectMeta {
                            key,
                            size: s.size,
                            last_modified: Some(s.at),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        Ok(out)
    }
}

/// Reads the keys of a run from its record commit.
fn read_record(
    cfg: &GitSinkConfig,
    repo: &Repository,
    run: &RunId,
    record: Oid,
) -> Result<RecordInfo> {
    let commit = repo
        .find_commit(record)
        .map_err(|e| git_error(e, "read run record", "cannot read the run record commit"))?;
    let tree = commit
        .tree()
        .map_err(|e| git_error(e, "read run record", "cannot read tree"))?;
    let odb = repo
        .odb()
        .map_err(|e| git_error(e, "read run record", "cannot open the object database"))?;
    let mut keys = BTreeMap::new();
    let run_dir = cfg.run_file_path("");
    let run_dir = run_dir.trim_end_matches('/');
    if let Ok(entry) = tree.get_path(Path::new(run_dir)) {
        if let Ok(sub) = repo.find_tree(entry.id()) {
            sub.walk(TreeWalkMode::PreOrder, |dir, e| {
                if e.kind() == Some(ObjectType::Blob) {
                    if let Ok(name) = e.name() {
                        if let Ok(k) = ObjectKey::new(format!("{}/{dir}{name}", run.prefix())) {
                            let size = odb.read_header(e.id()).map(|h| h.0 as u64).unwrap_or(0);
                            keys.insert(k, (e.id(), size));
                        }
                    }
                }
                TreeWalkResult::Ok
            })
            .map_err(|e| git_error(e, "read run record", "cannot walk the tree"))?;
        }
    }
    let complete = keys.contains_key(&run.manifest_key());
    let record_file = if complete {
        Some(run.manifest_key())
    } else if keys.contains_key(&run.report_key()) {
        Some(run.report_key())
    } else {
        None
    };
    if let Some(k) = record_file {
        let (oid, _) = keys[&k];
        let blob = repo
            .find_blob(oid)
            .map_err(|e| git_error(e, "read run record", "cannot read the manifest"))?;
        let manifest = Manifest::from_json(blob.content())?;
        for a in &manifest.artifacts {
            let prefix = format!("{}/{}/", run.prefix(), a.component);
            let Some(name) = a.key.as_str().strip_prefix(&prefix) else {
                continue;
            };
            let path = cfg.path(&format!("{}/{name}", a.component));
            match blob_at(repo, &tree, &path)? {
                Some((oid, size)) => {
                    keys.insert(a.key.clone(), (oid, size));
                }
                None => {
                    tracing::warn!(run = %run, key = %a.key, "run record lacks an artifact its manifest lists")
                }
            }
        }
    }
    Ok(RecordInfo {
        time: commit_time(&commit),
        complete,
        keys,
    })
}
