//! The checklist run after a recovery (and on demand): [`Check`]s that each say pass, fail or
//! skipped, with a detail and a duration, and a [`Checklist`] whose verdict fails when any
//! check fails.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{ArtifactRecord, Manifest};

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The system is as it should be.
    Passed,
    /// It is not (or the check could not find out: an error counts as a failure).
    Failed,
    /// The check did not apply (e.g. nothing recorded to compare with); says why.
    Skipped,
}

/// A check's answer: its status and a detail for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Pass, fail or skipped.
    pub status: CheckStatus,
    /// What was seen (e.g. `3/3 pods Running and Ready`, `HTTP 503 from …`).
    pub detail: String,
}

impl CheckOutcome {
    /// A pass, with what was seen.
    pub fn passed(detail: impl Into<String>) -> Self {
        CheckOutcome {
            status: CheckStatus::Passed,
            detail: detail.into(),
        }
    }

    /// A failure, with what was seen.
    pub fn failed(detail: impl Into<String>) -> Self {
        CheckOutcome {
            status: CheckStatus::Failed,
            detail: detail.into(),
        }
    }

    /// Not applicable, with why.
    pub fn skipped(detail: impl Into<String>) -> Self {
        CheckOutcome {
            status: CheckStatus::Skipped,
            detail: detail.into(),
        }
    }
}

/// What a check can look at besides the systems it probes: the runs just restored (or the
/// runs of a recovery point, for a check on demand), e.g. the row counts the PostgreSQL
/// backup recorded.
#[derive(Debug, Clone, Default)]
pub struct CheckContext {
    runs: Vec<Manifest>,
    cancel: CancellationToken,
}

impl CheckContext {
    /// A context holding `runs` (the manifests a check may compare with).
    pub fn new(runs: impl IntoIterator<Item = Manifest>) -> Self {
        CheckContext {
            runs: runs.into_iter().collect(),
            cancel: CancellationToken::new(),
        }
    }

    /// Stops the checks once `token` fires.
    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The runs given.
    pub fn runs(&self) -> &[Manifest] {
        &self.runs
    }

    /// The artifacts of `component` in the runs given (the newest run first, as given).
    pub fn artifacts_of<'a>(
        &'a self,
        component: &'a str,
    ) -> impl Iterator<Item = &'a ArtifactRecord> + 'a {
        self.runs
            .iter()
            .flat_map(|m| m.artifacts.iter())
            .filter(move |a| a.component == component)
    }

    /// The cancellation token.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// One item of the checklist: probes a system and says whether it is as it should be.
///
/// A check must not write. An `Err` is reported as a failure with the error as detail, so
/// a check need not turn "cannot reach it" into a failure itself.
#[async_trait]
pub trait Check: Send + Sync + fmt::Debug {
    /// A short name for the table and the JSON (e.g. `gateway /health`).
    fn name(&self) -> &str;

    /// Runs the check.
    async fn run(&self, ctx: &CheckContext) -> Result<CheckOutcome>;
}

macro_rules! forward_check {
    ($($ptr:ident),+) => {$(
        /// Forwards to the wrapped check, so a shared or boxed check is a check itself.
        #[async_trait]
        impl<C: Check + ?Sized> Check for $ptr<C> {
            fn name(&self) -> &str {
                (**self).name()
            }
            async fn run(&self, ctx: &CheckContext) -> Result<CheckOutcome> {
                (**self).run(ctx).await
            }
        }
    )+};
}

forward_check!(Arc, Box);

type CheckFn = dyn Fn(CheckContext) -> Pin<Box<dyn Future<Output = Result<CheckOutcome>> + Send>>
    + Send
    + Sync;

/// A check made of an async closure, for what the library has no check for.
pub struct FnCheck {
    name: String,
    f: Box<CheckFn>,
}

impl FnCheck {
    /// A check named `name` that runs `f` (given a copy of the context).
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(CheckContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CheckOutcome>> + Send + 'static,
    {
        FnCheck {
            name: name.into(),
            f: Box::new(move |ctx| Box::pin(f(ctx))),
        }
    }
}

impl fmt::Debug for FnCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCheck").field("name", &self.name).finish()
    }
}

#[async_trait]
impl Check for FnCheck {
    fn name(&self) -> &str {
        &self.name
    }
    async fn run(&self, ctx: &CheckContext) -> Result<CheckOutcome> {
        (self.f)(ctx.clone()).await
    }
}

