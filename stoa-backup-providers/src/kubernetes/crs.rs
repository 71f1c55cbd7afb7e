//! The custom resources source: CRDs and objects of the configured API groups as YAML, and
//! beside them ([`super::related`]) their namespaces, referenced Secrets and included kinds.

use async_trait::async_trait;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use kube::Client;
use serde_json::Value;
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::source::{
    to_facts, ArtifactPlan, Export, ExportContext, PreflightReport, Source,
};
use stoa_backup_core::stream;

use super::facts::{CustomResourceArtifact, CustomResourceFacts};
use super::related::{included_prefix, namespaces_of, IncludedKind};
use super::strip::{strip_object, StripRules};
use super::{api_code, kube_error, to_yaml, to_yaml_documents, KubeClient, YAML_CONTENT_TYPE};

/// How objects are laid out in artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// One multi-document YAML per kind (`gostoa.dev/tools.yaml`), objects sorted by
    /// namespace/name; all CRDs in `crds.yaml`. The default.
    #[default]
    PerKind,
    /// One file per object (`gostoa.dev/tools/<namespace>/<name>.yaml`, cluster-scoped
    /// objects under `_cluster/`) and per CRD (`crds/<name>.yaml`): a changed object
    /// changes one file, which suits the Git sink.
    PerObject,
}

/// Directory used for cluster-scoped objects in [`Layout::PerObject`] (a namespace name
/// cannot contain `_`, so it never collides).
pub(crate) const CLUSTER_DIR: &str = "_cluster";

/// The API resource of CustomResourceDefinitions.
pub(crate) fn crd_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    )
}

/// Builds a [`CustomResourcesSource`]; the configuration is checked by
/// [`CustomResourcesSourceBuilder::build`] before anything connects.
#[derive(Debug, Clone)]
pub struct CustomResourcesSourceBuilder {
    // The source being configured: `build` validates it and hands it over as it is.
    source: CustomResourcesSource,
    groups_set: bool,
}

