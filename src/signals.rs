//! Graceful shutdown on SIGINT (Ctrl-C) and SIGTERM (`kubectl delete pod`, `docker stop`,
//! systemd) for programs that run a pipeline (feature `signals`, on by default; Unix).
//!
//! [`listen`] installs the handlers and returns a [`Shutdown`]. Its [`token`](Shutdown::token)
//! is cancelled by the first signal: hand it to
//! [`PipelineBuilder::cancel`](stoa_backup_core::PipelineBuilder::cancel), and the run stops
//! as if it failed: child processes are killed, partial writes are discarded (a local sink
//! removes its temporary files, an S3 sink aborts its multipart uploads), no manifest is
//! written, and the previous backups stay as they were. The program then exits with the
//! status shells and supervisors expect, 128 + the signal number
//! ([`Shutdown::exit_code`]: 130 for SIGINT, 143 for SIGTERM).
//!
//! A second signal while the run is being cancelled exits at once, with that signal's status,
//! for an operator who will not wait: whatever the cancellation had not removed yet stays
//! behind, and is swept later by [`Sink::cleanup`](stoa_backup_core::Sink::cleanup) or a local
//! sink's `preflight`.
//!
//! ```no_run
//! use std::process::ExitCode;
//! use stoa_backup::prelude::*;
//!
//! #[tokio::main]
//! async fn main() -> Result<ExitCode> {
//!     let shutdown = stoa_backup::signals::listen()?;
//!     let pipeline = Pipeline::builder()
//!         .source(FileSource::new("files", "/data", "data.tar"))
//!         .sink(LocalSink::new("/backups")?)
//!         .cancel(shutdown.token())
//!         .build()?;
//!     let result = pipeline.run().await;
//!     // Interrupted: the run is discarded; exit 130 or 143.
//!     if let Some(code) = shutdown.exit_code() {
//!         return Ok(code);
//!     }
//!     result?.into_result()?;
//!     Ok(ExitCode::SUCCESS)
//! }
//! ```
//!
//! Return from `main` (rather than calling `std::process::exit`) so that the runtime shuts
//! down first: it waits for the filesystem work in flight, which removes the last
//! temporary files.

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use stoa_backup_core::error::{Error, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

const COMPONENT: &str = "signals";

/// A signal that asks the program to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShutdownSignal {
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
    /// SIGTERM: the polite stop of Kubernetes, Docker and systemd.
    Terminate,
}

impl ShutdownSignal {
    /// The signal's name (`SIGINT`, `SIGTERM`).
    pub fn name(self) -> &'static str {
        match self {
            ShutdownSignal::Interrupt => "SIGINT",
            ShutdownSignal::Terminate => "SIGTERM",
        }
    }

    /// The signal's number (2, 15).
    pub fn number(self) -> u8 {
        match self {
            ShutdownSignal::Interrupt => 2,
            ShutdownSignal::Terminate => 15,
        }
    }

    /// The exit status of a program stopped by this signal, by convention 128 + its
    /// number: 130 for SIGINT, 143 for SIGTERM.
    pub fn exit_status(self) -> u8 {
        128 + self.number()
    }
}

impl std::fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Handle on the installed signal handlers (see the [module documentation](self)). Clones
/// share the token and the signal received.
#[derive(Debug, Clone)]
pub struct Shutdown {
    token: CancellationToken,
    received: Arc<OnceLock<ShutdownSignal>>,
}

impl Shutdown {
    /// The token cancelled by the first SIGINT or SIGTERM (a clone: cancelling it cancels
    /// this one too, without a signal being recorded).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// The first signal received, if one was.
    pub fn signal(&self) -> Option<ShutdownSignal> {
        self.received.get().copied()
    }

    /// The exit code for the first signal received (130, 143), if one was.
    pub fn exit_code(&self) -> Option<ExitCode> {
        self.signal().map(|s| ExitCode::from(s.exit_status()))
    }

