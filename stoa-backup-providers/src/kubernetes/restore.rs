//! Ordered restore of CRDs and custom resources with server-side apply.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{self, Scope};
use kube::Client;
use serde_json::{json, Value};
use stoa_backup_core::codec::Keyring;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::manifest::{ArtifactRecord, Manifest};
use stoa_backup_core::restore::{
    ExistingDataPolicy, RestoreContext, RestoreOptions, RestoreReport, Restorer,
};
use stoa_backup_core::sink::Sink;
use stoa_backup_core::stream::{self, ByteStream};

use super::crs::crd_resource;
use super::facts::{CustomResourceArtifact, CustomResourceFacts};
use super::strip::{strip_object, StripRules};
use super::{
    api_code, kube_error, object_name, parse_yaml_documents, KubeClient, DEFAULT_FIELD_MANAGER,
};

/// STOA's dependency order: referenced Secrets first, then gateways before what binds
/// to them: GatewayInstance → Tool → ToolSet → Skill → GatewayBinding.
pub const DEFAULT_ORDER: &[&str] = &[
    "Secret",
    "GatewayInstance",
    "Tool",
    "ToolSet",
    "Skill",
    "GatewayBinding",
];

/// What to do when server-side apply reports fields owned by another field manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// Fail, naming the object and the conflicting fields (the default).
    #[default]
    Fail,
    /// Take the fields over (`force=true`).
    Force,
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

/// Restores what [`super::CustomResourcesSource`] backed up: CRDs first (then waits, by
/// polling, until each is `Established`), then missing namespaces, then objects kind by
/// kind in the configured order, by server-side apply.
///
/// Per object the restorer reads the live object, runs the apply as a server-side dry run
/// (`dryRun=All`) to learn whether it would create, update or leave it unchanged, then —
/// unless this is a dry run — applies it. [`RestoreOptions::existing`]:
/// [`ExistingDataPolicy::Fail`] refuses to change an existing object that differs (objects
/// equal to the backup are fine), [`ExistingDataPolicy::Skip`] leaves existing objects
/// alone, [`ExistingDataPolicy::Overwrite`] applies over them. Field-manager conflicts
/// follow the [`ConflictPolicy`]. `ownerReferences` to owners absent from the target are
/// dropped with a warning (the garbage collector would delete the restored object);
/// present owners get their UID rewritten.
///
/// The report counts created, updated and unchanged-or-skipped objects; its notes say
/// `create|update|unchanged|skip Kind namespace/name` per object, and its facts hold
/// `objects`: `[{kind, namespace, name, action}]`.
///
/// One artifact is ordered within itself; to restore a whole run in order use
/// [`CustomResourcesRestorer::restore_run`], which restores the CRD artifacts first, then
/// the kinds in order.
#[derive(Debug, Clone)]
pub struct CustomResourcesRestorer {
    client: KubeClient,
    component: String,
    field_manager: String,
    conflicts: ConflictPolicy,
    order: Vec<String>,
    establish_timeout: Duration,
    poll_interval: Duration,
    strip: StripRules,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Update,
    Unchanged,
    Skip,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Skip => "skip",
        }
    }
}

struct Resolved {
    ar: ApiResource,
    namespaced: bool,
}

