//! Cleaning objects for backup and re-apply (api-contracts §5.4): server-populated fields
//! out, configurable annotations and finalizers out, everything else kept.

use serde_json::Value;

/// Metadata fields the API server populates; never backed up.
pub const SERVER_METADATA_FIELDS: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The annotation `kubectl apply` keeps its last input in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Which annotations, labels and finalizers are dropped besides the server-populated
/// fields. Patterns are exact keys, or prefixes ending in `*` (`kopf.zalando.org/*`).
///
/// The default drops the `last-applied-configuration` annotation and everything STOA's
/// kopf-based operator adds: `kopf.zalando.org/*` annotations and finalizers (a restored
/// object with the operator's finalizer would hang on deletion until the operator runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripRules {
    annotations: Vec<String>,
    labels: Vec<String>,
    finalizers: Vec<String>,
    status: bool,
}

impl Default for StripRules {
    fn default() -> Self {
        StripRules {
            annotations: vec![LAST_APPLIED_ANNOTATION.into(), "kopf.zalando.org/*".into()],
            labels: Vec::new(),
            finalizers: vec!["kopf.zalando.org/*".into()],
            status: true,
        }
    }
}

impl StripRules {
    /// Only the server-populated fields, `status` and the last-applied annotation: keeps
    /// every other annotation and finalizer.
    pub fn minimal() -> Self {
        StripRules {
            annotations: vec![LAST_APPLIED_ANNOTATION.into()],
            labels: Vec::new(),
            finalizers: Vec::new(),
            status: true,
        }
    }

    /// Also drops annotations matching `pattern`.
    pub fn drop_annotation(mut self, pattern: impl Into<String>) -> Self {
        self.annotations.push(pattern.into());
        self
    }

    /// Also drops labels matching `pattern`.
    pub fn drop_label(mut self, pattern: impl Into<String>) -> Self {
        self.labels.push(pattern.into());
        self
    }

    /// Also drops finalizers matching `pattern`.
    pub fn drop_finalizer(mut self, pattern: impl Into<String>) -> Self {
        self.finalizers.push(pattern.into());
        self
    }

    /// Keeps `status` (dropped by default: it is re-created by controllers and cannot be
    /// applied through the main resource when it is a subresource).
    pub fn keep_status(mut self, keep: bool) -> Self {
        self.status = !keep;
        self
    }

    /// The annotation patterns dropped.
    pub fn annotations(&self) -> &[String] {
        &self.annotations
    }

    /// The finalizer patterns dropped.
    pub fn finalizers(&self) -> &[String] {
        &self.finalizers
    }
}

fn matches(patterns: &[String], key: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => p == key,
    })
}

/// Strips an object (a custom resource, a CRD, anything) in place: server-populated
/// metadata, `status` (unless kept), and the annotations, labels and finalizers the rules
/// name. Empty `annotations`, `labels` and `finalizers` are removed altogether, so the
/// result is the same whether the server returned an empty map or none.
pub fn strip_object(object: &mut Value, rules: &StripRules) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    if rules.status {
        obj.remove("status");
    }
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for f in SERVER_METADATA_FIELDS {
        meta.remove(*f);
    }
    for (field, patterns) in [
        ("annotations", &rules.annotations),
        ("labels", &rules.labels),
    ] {
        if let Some(map) = meta.get_mut(field).and_then(Value::as_object_mut) {
            map.retain(|k, _| !matches(patterns, k));
        }
        if meta
            .get(field)
            .is_some_and(|v| v.is_null() || v.as_object().is_some_and(|m| m.is_empty()))
        {
            meta.remove(field);
        }
    }
    if let Some(list) = meta.get_mut("finalizers").and_then(Value::as_array_mut) {
        list.retain(|f| !f.as_str().is_some_and(|s| matches(&rules.finalizers, s)));
    }
    for field in ["finalizers", "ownerReferences"] {
        if meta
            .get(field)
            .is_some_and(|v| v.is_null() || v.as_array().is_some_and(|a| a.is_empty()))
        {
            meta.remove(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_server_fields_status_and_kopf_marks() {
        let mut o = json!({
            "apiVersion": "gostoa.dev/v1alpha1", "kind": "Tool",
            "metadata": {
                "name": "w", "namespace": "t", "uid": "u", "resourceVersion": "1", "generation": 2,
                "creationTimestamp": "2025-01-01T00:00:00Z", "managedFields": [{}], "selfLink": "/x",
                "deletionTimestamp": "2025-01-01T00:00:00Z", "deletionGracePeriodSeconds": 0,
                "labels": {"app": "stoa"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "kopf.zalando.org/last-handled-configuration": "{}",
                    "team": "gw"
                },
                "finalizers": ["kopf.zalando.org/KopfFinalizerMarker", "example.com/keep"]
            },
            "spec": {"a": 1},
            "status": {"registered": true}
        });
        strip_object(&mut o, &StripRules::default());
        assert_eq!(
            o,
            json!({
                "apiVersion": "gostoa.dev/v1alpha1", "kind": "Tool",
                "metadata": {"name": "w", "namespace": "t", "labels": {"app": "stoa"},
                             "annotations": {"team": "gw"}, "finalizers": ["example.com/keep"]},
                "spec": {"a": 1}
            })
        );
    }

    #[test]
    fn empty_collections_disappear() {
        let mut o = json!({"metadata": {"name": "x", "annotations": {"kopf.zalando.org/a": "1"},
                                         "finalizers": ["kopf.zalando.org/KopfFinalizerMarker"],
                                         "labels": {}}});
        strip_object(&mut o, &StripRules::default());
        assert_eq!(o, json!({"metadata": {"name": "x"}}));
        let mut o = json!({"metadata": {"name": "x", "annotations": {"kopf.zalando.org/a": "1"}}});
        strip_object(&mut o, &StripRules::minimal());
        assert_eq!(o["metadata"]["annotations"]["kopf.zalando.org/a"], "1");
    }
}
