//! The configuration file as written: serde structures with every value's position
//! (`Spanned`), unknown keys refused, parsed in two passes so that each storage target and
//! component is read into the structure of its `type` (serde's internally tagged enums
//! would lose the positions and name no line for an unknown key).
//!
//! Every field is optional here; [`super::resolve`] says what is missing, with the key and
//! the line of the target or component it belongs to.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

mod common;

pub use common::{Common, RawCount, RawReplicateTo, RawRetention};

/// A string value and where it is (interpolated later).
pub type Text = Spanned<String>;

/// The storage target types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetType {
    /// A directory (a PVC in Kubernetes).
    Local,
    /// An S3 bucket (or an S3-compatible store).
    S3,
    /// A Git repository.
    Git,
}

impl TargetType {
    /// Every type, as written in the file.
    pub const NAMES: &'static [&'static str] = &["local", "s3", "git"];

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "local" => TargetType::Local,
            "s3" => TargetType::S3,
            "git" => TargetType::Git,
            _ => return None,
        })
    }
}

/// The component types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentType {
    /// PostgreSQL databases (`pg_dump`).
    Postgres,
    /// Keycloak realms (admin REST API).
    Keycloak,
    /// Vault / OpenBao: KV secrets or raft snapshots.
    Vault,
    /// Infisical secrets.
    Infisical,
    /// Helm release values.
    Helm,
    /// `gostoa.dev` custom resources and their definitions.
    Crds,
    /// Grafana dashboards, folders, datasources, alerting.
    Grafana,
}

impl ComponentType {
    /// Every type, as written in the file.
    pub const NAMES: &'static [&'static str] = &[
        "postgres",
        "keycloak",
        "vault",
        "infisical",
        "helm",
        "crds",
        "grafana",
    ];

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "postgres" => ComponentType::Postgres,
            "keycloak" => ComponentType::Keycloak,
            "vault" => ComponentType::Vault,
            "infisical" => ComponentType::Infisical,
            "helm" => ComponentType::Helm,
            "crds" => ComponentType::Crds,
            "grafana" => ComponentType::Grafana,
            _ => return None,
        })
    }

    /// The name written in the file.
    pub fn name(self) -> &'static str {
        match self {
            ComponentType::Postgres => "postgres",
            ComponentType::Keycloak => "keycloak",
            ComponentType::Vault => "vault",
            ComponentType::Infisical => "infisical",
            ComponentType::Helm => "helm",
            ComponentType::Crds => "crds",
            ComponentType::Grafana => "grafana",
        }
    }
}

impl fmt::Display for ComponentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The whole file.
#[derive(Debug, Default)]
pub struct RawConfig {
    /// Storage targets in file order: name, where the target starts, settings.
    pub storage: Vec<(String, Location, RawTarget)>,
    /// Encryption settings.
    pub encryption: Option<Spanned<RawEncryption>>,
    /// Components in file order: name, where the component starts, settings.
    pub components: Vec<(String, Location, RawComponent)>,
    /// The storage targets every component's runs are copied to (`replicate_to:`).
    pub replicate_to: Option<Spanned<RawReplicateTo>>,
}

/// The keys of the top level.
const TOP_KEYS: &[&str] = &["storage", "encryption", "components", "replicate_to"];

/// A storage target of one type.
#[derive(Debug)]
pub enum RawTarget {
    /// `type: local`.
    Local(RawLocal),
    /// `type: s3`.
    S3(RawS3),
    /// `type: git`.
    Git(RawGit),
}

/// `type: local`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    #[serde(rename = "type")]
    _type: String,
    /// The directory.
    pub path: Option<Text>,
    /// Whether a missing directory is created (default false: it may be an unmounted volume).
    pub create: Option<bool>,
}

/// `type: s3`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3 {
    #[serde(rename = "type")]
    _type: String,
    /// The bucket.
    pub bucket: Option<Text>,
    /// Key prefix inside the bucket.
    pub prefix: Option<Text>,
    /// Endpoint URL of an S3-compatible store.
    pub endpoint: Option<Text>,
    /// Region.
    pub region: Option<Text>,
    /// Whether a plain `http://` endpoint is allowed.
    pub allow_http: Option<bool>,
    /// Static credentials (default: the standard AWS environment, IRSA, instance metadata).
    pub credentials: Option<Spanned<RawS3Credentials>>,
}

