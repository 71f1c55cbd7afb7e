//! Names and labels of the rendered objects, and the checks Kubernetes makes on them (so a
//! name it would refuse is a configuration error here, not a failed `kubectl apply`).

use std::collections::BTreeMap;

/// The prefix of every object's name.
pub const PREFIX: &str = "stoa-backup";

/// The ServiceAccount every pod runs as.
pub const SERVICE_ACCOUNT: &str = "stoa-backup";

/// The ConfigMap holding the configuration file.
pub const CONFIG_MAP: &str = "stoa-backup-config";

/// The container of every pod.
pub const CONTAINER: &str = "stoa-backup";

/// Kubernetes refuses CronJob names longer than this (the Job names it creates append 11
/// characters to it).
pub const MAX_CRONJOB_NAME: usize = 52;

/// A configuration name (letters, digits, `-` and `_`) as a DNS-1123 label: lowercase, `_`
/// as `-`. `None` when the result is still not a label (it starts or ends with `-` or `_`,
/// or is longer than 63 characters).
pub fn dns_label(name: &str) -> Option<String> {
    let label = name.to_ascii_lowercase().replace('_', "-");
    is_dns_label(&label).then_some(label)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Secret's (or ConfigMap's) key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or
/// `..`.
pub fn is_data_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `stoa-backup-<label>`.
pub fn prefixed(label: &str) -> String {
    format!("{PREFIX}-{label}")
}

/// The name of a ClusterRole, Role or binding of a component: `stoa-backup:<namespace>:<label>`
/// (cluster-wide names: two namespaces running stoa-backup do not collide).
pub fn rbac_name(namespace: &str, label: &str) -> String {
    format!("{PREFIX}:{namespace}:{label}")
}

/// The labels of every object.
pub fn common_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), PREFIX.to_string()),
        (
            "app.kubernetes.io/part-of".to_string(),
            "stoa-platform".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "stoa-backup-manifests".to_string(),
        ),
    ])
}

/// The labels of an object that belongs to one component.
pub fn component_labels(label: &str) -> BTreeMap<String, String> {
    let mut labels = common_labels();
    labels.insert("app.kubernetes.io/component".to_string(), label.to_string());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_names_become_labels_or_are_refused() {
        assert_eq!(dns_label("postgres").as_deref(), Some("postgres"));
        assert_eq!(dns_label("Main_DB").as_deref(), Some("main-db"));
        assert_eq!(dns_label("_db"), None);
        assert_eq!(dns_label("db-"), None);
        assert_eq!(dns_label(&"x".repeat(64)), None);
        assert!(is_dns_label("stoa-system"));
        assert!(!is_dns_label("Stoa"));
        assert!(!is_dns_label(""));
    }

    #[test]
    fn data_keys_are_checked() {
        assert!(is_data_key("client-secret"));
        assert!(is_data_key("KEYCLOAK_CLIENT_SECRET"));
        assert!(is_data_key("id_ed25519.pub"));
        assert!(!is_data_key(".."));
        assert!(!is_data_key("a b"));
        assert!(!is_data_key(""));
    }

    #[test]
    fn rbac_names_carry_the_namespace() {
        assert_eq!(
            rbac_name("stoa-system", "crds"),
            "stoa-backup:stoa-system:crds"
        );
        assert_eq!(prefixed("postgres"), "stoa-backup-postgres");
    }
}
