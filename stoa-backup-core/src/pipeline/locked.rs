//! The run lock of a pipeline: the leases of a run's components, taken before it writes
//! anything, and the loss of one, which stops the run.

use std::collections::BTreeSet;

use super::Pipeline;
use crate::error::{Error, Result};
use crate::lock::{LeaseKeeper, LeaseOwner, LockScope};
use crate::manifest::RunId;

impl Pipeline {
    /// Takes the lease of every component of the run (in name order), or none: when one is
    /// refused, those taken are released and the refusal is the error. `None` without a
    /// lock.
    pub(super) async fn take_locks(&self, run_id: &RunId) -> Result<Option<LeaseKeeper>> {
        let Some(lock) = &self.lock else {
            return Ok(None);
        };
        let owner = self
            .lock_owner
            .clone()
            .unwrap_or_else(LeaseOwner::this_process)
            .for_run(run_id.clone());
        let target = self.sink.describe();
        let components: BTreeSet<&str> = self.sources.iter().map(|s| s.component()).collect();
        let mut held = Vec::with_capacity(components.len());
        for component in components {
            let scope = LockScope::new(component, target.clone());
            let taken = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => Err(Error::cancelled(format!(
                    "run {run_id} was cancelled while taking its run lock; nothing of it was written"
                ))
                .with_operation("acquire run lock")),
                r = lock.acquire(&scope, &owner, self.lock_ttl) => r,
            };
            match taken {
                Ok(h) => held.push(h),
                Err(e) => {
                    for h in &held {
                        if let Err(e) = lock.release(h).await {
                            tracing::warn!(scope = %h.scope(), error = %e, "could not release a run lock; it expires on its own");
                        }
                    }
                    return Err(e
                        .or_component(component.to_string())
                        .or_operation("acquire run lock")
                        .with_context("run", run_id.as_str()));
                }
            }
        }
        tracing::info!(run_id = %run_id, holder = owner.identity(), lock = %lock.describe(), "run lock taken");
        Ok(Some(LeaseKeeper::new(lock.clone(), held, self.lock_ttl)))
    }
}

/// Resolves with the error once `keeper`'s leases are lost; never without a keeper.
pub(super) async fn lost(keeper: Option<&LeaseKeeper>) -> Error {
    let Some(keeper) = keeper else {
        return futures::future::pending().await;
    };
    keeper.lost().cancelled().await;
    keeper.lost_error().unwrap_or_else(|| {
        Error::internal("the run lock was lost without a reason").with_operation("renew run lock")
    })
}