/// S3 static credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3Credentials {
    /// Access key id.
    pub access_key_id: Option<Text>,
    /// File holding the access key id.
    pub access_key_id_file: Option<Text>,
    /// Secret access key (`${ENV}` only).
    pub secret_access_key: Option<Text>,
    /// File holding the secret access key.
    pub secret_access_key_file: Option<Text>,
    /// Session token (`${ENV}` only).
    pub session_token: Option<Text>,
    /// File holding the session token.
    pub session_token_file: Option<Text>,
}

/// `type: git`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGit {
    #[serde(rename = "type")]
    _type: String,
    /// The remote (URL or path of a bare repository).
    pub remote: Option<Text>,
    /// The branch (default `main`).
    pub branch: Option<Text>,
    /// Folder inside the repository (default: its root).
    pub path: Option<Text>,
    /// The working clone's directory.
    pub workdir: Option<Text>,
    /// Commit author name.
    pub author_name: Option<Text>,
    /// Commit author e-mail.
    pub author_email: Option<Text>,
    /// Credentials for the remote.
    pub credentials: Option<Spanned<RawGitCredentials>>,
}

/// Git credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGitCredentials {
    /// User name (HTTPS token or SSH).
    pub username: Option<Text>,
    /// HTTPS token (`${ENV}` only).
    pub token: Option<Text>,
    /// File holding the HTTPS token.
    pub token_file: Option<Text>,
    /// SSH private key file.
    pub ssh_key: Option<Text>,
    /// Passphrase of the SSH key (`${ENV}` only).
    pub passphrase: Option<Text>,
    /// File holding the passphrase.
    pub passphrase_file: Option<Text>,
    /// SSH through the running agent.
    pub ssh_agent: Option<bool>,
}

/// `encryption:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryption {
    /// age recipients (`age1…` public keys).
    pub recipients: Option<Vec<Text>>,
    /// A file of recipients, one a line.
    pub recipients_file: Option<Text>,
    /// An age identity file (restore).
    pub identities_file: Option<Text>,
    /// One age identity (`${ENV}` only; restore).
    pub identity: Option<Text>,
}

/// A component: the common keys and those of its type.
#[derive(Debug)]
pub struct RawComponent {
    /// The keys every component has.
    pub common: Common,
    /// The keys of its type.
    pub settings: RawSettings,
}

/// The keys of one component type.
#[derive(Debug)]
pub enum RawSettings {
    /// `type: postgres`.
    Postgres(RawPostgres),
    /// `type: keycloak`.
    Keycloak(RawKeycloak),
    /// `type: vault`.
    Vault(RawVault),
    /// `type: infisical`.
    Infisical(RawInfisical),
    /// `type: helm`.
    Helm(RawHelm),
    /// `type: crds`.
    Crds(RawCrds),
    /// `type: grafana`.
    Grafana(RawGrafana),
}

