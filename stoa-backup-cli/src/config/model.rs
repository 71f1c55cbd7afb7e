//! The configuration once checked: every value interpolated, every secret read and wrapped,
//! every connection and sink builder constructed by the library (so invalid settings are
//! found before anything connects). `Serialize` gives what `config check --json` prints:
//! secrets as `***`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use stoa_backup::core::{KeepCount, KeepRules};
use stoa_backup::prelude::{
    GrafanaConnection, InfisicalConnection, KeycloakConnection, PgConnection, VaultConnection,
};
use stoa_backup::storage::{GitSinkBuilder, S3SinkBuilder};

use super::duration::HumanDuration;
use super::raw::ComponentType;
use super::references::Reference;
use super::schedule::Schedule;
use super::secret::Secret;

/// A checked configuration.
#[derive(Debug, Serialize)]
pub struct Config {
    /// The file it was read from, or `<embedded default>`.
    pub file: String,
    /// Storage targets, in file order.
    pub storage: Vec<Target>,
    /// Encryption of every artifact, if configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Components, in file order.
    pub components: Vec<Component>,
    /// The top level's `replicate_to`: the storage targets every component's runs are copied
    /// to, unless the component names its own (each component's list is in
    /// [`Component::replicate_to`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicate_to: Vec<String>,
    /// The variables and files the file makes the command read, by key (`manifests` gives
    /// them to the pods from Secrets).
    #[serde(skip)]
    pub references: Vec<Reference>,
}

impl Config {
    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.storage.iter().find(|t| t.name == name)
    }

    /// The component named `name`.
    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }
}

/// A named storage target.
#[derive(Debug, Serialize)]
pub struct Target {
    /// Its name, which components refer to.
    pub name: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: TargetKind,
}

/// The kinds of storage targets.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TargetKind {
    /// A directory.
    Local(LocalTarget),
    /// An S3 bucket.
    S3(S3Target),
    /// A Git repository.
    Git(GitTarget),
}

/// `type: local`.
#[derive(Debug, Serialize)]
pub struct LocalTarget {
    /// The directory.
    pub path: PathBuf,
    /// Whether it is created when missing.
    pub create: bool,
}

/// `type: s3`.
#[derive(Debug, Serialize)]
pub struct S3Target {
    /// The bucket.
    pub bucket: String,
    /// Key prefix.
    pub prefix: String,
    /// Endpoint, if not AWS's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Whether `http://` is allowed.
    pub allow_http: bool,
    /// `static` (from the file) or `environment` (AWS variables, IRSA, instance metadata).
    pub credentials: S3CredentialsView,
    /// The checked builder.
    #[serde(skip)]
    pub builder: S3SinkBuilder,
}

/// How an S3 target authenticates.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum S3CredentialsView {
    /// The standard AWS environment.
    Environment,
    /// Keys given in the file (through `${ENV}` or files).
    Static {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: Secret,
        /// The session token, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        session_token: Option<Secret>,
    },
}

/// `type: git`.
#[derive(Debug, Serialize)]
pub struct GitTarget {
    /// The remote, its password (if any) shown as `***`.
    pub remote: String,
    /// The branch.
    pub branch: String,
    /// Folder inside the repository.
    pub path: String,
    /// The working clone.
    pub workdir: PathBuf,
    /// How it authenticates.
    pub credentials: GitCredentialsView,
    /// The checked builder.
    #[serde(skip)]
    pub builder: GitSinkBuilder,
}

/// How a Git target authenticates.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum GitCredentialsView {
    /// None (local paths, pre-authorized remotes).
    None,
    /// HTTPS with a token.
    HttpsToken {
        /// The user name.
        username: String,
        /// The token.
        token: Secret,
    },
    /// SSH with a key file.
    SshKey {
        /// The SSH user.
        username: String,
        /// The key file.
        private_key: PathBuf,
        /// Its passphrase, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        passphrase: Option<Secret>,
    },
    /// SSH through the agent.
    SshAgent {
        /// The SSH user.
        username: String,
    },
}

/// `encryption:`: age.
#[derive(Debug, Serialize)]
pub struct Encryption {
    /// Recipients (`age1…`), public.
    pub recipients: Vec<String>,
    /// Identities for restores: where they came from, never their value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<IdentitySource>,
    /// The identities themselves.
    #[serde(skip)]
    pub identity_texts: Vec<Secret>,
}

