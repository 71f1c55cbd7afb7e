//! What is backed up beside the custom resources: the namespaces they live in (labels and
//! annotations, so a fresh cluster gets them back before the objects), the Secrets they
//! reference, and objects of other kinds included by label selector (e.g. the ConfigMaps
//! STOA's Tools use).

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{self, Scope};
use serde_json::{json, Map, Value};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::source::{to_facts, Export};
use stoa_backup_core::stream;

use super::crs::{list_all, CustomResourcesSource, KindInfo};
use super::facts::CustomResourceFacts;
use super::strip::strip_object;
use super::{api_code, to_yaml_documents};

/// The label the API server keeps on every namespace (its name): not backed up.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Another kind backed up beside the custom resources: the objects matching a label
/// selector in the namespaces the resources live in (or in the whole cluster, for a
/// cluster-scoped kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IncludedKind {
    pub api_version: String,
    pub kind: String,
    pub label_selector: String,
}

/// A Namespace as backed up: its name, labels (but the server's own) and annotations;
/// no spec, status or server fields.
pub(super) fn namespace_doc(live: &Value) -> Value {
    let mut meta = Map::new();
    meta.insert("name".into(), live["metadata"]["name"].clone());
    if let Some(labels) = live["metadata"]["labels"].as_object() {
        let mut labels = labels.clone();
        labels.remove(NAMESPACE_NAME_LABEL);
        if !labels.is_empty() {
            meta.insert("labels".into(), Value::Object(labels));
        }
    }
    if let Some(a) = live["metadata"]["annotations"].as_object() {
        if !a.is_empty() {
            meta.insert("annotations".into(), Value::Object(a.clone()));
        }
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
}

/// Where the artifacts of an included kind go: `included/<plural>` for the core group,
/// `included/<group>/<plural>` otherwise.
pub(super) fn included_prefix(kind: &KindInfo) -> String {
    if kind.ar.group.is_empty() {
        format!("included/{}", kind.ar.plural)
    } else {
        format!("included/{}/{}", kind.ar.group, kind.ar.plural)
    }
}

/// Collects `(namespace, name)` of Secrets referenced under `v`.
pub(crate) fn secret_refs(v: &Value, ns: &str, out: &mut BTreeSet<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let is_ref = matches!(k.as_str(), "secretRef" | "secretKeyRef" | "secretName");
                match (is_ref, c) {
                    (true, Value::String(name)) if !name.is_empty() => {
                        out.insert((ns.to_string(), name.clone()));
                    }
                    (true, Value::Object(r))
                        if r.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| !n.is_empty()) =>
                    {
                        let rns = r
                            .get("namespace")
                            .and_then(Value::as_str)
                            .filter(|n| !n.is_empty())
                            .unwrap_or(ns);
                        out.insert((
                            rns.to_string(),
                            r["name"].as_str().unwrap_or_default().to_string(),
                        ));
                    }
                    _ => secret_refs(c, ns, out),
                }
            }
        }
        Value::Array(a) => {
            for c in a {
                secret_refs(c, ns, out);
            }
        }
        _ => {}
    }
}

/// The Secrets the objects reference, `(namespace, name)`.
pub(super) fn secret_refs_of(objects: &[Value]) -> BTreeSet<(String, String)> {
    let mut refs = BTreeSet::new();
    for o in objects {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
        secret_refs(&o["spec"], ns, &mut refs);
    }
    refs
}

/// The namespaces the objects live in.
pub(super) fn namespaces_of(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .filter_map(|o| o["metadata"]["namespace"].as_str())
        .filter(|ns| !ns.is_empty())
        .map(str::to_string)
        .collect()
}

impl CustomResourcesSource {
    /// Every backed-up custom resource, unstripped.
    pub(super) async fn all_resources(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for k in self.kinds().await? {
            out.extend(self.list_kind(&k).await?);
        }
        Ok(out)
    }

    /// The namespaces the Namespaces artifact holds: those of the resources, and of the
    /// Secrets they reference when those are backed up.
    pub(super) fn related_namespaces(&self, resources: &[Value]) -> BTreeSet<String> {
        let mut names = namespaces_of(resources);
        if self.secrets {
            names.extend(secret_refs_of(resources).into_iter().map(|(ns, _)| ns));
        }
        names
    }

