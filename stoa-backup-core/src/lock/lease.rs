//! The lease record: who holds the run lock of a component on a storage target, since when
//! and until when; and the errors that name the holder.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::{LeaseOwner, LockScope};
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::RunId;

/// Format of the lease record [`Lease::to_json`] writes.
pub const LEASE_FORMAT_VERSION: u32 = 1;

/// One lease of the run lock of a component on a storage target: who holds it, since when,
/// when it was last renewed and when it expires unless renewed again. Stored as JSON by
/// [`SinkLock`](super::SinkLock) (`locks/<component>.json`), mapped onto a
/// `coordination.k8s.io/v1` Lease by the Kubernetes lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Lease {
    /// [`LEASE_FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The component whose runs the lease guards.
    pub component: String,
    /// The storage target (a sink's description).
    pub target: String,
    /// The holder's identity ([`LeaseOwner::identity`]).
    pub holder: String,
    /// The run the holder is making, when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// When the holder acquired it.
    pub acquired_at: DateTime<Utc>,
    /// When the holder last renewed it.
    pub renewed_at: DateTime<Utc>,
    /// When it lapses unless renewed: from then on another owner may take it over.
    pub expires_at: DateTime<Utc>,
    /// When the holder gave it up, if it did (it then lapses at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<DateTime<Utc>>,
    /// How many times the lease changed hands (as Kubernetes counts `leaseTransitions`).
    #[serde(default)]
    pub transitions: u32,
}

impl Lease {
    /// A new lease of `scope` for `owner`, acquired at `now` for `ttl`, after `transitions`
    /// changes of hands.
    pub fn new(
        scope: &LockScope,
        owner: &LeaseOwner,
        now: DateTime<Utc>,
        ttl: Duration,
        transitions: u32,
    ) -> Self {
        Lease {
            format_version: LEASE_FORMAT_VERSION,
            component: scope.component().to_string(),
            target: scope.target().to_string(),
            holder: owner.identity().to_string(),
            run_id: owner.run_id().cloned(),
            acquired_at: now,
            renewed_at: now,
            expires_at: expiry(now, ttl),
            released_at: None,
            transitions,
        }
    }

    /// What `owner` writes to take the lease of `scope` at `now` for `ttl`, given the lease
    /// stored (`current`), or the [`held_error`](Self::held_error) when another owner holds
    /// it: a new lease when there is none, or it is released or expired (a takeover, one
    /// more [`transitions`](Self::transitions) when the holder changes); the same lease
    /// renewed (keeping when it was acquired) when `owner` holds it already. The decision
    /// of every [`RunLock`](super::RunLock)'s `acquire`.
    pub fn claim(
        current: Option<&Lease>,
        scope: &LockScope,
        owner: &LeaseOwner,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Lease> {
        let Some(current) = current else {
            return Ok(Lease::new(scope, owner, now, ttl, 0));
        };
        if !current.is_held_at(now) {
            let changes = u32::from(!current.is_held_by(owner));
            return Ok(Lease::new(
                scope,
                owner,
                now,
                ttl,
                current.transitions.saturating_add(changes),
            ));
        }
        if !current.is_held_by(owner) {
            return Err(current.held_error(now));
        }
        Ok(Lease {
            run_id: owner.run_id().cloned().or_else(|| current.run_id.clone()),
            ..current.renewed(now, ttl)
        })
    }

    /// The scope (component and target) of the lease.
    pub fn scope(&self) -> LockScope {
        LockScope::new(self.component.clone(), self.target.clone())
    }

    /// Whether someone holds it at `now`: not released and not expired.
    pub fn is_held_at(&self, now: DateTime<Utc>) -> bool {
        self.released_at.is_none() && now < self.expires_at
    }

    /// Whether `owner` is its holder.
    pub fn is_held_by(&self, owner: &LeaseOwner) -> bool {
        self.holder == owner.identity()
    }

    /// The same lease renewed at `now` for `ttl`.
    pub fn renewed(&self, now: DateTime<Utc>, ttl: Duration) -> Lease {
        Lease {
            renewed_at: now,
            expires_at: expiry(now, ttl),
            released_at: None,
            ..self.clone()
        }
    }

    /// The same lease given up at `now`: it lapses at once.
    pub fn released(&self, now: DateTime<Utc>) -> Lease {
        Lease {
            expires_at: now.min(self.expires_at),
            released_at: Some(now),
            ..self.clone()
        }
    }

    /// The record as JSON (pretty, for people reading the sink).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a lease serializes");
        out.push(b'\n');
        out
    }

