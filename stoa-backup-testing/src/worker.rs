//! The crate's own background runtime.
//!
//! Every statement this crate sends runs on one tokio runtime of its own, on a thread of
//! its own, never on the caller's: each `#[tokio::test]` builds and drops its own runtime,
//! so a pool kept in a `static` and shared by tests would otherwise hold connections whose
//! driving tasks died with the first test's runtime. It also lets `Drop` put a database
//! back or remove it synchronously (a guard dropped while a test panics), which needs a
//! runtime that is not the one being blocked.
//!
//! Work nobody needs to wait for (dropping a replaced database, making a snapshot's spare
//! copy) runs there in the background, counted: [`settle`] waits for it, and so does the
//! process before it exits (a hook registered with `atexit`), so a test binary leaves no
//! database behind even though its statics are never dropped.

use std::future::Future;
use std::sync::{Condvar, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

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

/// Work left running in the background (databases being dropped, spare copies being
/// made), counted so that [`settle`] and the process's exit can wait for it.
static PENDING: Mutex<usize> = Mutex::new(0);
static SETTLED: Condvar = Condvar::new();
static AT_EXIT: Once = Once::new();

/// How long the process's exit waits for background work before leaving it to the next
/// pool's clean-up (by marker, process and age).
const EXIT_WAIT: Duration = Duration::from_secs(60);

/// Decrements the count when the task ends, also when it panics or is dropped.
struct Tracked;

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
        *pending = pending.saturating_sub(1);
        if *pending == 0 {
            SETTLED.notify_all();
        }
    }
}

/// Starts `work` on the background runtime without waiting for it; a failure is printed
/// (it has nobody to return to) with `what` saying what was being done. The process does
/// not exit before it ends (up to a minute), nor does [`settle`] return.
pub(crate) fn spawn_tracked<F>(what: String, work: F) -> tokio::task::JoinHandle<Result<()>>
where
    F: Future<Output = Result<()>> + Send + 'static,
{
    AT_EXIT.call_once(|| {
        // SAFETY: `wait_at_exit` is a plain `extern "C"` function without arguments that
        // touches only statics (no thread-locals, which are gone by then) and never unwinds.
        unsafe {
            libc::atexit(wait_at_exit);
        }
    });
    *PENDING.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    let guard = Tracked;
    handle().spawn(async move {
        let _guard = guard;
        let result = work.await;
        if let Err(e) = &result {
            eprintln!("stoa-backup-testing: {what} failed in the background: {e}");
        }
        result
    })
}

/// Waits until the background work started so far has ended.
pub(crate) async fn settle() {
    loop {
        if *PENDING.lock().unwrap_or_else(|p| p.into_inner()) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

extern "C" fn wait_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let deadline = Instant::now() + EXIT_WAIT;
        let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
        while *pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                eprintln!(
                    "stoa-backup-testing: {} background task(s) still running at exit; \
                     the next pool removes what they leave by its markers",
                    *pending
                );
                return;
            }
            pending = SETTLED
                .wait_timeout(pending, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    });
}
