//! Kubernetes through kube-rs (feature `kubernetes`): STOA's custom resources and their
//! definitions, Helm values, and exec into pods.
//!
//! - [`CustomResourcesSource`] (component `crds` by default) backs up every object of the
//!   configured API groups (default `gostoa.dev`), the CustomResourceDefinitions of those
//!   groups and the namespaces the objects live in (labels and annotations), stripped of
//!   server-populated fields ([`strip`]), as deterministic YAML: one artifact per kind, or
//!   one file per object ([`Layout::PerObject`], for the Git sink). Optionally the Secrets
//!   the resources reference (sensitive, so the pipeline encrypts them) and objects of other
//!   kinds by label selector (the ConfigMaps the Tools use).
//! - [`CustomResourcesRestorer`] applies them back through the
//!   [`Restore`](stoa_backup_core::Restore) driver: namespaces first, then definitions
//!   (waiting until each is `Established`), then resources in dependency order (referenced
//!   Secrets and ConfigMaps, then GatewayInstance → Tool → ToolSet → Skill → GatewayBinding
//!   by default), with server-side apply. Its plan is the API server's dry run of every apply
//!   (`dryRun=All`): each object is validated once its CRD is Established, and what cannot
//!   be validated yet says so; every object the server rejects is reported. The apply
//!   reports what was applied, what failed and why, and stops at the first rejected object
//!   or goes on ([`FailurePolicy`]); the per-object detail is in
//!   [`CustomResourcesRestoreFacts`].
//! - [`HelmValuesSource`] (component `helm`) reads Helm 3 release storage and backs up the
//!   user-supplied values of the latest deployed revision; [`HelmValuesRestorer`] writes
//!   them back to a file and prints the `helm upgrade --install` command.
//! - [`HelmValuesSource::change_probe`] and [`CustomResourcesSource::change_probe`] give
//!   [`ChangeProbe`](stoa_backup_core::ChangeProbe)s for the scheduler's on-change trigger:
//!   a digest of the watched objects' own resourceVersions from metadata-only lists.
//! - [`KubeLeaseLock`] is the run lock as `coordination.k8s.io/v1` Leases
//!   ([`PipelineBuilder::lock`](stoa_backup_core::PipelineBuilder::lock)), for replicas and
//!   CronJob pods of one cluster.
//! - [`PodExec`] streams a command's stdout out of a pod over the exec websocket, with the
//!   exit status from the status channel (for `pg_dump` / `kc.sh` exec modes).
//!
//! Clients come from [`connect`] (in-cluster config or kubeconfig, rustls) or any
//! `kube::Client` the caller builds. The library enables no `k8s-openapi` version
//! feature: binaries pick one (e.g. `k8s-openapi = { version = "0.29", features =
//! ["latest"] }`).

mod crs;
mod exec;
pub mod facts;
mod helm;
mod lease;
mod probe;
mod related;
mod restore;
pub mod strip;

use std::fmt;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use stoa_backup_core::error::{Error, ErrorKind};

pub use crs::{CustomResourcesSource, CustomResourcesSourceBuilder, Layout};
pub use exec::{ExecOutcome, ExecStream, PodExec};
pub use facts::{
    CustomResourceArtifact, CustomResourceFacts, CustomResourcesRestoreFacts, FieldCause,
    HelmValuesFacts, ObjectAction, ObjectOutcome, ObjectRestore,
};
pub use helm::{
    decode_release, HelmDriver, HelmRelease, HelmValuesRestorer, HelmValuesSource,
    HelmValuesSourceBuilder,
};
pub use lease::KubeLeaseLock;
pub use probe::{CustomResourcesChangeProbe, HelmChangeProbe};
pub use restore::{
    ConflictPolicy, CustomResourcesRestorer, CustomResourcesRestorerBuilder, FailurePolicy,
    DEFAULT_ORDER,
};
pub use strip::{strip_object, StripRules};

/// A `kube::Client` that can sit in `Debug` structs.
#[derive(Clone)]
pub(crate) struct KubeClient(pub(crate) kube::Client);

impl fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("kube::Client")
    }
}

impl std::ops::Deref for KubeClient {
    type Target = kube::Client;
    fn deref(&self) -> &kube::Client {
        &self.0
    }
}

/// Content type of the YAML artifacts.
pub const YAML_CONTENT_TYPE: &str = "application/yaml";

/// The field manager used for server-side apply unless configured otherwise.
pub const DEFAULT_FIELD_MANAGER: &str = "stoa-backup";

/// A client from the environment, as `kubectl` finds one: the kubeconfig named by
/// `$KUBECONFIG` (or `~/.kube/config`) with its current context, otherwise the in-cluster
/// service account when running in a pod (kube's `Client::try_default`). The sources and
/// restorers take it as their required argument: `CustomResourcesSource::builder(connect().await?)`.
#[doc(alias = "from_env")]
pub async fn connect() -> stoa_backup_core::Result<kube::Client> {
    kube::Client::try_default().await.map_err(|e| {
        Error::config(format!("cannot build a Kubernetes client: {e}"))
            .with_operation("connect")
            .with_hint(
                "run in a pod with a service account, or point KUBECONFIG at a kubeconfig file",
            )
    })
}

