//! [`LeaseKeeper`]: renews held leases while their holder works, and tells it when they are
//! lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::lease::time;
use super::{is_lock_conflict, HeldLease, RunLock};
use crate::error::{Error, Result};

/// Renews leases every third of their TTL while its holder works ([`LeaseKeeper::keep`]),
/// once more on demand ([`LeaseKeeper::renew_now`], before a run's manifest), and gives them
/// up ([`LeaseKeeper::release`]).
///
/// A lease is *lost* when a renewal finds another holder, or when renewals keep failing
/// (storage unreachable) until the next one would come after the lease expired: the token
/// [`LeaseKeeper::lost`] is cancelled and [`LeaseKeeper::lost_error`] says why, so the work
/// stops before another owner may take over.
#[derive(Debug)]
pub struct LeaseKeeper {
    lock: Arc<dyn RunLock>,
    ttl: Duration,
    state: tokio::sync::Mutex<State>,
    lost: CancellationToken,
    lost_error: Mutex<Option<Error>>,
}

#[derive(Debug)]
struct State {
    held: Vec<HeldLease>,
    released: bool,
}

impl LeaseKeeper {
    /// Keeps `held` (leases of `lock` acquired for `ttl`).
    pub fn new(lock: Arc<dyn RunLock>, held: Vec<HeldLease>, ttl: Duration) -> Self {
        LeaseKeeper {
            lock,
            ttl,
            state: tokio::sync::Mutex::new(State {
                held,
                released: false,
            }),
            lost: CancellationToken::new(),
            lost_error: Mutex::new(None),
        }
    }

    /// How often [`keep`](Self::keep) renews: a third of the TTL.
    pub fn renew_interval(&self) -> Duration {
        self.ttl / 3
    }

    /// The leases as last renewed.
    pub async fn leases(&self) -> Vec<HeldLease> {
        self.state.lock().await.held.clone()
    }

    /// Cancelled once a lease is lost.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Why a lease was lost, once it was.
    pub fn lost_error(&self) -> Option<Error> {
        self.lost_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Error::duplicate)
    }

    /// Renews every [`renew_interval`](Self::renew_interval) until `stop` is cancelled, a
    /// lease is lost, or they are released.
    pub async fn keep(&self, stop: &CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = self.lost.cancelled() => return,
                _ = tokio::time::sleep(self.renew_interval()) => {}
            }
            if self.renew_now().await.is_err() {
                return;
            }
        }
    }

    /// Renews every lease once. `Err` (and the lease is lost) when another owner holds one,
    /// or when a renewal failed and the next one would come too late; a failed renewal with
    /// time left before expiry is only logged (`Ok`).
    pub async fn renew_now(&self) -> Result<()> {
        if self.lost.is_cancelled() {
            return Err(self.lost_error().unwrap_or_else(|| {
                Error::internal("the run lock was lost").with_operation("renew run lock")
            }));
        }
        let mut state = self.state.lock().await;
        if state.released {
            return Ok(());
        }
        for i in 0..state.held.len() {
            match self.lock.renew(&state.held[i], self.ttl).await {
                Ok(renewed) => state.held[i] = renewed,
                Err(e) if is_lock_conflict(&e) => return Err(self.mark_lost(e)),
                Err(e) => {
                    let expires = state.held[i].lease().expires_at;
                    if too_late(Utc::now(), self.renew_interval(), expires) {
                        let scope = state.held[i].scope();
                        let lost = Error::new(
                            e.kind(),
                            format!(
                                "the run lock of {scope} could not be renewed before it expires at {}: this run stops so that two runs never write at once",
                                time(expires)
                            ),
                        )
                        .with_component(scope.component().to_string())
                        .with_operation("renew run lock")
                        .with_hint("check that the storage (or the lock's server) is reachable, then run again")
                        .with_source(e);
                        return Err(self.mark_lost(lost));
                    }
                    tracing::warn!(scope = %state.held[i].scope(), error = %e, "could not renew the run lock; trying again before it expires");
                }
            }
        }
        Ok(())
    }

    /// Gives every lease up (once; later calls do nothing) and stops renewing. Failures are
    /// logged: an unreleased lease expires on its own.
    pub async fn release(&self) {
        let mut state = self.state.lock().await;
        if state.released {
            return;
        }
        state.released = true;
        for held in &state.held {
            if let Err(e) = self.lock.release(held).await {
                tracing::warn!(scope = %held.scope(), error = %e, "could not release the run lock; it expires on its own");
            }
        }
    }

    fn mark_lost(&self, e: Error) -> Error {
        tracing::error!(error = %e, "run lock lost");
        let mut slot = self.lost_error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e.duplicate());
        }
        self.lost.cancel();
        e
    }
}

/// Whether a renewal that failed at `now` can no longer be retried in time: the next try,
/// one `interval` later, would come at or after `expires`.
fn too_late(now: DateTime<Utc>, interval: Duration, expires: DateTime<Utc>) -> bool {
    chrono::TimeDelta::from_std(interval)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .is_none_or(|next| next >= expires)
}
