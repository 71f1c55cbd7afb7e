//! The observer that draws: one bar per artifact in transfer (or a spinner without an
//! expected size), one line for the stored artifacts being checked, one spinner per
//! restore and per recovery step (those report no bytes).

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressState, ProgressStyle};
use stoa_backup::core::{Event, Observer, TracingObserver};

use super::expected::ExpectedSizes;
use super::line::{human_bytes, human_duration, progress_line};

/// How often a bar is redrawn. Bytes only move an atomic counter: the data path never
/// waits on drawing.
const TICK: Duration = Duration::from_millis(120);

/// What a bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    /// An artifact's transfer (component, artifact name).
    Transfer,
    /// A component's restore (component, "").
    Restore,
    /// A recovery step (recovery id, step).
    Step,
}

#[derive(Debug)]
struct Active {
    task: Task,
    owner: String,
    name: String,
    bar: ProgressBar,
}

/// Stored artifacts and how many were checked: the line left once transfers end.
#[derive(Debug, Default)]
struct Checks {
    bar: Option<ProgressBar>,
    stored: usize,
    checked: usize,
    /// The last stored artifact and its sizes.
    last: String,
}

/// Draws events on `bars` and forwards every event to [`TracingObserver`] (the logs are
/// unchanged). Bars left when the run ends (or is dropped, cancelled) are cleared.
#[derive(Debug)]
pub struct ProgressObserver {
    bars: MultiProgress,
    expected: ExpectedSizes,
    active: Mutex<Vec<Active>>,
    checks: Mutex<Checks>,
    logs: TracingObserver,
}

impl ProgressObserver {
    /// An observer drawing on `bars`, with the sizes transfers are expected to reach.
    pub fn new(bars: MultiProgress, expected: ExpectedSizes) -> Self {
        ProgressObserver {
            bars,
            expected,
            active: Mutex::new(Vec::new()),
            checks: Mutex::new(Checks::default()),
            logs: TracingObserver,
        }
    }

    fn find(&self, task: Task, owner: &str, name: &str) -> Option<ProgressBar> {
        let active = self.active.lock().expect("progress bars lock");
        active
            .iter()
            .find(|a| a.task == task && a.owner == owner && a.name == name)
            .map(|a| a.bar.clone())
    }

    /// Starts (or, for a retried artifact, restarts) a bar.
    fn start(&self, task: Task, owner: &str, name: &str, bar: impl FnOnce() -> ProgressBar) {
        let mut active = self.active.lock().expect("progress bars lock");
        if let Some(a) = active
            .iter()
            .find(|a| a.task == task && a.owner == owner && a.name == name)
        {
            a.bar.reset();
            return;
        }
        let bar = self.bars.add(bar());
        bar.enable_steady_tick(TICK);
        active.push(Active {
            task,
            owner: owner.to_string(),
            name: name.to_string(),
            bar,
        });
    }

    /// Clears a bar; returns the position it had reached.
    fn finish(&self, task: Task, owner: &str, name: &str) -> Option<u64> {
        let mut active = self.active.lock().expect("progress bars lock");
        let i = active
            .iter()
            .position(|a| a.task == task && a.owner == owner && a.name == name)?;
        let done = active.remove(i);
        // Finishing moves the position to the length: read it first.
        let reached = done.bar.position();
        self.clear(&done.bar);
        Some(reached)
    }

    fn clear(&self, bar: &ProgressBar) {
        bar.finish_and_clear();
        self.bars.remove(bar);
    }

    fn transfer_bar(&self, component: &str, name: &str) -> ProgressBar {
        let bar = match self.expected.get(component, name) {
            Some(size) => ProgressBar::new(size).with_style(bar_style()),
            None => ProgressBar::no_length().with_style(spinner_style()),
        };
        bar.with_prefix(format!("{component}/{name}"))
    }

    /// A transfer ended: its bar goes, the checks line counts it.
    fn stored(&self, component: &str, name: &str, stored_size: u64, took: Duration) {
        let plain = self.finish(Task::Transfer, component, name);
        let mut checks = self.checks.lock().expect("progress checks lock");
        checks.stored += 1;
        let plain = plain.map(|p| format!("{} plain, ", human_bytes(p)));
        checks.last = format!(
            "{component}/{name}, {}{} stored in {}",
            plain.unwrap_or_default(),
            human_bytes(stored_size),
            human_duration(took)
        );
        let message = checks.message();
        match &checks.bar {
            Some(bar) => bar.set_message(message),
            None => {
                let bar = self.bars.add(
                    ProgressBar::new_spinner()
                        .with_style(checks_style())
                        .with_message(message),
                );
                bar.enable_steady_tick(TICK);
                checks.bar = Some(bar);
            }
        }
    }

    fn checked(&self) {
        let mut checks = self.checks.lock().expect("progress checks lock");
        checks.checked += 1;
        if let Some(bar) = &checks.bar {
            bar.set_message(checks.message());
        }
    }

