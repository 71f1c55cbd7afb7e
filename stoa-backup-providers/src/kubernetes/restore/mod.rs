//! Ordered restore of namespaces, CRDs and custom resources with server-side apply, planned
//! by the API server's own dry run.
//!
//! - [`run`]: the order (namespaces, CRDs and the wait for them, then the objects kind by
//!   kind) and what can be validated when.
//! - [`apply`]: one object: read the live one, dry-run the apply, apply.
//! - [`cluster`]: what the target serves: kinds, CRDs becoming Established.
//! - [`ledger`]: what happened to every object, the counts, and the error that lists it.

mod apply;
mod cluster;
mod ledger;
mod run;

use std::time::Duration;

use async_trait::async_trait;
use kube::Client;
use serde_json::Value;
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::manifest::ArtifactRecord;
use stoa_backup_core::restore::{RestoreContext, RestoreReport, Restorer};
use stoa_backup_core::stream::{self, ByteStream};

use super::facts::{CustomResourceArtifact, CustomResourceFacts};
use super::strip::StripRules;
use super::{kube_error, parse_yaml_documents, KubeClient, DEFAULT_FIELD_MANAGER};

/// STOA's dependency order: what the resources reference first (Secrets, ConfigMaps), then
/// gateways before what binds to them: GatewayInstance → Tool → ToolSet → Skill →
/// GatewayBinding. Namespaces and CRDs always come before all of them.
pub const DEFAULT_ORDER: &[&str] = &[
    "Secret",
    "ConfigMap",
    "GatewayInstance",
    "Tool",
    "ToolSet",
    "Skill",
    "GatewayBinding",
];

/// What to do when server-side apply reports fields owned by another field manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// The object is rejected, naming the conflicting fields and their manager (the
    /// default); what follows depends on the [`FailurePolicy`].
    #[default]
    Fail,
    /// Take the fields over (`force=true`).
    Force,
}

/// What the apply does when the API server rejects an object (422 `Invalid`, a field
/// manager conflict, a namespace or kind it does not have, a forbidden kind). Either way the
/// error lists the objects applied, each one that failed and why, and those not attempted.
/// Failures that are not about one object (the server unreachable, credentials refused, a
/// CRD never Established) end the restore at once under both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Stop at the first rejected object (the default): what comes after it is not
    /// attempted.
    #[default]
    Stop,
    /// Apply every other object, then fail listing each rejected one.
    Continue,
}

/// Builds a [`CustomResourcesRestorer`].
#[derive(Debug, Clone)]
pub struct CustomResourcesRestorerBuilder {
    // The restorer being configured: `build` validates it and hands it over as it is.
    restorer: CustomResourcesRestorer,
}

impl CustomResourcesRestorerBuilder {
    /// The component restored (default `crds`, as [`super::CustomResourcesSource`]).
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.restorer.component = component.into();
        self
    }

    /// The server-side apply field manager (default `stoa-backup`, at most 128 characters).
    pub fn field_manager(mut self, manager: impl Into<String>) -> Self {
        self.restorer.field_manager = manager.into();
        self
    }

    /// What to do on field-manager conflicts (default [`ConflictPolicy::Fail`]).
    pub fn conflicts(mut self, policy: ConflictPolicy) -> Self {
        self.restorer.conflicts = policy;
        self
    }

    /// What to do when the API server rejects an object (default [`FailurePolicy::Stop`]).
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.restorer.on_failure = policy;
        self
    }

    /// The order kinds are restored in; kinds not listed follow, alphabetically. Default
    /// [`DEFAULT_ORDER`].
    pub fn order<I: IntoIterator<Item = S>, S: Into<String>>(mut self, kinds: I) -> Self {
        self.restorer.order = kinds.into_iter().map(Into::into).collect();
        self
    }

    /// How long to wait for each CRD to become Established (default 60 s).
    pub fn establish_timeout(mut self, timeout: Duration) -> Self {
        self.restorer.establish_timeout = timeout;
        self
    }

    /// How often CRDs are polled while waiting (default 250 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.restorer.poll_interval = interval;
        self
    }

    /// Strip rules applied to objects before they are applied (default
    /// [`StripRules::default`]), in case the backup was made with other rules.
    pub fn strip(mut self, rules: StripRules) -> Self {
        self.restorer.strip = rules;
        self
    }

    /// Checks the configuration and builds the restorer.
    pub fn build(self) -> Result<CustomResourcesRestorer> {
        if self.restorer.field_manager.is_empty() || self.restorer.field_manager.len() > 128 {
            return Err(
                Error::config("the field manager must be 1 to 128 characters long")
                    .with_component(self.restorer.component.clone()),
            );
        }
        if self.restorer.poll_interval.is_zero() {
            return Err(Error::config("the poll interval must be positive")
                .with_component(self.restorer.component.clone()));
        }
        Ok(self.restorer)
    }
}