    /// Reads a record written by [`Lease::to_json`]; a newer format is
    /// [`ErrorKind::Unsupported`].
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let unreadable = |e: serde_json::Error| {
            Error::integrity("the lease record cannot be read")
                .with_operation("read lease")
                .with_source(e)
                .with_hint(
                    "the lock object was damaged or written by something else: if no run of \
                     this component is going on, delete it and run again",
                )
        };
        let v: Version = serde_json::from_slice(bytes).map_err(unreadable)?;
        if v.format_version > LEASE_FORMAT_VERSION {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the lease record has format {} and this stoa-backup reads up to {LEASE_FORMAT_VERSION}",
                    v.format_version
                ),
            )
            .with_operation("read lease")
            .with_hint("a newer stoa-backup holds this lock: upgrade this one"));
        }
        serde_json::from_slice(bytes).map_err(unreadable)
    }

    /// Who holds it, for messages: `host-a/1234/9f3c… (run 2026…)`.
    pub fn holder_description(&self) -> String {
        match &self.run_id {
            Some(run) => format!("{} (run {run})", self.holder),
            None => self.holder.clone(),
        }
    }

    /// The error of an owner that found this lease held at `now`: [`ErrorKind::Conflict`],
    /// naming the holder, since when and when it expires, with the component, the
    /// operation `acquire run lock` and the context `holder`, `held_since` and
    /// `expires_at`.
    pub fn held_error(&self, now: DateTime<Utc>) -> Error {
        let left = (self.expires_at - now).num_seconds().max(0);
        Error::new(
            ErrorKind::Conflict,
            format!(
                "another run of component {} into {} holds the run lock: {} since {} (lease \
                 renewed {}, expires {} unless renewed)",
                self.component,
                self.target,
                self.holder_description(),
                time(self.acquired_at),
                time(self.renewed_at),
                time(self.expires_at),
            ),
        )
        .with_component(self.component.clone())
        .with_operation("acquire run lock")
        .with_context("holder", self.holder.clone())
        .with_context("held_since", time(self.acquired_at))
        .with_context("expires_at", time(self.expires_at))
        .with_hint(format!(
            "wait for that run to finish and run again; if its process is gone, the lease \
             expires at {} (in {left} s) and the next run takes it over",
            time(self.expires_at)
        ))
    }
}

/// The error of a holder that lost its lease of `scope` (taken over by `now_held`, or gone):
/// [`ErrorKind::Conflict`], operation `renew run lock`.
pub fn lost_error(scope: &LockScope, mine: &Lease, now_held: Option<&Lease>) -> Error {
    let what = match now_held {
        Some(other) if other.holder != mine.holder => format!(
            "was taken over by {} at {}",
            other.holder_description(),
            time(other.acquired_at)
        ),
        Some(other) if other.released_at.is_some() => "was released by another process".into(),
        Some(_) => "was changed by another process".into(),
        None => "was deleted".into(),
    };
    Error::new(
        ErrorKind::Conflict,
        format!(
            "the run lock of component {} into {} held by {} since {} {what}: this run stops \
             so that two runs never write at once",
            scope.component(),
            scope.target(),
            mine.holder_description(),
            time(mine.acquired_at),
        ),
    )
    .with_component(scope.component().to_string())
    .with_operation("renew run lock")
    .with_hint(
        "the lease could not be renewed before it expired (a paused process, a slow or \
         unreachable storage?): check the storage, give the lock a longer TTL, and run again",
    )
}

/// RFC 3339 in UTC with milliseconds, as messages show times.
pub(super) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `now + ttl`, saturating.
pub(super) fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(ttl)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