/// Declares a component type's keys twice: as the settings struct that resolution reads,
/// and as the struct serde reads, which also holds the common keys (serde's `flatten` would
/// lose positions and the unknown-key check).
macro_rules! component_keys {
    ($(#[$doc:meta])* $entry:ident => $settings:ident { $( $(#[$fdoc:meta])* $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $settings {
            $( $(#[$fdoc])* pub $field: $ty, )*
        }

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $entry {
            #[serde(rename = "type")]
            _type: String,
            schedule: Option<Text>,
            time_zone: Option<Text>,
            on_change: Option<Spanned<bool>>,
            retention: Option<Spanned<RawRetention>>,
            storage: Option<Text>,
            verify: Option<Spanned<bool>>,
            rpo: Option<Text>,
            labels: Option<BTreeMap<String, Text>>,
            replicate_to: Option<Spanned<RawReplicateTo>>,
            $( $field: $ty, )*
        }

        impl $entry {
            fn split(self) -> (Common, $settings) {
                (
                    Common {
                        schedule: self.schedule,
                        time_zone: self.time_zone,
                        on_change: self.on_change,
                        retention: self.retention,
                        storage: self.storage,
                        verify: self.verify,
                        rpo: self.rpo,
                        labels: self.labels,
                        replicate_to: self.replicate_to,
                    },
                    $settings { $( $field: self.$field, )* },
                )
            }
        }
    };
}

component_keys! {
    /// `type: postgres`: [`PgConnection`](stoa_backup::prelude::PgConnection) and the dump.
    PostgresEntry => RawPostgres {
        /// `postgres://user@host:port/db` (`${ENV}`; a password in it only through `${ENV}`).
        url: Option<Text>,
        /// A file holding the URL.
        url_file: Option<Text>,
        /// Host or Unix socket directory.
        host: Option<Text>,
        /// Port.
        port: Option<Spanned<u16>>,
        /// User.
        user: Option<Text>,
        /// Password (`${ENV}` only).
        password: Option<Text>,
        /// File holding the password.
        password_file: Option<Text>,
        /// A libpq password file.
        passfile: Option<Text>,
        /// Database of the connection.
        dbname: Option<Text>,
        /// Databases to dump (default: the connection's).
        databases: Option<Vec<Text>>,
        /// Dump every database.
        all_databases: Option<bool>,
        /// Also dump roles and tablespaces (`pg_dumpall --globals-only`).
        globals: Option<bool>,
        /// Schemas left out.
        exclude_schemas: Option<Vec<Text>>,
        /// Tables left out.
        exclude_tables: Option<Vec<Text>>,
        /// How long pg_dump waits for a table lock before failing.
        lock_wait_timeout: Option<Text>,
    }
}

component_keys! {
    /// `type: keycloak`: [`KeycloakConnection`](stoa_backup::prelude::KeycloakConnection).
    KeycloakEntry => RawKeycloak {
        /// Server URL.
        url: Option<Text>,
        /// Client id.
        client_id: Option<Text>,
        /// Client secret (client credentials grant; `${ENV}` only).
        client_secret: Option<Text>,
        /// File holding the client secret.
        client_secret_file: Option<Text>,
        /// User (password grant).
        username: Option<Text>,
        /// Password (password grant; `${ENV}` only).
        password: Option<Text>,
        /// File holding the password.
        password_file: Option<Text>,
        /// Realm to authenticate against (default `master`).
        auth_realm: Option<Text>,
        /// Realms to export (default: every realm the token sees).
        realms: Option<Vec<Text>>,
    }
}

component_keys! {
    /// `type: vault`: [`VaultConnection`](stoa_backup::prelude::VaultConnection).
    VaultEntry => RawVault {
        /// Server address.
        address: Option<Text>,
        /// `kv` (default) or `snapshot` (raft).
        mode: Option<Text>,
        /// Token (`${ENV}` only).
        token: Option<Text>,
        /// File holding the token.
        token_file: Option<Text>,
        /// Kubernetes auth role.
        role: Option<Text>,
        /// Kubernetes service-account token file.
        jwt_path: Option<Text>,
        /// AppRole role id.
        role_id: Option<Text>,
        /// AppRole secret id (`${ENV}` only).
        secret_id: Option<Text>,
        /// File holding the AppRole secret id.
        secret_id_file: Option<Text>,
        /// Mount of the auth method.
        auth_mount: Option<Text>,
        /// Namespace.
        namespace: Option<Text>,
        /// KV mounts to export (default: every KV mount).
        mounts: Option<Vec<Text>>,
    }
}

component_keys! {
    /// `type: infisical`: [`InfisicalConnection`](stoa_backup::prelude::InfisicalConnection).
    InfisicalEntry => RawInfisical {
        /// Server URL.
        url: Option<Text>,
        /// Machine identity client id.
        client_id: Option<Text>,
        /// Machine identity client secret (`${ENV}` only).
        client_secret: Option<Text>,
        /// File holding the client secret.
        client_secret_file: Option<Text>,
        /// Project id.
        project: Option<Text>,
        /// Environment slugs (default: all).
        environments: Option<Vec<Text>>,
        /// `v4` (default) or `v3`.
        api: Option<Text>,
    }
}

component_keys! {
    /// `type: helm`: Helm release values.
    HelmEntry => RawHelm {
        /// Namespace of the releases.
        namespace: Option<Text>,
        /// Release names (default: every release of the namespace).
        releases: Option<Vec<Text>>,
    }
}

component_keys! {
    /// `type: crds`: custom resources and their definitions.
    CrdsEntry => RawCrds {
        /// API groups (default `gostoa.dev`).
        groups: Option<Vec<Text>>,
        /// Kinds (default: all of the groups).
        kinds: Option<Vec<Text>>,
        /// Namespaces (default: all).
        namespaces: Option<Vec<Text>>,
        /// Label selector.
        label_selector: Option<Text>,
        /// Whether the CRDs themselves are backed up (default true).
        include_crds: Option<bool>,
        /// Whether the Secrets the resources reference are backed up (default false).
        referenced_secrets: Option<bool>,
        /// `per_kind` (default) or `per_object` (one file per object, for Git).
        layout: Option<Text>,
    }
}

component_keys! {
    /// `type: grafana`: [`GrafanaConnection`](stoa_backup::prelude::GrafanaConnection).
    GrafanaEntry => RawGrafana {
        /// Server URL.
        url: Option<Text>,
        /// Service-account token (`${ENV}` only).
        token: Option<Text>,
        /// File holding the token.
        token_file: Option<Text>,
        /// User (basic auth).
        user: Option<Text>,
        /// Password (basic auth; `${ENV}` only).
        password: Option<Text>,
        /// File holding the password.
        password_file: Option<Text>,
        /// Organisation id.
        org_id: Option<Spanned<u64>>,
    }
}

/// A problem the first pass finds: a target or component without a known `type`.
#[derive(Debug)]
pub struct TypeProblem {
    /// `storage.<name>.type` or `components.<name>.type`.
    pub key: String,
    /// Where.
    pub location: Location,
    /// What is wrong.
    pub message: String,
}

/// Parses `source`: the first pass reads each target's and component's `type`, the second
/// reads each into the structure of its type.
pub fn parse(source: &str) -> Result<Result<RawConfig, TypeProblem>, serde_saphyr::Error> {
    let options = || serde_saphyr::options! { with_snippet: false, strict_booleans: true };
    if source.trim().is_empty() {
        return Ok(Ok(RawConfig::default()));
    }
    let probe: Probe = serde_saphyr::from_str_with_options(source, options())?;
    let mut targets = HashMap::new();
    for (name, t) in probe.storage.map(|e| e.0).unwrap_or_default() {
        let key = format!("storage.{}", name.value);
        match check_type(&name, &t, &key, TargetType::NAMES, TargetType::parse) {
            Ok(k) => targets.insert(name.value, (k, name.referenced)),
            Err(p) => return Ok(Err(p)),
        };
    }
    let mut components = HashMap::new();
    for (name, c) in probe.components.map(|e| e.0).unwrap_or_default() {
        let key = format!("components.{}", name.value);
        match check_type(&name, &c, &key, ComponentType::NAMES, ComponentType::parse) {
            Ok(k) => components.insert(name.value, (k, name.referenced)),
            Err(p) => return Ok(Err(p)),
        };
    }
    let seed = ConfigSeed {
        targets: &targets,
        components: &components,
    };
    serde_saphyr::with_deserializer_from_str_with_options(source, options(), |d| {
        seed.deserialize(d)
    })
    .map(Ok)
}

/// The first pass: only the `type` of each target and component.
#[derive(Deserialize)]
struct Probe {
    storage: Option<Entries>,
    components: Option<Entries>,
}

/// Names (with where they are written: errors about a whole target or component point at
/// its name) and their types.
struct Entries(Vec<(Text, TypeProbe)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<Text>()? {
                    out.push((name, map.next_value()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct TypeProbe {
    #[serde(rename = "type")]
    kind: Option<Text>,
}

fn check_type<T>(
    name: &Text,
    probe: &TypeProbe,
    key: &str,
    names: &[&str],
    parse: fn(&str) -> Option<T>,
) -> Result<T, TypeProblem> {
    let expected = names.join(", ");
    match &probe.kind {
        None => Err(TypeProblem {
            key: format!("{key}.type"),
            location: name.referenced,
            message: format!("`type` is missing: one of {expected}"),
        }),
        Some(t) => parse(&t.value).ok_or_else(|| TypeProblem {
            key: format!("{key}.type"),
            location: t.referenced,
            message: format!("unknown type `{}`: expected one of {expected}", t.value),
        }),
    }
}

struct ConfigSeed<'a> {
    targets: &'a HashMap<String, (TargetType, Location)>,
    components: &'a HashMap<String, (ComponentType, Location)>,
}

impl<'de> DeserializeSeed<'de> for ConfigSeed<'_> {
    type Value = RawConfig;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawConfig, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ConfigSeed<'_> {
    type Value = RawConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with the keys storage, encryption, replicate_to and components")
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawConfig, E> {
        Ok(RawConfig::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawConfig, A::Error> {
        let mut config = RawConfig::default();
        let mut seen = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            match key.as_str() {
                "storage" => {
                    config.storage = map.next_value_seed(Targets(self.targets))?;
                }
                "encryption" => config.encryption = map.next_value()?,
                "replicate_to" => config.replicate_to = map.next_value()?,
                "components" => {
                    config.components = map.next_value_seed(Components(self.components))?;
                }
                other => return Err(de::Error::unknown_field(other, TOP_KEYS)),
            }
            seen.push(key);
        }
        Ok(config)
    }
}

struct Targets<'a>(&'a HashMap<String, (TargetType, Location)>);

impl<'de> DeserializeSeed<'de> for Targets<'_> {
    type Value = Vec<(String, Location, RawTarget)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Targets<'_> {
    type Value = Vec<(String, Location, RawTarget)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of storage target names to their settings")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            let (kind, location) = self.0.get(&name).cloned().ok_or_else(|| {
                de::Error::custom(format!("storage target `{name}` changed between two reads"))
            })?;
            let target = map.next_value_seed(TargetSeed(kind))?;
            out.push((name, location, target));
        }
        Ok(out)
    }
}

