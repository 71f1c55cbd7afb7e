//! Talking to the remote: fetching, pushing (fast-forward or with a lease), and moving the
//! branch with a commit that is re-applied when a concurrent writer got there first.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use git2::build::CheckoutBuilder;
use git2::{
    AutotagOption, Commit, Direction, ErrorCode, FetchOptions, FetchPrune, Oid, PushOptions,
    Repository,
};
use stoa_backup_core::error::{Error, ErrorKind, Result};

use super::tree::{apply_changes, change_summary, is_empty_tree, Change};
use super::{git_error, Shared, State, REMOTE};

/// Why a push did not happen.
pub(super) enum PushFailure {
    /// Rejected because the remote moved (non-fast-forward, stale lease): fetch and retry.
    Rejected(String),
    /// Anything else.
    Failed(Error),
}

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

    /// Pushes `specs`; with `lease`, aborts unless each destination ref on the remote is
    /// still at the given commit (`None`: must not exist).
    pub(super) fn push(
        &self,
        repo: &Repository,
        specs: &[String],
        lease: Option<&HashMap<String, Option<Oid>>>,
    ) -> std::result::Result<(), PushFailure> {
        let mut remote = repo.find_remote(REMOTE).map_err(|e| {
            PushFailure::Failed(git_error(e, "push", "the working clone has no remote"))
        })?;
        let statuses: RefCell<Vec<(String, String)>> = RefCell::new(Vec::new());
        let stale: RefCell<Vec<String>> = RefCell::new(Vec::new());
        {
            let mut cb = self.cfg.callbacks();
            cb.push_update_reference(|refname, status| {
                if let Some(msg) = status {
                    statuses
                        .borrow_mut()
                        .push((refname.to_string(), msg.to_string()));
                }
                Ok(())
            });
            if let Some(lease) = lease {
                cb.push_negotiation(|updates| {
                    for u in updates {
                        let Ok(dst) = u.dst_refname() else { continue };
                        if let Some(expected) = lease.get(dst) {
                            let actual = (!u.src().is_zero()).then(|| u.src());
                            if actual != *expected {
                                stale.borrow_mut().push(dst.to_string());
                            }
                        }
                    }
                    if stale.borrow().is_empty() {
                        Ok(())
                    } else {
                        Err(git2::Error::from_str(
                            "the remote changed since it was fetched (lease is stale)",
                        ))
                    }
                });
            }
            let mut po = PushOptions::new();
            po.remote_callbacks(cb);
            if let Err(e) = remote.push(specs, Some(&mut po)) {
                if !stale.borrow().is_empty() {
                    return Err(PushFailure::Rejected(format!(
                        "stale lease on {}",
                        stale.borrow().join(", ")
                    )));
                }
                if e.code() == ErrorCode::NotFastForward {
                    return Err(PushFailure::Rejected(e.message().to_string()));
                }
                return Err(PushFailure::Failed(
                    git_error(e, "push", "cannot push to the remote").or_hint(
                        "check the remote URL, the network and that the credentials allow pushing",
                    ),
                ));
            }
        }
        let statuses = statuses.into_inner();
        if let Some((r, msg)) = statuses.first() {
            let lower = msg.to_ascii_lowercase();
            if [
                "non-fast-forward",
                "fetch first",
                "stale",
                "rejected",
                "failed to lock",
            ]
            .iter()
            .any(|w| lower.contains(w))
            {
                return Err(PushFailure::Rejected(format!("{r}: {msg}")));
            }
            return Err(PushFailure::Failed(
                Error::storage(format!("the remote refused to update {r}: {msg}"))
                    .with_operation("push")
                    .with_hint("check the remote's branch protection and hooks"),
            ));
        }
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

    /// Applies `changes` to the branch, commits (if the tree changed) and pushes, re-applying
    /// on the remote's branch when a concurrent writer moved it. Returns the branch tip that
    /// holds the change (`None`: the branch does not exist and nothing was to be written).
    pub(super) fn update_branch(
        &self,
        st: &mut State,
        changes: &[Change],
        message: &str,
        force_commit: bool,
    ) -> Result<Option<Oid>> {
        let cfg = &self.cfg;
        let mut last_rejection = String::new();
        for attempt in 1..=cfg.push_attempts {
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
            let pushed = self.push(repo, &[format!("{commit}:{}", cfg.branch_ref())], None);
            drop(parents);
            drop((tree, base_tree, base));
            let repo = &st.repo;
            match pushed {
                Ok(()) => {
                    repo.reference(&cfg.tracking_ref(), commit, true, "stoa-backup: pushed")
                        .map_err(|e| git_error(e, "commit", "cannot update the tracking ref"))?;
                    self.set_branch(repo, commit, "stoa-backup: commit")?;
                    return Ok(Some(commit));
                }
                Err(PushFailure::Rejected(why)) => {
                    tracing::info!(attempt, reason = %cfg.scrub(&why), "push rejected: the remote branch moved; fetching and re-applying");
                    last_rejection = why;
                    self.sync(st)?;
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
                }
                Err(PushFailure::Failed(e)) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "the remote branch kept moving: push rejected {} times (last: {})",
                cfg.push_attempts,
                cfg.scrub(&last_rejection)
            ),
        )
        .with_operation("push")
        .with_hint("another writer pushes very often; retry later, or raise push_attempts"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bytes::Bytes;
    use stoa_backup_core::key::ObjectKey;
    use stoa_backup_core::sink::Sink;

    use super::*;
    use crate::git::{blocking, GitSink};

    #[tokio::test]
    async fn force_with_lease_refuses_a_remote_that_moved() {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("r.git");
        Repository::init_bare(&remote).unwrap();
        let sink = GitSink::builder(remote.to_str().unwrap(), dir.path().join("w"))
            .build()
            .await
            .unwrap();
        let k = ObjectKey::new("a").unwrap();
        for body in [&b"1"[..], &b"2"[..]] {
            sink.put(
                &k,
                stoa_backup_core::stream::once(Bytes::copy_from_slice(body)),
            )
            .await
            .unwrap();
        }
        let shared = sink.shared.clone();
        blocking(move || {
            let st = shared.state.lock().unwrap();
            let tip = |r: &Path| {
                Repository::open_bare(r)
                    .unwrap()
                    .refname_to_id("refs/heads/main")
                    .unwrap()
            };
            let second = tip(&remote);
            let first = st.repo.find_commit(second).unwrap().parent_id(0).unwrap();
            // Rewind the branch to the first commit, believing the remote is still there.
            let spec = vec![format!("+{first}:refs/heads/main")];
            let mut lease = HashMap::new();
            lease.insert("refs/heads/main".to_string(), Some(first));
            assert!(matches!(
                shared.push(&st.repo, &spec, Some(&lease)),
                Err(PushFailure::Rejected(_))
            ));
            assert_eq!(tip(&remote), second, "a stale lease must push nothing");
            // Without force and without a lease, a rewind is refused as non-fast-forward.
            assert!(matches!(
                shared.push(&st.repo, &[format!("{first}:refs/heads/main")], None),
                Err(PushFailure::Rejected(_))
            ));
            assert_eq!(tip(&remote), second);
            // With the right lease, it goes through.
            lease.insert("refs/heads/main".to_string(), Some(second));
            assert!(shared.push(&st.repo, &spec, Some(&lease)).is_ok());
            assert_eq!(tip(&remote), first);
            Ok(())
        })
        .await
        .unwrap();
    }
}