    /// The Secrets referenced by every backed-up object, as one sensitive YAML.
    pub(super) async fn export_secrets(&self, mut facts: CustomResourceFacts) -> Result<Export> {
        let refs = secret_refs_of(&self.all_resources().await?);
        let secret_ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "Secret"),
            "secrets",
        );
        let mut docs = Vec::new();
        let mut missing = Vec::new();
        for (ns, name) in &refs {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.0.clone(), ns, &secret_ar);
            let o = api
                .get_opt(name)
                .await
                .map_err(|e| self.err(e, &format!("get Secret {ns}/{name}")))?;
            let Some(o) = o else {
                missing.push(format!("{ns}/{name}"));
                continue;
            };
            let mut v = serde_json::to_value(&o)
                .map_err(|e| Error::internal(format!("cannot encode a Secret: {e}")))?;
            if v["type"] == "kubernetes.io/service-account-token" {
                continue;
            }
            v["apiVersion"] = Value::String("v1".into());
            v["kind"] = Value::String("Secret".into());
            docs.push(v);
        }
        let docs = self.stripped(docs);
        let text = to_yaml_documents(&docs)?;
        facts.objects = Some(docs.len() as u64);
        facts.missing_secrets = Some(missing);
        let facts = to_facts(&facts)?;
        Ok(Export::with_finish(
            stream::once(text.into_bytes()),
            async move { Ok(facts) },
        ))
    }

    /// The Namespaces named, as backed up ([`namespace_doc`], then the strip rules for
    /// their annotations and labels); one deleted meanwhile is left out.
    pub(super) async fn namespace_docs(&self, names: &BTreeSet<String>) -> Result<Vec<Value>> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "Namespace"),
            "namespaces",
        );
        let api: Api<DynamicObject> = Api::all_with(self.client.0.clone(), &ar);
        let mut docs = Vec::new();
        for name in names {
            let Some(live) = api
                .get_opt(name)
                .await
                .map_err(|e| self.err(e, &format!("get Namespace {name}")))?
            else {
                continue;
            };
            let live = serde_json::to_value(&live)
                .map_err(|e| Error::internal(format!("cannot encode a Namespace: {e}")))?;
            let mut doc = namespace_doc(&live);
            strip_object(&mut doc, &self.strip);
            docs.push(doc);
        }
        Ok(docs)
    }

    /// The API resource of an included kind, found by discovery of its group version.
    pub(super) async fn included_kind(&self, inc: &IncludedKind) -> Result<KindInfo> {
        let (group, version) = match inc.api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", inc.api_version.as_str()),
        };
        let gvk = GroupVersionKind::gvk(group, version, &inc.kind);
        match discovery::pinned_kind(&self.client, &gvk).await {
            Ok((ar, caps)) => Ok(KindInfo {
                namespaced: caps.scope == Scope::Namespaced,
                served_versions: vec![version.to_string()],
                ar,
            }),
            Err(e) if api_code(&e) == Some(404) || matches!(e, kube::Error::Discovery(_)) => {
                Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "the cluster serves no {} {} (configured to be included)",
                        inc.api_version, inc.kind
                    ),
                )
                .with_hint("check the included kinds against `kubectl api-resources`"))
            }
            Err(e) => Err(self.err(e, &format!("discover {} {}", inc.api_version, inc.kind))),
        }
    }

    /// The objects of an included kind matching `selector`: in `namespaces` for a
    /// namespaced kind, in the whole cluster otherwise. Unstripped, sorted.
    pub(super) async fn list_included(
        &self,
        kind: &KindInfo,
        selector: &str,
        namespaces: &BTreeSet<String>,
    ) -> Result<Vec<Value>> {
        let what = format!("list {} ({selector})", kind.ar.kind);
        let lp = ListParams::default().limit(self.page_size).labels(selector);
        let apis: Vec<Api<DynamicObject>> = if kind.namespaced {
            namespaces
                .iter()
                .map(|ns| Api::namespaced_with(self.client.0.clone(), ns, &kind.ar))
                .collect()
        } else {
            vec![Api::all_with(self.client.0.clone(), &kind.ar)]
        };
        let mut out = Vec::new();
        for api in apis {
            for o in list_all(&api, &lp, &what).await? {
                out.push(self.encode(o, kind)?);
            }
        }
        super::crs::sort_objects(&mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_secret_references() {
        let spec = serde_json::json!({
            "upstream": {"auth": {"type": "bearer", "secretRef": "openai-api-key"}},
            "env": [{"valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
            "tls": {"secretName": "certs"},
            "other": {"secretRef": {"name": "shared", "namespace": "platform"}},
            "empty": {"secretRef": ""}
        });
        let mut refs = BTreeSet::new();
        secret_refs(&spec, "t", &mut refs);
        let refs: Vec<(String, String)> = refs.into_iter().collect();
        let want = [
            ("platform", "shared"),
            ("t", "certs"),
            ("t", "db"),
            ("t", "openai-api-key"),
        ];
        assert_eq!(refs, want.map(|(a, b)| (a.to_string(), b.to_string())));
    }

    #[test]
    fn a_namespace_keeps_its_labels_and_annotations_only() {
        let live = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "tenant-acme", "uid": "u", "resourceVersion": "7",
                         "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": {"kubernetes.io/metadata.name": "tenant-acme", "gostoa.dev/tenant": "acme"},
                         "annotations": {"gostoa.dev/owner": "platform"},
                         "managedFields": [{}]},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        assert_eq!(
            namespace_doc(&live),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "tenant-acme", "labels": {"gostoa.dev/tenant": "acme"},
                                "annotations": {"gostoa.dev/owner": "platform"}}})
        );
        let bare =
            json!({"metadata": {"name": "x", "labels": {"kubernetes.io/metadata.name": "x"}}});
        assert_eq!(
            namespace_doc(&bare),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
        );
    }
}
