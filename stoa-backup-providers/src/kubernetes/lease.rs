//! [`KubeLeaseLock`]: the run lock as `coordination.k8s.io/v1` Leases, for services and
//! CronJobs that run in a cluster (replicas of one Deployment, pods of one CronJob).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease as KubeLease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use stoa_backup_core::error::{Error, Result};
use stoa_backup_core::lock::{lost_error, HeldLease, Lease, LeaseOwner, LockScope, RunLock};
use stoa_backup_core::manifest::RunId;

use super::{api_code, kube_error, KubeClient};

/// Annotation naming the component a Lease guards.
pub const COMPONENT_ANNOTATION: &str = "backup.gostoa.dev/component";
/// Annotation naming the storage target a Lease guards.
pub const TARGET_ANNOTATION: &str = "backup.gostoa.dev/target";
/// Annotation naming the run the holder makes.
pub const RUN_ANNOTATION: &str = "backup.gostoa.dev/run-id";
/// Annotation naming the last holder of a released Lease (its `holderIdentity` is cleared).
pub const RELEASED_BY_ANNOTATION: &str = "backup.gostoa.dev/released-by";

/// How often `acquire` reads again after losing a race (409) for a Lease.
const ACQUIRE_ATTEMPTS: usize = 3;

/// A [`RunLock`] keeping each lease as a `coordination.k8s.io/v1` Lease in one namespace:
/// `holderIdentity`, `acquireTime`, `renewTime`, `leaseDurationSeconds` and
/// `leaseTransitions` as leader election uses them, the component, target and run as
/// annotations. A free lock (no Lease) is taken by creating it (409 `AlreadyExists`: another
/// owner was first); renewing, taking over an expired Lease and releasing replace it with
/// the `resourceVersion` read (409 `Conflict`: someone else wrote since). A released Lease
/// keeps its record with `holderIdentity` cleared, as client-go's leader election leaves
/// one.
///
/// The Lease of a scope is named `<prefix>-<component>-<digest of the target>` (prefix
/// `stoa-backup` by default, at most 63 characters). The service account needs `get`,
/// `create` and `update` on `leases` in the namespace.
#[derive(Clone)]
pub struct KubeLeaseLock {
    client: KubeClient,
    namespace: String,
    prefix: String,
}

impl fmt::Debug for KubeLeaseLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeLeaseLock")
            .field("namespace", &self.namespace)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl KubeLeaseLock {
    /// Leases in `namespace` (the service's own, typically).
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        KubeLeaseLock {
            client: KubeClient(client),
            namespace: namespace.into(),
            prefix: "stoa-backup".into(),
        }
    }

    /// Names Leases `<prefix>-…` instead of `stoa-backup-…` (a lowercase DNS label).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The name of the Lease of `scope`: `<prefix>-<component>-<10 hex digits of the
    /// SHA-256 of the target>`, lowercased, other characters as `-`, at most 63.
    pub fn lease_name(&self, scope: &LockScope) -> String {
        lease_name(&self.prefix, scope)
    }

    fn api(&self) -> Api<KubeLease> {
        Api::namespaced(self.client.0.clone(), &self.namespace)
    }

    fn what(&self, op: &str, name: &str) -> String {
        format!("{op} Lease {}/{name}", self.namespace)
    }

    async fn get(&self, name: &str) -> Result<Option<KubeLease>> {
        self.api()
            .get_opt(name)
            .await
            .map_err(|e| kube_error(e, &self.what("get", name)))
    }

    /// Writes `record` (a create without `resource_version`, a replace with it); `None` on
    /// a 409: someone else wrote first.
    async fn write(
        &self,
        name: &str,
        record: &Lease,
        resource_version: Option<&str>,
    ) -> Result<Option<HeldLease>> {
        let object = to_kube(name, &self.namespace, record, resource_version);
        let pp = PostParams::default();
        let written = match resource_version {
            None => self.api().create(&pp, &object).await,
            Some(_) => self.api().replace(name, &pp, &object).await,
        };
        match written {
            Ok(obj) => {
                let rv = obj.metadata.resource_version.clone().unwrap_or_default();
                Ok(Some(HeldLease::new(record.clone(), rv)))
            }
            Err(e) if api_code(&e) == Some(409) => Ok(None),
            Err(e) => {
                let op = if resource_version.is_some() {
                    "replace"
                } else {
                    "create"
                };
                Err(kube_error(e, &self.what(op, name)))
            }
        }
    }

    fn context(&self, e: Error, scope: &LockScope, operation: &str) -> Error {
        e.or_component(scope.component().to_string())
            .or_operation(operation.to_string())
            .with_context("lock", self.describe())
            .or_hint(format!(
                "check that the service account may get, create and update leases in namespace {}",
                self.namespace
            ))
    }
}

