//! Trees and commits: building a tree from a base and a list of changes, reading blobs,
//! summarizing changes for commit messages.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use git2::build::TreeUpdateBuilder;
use git2::{Commit, ErrorCode, FileMode, ObjectType, Oid, Repository, Tree};
use stoa_backup_core::error::Result;

use super::git_error;

/// A change to the branch's (or a record's) tree.
pub(super) enum Change {
    /// Write a blob at a path.
    Put(String, Oid),
    /// Remove a path (file or directory) if present.
    Remove(String),
    /// Replace a directory by a tree (`None`: remove it).
    Dir(String, Option<Oid>),
}

pub(super) fn empty_tree(repo: &Repository) -> Result<Tree<'_>> {
    let oid = repo
        .treebuilder(None)
        .and_then(|b| b.write())
        .map_err(|e| git_error(e, "commit", "cannot write an empty tree"))?;
    repo.find_tree(oid)
        .map_err(|e| git_error(e, "commit", "cannot read tree"))
}

pub(super) fn is_empty_tree(repo: &Repository, tree: Oid) -> Result<bool> {
    Ok(empty_tree(repo)?.id() == tree)
}

pub(super) fn apply_changes(
    repo: &Repository,
    base: Option<&Tree<'_>>,
    changes: &[Change],
) -> Result<Oid> {
    let empty;
    let base = match base {
        Some(t) => t,
        None => {
            empty = empty_tree(repo)?;
            &empty
        }
    };
    let mut b = TreeUpdateBuilder::new();
    let mut any = false;
    for c in changes {
        match c {
            Change::Put(path, oid) => {
                b.upsert(path.as_str(), *oid, FileMode::Blob);
                any = true;
            }
            Change::Dir(path, Some(tree)) => {
                b.upsert(path.as_str(), *tree, FileMode::Tree);
                any = true;
            }
            Change::Remove(path) | Change::Dir(path, None) => {
                if base.get_path(Path::new(path)).is_ok() {
                    b.remove(path.as_str());
                    any = true;
                }
            }
        }
    }
    if !any {
        return Ok(base.id());
    }
    b.create_updated(repo, base)
        .map_err(|e| git_error(e, "commit", "cannot build the new tree"))
}

pub(super) fn blob_at(
    repo: &Repository,
    tree: &Tree<'_>,
    path: &str,
) -> Result<Option<(Oid, u64)>> {
    match tree.get_path(Path::new(path)) {
        Ok(e) if e.kind() == Some(ObjectType::Blob) => {
            let odb = repo
                .odb()
                .map_err(|e| git_error(e, "get", "cannot open the object database"))?;
            let (size, _) = odb
                .read_header(e.id())
                .map_err(|e| git_error(e, "get", "cannot read an object"))?;
            Ok(Some((e.id(), size as u64)))
        }
        Ok(_) => Ok(None),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(git_error(e, "get", "cannot read tree")),
    }
}

/// `\n\n<n> files changed:\n  M path…` for commit messages.
pub(super) fn change_summary(repo: &Repository, old: &Tree<'_>, new: &Tree<'_>) -> String {
    let Ok(diff) = repo.diff_tree_to_tree(Some(old), Some(new), None) else {
        return String::new();
    };
    let n = diff.deltas().len();
    let mut s = format!("\n{n} file(s) changed:\n");
    for d in diff.deltas().take(50) {
        let path = d
            .new_file()
            .path()
            .or_else(|| d.old_file().path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let tag = match d.status() {
            git2::Delta::Added => 'A',
            git2::Delta::Deleted => 'D',
            _ => 'M',
        };
        s.push_str(&format!("  {tag} {path}\n"));
    }
    if n > 50 {
        s.push_str(&format!("  … and {} more\n", n - 50));
    }
    s
}

pub(super) fn commit_time(c: &Commit<'_>) -> DateTime<Utc> {
    Utc.timestamp_opt(c.time().seconds(), 0)
        .single()
        .unwrap_or_else(Utc::now)
}
