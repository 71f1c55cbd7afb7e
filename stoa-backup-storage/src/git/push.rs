//! Pushing as a compare-and-swap, whatever the transport: every ref update names the value
//! the remote ref must still have, and is made only if the ref has it.
//!
//! - Local paths and `file://` URLs: libgit2's local transport compares with the refs it
//!   read when connecting and then writes them without a lock, so two writers could both
//!   "succeed" while the second silently dropped the first's commit. The sink sends the
//!   objects into the remote's object database itself and moves the refs in a reference
//!   transaction on the remote repository: each ref is locked (the lock files `git` uses
//!   too), compared with the expected value under the lock, then written.
//! - Network transports: the push carries a lease (it is aborted unless every ref the
//!   remote advertises is at the expected value; a `git receive-pack` server then updates a
//!   ref only if it is still at the advertised value, under its lock). Afterwards the remote
//!   refs are listed again, so a server that does not compare and swap cannot lose an
//!   update unnoticed: an update the remote does not show (and that no later commit there
//!   descends from) is reported as a race, for the caller to replay.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use git2::{Direction, ErrorCode, Oid, PushOptions, Repository};
use stoa_backup_core::error::Error;

use super::{git_error, Shared, REMOTE};

/// Local ref the network verification fetches a moved remote ref into.
const VERIFY_REF: &str = "refs/stoa-backup-scratch/verify";

/// One ref change on the remote, made only if the ref is still where it was last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RefUpdate {
    /// The full ref name (`refs/heads/main`).
    pub(super) name: String,
    /// Where the remote ref must point now (`None`: it must not exist).
    pub(super) expected: Option<Oid>,
    /// Where it is to point (`None`: delete it).
    pub(super) new: Option<Oid>,
}

impl RefUpdate {
    /// Points `name` at `new` if it is at `expected`.
    pub(super) fn set(name: impl Into<String>, expected: Option<Oid>, new: Oid) -> Self {
        RefUpdate {
            name: name.into(),
            expected,
            new: Some(new),
        }
    }

    /// Deletes `name` if it is at `expected` (already gone is fine too).
    pub(super) fn delete(name: impl Into<String>, expected: Option<Oid>) -> Self {
        RefUpdate {
            name: name.into(),
            expected,
            new: None,
        }
    }
}

/// Why a push did not happen.
#[derive(Debug)]
pub(super) enum PushFailure {
    /// A remote ref was not where it was expected (another writer moved, created or
    /// deleted it, or holds its lock): fetch and replay.
    Rejected(String),
    /// Anything else.
    Failed(Error),
}

/// Where a push stands when the race hook runs.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RacePoint {
    /// The remote's refs were read (network) or the objects sent (local); no ref written yet.
    Negotiated,
    /// Network transports: the refs were written, not yet verified.
    Pushed,
}

#[cfg(test)]
pub(super) type RaceHook = Box<dyn FnMut(RacePoint) + Send>;

fn oid_text(oid: Option<Oid>) -> String {
    oid.map_or_else(|| "nothing".to_string(), |o| o.to_string())
}

impl Shared {
    #[cfg(test)]
    fn race(&self, at: RacePoint) {
        if let Some(hook) = self.race_hook.lock().unwrap().as_mut() {
            hook(at);
        }
    }

    /// Makes `updates` on the remote as one compare-and-swap per ref (see the module
    /// documentation). `Ok` means every ref now holds its new value, or (network) a value
    /// descending from it.
    pub(super) fn push(
        &self,
        repo: &Repository,
        updates: &[RefUpdate],
    ) -> std::result::Result<(), PushFailure> {
        match local_remote_path(self.cfg.remote.as_str()) {
            Some(path) => self.push_local(repo, &path, updates),
            None => self.push_network(repo, updates),
        }
    }

    fn push_local(
        &self,
        repo: &Repository,
        path: &Path,
        updates: &[RefUpdate],
    ) -> std::result::Result<(), PushFailure> {
        let remote = open_local_remote(path, "push").map_err(PushFailure::Failed)?;
        send_objects(repo, &remote, updates).map_err(PushFailure::Failed)?;
        #[cfg(test)]
        self.race(RacePoint::Negotiated);
        self.swap_refs(&remote, updates)
    }

