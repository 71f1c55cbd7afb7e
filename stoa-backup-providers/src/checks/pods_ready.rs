//! [`PodsReady`]: every pod of a namespace is Running with all its containers ready.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, ListParams};
use stoa_backup_core::recovery::{Check, CheckContext, CheckOutcome};
use stoa_backup_core::Result;

use crate::kubernetes::{kube_error, KubeClient};

/// The component recorded on this check's errors.
const COMPONENT: &str = "kubernetes";

/// The namespace checked unless told otherwise (where STOA's control plane runs).
pub const DEFAULT_NAMESPACE: &str = "stoa-system";

/// Pods per list request.
const PAGE: u32 = 500;

/// Lists the pods of a namespace (optionally by label selector) and passes when there is
/// at least one and every one is in phase `Running`, not being deleted, with every
/// container ready: `5/5 pods Running and Ready in stoa-system`. Otherwise it fails naming
/// each pod that is not and why: its phase, the containers not ready with their waiting
/// or termination reason (`CrashLoopBackOff`, `ImagePullBackOff`, `Error`…). No pod at all
/// is a failure (`no pods in stoa-system`): nothing was started, or the selector is wrong.
/// An API server that cannot be reached, or that refuses the list, is an error.
///
/// Completed pods (phase `Succeeded`, e.g. of a Job) count as not Running: select the
/// long-running pods with a label selector where a namespace holds Jobs.
#[derive(Debug, Clone)]
pub struct PodsReady {
    name: String,
    named: bool,
    client: KubeClient,
    namespace: String,
    selector: Option<String>,
}

impl PodsReady {
    /// The check of every pod in [`DEFAULT_NAMESPACE`] (`stoa-system`), through `client`
    /// (from [`connect`](crate::kubernetes::connect) or any `kube::Client`). Named `pods
    /// in <namespace>` (with the selector when one is given) unless
    /// [`named`](Self::named) says otherwise.
    pub fn new(client: kube::Client) -> Self {
        let mut c = PodsReady {
            name: String::new(),
            named: false,
            client: KubeClient(client),
            namespace: DEFAULT_NAMESPACE.to_string(),
            selector: None,
        };
        c.default_name();
        c
    }

    /// Checks the pods of `namespace` instead.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self.default_name();
        self
    }

    /// Checks only the pods matching a label selector (e.g.
    /// `app.kubernetes.io/part-of=stoa-platform`).
    pub fn selector(mut self, selector: impl Into<String>) -> Self {
        self.selector = Some(selector.into()).filter(|s| !s.is_empty());
        self.default_name();
        self
    }

    /// Renames the check (for the report and the journal).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.named = true;
        self
    }

    fn default_name(&mut self) {
        if !self.named {
            self.name = format!("pods in {}", self.where_());
        }
    }

    /// `stoa-system`, or `stoa-system (app=gateway)` with a selector.
    fn where_(&self) -> String {
        match &self.selector {
            Some(s) => format!("{} ({s})", self.namespace),
            None => self.namespace.clone(),
        }
    }

    async fn list(&self) -> Result<Vec<Pod>> {
        let api: Api<Pod> = Api::namespaced((*self.client).clone(), &self.namespace);
        let mut params = ListParams::default().limit(PAGE);
        if let Some(s) = &self.selector {
            params = params.labels(s);
        }
        let what = format!("list pods in {}", self.where_());
        let mut pods = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut p = params.clone();
            if let Some(t) = &token {
                p = p.continue_token(t);
            }
            let page = api.list(&p).await.map_err(|e| {
                kube_error(e, &what)
                    .with_component(COMPONENT)
                    .with_operation(super::operation(&self.name))
            })?;
            pods.extend(page.items);
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(pods),
            }
        }
    }
}

/// Why a pod is not Running and Ready, `None` when it is.
fn not_ready(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    let containers: &[ContainerStatus] = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let mut why = Vec::new();
    if phase != "Running" {
        why.push(format!("phase {phase}"));
    }
    if pod.metadata.deletion_timestamp.is_some() {
        why.push("terminating".to_string());
    }
    let declared = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    if containers.is_empty() && (declared > 0 || phase == "Running") {
        why.push("no container status".to_string());
    }
    for c in containers.iter().filter(|c| !c.ready) {
        let state = c.state.as_ref();
        let reason = state
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
            .map(|r| format!("waiting: {r}"))
            .or_else(|| {
                state.and_then(|s| s.terminated.as_ref()).map(|t| {
                    format!(
                        "terminated: {} (exit code {})",
                        t.reason.as_deref().unwrap_or("no reason"),
                        t.exit_code
                    )
                })
            });
        let restarts = if c.restart_count > 0 {
            format!(", {} restarts", c.restart_count)
        } else {
            String::new()
        };
        why.push(match reason {
            Some(r) => format!("container {} not ready ({r}{restarts})", c.name),
            None => format!("container {} not ready{restarts}", c.name),
        });
    }
    (!why.is_empty()).then(|| why.join(", "))
}

#[async_trait]
impl Check for PodsReady {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, _ctx: &CheckContext) -> Result<CheckOutcome> {
        let mut pods = self.list().await?;
        if pods.is_empty() {
            return Ok(CheckOutcome::failed(format!(
                "no pods in {}",
                self.where_()
            )));
        }
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let total = pods.len();
        let bad: Vec<String> = pods
            .iter()
            .filter_map(|p| {
                not_ready(p).map(|why| {
                    format!(
                        "{}: {why}",
                        p.metadata.name.as_deref().unwrap_or("(unnamed)")
                    )
                })
            })
            .collect();
        if bad.is_empty() {
            return Ok(CheckOutcome::passed(format!(
                "{total}/{total} pods Running and Ready in {}",
                self.where_()
            )));
        }
        Ok(CheckOutcome::failed(format!(
            "{}/{total} pods not Running and Ready in {}: {}",
            bad.len(),
            self.where_(),
            bad.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_running_pod_with_ready_containers_is_ready() {
        let p = pod(json!({
            "metadata": {"name": "api-0"},
            "spec": {"containers": [{"name": "api"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "api", "ready": true, "restartCount": 0, "image": "i", "imageID": ""}]}
        }));
        assert_eq!(not_ready(&p), None);
    }

    #[test]
    fn reasons_name_the_phase_and_the_containers() {
        let p = pod(json!({
            "metadata": {"name": "gw-1"},
            "spec": {"containers": [{"name": "gw"}, {"name": "side"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "gw", "ready": false, "restartCount": 4, "image": "i", "imageID": "",
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
                {"name": "side", "ready": true, "restartCount": 0, "image": "i", "imageID": ""}]}
        }));
        assert_eq!(
            not_ready(&p).unwrap(),
            "container gw not ready (waiting: CrashLoopBackOff, 4 restarts)"
        );
        let p = pod(json!({
            "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending"}
        }));
        assert_eq!(not_ready(&p).unwrap(), "phase Pending, no container status");
        let p = pod(json!({"metadata": {"name": "y"}}));
        assert_eq!(not_ready(&p).unwrap(), "phase Unknown");
    }
}
