//! Where the pods get what the configuration reads: every `${VARIABLE}` becomes an
//! environment variable from a Secret key (`valueFrom.secretKeyRef`), every file of a
//! `*_file` key (and every SSH key or libpq password file) a file of a Secret volume
//! mounted at its directory.
//!
//! The command loads the whole configuration whichever component it backs up, so every pod
//! needs every variable and file. They are grouped into one Secret per part of the file
//! they belong to, for the operator to create: `stoa-backup-<component>` for a component's
//! keys, `stoa-backup-storage-<target>` for a storage target's, `stoa-backup-encryption` for
//! the encryption's. A variable's key is its name; a file's key is its file name. The
//! manifests hold references only, never a value.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use serde::Serialize;

use super::names::{dns_label, is_data_key, prefixed};
use super::paths::in_pod;
use crate::config::model::{Config, S3CredentialsView, TargetKind};
use crate::config::references::{owner_of, Referenced};
use crate::config::ConfigError;

/// The variables the standard AWS environment gives an S3 target without `credentials:`;
/// optional, so that IRSA or instance roles work without the Secret.
pub const AWS_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// The variables the pod sets itself (see `cronjob`): never taken from a Secret.
pub const POD_VARIABLES: &[&str] = &["HOME", "TMPDIR", "XDG_CACHE_HOME", "RUST_LOG"];

/// What the pods read from Secrets.
#[derive(Debug, Default)]
pub struct Credentials {
    /// Environment variables from Secret keys, in the order of their first reference.
    pub env: Vec<EnvVar>,
    /// Files from Secret keys, in the order of their first reference.
    pub files: Vec<SecretFile>,
    /// The Secrets, by name: what the operator creates before applying.
    pub secrets: BTreeMap<String, BTreeMap<String, SecretKey>>,
}

/// A file the pod reads from a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// Where the pod reads it.
    pub path: PathBuf,
    /// The Secret.
    pub secret: String,
    /// Its key in the Secret (the file's name).
    pub key: String,
    /// The first configuration key that reads it.
    pub config_key: String,
}

/// One key of a Secret: what it gives the pod and which keys of the configuration use it.
#[derive(Debug, Clone, Serialize)]
pub struct SecretKey {
    /// `environment variable NAME` or `file /path`.
    pub provides: String,
    /// Whether the pod starts without it (every reference gives a default, or an S3
    /// target's AWS variables, which IRSA may replace).
    pub optional: bool,
    /// The configuration keys that read it.
    pub used_by: Vec<String>,
}

/// The Secret holding what the configuration key `key` reads.
pub fn secret_of(file: &str, key: &str) -> Result<String, ConfigError> {
    match owner_of(key) {
        Some((section, name)) => {
            let label = dns_label(name).ok_or_else(|| {
                ConfigError::at(
                    file,
                    None,
                    format!("{section}.{name}"),
                    format!("{name:?} cannot name a Kubernetes Secret"),
                )
                .with_hint("names of components and targets must start and end with a letter or digit to be deployed")
            })?;
            Ok(match section {
                "storage" => prefixed(&format!("storage-{label}")),
                _ => prefixed(&label),
            })
        }
        None => Ok(prefixed(key.split('.').next().unwrap_or("config"))),
    }
}

/// The Secrets, variables and files of `config`.
pub fn credentials(config: &Config) -> Result<Credentials, ConfigError> {
    let file = config.file.as_str();
    let mut c = Credentials::default();
    for r in &config.references {
        match &r.what {
            Referenced::Variable { name, optional } => {
                if !POD_VARIABLES.contains(&name.as_str()) {
                    c.variable(file, secret_of(file, &r.key)?, name, *optional, &r.key)?;
                }
            }
            Referenced::File(path) => c.file(file, secret_of(file, &r.key)?, path, &r.key)?,
            Referenced::WritableDirectory(_) => {}
        }
    }
    for t in &config.storage {
        if let TargetKind::S3(s3) = &t.kind {
            if matches!(s3.credentials, S3CredentialsView::Environment) {
                let key = format!("storage.{}.credentials", t.name);
                let secret = secret_of(file, &key)?;
                for name in AWS_VARIABLES {
                    if !c.has_variable(name) {
                        c.variable(file, secret.clone(), name, true, &key)?;
                    }
                }
            }
        }
    }
    Ok(c)
}

