//! The ServiceAccount and the least RBAC each deployed component needs, one ClusterRole or
//! Role per component (named `stoa-backup:<namespace>:<component>`, so each grant says whose
//! it is and can be audited or removed alone):
//!
//! - `crds`: get and list every resource of its API groups, the CustomResourceDefinitions
//!   (when `include_crds`), the Namespaces the resources live in (backed up with them), and
//!   the Secrets they reference (when `referenced_secrets`; in any namespace, since a
//!   reference may name another). A ClusterRole: the resources are listed in every
//!   namespace and CRDs are cluster-scoped.
//! - `helm`: get and list Secrets (Helm's release storage) in the releases' namespace: a
//!   Role there.
//! - everything else talks to its server over HTTP (PostgreSQL with the image's pg_dump,
//!   Keycloak's admin REST API, …) and needs no Kubernetes permission. Vault's Kubernetes
//!   auth needs the pod's token, not a permission (Vault reviews the token).
//!
//! `pods/exec` is never granted: no configuration key runs anything in another pod (the
//! library's exec modes, such as Keycloak's `kc.sh` export or pg_dump in the database's
//! pod, are not reachable from the configuration file). A key that adds one must add its
//! rule here.
//!
//! Discovery (`/api`, `/apis`) and `/version` need no grant: every authenticated client may
//! read them (`system:discovery`, `system:public-info-viewer`).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names::{common_labels, component_labels, rbac_name, SERVICE_ACCOUNT};
use crate::config::model::{Component, Settings, VaultSettings};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The grants of one component.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// Rules over the whole cluster (a ClusterRole).
    Cluster(Vec<PolicyRule>),
    /// Rules in one namespace (a Role there).
    Namespace(String, Vec<PolicyRule>),
}

/// What `component` needs of the Kubernetes API (nothing: `None`).
pub fn access(component: &Component) -> Option<Access> {
    match &component.settings {
        Settings::Crds(c) => {
            let mut rules = vec![read(c.groups.clone(), &["*"], &["get", "list"])];
            if c.include_crds {
                rules.push(read(
                    vec!["apiextensions.k8s.io".into()],
                    &["customresourcedefinitions"],
                    &["get", "list"],
                ));
            }
            rules.push(read(vec![String::new()], &["namespaces"], &["get"]));
            if c.referenced_secrets {
                rules.push(read(vec![String::new()], &["secrets"], &["get"]));
            }
            Some(Access::Cluster(rules))
        }
        Settings::Helm(h) => Some(Access::Namespace(
            h.namespace.clone(),
            vec![read(vec![String::new()], &["secrets"], &["get", "list"])],
        )),
        Settings::Postgres(_)
        | Settings::Keycloak(_)
        | Settings::Vault(_)
        | Settings::Infisical(_)
        | Settings::Grafana(_) => None,
    }
}

/// Whether the pod needs its ServiceAccount token: to call the Kubernetes API, or to log in
/// to Vault with Kubernetes auth.
pub fn needs_token(component: &Component) -> bool {
    access(component).is_some()
        || matches!(
            &component.settings,
            Settings::Vault(VaultSettings {
                auth: "kubernetes",
                ..
            })
        )
}

fn read(groups: Vec<String>, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(groups),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// The ServiceAccount every pod runs as. Its token is mounted only into the pods that need
/// it (see [`needs_token`]).
pub fn service_account(namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(SERVICE_ACCOUNT.into()),
            namespace: Some(namespace.into()),
            labels: Some(common_labels()),
            ..ObjectMeta::default()
        },
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The role and binding objects of one component.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    /// A ClusterRole and its ClusterRoleBinding.
    Cluster(ClusterRole, ClusterRoleBinding),
    /// A Role and its RoleBinding.
    Namespaced(Role, RoleBinding),
}

/// The role and binding giving `access` to the ServiceAccount of `namespace`, for the
/// component labelled `label`.
pub fn grant(namespace: &str, label: &str, access: Access) -> Grant {
    let name = rbac_name(namespace, label);
    let meta = |ns: Option<&str>| ObjectMeta {
        name: Some(name.clone()),
        namespace: ns.map(str::to_string),
        labels: Some(component_labels(label)),
        ..ObjectMeta::default()
    };
    let subjects = Some(vec![Subject {
        kind: "ServiceAccount".into(),
        name: SERVICE_ACCOUNT.into(),
        namespace: Some(namespace.into()),
        api_group: None,
    }]);
    let role_ref = |kind: &str| RoleRef {
        api_group: Some(RBAC_GROUP.into()),
        kind: kind.into(),
        name: name.clone(),
    };
    match access {
        Access::Cluster(rules) => Grant::Cluster(
            ClusterRole {
                metadata: meta(None),
                rules: Some(rules),
                ..ClusterRole::default()
            },
            ClusterRoleBinding {
                metadata: meta(None),
                role_ref: role_ref("ClusterRole"),
                subjects,
            },
        ),
        Access::Namespace(ns, rules) => Grant::Namespaced(
            Role {
                metadata: meta(Some(&ns)),
                rules: Some(rules),
            },
            RoleBinding {
                metadata: meta(Some(&ns)),
                role_ref: role_ref("Role"),
                subjects,
            },
        ),
    }
}
