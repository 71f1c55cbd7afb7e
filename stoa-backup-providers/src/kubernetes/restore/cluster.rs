//! What the target cluster serves: the API resource of a kind (by discovery of its group
//! version only), and CRDs becoming `Established` (polled).

use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{self, Scope};
use serde_json::Value;
use stoa_backup_core::error::{Error, ErrorKind, Result};

use super::super::crs::crd_resource;
use super::super::{api_code, kube_error};
use super::CustomResourcesRestorer;

/// A kind the target serves.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    pub ar: ApiResource,
    pub namespaced: bool,
}

/// Whether a CRD carries the condition `Established=True`.
pub(super) fn is_established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

/// `(group, version)` of an apiVersion (`v1` is the core group).
pub(super) fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

impl CustomResourcesRestorer {
    /// Resolves apiVersion/kind against the target with `GET /apis/{group}/{version}` (or
    /// `/api/v1`). `None` when the target does not serve it; with `wait`, a kind whose CRD
    /// was just Established gets until the establish timeout to appear (the group version
    /// may 404 briefly after Established).
    pub(super) async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
        wait: bool,
    ) -> Result<Option<Resolved>> {
        let (group, version) = split_api_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let deadline = tokio::time::Instant::now()
            + if wait {
                self.establish_timeout
            } else {
                Duration::ZERO
            };
        loop {
            match discovery::pinned_kind(&self.client, &gvk).await {
                Ok((ar, caps)) => {
                    return Ok(Some(Resolved {
                        ar,
                        namespaced: caps.scope == Scope::Namespaced,
                    }))
                }
                Err(e) => {
                    let missing =
                        api_code(&e) == Some(404) || matches!(e, kube::Error::Discovery(_));
                    if !missing {
                        return Err(kube_error(e, &format!("discover {api_version} {kind}")));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(None);
                    }
                    tokio::time::sleep(self.poll_interval).await;
                }
            }
        }
    }

    /// Polls the CRD until it is Established; fails naming it and its conditions after the
    /// establish timeout.
    pub(super) async fn wait_established(&self, name: &str) -> Result<()> {
        let api: Api<DynamicObject> = Api::all_with(self.client.0.clone(), &crd_resource());
        let deadline = tokio::time::Instant::now() + self.establish_timeout;
        loop {
            let crd = api
                .get(name)
                .await
                .map_err(|e| kube_error(e, &format!("get CustomResourceDefinition {name}")))?;
            let status = &crd.data["status"];
            if is_established(&crd.data) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let seen: Vec<String> = status["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{}={} ({})",
                            c["type"].as_str().unwrap_or("?"),
                            c["status"].as_str().unwrap_or("?"),
                            c["reason"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "CustomResourceDefinition {name} did not become Established within {:?} (conditions: {})",
                        self.establish_timeout,
                        if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
                    ),
                )
                .with_retryable(false)
                .with_hint("check the CRD with `kubectl describe crd`: a name conflict or an invalid schema keeps it from being served; its resources were not restored"));
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }
}
