//! Captures every tracing event of the test process at TRACE level, and every `log` record
//! (tokio-postgres, reqwest and others log through the `log` crate), so that tests can grep
//! the logs for secrets (tokens, passwords, secret values) that must never reach them.

use std::sync::{Arc, Mutex, OnceLock};

/// The process-wide log capture (one global subscriber per test binary).
#[derive(Clone, Debug)]
pub struct TraceCapture(Arc<Mutex<Vec<u8>>>);

impl TraceCapture {
    /// Installs the capturing subscriber on first use; later calls share it. Panics if the
    /// test binary installed another global subscriber first.
    pub fn install() -> TraceCapture {
        static CAPTURE: OnceLock<TraceCapture> = OnceLock::new();
        CAPTURE
            .get_or_init(|| {
                let capture = TraceCapture(Arc::new(Mutex::new(Vec::new())));
                let writer = capture.clone();
                let subscriber = tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::TRACE)
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .finish();
                // Also installs the `log` → tracing bridge.
                tracing_subscriber::util::SubscriberInitExt::try_init(subscriber)
                    .expect("no other global tracing subscriber or logger in this test binary");
                capture
            })
            .clone()
    }

    /// Everything logged so far (by every test of the binary).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
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

impl std::io::Write for TraceCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