impl CustomResourcesRestorer {
    /// Starts a builder: component `crds`, field manager `stoa-backup`, conflicts fail,
    /// STOA's order, 60 s to become Established.
    pub fn builder(client: Client) -> CustomResourcesRestorerBuilder {
        CustomResourcesRestorerBuilder {
            restorer: CustomResourcesRestorer {
                client: KubeClient(client),
                component: "crds".into(),
                field_manager: DEFAULT_FIELD_MANAGER.into(),
                conflicts: ConflictPolicy::Fail,
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

    /// This component's artifacts of `artifacts`, in restore order: CRD artifacts first,
    /// then by kind in the configured order, then by name. Fails when an artifact's facts
    /// cannot be read.
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
            let is_crds = facts.artifact == CustomResourceArtifact::Crds;
            let rank = self.kind_rank(facts.kind.as_deref().unwrap_or_default());
            out.push(((!is_crds, rank, a.name.clone()), a));
        }
        out.sort_by(|x, y| x.0.cmp(&y.0));
        Ok(out.into_iter().map(|(_, a)| a).collect())
    }

    /// Restores every artifact of this component in `manifest` as one ordered set: a
    /// [`Restorer::restore`] in a context of them. Prefer the
    /// [`Restore`](stoa_backup_core::Restore) driver, which plans first.
    pub async fn restore_run(
        &self,
        sink: &dyn Sink,
        manifest: &Manifest,
        keyring: &Keyring,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let mine: Vec<&ArtifactRecord> = manifest
            .artifacts
            .iter()
            .filter(|a| a.component == self.component)
            .collect();
        if mine.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "run {} holds no '{}' artifact",
                    manifest.run_id, self.component
                ),
            )
            .with_component(self.component.clone())
            .with_operation("restore"));
        }
        let ctx = RestoreContext::new(sink, keyring, mine, options.clone());
        self.restore(&ctx).await
    }

    /// Restores already-parsed documents (CRDs and objects, any order): the core of
    /// [`Restorer::restore`]. Errors name this restorer's component and the `restore`
    /// operation.
    pub async fn restore_documents(
        &self,
        docs: Vec<Value>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.restore_docs(docs, options).await.map_err(|e| {
            e.or_component(self.component.clone())
                .or_operation("restore")
        })
    }

    async fn restore_docs(
        &self,
        docs: Vec<Value>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let mut report = RestoreReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        let (mut crds, mut objects): (Vec<Value>, Vec<Value>) = docs.into_iter().partition(|d| {
            d["kind"] == "CustomResourceDefinition" && d["apiVersion"] == "apiextensions.k8s.io/v1"
        });
        for d in crds.iter_mut().chain(objects.iter_mut()) {
            if d["metadata"]["name"].as_str().is_none_or(str::is_empty)
                || !d["kind"].is_string()
                || !d["apiVersion"].is_string()
            {
                // Never print the document: it may be a Secret.
                return Err(Error::integrity(format!(
                    "a document lacks apiVersion, kind or metadata.name (apiVersion {}, kind {})",
                    truncate(d["apiVersion"].as_str().unwrap_or("none"), 100),
                    truncate(d["kind"].as_str().unwrap_or("none"), 100),
                )));
            }
            strip_object(d, &self.strip);
        }
        let mut records = Vec::new();

        // 1. Definitions, then wait for them.
        crds.sort_by(|a, b| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        });
        let crd_api: Api<DynamicObject> = Api::all_with(self.client.0.clone(), &crd_resource());
        let mut to_wait = Vec::new();
        for crd in &crds {
            let action = self.apply_one(&crd_api, crd, options, &mut report).await?;
            if !options.dry_run && action != Action::Skip {
                to_wait.push(
                    crd["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            records.push(record(crd, action));
        }
        for name in &to_wait {
            self.wait_established(name).await?;
        }

        // 2. Resolve kinds (the new groups may need a moment to be served).
        objects.sort_by(|a, b| {
            let key = |v: &Value| {
                (
                    self.kind_rank(v["kind"].as_str().unwrap_or_default()),
                    v["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    v["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        let mut resolved: HashMap<(String, String), Option<Resolved>> = HashMap::new();
        for o in &objects {
            let key = (
                o["apiVersion"].as_str().unwrap_or_default().to_string(),
                o["kind"].as_str().unwrap_or_default().to_string(),
            );
            if let std::collections::hash_map::Entry::Vacant(e) = resolved.entry(key) {
                let (av, kind) = e.key().clone();
                let r = self
                    .resolve(&av, &kind, !to_wait.is_empty(), options.dry_run)
                    .await?;
                e.insert(r);
            }
        }

        // 3. Missing namespaces.
        let mut namespaces = BTreeSet::new();
        for o in &objects {
            let key = (
                o["apiVersion"].as_str().unwrap_or_default().to_string(),
                o["kind"].as_str().unwrap_or_default().to_string(),
            );
            let namespaced = match &resolved[&key] {
                Some(r) => r.namespaced,
                None => o["metadata"]["namespace"].is_string(),
            };
            if namespaced {
                match o["metadata"]["namespace"].as_str() {
                    Some(ns) if !ns.is_empty() => {
                        namespaces.insert(ns.to_string());
                    }
                    _ => {
                        return Err(Error::integrity(format!(
                            "{} has no namespace",
                            object_name(o)
                        )))
                    }
                }
            }
        }
        let missing_ns = self
            .ensure_namespaces(&namespaces, options, &mut report)
            .await?;

        // 4. Objects, in order.
        for o in &objects {
            let key = (
                o["apiVersion"].as_str().unwrap_or_default().to_string(),
                o["kind"].as_str().unwrap_or_default().to_string(),
            );
            let ns = o["metadata"]["namespace"]
                .as_str()
                .filter(|s| !s.is_empty());
            let action = match &resolved[&key] {
                None => {
                    // Dry run with the CRD not yet in the target: it would be created.
                    report.notes.push(format!(
                        "create {} (its CRD is not installed yet)",
                        object_name(o)
                    ));
                    report.created += 1;
                    Action::Create
                }
                Some(_) if options.dry_run && ns.is_some_and(|n| missing_ns.contains(n)) => {
                    report.notes.push(format!(
                        "create {} (in a namespace to be created)",
                        object_name(o)
                    ));
                    report.created += 1;
                    Action::Create
                }
                Some(r) => {
                    let api: Api<DynamicObject> = match (r.namespaced, ns) {
                        (true, Some(ns)) => Api::namespaced_with(self.client.0.clone(), ns, &r.ar),
                        _ => Api::all_with(self.client.0.clone(), &r.ar),
                    };
                    let mut body = o.clone();
                    if !r.namespaced {
                        if let Some(m) = body["metadata"].as_object_mut() {
                            m.remove("namespace");
                        }
                    }
                    self.fix_owner_references(&mut body, ns, &mut report)
                        .await?;
                    self.apply_one(&api, &body, options, &mut report).await?
                }
            };
            records.push(record(o, action));
        }
        report.facts.insert("objects".into(), Value::Array(records));
        Ok(report)
    }

    /// Resolves apiVersion/kind against the target. `None` only in a dry run whose CRDs
    /// are not installed yet.
    async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
        wait: bool,
        allow_missing: bool,
    ) -> Result<Option<Resolved>> {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, kind);
        let deadline = tokio::time::Instant::now()
            + if wait {
                self.establish_timeout
            } else {
                Duration::ZERO
            };
        loop {
            match discovery::pinned_kind(&self.client, &gvk).await {
                Ok((ar, caps)) => {
                    return Ok(Some(Resolved {
                        ar,
                        namespaced: caps.scope == Scope::Namespaced,
                    }))
                }
                Err(e) => {
                    let missing =
                        api_code(&e) == Some(404) || matches!(e, kube::Error::Discovery(_));
                    if missing && allow_missing {
                        return Ok(None);
                    }
                    if missing && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(self.poll_interval).await;
                        continue;
                    }
                    if missing {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!("the cluster serves no {api_version} {kind} (missing CRD group {group})"),
                        )
                        .with_hint(format!(
                            "restore the CustomResourceDefinitions first (the crds artifact), or install the CRD of {kind} in {group}"
                        )));
                    }
                    return Err(kube_error(e, &format!("discover {api_version} {kind}")));
                }
            }
        }
    }

    async fn wait_established(&self, name: &str) -> Result<()> {
        let api: Api<DynamicObject> = Api::all_with(self.client.0.clone(), &crd_resource());
        let deadline = tokio::time::Instant::now() + self.establish_timeout;
        loop {
            let crd = api
                .get(name)
                .await
                .map_err(|e| kube_error(e, &format!("get CustomResourceDefinition {name}")))?;
            let conditions = crd.data["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let seen: Vec<String> = conditions
                    .iter()
                    .map(|c| {
                        format!(
                            "{}={} ({})",
                            c["type"].as_str().unwrap_or("?"),
                            c["status"].as_str().unwrap_or("?"),
                            c["reason"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "CustomResourceDefinition {name} did not become Established within {:?} (conditions: {})",
                        self.establish_timeout,
                        if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
                    ),
                )
                .with_retryable(false)
                .with_hint("check the CRD with `kubectl describe crd`: a name conflict or an invalid schema keeps it from being served; resources were not restored"));
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// Creates missing namespaces (reported in a dry run). Returns the missing ones.
    async fn ensure_namespaces(
        &self,
        namespaces: &BTreeSet<String>,
        options: &RestoreOptions,
        report: &mut RestoreReport,
    ) -> Result<BTreeSet<String>> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "Namespace"),
            "namespaces",
        );
        let api: Api<DynamicObject> = Api::all_with(self.client.0.clone(), &ar);
        let mut missing = BTreeSet::new();
        for ns in namespaces {
            let what = format!("Namespace {ns}");
            let existing = api
                .get_opt(ns)
                .await
                .map_err(|e| kube_error(e, &format!("get {what}")))?;
            if existing.is_some() {
                continue;
            }
            missing.insert(ns.clone());
            if options.dry_run {
                report.notes.push(format!("create {what}"));
                continue;
            }
            let body = DynamicObject::new(ns, &ar);
            api.patch(
                ns,
                &PatchParams::apply(&self.field_manager),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| kube_error(e, &format!("create {what}")))?;
            report.notes.push(format!("created {what}"));
        }
        Ok(missing)
    }

    /// Rewrites owner UIDs to the target's, and drops references to absent owners.
    async fn fix_owner_references(
        &self,
        body: &mut Value,
        ns: Option<&str>,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let Some(refs) = body["metadata"]["ownerReferences"].as_array().cloned() else {
            return Ok(());
        };
        let label = object_name(body).to_string();
        let mut kept = Vec::new();
        for mut r in refs {
            let (av, kind, name) = (
                r["apiVersion"].as_str().unwrap_or_default().to_string(),
                r["kind"].as_str().unwrap_or_default().to_string(),
                r["name"].as_str().unwrap_or_default().to_string(),
            );
            let owner = match self.resolve(&av, &kind, false, true).await {
                Ok(Some(res)) => {
                    let api: Api<DynamicObject> = match (res.namespaced, ns) {
                        (true, Some(ns)) => {
                            Api::namespaced_with(self.client.0.clone(), ns, &res.ar)
                        }
                        _ => Api::all_with(self.client.0.clone(), &res.ar),
                    };
                    api.get_opt(&name).await.map_err(|e| {
                        kube_error(e, &format!("get owner {kind} {name} of {label}"))
                    })?
                }
                _ => None,
            };
            match owner.and_then(|o| o.metadata.uid) {
                Some(uid) => {
                    r["uid"] = json!(uid);
                    kept.push(r);
                }
                None => {
                    let msg = format!(
                        "warning: {label}: dropped ownerReference to {kind} {name} (absent in the target; the garbage collector would delete the restored object)"
                    );
                    tracing::warn!("{msg}");
                    report.notes.push(msg);
                }
            }
        }
        let meta = body["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        if kept.is_empty() {
            meta.remove("ownerReferences");
        } else {
            meta.insert("ownerReferences".into(), Value::Array(kept));
        }
        Ok(())
    }

    /// Dry-run apply to classify, then (unless a dry run) apply.
    async fn apply_one(
        &self,
        api: &Api<DynamicObject>,
        body: &Value,
        options: &RestoreOptions,
        report: &mut RestoreReport,
    ) -> Result<Action> {
        let label = object_name(body).to_string();
        let name = body["metadata"]["name"].as_str().unwrap_or_default();
        let existing = api
            .get_opt(name)
            .await
            .map_err(|e| kube_error(e, &format!("get {label}")))?;
        if existing.is_some() && options.existing == ExistingDataPolicy::Skip {
            report.skipped += 1;
            report.notes.push(format!("skip {label} (exists)"));
            return Ok(Action::Skip);
        }
        let obj: DynamicObject = serde_json::from_value(body.clone())
            .map_err(|e| Error::integrity(format!("{label} is not a valid object: {e}")))?;
        let mut pp = PatchParams::apply(&self.field_manager);
        if self.conflicts == ConflictPolicy::Force {
            pp = pp.force();
        }
        let apply_err = |e: kube::Error| -> Error {
            let conflict = matches!(&e, kube::Error::Api(s) if s.code == 409);
            let e = kube_error(e, &format!("apply {label}"));
            if conflict {
                e.with_hint("another field manager owns these fields: resolve the difference, or restore with the Force conflict policy to take them over")
            } else {
                e
            }
        };
        let preview = api
            .patch(name, &pp.clone().dry_run(), &Patch::Apply(&obj))
            .await
            .map_err(apply_err)?;
        let action = match &existing {
            None => Action::Create,
            Some(live) => {
                if comparable(live) == comparable(&preview) {
                    Action::Unchanged
                } else {
                    Action::Update
                }
            }
        };
        if action == Action::Update && options.existing == ExistingDataPolicy::Fail {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{label} exists in the target and differs from the backup"),
            )
            .with_hint("restore with the overwrite policy to apply the backup over it, or skip to leave existing objects alone"));
        }
        if !options.dry_run && action != Action::Unchanged {
            api.patch(name, &pp, &Patch::Apply(&obj))
                .await
                .map_err(apply_err)?;
        }
        match action {
            Action::Create => report.created += 1,
            Action::Update => report.updated += 1,
            Action::Unchanged | Action::Skip => report.skipped += 1,
        }
        report.notes.push(format!("{} {label}", action.as_str()));
        Ok(action)
    }
}

/// An object without server-populated fields and status, for change detection.
fn comparable(o: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    strip_object(&mut v, &StripRules::minimal());
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("ownerReferences");
    }
    v
}

fn record(o: &Value, action: Action) -> Value {
    json!({
        "kind": o["kind"],
        "namespace": o["metadata"]["namespace"],
        "name": o["metadata"]["name"],
        "action": action.as_str(),
    })
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
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

    /// Restores the context's artifacts as one ordered set: each artifact is read and
    /// checked (digest, codecs) first, then all CRDs are applied and waited for, then
    /// missing namespaces are created, then objects are applied kind by kind in the
    /// configured order.
    async fn restore(&self, ctx: &RestoreContext<'_>) -> Result<RestoreReport> {
        // Every artifact is read and checked before the first object is applied.
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
        self.restore_documents(docs, ctx.options()).await
    }
}
