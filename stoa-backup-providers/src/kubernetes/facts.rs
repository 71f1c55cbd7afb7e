//! The facts Kubernetes artifacts record in the manifest, as typed structs: written by the
//! sources, read by them and the restorers (and by callers, with
//! [`ArtifactRecord::facts_as`](stoa_backup_core::ArtifactRecord::facts_as)).

use serde::{Deserialize, Serialize};

use super::HelmDriver;

/// What an artifact of [`CustomResourcesSource`](super::CustomResourcesSource) holds (the
/// `artifact` fact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomResourceArtifact {
    /// Objects of one kind, or one object ([`Layout::PerObject`](super::Layout::PerObject)):
    /// `resources`. Also how an artifact without the fact is read.
    #[default]
    Resources,
    /// CustomResourceDefinitions of the groups (or one of them): `crds`.
    Crds,
    /// The Secrets the resources reference: `secrets`.
    Secrets,
}

/// Facts of an artifact of [`CustomResourcesSource`](super::CustomResourcesSource). Which
/// are set depends on [`artifact`](Self::artifact): the kind's API facts for resources, the
/// groups for CRDs; `name`/`namespace` for one object or CRD per file; after export the
/// object count (and, for Secrets, those referenced but missing).
///
/// ```
/// # fn demo(record: &stoa_backup_core::ArtifactRecord) -> stoa_backup_core::Result<()> {
/// use stoa_backup_providers::kubernetes::CustomResourceFacts;
///
/// let facts: CustomResourceFacts = record.facts_as()?;
/// println!("{:?} {:?}: {:?} objects", facts.artifact, facts.kind, facts.objects);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomResourceFacts {
    /// What the artifact holds.
    #[serde(default)]
    pub artifact: CustomResourceArtifact,
    /// The kind's API group (`gostoa.dev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The version the objects were read at (the most stable one served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The kind (`Tool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The kind's plural (`tools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plural: Option<String>,
    /// Whether the kind is namespaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaced: Option<bool>,
    /// Every version the cluster served for the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_versions: Option<Vec<String>>,
    /// The API groups whose CRDs the artifact holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// The one object's (or CRD's) name, in the per-object layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The one object's namespace, in the per-object layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Objects in the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    /// Secrets referenced by the resources but absent from the cluster (`namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_secrets: Option<Vec<String>>,
}

/// Facts of a values artifact (`<namespace>/<release>.values.yaml`) of
/// [`HelmValuesSource`](super::HelmValuesSource): the release revision the values come
/// from. The restorer builds the `helm upgrade --install` command from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelmValuesFacts {
    /// The release's name.
    pub release: String,
    /// The release's namespace.
    pub namespace: String,
    /// The revision backed up (the latest deployed one).
    pub revision: u64,
    /// The revision's status (`deployed`).
    pub status: String,
    /// The chart's name.
    pub chart: String,
    /// The chart's version.
    pub chart_version: String,
    /// The chart's app version (`null` when the chart has none).
    #[serde(default)]
    pub app_version: Option<String>,
    /// Where Helm kept the release.
    pub driver: HelmDriver,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use stoa_backup_core::source::to_facts;

    fn record(component: &str, facts: Value) -> stoa_backup_core::ArtifactRecord {
        crate::record_with_facts(component, "kubernetes", "x.yaml", facts)
    }

    #[test]
    fn reads_the_facts_custom_resources_recorded_before_typed_facts() {
        for today in [
            json!({
                "artifact": "resources", "group": "gostoa.dev", "version": "v1alpha1",
                "kind": "Tool", "plural": "tools", "namespaced": true,
                "served_versions": ["v1alpha1"], "objects": 12,
            }),
            json!({
                "artifact": "resources", "group": "gostoa.dev", "version": "v1alpha1",
                "kind": "Tool", "plural": "tools", "namespaced": true,
                "served_versions": ["v1alpha1"], "name": "weather", "namespace": "tenant-a",
                "objects": 1,
            }),
            json!({"artifact": "crds", "groups": ["gostoa.dev"], "objects": 5}),
            json!({"artifact": "crds", "groups": ["gostoa.dev"], "name": "tools.gostoa.dev", "objects": 1}),
            json!({"artifact": "secrets", "objects": 1, "missing_secrets": ["tenant-a/gone"]}),
        ] {
            let f: CustomResourceFacts = record("crds", today.clone()).facts_as().unwrap();
            assert_eq!(Value::Object(to_facts(&f).unwrap()), today);
        }
        let f: CustomResourceFacts = record("crds", json!({"artifact": "crds", "groups": []}))
            .facts_as()
            .unwrap();
        assert_eq!(f.artifact, CustomResourceArtifact::Crds);
        // An artifact another source stored under the component reads as resources.
        let f: CustomResourceFacts = record("crds", json!({"path": "x.yaml"}))
            .facts_as()
            .unwrap();
        assert_eq!(f, CustomResourceFacts::default());
        // One this version does not know.
        let err = record("crds", json!({"artifact": "webhooks"}))
            .facts_as::<CustomResourceFacts>()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            stoa_backup_core::ErrorKind::Unsupported,
            "{err}"
        );
    }

    #[test]
    fn reads_the_facts_helm_values_recorded_before_typed_facts() {
        for (today, driver) in [
            (
                json!({
                    "release": "stoa", "namespace": "stoa-system", "revision": 2,
                    "status": "deployed", "chart": "stoa-platform", "chart_version": "0.1.0",
                    "app_version": "2.0.0", "driver": "secret",
                }),
                HelmDriver::Secret,
            ),
            (
                json!({
                    "release": "stoa", "namespace": "stoa-system", "revision": 4,
                    "status": "deployed", "chart": "stoa-platform", "chart_version": "0.1.0",
                    "app_version": null, "driver": "configmap",
                }),
                HelmDriver::ConfigMap,
            ),
        ] {
            let f: HelmValuesFacts = record("helm", today.clone()).facts_as().unwrap();
            assert_eq!(f.driver, driver);
            assert_eq!(Value::Object(to_facts(&f).unwrap()), today);
        }
        let err = record("helm", json!({"release": "stoa"}))
            .facts_as::<HelmValuesFacts>()
            .unwrap_err();
        assert_eq!(err.kind(), stoa_backup_core::ErrorKind::Integrity);
        assert!(err.to_string().contains("namespace"), "{err}");
    }
}
