//! Components: what every component has (trigger, retention, storage, verification, RPO,
//! labels) and the settings of each type, checked by building the library's connection and
//! source without connecting.

use std::collections::BTreeMap;

use serde_saphyr::{Location, Spanned};
use stoa_backup::prelude::{
    GrafanaAuth, GrafanaConnection, InfisicalConnection, KeycloakAuth, KeycloakConnection,
    PgConnection, VaultAuth, VaultConnection,
};
use stoa_backup::providers::infisical::InfisicalApi;

use super::targets::check_name;
use super::{Resolver, Result};
use crate::config::duration::HumanDuration;
use crate::config::model::{
    Component, Count, CrdsSettings, GrafanaSettings, HelmSettings, InfisicalSettings,
    KeycloakSettings, PostgresSettings, Retention, Settings, Target, Trigger, VaultMode,
    VaultSettings,
};
use crate::config::raw::{
    Common, RawComponent, RawCount, RawCrds, RawGrafana, RawHelm, RawInfisical, RawKeycloak,
    RawPostgres, RawRetention, RawSettings, RawVault,
};
use crate::config::references::Referenced;
use crate::config::schedule::{Schedule, ScheduleError};
use crate::sources;

impl Resolver<'_> {
    pub(super) fn component(
        &self,
        name: &str,
        at: &Location,
        raw: RawComponent,
        targets: &[Target],
        replicas: &[String],
        encrypted: bool,
    ) -> Result<Component> {
        let prefix = format!("components.{name}");
        check_name(self, name, at, &prefix)?;
        let key = |k: &str| format!("{prefix}.{k}");
        let Common {
            schedule,
            time_zone,
            on_change,
            retention,
            storage,
            verify,
            rpo,
            labels,
            replicate_to,
        } = raw.common;
        let trigger = self.trigger(
            &prefix,
            schedule.as_ref(),
            time_zone.as_ref(),
            on_change.as_ref(),
        )?;
        let retention = match &retention {
            Some(r) => self.retention(&key("retention"), r)?,
            None => Retention::unwritten(),
        };
        let storage = match &storage {
            Some(t) => {
                let target = self.text(t, &key("storage"))?;
                if !targets.iter().any(|x| x.name == target) {
                    let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
                    return Err(self
                        .err(&t.referenced, &key("storage"), format!("no storage target is named `{target}`"))
                        .with_hint(if known.is_empty() {
                            "define it under `storage:`".to_string()
                        } else {
                            format!("the targets are: {}", known.join(", "))
                        }));
                }
                target
            }
            None => match targets {
                [only] => only.name.clone(),
                [] => {
                    return Err(self
                        .err(at, &key("storage"), "is missing, and no storage target is defined")
                        .with_hint("add a `storage:` section with a target, e.g. `backups: {type: local, path: /var/backups/stoa}`"))
                }
                _ => {
                    return Err(self.err(
                        at,
                        &key("storage"),
                        "is missing: several storage targets are defined, name the one this component goes to",
                    ))
                }
            },
        };
        let replicate_to =
            self.component_replicas(&prefix, &storage, replicate_to.as_ref(), replicas, targets)?;
        let rpo = match &rpo {
            Some(t) => Some(
                HumanDuration::parse(&self.text(t, &key("rpo"))?)
                    .map_err(|e| self.err(&t.referenced, &key("rpo"), e))?,
            ),
            None => None,
        };
        let mut run_labels = BTreeMap::new();
        for (k, v) in labels.unwrap_or_default() {
            let value = self.text(&v, &key(&format!("labels.{k}")))?;
            run_labels.insert(k, value);
        }
        let verify = verify.map(|v| v.value).unwrap_or(true);
        let settings = match raw.settings {
            RawSettings::Postgres(p) => Settings::Postgres(self.postgres(name, at, p)?),
            RawSettings::Keycloak(k) => Settings::Keycloak(self.keycloak(name, at, k)?),
            RawSettings::Vault(v) => Settings::Vault(self.vault(name, at, v)?),
            RawSettings::Infisical(i) => Settings::Infisical(self.infisical(name, at, i)?),
            RawSettings::Helm(h) => Settings::Helm(self.helm(name, at, h)?),
            RawSettings::Crds(c) => Settings::Crds(self.crds(name, c)?),
            RawSettings::Grafana(g) => Settings::Grafana(self.grafana(name, at, g)?),
        };
        let sensitive = match &settings {
            Settings::Keycloak(_)
            | Settings::Vault(_)
            | Settings::Infisical(_)
            | Settings::Helm(_) => true,
            Settings::Crds(c) => c.referenced_secrets,
            Settings::Postgres(_) | Settings::Grafana(_) => false,
        };
        if sensitive && !encrypted {
            return Err(self
                .err(at, &prefix, "stores secrets, and no `encryption:` is configured")
                .with_hint("add `encryption: {recipients: [age1…]}`: artifacts holding secrets are only stored encrypted"));
        }
        let verifier = verify.then(|| sources::verifier_name(&settings)).flatten();
        Ok(Component {
            name: name.to_string(),
            settings,
            trigger,
            retention,
            storage,
            replicate_to,
            verify,
            verifier,
            rpo,
            labels: run_labels,
        })
    }

    fn trigger(
        &self,
        prefix: &str,
        schedule: Option<&Spanned<String>>,
        time_zone: Option<&Spanned<String>>,
        on_change: Option<&Spanned<bool>>,
    ) -> Result<Trigger> {
        let on_change = on_change.filter(|c| c.value);
        match (schedule, on_change) {
            (Some(_), Some(c)) => Err(self.err(
                &c.referenced,
                &format!("{prefix}.on_change"),
                "give `schedule` or `on_change: true`, not both",
            )),
            (None, Some(c)) => match time_zone {
                Some(tz) => Err(self.err(
                    &tz.referenced,
                    &format!("{prefix}.time_zone"),
                    "a time zone belongs to a `schedule`",
                )),
                None => {
                    let _ = c;
                    Ok(Trigger::OnChange)
                }
            },
            (None, None) => match time_zone {
                Some(tz) => Err(self.err(
                    &tz.referenced,
                    &format!("{prefix}.time_zone"),
                    "a time zone belongs to a `schedule`",
                )),
                None => Ok(Trigger::Manual),
            },
            (Some(s), None) => {
                let expression = self.text(s, &format!("{prefix}.schedule"))?;
                let zone = match time_zone {
                    Some(tz) => Some(self.text(tz, &format!("{prefix}.time_zone"))?),
                    None => None,
                };
                Schedule::parse(&expression, zone.as_deref())
                    .map(|s| Trigger::Schedule(Box::new(s)))
                    .map_err(|e| match e {
                        ScheduleError::Expression(m) => self
                            .err(&s.referenced, &format!("{prefix}.schedule"), m)
                            .with_hint("fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12) day-of-week (0-7, 0 and 7 are Sunday); UTC unless `time_zone` names one"),
                        ScheduleError::TimeZone(m) => self.err(
                            &time_zone.map(|t| t.referenced).unwrap_or(Location::UNKNOWN),
                            &format!("{prefix}.time_zone"),
                            m,
                        ),
                    })
            }
        }
    }

    fn retention(&self, key: &str, raw: &Spanned<RawRetention>) -> Result<Retention> {
        let r = &raw.value;
        if let Some(h) = &r.hourly {
            return Err(self
                .err(
                    &h.referenced,
                    &format!("{key}.hourly"),
                    "hourly buckets are not supported by the library's keep rules",
                )
                .with_hint("keep the runs of the last hours with `within: 48h` or `last: N`"));
        }
        let count = |c: &Option<Spanned<RawCount>>, k: &str| -> Result<Option<Count>> {
            let Some(c) = c else { return Ok(None) };
            let key = format!("{key}.{k}");
            match &c.value {
                RawCount::Count(n) if *n >= 1 => u32::try_from(*n)
                    .map(|n| Some(Count::Last(n)))
                    .map_err(|_| self.err(&c.referenced, &key, format!("{n} is too large"))),
                RawCount::Count(n) => Err(self
                    .err(
                        &c.referenced,
                        &key,
                        format!("{n} would keep nothing: a count is at least 1"),
                    )
                    .with_hint("leave the rule out to disable it")),
                RawCount::Word(w) if w == "unlimited" => Ok(Some(Count::Unlimited)),
                RawCount::Word(w) => Err(self.err(
                    &c.referenced,
                    &key,
                    format!("{w:?} is not a count: write a number of at least 1, or `unlimited`"),
                )),
            }
        };
        let last = match &r.last {
            Some(n) if n.value == 0 => {
                return Err(self.err(
                    &n.referenced,
                    &format!("{key}.last"),
                    "0 would keep nothing: give at least 1",
                ))
            }
            Some(n) => Some(n.value),
            None => None,
        };
        let within = match &r.within {
            Some(t) => Some(
                HumanDuration::parse(&self.text(t, &format!("{key}.within"))?)
                    .map_err(|e| self.err(&t.referenced, &format!("{key}.within"), e))?,
            ),
            None => None,
        };
        let retention = Retention {
            last,
            daily: count(&r.daily, "daily")?,
            weekly: count(&r.weekly, "weekly")?,
            monthly: count(&r.monthly, "monthly")?,
            yearly: count(&r.yearly, "yearly")?,
            within,
            forever: r.forever.as_ref().is_some_and(|f| f.value),
            written: true,
        };
        if retention.rules().keeps_only_always_rules() {
            return Err(self
                .err(&raw.referenced, key, "keeps nothing beyond the newest run")
                .with_hint("give at least one rule (last, daily, weekly, monthly, yearly, within, forever: true), or leave `retention` out to keep every run"));
        }
        retention
            .rules()
            .validate()
            .map_err(|e| self.err(&raw.referenced, key, e.to_string()))?;
        Ok(retention)
    }

    fn postgres(&self, name: &str, at: &Location, raw: RawPostgres) -> Result<PostgresSettings> {
        let key = |k: &str| format!("components.{name}.{k}");
        let url = match (&raw.url, &raw.url_file) {
            (Some(_), Some(f)) => {
                return Err(self.err(
                    &f.referenced,
                    &key("url_file"),
                    "give `url` or `url_file`, not both",
                ))
            }
            (Some(u), None) => Some((self.url(u, &key("url"))?, u.referenced, key("url"))),
            (None, Some(f)) => {
                let (_, text) = self.read_file(f, &key("url_file"))?;
                Some((
                    text.expose().trim().to_string(),
                    f.referenced,
                    key("url_file"),
                ))
            }
            (None, None) => None,
        };
        let conn = match url {
            Some((url, where_, url_key)) => {
                for (field, given) in [
                    ("host", raw.host.as_ref().map(|t| &t.referenced)),
                    ("port", raw.port.as_ref().map(|t| &t.referenced)),
                    ("user", raw.user.as_ref().map(|t| &t.referenced)),
                    ("dbname", raw.dbname.as_ref().map(|t| &t.referenced)),
                ] {
                    if let Some(l) = given {
                        return Err(self.err(l, &key(field), format!("give the server as `{}` or as host, port, user and dbname, not both", url_key.rsplit('.').next().unwrap_or("url"))));
                    }
                }
                PgConnection::from_url(&url)
                    .map_err(|e| self.err(&where_, &url_key, e.to_string()))?
            }
            None => {
                let host = self.required(
                    raw.host.as_ref(),
                    at,
                    &key("host"),
                    "give `url` (e.g. ${DATABASE_URL}) or `host`",
                )?;
                let user = self
                    .opt_text(raw.user.as_ref(), &key("user"))?
                    .unwrap_or_else(|| "postgres".into());
                let mut c =
                    PgConnection::new(host, raw.port.as_ref().map_or(5432, |p| p.value), user);
                if let Some(db) = self.opt_text(raw.dbname.as_ref(), &key("dbname"))? {
                    c = c.dbname(db);
                }
                c
            }
        };
        let password = self.secret(
            raw.password.as_ref(),
            raw.password_file.as_ref(),
            &key("password"),
            &key("password_file"),
        )?;
        let mut conn = match &password {
            Some(p) => conn.password(p.expose()),
            None => conn,
        };
        if let Some(pf) = self.opt_text(raw.passfile.as_ref(), &key("passfile"))? {
            self.record(&key("passfile"), Referenced::File(pf.clone().into()));
            conn = conn.passfile(pf);
        }
        conn.validate()
            .map_err(|e| self.err(at, &format!("components.{name}"), e.to_string()))?;
        let databases = self.list(raw.databases.as_ref(), &key("databases"))?;
        let all_databases = raw.all_databases.unwrap_or(false);
        if all_databases && !databases.is_empty() {
            return Err(self.err(
                &raw.databases
                    .as_ref()
                    .and_then(|d| d.first())
                    .map(|t| t.referenced)
                    .unwrap_or_else(|| *at),
                &key("databases"),
                "give `databases` or `all_databases: true`, not both",
            ));
        }
        let lock_wait_timeout = match &raw.lock_wait_timeout {
            Some(t) => Some(
                HumanDuration::parse(&self.text(t, &key("lock_wait_timeout"))?)
                    .map_err(|e| self.err(&t.referenced, &key("lock_wait_timeout"), e))?,
            ),
            None => None,
        };
        let settings = PostgresSettings {
            connection: conn.redacted_url(conn.get_dbname()),
            password: password.or_else(|| {
                conn.has_password()
                    .then(|| crate::config::secret::Secret::new(""))
            }),
            databases: if all_databases {
                vec!["*".into()]
            } else {
                databases
            },
            globals: raw.globals.unwrap_or(false),
            exclude_schemas: self.list(raw.exclude_schemas.as_ref(), &key("exclude_schemas"))?,
            exclude_tables: self.list(raw.exclude_tables.as_ref(), &key("exclude_tables"))?,
            lock_wait_timeout,
            conn,
            all_databases,
        };
        sources::postgres(name, &settings)
            .map_err(|e| self.err(at, &format!("components.{name}"), e.to_string()))?;
        Ok(settings)
    }

    fn keycloak(&self, name: &str, at: &Location, raw: RawKeycloak) -> Result<KeycloakSettings> {
        let key = |k: &str| format!("components.{name}.{k}");
        let url_t = raw.url.as_ref();
        let url = self.required(
            url_t,
            at,
            &key("url"),
            "the Keycloak server, e.g. https://keycloak.example.org",
        )?;
        let client_id = self.required(
            raw.client_id.as_ref(),
            at,
            &key("client_id"),
            "the admin client's id",
        )?;
        let client_secret = self.secret(
            raw.client_secret.as_ref(),
            raw.client_secret_file.as_ref(),
            &key("client_secret"),
            &key("client_secret_file"),
        )?;
        let username = self.opt_text(raw.username.as_ref(), &key("username"))?;
        let password = self.secret(
            raw.password.as_ref(),
            raw.password_file.as_ref(),
            &key("password"),
            &key("password_file"),
        )?;
        let (grant, auth, secret) = match (client_secret, username, password) {
            (Some(s), None, None) => (
                "client_credentials",
                KeycloakAuth::ClientCredentials { client_id: client_id.clone(), client_secret: s.expose().to_string() },
                s,
            ),
            (None, Some(u), Some(p)) => (
                "password",
                KeycloakAuth::Password { client_id: client_id.clone(), username: u, password: p.expose().to_string() },
                p,
            ),
            (None, Some(_), None) => return Err(self.err(at, &key("password"), "is missing: a `username` needs its password (`password` or `password_file`)")),
            _ => return Err(self
                .err(at, &format!("components.{name}"), "give `client_secret` (client credentials grant) or `username` and `password` (password grant)")
                .with_hint("one of the two, not both")),
        };
        let username = match &auth {
            KeycloakAuth::Password { username, .. } => Some(username.clone()),
            _ => None,
        };
        let auth_realm = self
            .opt_text(raw.auth_realm.as_ref(), &key("auth_realm"))?
            .unwrap_or_else(|| "master".into());
        let conn = KeycloakConnection::new(&url, auth)
            .map_err(|e| {
                self.err(
                    &url_t.map(|t| t.referenced).unwrap_or_else(|| *at),
                    &key("url"),
                    e.to_string(),
                )
            })?
            .auth_realm(&auth_realm);
        let settings = KeycloakSettings {
            url,
            grant,
            client_id,
            username,
            secret,
            auth_realm,
            realms: self.list(raw.realms.as_ref(), &key("realms"))?,
            conn,
        };
        sources::keycloak(name, &settings)
            .map_err(|e| self.err(at, &format!("components.{name}"), e.to_string()))?;
        Ok(settings)
    }

    fn vault(&self, name: &str, at: &Location, raw: RawVault) -> Result<VaultSettings> {
        let key = |k: &str| format!("components.{name}.{k}");
        let address = self.required(
            raw.address.as_ref(),
            at,
            &key("address"),
            "the Vault server, e.g. https://vault.stoa.svc:8200",
        )?;
        let mode = match &raw.mode {
            None => VaultMode::Kv,
            Some(t) => match self.text(t, &key("mode"))?.as_str() {
                "kv" => VaultMode::Kv,
                "snapshot" => VaultMode::Snapshot,
                other => {
                    return Err(self.err(
                        &t.referenced,
                        &key("mode"),
                        format!("unknown mode `{other}`: expected kv or snapshot"),
                    ))
                }
            },
        };
        let token = self.secret(
            raw.token.as_ref(),
            raw.token_file.as_ref(),
            &key("token"),
            &key("token_file"),
        )?;
        let role = self.opt_text(raw.role.as_ref(), &key("role"))?;
        let role_id = self.opt_text(raw.role_id.as_ref(), &key("role_id"))?;
        let secret_id = self.secret(
            raw.secret_id.as_ref(),
            raw.secret_id_file.as_ref(),
            &key("secret_id"),
            &key("secret_id_file"),
        )?;
        let mount = self.opt_text(raw.auth_mount.as_ref(), &key("auth_mount"))?;
        let jwt_path = self.opt_text(raw.jwt_path.as_ref(), &key("jwt_path"))?;
        let (auth_name, auth, secret) = match (token, role, role_id) {
            (Some(t), None, None) => ("token", VaultAuth::token(t.expose()), Some(t)),
            (None, Some(role), None) => {
                let mut a = VaultAuth::kubernetes(role);
                if let Some(p) = &jwt_path {
                    a = a.with_jwt_path(p);
                }
                ("kubernetes", a, None)
            }
            (None, None, Some(id)) => {
                let s = secret_id.ok_or_else(|| self.err(at, &key("secret_id"), "is missing: AppRole auth needs `secret_id` or `secret_id_file`"))?;
                ("approle", VaultAuth::approle(id, s.expose()), Some(s))
            }
            _ => return Err(self
                .err(at, &format!("components.{name}"), "give one way to authenticate: `token`, `role` (Kubernetes auth) or `role_id` with `secret_id` (AppRole)")
                .with_hint("token and secret id through ${ENV} or their *_file key")),
        };
        let auth = match mount {
            Some(m) => auth.with_mount(m),
            None => auth,
        };
        let namespace = self.opt_text(raw.namespace.as_ref(), &key("namespace"))?;
        let mut conn = VaultConnection::new(&address, auth).map_err(|e| {
            self.err(
                &raw.address
                    .as_ref()
                    .map(|t| t.referenced)
                    .unwrap_or_else(|| *at),
                &key("address"),
                e.to_string(),
            )
        })?;
        if let Some(ns) = &namespace {
            conn = conn.namespace(ns);
        }
        let mounts = self.list(raw.mounts.as_ref(), &key("mounts"))?;
        if mode == VaultMode::Snapshot && !mounts.is_empty() {
            return Err(self.err(
                &raw.mounts
                    .as_ref()
                    .and_then(|m| m.first())
                    .map(|t| t.referenced)
                    .unwrap_or_else(|| *at),
                &key("mounts"),
                "mounts belong to `mode: kv`; a snapshot holds the whole storage",
            ));
        }
        let settings = VaultSettings {
            address,
            mode,
            auth: auth_name,
            secret,
            namespace,
            mounts,
            conn,
        };
        sources::vault(name, &settings)
            .map_err(|e| self.err(at, &format!("components.{name}"), e.to_string()))?;
        Ok(settings)
    }

    fn infisical(&self, name: &str, at: &Location, raw: RawInfisical) -> Result<InfisicalSettings> {
        let key = |k: &str| format!("components.{name}.{k}");
        let url = self
            .opt_text(raw.url.as_ref(), &key("url"))?
            .unwrap_or_else(|| "https://app.infisical.com".into());
        let client_id = self.required(
            raw.client_id.as_ref(),
            at,
            &key("client_id"),
            "the machine identity's client id",
        )?;
        let client_secret = self
            .secret(raw.client_secret.as_ref(), raw.client_secret_file.as_ref(), &key("client_secret"), &key("client_secret_file"))?
            .ok_or_else(|| self.err(at, &key("client_secret"), "is missing: the machine identity's client secret (`client_secret` or `client_secret_file`)"))?;
        let project = self.required(raw.project.as_ref(), at, &key("project"), "the project id")?;
        let mut conn =
            InfisicalConnection::new(&url, &client_id, client_secret.expose()).map_err(|e| {
                self.err(
                    &raw.url.as_ref().map(|t| t.referenced).unwrap_or(*at),
                    &key("url"),
                    e.to_string(),
                )
            })?;
        if let Some(t) = &raw.api {
            conn = conn.api(match self.text(t, &key("api"))?.as_str() {
                "v4" => InfisicalApi::V4,
                "v3" => InfisicalApi::V3,
                other => {
                    return Err(self.err(
                        &t.referenced,
                        &key("api"),
                        format!("unknown API `{other}`: expected v4 or v3"),
                    ))
                }
            });
        }
        let settings = InfisicalSettings {
            url,
            client_id,
            client_secret,
            project,
            environments: self.list(raw.environments.as_ref(), &key("environments"))?,
            conn,
        };
        sources::infisical(name, &settings)
            .map_err(|e| self.err(at, &format!("components.{name}"), e.to_string()))?;
        Ok(settings)
    }

    fn helm(&self, name: &str, at: &Location, raw: RawHelm) -> Result<HelmSettings> {
        let key = |k: &str| format!("components.{name}.{k}");
        Ok(HelmSettings {
            namespace: self.required(
                raw.namespace.as_ref(),
                at,
                &key("namespace"),
                "the namespace of the releases, e.g. stoa-system",
            )?,
            releases: self.list(raw.releases.as_ref(), &key("releases"))?,
        })
    }

    fn crds(&self, name: &str, raw: RawCrds) -> Result<CrdsSettings> {
        let key = |k: &str| format!("components.{name}.{k}");
        let mut groups = self.list(raw.groups.as_ref(), &key("groups"))?;
        if groups.is_empty() {
            groups.push("gostoa.dev".into());
        }
        let layout = match &raw.layout {
            None => "per_kind",
            Some(t) => match self.text(t, &key("layout"))?.as_str() {
                "per_kind" => "per_kind",
                "per_object" => "per_object",
                other => {
                    return Err(self.err(
                        &t.referenced,
                        &key("layout"),
                        format!("unknown layout `{other}`: expected per_kind or per_object"),
                    ))
                }
            },
        };
        Ok(CrdsSettings {
            groups,
            kinds: self.list(raw.kinds.as_ref(), &key("kinds"))?,
            namespaces: self.list(raw.namespaces.as_ref(), &key("namespaces"))?,
            label_selector: self.opt_text(raw.label_selector.as_ref(), &key("label_selector"))?,
            include_crds: raw.include_crds.unwrap_or(true),
            referenced_secrets: raw.referenced_secrets.unwrap_or(false),
            layout,
        })
    }

    fn grafana(&self, name: &str, at: &Location, raw: RawGrafana) -> Result<GrafanaSettings> {
        let key = |k: &str| format!("components.{name}.{k}");
        let url = self.required(
            raw.url.as_ref(),
            at,
            &key("url"),
            "the Grafana server, e.g. https://grafana.example.org",
        )?;
        let token = self.secret(
            raw.token.as_ref(),
            raw.token_file.as_ref(),
            &key("token"),
            &key("token_file"),
        )?;
        let user = self.opt_text(raw.user.as_ref(), &key("user"))?;
        let password = self.secret(
            raw.password.as_ref(),
            raw.password_file.as_ref(),
            &key("password"),
            &key("password_file"),
        )?;
        let (auth_name, auth, secret) = match (token, user, password) {
            (Some(t), None, None) => ("token", GrafanaAuth::Token(t.expose().to_string()), t),
            (None, Some(u), Some(p)) => (
                "basic",
                GrafanaAuth::Basic {
                    user: u,
                    password: p.expose().to_string(),
                },
                p,
            ),
            (None, Some(_), None) => {
                return Err(self.err(
                    at,
                    &key("password"),
                    "is missing: a `user` needs its password (`password` or `password_file`)",
                ))
            }
            _ => return Err(self.err(
                at,
                &format!("components.{name}"),
                "give `token` (a service-account token) or `user` and `password`, one of the two",
            )),
        };
        let user = match &auth {
            GrafanaAuth::Basic { user, .. } => Some(user.clone()),
            _ => None,
        };
        let mut conn = GrafanaConnection::new(&url, auth).map_err(|e| {
            self.err(
                &raw.url
                    .as_ref()
                    .map(|t| t.referenced)
                    .unwrap_or_else(|| *at),
                &key("url"),
                e.to_string(),
            )
        })?;
        let org_id = raw.org_id.as_ref().map(|o| o.value);
        if let Some(org) = org_id {
            conn = conn.org_id(org);
        }
        let settings = GrafanaSettings {
            url,
            auth: auth_name,
            user,
            secret,
            org_id,
            conn,
        };
        sources::grafana(name, &settings)
            .map_err(|e| self.err(at, &format!("components.{name}"), e.to_string()))?;
        Ok(settings)
    }
}