impl Credentials {
    fn has_variable(&self, name: &str) -> bool {
        self.env.iter().any(|e| e.name == name)
    }

    /// A variable, from the Secret of its first reference; required as soon as one
    /// reference gives no default.
    fn variable(
        &mut self,
        config_file: &str,
        secret: String,
        name: &str,
        optional: bool,
        key: &str,
    ) -> Result<(), ConfigError> {
        if let Some(existing) = self.env.iter_mut().find(|e| e.name == name) {
            let selector = existing
                .value_from
                .as_mut()
                .and_then(|v| v.secret_key_ref.as_mut())
                .expect("variables come from Secret keys");
            let entry = self
                .secrets
                .get_mut(&selector.name)
                .and_then(|keys| keys.get_mut(name))
                .expect("the Secret key of a variable");
            if !optional {
                selector.optional = None;
                entry.optional = false;
            }
            if !entry.used_by.iter().any(|k| k == key) {
                entry.used_by.push(key.to_string());
            }
            return Ok(());
        }
        if let Some(taken) = self.secrets.get(&secret).and_then(|keys| keys.get(name)) {
            return Err(conflict(config_file, key, &secret, name, &taken.provides));
        }
        self.env.push(EnvVar {
            name: name.to_string(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.clone(),
                    key: name.to_string(),
                    optional: optional.then_some(true),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
        self.secrets.entry(secret).or_default().insert(
            name.to_string(),
            SecretKey {
                provides: format!("environment variable {name}"),
                optional,
                used_by: vec![key.to_string()],
            },
        );
        Ok(())
    }

    /// A file, from the Secret of its first reference, under its file name.
    fn file(
        &mut self,
        config_file: &str,
        secret: String,
        path: &std::path::Path,
        key: &str,
    ) -> Result<(), ConfigError> {
        let path = in_pod(path);
        if let Some(existing) = self.files.iter().find(|f| f.path == path) {
            if let Some(entry) = self
                .secrets
                .get_mut(&existing.secret)
                .and_then(|keys| keys.get_mut(&existing.key))
            {
                if !entry.used_by.iter().any(|k| k == key) {
                    entry.used_by.push(key.to_string());
                }
            }
            return Ok(());
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !is_data_key(&name) {
            return Err(ConfigError::at(
                config_file,
                None,
                key,
                format!("{} cannot be a file of a Secret volume: {name:?} is not a Secret key", path.display()),
            )
            .with_hint("name the file with letters, digits, -, _ and . only, e.g. /run/secrets/postgres/password"));
        }
        if let Some(taken) = self.secrets.get(&secret).and_then(|keys| keys.get(&name)) {
            return Err(conflict(config_file, key, &secret, &name, &taken.provides));
        }
        self.files.push(SecretFile {
            path: path.clone(),
            secret: secret.clone(),
            key: name.clone(),
            config_key: key.to_string(),
        });
        self.secrets.entry(secret).or_default().insert(
            name,
            SecretKey {
                provides: format!("file {}", path.display()),
                optional: false,
                used_by: vec![key.to_string()],
            },
        );
        Ok(())
    }
}

/// Two things of one Secret would have the same key.
fn conflict(config_file: &str, key: &str, secret: &str, name: &str, taken: &str) -> ConfigError {
    ConfigError::at(
        config_file,
        None,
        key,
        format!("would read key {name:?} of Secret {secret}, which already gives the {taken}"),
    )
    .with_hint("give the files and variables of one component or target different names")
}