    /// Clears every bar (the run ended).
    fn clear_all(&self) {
        let active = std::mem::take(&mut *self.active.lock().expect("progress bars lock"));
        for a in active {
            self.clear(&a.bar);
        }
        let mut checks = self.checks.lock().expect("progress checks lock");
        if let Some(bar) = checks.bar.take() {
            self.clear(&bar);
        }
        *checks = Checks::default();
    }
}

impl Checks {
    fn message(&self) -> String {
        format!(
            "{} artifact(s) stored, {} checked (last: {})",
            self.stored, self.checked, self.last
        )
    }
}

impl Observer for ProgressObserver {
    fn on_event(&self, event: &Event<'_>) {
        self.logs.on_event(event);
        match event {
            Event::ArtifactStarted { component, name } => {
                self.start(Task::Transfer, component, name, || {
                    self.transfer_bar(component, name)
                })
            }
            Event::BytesWritten {
                component,
                name,
                plain_bytes,
            } => {
                if let Some(bar) = self.find(Task::Transfer, component, name) {
                    bar.set_position(*plain_bytes);
                }
            }
            Event::ArtifactDone {
                component,
                name,
                stored_size,
                duration,
                ..
            } => self.stored(component, name, *stored_size, *duration),
            // Emitted once an artifact's checks are over (whatever their verdict).
            Event::ArtifactTimings { .. } => self.checked(),
            Event::ArtifactFailed {
                component,
                name: Some(name),
                ..
            } => {
                self.finish(Task::Transfer, component, name);
            }
            Event::RestoreStarted {
                run_id,
                component,
                artifacts,
                dry_run: false,
            } => self.start(Task::Restore, component, "", || {
                ProgressBar::new_spinner()
                    .with_style(message_style())
                    .with_prefix(format!("restore {component}"))
                    .with_message(format!("{artifacts} artifact(s) of run {run_id}"))
            }),
            Event::RestoreDone { component, .. } => {
                self.finish(Task::Restore, component, "");
            }
            Event::RecoveryStepStarted {
                recovery_id,
                step,
                index,
                steps,
            } => self.start(Task::Step, recovery_id, step, || {
                ProgressBar::new_spinner()
                    .with_style(message_style())
                    .with_prefix(format!("step {}/{steps}", index + 1))
                    .with_message(step.to_string())
            }),
            Event::RecoveryStepDone {
                recovery_id, step, ..
            } => {
                self.finish(Task::Step, recovery_id, step);
            }
            Event::RunDone { .. } => self.clear_all(),
            _ => {}
        }
    }
}

impl Drop for ProgressObserver {
    fn drop(&mut self) {
        self.clear_all();
    }
}

/// The `{transfer}` key: bytes, rate and ETA from the bar's own state, computed only when
/// the bar is drawn.
fn transfer_key(state: &ProgressState, w: &mut dyn fmt::Write) {
    let _ = w.write_str(&progress_line(state.pos(), state.len(), state.elapsed()));
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} [{wide_bar}] {transfer}")
        .expect("a valid progress template")
        .with_key("transfer", transfer_key)
        .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix} {transfer}")
        .expect("a valid progress template")
        .with_key("transfer", transfer_key)
}

fn checks_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg}").expect("a valid progress template")
}

