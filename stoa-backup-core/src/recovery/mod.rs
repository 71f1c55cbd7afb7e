//! Platform recovery: a [`Recovery`] restores several components, each from its own run, in
//! dependency order, plans every step before it writes, keeps a journal in the sink so an
//! interrupted recovery [resumes](Recovery::resume) where it stopped, and ends with a
//! [`Checklist`].
//!
//! A step is a component's [`Restorer`] (driven by the [`Restore`](crate::Restore) driver
//! on the run the [`RecoveryPoint`] picked for it), a caller's own [`CustomStep`], or the
//! checklist. [`Recovery::stoa`] orders restore steps as STOA's recovery procedure does:
//! PostgreSQL → Vault / Infisical → Keycloak → CRDs and custom resources → Helm values →
//! Grafana → checks. [`Recovery::drill`] runs a recovery into scratch targets, checks it and
//! cleans the scratch targets up, recording the time to restore as RTO evidence.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::manifest::{ArtifactRecord, Manifest, RunId};
use crate::restore::{RecoveryPoint, RestoreReport, Restorer};

mod builder;
mod check;
mod journal;
mod report;
mod run;
mod targets;

pub use builder::RecoveryBuilder;
pub use check::{
    Check, CheckContext, CheckOutcome, CheckResult, CheckStatus, Checklist, ChecklistReport,
    FnCheck, Verdict,
};
pub use journal::{JournalStep, RecoveryJournal, RecoveryStatus, StepStatus, JOURNALS_PREFIX};
pub use report::{CleanedUp, DrillReport, RecoveryPlan, RecoveryReport, StepPlan, StepReport};
pub use run::Recovery;

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Restores a component from the run the recovery point picked for it.
    Restore,
    /// A caller's own step.
    Custom,
    /// Runs the checklist.
    Checks,
}

/// A step of its caller's own: anything a recovery must do that no restorer does (re-sync
/// the gateway's APIs, update DNS, wait for a rollout). It must be idempotent: a resumed
/// recovery runs a step that failed again.
#[async_trait]
pub trait CustomStep: Send + Sync + fmt::Debug {
    /// Checks, without writing, that the step can run. The default checks nothing.
    async fn preflight(&self, ctx: &StepContext<'_>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// What [`apply`](Self::apply) would do, without doing it, in the counts restorers use.
    async fn plan(&self, ctx: &StepContext<'_>) -> Result<RestoreReport>;

    /// Does it.
    async fn apply(&self, ctx: &StepContext<'_>) -> Result<RestoreReport>;
}

macro_rules! forward_custom_step {
    ($($ptr:ident),+) => {$(
        /// Forwards to the wrapped step, so a shared or boxed step is a step itself.
        #[async_trait]
        impl<S: CustomStep + ?Sized> CustomStep for $ptr<S> {
            async fn preflight(&self, ctx: &StepContext<'_>) -> Result<()> {
                (**self).preflight(ctx).await
            }
            async fn plan(&self, ctx: &StepContext<'_>) -> Result<RestoreReport> {
                (**self).plan(ctx).await
            }
            async fn apply(&self, ctx: &StepContext<'_>) -> Result<RestoreReport> {
                (**self).apply(ctx).await
            }
        }
    )+};
}

forward_custom_step!(Arc, Box);

/// Removes what a drill restored into a scratch target (a scratch database, a scratch
/// realm). It must succeed when there is nothing to remove: a drill cleans up every step's
/// scratch target, also those of steps that never ran.
#[async_trait]
pub trait CleanUp: Send + Sync + fmt::Debug {
    /// Removes the scratch target; returns what it removed, for the report.
    async fn clean_up(&self) -> Result<String>;
}

#[async_trait]
impl<C: CleanUp + ?Sized> CleanUp for Arc<C> {
    async fn clean_up(&self) -> Result<String> {
        (**self).clean_up().await
    }
}

/// What a [`CustomStep`] can see: the recovery point, the runs it picked, the outcome of the
/// steps before it.
#[derive(Debug)]
pub struct StepContext<'a> {
    point: &'a RecoveryPoint,
    runs: &'a BTreeMap<RunId, Manifest>,
    earlier: &'a [StepReport],
    dry_run: bool,
    cancel: &'a CancellationToken,
}

impl<'a> StepContext<'a> {
    /// The recovery point the recovery restores.
    pub fn point(&self) -> &'a RecoveryPoint {
        self.point
    }

    /// The manifest of the run picked for `component`.
    pub fn run_of(&self, component: &str) -> Option<&'a Manifest> {
        self.point
            .run_of(component)
            .and_then(|id| self.runs.get(id))
    }