impl CustomResourcesSourceBuilder {
    /// The component name (default `crds`).
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.source.component = component.into();
        self
    }

    /// Backs up this API group; the first call replaces the default `gostoa.dev`.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        if !self.groups_set {
            self.source.groups.clear();
            self.groups_set = true;
        }
        self.source.groups.push(group.into());
        self
    }

    /// Only these kinds (`Tool`, or the plural `tools`); default: every kind of the groups.
    pub fn kinds<I: IntoIterator<Item = S>, S: Into<String>>(mut self, kinds: I) -> Self {
        self.source.kinds = kinds.into_iter().map(Into::into).collect();
        self
    }

    /// Only objects in these namespaces (default: all namespaces). Cluster-scoped kinds are
    /// not affected.
    pub fn namespaces<I: IntoIterator<Item = S>, S: Into<String>>(mut self, namespaces: I) -> Self {
        self.source.namespaces = namespaces.into_iter().map(Into::into).collect();
        self
    }

    /// Only objects matching this label selector (`app.kubernetes.io/part-of=stoa`).
    pub fn label_selector(mut self, selector: impl Into<String>) -> Self {
        self.source.label_selector = Some(selector.into());
        self
    }

    /// Objects per list request (default 500; kube never follows `continue` by itself,
    /// the source does).
    pub fn page_size(mut self, n: u32) -> Self {
        self.source.page_size = n;
        self
    }

    /// How objects are laid out in artifacts (default [`Layout::PerKind`]).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.source.layout = layout;
        self
    }

    /// Whether the CustomResourceDefinitions of the groups are backed up too (default on).
    pub fn include_crds(mut self, yes: bool) -> Self {
        self.source.include_crds = yes;
        self
    }

    /// Also backs up the Secrets the resources reference (default off), in one artifact
    /// `secrets.yaml` marked sensitive (so the pipeline encrypts it). References are
    /// `secretRef: <name>`, `secretRef: {name, namespace?}`, `secretKeyRef: {name}` and
    /// `secretName: <name>` anywhere under `spec`; the Secret is looked up in the
    /// object's namespace unless the reference names one. Missing Secrets are listed in
    /// the artifact's `missing_secrets` fact, not fatal.
    pub fn referenced_secrets(mut self, yes: bool) -> Self {
        self.source.secrets = yes;
        self
    }

    /// Whether the namespaces the resources live in are backed up too (default on), with
    /// their labels and annotations (server fields and the server's own
    /// `kubernetes.io/metadata.name` label dropped), in `namespaces.yaml` (per object:
    /// `namespaces/<name>.yaml`). The restorer creates them before anything else.
    pub fn include_namespaces(mut self, yes: bool) -> Self {
        self.source.with_namespaces = yes;
        self
    }

    /// Also backs up the objects of another kind that match `label_selector`, in the
    /// namespaces the resources live in (or the whole cluster, for a cluster-scoped kind):
    /// what the resources need beside them, such as the ConfigMaps STOA's Tools use
    /// (`.include_kind("v1", "ConfigMap", "app.kubernetes.io/part-of=stoa-platform")`).
    /// `api_version` is `v1` for the core group, else `group/version`. One artifact per kind
    /// under `included/` (`included/configmaps.yaml`), restored before the custom resources
    /// ([`DEFAULT_ORDER`](super::DEFAULT_ORDER)); Secrets are marked sensitive.
    pub fn include_kind(
        mut self,
        api_version: impl Into<String>,
        kind: impl Into<String>,
        label_selector: impl Into<String>,
    ) -> Self {
        self.source.included.push(IncludedKind {
            api_version: api_version.into(),
            kind: kind.into(),
            label_selector: label_selector.into(),
        });
        self
    }

    /// Which annotations, labels and finalizers are dropped (default
    /// [`StripRules::default`]: last-applied and kopf marks).
    pub fn strip(mut self, rules: StripRules) -> Self {
        self.source.strip = rules;
        self
    }

    /// Checks the configuration and builds the source.
    pub fn build(self) -> Result<CustomResourcesSource> {
        let cfg_err = |m: String| Error::config(m).with_component(self.source.component.clone());
        if self.source.component.is_empty() || self.source.component.contains('/') {
            return Err(Error::config(format!(
                "invalid component name {:?}",
                self.source.component
            )));
        }
        if self.source.groups.is_empty() {
            return Err(
                cfg_err("no API group configured".into()).with_hint("call .group(\"gostoa.dev\")")
            );
        }
        for g in &self.source.groups {
            if g.is_empty() || !g.contains('.') || !is_dns_name(g) {
                return Err(cfg_err(format!(
                    "invalid API group {g:?}: expected a DNS name like gostoa.dev"
                )));
            }
        }
        for ns in &self.source.namespaces {
            if !is_dns_label(ns) {
                return Err(cfg_err(format!("invalid namespace name {ns:?}")));
            }
        }
        if self.source.page_size == 0 {
            return Err(cfg_err("page size must be at least 1".into()));
        }
        for inc in &self.source.included {
            if inc.api_version.is_empty() || inc.kind.is_empty() {
                return Err(cfg_err(
                    "an included kind needs an apiVersion (v1, or group/version) and a kind".into(),
                ));
            }
            if inc.label_selector.trim().is_empty() {
                return Err(cfg_err(format!(
                    "the included kind {} needs a label selector",
                    inc.kind
                ))
                .with_hint("include only the objects the resources use, e.g. app.kubernetes.io/part-of=stoa-platform: every namespace holds ConfigMaps of its own (kube-root-ca.crt)"));
            }
        }
        Ok(self.source)
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Backs up the custom resources of API groups (default `gostoa.dev`) and their
/// CustomResourceDefinitions as stripped, deterministic YAML. Component `crds` by default,
/// provider `kubernetes`.
///
/// Each kind is read at its most stable served version, across all namespaces (or
/// the configured ones), page by page. Beside them: the namespaces they live in (on by
/// default), the Secrets they reference and other kinds by label selector (both off by
/// default). Artifact names: [`Layout`]. Facts per artifact: [`CustomResourceFacts`]
/// (`artifact`; `group`, `version`, `kind`, `plural`, `namespaced`, `served_versions` for
/// a kind; after export `objects`, the count).
#[derive(Debug, Clone)]
pub struct CustomResourcesSource {
    pub(super) client: KubeClient,
    pub(super) component: String,
    pub(super) groups: Vec<String>,
    pub(super) kinds: Vec<String>,
    pub(super) namespaces: Vec<String>,
    pub(super) label_selector: Option<String>,
    pub(super) page_size: u32,
    layout: Layout,
    pub(super) include_crds: bool,
    pub(super) secrets: bool,
    pub(super) with_namespaces: bool,
    pub(super) included: Vec<IncludedKind>,
    pub(super) strip: StripRules,
}

/// A kind found by discovery.
#[derive(Debug, Clone)]
pub(super) struct KindInfo {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub served_versions: Vec<String>,
}

impl CustomResourcesSource {
    /// Starts a builder with the defaults: component `crds`, group `gostoa.dev`, all kinds,
    /// all namespaces, pages of 500, one artifact per kind, CRDs and namespaces included.
    pub fn builder(client: Client) -> CustomResourcesSourceBuilder {
        CustomResourcesSourceBuilder {
            source: CustomResourcesSource {
                client: KubeClient(client),
                component: "crds".into(),
                groups: vec!["gostoa.dev".into()],
                kinds: Vec::new(),
                namespaces: Vec::new(),
                label_selector: None,
                page_size: 500,
                layout: Layout::PerKind,
                include_crds: true,
                secrets: false,
                with_namespaces: true,
                included: Vec::new(),
                strip: StripRules::default(),
            },
            groups_set: false,
        }
    }

    pub(super) fn err(&self, e: kube::Error, what: &str) -> Error {
        kube_error(e, what)
    }

    /// An object as JSON with its apiVersion and kind (list items normally carry them; filled
    /// in if not).
    pub(super) fn encode(&self, o: DynamicObject, kind: &KindInfo) -> Result<Value> {
        let mut v = serde_json::to_value(&o)
            .map_err(|e| Error::internal(format!("cannot encode an object: {e}")))?;
        v["apiVersion"] = Value::String(kind.ar.api_version.clone());
        v["kind"] = Value::String(kind.ar.kind.clone());
        Ok(v)
    }

    /// One object of a kind, for the per-object layout.
    async fn get_object(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(self.client.0.clone(), ns, &kind.ar),
            None => Api::all_with(self.client.0.clone(), &kind.ar),
        };
        let label = super::ObjectName {
            kind: &kind.ar.kind,
            namespace,
            name,
        };
        let o = api
            .get(name)
            .await
            .map_err(|e| self.err(e, &format!("get {label}")))?;
        self.encode(o, kind)
    }

    /// The kinds to back up, each at its most stable served version, sorted by group and kind.
    pub(super) async fn kinds(&self) -> Result<Vec<KindInfo>> {
        let groups: Vec<&str> = self.groups.iter().map(String::as_str).collect();
        let discovery = Discovery::new(self.client.0.clone())
            .filter(&groups)
            .run()
            .await
            .map_err(|e| self.err(e, "API discovery"))?;
        let mut out = Vec::new();
        for g in &self.groups {
            let Some(group) = discovery.get(g) else {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("the cluster serves no API group {g} (missing CRD group)"),
                )
                .with_hint(format!(
                    "install the CustomResourceDefinitions of {g}, or remove {g} from the configured groups"
                )));
            };
            let served_versions: Vec<String> = group.versions().map(str::to_string).collect();
            for (ar, caps) in group.resources_by_stability() {
                if !self.kinds.is_empty()
                    && !self.kinds.iter().any(|k| {
                        k.eq_ignore_ascii_case(&ar.kind) || k.eq_ignore_ascii_case(&ar.plural)
                    })
                {
                    continue;
                }
                if !caps.supports_operation("list") {
                    continue;
                }
                out.push(KindInfo {
                    namespaced: caps.scope == Scope::Namespaced,
                    served_versions: served_versions.clone(),
                    ar,
                });
            }
        }
        for k in &self.kinds {
            if !out
                .iter()
                .any(|i| k.eq_ignore_ascii_case(&i.ar.kind) || k.eq_ignore_ascii_case(&i.ar.plural))
            {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no kind {k} is served in the API groups {}",
                        self.groups.join(", ")
                    ),
                )
                .with_hint("check the configured kinds against `kubectl api-resources`"));
            }
        }
        out.sort_by(|a, b| (&a.ar.group, &a.ar.kind).cmp(&(&b.ar.group, &b.ar.kind)));
        Ok(out)
    }

    pub(super) fn list_params(&self, with_selector: bool) -> ListParams {
        let mut lp = ListParams::default().limit(self.page_size);
        if with_selector {
            if let Some(s) = &self.label_selector {
                lp = lp.labels(s);
            }
        }
        lp
    }

    /// Every object of a kind (respecting namespaces and selector), as JSON, unstripped.
    pub(super) async fn list_kind(&self, kind: &KindInfo) -> Result<Vec<Value>> {
        let what = format!(
            "list {} ({}.{})",
            kind.ar.kind, kind.ar.plural, kind.ar.group
        );
        let apis: Vec<Api<DynamicObject>> = if kind.namespaced && !self.namespaces.is_empty() {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced_with(self.client.0.clone(), ns, &kind.ar))
                .collect()
        } else {
            vec![Api::all_with(self.client.0.clone(), &kind.ar)]
        };
        let mut out = Vec::new();
        for api in apis {
            let objs = list_all(&api, &self.list_params(true), &what).await?;
            for o in objs {
                out.push(self.encode(o, kind)?);
            }
        }
        Ok(out)
    }

    /// The CRDs of the configured groups (and kinds), unstripped, sorted by name.
    async fn list_crds(&self) -> Result<Vec<Value>> {
        let api: Api<DynamicObject> = Api::all_with(self.client.0.clone(), &crd_resource());
        let objs = list_all(
            &api,
            &self.list_params(false),
            "list CustomResourceDefinitions",
        )
        .await?;
        let mut out = Vec::new();
        for o in objs {
            let mut v = serde_json::to_value(&o)
                .map_err(|e| Error::internal(format!("cannot encode a CRD: {e}")))?;
            v["apiVersion"] = Value::String("apiextensions.k8s.io/v1".into());
            v["kind"] = Value::String("CustomResourceDefinition".into());
            let group = v["spec"]["group"].as_str().unwrap_or_default();
            if !self.groups.iter().any(|g| g == group) {
                continue;
            }
            if !self.kinds.is_empty() {
                let kind = v["spec"]["names"]["kind"].as_str().unwrap_or_default();
                let plural = v["spec"]["names"]["plural"].as_str().unwrap_or_default();
                if !self
                    .kinds
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(kind) || k.eq_ignore_ascii_case(plural))
                {
                    continue;
                }
            }
            out.push(v);
        }
        sort_objects(&mut out);
        Ok(out)
    }

    pub(super) fn stripped(&self, mut objs: Vec<Value>) -> Vec<Value> {
        for o in &mut objs {
            strip_object(o, &self.strip);
        }
        sort_objects(&mut objs);
        objs
    }

    fn kind_facts(&self, k: &KindInfo) -> CustomResourceFacts {
        CustomResourceFacts {
            artifact: CustomResourceArtifact::Resources,
            group: Some(k.ar.group.clone()),
            version: Some(k.ar.version.clone()),
            kind: Some(k.ar.kind.clone()),
            plural: Some(k.ar.plural.clone()),
            namespaced: Some(k.namespaced),
            served_versions: Some(k.served_versions.clone()),
            ..CustomResourceFacts::default()
        }
    }

    fn plan(&self, name: String, facts: &CustomResourceFacts) -> Result<ArtifactPlan> {
        let mut p = ArtifactPlan::new(name, YAML_CONTENT_TYPE).text(true);
        p.facts = to_facts(facts)?;
        Ok(p)
    }

    /// The kind an artifact plan was discovered for (from its facts).
    fn kind_of(&self, plan: &ArtifactPlan, facts: &CustomResourceFacts) -> Result<KindInfo> {
        let fact = |f: &Option<String>| f.as_deref().unwrap_or_default().to_string();
        let (group, version, kind, plural) = (
            fact(&facts.group),
            fact(&facts.version),
            fact(&facts.kind),
            fact(&facts.plural),
        );
        // Only included kinds may be of the core group.
        let core = facts.artifact == CustomResourceArtifact::Included;
        if (group.is_empty() && !core) || version.is_empty() || kind.is_empty() || plural.is_empty()
        {
            return Err(Error::config(format!(
                "artifact {} was not planned by this source (its facts lack group/version/kind/plural)",
                plan.name
            )));
        }
        Ok(KindInfo {
            ar: ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(&group, &version, &kind),
                &plural,
            ),
            namespaced: facts.namespaced.unwrap_or(true),
            served_versions: Vec::new(),
        })
    }
}

