//! The volumes of the pods: the configuration (the ConfigMap), scratch space (emptyDirs for
//! `/tmp` and the cache of Git working clones, since the root file system is read-only), a
//! PersistentVolumeClaim per local storage target, an emptyDir per Git working directory the
//! file names, and a projected volume of Secret keys per directory of secret files.
//!
//! Local targets get a PersistentVolumeClaim rendered here (ReadWriteOnce, the default
//! StorageClass, [`LOCAL_TARGET_SIZE`]) named `stoa-backup-<target>`: the manifests apply as
//! they are, and an operator who brings a claim of their own gives it that name and leaves
//! the rendered one out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, KeyToPath, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, ProjectedVolumeSource,
    SecretProjection, Volume, VolumeMount, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::credentials::Credentials;
use super::names::{common_labels, dns_label, is_dns_label, prefixed, CONFIG_MAP};
use super::paths::{in_pod, is_within, CACHE, CONFIG_DIR, CONFIG_FILE, SYSTEM_DIRS, TMP};
use crate::config::model::{Config, TargetKind};
use crate::config::references::Referenced;
use crate::config::ConfigError;

/// The size of the claim rendered for a local target.
pub const LOCAL_TARGET_SIZE: &str = "20Gi";

/// Mode of secret files: readable by the pod's group (`fsGroup`) only.
const SECRET_FILE_MODE: i32 = 0o440;

/// The volumes, their mounts, and the claims to create.
#[derive(Debug, Default)]
pub struct Volumes {
    /// The pod's volumes.
    pub volumes: Vec<Volume>,
    /// The container's mounts.
    pub mounts: Vec<VolumeMount>,
    /// PersistentVolumeClaims of local targets.
    pub claims: Vec<PersistentVolumeClaim>,
}

/// A mount, what it holds and the configuration key it serves (for messages).
struct Planned {
    volume: Volume,
    path: PathBuf,
    read_only: bool,
    what: String,
    key: Option<String>,
}

