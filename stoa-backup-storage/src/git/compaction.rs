//! History compaction: squashing the branch history older than a horizon, pushed with
//! force-with-lease semantics. Explicit and off by default.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use git2::Oid;
use stoa_backup_core::error::{Error, ErrorKind, Result};

use super::push::{PushFailure, RefUpdate};
use super::tree::commit_time;
use super::{git_error, GitSink, Shared, State};

/// What [`GitSink::compact_history`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Commits folded into the new root commit (0: nothing was older than the horizon).
    pub squashed_commits: usize,
    /// Newer commits re-created on top of the new root.
    pub kept_commits: usize,
    /// Run records re-pointed at the rewritten history.
    pub runs_rewritten: usize,
    /// The new root commit, when history was rewritten.
    pub new_root: Option<String>,
}

impl GitSink {
    /// Squashes the branch history older than `horizon` (measured back from now) into one
    /// root commit, re-creates the newer commits on top of it and re-points run records,
    /// then pushes with force-with-lease semantics: nothing is pushed unless the remote
    /// branch and every rewritten run record still point where they pointed when this call
    /// fetched them. Content of runs still recorded stays restorable (their record trees are
    /// kept); content only reachable through squashed commits is left for the remote's
    /// garbage collection. Off by default: only an explicit call rewrites history.
    pub async fn compact_history(&self, horizon: Duration) -> Result<CompactionReport> {
        self.with_state("compact history", move |sh, st| sh.compact(st, horizon))
            .await
    }
}

impl Shared {
    fn compact(&self, st: &mut State, horizon: Duration) -> Result<CompactionReport> {
        self.sync(st)?;
        let cfg = self.cfg.clone();
        let repo = &st.repo;
        let Ok(tip) = repo.refname_to_id(&cfg.tracking_ref()) else {
            return Ok(CompactionReport::default());
        };
        let horizon = chrono::Duration::from_std(horizon)
            .map_err(|_| Error::config("the compaction horizon is too large"))?;
        let cutoff = Utc::now() - horizon;

        // First-parent history, newest first.
        let mut chain = Vec::new();
        let mut cur = Some(
            repo.find_commit(tip)
                .map_err(|e| git_error(e, "compact history", "cannot read the branch"))?,
        );
        while let Some(c) = cur {
            let parent = c.parent(0).ok();
            chain.push(c);
            cur = parent;
        }
        let Some(boundary) = chain.iter().position(|c| commit_time(c) < cutoff) else {
            return Ok(CompactionReport::default());
        };
        if boundary == chain.len() - 1 && chain[boundary].parent_count() == 0 {
            return Ok(CompactionReport::default()); // already squashed up to the horizon
        }
        let old = &chain[boundary];
        let sig = cfg.signature()?;
        let squashed = chain.len() - boundary;
        let message = format!(
            "stoa-backup: history before {} squashed\n\n{squashed} commits ending at {} were \
             folded into this one by compact_history.\n",
            cutoff.format("%Y-%m-%dT%H:%M:%SZ"),
            old.id()
        );
        let tree = old
            .tree()
            .map_err(|e| git_error(e, "compact history", "cannot read tree"))?;
        let root = repo
            .commit(None, &old.author(), &sig, &message, &tree, &[])
            .map_err(|e| git_error(e, "compact history", "cannot create the root commit"))?;
        let mut map: HashMap<Oid, Oid> = HashMap::new();
        for c in &chain[boundary..] {
            map.insert(c.id(), root);
        }
        let mut new_tip = root;
        for c in chain[..boundary].iter().rev() {
            let parent = repo
                .find_commit(new_tip)
                .map_err(|e| git_error(e, "compact history", "cannot read commit"))?;
            let tree = c
                .tree()
                .map_err(|e| git_error(e, "compact history", "cannot read tree"))?;
            new_tip = repo
                .commit(
                    None,
                    &c.author(),
                    &c.committer(),
                    c.message().unwrap_or(""),
                    &tree,
                    &[&parent],
                )
                .map_err(|e| git_error(e, "compact history", "cannot re-create a commit"))?;
            map.insert(c.id(), new_tip);
        }

        // Re-point run records whose content commit was rewritten.
        let mut updates = vec![RefUpdate::set(cfg.branch_ref(), Some(tip), new_tip)];
        let mut new_refs = vec![(cfg.branch_ref(), new_tip)];
        let refs: Vec<(String, Oid)> = repo
            .references_glob(&cfg.runs_glob())
            .map_err(|e| git_error(e, "compact history", "cannot list run records"))?
            .flatten()
            .filter_map(|r| Some((r.name().ok()?.to_string(), r.target()?)))
            .collect();
        for (name, record) in refs {
            let rc = repo
                .find_commit(record)
                .map_err(|e| git_error(e, "compact history", "cannot read a run record"))?;
            let mut base = rc.parent(0).ok();
            let mut mapped = None;
            while let Some(b) = base {
                if let Some(m) = map.get(&b.id()) {
                    mapped = Some(*m);
                    break;
                }
                base = b.parent(0).ok();
            }
            let Some(mapped) = mapped else { continue };
            let parent = repo
                .find_commit(mapped)
                .map_err(|e| git_error(e, "compact history", "cannot read commit"))?;
            let tree = rc
                .tree()
                .map_err(|e| git_error(e, "compact history", "cannot read tree"))?;
            let new_record = repo
                .commit(
                    None,
                    &rc.author(),
                    &rc.committer(),
                    rc.message().unwrap_or(""),
                    &tree,
                    &[&parent],
                )
                .map_err(|e| git_error(e, "compact history", "cannot re-create a run record"))?;
            updates.push(RefUpdate::set(&name, Some(record), new_record));
            new_refs.push((name, new_record));
        }
        let report = CompactionReport {
            squashed_commits: squashed,
            kept_commits: boundary,
            runs_rewritten: new_refs.len() - 1,
            new_root: Some(root.to_string()),
        };
        drop((tree, chain));
        match self.push(repo, &updates) {
            Ok(()) => {}
            Err(PushFailure::Rejected(why)) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "history not compacted: the remote changed while compacting ({})",
                        cfg.scrub(&why)
                    ),
                )
                .with_operation("compact history")
                .with_hint("nothing was rewritten; run the compaction again"))
            }
            Err(PushFailure::Failed(e)) => return Err(e.or_operation("compact history")),
        }
        for (name, oid) in &new_refs {
            repo.reference(name, *oid, true, "stoa-backup: compact history")
                .map_err(|e| git_error(e, "compact history", "cannot update a local ref"))?;
        }
        repo.reference(
            &cfg.tracking_ref(),
            new_tip,
            true,
            "stoa-backup: compact history",
        )
        .map_err(|e| git_error(e, "compact history", "cannot update the tracking ref"))?;
        self.checkout(repo);
        st.records.clear();
        Ok(report)
    }
}