/// Where an identity was read.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum IdentitySource {
    /// An identity file.
    File {
        /// Its path.
        path: PathBuf,
    },
    /// `identity:` through `${ENV}`.
    Value {
        /// The identity.
        identity: Secret,
    },
}

/// A component.
#[derive(Debug, Serialize)]
pub struct Component {
    /// Its name: the component of its runs in the catalog.
    pub name: String,
    /// Its type and the settings of its type.
    #[serde(flatten)]
    pub settings: Settings,
    /// When it runs.
    pub trigger: Trigger,
    /// What is kept.
    pub retention: Retention,
    /// The storage target's name.
    pub storage: String,
    /// The storage targets each complete, verified run is copied to after the backup (its
    /// own `replicate_to`, else the top level's without its own target), in the order
    /// written: where `restore` and `recover` look too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicate_to: Vec<String>,
    /// Whether the provider's verifier checks each artifact.
    pub verify: bool,
    /// The provider's verifier, when `verify` is on and the provider has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifier: Option<&'static str>,
    /// Recovery point objective.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo: Option<HumanDuration>,
    /// Labels of its runs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Component {
    /// The storage targets holding its runs: its own, then its replicas.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.storage.as_str()).chain(self.replicate_to.iter().map(String::as_str))
    }

    /// The component's type.
    pub fn kind(&self) -> ComponentType {
        match &self.settings {
            Settings::Postgres(_) => ComponentType::Postgres,
            Settings::Keycloak(_) => ComponentType::Keycloak,
            Settings::Vault(_) => ComponentType::Vault,
            Settings::Infisical(_) => ComponentType::Infisical,
            Settings::Helm(_) => ComponentType::Helm,
            Settings::Crds(_) => ComponentType::Crds,
            Settings::Grafana(_) => ComponentType::Grafana,
        }
    }
}

/// When a component runs.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// On a cron schedule.
    Schedule(Box<Schedule>),
    /// On every change of what it backs up.
    OnChange,
    /// Only when asked (`stoa-backup backup <name>`).
    Manual,
}

/// The keep rules of a component, as written and as the library's [`KeepRules`].
#[derive(Debug, Clone, Serialize)]
pub struct Retention {
    /// Keep the last N runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    /// Daily buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily: Option<Count>,
    /// ISO-weekly buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekly: Option<Count>,
    /// Monthly buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly: Option<Count>,
    /// Yearly buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yearly: Option<Count>,
    /// Every run of this last duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within: Option<HumanDuration>,
    /// Every run, forever.
    pub forever: bool,
    /// Whether the file had a `retention:` (without one every run is kept).
    #[serde(skip)]
    pub written: bool,
}

/// A bucket count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// The newest N buckets.
    Last(u32),
    /// Every bucket.
    Unlimited,
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Last(n) => s.serialize_u32(*n),
            Count::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl From<Count> for KeepCount {
    fn from(c: Count) -> KeepCount {
        match c {
            Count::Last(n) => KeepCount::Last(n),
            Count::Unlimited => KeepCount::Unlimited,
        }
    }
}

impl Retention {
    /// No `retention:` in the file: every run is kept (what the file does not say is never
    /// pruned).
    pub fn unwritten() -> Self {
        Retention {
            last: None,
            daily: None,
            weekly: None,
            monthly: None,
            yearly: None,
            within: None,
            forever: true,
            written: false,
        }
    }

    /// The library's keep rules.
    pub fn rules(&self) -> KeepRules {
        let mut r = KeepRules::new();
        if let Some(n) = self.last {
            r = r.keep_last(n);
        }
        if let Some(c) = self.daily {
            r = r.keep_daily(c.into());
        }
        if let Some(c) = self.weekly {
            r = r.keep_weekly(c.into());
        }
        if let Some(c) = self.monthly {
            r = r.keep_monthly(c.into());
        }
        if let Some(c) = self.yearly {
            r = r.keep_yearly(c.into());
        }
        if let Some(d) = &self.within {
            r = r.keep_within(d.chrono());
        }
        if self.forever {
            r = r.keep_forever();
        }
        r
    }