fn message_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
        .expect("a valid progress template")
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;
    use std::time::Instant;

    use indicatif::{ProgressDrawTarget, TermLike};
    use stoa_backup::core::{ArtifactTimings, RunId, RunStatus};

    use super::*;

    /// A terminal that keeps what was written.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl Screen {
        fn text(&self) -> String {
            self.0.lock().unwrap().clone()
        }

        /// Waits until a redraw wrote `needle` (the bars draw from their tick thread).
        fn wait_for(&self, needle: &str) -> String {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let text = self.text();
                if text.contains(needle) {
                    return text;
                }
                assert!(
                    Instant::now() < deadline,
                    "never drew {needle:?}; drew:\n{text}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            160
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.write_str(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    fn observer(expected: ExpectedSizes) -> (ProgressObserver, Screen) {
        let screen = Screen::default();
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(
            screen.clone(),
        )));
        (ProgressObserver::new(bars, expected), screen)
    }

    fn expected(component: &str, name: &str, size: u64) -> ExpectedSizes {
        let record = serde_json::from_value(serde_json::json!({
            "component": component, "provider": "pg_dump", "name": name,
            "key": format!("runs/20260101T000000Z-000001/{component}/{name}"),
            "content_type": "application/octet-stream", "plain_size": size,
            "plain_sha256": "00", "stored_size": size, "stored_sha256": "00",
            "codecs": [], "duration_ms": 1,
        }))
        .expect("an artifact record");
        ExpectedSizes::of_component([&record], component)
    }

    fn bars_left(o: &ProgressObserver) -> usize {
        o.active.lock().unwrap().len()
    }

    #[test]
    fn a_transfer_with_an_expected_size_draws_a_bar_of_it() {
        let (o, screen) = observer(expected("app", "app.dump", 4096));
        o.on_event(&Event::ArtifactStarted {
            component: "app",
            name: "app.dump",
        });
        o.on_event(&Event::BytesWritten {
            component: "app",
            name: "app.dump",
            plain_bytes: 1024,
        });
        let drawn = screen.wait_for("1.0 KiB of 4.0 KiB");
        assert!(drawn.contains("app/app.dump ["), "{drawn}");
        assert_eq!(bars_left(&o), 1);

        o.on_event(&Event::ArtifactDone {
            component: "app",
            name: "app.dump",
            plain_size: 1024,
            stored_size: 512,
            stored_sha256: "00",
            duration: Duration::from_secs(3),
        });
        assert_eq!(bars_left(&o), 0, "the transfer's bar went");
        screen.wait_for("1 artifact(s) stored, 0 checked");
        let timings = ArtifactTimings {
            dump_ms: 1,
            store_ms: 1,
            verify_ms: 1,
            total_ms: 3,
            plain_bytes_per_sec: 1,
            stored_bytes_per_sec: 1,
        };
        o.on_event(&Event::ArtifactTimings {
            component: "app",
            name: "app.dump",
            timings: &timings,
        });
        screen.wait_for(
            "1 artifact(s) stored, 1 checked (last: app/app.dump, 1.0 KiB plain, 512 B stored in 3s)",
        );
        let run_id = RunId::parse("20260101T000000Z-000001").unwrap();
        o.on_event(&Event::RunDone {
            run_id: &run_id,
            status: RunStatus::Complete,
            components: &["app".to_string()],
            duration: Duration::from_secs(4),
            verified: true,
            error: None,
        });
        assert!(o.checks.lock().unwrap().bar.is_none(), "cleared at the end");
    }

    #[test]
    fn a_transfer_without_an_expected_size_draws_a_spinner() {
        let (o, screen) = observer(ExpectedSizes::none());
        o.on_event(&Event::ArtifactStarted {
            component: "app",
            name: "app.dump",
        });
        o.on_event(&Event::BytesWritten {
            component: "app",
            name: "app.dump",
            plain_bytes: 2048,
        });
        let drawn = screen.wait_for("app/app.dump 2.0 KiB");
        assert!(!drawn.contains(" of "), "no size to reach: {drawn}");
        assert!(!drawn.contains('['), "no bar: {drawn}");
        o.on_event(&Event::ArtifactFailed {
            component: "app",
            name: Some("app.dump"),
            error: "pg_dump failed",
        });
        assert_eq!(bars_left(&o), 0, "a failed transfer's bar goes");
    }

    #[test]
    fn a_retried_transfer_starts_its_bar_again() {
        let (o, screen) = observer(expected("app", "app.dump", 8192));
        let started = Event::ArtifactStarted {
            component: "app",
            name: "app.dump",
        };
        o.on_event(&started);
        o.on_event(&Event::BytesWritten {
            component: "app",
            name: "app.dump",
            plain_bytes: 4096,
        });
        screen.wait_for("4.0 KiB of 8.0 KiB");
        o.on_event(&started);
        assert_eq!(bars_left(&o), 1, "the same bar");
        let bar = o.find(Task::Transfer, "app", "app.dump").unwrap();
        assert_eq!(bar.position(), 0);
    }

    #[test]
    fn restores_and_recovery_steps_draw_spinners_until_done() {
        let (o, screen) = observer(ExpectedSizes::none());
        let run_id = RunId::parse("20260101T000000Z-000001").unwrap();
        o.on_event(&Event::RestoreStarted {
            run_id: &run_id,
            component: "app",
            artifacts: 2,
            dry_run: false,
        });
        o.on_event(&Event::RecoveryStepStarted {
            recovery_id: "r1",
            step: "restore app",
            index: 1,
            steps: 4,
        });
        let drawn = screen.wait_for("step 2/4: restore app");
        assert!(
            drawn.contains("restore app: 2 artifact(s) of run 20260101T000000Z-000001"),
            "{drawn}"
        );
        o.on_event(&Event::RecoveryStepDone {
            recovery_id: "r1",
            step: "restore app",
            status: stoa_backup::core::recovery::StepStatus::Done,
            duration: Duration::from_secs(1),
        });
        assert_eq!(bars_left(&o), 1, "the restore is still going");
        drop(o);
    }

    #[test]
    fn a_dry_run_restore_draws_nothing() {
        let (o, _screen) = observer(ExpectedSizes::none());
        let run_id = RunId::parse("20260101T000000Z-000001").unwrap();
        o.on_event(&Event::RestoreStarted {
            run_id: &run_id,
            component: "app",
            artifacts: 2,
            dry_run: true,
        });
        assert_eq!(bars_left(&o), 0);
    }
}
