//! The order of a restore and what can be validated when: namespaces first, then CRDs (and,
//! when applying, the wait until each is Established), then the objects kind by kind. In a
//! plan, an object whose CRD is not installed or Established yet, or whose namespace does
//! not exist yet, cannot be checked by the server: it is reported as such, and no request
//! is made for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use stoa_backup_core::error::{Error, ErrorKind, Result};
use stoa_backup_core::restore::{RestoreContext, RestoreReport};

use super::super::crs::crd_resource;
use super::super::object_name;
use super::super::strip::strip_object;
use super::apply::{key_of, BackupKeys};
use super::cluster::{is_established, split_api_version, Resolved};
use super::ledger::{Ledger, Rejection};
use super::CustomResourcesRestorer;

/// Where a CRD of the backup stands in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrdState {
    /// Plan: the target does not have it.
    NotInstalled,
    /// Plan: the target has it, not Established.
    NotEstablished,
    /// Established in the target (plan), or applied (then waited for).
    Ready,
    /// Rejected, or not attempted.
    Failed,
}

/// Where a kind of the backup stands in the target.
#[derive(Debug, Clone)]
enum KindState {
    Served(Resolved),
    /// Plan: its CRD is not there yet; why.
    Pending(String),
    /// Its CRD was rejected.
    CrdFailed(String),
    /// Nothing serves it.
    NotServed,
}

/// A CRD of the backup: its name and whether its kind is namespaced.
struct CrdInfo {
    name: String,
    namespaced: bool,
}

fn namespace_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Namespace"), "namespaces")
}

fn is_namespace(d: &Value) -> bool {
    d["kind"] == "Namespace" && d["apiVersion"] == "v1"
}

fn is_crd(d: &Value) -> bool {
    d["kind"] == "CustomResourceDefinition" && d["apiVersion"] == "apiextensions.k8s.io/v1"
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}

