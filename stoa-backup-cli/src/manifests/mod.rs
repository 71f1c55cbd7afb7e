//! The Kubernetes manifests of a configuration (`stoa-backup manifests`): what runs the
//! configured backups in a cluster, generated from the checked configuration so that the
//! schedules and the configuration the pods read cannot drift apart.
//!
//! - a ServiceAccount (`rbac`), and per component the least RBAC it needs;
//! - the ConfigMap holding the configuration file as written (its `${VARIABLE}` references
//!   and `*_file` paths, never a resolved value);
//! - a PersistentVolumeClaim per local storage target (`volumes`);
//! - a CronJob per scheduled component (`cronjob`), reading the variables and files of the
//!   configuration from Secrets (`credentials`) the operator creates.
//!
//! Components without a schedule are not deployed: an `on_change` component is run by
//! `stoa-backup serve` (a watch, which a CronJob cannot do; these manifests render no
//! Deployment for it yet), a manual one by
//! whoever runs `stoa-backup backup <name>`. Neither gets a CronJob nor a grant: the output
//! names them, and why. Rendering names no Secret value, and needs the configuration to
//! check as it would in the pod.

mod credentials;
mod cronjob;
mod names;
mod paths;
mod rbac;
mod volumes;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

pub use credentials::SecretKey;
use names::{common_labels, dns_label, is_dns_label, prefixed, CONFIG_MAP, MAX_CRONJOB_NAME};
use paths::CONFIG_FILE;
use rbac::Grant;
pub use yaml::to_yaml;

use crate::config::model::{Config, GitCredentialsView, Settings, TargetKind, Trigger};
use crate::config::ConfigError;

/// Kubernetes refuses ConfigMaps larger than this.
const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;

/// What the manifests are for.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// The namespace of the ServiceAccount, ConfigMap, claims and CronJobs.
    pub namespace: &'a str,
    /// The container image (`deploy/Dockerfile`).
    pub image: &'a str,
}

/// One rendered object. Serializes as the object itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Document {
    /// The ServiceAccount.
    ServiceAccount(ServiceAccount),
    /// The configuration.
    ConfigMap(ConfigMap),
    /// A local target's volume (boxed, as the CronJob: much larger than the others).
    PersistentVolumeClaim(Box<PersistentVolumeClaim>),
    /// A component's cluster-wide rules.
    ClusterRole(ClusterRole),
    /// Their binding to the ServiceAccount.
    ClusterRoleBinding(ClusterRoleBinding),
    /// A component's rules in one namespace.
    Role(Role),
    /// Their binding to the ServiceAccount.
    RoleBinding(RoleBinding),
    /// A scheduled component (boxed: much larger than the other objects).
    CronJob(Box<CronJob>),
}

impl Document {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Document::ServiceAccount(_) => "ServiceAccount",
            Document::ConfigMap(_) => "ConfigMap",
            Document::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Document::ClusterRole(_) => "ClusterRole",
            Document::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Document::Role(_) => "Role",
            Document::RoleBinding(_) => "RoleBinding",
            Document::CronJob(_) => "CronJob",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Document::ServiceAccount(o) => &o.metadata,
            Document::ConfigMap(o) => &o.metadata,
            Document::PersistentVolumeClaim(o) => &o.metadata,
            Document::ClusterRole(o) => &o.metadata,
            Document::ClusterRoleBinding(o) => &o.metadata,
            Document::Role(o) => &o.metadata,
            Document::RoleBinding(o) => &o.metadata,
            Document::CronJob(o) => &o.metadata,
        }
    }

    /// `Kind namespace/name` (or `Kind name`), for messages.
    pub fn label(&self) -> String {
        let m = self.metadata();
        let name = m.name.as_deref().unwrap_or_default();
        match &m.namespace {
            Some(ns) => format!("{} {ns}/{name}", self.kind()),
            None => format!("{} {name}", self.kind()),
        }
    }
}

/// A component the manifests do not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotDeployed {
    /// The component.
    pub component: String,
    /// `on_change` or `manual`.
    pub trigger: &'static str,
    /// Why, and what runs it instead.
    pub reason: &'static str,
}

/// The Secrets the pods read: name → key → what it gives.
pub type Secrets = BTreeMap<String, BTreeMap<String, SecretKey>>;

/// The rendered manifests.
#[derive(Debug, Clone, Serialize)]
pub struct Manifests {
    /// The namespace.
    pub namespace: String,
    /// The image.
    pub image: String,
    /// The objects, in the order they are printed (and applied).
    pub documents: Vec<Document>,
    /// The Secrets to create before applying (no values: names and keys).
    pub secrets: Secrets,
    /// Components that get no CronJob.
    pub not_deployed: Vec<NotDeployed>,
}

