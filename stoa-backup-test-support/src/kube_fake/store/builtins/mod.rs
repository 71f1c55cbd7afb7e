//! Built-in kinds beyond the core ones (ServiceAccount, PersistentVolumeClaim, CronJob, Job,
//! Role, RoleBinding, ClusterRole, ClusterRoleBinding, Lease), and the API server's validation of
//! built-in objects on every create, update and apply, dry runs included: names, labels,
//! ConfigMap keys and size, claims, CronJobs and the Job and pod templates inside them
//! ([`workloads`], schedules in [`cron`]), RBAC rules, role references and subjects
//! ([`rbac`]), Lease specs ([`coordination`]). Each violation is one cause of the 422 `Invalid` answer, worded as the API
//! server words it (`CronJob.batch "x" is invalid: spec.schedule: Required value`).
//!
//! Not reproduced: defaulting, immutability of fields on update (e.g. `roleRef`), and checks
//! of fields the tests do not write (affinity, probes, lifecycle hooks, …).

mod coordination;
mod cron;
mod rbac;
mod workloads;

#[cfg(test)]
mod apply_tests;

use serde_json::Value;

use super::schema::Violation;
use super::ResourceType;

/// The types served besides Namespace, Secret, ConfigMap, Pod and CRDs.
pub(super) fn types() -> Vec<ResourceType> {
    vec![
        ResourceType::builtin("", "v1", "ServiceAccount", "serviceaccounts", true, &[]),
        ResourceType::builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["status"],
        ),
        ResourceType::builtin("batch", "v1", "CronJob", "cronjobs", true, &["status"]),
        ResourceType::builtin("batch", "v1", "Job", "jobs", true, &["status"]),
        ResourceType::builtin(rbac::GROUP, "v1", "Role", "roles", true, &[]),
        ResourceType::builtin(rbac::GROUP, "v1", "RoleBinding", "rolebindings", true, &[]),
        ResourceType::builtin(rbac::GROUP, "v1", "ClusterRole", "clusterroles", false, &[]),
        ResourceType::builtin(
            rbac::GROUP,
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
        ),
        ResourceType::builtin(coordination::GROUP, "v1", "Lease", "leases", true, &[]),
    ]
}

/// Every violation of a built-in object, sorted by field (empty for custom resources and
/// kinds without checks).
pub(super) fn validate(rt: &ResourceType, name: &str, value: &Value) -> Vec<Violation> {
    if rt.crd.is_some() {
        return Vec::new();
    }
    let mut c = Checks::default();
    let rbac_kind = rt.group == rbac::GROUP;
    if rbac_kind {
        c.path_segment_name("metadata.name", name);
    } else if !rt.is_namespace() {
        c.subdomain("metadata.name", name);
    }
    c.labels("metadata.labels", &value["metadata"]["labels"]);
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "ConfigMap") => config_map(&mut c, value),
        ("", "PersistentVolumeClaim") => claim(&mut c, &value["spec"]),
        ("batch", "CronJob") => workloads::cron_job(&mut c, name, value),
        ("batch", "Job") => workloads::job(&mut c, "spec", &value["spec"]),
        (rbac::GROUP, kind) => rbac::validate(&mut c, kind, value),
        (coordination::GROUP, "Lease") => coordination::lease(&mut c, &value["spec"]),
        _ => {}
    }
    c.out.sort_by(|a, b| a.field.cmp(&b.field));
    c.out
}

/// Kubernetes refuses ConfigMaps larger than this.
const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;

fn config_map(c: &mut Checks, value: &Value) {
    let mut size = 0;
    for field in ["data", "binaryData"] {
        if let Some(m) = value[field].as_object() {
            for (k, v) in m {
                size += k.len() + v.as_str().map_or(0, str::len);
                if !is_config_key(k) {
                    c.invalid(
                        &format!("{field}[{k}]"),
                        &Value::String(k.clone()),
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    );
                }
            }
        }
    }
    if size > MAX_CONFIG_MAP_BYTES {
        c.push(
            "[]",
            "FieldValueTooLong",
            format!("Too long: must have at most {MAX_CONFIG_MAP_BYTES} bytes"),
        );
    }
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn claim(c: &mut Checks, spec: &Value) {
    match spec["accessModes"].as_array() {
        Some(modes) if !modes.is_empty() => {
            for (i, m) in modes.iter().enumerate() {
                c.one_of(&format!("spec.accessModes[{i}]"), m, ACCESS_MODES);
            }
        }
        _ => c.required_because("spec.accessModes", "at least 1 access mode is required"),
    }
    let storage = &spec["resources"]["requests"]["storage"];
    if storage.is_null() {
        c.required("spec.resources[storage]");
    } else {
        c.positive_quantity("spec.resources[storage]", storage);
    }
}

fn is_config_key(k: &str) -> bool {
    !k.is_empty()
        && k != "."
        && k != ".."
        && k.len() <= 253
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS labels joined by `.`, at most 253 characters.
pub(super) fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A label value (or the name part of a key): at most 63 characters, alphanumerics with
/// `-`, `_` and `.` inside; empty allowed.
fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric()))
}