fn meta<'a>(v: &'a Value, field: &str) -> &'a str {
    v["metadata"][field].as_str().unwrap_or_default()
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl CustomResourcesRestorer {
    /// Restores (or, in a dry-run context, plans) already-read documents in order.
    pub(super) async fn restore_documents(
        &self,
        ctx: &RestoreContext<'_>,
        mut docs: Vec<Value>,
    ) -> Result<RestoreReport> {
        let options = ctx.options();
        for d in &mut docs {
            if meta(d, "name").is_empty() || !d["kind"].is_string() || !d["apiVersion"].is_string()
            {
                // Never print the document: it may be a Secret.
                return Err(Error::integrity(format!(
                    "a document lacks apiVersion, kind or metadata.name (apiVersion {}, kind {})",
                    truncate(d["apiVersion"].as_str().unwrap_or("none"), 100),
                    truncate(d["kind"].as_str().unwrap_or("none"), 100),
                )));
            }
            strip_object(d, &self.strip);
        }
        let in_backup: BackupKeys = docs.iter().map(key_of).collect();
        let (namespaces, rest): (Vec<Value>, Vec<Value>) = docs.into_iter().partition(is_namespace);
        let (mut crds, mut objects): (Vec<Value>, Vec<Value>) = rest.into_iter().partition(is_crd);
        crds.sort_by(|a, b| meta(a, "name").cmp(meta(b, "name")));
        objects.sort_by(|a, b| {
            let key = |v: &Value| {
                (
                    self.kind_rank(str_of(v, "kind")),
                    meta(v, "namespace").to_string(),
                    meta(v, "name").to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        let crd_index: HashMap<(String, String), CrdInfo> = crds
            .iter()
            .map(|c| {
                let spec = &c["spec"];
                (
                    (
                        str_of(spec, "group").to_string(),
                        str_of(&spec["names"], "kind").to_string(),
                    ),
                    CrdInfo {
                        name: meta(c, "name").to_string(),
                        namespaced: spec["scope"] != "Cluster",
                    },
                )
            })
            .collect();

        let mut ledger = Ledger::new(options.dry_run, self.on_failure);

        // 1. The namespaces the objects live in: those backed up (labels, annotations), and
        // bare ones for what an object needs that the backup lacks.
        let mut needed = BTreeSet::new();
        for o in &objects {
            let (group, _) = split_api_version(str_of(o, "apiVersion"));
            let cluster_scoped = crd_index
                .get(&(group.to_string(), str_of(o, "kind").to_string()))
                .is_some_and(|c| !c.namespaced);
            if !meta(o, "namespace").is_empty() && !cluster_scoped {
                needed.insert(meta(o, "namespace").to_string());
            }
        }
        let mut ns_docs: Vec<(Value, bool)> = namespaces.into_iter().map(|n| (n, true)).collect();
        for ns in &needed {
            if !ns_docs.iter().any(|(d, _)| meta(d, "name") == ns) {
                ns_docs.push((
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    false,
                ));
            }
        }
        ns_docs.sort_by(|a, b| meta(&a.0, "name").cmp(meta(&b.0, "name")));
        let ns_api: Api<DynamicObject> =
            Api::all_with(self.client.0.clone(), &namespace_resource());
        let mut ns_ready: BTreeMap<String, bool> = BTreeMap::new();
        for (doc, backed_up) in &ns_docs {
            ctx.check_cancelled().map_err(|e| ledger.fatal(e))?;
            let name = meta(doc, "name").to_string();
            if ledger.stopped() {
                ledger.not_attempted(doc);
                continue;
            }
            if !backed_up {
                // Only needed: created when missing, an existing one left as it is.
                match ns_api.get_opt(&name).await {
                    Ok(Some(_)) => {
                        ns_ready.insert(name, true);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let r = super::apply::rejection(e, &format!("get Namespace {name}"))
                            .map_err(|e| ledger.fatal(e))?;
                        ledger.rejected(doc, None, r);
                        continue;
                    }
                }
            }
            let accepted = self
                .apply_object(&ns_api, doc, options, &mut ledger)
                .await?;
            // In a plan, a namespace to be created does not exist yet.
            let ready = accepted.is_some_and(|a| a.live.is_some() || !options.dry_run);
            ns_ready.insert(name, ready);
        }

        // 2. The CRDs, then (when applying) the wait until each is Established.
        let crd_api: Api<DynamicObject> = Api::all_with(self.client.0.clone(), &crd_resource());
        let mut crd_state: BTreeMap<String, CrdState> = BTreeMap::new();
        for crd in &crds {
            ctx.check_cancelled().map_err(|e| ledger.fatal(e))?;
            let name = meta(crd, "name").to_string();
            if ledger.stopped() {
                ledger.not_attempted(crd);
                crd_state.insert(name, CrdState::Failed);
                continue;
            }
            let state = match self
                .apply_object(&crd_api, crd, options, &mut ledger)
                .await?
            {
                None => CrdState::Failed,
                Some(_) if !options.dry_run => CrdState::Ready,
                Some(a) => match &a.live {
                    None => CrdState::NotInstalled,
                    Some(live) if is_established(&live.data) => CrdState::Ready,
                    Some(_) => CrdState::NotEstablished,
                },
            };
            crd_state.insert(name, state);
        }
        if !options.dry_run && !ledger.stopped() {
            for (name, state) in &crd_state {
                if *state == CrdState::Ready {
                    ctx.check_cancelled().map_err(|e| ledger.fatal(e))?;
                    self.wait_established(name)
                        .await
                        .map_err(|e| ledger.fatal(e))?;
                }
            }
        }

        // 3. The objects, kind by kind.
        let mut kinds: HashMap<(String, String), KindState> = HashMap::new();
        for o in &objects {
            ctx.check_cancelled().map_err(|e| ledger.fatal(e))?;
            if ledger.stopped() {
                ledger.not_attempted(o);
                continue;
            }
            let key = (
                str_of(o, "apiVersion").to_string(),
                str_of(o, "kind").to_string(),
            );
            if !kinds.contains_key(&key) {
                let state = self
                    .kind_state(&key.0, &key.1, &crd_index, &crd_state, options.dry_run)
                    .await
                    .map_err(|e| ledger.fatal(e))?;
                kinds.insert(key.clone(), state);
            }
            let ns = Some(meta(o, "namespace")).filter(|n| !n.is_empty());
            let ns_missing = |namespaced: bool| {
                ns.filter(|n| namespaced && !ns_ready.get(*n).copied().unwrap_or(false))
            };
            match &kinds[&key] {
                KindState::Pending(why) => {
                    let namespaced = crd_index
                        .get(&(split_api_version(&key.0).0.to_string(), key.1.clone()))
                        .is_none_or(|c| c.namespaced);
                    let reason = match ns_missing(namespaced) {
                        Some(n) => format!("{why}, namespace {n} does not exist"),
                        None => why.clone(),
                    };
                    ledger.cannot_validate(o, format!("cannot validate yet: {reason}"));
                }
                KindState::CrdFailed(crd) => {
                    let e = Error::new(
                        ErrorKind::Restore,
                        format!(
                            "{} was not applied: its CustomResourceDefinition {crd} failed",
                            object_name(o)
                        ),
                    );
                    ledger.rejected(o, None, Rejection::own(e));
                }
                KindState::NotServed => {
                    let (group, _) = split_api_version(&key.0);
                    let e = Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "the cluster serves no {} {} (missing CRD group {group})",
                            key.0, key.1
                        ),
                    )
                    .with_hint(format!(
                        "restore the CustomResourceDefinitions first (the crds artifact), or install the CRD of {} in {group}",
                        key.1
                    ));
                    ledger.rejected(o, None, Rejection::own(e));
                }
                KindState::Served(r) => {
                    let r = r.clone();
                    if r.namespaced && ns.is_none() {
                        let e = Error::integrity(format!("{} has no namespace", object_name(o)));
                        ledger.rejected(o, None, Rejection::own(e));
                        continue;
                    }
                    if let Some(n) = ns_missing(r.namespaced) {
                        if options.dry_run {
                            ledger.cannot_validate(
                                o,
                                format!("cannot validate yet: namespace {n} does not exist"),
                            );
                        } else {
                            let e = Error::new(
                                ErrorKind::Restore,
                                format!(
                                    "{} was not applied: its namespace {n} was not restored",
                                    object_name(o)
                                ),
                            );
                            ledger.rejected(o, None, Rejection::own(e));
                        }
                        continue;
                    }
                    let api: Api<DynamicObject> = match (r.namespaced, ns) {
                        (true, Some(ns)) => Api::namespaced_with(self.client.0.clone(), ns, &r.ar),
                        _ => Api::all_with(self.client.0.clone(), &r.ar),
                    };
                    let mut body = o.clone();
                    if !r.namespaced {
                        if let Some(m) = body["metadata"].as_object_mut() {
                            m.remove("namespace");
                        }
                    }
                    self.fix_owner_references(&mut body, ns, options, &in_backup, &mut ledger)
                        .await?;
                    self.apply_object(&api, &body, options, &mut ledger).await?;
                }
            }
        }
        ledger.finish()
    }

    /// Where a kind stands in the target: served (resolved by discovery), or, when its CRD
    /// is in the backup, as far as that CRD got.
    async fn kind_state(
        &self,
        api_version: &str,
        kind: &str,
        crd_index: &HashMap<(String, String), CrdInfo>,
        crd_state: &BTreeMap<String, CrdState>,
        dry_run: bool,
    ) -> Result<KindState> {
        let (group, _) = split_api_version(api_version);
        let Some(crd) = crd_index.get(&(group.to_string(), kind.to_string())) else {
            return Ok(match self.resolve(api_version, kind, false).await? {
                Some(r) => KindState::Served(r),
                None => KindState::NotServed,
            });
        };
        let name = &crd.name;
        Ok(match crd_state.get(name).copied() {
            Some(CrdState::NotInstalled) => KindState::Pending(format!("CRD {name} not installed")),
            Some(CrdState::NotEstablished) => {
                KindState::Pending(format!("CRD {name} not Established"))
            }
            Some(CrdState::Failed) | None => KindState::CrdFailed(name.clone()),
            Some(CrdState::Ready) => match self.resolve(api_version, kind, !dry_run).await? {
                Some(r) => KindState::Served(r),
                // The backup's CRD adds the version: the apply installs it first.
                None if dry_run => {
                    KindState::Pending(format!("CRD {name} does not serve {api_version} yet"))
                }
                None => KindState::NotServed,
            },
        })
    }
}
