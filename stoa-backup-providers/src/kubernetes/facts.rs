//! The facts Kubernetes artifacts record in the manifest, and the facts the custom
//! resources restorer reports, as typed structs: written by the sources and the restorer,
//! read by them and by callers (with
//! [`ArtifactRecord::facts_as`](stoa_backup_core::ArtifactRecord::facts_as) and
//! [`CustomResourcesRestoreFacts::of`]).

use serde::{Deserialize, Serialize};
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::restore::RestoreReport;

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
    /// The Namespaces the resources live in, with their labels and annotations:
    /// `namespaces`.
    Namespaces,
    /// Objects of another kind included by label selector (e.g. the ConfigMaps the Tools
    /// use): `included`.
    Included,
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
    /// The label selector an included kind was listed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
}

/// What [`CustomResourcesRestorer`](super::CustomResourcesRestorer) did with every object of
/// the backup, or in a plan would do: the facts of its
/// [`RestoreReport`] (whose counts add the objects up).
///
/// ```
/// # fn demo(report: &stoa_backup_core::RestoreReport) -> stoa_backup_core::Result<()> {
/// use stoa_backup_providers::kubernetes::{CustomResourcesRestoreFacts, ObjectOutcome};
///
/// let facts = CustomResourcesRestoreFacts::of(report)?;
/// for o in facts.with_outcome(ObjectOutcome::CannotValidate) {
///     println!("{}: {}", o.label(), o.reason.as_deref().unwrap_or_default());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomResourcesRestoreFacts {
    /// Every object in restore order: namespaces, CustomResourceDefinitions, then the
    /// objects kind by kind.
    pub objects: Vec<ObjectRestore>,
}

impl CustomResourcesRestoreFacts {
    /// The facts of a report of the custom resources restorer (an empty list for a report
    /// without them).
    pub fn of(report: &RestoreReport) -> Result<Self> {
        if report.facts.is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_value(serde_json::Value::Object(report.facts.clone())).map_err(|e| {
            Error::integrity(format!(
                "the report's facts are not those of the custom resources restorer: {e}"
            ))
        })
    }

    /// The objects with this outcome, in restore order.
    pub fn with_outcome(&self, outcome: ObjectOutcome) -> impl Iterator<Item = &ObjectRestore> {
        self.objects.iter().filter(move |o| o.outcome == outcome)
    }
}

/// One object's part of [`CustomResourcesRestoreFacts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRestore {
    /// The kind (`Tool`, `Namespace`, `CustomResourceDefinition`).
    pub kind: String,
    /// The namespace, for namespaced objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
    /// What was (or would be) done to it; none when it was not attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ObjectAction>,
    /// How it went.
    pub outcome: ObjectOutcome,
    /// Why it was rejected or failed (the API server's message), could not be validated, or
    /// was not attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The HTTP status the API server rejected it with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The fields the API server named as invalid (the causes of a 422 `Invalid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<FieldCause>,
}

impl ObjectRestore {
    /// `Kind namespace/name`, or `Kind name` when cluster-scoped: how notes and errors name
    /// the object.
    pub fn label(&self) -> String {
        super::ObjectName {
            kind: &self.kind,
            namespace: self.namespace.as_deref(),
            name: &self.name,
        }
        .to_string()
    }
}

/// What the restore does to one object, found by a server-side dry run of the apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectAction {
    /// Absent from the target: created.
    Create,
    /// Present and different: updated (existing-data policy `Overwrite`).
    Update,
    /// Present and equal to the backup: left alone.
    Unchanged,
    /// Present: left alone (existing-data policy `Skip`).
    Skip,
    /// Present and different, and the existing-data policy `Fail` refuses to change it.
    Conflict,
}

impl ObjectAction {
    /// The word notes use (`create`, `update`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectAction::Create => "create",
            ObjectAction::Update => "update",
            ObjectAction::Unchanged => "unchanged",
            ObjectAction::Skip => "skip",
            ObjectAction::Conflict => "conflict",
        }
    }
}

/// How one object's restore went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectOutcome {
    /// Plan: the API server accepted it in a dry run (`dryRun=All`).
    Validated,
    /// Plan: its CRD is not installed (or not Established) or its namespace does not exist
    /// yet, so the server cannot check it before the restore creates them. It would be
    /// created.
    CannotValidate,
    /// Plan: the API server's dry run refused it (e.g. 422 `Invalid`), or its kind is served
    /// by no CRD the backup or the cluster holds. The apply would fail on it.
    Rejected,
    /// Apply: written (or found as the backup has it, or left alone by the policy).
    Applied,
    /// Apply: the API server refused it; see the reason.
    Failed,
    /// Apply: not tried, because the restore stopped at an earlier failure
    /// ([`FailurePolicy::Stop`](super::FailurePolicy::Stop)).
    NotAttempted,
}

/// A field the API server named in a rejection (one cause of a 422 `Invalid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldCause {
    /// The field (`spec.endpoint`).
    pub field: String,
    /// The server's reason (`FieldValueRequired`, `FieldValueNotSupported`, …).
    pub reason: String,
    /// The server's message (`Required value`).
    pub message: String,
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
            json!({"artifact": "namespaces", "objects": 2}),
            json!({"artifact": "namespaces", "name": "tenant-a", "objects": 1}),
            json!({
                "artifact": "included", "group": "", "version": "v1", "kind": "ConfigMap",
                "plural": "configmaps", "namespaced": true, "served_versions": ["v1"],
                "label_selector": "app.kubernetes.io/part-of=stoa-platform", "objects": 3,
            }),
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
