//! The library's sources and verifiers for each configured component, built from the
//! checked settings. The same functions check the settings when the configuration loads
//! (building a source validates it without connecting) and build the sources of a run.

use std::sync::Arc;

use stoa_backup::core::{ChangeProbe, Error, Result, Source, Verifier};
use stoa_backup::prelude::{
    CustomResourcesSource, GrafanaSource, HelmValuesSource, InfisicalSource,
    KeycloakExportVerifier, KeycloakSource, PgArchiveVerifier, PostgresSource, RaftSnapshotSource,
    RaftSnapshotVerifier, VaultKvSource,
};
use stoa_backup::providers::kubernetes::{self, Layout};

use crate::config::model::{
    Component, CrdsSettings, GrafanaSettings, HelmSettings, InfisicalSettings, KeycloakSettings,
    PostgresSettings, Settings, VaultMode, VaultSettings,
};

/// `pg_dump -Fc` of the configured databases, compressed by the pipeline's zstd stage.
pub fn postgres(name: &str, s: &PostgresSettings) -> Result<PostgresSource> {
    let mut b = PostgresSource::builder(s.conn.clone()).component(name);
    if s.all_databases {
        b = b.all_databases();
    } else if !s.databases.is_empty() {
        b = b.databases(s.databases.iter().cloned());
    }
    b = b.globals(s.globals);
    for schema in &s.exclude_schemas {
        b = b.exclude_schema(schema);
    }
    for table in &s.exclude_tables {
        b = b.exclude_table(table);
    }
    if let Some(t) = &s.lock_wait_timeout {
        b = b.lock_wait_timeout(t.duration());
    }
    b.build()
}

/// Realm exports over the admin REST API.
pub fn keycloak(name: &str, s: &KeycloakSettings) -> Result<KeycloakSource> {
    let mut b = KeycloakSource::builder(s.conn.clone()).component(name);
    for realm in &s.realms {
        b = b.realm(realm);
    }
    b.build()
}

/// KV exports or a raft snapshot.
pub fn vault(name: &str, s: &VaultSettings) -> Result<Arc<dyn Source>> {
    Ok(match s.mode {
        VaultMode::Kv => {
            let mut b = VaultKvSource::builder(s.conn.clone()).component(name);
            for mount in &s.mounts {
                b = b.mount(mount);
            }
            Arc::new(b.build()?)
        }
        VaultMode::Snapshot => Arc::new(RaftSnapshotSource::new(s.conn.clone())?.component(name)),
    })
}

/// Secrets of one project.
pub fn infisical(name: &str, s: &InfisicalSettings) -> Result<InfisicalSource> {
    InfisicalSource::builder(s.conn.clone(), &s.project, s.environments.iter().cloned())
        .component(name)
        .build()
}

/// Folders, dashboards, datasources, alerting and library panels.
pub fn grafana(name: &str, s: &GrafanaSettings) -> Result<GrafanaSource> {
    GrafanaSource::builder(s.conn.clone())
        .component(name)
        .build()
}

/// Helm values, through the Kubernetes client `KUBECONFIG` or the pod's service account gives.
async fn helm(name: &str, s: &HelmSettings) -> Result<HelmValuesSource> {
    let mut b = HelmValuesSource::builder(kubernetes::connect().await?).component(name);
    if s.releases.is_empty() {
        b = b.namespace(&s.namespace);
    }
    for release in &s.releases {
        b = b.release(&s.namespace, release);
    }
    b.build()
}

/// Custom resources and their definitions.
async fn crds(name: &str, s: &CrdsSettings) -> Result<CustomResourcesSource> {
    let mut b = CustomResourcesSource::builder(kubernetes::connect().await?).component(name);
    for group in &s.groups {
        b = b.group(group);
    }
    if !s.kinds.is_empty() {
        b = b.kinds(s.kinds.iter().cloned());
    }
    if !s.namespaces.is_empty() {
        b = b.namespaces(s.namespaces.iter().cloned());
    }
    if let Some(selector) = &s.label_selector {
        b = b.label_selector(selector);
    }
    b.include_crds(s.include_crds)
        .referenced_secrets(s.referenced_secrets)
        .layout(if s.layout == "per_object" {
            Layout::PerObject
        } else {
            Layout::PerKind
        })
        .build()
}

/// The source of a component (Kubernetes components connect to find the cluster).
pub async fn source(c: &Component) -> Result<Arc<dyn Source>> {
    let name = c.name.as_str();
    Ok(match &c.settings {
        Settings::Postgres(s) => Arc::new(postgres(name, s)?),
        Settings::Keycloak(s) => Arc::new(keycloak(name, s)?),
        Settings::Vault(s) => vault(name, s)?,
        Settings::Infisical(s) => Arc::new(infisical(name, s)?),
        Settings::Grafana(s) => Arc::new(grafana(name, s)?),
        Settings::Helm(s) => Arc::new(helm(name, s).await?),
        Settings::Crds(s) => Arc::new(crds(name, s).await?),
    })
}

/// The change probe of an `on_change` component: the Helm release Secrets, the custom
/// resources' versions, or Grafana's dashboard, folder and datasource versions. Other types
/// have no cheap probe: an error that says to give them a `schedule`.
pub async fn change_probe(c: &Component) -> Result<Arc<dyn ChangeProbe>> {
    let name = c.name.as_str();
    Ok(match &c.settings {
        Settings::Helm(s) => Arc::new(helm(name, s).await?.change_probe()),
        Settings::Crds(s) => Arc::new(crds(name, s).await?.change_probe()),
        Settings::Grafana(s) => Arc::new(grafana(name, s)?.change_probe()),
        _ => {
            return Err(Error::config(format!(
                "component {name} ({}) has `on_change`, but only helm, crds and grafana have a change probe",
                c.kind()
            ))
            .with_component(name)
            .with_hint("give it a `schedule` instead"))
        }
    })
}

/// The provider's verifier of a component, when `verify` is on and the provider has one
/// (the pipeline checks every stored artifact's digest in any case).
pub fn verifier(c: &Component) -> Option<Arc<dyn Verifier>> {
    if !c.verify {
        return None;
    }
    provider_verifier(&c.settings)
}

/// The provider's verifier of a component type, if it has one (`verify` re-reads stored runs
/// through it whatever the component's `verify` setting).
pub fn provider_verifier(settings: &Settings) -> Option<Arc<dyn Verifier>> {
    match settings {
        Settings::Postgres(_) => Some(Arc::new(PgArchiveVerifier::new())),
        Settings::Keycloak(_) => Some(Arc::new(KeycloakExportVerifier::new())),
        Settings::Vault(v) if v.mode == VaultMode::Snapshot => Some(Arc::new(RaftSnapshotVerifier)),
        _ => None,
    }
}

/// What [`verifier`] gives, in words.
pub fn verifier_name(settings: &Settings) -> Option<&'static str> {
    match settings {
        Settings::Postgres(_) => Some("pg_restore --list and a full read of the dump"),
        Settings::Keycloak(_) => Some("realm export structure check"),
        Settings::Vault(v) if v.mode == VaultMode::Snapshot => Some("raft snapshot check"),
        _ => None,
    }
}
