//! Change probes for the scheduler's on-change trigger: cheap metadata-only list calls
//! whose digest changes when what [`HelmValuesSource`] or [`CustomResourcesSource`] backs
//! up does.
//!
//! Both digest the *objects'* `metadata.resourceVersion`s, never a list's: a list's
//! `metadata.resourceVersion` is the storage revision the list was served at (etcd's
//! cluster-wide revision), which moves with any write anywhere in the cluster — a Lease
//! renewal, an Event — so it would report a change on every poll. An object's own
//! resourceVersion changes exactly when that object is written, and a created or deleted
//! object adds or removes an entry. Lists ask for metadata only
//! (`PartialObjectMetadataList`, kube's `list_metadata`): Helm release Secrets carry the
//! whole gzipped release and custom resources their specs, neither of which a probe needs.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind, ObjectMeta};
use serde::de::DeserializeOwned;
use stoa_backup_core::change::{ChangeDigest, ChangeProbe, ChangeToken};
use stoa_backup_core::error::{Error, Result};

use super::crs::{crd_resource, CustomResourcesSource, KindInfo};
use super::helm::{HelmDriver, HelmValuesSource};
use super::related::{namespaces_of, secret_refs_of};
use super::{api_code, kube_error};

/// The operation probe errors name.
const OPERATION: &str = "probe changes";

/// Objects per metadata list request of the Helm probe.
const HELM_PAGE: u32 = 500;

/// The metadata of every object `api` lists with `lp`, following `continue` tokens; a stale
/// token (410 Expired) restarts the list, at most 3 times.
async fn list_metadata_all<K>(api: &Api<K>, lp: &ListParams, what: &str) -> Result<Vec<ObjectMeta>>
where
    K: Clone + DeserializeOwned + Debug,
{
    let mut restarts = 0;
    'restart: loop {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = lp.clone();
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let page = match api.list_metadata(&params).await {
                Ok(p) => p,
                Err(e) if api_code(&e) == Some(410) && restarts < 3 => {
                    restarts += 1;
                    tracing::warn!(what, "continue token expired; restarting the list");
                    continue 'restart;
                }
                Err(e) => return Err(kube_error(e, what)),
            };
            out.extend(page.items.into_iter().map(|o| o.metadata));
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}