#[async_trait]
impl RunLock for KubeLeaseLock {
    fn describe(&self) -> String {
        format!("Kubernetes Leases in namespace {}", self.namespace)
    }

    async fn acquire(
        &self,
        scope: &LockScope,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<HeldLease> {
        let name = self.lease_name(scope);
        let attempt = async {
            for _ in 0..ACQUIRE_ATTEMPTS {
                let now = micros(Utc::now());
                let current = self.get(&name).await?;
                let lease = current.as_ref().map(|k| from_kube(k, scope));
                let record = Lease::claim(lease.as_ref(), scope, owner, now, ttl)?;
                let rv = current.and_then(|k| k.metadata.resource_version);
                if let Some(held) = self.write(&name, &record, rv.as_deref()).await? {
                    return Ok(held);
                }
            }
            match self.get(&name).await?.map(|k| from_kube(&k, scope)) {
                Some(lease) if lease.is_held_at(Utc::now()) => Err(lease.held_error(Utc::now())),
                _ => Err(Error::new(
                    stoa_backup_core::ErrorKind::Conflict,
                    format!("the Lease {name} is contended: {ACQUIRE_ATTEMPTS} attempts to take it lost to other writers"),
                )
                .with_operation("acquire run lock")
                .with_hint("several runs of this component start at once: run again")),
            }
        };
        attempt
            .await
            .map_err(|e| self.context(e.with_artifact(name.clone()), scope, "acquire run lock"))
    }

    async fn renew(&self, held: &HeldLease, ttl: Duration) -> Result<HeldLease> {
        let scope = held.scope();
        let name = self.lease_name(&scope);
        let record = held.lease().renewed(micros(Utc::now()), ttl);
        let renewed = async {
            match self.write(&name, &record, Some(held.token())).await? {
                Some(h) => Ok(h),
                None => {
                    let now = self.get(&name).await.ok().flatten();
                    let now = now.map(|k| from_kube(&k, &scope));
                    Err(lost_error(&scope, held.lease(), now.as_ref()))
                }
            }
        };
        renewed.await.map_err(|e| {
            // A Lease deleted under us is lost too.
            let e = if e.http_status() == Some(404) {
                lost_error(&scope, held.lease(), None)
            } else {
                e
            };
            self.context(e.with_artifact(name.clone()), &scope, "renew run lock")
        })
    }

    async fn release(&self, held: &HeldLease) -> Result<()> {
        let scope = held.scope();
        let name = self.lease_name(&scope);
        let record = held.lease().released(micros(Utc::now()));
        match self.write(&name, &record, Some(held.token())).await {
            Ok(Some(_)) => Ok(()),
            // Someone else's now, or gone: nothing to give up.
            Ok(None) => Ok(()),
            Err(e) if e.http_status() == Some(404) => Ok(()),
            Err(e) => Err(self.context(e.with_artifact(name), &scope, "release run lock")),
        }
    }

    async fn current(&self, scope: &LockScope) -> Result<Option<Lease>> {
        let name = self.lease_name(scope);
        Ok(self
            .get(&name)
            .await
            .map_err(|e| self.context(e.with_artifact(name.clone()), scope, "read run lock"))?
            .map(|k| from_kube(&k, scope)))
    }
}

fn lease_name(prefix: &str, scope: &LockScope) -> String {
    let digest = Sha256::digest(scope.target().as_bytes());
    let hash: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
    let clean = |s: &str, max: usize| -> String {
        let mut mapped: String = s
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9') => c,
                _ => '-',
            })
            .collect();
        mapped.truncate(max);
        mapped.trim_matches('-').to_string()
    };
    let prefix = clean(prefix, 20);
    let component = clean(scope.component(), 63 - hash.len() - 2 - prefix.len());
    format!("{prefix}-{component}-{hash}")
}

/// `t` at microsecond precision, as Lease times are stored.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

fn micro_time(t: DateTime<Utc>) -> Option<MicroTime> {
    k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros())
        .ok()
        .map(MicroTime)
}

fn chrono_time(t: &MicroTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(t.0.as_microsecond())
}