/// Converts a kube error into the library's error, naming `what` was being done to which
/// object (e.g. `list Tool (tools.gostoa.dev)` or `apply Tool tenant-acme/weather`). An API
/// error keeps its HTTP status ([`Error::http_status`]).
pub(crate) fn kube_error(err: kube::Error, what: &str) -> Error {
    match err {
        kube::Error::Api(status) => {
            let code = status.code;
            let reason = status.reason.clone();
            let msg = format!("{what}: {} ({code} {reason})", status.message);
            let (kind, hint) = match code {
                401 => (
                    ErrorKind::Unauthenticated,
                    Some("the API server rejected the credentials: check the kubeconfig or the service account token (it may have expired)".to_string()),
                ),
                403 => (
                    ErrorKind::PermissionDenied,
                    Some("grant the service account the RBAC verbs it needs (get, list for backup; get, create, patch for restore) on these resources".to_string()),
                ),
                404 => (ErrorKind::NotFound, None),
                409 => (ErrorKind::Conflict, None),
                410 => (ErrorKind::Source, Some("the list changed too much while paging; re-run".to_string())),
                400 | 422 | 415 => (ErrorKind::Restore, None),
                429 | 500..=599 => (ErrorKind::Unavailable, None),
                _ => (ErrorKind::Source, None),
            };
            let mut e = Error::new(kind, msg).with_http_status(code);
            if let Some(h) = hint {
                e = e.with_hint(h);
            }
            if matches!(code, 429 | 500..=599) {
                e = e.with_retryable(true);
            }
            e
        }
        other => {
            let kind = match &other {
                kube::Error::HyperError(_) | kube::Error::Service(_) => ErrorKind::Unavailable,
                kube::Error::Auth(_) => ErrorKind::Unauthenticated,
                kube::Error::SerdeError(_) => ErrorKind::Source,
                _ => ErrorKind::Source,
            };
            let mut e = Error::new(kind, format!("{what}: {other}"));
            if kind == ErrorKind::Unavailable {
                e = e.with_hint(
                    "the API server is unreachable: check the cluster URL and the network",
                );
            }
            e
        }
    }
}

/// The status code of an API error, if `err` is one.
pub(crate) fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Serializes a JSON value with object keys sorted, whatever map type serde_json uses.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut map = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    map.serialize_entry(k, &Sorted(&m[k]))?;
                }
                map.end()
            }
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&Sorted(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// One YAML document with sorted keys, ending in a newline.
pub(crate) fn to_yaml(value: &Value) -> Result<String, Error> {
    let mut s = serde_saphyr::to_string(&Sorted(value))
        .map_err(|e| Error::internal(format!("cannot render YAML: {e}")))?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// Several documents, each introduced by `---`.
pub(crate) fn to_yaml_documents(values: &[Value]) -> Result<String, Error> {
    let mut out = String::new();
    for v in values {
        out.push_str("---\n");
        out.push_str(&to_yaml(v)?);
    }
    Ok(out)
}

/// Parses a (multi-document) YAML text; empty documents are skipped.
pub(crate) fn parse_yaml_documents(text: &str) -> Result<Vec<Value>, Error> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| Error::integrity(format!("the artifact is not valid YAML: {e}")))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// `Kind namespace/name` (or `Kind name` when cluster-scoped): how errors name objects.
pub(crate) struct ObjectName<'a> {
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl fmt::Display for ObjectName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace {
            Some(ns) if !ns.is_empty() => write!(f, "{} {ns}/{}", self.kind, self.name),
            _ => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

pub(crate) fn object_name(v: &Value) -> ObjectName<'_> {
    ObjectName {
        kind: v["kind"].as_str().unwrap_or("object"),
        namespace: v["metadata"]["namespace"].as_str(),
        name: v["metadata"]["name"].as_str().unwrap_or("<unnamed>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_is_sorted_and_round_trips() {
        let v = json!({"spec": {"z": 1, "a": "100/min", "b": "true", "n": null, "e": {}, "l": [],
                                "m": "line1\nline2\n", "f": 1.5, "q": "2.0.0", "y": "yes"},
                       "apiVersion": "gostoa.dev/v1alpha1"});
        let y = to_yaml(&v).unwrap();
        assert!(
            y.find("apiVersion").unwrap() < y.find("spec").unwrap(),
            "{y}"
        );
        assert!(y.find("  a:").unwrap() < y.find("  z:").unwrap(), "{y}");
        let back =
            parse_yaml_documents(&to_yaml_documents(&[v.clone(), v.clone()]).unwrap()).unwrap();
        assert_eq!(back, vec![v.clone(), v]);
    }

    #[test]
    fn names_objects() {
        let v = json!({"kind": "Tool", "metadata": {"name": "w", "namespace": "t"}});
        assert_eq!(object_name(&v).to_string(), "Tool t/w");
        let v =
            json!({"kind": "CustomResourceDefinition", "metadata": {"name": "tools.gostoa.dev"}});
        assert_eq!(
            object_name(&v).to_string(),
            "CustomResourceDefinition tools.gostoa.dev"
        );
    }
}
