//! Captures every tracing event of the test process at TRACE level, and every `log` record
//! (tokio-postgres, reqwest and others log through the `log` crate), so that tests can grep
//! the logs for secrets (tokens, passwords, secret values) that must never reach them.
//!
//! All integration tests of a crate share one binary, so the capture is process-wide but
//! records only while at least one [`TraceCapture`] is alive: tests that do not look at the
//! logs do not pay for formatting every TRACE event of every library.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// How many captures are alive; events are recorded only while it is above zero.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// A handle on the process-wide log capture (one global subscriber per test binary). While
/// it is alive, every event at every level is recorded.
#[derive(Debug)]
pub struct TraceCapture {
    buffer: LogBuffer,
}

#[derive(Clone, Debug)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl TraceCapture {
    /// Installs the capturing subscriber on first use (later calls share it) and starts
    /// recording until the returned capture is dropped. Panics if the test binary installed
    /// another global subscriber first.
    pub fn install() -> TraceCapture {
        static BUFFER: OnceLock<LogBuffer> = OnceLock::new();
        let buffer = BUFFER
            .get_or_init(|| {
                let buffer = LogBuffer(Arc::new(Mutex::new(Vec::new())));
                let writer = buffer.clone();
                let layer = tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .with_filter(tracing_subscriber::filter::dynamic_filter_fn(|_, _| {
                        ACTIVE.load(Ordering::SeqCst) > 0
                    }));
                let subscriber = tracing_subscriber::registry().with(layer);
                // Also installs the `log` → tracing bridge.
                tracing_subscriber::util::SubscriberInitExt::try_init(subscriber)
                    .expect("no other global tracing subscriber or logger in this test binary");
                buffer
            })
            .clone();
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        TraceCapture { buffer }
    }

    /// Everything recorded so far (by every test of the binary while a capture was alive).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.0.lock().unwrap()).into_owned()
    }

    /// Panics if any of `secrets` appears in the log so far, or if nothing was logged at
    /// DEBUG or TRACE (the check would prove nothing).
    pub fn assert_free_of<S: AsRef<str>>(&self, secrets: &[S]) {
        let text = self.text();
        assert!(
            text.contains("TRACE") || text.contains("DEBUG"),
            "no DEBUG or TRACE output was captured: the secret check would prove nothing"
        );
        assert!(!secrets.is_empty(), "no secrets to look for");
        for secret in secrets {
            let secret = secret.as_ref();
            assert!(!secret.is_empty(), "an empty secret matches anything");
            assert!(
                !text.contains(secret),
                "a secret reached the logs: {:?}…",
                secret.chars().take(4).collect::<String>()
            );
        }
    }
}

impl Drop for TraceCapture {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