    /// Call after the cancelled work returned: if a signal was received, says so on stderr
    /// (`interrupted by SIGTERM: <what>`) and exits the process with the signal's status
    /// (130 / 143). A cancelled run has removed its partial writes by the time it returns,
    /// so nothing is left to clean up.
    pub fn exit_if_received(&self, what: &str) {
        if let Some(signal) = self.signal() {
            eprintln!("interrupted by {}: {what}", signal.name());
            std::process::exit(i32::from(signal.exit_status()));
        }
    }

    /// Waits for the first signal (or for the token to be cancelled otherwise).
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }
}

/// Installs handlers for SIGINT and SIGTERM and returns the [`Shutdown`] they cancel. From
/// now on these signals no longer end the process by themselves: the first cancels the
/// token, a second exits at once with its status (130 or 143).
///
/// Call it inside a tokio runtime with its I/O driver enabled (`#[tokio::main]` does);
/// otherwise it fails with a configuration error.
pub fn listen() -> Result<Shutdown> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        Error::config("signal handlers need a running tokio runtime")
            .with_component(COMPONENT)
            .with_operation("listen")
            .with_hint(
                "call stoa_backup::signals::listen() inside #[tokio::main] or Runtime::block_on",
            )
    })?;
    // Registered before returning, so that a signal arriving right after is not lost.
    let _entered = handle.enter();
    let mut interrupt = register(SignalKind::interrupt(), ShutdownSignal::Interrupt)?;
    let mut terminate = register(SignalKind::terminate(), ShutdownSignal::Terminate)?;
    let shutdown = Shutdown {
        token: CancellationToken::new(),
        received: Arc::new(OnceLock::new()),
    };
    let listener = shutdown.clone();
    handle.spawn(async move {
        let Some(first) = next_signal(&mut interrupt, &mut terminate).await else {
            return;
        };
        let _ = listener.received.set(first);
        tracing::warn!(
            signal = first.name(),
            "stopping: the run is cancelled and its partial writes removed; send the signal \
             again to exit at once"
        );
        listener.token.cancel();
        if let Some(second) = next_signal(&mut interrupt, &mut terminate).await {
            tracing::error!(
                signal = second.name(),
                "second signal: exiting at once; a later cleanup removes what is left"
            );
            std::process::exit(i32::from(second.exit_status()));
        }
    });
    Ok(shutdown)
}

fn register(kind: SignalKind, which: ShutdownSignal) -> Result<Signal> {
    signal(kind).map_err(|e| {
        Error::from_io(e, format!("cannot install a handler for {which}"))
            .with_component(COMPONENT)
            .with_operation("listen")
            .with_hint("enable the runtime's I/O driver (Builder::enable_all)")
    })
}

/// The next of the two signals; `None` once neither can arrive any more.
async fn next_signal(interrupt: &mut Signal, terminate: &mut Signal) -> Option<ShutdownSignal> {
    tokio::select! {
        Some(()) = interrupt.recv() => Some(ShutdownSignal::Interrupt),
        Some(()) = terminate.recv() => Some(ShutdownSignal::Terminate),
        else => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_follow_the_shell_convention() {
        assert_eq!(ShutdownSignal::Interrupt.exit_status(), 130);
        assert_eq!(ShutdownSignal::Terminate.exit_status(), 143);
        assert_eq!(ShutdownSignal::Terminate.to_string(), "SIGTERM");
        assert_eq!(
            i32::from(ShutdownSignal::Interrupt.number()),
            tokio::signal::unix::SignalKind::interrupt().as_raw_value()
        );
        assert_eq!(
            i32::from(ShutdownSignal::Terminate.number()),
            tokio::signal::unix::SignalKind::terminate().as_raw_value()
        );
    }

    #[test]
    fn listen_outside_a_runtime_is_a_configuration_error() {
        let err = listen().unwrap_err();
        assert_eq!(err.kind(), stoa_backup_core::ErrorKind::Config, "{err}");
        assert_eq!(err.component(), Some(COMPONENT));
        assert!(err.hint().unwrap_or_default().contains("tokio"), "{err}");
    }
}