    /// Locks every ref of `updates` in the remote repository, checks each against its
    /// expected value under the lock, then writes them. No ref is written unless all match.
    fn swap_refs(
        &self,
        remote: &Repository,
        updates: &[RefUpdate],
    ) -> std::result::Result<(), PushFailure> {
        let failed = |e: git2::Error, msg: &str| PushFailure::Failed(git_error(e, "push", msg));
        let sig = self.cfg.signature().map_err(PushFailure::Failed)?;
        let mut tx = remote
            .transaction()
            .map_err(|e| failed(e, "cannot start a ref transaction on the remote"))?;
        for u in updates {
            if let Err(e) = tx.lock_ref(&u.name) {
                if e.code() == ErrorCode::Locked {
                    return Err(PushFailure::Rejected(format!(
                        "{} is locked on the remote by another writer (if none is running, \
                         remove the stale {}.lock in the remote repository)",
                        u.name, u.name
                    )));
                }
                return Err(failed(e, "cannot lock a ref on the remote"));
            }
        }
        for u in updates {
            let current = match remote.refname_to_id(&u.name) {
                Ok(oid) => Some(oid),
                Err(e) if e.code() == ErrorCode::NotFound => None,
                Err(e) => return Err(failed(e, "cannot read a ref on the remote")),
            };
            if current == u.new {
                continue; // already where it is to be (a delete of a ref that is gone)
            }
            if current != u.expected {
                return Err(PushFailure::Rejected(format!(
                    "{} is at {} on the remote, expected {}",
                    u.name,
                    oid_text(current),
                    oid_text(u.expected)
                )));
            }
            let set = match u.new {
                Some(new) => tx.set_target(&u.name, new, Some(&sig), "stoa-backup: push"),
                None => tx.remove(&u.name),
            };
            set.map_err(|e| failed(e, "cannot update a ref on the remote"))?;
        }
        tx.commit()
            .map_err(|e| failed(e, "cannot write a ref on the remote"))
    }