/// One check's line in a [`ChecklistReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// What it found.
    pub status: CheckStatus,
    /// What was seen, or why it failed or was skipped.
    pub detail: String,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// Whether a recovery (or a checklist) may be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check passed or was skipped.
    Passed,
    /// At least one check failed (or a step did).
    Failed,
}

/// What a [`Checklist`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistReport {
    /// Per check, in the checklist's order.
    pub results: Vec<CheckResult>,
    /// Failed when any check failed.
    pub verdict: Verdict,
    /// The whole checklist, in milliseconds (checks run concurrently).
    pub duration_ms: u64,
}

impl ChecklistReport {
    /// The failed checks' names.
    pub fn failed(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|r| r.status == CheckStatus::Failed)
            .map(|r| r.name.as_str())
            .collect()
    }

    /// The report as a table: one line per check.
    pub fn table(&self) -> String {
        let width = self
            .results
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!(
            "{:<width$}  {:<7}  {:>8}  detail\n",
            "check", "status", "ms"
        );
        for r in &self.results {
            let status = match r.status {
                CheckStatus::Passed => "pass",
                CheckStatus::Failed => "FAIL",
                CheckStatus::Skipped => "skipped",
            };
            out.push_str(&format!(
                "{:<width$}  {:<7}  {:>8}  {}\n",
                r.name, status, r.duration_ms, r.detail
            ));
        }
        out.push_str(&format!(
            "verdict: {}\n",
            match self.verdict {
                Verdict::Passed => "passed",
                Verdict::Failed => "FAILED",
            }
        ));
        out
    }
}

/// The checks to run after a recovery, or on demand, each with a time limit.
#[derive(Debug, Clone)]
pub struct Checklist {
    checks: Vec<Arc<dyn Check>>,
    timeout: Duration,
}

impl Default for Checklist {
    fn default() -> Self {
        Checklist::new()
    }
}

impl Checklist {
    /// An empty checklist; each check gets 60 s unless [`timeout`](Self::timeout) says
    /// otherwise.
    pub fn new() -> Self {
        Checklist {
            checks: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }

    /// Adds a check (an `Arc<dyn Check>` is a check too).
    pub fn check(mut self, check: impl Check + 'static) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// The time each check may take before it counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The checks' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.checks.iter().map(|c| c.name()).collect()
    }

    /// Whether it holds no check.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Checks that the names are distinct (the report and the journal name checks by them).
    pub fn validate(&self) -> Result<()> {
        let mut seen = BTreeMap::new();
        for c in &self.checks {
            if seen.insert(c.name(), ()).is_some() {
                return Err(Error::config(format!("two checks named '{}'", c.name()))
                    .with_operation("checklist")
                    .with_hint("give every check its own name"));
            }
        }
        Ok(())
    }

    /// Runs every check, concurrently (they only read), each within the time limit. An
    /// error or a timeout is a failure with the reason as detail; a cancelled checklist
    /// fails its unfinished checks with "cancelled".
    pub async fn run(&self, ctx: &CheckContext) -> ChecklistReport {
        let started = Instant::now();
        let results = futures::future::join_all(self.checks.iter().map(|check| async move {
            let t0 = Instant::now();
            let outcome = tokio::select! {
                biased;
                _ = ctx.cancel().cancelled() => CheckOutcome::failed("cancelled"),
                r = tokio::time::timeout(self.timeout, check.run(ctx)) => match r {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(e)) => CheckOutcome::failed(e.to_string()),
                    Err(_) => CheckOutcome::failed(format!(
                        "no answer within {:?}",
                        self.timeout
                    )),
                },
            };
            CheckResult {
                name: check.name().to_string(),
                status: outcome.status,
                detail: outcome.detail,
                duration_ms: super::millis(t0.elapsed()),
            }
        }))
        .await;
        let verdict = if results.iter().any(|r| r.status == CheckStatus::Failed) {
            Verdict::Failed
        } else {
            Verdict::Passed
        };
        ChecklistReport {
            results,
            verdict,
            duration_ms: super::millis(started.elapsed()),
        }
    }

    /// [`run`](Self::run), then an error naming the failed checks when the verdict failed:
    /// for callers that want `?`.
    pub async fn run_strict(&self, ctx: &CheckContext) -> Result<ChecklistReport> {
        let report = self.run(ctx).await;
        if report.verdict == Verdict::Failed {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("checks failed: {}", report.failed().join(", ")),
            )
            .with_operation("checklist")
            .with_hint("read each failed check's detail in the checklist report"));
        }
        Ok(report)
    }
}
