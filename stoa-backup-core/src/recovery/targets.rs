//! Where a [`Recovery`] reads its runs and keeps its journal: the sink, and its replicas
//! ([`RecoveryBuilder::replica`](super::RecoveryBuilder::replica)).
//!
//! - The recovery point is picked across every target ([`RecoveryPoint::find_across`]),
//!   targets that cannot be listed passed over; without replicas, from the sink alone, as
//!   [`RecoveryPoint::find`] does.
//! - Each run's manifest is read from the target it was found in, else from the first other
//!   target holding it (the point then says where it was read: a resumed recovery whose
//!   primary is down reads the replica's copy), and each step restores from there.
//! - A new journal is kept in the first target that takes it, the sink first; a journal to
//!   resume is read from the first that holds it and written back there.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{Manifest, RunId};
use crate::restore::{PointQuery, RecoveryPoint};
use crate::sink::Sink;

use super::journal::RecoveryJournal;
use super::run::Recovery;

impl Recovery {
    /// The target named `origin`, else the sink.
    pub(super) fn target(&self, origin: Option<&str>) -> &(String, Arc<dyn Sink>) {
        origin
            .and_then(|o| self.sinks.iter().find(|(n, _)| n == o))
            .unwrap_or(&self.sinks[0])
    }

    /// The target holding the journal (`home`, an index in `sinks`).
    pub(super) fn home(&self, home: usize) -> &dyn Sink {
        self.sinks[home].1.as_ref()
    }

    /// Picks the point: across every target with replicas, from the sink without.
    pub(super) async fn find_point(&self, query: &PointQuery) -> Result<RecoveryPoint> {
        if self.sinks.len() == 1 {
            return RecoveryPoint::find(&Catalog::new(self.sinks[0].1.clone()), query).await;
        }
        let catalogs: Vec<(&str, Catalog)> = self
            .sinks
            .iter()
            .map(|(n, s)| (n.as_str(), Catalog::new(s.clone())))
            .collect();
        let refs: Vec<(&str, &Catalog)> = catalogs.iter().map(|(n, c)| (*n, c)).collect();
        RecoveryPoint::find_across(&refs, query).await
    }

    /// The manifests of the point's runs, each read from the target it was found in, else
    /// from the first other target holding it (and the point's origin then says so).
    pub(super) async fn read_runs(
        &self,
        point: &mut RecoveryPoint,
    ) -> Result<BTreeMap<RunId, Manifest>> {
        let mut runs = BTreeMap::new();
        // Where each run was read: every component of a run restores from there.
        let mut read_from: BTreeMap<RunId, String> = BTreeMap::new();
        for picked in &mut point.runs {
            if let Some(name) = read_from.get(&picked.run_id) {
                if self.sinks.len() > 1 {
                    picked.origin = Some(name.clone());
                }
                continue;
            }
            let (first, _) = self.target(picked.origin.as_deref());
            let order = std::iter::once(first)
                .chain(self.sinks.iter().map(|(n, _)| n).filter(|n| *n != first));
            let mut first_error = None;
            let mut found = None;
            for name in order {
                let (_, sink) = self.target(Some(name));
                match Catalog::new(sink.clone())
                    .read_manifest(&picked.run_id)
                    .await
                {
                    Ok(m) => {
                        found = Some((name.clone(), m));
                        break;
                    }
                    Err(e) => {
                        if self.sinks.len() > 1 {
                            tracing::warn!(run = %picked.run_id, target_name = %name, error = %e, "the run cannot be read from this storage target; trying the next");
                        }
                        first_error.get_or_insert(e);
                    }
                }
            }
            let Some((name, manifest)) = found else {
                let e = first_error.expect("at least the sink was tried");
                return Err(e
                    .with_component(picked.component.clone())
                    .or_operation("plan recovery"));
            };
            if self.sinks.len() > 1 {
                picked.origin = Some(name.clone());
            }
            read_from.insert(picked.run_id.clone(), name);
            runs.insert(picked.run_id.clone(), manifest);
        }
        Ok(runs)
    }

    /// Writes a new journal to the first target that takes it (the sink first) and returns
    /// its index; fails with the sink's error when none does.
    pub(super) async fn keep_new_journal(&self, journal: &mut RecoveryJournal) -> Result<usize> {
        let mut first_error = None;
        for (i, (name, sink)) in self.sinks.iter().enumerate() {
            match journal.write(sink.as_ref()).await {
                Ok(()) => {
                    if i > 0 {
                        tracing::warn!(recovery = %journal.recovery_id, target_name = %name, "the journal is kept in a replica: the storage targets before it could not be written");
                    }
                    return Ok(i);
                }
                Err(e) => {
                    if self.sinks.len() > 1 {
                        tracing::warn!(target_name = %name, error = %e, "cannot write the recovery journal to this storage target; trying the next");
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.expect("a recovery has a sink"))
    }

    /// The journal of recovery `id` and where it is kept: the first target holding it.
    pub(super) async fn find_journal(&self, id: &str) -> Result<(usize, RecoveryJournal)> {
        let mut first_error: Option<Error> = None;
        for (i, (name, sink)) in self.sinks.iter().enumerate() {
            match RecoveryJournal::read(sink.as_ref(), id).await {
                Ok(j) => return Ok((i, j)),
                Err(e) => {
                    if e.kind() != ErrorKind::NotFound {
                        tracing::warn!(target_name = %name, error = %e, "cannot read the recovery journal from this storage target");
                    }
                    // A target that answered "not here" says less than one that failed.
                    let replace = first_error.as_ref().is_some_and(|f| {
                        f.kind() == ErrorKind::NotFound && e.kind() != ErrorKind::NotFound
                    });
                    if first_error.is_none() || replace {
                        first_error = Some(e);
                    }
                }
            }
        }
        Err(first_error.expect("a recovery has a sink"))
    }

    /// The ids of the journals in every target, newest first; fails only when no target
    /// can be listed (with the sink's error).
    pub(super) async fn list_journals(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut first_error = None;
        let mut listed = false;
        for (name, sink) in &self.sinks {
            match RecoveryJournal::list(sink.as_ref()).await {
                Ok(found) => {
                    listed = true;
                    ids.extend(found);
                }
                Err(e) => {
                    if self.sinks.len() > 1 {
                        tracing::warn!(target_name = %name, error = %e, "cannot list the recovery journals of this storage target");
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        if !listed {
            return Err(first_error.expect("a recovery has a sink"));
        }
        ids.sort();
        ids.dedup();
        ids.reverse();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests;