/// Restores what [`super::CustomResourcesSource`] backed up, through the
/// [`Restore`](stoa_backup_core::Restore) driver: all of the component's artifacts of a run
/// as one ordered set.
///
/// Order: the namespaces the objects live in (with the labels and annotations backed up;
/// a namespace an object needs that the backup does not hold is created bare), then the
/// CRDs, then — once each CRD is `Established`, polled — the objects kind by kind in the
/// configured order ([`DEFAULT_ORDER`]), all by server-side apply.
///
/// Per object the restorer reads the live object and runs the apply as a server-side dry
/// run (`dryRun=All`): the API server validates it (a custom resource against its CRD's
/// schema) and says whether it would create, update or leave it unchanged; unless this is a
/// dry run, it then applies it. A plan ([`Restorer::plan`]) is that path without the
/// writes: objects whose CRD is not installed or not Established yet, or whose namespace
/// does not exist yet, cannot be validated and are reported as such, without a request for
/// them; every object the server rejects is reported, not only the first.
///
/// [`RestoreOptions::existing`](stoa_backup_core::RestoreOptions::existing):
/// [`ExistingDataPolicy::Fail`](stoa_backup_core::ExistingDataPolicy::Fail) counts an
/// existing object that differs from the backup as a conflict (the driver then refuses the
/// plan), `Skip` leaves existing objects alone, `Overwrite` applies over them.
/// Field-manager conflicts follow the [`ConflictPolicy`], rejected objects the
/// [`FailurePolicy`]. `ownerReferences` to owners absent from the target are dropped with a
/// warning (the garbage collector would delete the restored object); present owners get
/// their UID rewritten.
///
/// The report counts created, updated and unchanged-or-skipped objects (and conflicts); its
/// notes say what happened to each object, and its facts
/// ([`CustomResourcesRestoreFacts`](super::CustomResourcesRestoreFacts)) hold every object
/// with its action, outcome and, when rejected or not validated, why.
#[derive(Debug, Clone)]
pub struct CustomResourcesRestorer {
    client: KubeClient,
    component: String,
    field_manager: String,
    conflicts: ConflictPolicy,
    on_failure: FailurePolicy,
    order: Vec<String>,
    establish_timeout: Duration,
    poll_interval: Duration,
    strip: StripRules,
}

impl CustomResourcesRestorer {
    /// Starts a builder: component `crds`, field manager `stoa-backup`, conflicts fail,
    /// stop at the first rejected object, STOA's order, 60 s to become Established.
    pub fn builder(client: Client) -> CustomResourcesRestorerBuilder {
        CustomResourcesRestorerBuilder {
            restorer: CustomResourcesRestorer {
                client: KubeClient(client),
                component: "crds".into(),
                field_manager: DEFAULT_FIELD_MANAGER.into(),
                conflicts: ConflictPolicy::Fail,
                on_failure: FailurePolicy::Stop,
                order: DEFAULT_ORDER.iter().map(|s| s.to_string()).collect(),
                establish_timeout: Duration::from_secs(60),
                poll_interval: Duration::from_millis(250),
                strip: StripRules::default(),
            },
        }
    }

    fn kind_rank(&self, kind: &str) -> (usize, String) {
        match self.order.iter().position(|k| k == kind) {
            Some(i) => (i, String::new()),
            None => (self.order.len(), kind.to_string()),
        }
    }

    /// This component's artifacts of `artifacts`, in restore order: namespaces, CRDs, then
    /// by kind in the configured order, then by name. Fails when an artifact's facts cannot
    /// be read.
    pub fn order_artifacts<'a>(
        &self,
        artifacts: impl IntoIterator<Item = &'a ArtifactRecord>,
    ) -> Result<Vec<&'a ArtifactRecord>> {
        let mut out = Vec::new();
        for a in artifacts
            .into_iter()
            .filter(|a| a.component == self.component)
        {
            let facts: CustomResourceFacts = a.facts_as()?;
            let phase = match facts.artifact {
                CustomResourceArtifact::Namespaces => 0,
                CustomResourceArtifact::Crds => 1,
                _ => 2,
            };
            let rank = self.kind_rank(facts.kind.as_deref().unwrap_or_default());
            out.push(((phase, rank, a.name.clone()), a));
        }
        out.sort_by(|x, y| x.0.cmp(&y.0));
        Ok(out.into_iter().map(|(_, a)| a).collect())
    }
}

/// Parses an artifact's YAML. For sensitive artifacts (Secrets) parse errors say no more
/// than that: the parser's message could quote a line of the Secret.
async fn read_documents(plain: ByteStream, sensitive: bool) -> Result<Vec<Value>> {
    let bytes = stream::collect(plain).await?;
    let text =
        String::from_utf8(bytes).map_err(|_| Error::integrity("the artifact is not UTF-8 text"))?;
    parse_yaml_documents(&text).map_err(|e| {
        if sensitive {
            Error::integrity("the artifact (sensitive, details withheld) is not valid YAML")
        } else {
            e
        }
    })
}

#[async_trait]
impl Restorer for CustomResourcesRestorer {
    fn component(&self) -> &str {
        &self.component
    }

    /// Reads the API server's version: the cluster is reachable and takes the credentials.
    async fn preflight(&self, _ctx: &RestoreContext<'_>) -> Result<()> {
        self.client
            .apiserver_version()
            .await
            .map(|_| ())
            .map_err(|e| kube_error(e, "read the API server version"))
    }

    /// Restores the context's artifacts as one ordered set (in a dry-run context: plans
    /// it). Every artifact is read and checked (digest, codecs) before the first request
    /// about an object.
    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        let mut docs = Vec::new();
        for a in self.order_artifacts(ctx.artifacts().iter().copied())? {
            ctx.check_cancelled()?;
            let plain = ctx.open_plain(a).await?;
            docs.extend(read_documents(plain, a.sensitive).await.map_err(|e| {
                e.or_component(self.component.clone())
                    .or_operation("restore")
                    .or_artifact(a.key.to_string())
            })?);
        }
        self.restore_documents(ctx, docs).await.map_err(|e| {
            e.or_component(self.component.clone())
                .or_operation(if ctx.dry_run() {
                    "plan restore"
                } else {
                    "restore"
                })
        })
    }
}