/// Lists every page; a stale continue token (410 Expired) restarts the list, at most 3
/// times.
pub(crate) async fn list_all(
    api: &Api<DynamicObject>,
    lp: &ListParams,
    what: &str,
) -> Result<Vec<DynamicObject>> {
    let mut restarts = 0;
    'restart: loop {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = lp.clone();
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let page = match api.list(&params).await {
                Ok(p) => p,
                Err(e) if api_code(&e) == Some(410) && restarts < 3 => {
                    restarts += 1;
                    tracing::warn!(what, "continue token expired; restarting the list");
                    continue 'restart;
                }
                Err(e) => return Err(kube_error(e, what)),
            };
            items.extend(page.items);
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(items),
            }
        }
    }
}

/// Sorts by namespace, then name (cluster-scoped objects first).
pub(crate) fn sort_objects(objs: &mut [Value]) {
    objs.sort_by(|a, b| {
        let key = |v: &Value| {
            (
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
}

fn object_path(prefix: &str, v: &Value) -> String {
    let name = v["metadata"]["name"].as_str().unwrap_or_default();
    match v["metadata"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{prefix}/{ns}/{name}.yaml"),
        _ => format!("{prefix}/{CLUSTER_DIR}/{name}.yaml"),
    }
}

#[async_trait]
impl Source for CustomResourcesSource {
    fn component(&self) -> &str {
        &self.component
    }

    fn provider(&self) -> &str {
        "kubernetes"
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        let info = self.client.apiserver_version().await.map_err(|e| {
            self.err(e, "read the API server version")
                .with_operation("preflight")
        })?;
        let kinds = self
            .kinds()
            .await
            .map_err(|e| e.or_operation("preflight"))?;
        let mut notes = Vec::new();
        if kinds.is_empty() {
            notes.push(format!(
                "the groups {} serve no listable kind",
                self.groups.join(", ")
            ));
        }
        Ok(PreflightReport {
            server_version: Some(info.git_version),
            notes,
        })
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        let kinds = self.kinds().await.map_err(|e| e.or_operation("discover"))?;
        let mut included = Vec::new();
        for inc in &self.included {
            let k = self
                .included_kind(inc)
                .await
                .map_err(|e| e.or_operation("discover"))?;
            included.push((inc, k));
        }
        let mut plans = Vec::new();
        let crd_facts = CustomResourceFacts {
            artifact: CustomResourceArtifact::Crds,
            groups: Some(self.groups.clone()),
            ..CustomResourceFacts::default()
        };
        let ns_facts = CustomResourceFacts {
            artifact: CustomResourceArtifact::Namespaces,
            ..CustomResourceFacts::default()
        };
        let included_facts = |inc: &IncludedKind, k: &KindInfo| CustomResourceFacts {
            artifact: CustomResourceArtifact::Included,
            label_selector: Some(inc.label_selector.clone()),
            ..self.kind_facts(k)
        };
        let sensitive = |k: &KindInfo| k.ar.group.is_empty() && k.ar.kind == "Secret";
        match self.layout {
            Layout::PerKind => {
                if self.include_crds {
                    plans.push(self.plan("crds.yaml".into(), &crd_facts)?);
                }
                if self.with_namespaces {
                    plans.push(self.plan("namespaces.yaml".into(), &ns_facts)?);
                }
                for k in &kinds {
                    plans.push(self.plan(
                        format!("{}/{}.yaml", k.ar.group, k.ar.plural),
                        &self.kind_facts(k),
                    )?);
                }
                for (inc, k) in &included {
                    let name = format!("{}.yaml", included_prefix(k));
                    let plan = self.plan(name, &included_facts(inc, k))?;
                    plans.push(plan.sensitive(sensitive(k)));
                }
            }
            Layout::PerObject => {
                if self.include_crds {
                    for crd in self.list_crds().await? {
                        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
                        let f = CustomResourceFacts {
                            name: Some(name.to_string()),
                            ..crd_facts.clone()
                        };
                        plans.push(self.plan(format!("crds/{name}.yaml"), &f)?);
                    }
                }
                let one = |o: &Value, facts: CustomResourceFacts| CustomResourceFacts {
                    name: o["metadata"]["name"].as_str().map(str::to_string),
                    namespace: o["metadata"]["namespace"].as_str().map(str::to_string),
                    ..facts
                };
                let mut resources = Vec::new();
                for k in &kinds {
                    let prefix = format!("{}/{}", k.ar.group, k.ar.plural);
                    for o in self.list_kind(k).await? {
                        let f = one(&o, self.kind_facts(k));
                        plans.push(self.plan(object_path(&prefix, &o), &f)?);
                        resources.push(o);
                    }
                }
                let namespaces = namespaces_of(&resources);
                for (inc, k) in &included {
                    let prefix = included_prefix(k);
                    for o in self
                        .list_included(k, &inc.label_selector, &namespaces)
                        .await?
                    {
                        let f = one(&o, included_facts(inc, k));
                        let plan = self.plan(object_path(&prefix, &o), &f)?;
                        plans.push(plan.sensitive(sensitive(k)));
                    }
                }
                if self.with_namespaces {
                    for ns in self.related_namespaces(&resources) {
                        let f = CustomResourceFacts {
                            name: Some(ns.clone()),
                            ..ns_facts.clone()
                        };
                        plans.push(self.plan(format!("namespaces/{ns}.yaml"), &f)?);
                    }
                }
            }
        }
        if self.secrets {
            let f = CustomResourceFacts {
                artifact: CustomResourceArtifact::Secrets,
                ..CustomResourceFacts::default()
            };
            plans.push(self.plan("secrets.yaml".into(), &f)?.sensitive(true));
        }
        plans.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(plans)
    }

    async fn export(&self, artifact: &ArtifactPlan, _ctx: &ExportContext) -> Result<Export> {
        let mut facts: CustomResourceFacts = artifact.facts_as()?;
        let single = facts.name.clone();
        let namespace = facts.namespace.as_deref();
        let docs: Vec<Value> = match facts.artifact {
            CustomResourceArtifact::Secrets => return self.export_secrets(facts).await,
            CustomResourceArtifact::Crds => {
                let crds = self.list_crds().await?;
                match &single {
                    Some(n) => crds
                        .into_iter()
                        .filter(|c| c["metadata"]["name"].as_str() == Some(n))
                        .collect(),
                    None => crds,
                }
            }
            CustomResourceArtifact::Namespaces => {
                let names = match &single {
                    Some(n) => [n.clone()].into(),
                    None => self.related_namespaces(&self.all_resources().await?),
                };
                self.namespace_docs(&names).await?
            }
            CustomResourceArtifact::Included => {
                let kind = &self.kind_of(artifact, &facts)?;
                match &single {
                    Some(name) => vec![self.get_object(kind, namespace, name).await?],
                    None => {
                        let namespaces = namespaces_of(&self.all_resources().await?);
                        let selector = facts.label_selector.clone().unwrap_or_default();
                        self.list_included(kind, &selector, &namespaces).await?
                    }
                }
            }
            CustomResourceArtifact::Resources => {
                let kind = &self.kind_of(artifact, &facts)?;
                match &single {
                    Some(name) => vec![self.get_object(kind, namespace, name).await?],
                    None => self.list_kind(kind).await?,
                }
            }
        };
        if single.is_some() && docs.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{} disappeared since discovery", artifact.name),
            ));
        }
        let docs = self.stripped(docs);
        let text = if single.is_some() {
            to_yaml(&docs[0])?
        } else {
            to_yaml_documents(&docs)?
        };
        facts.objects = Some(docs.len() as u64);
        let facts = to_facts(&facts)?;
        Ok(Export::with_finish(
            stream::once(text.into_bytes()),
            async move { Ok(facts) },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns_name("gostoa.dev"));
        assert!(!is_dns_name("Gostoa.dev"));
        assert!(is_dns_label("tenant-acme"));
        assert!(!is_dns_label("_cluster"));
        let v = serde_json::json!({"metadata": {"name": "w", "namespace": "t"}});
        assert_eq!(
            object_path("gostoa.dev/tools", &v),
            "gostoa.dev/tools/t/w.yaml"
        );
        let v = serde_json::json!({"metadata": {"name": "w"}});
        assert_eq!(object_path("x/y", &v), "x/y/_cluster/w.yaml");
    }
}