/// Renders the manifests of `config`, whose file reads `source`.
pub fn render(
    config: &Config,
    source: &str,
    options: Options<'_>,
) -> Result<Manifests, ConfigError> {
    let file = config.file.as_str();
    let namespace = options.namespace;
    deployable(config)?;
    if source.len() > MAX_CONFIG_MAP_BYTES {
        return Err(ConfigError::file(
            file,
            format!(
                "the configuration is {} bytes: a ConfigMap holds at most 1 MiB",
                source.len()
            ),
        ));
    }
    let credentials = credentials::credentials(config)?;
    let volumes = volumes::volumes(config, &credentials, namespace)?;
    let pod = cronjob::PodInputs {
        image: options.image,
        env: &credentials.env,
        volumes: &volumes,
    };
    let mut cron_jobs = Vec::new();
    let mut grants = Vec::new();
    let mut not_deployed = Vec::new();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for c in &config.components {
        let schedule = match &c.trigger {
            Trigger::Schedule(s) => s,
            Trigger::OnChange => {
                not_deployed.push(NotDeployed {
                    component: c.name.clone(),
                    trigger: "on_change",
                    reason: "a CronJob cannot watch for changes: `stoa-backup serve` runs it (no Deployment for it is rendered yet), or give it a schedule",
                });
                continue;
            }
            Trigger::Manual => {
                not_deployed.push(NotDeployed {
                    component: c.name.clone(),
                    trigger: "manual",
                    reason: "no schedule: it runs when `stoa-backup backup` names it",
                });
                continue;
            }
        };
        let key = format!("components.{}", c.name);
        let label = dns_label(&c.name).ok_or_else(|| {
            ConfigError::at(
                file,
                None,
                key.clone(),
                format!("{:?} cannot name a Kubernetes CronJob", c.name),
            )
            .with_hint("a deployed component's name starts and ends with a letter or digit")
        })?;
        let name = prefixed(&label);
        if name.len() > MAX_CRONJOB_NAME {
            return Err(ConfigError::at(
                file,
                None,
                key,
                format!("the CronJob name {name} is longer than Kubernetes allows ({MAX_CRONJOB_NAME} characters)"),
            )
            .with_hint(format!(
                "give the component a name of at most {} characters",
                MAX_CRONJOB_NAME - names::PREFIX.len() - 1
            )));
        }
        if let Some(other) = taken.insert(name.clone(), c.name.clone()) {
            return Err(ConfigError::at(
                file,
                None,
                key,
                format!(
                    "components {other:?} and {:?} would both be CronJob {name}",
                    c.name
                ),
            )
            .with_hint(
                "Kubernetes names are lowercase with - for _: give them names that differ there",
            ));
        }
        let expression = cronjob::kubernetes_schedule(schedule).map_err(|m| {
            ConfigError::at(file, None, format!("{key}.schedule"), m)
                .with_hint("a deployed schedule uses the standard cron fields only")
        })?;
        cron_jobs.push(cronjob::cron_job(
            &name, namespace, &label, c, schedule, expression, &pod,
        ));
        if let Some(access) = rbac::access(c) {
            grants.push(rbac::grant(namespace, &label, access));
        }
    }

    let mut documents = vec![
        Document::ServiceAccount(rbac::service_account(namespace)),
        Document::ConfigMap(config_map(namespace, source)),
    ];
    documents.extend(
        volumes
            .claims
            .iter()
            .cloned()
            .map(|c| Document::PersistentVolumeClaim(Box::new(c))),
    );
    // Cluster-wide grants first, then namespaced ones; each role before its binding's kind.
    let (mut cluster, mut namespaced) = (Vec::new(), Vec::new());
    for g in grants {
        match g {
            Grant::Cluster(r, b) => {
                cluster.push((Document::ClusterRole(r), Document::ClusterRoleBinding(b)))
            }
            Grant::Namespaced(r, b) => {
                namespaced.push((Document::Role(r), Document::RoleBinding(b)))
            }
        }
    }
    for grants in [cluster, namespaced] {
        let (roles, bindings): (Vec<Document>, Vec<Document>) = grants.into_iter().unzip();
        documents.extend(roles);
        documents.extend(bindings);
    }
    documents.extend(
        cron_jobs
            .into_iter()
            .map(|c| Document::CronJob(Box::new(c))),
    );
    Ok(Manifests {
        namespace: namespace.to_string(),
        image: options.image.to_string(),
        documents,
        secrets: credentials.secrets,
        not_deployed,
    })
}

/// Whether `namespace` can name a namespace.
pub fn valid_namespace(namespace: &str) -> bool {
    is_dns_label(namespace)
}

fn config_map(namespace: &str, source: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP.into()),
            namespace: Some(namespace.into()),
            labels: Some(common_labels()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            CONFIG_FILE.to_string(),
            source.to_string(),
        )])),
        ..ConfigMap::default()
    }
}

/// Settings that work on a workstation but not in a pod, of the scheduled components and
/// their targets (their own and their replicas).
fn deployable(config: &Config) -> Result<(), ConfigError> {
    let file = config.file.as_str();
    let scheduled = || {
        config
            .components
            .iter()
            .filter(|c| matches!(c.trigger, Trigger::Schedule(_)))
    };
    for t in config
        .storage
        .iter()
        .filter(|t| scheduled().any(|c| c.targets().any(|n| n == t.name)))
    {
        if let TargetKind::Git(g) = &t.kind {
            if matches!(g.credentials, GitCredentialsView::SshAgent { .. }) {
                return Err(ConfigError::at(
                    file,
                    None,
                    format!("storage.{}.credentials.ssh_agent", t.name),
                    "a pod has no SSH agent",
                )
                .with_hint("deploy with `ssh_key: /run/secrets/git/id_ed25519` (a file of a Secret) or an HTTPS `token`"));
            }
            let remote = g.remote.as_str();
            let local =
                remote.starts_with('/') || remote.starts_with('.') || remote.starts_with("file:");
            if local {
                return Err(ConfigError::at(
                    file,
                    None,
                    format!("storage.{}.remote", t.name),
                    format!("{remote} is a path on this machine, which a pod cannot reach"),
                )
                .with_hint("deploy with the URL of a Git server (https:// or ssh://)"));
            }
        }
    }
    for c in scheduled() {
        if let Settings::Postgres(p) = &c.settings {
            if p.conn.get_host().starts_with('/') {
                return Err(ConfigError::at(
                    file,
                    None,
                    format!("components.{}.host", c.name),
                    format!(
                        "{} is a Unix socket directory, which a pod cannot reach",
                        p.conn.get_host()
                    ),
                )
                .with_hint(
                    "deploy with the server's Service name, e.g. postgres.stoa-system.svc",
                ));
            }
        }
    }
    Ok(())
}
