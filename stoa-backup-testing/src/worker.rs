//! The crate's own background runtime.
//!
//! Every statement this crate sends runs on one tokio runtime of its own, on a thread of
//! its own, never on the caller's: each `#[tokio::test]` builds and drops its own runtime,
//! so a pool kept in a `static` and shared by tests would otherwise hold connections whose
//! driving tasks died with the first test's runtime. It also lets `Drop` put a database
//! back or remove it synchronously (a guard dropped while a test panics), which needs a
//! runtime that is not the one being blocked.

use std::future::Future;
use std::sync::OnceLock;

use stoa_backup_core::error::{Error, Result};
use tokio::runtime::Handle;

const THREAD_NAME: &str = "stoa-backup-testing";

fn handle() -> &'static Handle {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("stoa-backup-testing: cannot build its background tokio runtime");
                let _ = tx.send(runtime.handle().clone());
                runtime.block_on(std::future::pending::<()>());
            })
            .expect("stoa-backup-testing: cannot start its background thread");
        rx.recv()
            .expect("stoa-backup-testing: its background thread died at start")
    })
}

/// Runs `work` on the background runtime and waits for it from any runtime (or none).
pub(crate) async fn run<T, F>(work: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    match handle().spawn(work).await {
        Ok(result) => result,
        Err(e) => Err(Error::internal(format!(
            "stoa-backup-testing: its background task ended abnormally: {e}"
        ))),
    }
}

/// Runs `work` on the background runtime and blocks the calling thread until it is done:
/// for `Drop`. Never called from the background thread itself (it would wait on itself).
pub(crate) fn block_on<T, F>(work: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    if std::thread::current().name() == Some(THREAD_NAME) {
        return Err(Error::internal(
            "stoa-backup-testing: a blocking call reached its own background thread",
        ));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    handle().spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(Error::internal(
            "stoa-backup-testing: its background task ended before it answered",
        ))
    })
}