fn field(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// Watches the Helm release storage objects of a [`HelmValuesSource`]: the Secrets
/// (type `helm.sh/release.v1`) or ConfigMaps labelled `owner=helm` (and `name=<release>`
/// for a configured release) of each configured namespace. The token is a digest of their
/// `(namespace, name, resourceVersion)`: a new revision is a new object, an upgrade marks
/// the previous one `superseded` (a write), an uninstall deletes them. Needs `list` on
/// Secrets (ConfigMaps) there, like the source. Built by [`HelmValuesSource::change_probe`].
#[derive(Debug, Clone)]
pub struct HelmChangeProbe {
    source: HelmValuesSource,
}

impl HelmValuesSource {
    /// A [`ChangeProbe`] over the release storage this source reads (same client,
    /// namespaces, releases and driver).
    pub fn change_probe(&self) -> HelmChangeProbe {
        HelmChangeProbe {
            source: self.clone(),
        }
    }
}

impl HelmChangeProbe {
    fn fail(&self, e: Error) -> Error {
        e.or_component(self.source.component.clone())
            .with_operation(OPERATION)
    }
}

#[async_trait::async_trait]
impl ChangeProbe for HelmChangeProbe {
    fn describe(&self) -> String {
        let storage = match self.source.driver {
            HelmDriver::Secret => "Secrets",
            HelmDriver::ConfigMap => "ConfigMaps",
        };
        let targets: Vec<String> = self
            .source
            .targets
            .iter()
            .map(|t| match &t.release {
                Some(r) => format!("{}/{r}", t.namespace),
                None => format!("{} (every release)", t.namespace),
            })
            .collect();
        format!("Helm release {storage} of {}", targets.join(", "))
    }

    async fn probe(&self) -> Result<ChangeToken> {
        let client = &self.source.client.0;
        let mut digest = ChangeDigest::new();
        for t in &self.source.targets {
            let ns = t.namespace.as_str();
            let mut selector = "owner=helm".to_string();
            if let Some(r) = &t.release {
                selector.push_str(&format!(",name={r}"));
            }
            let what = match &t.release {
                Some(r) => format!("list the revisions of Helm release {ns}/{r}"),
                None => format!("list the Helm releases of namespace {ns}"),
            };
            let lp = ListParams::default().labels(&selector).limit(HELM_PAGE);
            let metas = match self.source.driver {
                HelmDriver::Secret => {
                    let lp = lp.fields("type=helm.sh/release.v1");
                    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
                    list_metadata_all(&api, &lp, &what).await
                }
                HelmDriver::ConfigMap => {
                    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
                    list_metadata_all(&api, &lp, &what).await
                }
            }
            .map_err(|e| self.fail(e))?;
            for m in metas {
                digest.add([
                    "release".to_string(),
                    ns.to_string(),
                    field(&m.name),
                    field(&m.resource_version),
                ]);
            }
        }
        Ok(digest.finish())
    }
}

/// Watches what a [`CustomResourcesSource`] backs up, with the same configuration: the
/// kinds discovery finds in the groups, every object of them (namespaces and label
/// selector as configured), the groups' CustomResourceDefinitions, the namespaces the
/// objects live in, the objects of included kinds and the referenced Secrets (each only
/// when the source backs it up). The token is a digest of every such object's
/// `(kind, namespace, name, resourceVersion)` and of the discovered kinds, from paged
/// metadata lists (see the module documentation for why not the lists' resourceVersion).
///
/// Cost per probe: discovery of the groups, one paged list per kind (per configured
/// namespace), one list of CRDs and one of Namespaces; with referenced Secrets on, the
/// kinds are listed in full (the references are in the specs) and each referenced Secret's
/// metadata is read. Built by [`CustomResourcesSource::change_probe`].
#[derive(Debug, Clone)]
pub struct CustomResourcesChangeProbe {
    source: CustomResourcesSource,
}

impl CustomResourcesSource {
    /// A [`ChangeProbe`] over what this source backs up (same client and configuration).
    pub fn change_probe(&self) -> CustomResourcesChangeProbe {
        CustomResourcesChangeProbe {
            source: self.clone(),
        }
    }
}

/// One object's entry: `[what, group, kind, namespace, name, resourceVersion]`.
fn object_entry(what: &str, ar: &ApiResource, m: &ObjectMeta) -> [String; 6] {
    [
        what.to_string(),
        ar.group.clone(),
        ar.kind.clone(),
        field(&m.namespace),
        field(&m.name),
        field(&m.resource_version),
    ]
}

impl CustomResourcesChangeProbe {
    fn fail(&self, e: Error) -> Error {
        e.or_component(self.source.component.clone())
            .with_operation(OPERATION)
    }

    /// The APIs a kind is listed through: one per configured namespace, or the whole
    /// cluster.
    fn apis(
        &self,
        kind: &KindInfo,
        namespaces: Option<&BTreeSet<String>>,
    ) -> Vec<Api<DynamicObject>> {
        let client = &self.source.client.0;
        let configured: BTreeSet<String> = self.source.namespaces.iter().cloned().collect();
        let namespaces = match namespaces {
            Some(ns) => Some(ns),
            None if !configured.is_empty() => Some(&configured),
            None => None,
        };
        match namespaces {
            Some(ns) if kind.namespaced => ns
                .iter()
                .map(|n| Api::namespaced_with(client.clone(), n, &kind.ar))
                .collect(),
            _ => vec![Api::all_with(client.clone(), &kind.ar)],
        }
    }

    /// The metadata of every object of a backed-up kind.
    async fn kind_metadata(&self, kind: &KindInfo) -> Result<Vec<ObjectMeta>> {
        let what = format!(
            "list {} ({}.{})",
            kind.ar.kind, kind.ar.plural, kind.ar.group
        );
        let lp = self.source.list_params(true);
        let mut out = Vec::new();
        for api in self.apis(kind, None) {
            out.extend(list_metadata_all(&api, &lp, &what).await?);
        }
        Ok(out)
    }

    /// The CRDs the source backs up: those named `<plural>.<group>` of a configured group
    /// (and, when kinds are configured, of a backed-up kind).
    async fn crds(&self, digest: &mut ChangeDigest, kinds: &[KindInfo]) -> Result<()> {
        let api: Api<DynamicObject> = Api::all_with(self.source.client.0.clone(), &crd_resource());
        let metas = list_metadata_all(
            &api,
            &self.source.list_params(false),
            "list CustomResourceDefinitions",
        )
        .await?;
        for m in metas {
            let name = field(&m.name);
            let Some((plural, group)) = name.split_once('.') else {
                continue;
            };
            if !self.source.groups.iter().any(|g| g == group) {
                continue;
            }
            let configured = &self.source.kinds;
            if !configured.is_empty()
                && !configured.iter().any(|k| k.eq_ignore_ascii_case(plural))
                && !kinds
                    .iter()
                    .any(|k| k.ar.group == group && k.ar.plural == plural)
            {
                continue;
            }
            digest.add(["crd".to_string(), name, field(&m.resource_version)]);
        }
        Ok(())
    }

    async fn probe_all(&self) -> Result<ChangeToken> {
        let s = &self.source;
        let mut digest = ChangeDigest::new();
        let kinds = s.kinds().await?;
        let mut resource_namespaces = BTreeSet::new();
        let mut related_namespaces = BTreeSet::new();
        let mut refs = BTreeSet::new();
        for k in &kinds {
            digest.add([
                "kind".to_string(),
                k.ar.group.clone(),
                k.ar.version.clone(),
                k.ar.kind.clone(),
                k.ar.plural.clone(),
                k.namespaced.to_string(),
            ]);
            if s.secrets {
                // The references are in the specs: the full objects are needed.
                let objects = s.list_kind(k).await?;
                resource_namespaces.extend(namespaces_of(&objects));
                refs.extend(secret_refs_of(&objects));
                for o in objects {
                    let meta: ObjectMeta =
                        serde_json::from_value(o["metadata"].clone()).map_err(|e| {
                            Error::internal(format!("cannot read an object's metadata: {e}"))
                        })?;
                    digest.add(object_entry("object", &k.ar, &meta));
                }
            } else {
                for m in self.kind_metadata(k).await? {
                    if let Some(ns) = m.namespace.as_ref().filter(|n| !n.is_empty()) {
                        resource_namespaces.insert(ns.clone());
                    }
                    digest.add(object_entry("object", &k.ar, &m));
                }
            }
        }
        related_namespaces.extend(resource_namespaces.iter().cloned());
        if s.include_crds {
            self.crds(&mut digest, &kinds).await?;
        }
        if s.secrets {
            let secret = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("", "v1", "Secret"),
                "secrets",
            );
            for (ns, name) in &refs {
                related_namespaces.insert(ns.clone());
                let api: Api<DynamicObject> = Api::namespaced_with(s.client.0.clone(), ns, &secret);
                let rv = api
                    .get_metadata_opt(name)
                    .await
                    .map_err(|e| kube_error(e, &format!("get Secret {ns}/{name}")))?
                    .map(|o| field(&o.metadata.resource_version))
                    .unwrap_or_else(|| "missing".into());
                digest.add(["secret".to_string(), ns.clone(), name.clone(), rv]);
            }
        }
        if s.with_namespaces && !related_namespaces.is_empty() {
            let ar = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("", "v1", "Namespace"),
                "namespaces",
            );
            let api: Api<DynamicObject> = Api::all_with(s.client.0.clone(), &ar);
            let lp = ListParams::default().limit(s.page_size);
            for m in list_metadata_all(&api, &lp, "list Namespaces").await? {
                if m.name
                    .as_ref()
                    .is_some_and(|n| related_namespaces.contains(n))
                {
                    digest.add([
                        "namespace".to_string(),
                        field(&m.name),
                        field(&m.resource_version),
                    ]);
                }
            }
        }
        for inc in &s.included {
            let k = s.included_kind(inc).await?;
            let what = format!("list {} ({})", k.ar.kind, inc.label_selector);
            let lp = ListParams::default()
                .limit(s.page_size)
                .labels(&inc.label_selector);
            for api in self.apis(&k, Some(&resource_namespaces)) {
                for m in list_metadata_all(&api, &lp, &what).await? {
                    digest.add(object_entry("included", &k.ar, &m));
                }
            }
        }
        Ok(digest.finish())
    }
}

#[async_trait::async_trait]
impl ChangeProbe for CustomResourcesChangeProbe {
    fn describe(&self) -> String {
        let s = &self.source;
        let kinds = if s.kinds.is_empty() {
            "every kind".to_string()
        } else {
            s.kinds.join(", ")
        };
        let mut also = Vec::new();
        if s.include_crds {
            also.push("their CRDs");
        }
        if s.with_namespaces {
            also.push("namespaces");
        }
        if s.secrets {
            also.push("referenced Secrets");
        }
        if !s.included.is_empty() {
            also.push("included kinds");
        }
        let also = if also.is_empty() {
            String::new()
        } else {
            format!(", with {}", also.join(", "))
        };
        format!(
            "custom resources of {} ({kinds}){also}",
            s.groups.join(", ")
        )
    }

    async fn probe(&self) -> Result<ChangeToken> {
        self.probe_all().await.map_err(|e| self.fail(e))
    }
}