/// The volumes of `config`'s pods in `namespace`.
pub fn volumes(
    config: &Config,
    credentials: &Credentials,
    namespace: &str,
) -> Result<Volumes, ConfigError> {
    let file = config.file.as_str();
    let mut planned = vec![
        Planned {
            volume: Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: CONFIG_MAP.into(),
                    items: Some(vec![KeyToPath {
                        key: CONFIG_FILE.into(),
                        path: CONFIG_FILE.into(),
                        ..KeyToPath::default()
                    }]),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            path: CONFIG_DIR.into(),
            read_only: true,
            what: "the configuration".into(),
            key: None,
        },
        scratch("tmp", TMP, "temporary files"),
        scratch("cache", CACHE, "the cache (Git working clones)"),
    ];
    let mut claims = Vec::new();
    for t in &config.storage {
        if let TargetKind::Local(local) = &t.kind {
            let key = format!("storage.{}.path", t.name);
            let label = label_of(file, &format!("storage.{}", t.name), &t.name)?;
            let claim = prefixed(&label);
            planned.push(Planned {
                volume: Volume {
                    name: volume_name(file, &key, "storage", &label)?,
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim.clone(),
                        read_only: None,
                    }),
                    ..Volume::default()
                },
                path: in_pod(&local.path),
                read_only: false,
                what: format!("storage target {}", t.name),
                key: Some(key),
            });
            claims.push(claim_of(&claim, namespace));
        }
    }
    for r in &config.references {
        if let Referenced::WritableDirectory(dir) = &r.what {
            let path = in_pod(dir);
            if is_within(&path, Path::new(TMP)) || is_within(&path, Path::new(CACHE)) {
                continue;
            }
            let name = match r.owner() {
                Some((_, target)) => label_of(file, &r.key, target)?,
                None => "dir".into(),
            };
            planned.push(Planned {
                volume: Volume {
                    name: volume_name(file, &r.key, "workdir", &name)?,
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Volume::default()
                },
                path,
                read_only: false,
                what: "a Git working directory".into(),
                key: Some(r.key.clone()),
            });
        }
    }
    // One projected volume per directory of secret files, its sources by Secret.
    let mut by_dir: BTreeMap<PathBuf, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for f in &credentials.files {
        let dir = f.path.parent().unwrap_or(Path::new("/")).to_path_buf();
        by_dir
            .entry(dir)
            .or_default()
            .entry(f.secret.clone())
            .or_default()
            .push(f.key.clone());
    }
    for (i, (dir, secrets)) in by_dir.into_iter().enumerate() {
        let sources = secrets
            .into_iter()
            .map(|(secret, mut items)| {
                items.sort();
                VolumeProjection {
                    secret: Some(SecretProjection {
                        name: secret,
                        items: Some(
                            items
                                .into_iter()
                                .map(|key| KeyToPath {
                                    path: key.clone(),
                                    key,
                                    ..KeyToPath::default()
                                })
                                .collect(),
                        ),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                }
            })
            .collect();
        let first = credentials
            .files
            .iter()
            .find(|f| f.path.parent() == Some(dir.as_path()));
        planned.push(Planned {
            volume: Volume {
                name: format!("secrets-{i}"),
                projected: Some(ProjectedVolumeSource {
                    default_mode: Some(SECRET_FILE_MODE),
                    sources: Some(sources),
                    ..ProjectedVolumeSource::default()
                }),
                ..Volume::default()
            },
            path: dir,
            read_only: true,
            what: "secret files".into(),
            key: first.map(|f| f.config_key.clone()),
        });
    }
    check_mounts(file, &planned)?;
    let mut out = Volumes {
        claims,
        ..Volumes::default()
    };
    for p in planned {
        out.mounts.push(VolumeMount {
            name: p.volume.name.clone(),
            mount_path: p.path.display().to_string(),
            read_only: p.read_only.then_some(true),
            ..VolumeMount::default()
        });
        out.volumes.push(p.volume);
    }
    Ok(out)
}

fn scratch(name: &str, path: &str, what: &str) -> Planned {
    Planned {
        volume: Volume {
            name: name.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        path: path.into(),
        read_only: false,
        what: what.into(),
        key: None,
    }
}

/// A local target's claim.
fn claim_of(name: &str, namespace: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(common_labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(LOCAL_TARGET_SIZE.into()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn label_of(file: &str, key: &str, name: &str) -> Result<String, ConfigError> {
    dns_label(name).ok_or_else(|| {
        ConfigError::at(file, None, key, format!("{name:?} cannot name a Kubernetes object"))
            .with_hint("names of components and targets must start and end with a letter or digit to be deployed")
    })
}

fn volume_name(file: &str, key: &str, kind: &str, label: &str) -> Result<String, ConfigError> {
    let name = format!("{kind}-{label}");
    if is_dns_label(&name) {
        Ok(name)
    } else {
        Err(ConfigError::at(
            file,
            None,
            key,
            format!("the volume name {name:?} is longer than Kubernetes allows (63 characters)"),
        )
        .with_hint("give the target a shorter name"))
    }
}

/// Mounts may neither cover the image's own directories nor be inside one another (a
/// read-only volume cannot hold another's mount point, and one would hide the other).
fn check_mounts(file: &str, planned: &[Planned]) -> Result<(), ConfigError> {
    let error = |p: &Planned, message: String| match &p.key {
        Some(key) => ConfigError::at(file, None, key.clone(), message),
        None => ConfigError::file(file, message),
    };
    for a in planned {
        if SYSTEM_DIRS.iter().any(|d| a.path == Path::new(d)) {
            return Err(error(
                a,
                format!(
                    "{} ({}) would be mounted over a directory of the image",
                    a.path.display(),
                    a.what
                ),
            )
            .with_hint("use a directory of its own: e.g. /run/secrets/<component>/ for secret files, /var/backups/stoa for a local target"));
        }
    }
    for (i, a) in planned.iter().enumerate() {
        for b in &planned[i + 1..] {
            if is_within(&a.path, &b.path) || is_within(&b.path, &a.path) {
                let (inner, outer) = if is_within(&a.path, &b.path) {
                    (a, b)
                } else {
                    (b, a)
                };
                let blamed = if inner.key.is_some() { inner } else { outer };
                return Err(error(
                    blamed,
                    format!(
                        "{} ({}) is inside {} ({}): a pod cannot mount both",
                        inner.path.display(),
                        inner.what,
                        outer.path.display(),
                        outer.what
                    ),
                )
                .with_hint(format!(
                    "use directories of their own, outside {CONFIG_DIR}, {TMP} and {CACHE}: e.g. /run/secrets/<component>/ for secret files"
                )));
            }
        }
    }
    Ok(())
}
