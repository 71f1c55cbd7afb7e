//! Conditional puts on Git: an object written with `put_if` is the ref
//! `refs/<namespace>/objects/<key>` on the remote, pointing at a commit (no parent) whose
//! tree holds the bytes under the key's file name. Creating it is a push that the remote
//! refuses if the ref exists; replacing it is a push that the remote refuses unless the ref
//! is still at the commit read — the compare-and-swap every push of this sink is (see
//! [`push`](super::push)). Versions are commit ids.
//!
//! These objects live beside the branch, not on it: a lease renewed every minute makes no
//! commit on the branch's history, and `get_versioned` reads them from the remote (never a
//! stale working clone). `get`, `list` and `delete` do not see them.

use bytes::Bytes;
use git2::{ErrorCode, FileMode, Oid, Reference, Repository};
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::sink::{ObjectVersion, PutCondition, PutOutcome, VersionedObject};

use super::push::{local_remote_path, open_local_remote, PushFailure, RefUpdate};
use super::{git_error, Shared, State, COMPONENT, REMOTE};

impl Shared {
    /// `refs/<namespace>/objects/<key>`, checked to be a valid ref name.
    fn object_ref(&self, key: &ObjectKey) -> Result<String> {
        let name = format!("refs/{}/objects/{}", self.cfg.namespace, key);
        if !Reference::is_valid_name(&name) {
            return Err(Error::config(format!(
                "the key cannot be kept as the Git ref {name}"
            ))
            .with_component(COMPONENT)
            .with_artifact(key.as_str())
            .with_hint("keys of conditional puts must make valid ref names (no segment ending in .lock, no '..')"));
        }
        Ok(name)
    }

    /// The object as the remote has it now, with its commit id.
    pub(super) fn get_versioned(
        &self,
        st: &mut State,
        key: &ObjectKey,
    ) -> Result<Option<VersionedObject>> {
        let name = self.object_ref(key)?;
        if let Some(path) = local_remote_path(self.cfg.remote.as_str()) {
            let remote = open_local_remote(&path, "get versioned")?;
            let oid = match remote.refname_to_id(&name) {
                Ok(oid) => oid,
                Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
                Err(e) => {
                    return Err(git_error(
                        e,
                        "get versioned",
                        "cannot read a ref on the remote",
                    ))
                }
            };
            return read_value(&remote, oid, key).map(Some);
        }
        let refs = self.list_remote_refs(&st.repo)?;
        let Some(&oid) = refs.get(&name) else {
            return Ok(None);
        };
        if st.repo.find_commit(oid).is_err() {
            let mut remote = st
                .repo
                .find_remote(REMOTE)
                .map_err(|e| git_error(e, "get versioned", "the working clone has no remote"))?;
            let mut fo = git2::FetchOptions::new();
            fo.remote_callbacks(self.cfg.callbacks());
            fo.download_tags(git2::AutotagOption::None);
            remote
                .fetch(&[format!("+{name}:{name}")], Some(&mut fo), None)
                .map_err(|e| git_error(e, "get versioned", "cannot fetch the object's ref"))?;
        }
        read_value(&st.repo, oid, key).map(Some)
    }

    /// Writes the object as a new commit and moves its ref on the remote if `condition`
    /// holds there.
    pub(super) fn put_if(
        &self,
        st: &mut State,
        key: &ObjectKey,
        bytes: &Bytes,
        condition: &PutCondition,
    ) -> Result<PutOutcome> {
        let name = self.object_ref(key)?;
        let expected = match condition {
            PutCondition::Absent => None,
            PutCondition::Matches(v) => match Oid::from_str(v.as_str()) {
                Ok(oid) => Some(oid),
                // Not a version this sink handed out: it cannot match.
                Err(_) => return Ok(PutOutcome::ConditionFailed),
            },
        };
        let repo = &st.repo;
        let git = |e: git2::Error, msg: &str| git_error(e, "conditional put", msg);
        let blob = repo
            .blob(bytes)
            .map_err(|e| git(e, "cannot store the object"))?;
        let mut tree = repo
            .treebuilder(None)
            .map_err(|e| git(e, "cannot build a tree"))?;
        tree.insert(key.file_name(), blob, FileMode::Blob.into())
            .map_err(|e| git(e, "cannot build a tree"))?;
        let tree = tree.write().map_err(|e| git(e, "cannot write a tree"))?;
        let tree = repo
            .find_tree(tree)
            .map_err(|e| git(e, "cannot read the new tree"))?;
        let sig = self.cfg.signature()?;
        let commit = repo
            .commit(None, &sig, &sig, &format!("stoa-backup: {key}"), &tree, &[])
            .map_err(|e| git(e, "cannot create the commit"))?;
        match self.push(repo, &[RefUpdate::set(name, expected, commit)]) {
            Ok(()) => Ok(PutOutcome::Written(ObjectVersion::new(commit.to_string()))),
            Err(PushFailure::Rejected(why)) => {
                tracing::debug!(key = %key, reason = %self.cfg.scrub(&why), "conditional put refused: the ref moved");
                Ok(PutOutcome::ConditionFailed)
            }
            Err(PushFailure::Failed(e)) => Err(e),
        }
    }
}

/// The bytes the commit `oid` of `repo` holds.
fn read_value(repo: &Repository, oid: Oid, key: &ObjectKey) -> Result<VersionedObject> {
    let bad = |msg: &str| {
        Error::integrity(format!("the ref of {key} {msg}"))
            .with_component(COMPONENT)
            .with_operation("get versioned")
            .with_artifact(key.as_str())
            .with_hint("the ref was not written by stoa-backup: delete it on the remote if no run holds it")
    };
    let commit = repo
        .find_commit(oid)
        .map_err(|_| bad("points at no commit"))?;
    let tree = commit.tree().map_err(|_| bad("has no tree"))?;
    let entry = tree
        .get_name(key.file_name())
        .ok_or_else(|| bad("holds no file of that name"))?;
    let blob = repo
        .find_blob(entry.id())
        .map_err(|_| bad("holds no file of that name"))?;
    Ok(VersionedObject {
        bytes: Bytes::copy_from_slice(blob.content()),
        version: ObjectVersion::new(oid.to_string()),
    })
}
