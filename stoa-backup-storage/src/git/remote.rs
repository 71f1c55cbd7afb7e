//! Talking to the remote: fetching, and moving the branch with a commit that is replayed
//! on the remote's branch when a concurrent writer got there first (pushes themselves are
//! compare-and-swaps: see [`push`](super::push)).

use git2::build::CheckoutBuilder;
use git2::{
    AutotagOption, Commit, Direction, ErrorCode, FetchOptions, FetchPrune, Oid, Repository,
};
use stoa_backup_core::error::{Error, ErrorKind, Result};

use super::push::{local_remote_path, open_local_remote, PushFailure, RefUpdate};
use super::tree::{apply_changes, change_summary, is_empty_tree, Change};
use super::{git_error, Shared, State, REMOTE};

impl Shared {
    /// Fetches the branch and the run records (pruning records deleted on the remote) and
    /// moves the local branch to the remote's.
    pub(super) fn sync(&self, st: &mut State) -> Result<()> {
        let cfg = &self.cfg;
        let repo = &st.repo;
        let mut remote = repo
            .find_remote(REMOTE)
            .map_err(|e| git_error(e, "fetch", "the working clone has no remote"))?;
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(cfg.callbacks());
        fo.prune(FetchPrune::On);
        fo.download_tags(AutotagOption::None);
        let specs = [
            format!("+{}:{}", cfg.branch_ref(), cfg.tracking_ref()),
            format!("+refs/{0}/runs/*:refs/{0}/runs/*", cfg.namespace),
        ];
        remote.fetch(&specs, Some(&mut fo), None).map_err(|e| {
            git_error(e, "fetch", "cannot fetch from the remote")
                .or_hint("check the remote URL, the network and the credentials")
        })?;
        drop(remote);
        if let Ok(tracking) = repo.refname_to_id(&cfg.tracking_ref()) {
            let local = repo.refname_to_id(&cfg.branch_ref()).ok();
            if local != Some(tracking) {
                self.set_branch(repo, tracking, "stoa-backup: sync with the remote")?;
            }
        }
        Ok(())
    }

    pub(super) fn check_push_access(&self, repo: &Repository) -> Result<()> {
        if let Some(path) = local_remote_path(self.cfg.remote.as_str()) {
            // Pushes write into it directly (see `push`): it must be a bare repository.
            open_local_remote(&path, "preflight")?;
        }
        let mut remote = repo
            .find_remote(REMOTE)
            .map_err(|e| git_error(e, "preflight", "the working clone has no remote"))?;
        let conn = remote
            .connect_auth(Direction::Push, Some(self.cfg.callbacks()), None)
            .map_err(|e| {
                git_error(e, "preflight", "cannot connect to the remote for pushing")
                    .or_hint("check the credentials: they must allow pushing")
            })?;
        drop(conn);
        Ok(())
    }

    pub(super) fn set_branch(&self, repo: &Repository, oid: Oid, why: &str) -> Result<()> {
        repo.reference(&self.cfg.branch_ref(), oid, true, why)
            .map_err(|e| git_error(e, "update branch", "cannot move the local branch"))?;
        self.checkout(repo);
        Ok(())
    }

    /// Updates the working tree to the branch (best effort: the repository is the truth).
    pub(super) fn checkout(&self, repo: &Repository) {
        if !self.cfg.checkout {
            return;
        }
        let mut co = CheckoutBuilder::new();
        co.force();
        if let Err(e) = repo.checkout_head(Some(&mut co)) {
            if e.code() != ErrorCode::UnbornBranch {
                tracing::warn!(error = %self.cfg.scrub(e.message()), "cannot check out the working tree");
            }
        }
    }

    pub(super) fn branch_tip<'r>(&self, repo: &'r Repository) -> Result<Option<Commit<'r>>> {
        match repo.refname_to_id(&self.cfg.branch_ref()) {
            Ok(oid) => Ok(Some(repo.find_commit(oid).map_err(|e| {
                git_error(e, "read branch", "the branch points at no commit")
            })?)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git_error(e, "read branch", "cannot read the branch")),
        }
    }

    /// Applies `changes` to the branch, commits (if the tree changed) and pushes as a
    /// compare-and-swap of the branch from the commit it was built on. When a concurrent
    /// writer moved the branch, waits as the push retry policy says (with jitter, so that
    /// writers do not collide again), fetches and replays the change on the remote's branch
    /// (the other writer's commits stay). Returns the commit that holds the change (`None`:
    /// the branch does not exist and nothing was to be written).
    pub(super) fn update_branch(
        &self,
        st: &mut State,
        changes: &[Change],
        message: &str,
        force_commit: bool,
    ) -> Result<Option<Oid>> {
        let cfg = &self.cfg;
        let policy = cfg.push_retry;
        let attempts = policy.max_attempts();
        let mut last_rejection = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                std::thread::sleep(policy.delay(attempt - 1, None));
                self.sync(st)?;
            }
            let repo = &st.repo;
            let base = self.branch_tip(repo)?;
            let base_tree = match &base {
                Some(c) => Some(
                    c.tree()
                        .map_err(|e| git_error(e, "commit", "cannot read tree"))?,
                ),
                None => None,
            };
            let new_tree = apply_changes(repo, base_tree.as_ref(), changes)?;
            let unchanged = match &base_tree {
                Some(t) => t.id() == new_tree,
                None => !force_commit && is_empty_tree(repo, new_tree)?,
            };
            if unchanged {
                return Ok(base.map(|c| c.id()));
            }
            let tree = repo
                .find_tree(new_tree)
                .map_err(|e| git_error(e, "commit", "cannot read the new tree"))?;
            let sig = cfg.signature()?;
            let parents: Vec<&Commit<'_>> = base.iter().collect();
            let full_message = match &base_tree {
                Some(t) => format!("{message}{}", change_summary(repo, t, &tree)),
                None => message.to_string(),
            };
            let commit = repo
                .commit(None, &sig, &sig, &full_message, &tree, &parents)
                .map_err(|e| git_error(e, "commit", "cannot create the commit"))?;
            let update = RefUpdate::set(cfg.branch_ref(), base.as_ref().map(|c| c.id()), commit);
            drop(parents);
            drop((tree, base_tree, base));
            match self.push(repo, &[update]) {
                Ok(()) => {
                    repo.reference(&cfg.tracking_ref(), commit, true, "stoa-backup: pushed")
                        .map_err(|e| git_error(e, "commit", "cannot update the tracking ref"))?;
                    self.set_branch(repo, commit, "stoa-backup: commit")?;
                    return Ok(Some(commit));
                }
                Err(PushFailure::Rejected(why)) => {
                    tracing::info!(
                        attempt,
                        attempts,
                        reason = %cfg.scrub(&why),
                        "push rejected: the remote branch moved; fetching and replaying"
                    );
                    last_rejection = why;
                }
                Err(PushFailure::Failed(e)) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "the remote branch kept moving: push rejected {attempts} times (last: {})",
                cfg.scrub(&last_rejection)
            ),
        )
        .with_operation("push")
        .with_hint("another writer pushes very often; retry later, or raise push_attempts"))
    }
}