/// A Kubernetes quantity (`250m`, `1Gi`, `2`, `1e3`) as a number.
pub(super) fn quantity(s: &str) -> Option<f64> {
    let suffixes: &[(&str, f64)] = &[
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, factor) = suffixes
        .iter()
        .find_map(|(suffix, f)| s.strip_suffix(suffix).map(|n| (n, *f)))
        .unwrap_or((s, 1.0));
    let plain = number
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'+' | b'-' | b'e' | b'E'));
    if number.is_empty() || !plain {
        return None;
    }
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// The violations found so far, and how each is worded.
#[derive(Debug, Default)]
pub(super) struct Checks {
    out: Vec<Violation>,
}

impl Checks {
    fn push(&mut self, field: &str, reason: &'static str, message: String) {
        self.out.push(Violation {
            field: field.to_string(),
            reason,
            message,
        });
    }

    pub(super) fn required(&mut self, field: &str) {
        self.push(field, "FieldValueRequired", "Required value".into());
    }

    pub(super) fn required_because(&mut self, field: &str, detail: &str) {
        self.push(
            field,
            "FieldValueRequired",
            format!("Required value: {detail}"),
        );
    }

    pub(super) fn invalid(&mut self, field: &str, value: &Value, detail: &str) {
        self.push(
            field,
            "FieldValueInvalid",
            format!("Invalid value: {}: {detail}", shown(value)),
        );
    }

    pub(super) fn duplicate(&mut self, field: &str, value: &Value) {
        self.push(
            field,
            "FieldValueDuplicate",
            format!("Duplicate value: {}", shown(value)),
        );
    }

    pub(super) fn not_found(&mut self, field: &str, value: &Value) {
        self.push(
            field,
            "FieldValueNotFound",
            format!("Not found: {}", shown(value)),
        );
    }

    /// `value` must be one of `supported` (absent values are not checked).
    pub(super) fn one_of(&mut self, field: &str, value: &Value, supported: &[&str]) {
        if value.is_null() || value.as_str().is_some_and(|v| supported.contains(&v)) {
            return;
        }
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.push(
            field,
            "FieldValueNotSupported",
            format!(
                "Unsupported value: {}: supported values: {}",
                shown(value),
                list.join(", ")
            ),
        );
    }

    /// An integer of at least `min`, when present.
    pub(super) fn at_least(&mut self, field: &str, value: &Value, min: i64) {
        if value.is_null() {
            return;
        }
        match value.as_i64() {
            Some(n) if n >= min => {}
            Some(_) => self.invalid(
                field,
                value,
                &format!("must be greater than or equal to {min}"),
            ),
            None => self.invalid(field, value, "must be an integer"),
        }
    }

    pub(super) fn subdomain(&mut self, field: &str, name: &str) {
        if !is_subdomain(name) {
            self.invalid(
                field,
                &Value::String(name.into()),
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            );
        }
    }

    pub(super) fn label(&mut self, field: &str, name: &str) {
        if !is_dns_label(name) {
            self.invalid(
                field,
                &Value::String(name.into()),
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            );
        }
    }

    /// RBAC objects' names: anything but `.`, `..` and names holding `/` or `%`.
    pub(super) fn path_segment_name(&mut self, field: &str, name: &str) {
        let bad = if name.is_empty() {
            Some("name or generateName is required")
        } else if name == "." || name == ".." {
            Some("may not be '.' or '..'")
        } else if name.contains('/') || name.contains('%') {
            Some("may not contain '/' or '%'")
        } else {
            None
        };
        if let Some(detail) = bad {
            self.invalid(field, &Value::String(name.into()), detail);
        }
    }

    fn labels(&mut self, field: &str, labels: &Value) {
        let Some(m) = labels.as_object() else { return };
        for (k, v) in m {
            let (prefix, name) = match k.rsplit_once('/') {
                Some((p, n)) => (Some(p), n),
                None => (None, k.as_str()),
            };
            if prefix.is_some_and(|p| !is_subdomain(p)) || name.is_empty() || !is_label_value(name)
            {
                self.invalid(
                    field,
                    &Value::String(k.clone()),
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                );
            }
            match v.as_str() {
                Some(s) if is_label_value(s) => {}
                _ => self.invalid(
                    &format!("{field}[{k}]"),
                    v,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                ),
            }
        }
    }

    /// A quantity greater than zero.
    fn positive_quantity(&mut self, field: &str, value: &Value) {
        match value.as_str().and_then(quantity) {
            Some(q) if q > 0.0 => {}
            Some(_) => self.invalid(field, value, "must be greater than zero"),
            None => self.invalid(
                field,
                value,
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            ),
        }
    }
}

/// How a value is quoted in messages: strings in quotes, others as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_with_their_suffixes() {
        assert_eq!(quantity("250m"), Some(0.25));
        assert_eq!(quantity("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("lots"), None);
        assert_eq!(quantity("Gi"), None);
    }

    #[test]
    fn names_and_labels() {
        assert!(is_subdomain("stoa-backup.config"));
        assert!(!is_subdomain("Stoa"));
        assert!(!is_subdomain("a..b"));
        assert!(is_label_value("stoa-backup_1.x"));
        assert!(!is_label_value("-x"));
    }
}