    fn push_network(
        &self,
        repo: &Repository,
        updates: &[RefUpdate],
    ) -> std::result::Result<(), PushFailure> {
        let mut remote = repo.find_remote(REMOTE).map_err(|e| {
            PushFailure::Failed(git_error(e, "push", "the working clone has no remote"))
        })?;
        // Forced on the client side: the lease, checked by the server under its lock, is
        // what guards the update (and compaction rewrites history on purpose).
        let specs: Vec<String> = updates
            .iter()
            .map(|u| match u.new {
                Some(new) => format!("+{new}:{}", u.name),
                None => format!(":{}", u.name),
            })
            .collect();
        let refused: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
        let stale: RefCell<Vec<String>> = RefCell::new(Vec::new());
        {
            let mut cb = self.cfg.callbacks();
            cb.push_update_reference(|refname, status| {
                if let Some(msg) = status {
                    refused
                        .borrow_mut()
                        .insert(refname.to_string(), msg.to_string());
                }
                Ok(())
            });
            cb.push_negotiation(|advertised| {
                #[cfg(test)]
                self.race(RacePoint::Negotiated);
                for a in advertised {
                    let Ok(dst) = a.dst_refname() else { continue };
                    let Some(u) = updates.iter().find(|u| u.name == dst) else {
                        continue;
                    };
                    let actual = (!a.src().is_zero()).then(|| a.src());
                    if actual != u.expected && !(u.new.is_none() && actual.is_none()) {
                        stale.borrow_mut().push(format!(
                            "{dst} is at {} on the remote, expected {}",
                            oid_text(actual),
                            oid_text(u.expected)
                        ));
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
            let mut po = PushOptions::new();
            po.remote_callbacks(cb);
            if let Err(e) = remote.push(&specs, Some(&mut po)) {
                if !stale.borrow().is_empty() {
                    return Err(PushFailure::Rejected(stale.borrow().join("; ")));
                }
                if matches!(e.code(), ErrorCode::NotFastForward | ErrorCode::Exists) {
                    return Err(PushFailure::Rejected(e.message().to_string()));
                }
                return Err(PushFailure::Failed(
                    git_error(e, "push", "cannot push to the remote").or_hint(
                        "check the remote URL, the network and that the credentials allow pushing",
                    ),
                ));
            }
        }
        drop(remote);
        #[cfg(test)]
        self.race(RacePoint::Pushed);
        self.verify_pushed(repo, updates, &refused.into_inner())
    }

    /// Lists the remote's refs after a network push and checks that each update holds (see
    /// the module documentation); `refused` are the per-ref refusals the server reported.
    fn verify_pushed(
        &self,
        repo: &Repository,
        updates: &[RefUpdate],
        refused: &HashMap<String, String>,
    ) -> std::result::Result<(), PushFailure> {
        let now = self.list_remote_refs(repo).map_err(PushFailure::Failed)?;
        for u in updates {
            let at = now.get(&u.name).copied();
            if at == u.new {
                continue;
            }
            if let Some(msg) = refused.get(&u.name) {
                if at != u.expected {
                    // Refused because another writer got there first.
                    return Err(PushFailure::Rejected(format!("{}: {msg}", u.name)));
                }
                return Err(PushFailure::Failed(
                    Error::storage(format!(
                        "the remote refused to update {}: {}",
                        u.name,
                        self.cfg.scrub(msg)
                    ))
                    .with_operation("push")
                    .with_hint("check the remote's branch protection and hooks"),
                ));
            }
            let kept = match (u.new, at) {
                (Some(ours), Some(theirs)) => self
                    .descends_on_remote(repo, &u.name, theirs, ours)
                    .map_err(PushFailure::Failed)?,
                _ => false,
            };
            if !kept {
                return Err(PushFailure::Rejected(format!(
                    "{} was pushed but the remote now holds {}, which does not contain it",
                    u.name,
                    oid_text(at)
                )));
            }
        }
        Ok(())
    }

    /// The remote's refs, as `git ls-remote` lists them.
    pub(super) fn list_remote_refs(
        &self,
        repo: &Repository,
    ) -> stoa_backup_core::Result<HashMap<String, Oid>> {
        let mut remote = repo
            .find_remote(REMOTE)
            .map_err(|e| git_error(e, "verify push", "the working clone has no remote"))?;
        let conn = remote
            .connect_auth(Direction::Fetch, Some(self.cfg.callbacks()), None)
            .map_err(|e| {
                git_error(
                    e,
                    "verify push",
                    "pushed, but cannot list the remote's refs to confirm it",
                )
                .or_hint("check the network; the run is not recorded until the push is confirmed")
            })?;
        let heads = conn
            .list()
            .map_err(|e| git_error(e, "verify push", "cannot list the remote's refs"))?;
        Ok(heads
            .iter()
            .map(|h| (h.name().to_string(), h.oid()))
            .collect())
    }

    /// Whether the remote ref `name`, now at `theirs`, contains `ours` (fetching it first if
    /// the working clone lacks it).
    fn descends_on_remote(
        &self,
        repo: &Repository,
        name: &str,
        theirs: Oid,
        ours: Oid,
    ) -> stoa_backup_core::Result<bool> {
        let have = repo
            .odb()
            .map_err(|e| git_error(e, "verify push", "cannot open the object database"))?
            .exists(theirs);
        if !have {
            let mut remote = repo
                .find_remote(REMOTE)
                .map_err(|e| git_error(e, "verify push", "the working clone has no remote"))?;
            let mut fo = git2::FetchOptions::new();
            fo.remote_callbacks(self.cfg.callbacks());
            fo.download_tags(git2::AutotagOption::None);
            remote
                .fetch(&[format!("+{name}:{VERIFY_REF}")], Some(&mut fo), None)
                .map_err(|e| git_error(e, "verify push", "cannot fetch the remote's ref"))?;
            if let Ok(mut r) = repo.find_reference(VERIFY_REF) {
                r.delete().ok();
            }
        }
        if theirs == ours {
            return Ok(true);
        }
        match repo.graph_descendant_of(theirs, ours) {
            Ok(d) => Ok(d),
            // Fetched something else than listed (it moved again): not confirmed.
            Err(e) if e.code() == ErrorCode::NotFound => Ok(false),
            Err(e) => Err(git_error(e, "verify push", "cannot compare commits")),
        }
    }
}

/// Opens a local remote for writing: it must be a bare repository.
pub(super) fn open_local_remote(path: &Path, op: &str) -> stoa_backup_core::Result<Repository> {
    let remote = Repository::open(path).map_err(|e| {
        git_error(e, op, "cannot open the remote repository")
            .or_hint("check that the remote path is a bare repository the sink may write")
    })?;
    if !remote.is_bare() {
        return Err(Error::config(format!(
            "the remote {} is not a bare repository",
            path.display()
        ))
        .with_operation(op.to_string())
        .with_hint("point the sink at a bare repository (git init --bare)"));
    }
    Ok(remote)
}

/// Sends the objects of `updates` that the remote lacks into its object database, as one
/// pack (nothing is visible until a ref points at it).
fn send_objects(
    repo: &Repository,
    remote: &Repository,
    updates: &[RefUpdate],
) -> stoa_backup_core::Result<()> {
    let git = |e: git2::Error, msg: &str| git_error(e, "push", msg);
    let mut walk = repo
        .revwalk()
        .map_err(|e| git(e, "cannot walk the history"))?;
    let mut any = false;
    for new in updates.iter().filter_map(|u| u.new) {
        walk.push(new)
            .map_err(|e| git(e, "cannot walk the history"))?;
        any = true;
    }
    if !any {
        return Ok(());
    }
    // What the remote's refs reach, it has: hide it, as `git push` does with advertised refs.
    let odb = repo
        .odb()
        .map_err(|e| git(e, "cannot open the object database"))?;
    let refs = remote
        .references()
        .map_err(|e| git(e, "cannot list the remote's refs"))?;
    for r in refs.flatten() {
        if let Some(tip) = r.target() {
            if odb.exists(tip) {
                // Refs at non-commits cannot be hidden; sending a little more is harmless.
                walk.hide(tip).ok();
            }
        }
    }
    let mut pack = repo
        .packbuilder()
        .map_err(|e| git(e, "cannot pack the objects"))?;
    pack.insert_walk(&mut walk)
        .map_err(|e| git(e, "cannot pack the objects"))?;
    if pack.object_count() == 0 {
        return Ok(());
    }
    let remote_odb = remote
        .odb()
        .map_err(|e| git(e, "cannot open the remote's object database"))?;
    let mut writer = remote_odb
        .packwriter()
        .map_err(|e| git(e, "cannot write into the remote's object database"))?;
    let mut io_error = None;
    let written = pack.foreach(|chunk| match writer.write_all(chunk) {
        Ok(()) => true,
        Err(e) => {
            io_error = Some(e);
            false
        }
    });
    if let Some(e) = io_error {
        return Err(
            Error::from_io(e, "cannot write the objects into the remote repository")
                .with_operation("push")
                .with_hint("check free space and permissions on the remote's volume"),
        );
    }
    written.map_err(|e| git(e, "cannot pack the objects"))?;
    writer
        .commit()
        .map_err(|e| git(e, "cannot store the objects in the remote repository"))?;
    Ok(())
}

/// The directory of a remote that libgit2 would reach through its local transport: a
/// `file://` URL, or a string that is no URL and names an existing directory (the test
/// libgit2 itself makes).
pub(super) fn local_remote_path(url: &str) -> Option<PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        if !rest.starts_with('/') {
            return None; // not a local file URL libgit2 accepts; it reports the error
        }
        return percent_decode(rest).map(PathBuf::from);
    }
    if url.contains("://") {
        return None;
    }
    let path = Path::new(url);
    path.is_dir().then(|| path.to_path_buf())
}

/// `%XX` escapes decoded (others kept as they are, like libgit2); `None` if not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .filter(|h| bytes[i] == b'%' && h.iter().all(u8::is_ascii_hexdigit));
        match escape {
            Some(hex) => {
                let hex = std::str::from_utf8(hex).expect("ASCII hex digits");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