/// The Lease object of `record` (`resource_version`: the one read, for a replace).
fn to_kube(
    name: &str,
    namespace: &str,
    record: &Lease,
    resource_version: Option<&str>,
) -> KubeLease {
    let mut annotations = BTreeMap::from([
        (COMPONENT_ANNOTATION.to_string(), record.component.clone()),
        (TARGET_ANNOTATION.to_string(), record.target.clone()),
    ]);
    if let Some(run) = &record.run_id {
        annotations.insert(RUN_ANNOTATION.to_string(), run.to_string());
    }
    let released = record.released_at.is_some();
    if released {
        annotations.insert(RELEASED_BY_ANNOTATION.to_string(), record.holder.clone());
    }
    let duration = (record.expires_at - record.renewed_at).num_seconds().max(1);
    KubeLease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            resource_version: resource_version.map(str::to_string),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "stoa-backup".to_string(),
            )])),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: (!released).then(|| record.holder.clone()),
            lease_duration_seconds: Some(i32::try_from(duration).unwrap_or(i32::MAX)),
            acquire_time: micro_time(record.acquired_at),
            renew_time: micro_time(record.released_at.unwrap_or(record.renewed_at)),
            lease_transitions: Some(i32::try_from(record.transitions).unwrap_or(i32::MAX)),
            ..LeaseSpec::default()
        }),
    }
}

/// The lease a Lease object records (one written by another tool reads as well as its
/// fields allow: no renew time or duration is an expired lease).
fn from_kube(k: &KubeLease, scope: &LockScope) -> Lease {
    let spec = k.spec.clone().unwrap_or_default();
    let annotations = k.metadata.annotations.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let released = holder.is_none();
    let holder = holder
        .or_else(|| annotations.get(RELEASED_BY_ANNOTATION).cloned())
        .unwrap_or_default();
    let mut owner = LeaseOwner::named(holder);
    if let Some(run) = annotations
        .get(RUN_ANNOTATION)
        .and_then(|r| RunId::parse(r.as_str()).ok())
    {
        owner = owner.for_run(run);
    }
    let renewed = spec.renew_time.as_ref().and_then(chrono_time);
    let acquired = spec.acquire_time.as_ref().and_then(chrono_time);
    let renewed_at = renewed.or(acquired).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let ttl = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    let component = annotations
        .get(COMPONENT_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| scope.component().to_string());
    let target = annotations
        .get(TARGET_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| scope.target().to_string());
    let transitions = u32::try_from(spec.lease_transitions.unwrap_or(0)).unwrap_or(0);
    let mut lease = Lease::new(
        &LockScope::new(component, target),
        &owner,
        renewed_at,
        ttl,
        transitions,
    );
    lease.acquired_at = acquired.unwrap_or(renewed_at);
    if released {
        lease = lease.released(renewed_at);
    }
    lease
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_dns_labels_per_component_and_target() {
        let scope = LockScope::new("Postgres_Main", "s3://backups/prod");
        let digest = Sha256::digest(b"s3://backups/prod");
        let hash: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            lease_name("stoa-backup", &scope),
            format!("stoa-backup-postgres-main-{hash}")
        );
        let long = lease_name("stoa-backup", &LockScope::new("x".repeat(100), "local:/b"));
        assert!(long.len() <= 63, "{long}");
        assert!(long
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        let staging = LockScope::new("Postgres_Main", "s3://backups/staging");
        assert_ne!(
            lease_name("stoa-backup", &scope),
            lease_name("stoa-backup", &staging)
        );
    }

    #[test]
    fn records_survive_the_round_trip_through_a_lease_object() {
        let scope = LockScope::new("postgres", "s3://backups");
        let owner = LeaseOwner::named("pod-a/1/x")
            .for_run(RunId::parse("20260101T000000Z-abcdef").unwrap());
        let now = micros(Utc::now());
        let lease = Lease::new(&scope, &owner, now, Duration::from_secs(90), 3);
        let k = to_kube("n", "stoa", &lease, Some("41"));
        assert_eq!(k.metadata.resource_version.as_deref(), Some("41"));
        let spec = k.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("pod-a/1/x"));
        assert_eq!(spec.lease_duration_seconds, Some(90));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(from_kube(&k, &scope), lease);
        let released = lease.released(now + chrono::TimeDelta::seconds(5));
        let k = to_kube("n", "stoa", &released, None);
        assert_eq!(k.spec.as_ref().unwrap().holder_identity, None);
        let back = from_kube(&k, &scope);
        assert_eq!(back.holder, "pod-a/1/x");
        assert!(back.released_at.is_some() && !back.is_held_at(now));
    }
}