    /// One line: `daily 30, within 30d`.
    pub fn summary(&self) -> String {
        let count = |c: &Count| match c {
            Count::Last(n) => n.to_string(),
            Count::Unlimited => "unlimited".into(),
        };
        let mut parts = Vec::new();
        if let Some(n) = self.last {
            parts.push(format!("last {n}"));
        }
        for (name, c) in [
            ("daily", &self.daily),
            ("weekly", &self.weekly),
            ("monthly", &self.monthly),
            ("yearly", &self.yearly),
        ] {
            if let Some(c) = c {
                parts.push(format!("{name} {}", count(c)));
            }
        }
        if let Some(d) = &self.within {
            parts.push(format!("within {d}"));
        }
        if self.forever {
            parts.push(if self.written {
                "forever".into()
            } else {
                "forever (no `retention:`)".into()
            });
        }
        if parts.is_empty() {
            // Rules that keep nothing more are refused when the file is read.
            "the newest complete and the newest verified run".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The settings of each component type.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Settings {
    /// PostgreSQL.
    Postgres(PostgresSettings),
    /// Keycloak.
    Keycloak(KeycloakSettings),
    /// Vault / OpenBao.
    Vault(VaultSettings),
    /// Infisical.
    Infisical(InfisicalSettings),
    /// Helm values.
    Helm(HelmSettings),
    /// Custom resources.
    Crds(CrdsSettings),
    /// Grafana.
    Grafana(GrafanaSettings),
}

/// `type: postgres`.
#[derive(Debug, Serialize)]
pub struct PostgresSettings {
    /// The server, as a URL with the password (if any) shown as `***`.
    pub connection: String,
    /// The password, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// The databases dumped: names, `["*"]` for all, empty for the connection's.
    pub databases: Vec<String>,
    /// Whether `pg_dumpall --globals-only` is stored too.
    pub globals: bool,
    /// Schemas left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_schemas: Vec<String>,
    /// Tables left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_tables: Vec<String>,
    /// pg_dump's lock wait timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_wait_timeout: Option<HumanDuration>,
    /// The checked connection.
    #[serde(skip)]
    pub conn: PgConnection,
    /// Whether every database is dumped.
    #[serde(skip)]
    pub all_databases: bool,
}

/// `type: keycloak`.
#[derive(Debug, Serialize)]
pub struct KeycloakSettings {
    /// The server.
    pub url: String,
    /// `client_credentials` or `password`.
    pub grant: &'static str,
    /// The client id.
    pub client_id: String,
    /// The user of a password grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The client secret or password.
    pub secret: Secret,
    /// Realm authenticated against.
    pub auth_realm: String,
    /// Realms exported (empty: every realm the token sees).
    pub realms: Vec<String>,
    /// The checked connection.
    #[serde(skip)]
    pub conn: KeycloakConnection,
}

/// `type: vault`.
#[derive(Debug, Serialize)]
pub struct VaultSettings {
    /// The server.
    pub address: String,
    /// `kv` or `snapshot`.
    pub mode: VaultMode,
    /// `token`, `kubernetes` or `approle`.
    pub auth: &'static str,
    /// The token or AppRole secret id, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// KV mounts exported (empty: every KV mount).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
    /// The checked connection.
    #[serde(skip)]
    pub conn: VaultConnection,
}

/// What a Vault component backs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VaultMode {
    /// KV secrets, exported through the API.
    Kv,
    /// A raft snapshot of the whole storage.
    Snapshot,
}

/// `type: infisical`.
#[derive(Debug, Serialize)]
pub struct InfisicalSettings {
    /// The server.
    pub url: String,
    /// The machine identity's client id.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: Secret,
    /// The project.
    pub project: String,
    /// Environments (empty: all).
    pub environments: Vec<String>,
    /// The checked connection.
    #[serde(skip)]
    pub conn: InfisicalConnection,
}

/// `type: helm`.
#[derive(Debug, Serialize)]
pub struct HelmSettings {
    /// Namespace of the releases.
    pub namespace: String,
    /// Releases (empty: every release of the namespace).
    pub releases: Vec<String>,
}

/// `type: crds`.
#[derive(Debug, Serialize)]
pub struct CrdsSettings {
    /// API groups.
    pub groups: Vec<String>,
    /// Kinds (empty: all of the groups).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Namespaces (empty: all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Label selector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// Whether the CRDs are backed up.
    pub include_crds: bool,
    /// Whether referenced Secrets are backed up.
    pub referenced_secrets: bool,
    /// `per_kind` or `per_object`.
    pub layout: &'static str,
}

/// `type: grafana`.
#[derive(Debug, Serialize)]
pub struct GrafanaSettings {
    /// The server.
    pub url: String,
    /// `token` or `basic`.
    pub auth: &'static str,
    /// The basic-auth user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The token or password.
    pub secret: Secret,
    /// Organisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<u64>,
    /// The checked connection.
    #[serde(skip)]
    pub conn: GrafanaConnection,
}
