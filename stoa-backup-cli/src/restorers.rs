//! The library's restorer for each configured component: the same connections its backups
//! use, pointed at another place when the operator names one (`restore --to`).

use std::path::PathBuf;
use std::sync::Arc;

use stoa_backup::core::{ExistingDataPolicy, Restorer, Result};
use stoa_backup::prelude::{
    CustomResourcesRestorer, GrafanaRestorer, HelmValuesRestorer, InfisicalRestorer,
    KeycloakRestorer, PostgresRestorer, RaftSnapshotRestorer, RestoreTarget, VaultKvRestorer,
};
use stoa_backup::providers::kubernetes::{self, ConflictPolicy};

use crate::config::model::{Component, PostgresSettings, Settings, VaultMode};

/// Where `restore --to` points a component's restore, checked against its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTo {
    /// The configured server itself (no `--to`).
    Configured,
    /// A PostgreSQL database created for the restore (it must not exist, unless
    /// `--existing overwrite` swaps it in).
    Database(String),
    /// A Keycloak realm of another name.
    Realm(String),
    /// A directory for Helm values files.
    Directory(PathBuf),
}

impl RestoreTo {
    /// What `--to TARGET` means for component `c`: a usage error (with what `--to` means for
    /// each type) when the type cannot be pointed elsewhere.
    pub fn parse(c: &Component, to: Option<&str>) -> std::result::Result<Self, String> {
        let Some(to) = to else {
            return Ok(RestoreTo::Configured);
        };
        if to.trim().is_empty() {
            return Err("--to is empty".into());
        }
        match &c.settings {
            Settings::Postgres(_) => Ok(RestoreTo::Database(to.to_string())),
            Settings::Keycloak(_) => Ok(RestoreTo::Realm(to.to_string())),
            Settings::Helm(_) => Ok(RestoreTo::Directory(PathBuf::from(to))),
            _ => Err(format!(
                "component `{}` ({}) restores into its configured server only: --to names a \
                 database for postgres, a realm for keycloak and a directory for helm",
                c.name,
                c.kind()
            )),
        }
    }
}

/// Where Helm values are written when `--to` names no directory.
pub const DEFAULT_VALUES_DIR: &str = "./restored-values";

/// The database a PostgreSQL component restores into without `--to`: its one dumped
/// database, else the connection's.
pub fn postgres_database(s: &PostgresSettings) -> String {
    match s.databases.as_slice() {
        [one] if one != "*" => one.clone(),
        _ => s.conn.get_dbname().to_string(),
    }
}

/// The PostgreSQL restorer of component `c`, into a new database of the name
/// [`postgres_database`] gives (drills replace the target with a scratch database): a run of
/// several databases restores the one the connection names.
pub fn postgres_restorer(c: &Component, s: &PostgresSettings) -> PostgresRestorer {
    let r = PostgresRestorer::new(
        s.conn.clone(),
        RestoreTarget::NewDatabase {
            name: postgres_database(s),
            swap: false,
        },
    )
    .component(&c.name);
    if s.databases.len() > 1 || s.all_databases {
        r.from_database(s.conn.get_dbname())
    } else {
        r
    }
}

/// The restorer of component `c`, restoring where `to` says under the existing-data policy
/// (PostgreSQL swaps a restored copy in place of an existing database only under
/// `Overwrite`; custom resources take conflicting fields over only then).
pub async fn restorer(
    c: &Component,
    to: &RestoreTo,
    existing: ExistingDataPolicy,
) -> Result<Arc<dyn Restorer>> {
    let name = c.name.as_str();
    let overwrite = existing == ExistingDataPolicy::Overwrite;
    Ok(match (&c.settings, to) {
        (Settings::Postgres(s), to) => {
            let database = match to {
                RestoreTo::Database(d) => d.clone(),
                _ => postgres_database(s),
            };
            Arc::new(postgres_restorer(c, s).target(RestoreTarget::NewDatabase {
                name: database,
                swap: overwrite,
            }))
        }
        (Settings::Keycloak(s), to) => {
            let mut r = KeycloakRestorer::new(s.conn.clone())?.component(name);
            if let RestoreTo::Realm(realm) = to {
                r = r.target_realm(realm)?;
            }
            Arc::new(r)
        }
        (Settings::Vault(s), _) => match s.mode {
            VaultMode::Kv => Arc::new(VaultKvRestorer::new(s.conn.clone())?.component(name)),
            VaultMode::Snapshot => {
                Arc::new(RaftSnapshotRestorer::new(s.conn.clone())?.component(name))
            }
        },
        (Settings::Infisical(s), _) => {
            Arc::new(InfisicalRestorer::new(s.conn.clone())?.component(name))
        }
        (Settings::Grafana(s), _) => {
            Arc::new(GrafanaRestorer::new(s.conn.clone())?.component(name))
        }
        (Settings::Helm(_), to) => {
            let dir = match to {
                RestoreTo::Directory(d) => d.clone(),
                _ => PathBuf::from(DEFAULT_VALUES_DIR).join(name),
            };
            Arc::new(
                HelmValuesRestorer::new(dir)
                    .component(name)
                    .print_command(false),
            )
        }
        (Settings::Crds(_), _) => Arc::new(
            CustomResourcesRestorer::builder(kubernetes::connect().await?)
                .component(name)
                .conflicts(if overwrite {
                    ConflictPolicy::Force
                } else {
                    ConflictPolicy::Fail
                })
                .build()?,
        ),
    })
}
