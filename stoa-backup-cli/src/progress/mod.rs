//! Progress bars on stderr for long transfers: bytes, rate, and an ETA from the size the
//! same artifact had in the component's previous complete run.
//!
//! Drawn only when stderr is a terminal (and `TERM` is not `dumb`) and `--json` is off;
//! otherwise the observers here are plain [`TracingObserver`]s: nothing is drawn and
//! nothing is looked up. At every log level the bars stay: log lines go through
//! [`LogWriter`], which lifts the bars while a line is written, so neither tears the other.
//!
//! For commands: [`backup_observer`] for a pipeline (it reads the previous run's sizes),
//! [`observer`] for anything else (`restore`, `recover`: restores and recovery steps show
//! a spinner each; they report no bytes).

mod bars;
mod expected;
mod line;

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, OnceLock};

use indicatif::{MultiProgress, ProgressDrawTarget};
use stoa_backup::core::{Observer, Sink, TracingObserver};
use tracing_subscriber::fmt::MakeWriter;

pub use bars::ProgressObserver;
pub use expected::ExpectedSizes;

use crate::cli::Cli;

/// The one set of bars of the process, shared with the log writer. Created by the first
/// observer that draws.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Whether this invocation draws progress: stderr is a terminal and `--json` is off.
pub fn enabled(cli: &Cli) -> bool {
    !cli.json && stderr_is_a_terminal()
}

fn stderr_is_a_terminal() -> bool {
    io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// An observer for any command: draws progress when [`enabled`] (transfers with
/// `expected` sizes get a bar and an ETA, others a spinner), else only logs (a
/// [`TracingObserver`]). Either way every event is logged as before. Pass it to
/// `Pipeline::builder().observer(..)`, `Restore::builder().observer(..)` or a recovery's.
pub fn observer(cli: &Cli, expected: ExpectedSizes) -> Arc<dyn Observer> {
    if !enabled(cli) {
        return Arc::new(TracingObserver);
    }
    let bars = BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    Arc::new(ProgressObserver::new(bars.clone(), expected))
}

/// The observer of `component`'s backup into `sink`: [`observer`] with the sizes of the
/// component's previous complete run (read only when progress is drawn).
pub async fn backup_observer(
    cli: &Cli,
    sink: &Arc<dyn Sink>,
    component: &str,
) -> Arc<dyn Observer> {
    let expected = if enabled(cli) {
        ExpectedSizes::previous_run(sink.clone(), component).await
    } else {
        ExpectedSizes::none()
    };
    observer(cli, expected)
}

/// stderr for the log subscriber: each log line is written with the bars lifted (when
/// there are any), so the bars are redrawn below it instead of through it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing's fmt layer writes a whole line per call: one lift per line.
        match BARS.get() {
            Some(bars) => bars.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