    /// The artifacts of `component` in the run picked for it.
    pub fn artifacts_of(&self, component: &str) -> Vec<&'a ArtifactRecord> {
        self.run_of(component)
            .map(|m| {
                m.artifacts
                    .iter()
                    .filter(|a| a.component == component)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The steps done before this one in this call (for a resumed recovery, only those run
    /// again; the journal holds the rest).
    pub fn earlier(&self) -> &'a [StepReport] {
        self.earlier
    }

    /// Whether this is the plan.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The recovery's cancellation token.
    pub fn cancel(&self) -> &'a CancellationToken {
        self.cancel
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Action {
    Restore(Arc<dyn Restorer>),
    Custom(Arc<dyn CustomStep>),
    Checks(Checklist),
}

/// One step of a [`Recovery`]: a name, what it does, the steps it must come after, and, for
/// drills, how to clean up its scratch target.
#[derive(Debug, Clone)]
pub struct Step {
    name: String,
    action: Action,
    after: Vec<String>,
    clean_up: Option<Arc<dyn CleanUp>>,
    /// The rank a step inserted with `step_before` takes in STOA order.
    rank_hint: Option<u32>,
}

impl Step {
    /// Restores the restorer's component from the run the recovery point picks for it; the
    /// step is named after the component.
    pub fn restore(restorer: impl Restorer + 'static) -> Step {
        let restorer: Arc<dyn Restorer> = Arc::new(restorer);
        Step {
            name: restorer.component().to_string(),
            action: Action::Restore(restorer),
            after: Vec::new(),
            clean_up: None,
            rank_hint: None,
        }
    }

    /// A caller's own step.
    pub fn custom(name: impl Into<String>, step: impl CustomStep + 'static) -> Step {
        Step {
            name: name.into(),
            action: Action::Custom(Arc::new(step)),
            after: Vec::new(),
            clean_up: None,
            rank_hint: None,
        }
    }

    /// Runs `checklist`; a failed check fails the recovery's verdict (the steps before it
    /// stay done). Named `checks`.
    pub fn checks(checklist: Checklist) -> Step {
        Step {
            name: "checks".into(),
            action: Action::Checks(checklist),
            after: Vec::new(),
            clean_up: None,
            rank_hint: None,
        }
    }

    /// Renames the step.
    pub fn named(mut self, name: impl Into<String>) -> Step {
        self.name = name.into();
        self
    }

    /// Runs this step only after the step named `step` (the builder orders steps so).
    pub fn after(mut self, step: impl Into<String>) -> Step {
        self.after.push(step.into());
        self
    }

    /// How a drill removes this step's scratch target.
    pub fn clean_up(mut self, clean_up: impl CleanUp + 'static) -> Step {
        self.clean_up = Some(Arc::new(clean_up));
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it does.
    pub fn kind(&self) -> StepKind {
        match self.action {
            Action::Restore(_) => StepKind::Restore,
            Action::Custom(_) => StepKind::Custom,
            Action::Checks(_) => StepKind::Checks,
        }
    }

    /// The component a restore step restores.
    pub fn component(&self) -> Option<&str> {
        match &self.action {
            Action::Restore(r) => Some(r.component()),
            _ => None,
        }
    }
}

/// STOA's recovery order: the rank of a component's restore step in [`Recovery::stoa`]
/// (lower first). PostgreSQL first (the control plane's state), then the secrets stores,
/// then Keycloak, then the CRDs and custom resources, then the Helm values (the re-install
/// comes after everything it configures), then Grafana. Unknown components come after the
/// known ones, in the order given.
pub fn stoa_rank(component: &str) -> u32 {
    match component {
        "postgres" => 10,
        "vault-snapshot" => 20,
        "vault-kv" => 21,
        "infisical" => 22,
        "keycloak" => 30,
        "crds" => 40,
        "helm" => 50,
        "grafana" => 60,
        _ => 100,
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
