//! A template snapshot's spare: a second copy of the snapshot, made in the background, so
//! that the next [`restore`](super::PgSnapshot::restore) only renames it in (two catalog
//! updates, whatever the database's size) instead of copying the files while the test
//! waits.
//!
//! After each restore the database it replaced is dropped and a new spare cloned, one
//! after the other in one background task: dropping first discards the test's dirty pages,
//! which a `FILE_COPY` clone's checkpoint would otherwise write out. A restore that comes
//! before the refill is done waits for it; one whose refill failed copies the files itself,
//! as without a spare.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use stoa_backup_core::error::Result;
use tokio::task::JoinHandle;
use tokio_postgres::{CancelToken, NoTls};

use super::job::Job;
use crate::server::{self, clone_database, drop_database, Marker, MarkerKind};
use crate::worker;

/// The spare of one snapshot: at most one complete or being made, plus what failed
/// refills left to drop.
#[derive(Default)]
pub(crate) struct Spare {
    /// The spare, complete once `refill` ended well.
    name: Option<String>,
    refill: Option<JoinHandle<Result<()>>>,
    cancel: Arc<Cancel>,
    /// Names of spares whose refill failed or was cancelled (maybe partly there).
    leftovers: Vec<String>,
}

/// Stops a refill: the flag makes its failure expected, the token cancels its statement.
#[derive(Default)]
struct Cancel {
    asked: AtomicBool,
    token: Mutex<Option<CancelToken>>,
}

impl Spare {
    /// Waits for the refill in flight; the spare's name when one is complete (taken: the
    /// caller renames it in).
    pub(crate) async fn take_ready(&mut self) -> Option<String> {
        if let Some(refill) = self.refill.take() {
            let ok = matches!(refill.await, Ok(Ok(())));
            if !ok {
                self.leftovers.extend(self.name.take());
            }
        }
        self.name.take()
    }

    /// Puts back a spare that [`take_ready`](Self::take_ready) gave but that was not used.
    pub(crate) fn put_back(&mut self, name: String) {
        self.name = Some(name);
    }

    /// Starts making a new spare of `copy`, after dropping `replaced` (the database a
    /// restore moved aside) when there is one.
    pub(crate) fn refill(&mut self, job: &Job, copy: &str, replaced: Option<String>) {
        let name = server::fit_name(
            &job.database,
            &format!("_spare_{:08x}", rand::random::<u32>()),
        );
        let cancel = Arc::new(Cancel::default());
        self.cancel = cancel.clone();
        self.name = Some(name.clone());
        let job = job.clone();
        let copy = copy.to_string();
        let what = format!("the spare copy of the snapshot of '{}'", job.database);
        self.refill = Some(worker::spawn_tracked(what, async move {
            let result = make(&job, &copy, replaced, &name, &cancel).await;
            match result {
                Err(_) if cancel.asked.load(Ordering::SeqCst) => Ok(()),
                other => other,
            }
        }));
    }

    /// Stops the refill in flight and returns every spare database there may be, to drop.
    pub(crate) async fn shut_down(&mut self) -> Vec<String> {
        self.cancel.asked.store(true, Ordering::SeqCst);
        let token = self
            .cancel
            .token
            .lock()
            .map(|mut t| t.take())
            .unwrap_or(None);
        if let Some(token) = token {
            // A cancel that does not reach the server only means the refill runs to its
            // end: it is waited for below and its spare dropped all the same.
            let _ = token.cancel_query(NoTls).await;
        }
        if let Some(refill) = self.refill.take() {
            // Its failure, if any, was printed by the background task; what matters here
            // is that it has ended before its databases are dropped.
            let _ = refill.await;
        }
        let mut names = std::mem::take(&mut self.leftovers);
        names.extend(self.name.take());
        names
    }
}

/// The background task: drop what the restore replaced, then clone the spare with the
/// database's owner, privileges and settings, closed to connections and marked as a
/// snapshot's copy (so a crashed run's spare is cleaned up like any copy).
async fn make(
    job: &Job,
    copy: &str,
    replaced: Option<String>,
    name: &str,
    cancel: &Cancel,
) -> Result<()> {
    let admin = job.server.admin().await?;
    if let Some(old) = replaced {
        drop_database(&admin, &old).await?;
    }
    if cancel.asked.load(Ordering::SeqCst) {
        return Ok(());
    }
    if let Ok(mut token) = cancel.token.lock() {
        *token = Some(admin.cancel_token());
    }
    clone_database(
        &job.server,
        &admin,
        copy,
        name,
        job.strategy,
        job.props.size,
        Some(&job.props),
    )
    .await?;
    server::allow_connections(&admin, name, false, "make the snapshot's spare copy").await?;
    let mut props = job.props.clone();
    props.comment = Some(
        Marker::new(MarkerKind::Snapshot)
            .source(&job.database)
            .comment(),
    );
    server::apply_props(&admin, name, &props).await
}
