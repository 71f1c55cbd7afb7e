//! Deletes: Git keeps history, so deleting a recorded run forgets it (its run record goes)
//! while its content stays in the branch's history.

use git2::{ErrorCode, Oid};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::key::ObjectKey;
use stoa_backup_core::manifest::{RunId, MANIFEST_FILE, REPORT_FILE};

use super::push::{PushFailure, RefUpdate};
use super::tree::Change;
use super::{classify, git_error, KeyKind, Shared, State};

impl Shared {
    pub(super) fn delete(&self, st: &mut State, key: &ObjectKey) -> Result<()> {
        match classify(key) {
            KeyKind::Plain => Err(Error::internal("plain keys are deleted through the queue")),
            KeyKind::Artifact { run, .. } => {
                if self.record_of(st, &run)?.is_some() {
                    // History keeps recorded content; forgetting the run hides it.
                    tracing::debug!(key = %key, "delete of a recorded run's artifact: kept in history");
                    return Ok(());
                }
                if let Some(p) = st.pending.get_mut(&run) {
                    p.artifacts.remove(key);
                    if p.artifacts.is_empty() && p.files.is_empty() {
                        st.pending.remove(&run);
                    }
                }
                Ok(())
            }
            KeyKind::RunFile { run, file } => {
                let Some(record) = self.record_of(st, &run)? else {
                    if let Some(p) = st.pending.get_mut(&run) {
                        p.files.remove(&file);
                        if p.artifacts.is_empty() && p.files.is_empty() {
                            st.pending.remove(&run);
                        }
                    }
                    return Ok(());
                };
                let info = self.record_info(st, &run, record)?;
                if !info.keys.contains_key(key) {
                    return Ok(());
                }
                let forgets_run = file == MANIFEST_FILE
                    || (file == REPORT_FILE
                        && !info.complete
                        && !info.keys.contains_key(&run.manifest_key()));
                if forgets_run {
                    return self.remove_record(st, &run, record);
                }
                let changes = [Change::Remove(self.cfg.run_file_path(&file))];
                self.update_record(st, &run, record, &changes, &format!("delete {file}"))
            }
        }
    }

    /// Deletes the run record ref on the remote if it still is at `record`, then locally.
    fn remove_record(&self, st: &mut State, run: &RunId, record: Oid) -> Result<()> {
        let refname = self.cfg.run_ref(run);
        match self.push(&st.repo, &[RefUpdate::delete(&refname, Some(record))]) {
            Ok(()) => {}
            Err(PushFailure::Rejected(why)) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "the remote refused to remove the run record: {}",
                        self.cfg.scrub(&why)
                    ),
                )
                .with_operation("forget run"))
            }
            Err(PushFailure::Failed(e)) => return Err(e.or_operation("forget run")),
        }
        match st.repo.find_reference(&refname) {
            Ok(mut r) => r
                .delete()
                .map_err(|e| git_error(e, "forget run", "cannot delete the local run record"))?,
            Err(e) if e.code() == ErrorCode::NotFound => {}
            Err(e) => return Err(git_error(e, "forget run", "cannot read the run record")),
        }
        tracing::info!(run = %run, "run record removed; its content stays in the branch history");
        Ok(())
    }
}