struct TargetSeed(TargetType);

impl<'de> DeserializeSeed<'de> for TargetSeed {
    type Value = RawTarget;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawTarget, D::Error> {
        Ok(match self.0 {
            TargetType::Local => RawTarget::Local(RawLocal::deserialize(d)?),
            TargetType::S3 => RawTarget::S3(RawS3::deserialize(d)?),
            TargetType::Git => RawTarget::Git(RawGit::deserialize(d)?),
        })
    }
}

struct Components<'a>(&'a HashMap<String, (ComponentType, Location)>);

impl<'de> DeserializeSeed<'de> for Components<'_> {
    type Value = Vec<(String, Location, RawComponent)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Components<'_> {
    type Value = Vec<(String, Location, RawComponent)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of component names to their settings")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            let (kind, location) = self.0.get(&name).cloned().ok_or_else(|| {
                de::Error::custom(format!("component `{name}` changed between two reads"))
            })?;
            let component = map.next_value_seed(ComponentSeed(kind))?;
            out.push((name, location, component));
        }
        Ok(out)
    }
}

struct ComponentSeed(ComponentType);

impl<'de> DeserializeSeed<'de> for ComponentSeed {
    type Value = RawComponent;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawComponent, D::Error> {
        fn read<'de, E, S, D>(
            d: D,
            split: fn(E) -> (Common, S),
            wrap: fn(S) -> RawSettings,
        ) -> Result<RawComponent, D::Error>
        where
            E: Deserialize<'de>,
            D: Deserializer<'de>,
        {
            let (common, settings) = split(E::deserialize(d)?);
            Ok(RawComponent {
                common,
                settings: wrap(settings),
            })
        }
        match self.0 {
            ComponentType::Postgres => read(d, PostgresEntry::split, RawSettings::Postgres),
            ComponentType::Keycloak => read(d, KeycloakEntry::split, RawSettings::Keycloak),
            ComponentType::Vault => read(d, VaultEntry::split, RawSettings::Vault),
            ComponentType::Infisical => read(d, InfisicalEntry::split, RawSettings::Infisical),
            ComponentType::Helm => read(d, HelmEntry::split, RawSettings::Helm),
            ComponentType::Crds => read(d, CrdsEntry::split, RawSettings::Crds),
            ComponentType::Grafana => read(d, GrafanaEntry::split, RawSettings::Grafana),
        }
    }
}
