//! The fake API server's in-memory state: resource types, objects and their server fields,
//! continue tokens. Writes ([`writes`]), CRDs ([`crd`]), field ownership ([`fields`]),
//! selectors ([`select`]), custom-resource schema validation ([`schema`]), the other
//! built-in kinds and their validation ([`builtins`]) and the `Status` error bodies
//! ([`errors`]) live beside it.

mod builtins;
mod crd;
mod errors;
mod fields;
mod schema;
mod select;
mod writes;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

pub(crate) use errors::{ApiError, ApiResult};
pub(crate) use select::{field_selector_matches, Selector};

use crd::{CRD_GROUP, CRD_PLURAL};
use fields::{insert_fields_v1, ownable_leaves, FieldPath};

/// A served resource type (one group/version/plural).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub subresources: Vec<String>,
    /// The CRD that defines this type, if any.
    pub crd: Option<String>,
}

impl ResourceType {
    fn builtin(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        subresources: &[&str],
    ) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            namespaced,
            short_names: Vec::new(),
            subresources: subresources.iter().map(|s| s.to_string()).collect(),
            crd: None,
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `tools.gostoa.dev`, or `secrets` for the core group: how Kubernetes names a
    /// resource in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }

    pub fn has_status_subresource(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }

    /// Whether `status` is server-owned (CRDs) or a subresource (then the main resource
    /// ignores it).
    fn status_is_separate(&self) -> bool {
        self.has_status_subresource()
            || (self.group == "apiextensions.k8s.io" && self.plural == "customresourcedefinitions")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StoredObject {
    pub value: Value,
    /// Leaf field → manager that owns it.
    owners: BTreeMap<FieldPath, String>,
    /// Manager → operation (`Apply` / `Update`).
    managers: BTreeMap<String, String>,
}

/// How a write changed the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    Created,
    Updated,
}

#[derive(Debug, Clone)]
pub(crate) struct PendingCrd {
    /// When the CRD becomes Established; `None`: never.
    pub established_at: Option<Instant>,
}

/// All state of the fake.
#[derive(Debug)]
pub(crate) struct Store {
    rv: u64,
    pub types: Vec<ResourceType>,
    objects: BTreeMap<(String, String), BTreeMap<(String, String), StoredObject>>,
    pending: BTreeMap<String, PendingCrd>,
    pub established_delay: Option<Duration>,
    /// Continue tokens minted before this resourceVersion answer 410 Expired.
    pub min_continue_rv: u64,
    uid_counter: u64,
}

impl Store {
    pub fn new(established_delay: Option<Duration>) -> Self {
        let mut s = Store {
            rv: 1000,
            types: Vec::new(),
            objects: BTreeMap::new(),
            pending: BTreeMap::new(),
            established_delay,
            min_continue_rv: 0,
            uid_counter: 0,
        };
        s.install_builtins();
        s
    }

    fn install_builtins(&mut self) {
        self.types = vec![
            ResourceType::builtin("", "v1", "Namespace", "namespaces", false, &["status"]),
            ResourceType::builtin("", "v1", "Secret", "secrets", true, &[]),
            ResourceType::builtin("", "v1", "ConfigMap", "configmaps", true, &[]),
            ResourceType::builtin("", "v1", "Pod", "pods", true, &["exec", "status"]),
            ResourceType::builtin(
                CRD_GROUP,
                "v1",
                "CustomResourceDefinition",
                CRD_PLURAL,
                false,
                &["status"],
            ),
        ];
        self.types.extend(builtins::types());
    }

    /// Forgets everything (objects, CRDs and their types); built-in types stay.
    pub fn wipe(&mut self) {
        self.objects.clear();
        self.pending.clear();
        self.install_builtins();
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        let r: u64 = rand::random();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (r >> 32) as u32,
            (r >> 16) as u16,
            (r as u16) & 0xfff,
            self.uid_counter & 0xfff,
            self.uid_counter
        )
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub fn find_type_by_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
    }

    /// Served groups (besides the core group) with their versions, preferred first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut by_group: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for t in &self.types {
            if !t.group.is_empty() {
                by_group
                    .entry(t.group.clone())
                    .or_default()
                    .insert(t.version.clone());
            }
        }
        by_group
            .into_iter()
            .map(|(g, vs)| {
                let mut vs: Vec<String> = vs.into_iter().collect();
                vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
                (g, vs)
            })
            .collect()
    }

    pub fn types_of(&self, group: &str, version: &str) -> Vec<ResourceType> {
        self.types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .cloned()
            .collect()
    }

    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .get(&(String::new(), "namespaces".to_string()))
            .is_some_and(|m| m.contains_key(&(String::new(), ns.to_string())))
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .get(&(rt.group.clone(), rt.plural.clone()))
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .map(|o| self.render(rt, o))
    }

    /// Objects of a type (all namespaces when `ns` is None), sorted by namespace/name.
    pub fn list(&self, rt: &ResourceType, ns: Option<&str>) -> Vec<((String, String), Value)> {
        self.objects
            .get(&(rt.group.clone(), rt.plural.clone()))
            .map(|m| {
                m.iter()
                    .filter(|((ons, _), _)| ns.is_none_or(|n| n == ons))
                    .map(|(k, o)| (k.clone(), self.render(rt, o)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The object as the API serves it: apiVersion of the requested version, managedFields.
    fn render(&self, rt: &ResourceType, o: &StoredObject) -> Value {
        let mut v = o.value.clone();
        v["apiVersion"] = json!(rt.api_version());
        v["kind"] = json!(rt.kind);
        if !o.managers.is_empty() {
            let mut entries = Vec::new();
            for (manager, operation) in &o.managers {
                let mut tree = Map::new();
                for (path, owner) in &o.owners {
                    if owner == manager {
                        insert_fields_v1(&mut tree, path);
                    }
                }
                entries.push(json!({
                    "manager": manager,
                    "operation": operation,
                    "apiVersion": rt.api_version(),
                    "time": v["metadata"]["creationTimestamp"],
                    "fieldsType": "FieldsV1",
                    "fieldsV1": Value::Object(tree),
                }));
            }
            v["metadata"]["managedFields"] = Value::Array(entries);
        }
        v
    }

    /// Inserts or replaces an object as a controller would (status kept, server fields
    /// filled, owned by `manager`), bypassing validation. CRDs become Established at once
    /// when `establish` is set.
    pub fn put_raw(
        &mut self,
        rt: &ResourceType,
        mut value: Value,
        manager: &str,
        establish: bool,
    ) -> Value {
        let ns = if rt.namespaced {
            value["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if rt.namespaced {
            value["metadata"]["namespace"] = json!(ns);
        }
        if rt.namespaced && !self.namespace_exists(&ns) {
            let ns_type = self.find_type("", "v1", "namespaces").expect("builtin");
            self.put_raw(
                &ns_type,
                json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name": ns}}),
                manager,
                false,
            );
        }
        if !rt.namespaced {
            if let Some(m) = value["metadata"].as_object_mut() {
                m.remove("namespace");
            }
        }
        let key = (rt.group.clone(), rt.plural.clone());
        let existing = self
            .objects
            .get(&key)
            .and_then(|m| m.get(&(ns.clone(), name.clone())))
            .cloned();
        strip_server_fields(&mut value);
        if rt.is_namespace() {
            namespace_server_fields(&mut value);
        }
        match &existing {
            Some(old) => {
                copy_server_fields(&old.value, &mut value);
                if spec_changed(&old.value, &value) {
                    bump_generation(&mut value);
                }
            }
            None => {
                let uid = self.next_uid();
                init_server_fields(&mut value, uid);
            }
        }
        value["metadata"]["resourceVersion"] = json!(self.next_rv());
        let mut owners = BTreeMap::new();
        for (p, _) in ownable_leaves(&value, false) {
            owners.insert(p, manager.to_string());
        }
        let mut managers = BTreeMap::new();
        managers.insert(manager.to_string(), "Update".to_string());
        let stored = StoredObject {
            value: value.clone(),
            owners,
            managers,
        };
        self.objects
            .entry(key)
            .or_default()
            .insert((ns.clone(), name.clone()), stored);
        if rt.group == CRD_GROUP && rt.plural == CRD_PLURAL {
            self.after_crd_write(&name, existing.is_none(), establish);
        }
        let o = self.objects[&(rt.group.clone(), rt.plural.clone())][&(ns, name)].clone();
        self.render(rt, &o)
    }

    pub fn delete_raw(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        let key = (rt.group.clone(), rt.plural.clone());
        let removed = self
            .objects
            .get_mut(&key)?
            .remove(&(ns.to_string(), name.to_string()))?;
        let rendered = self.render(rt, &removed);
        self.rv += 1;
        if rt.group == CRD_GROUP && rt.plural == CRD_PLURAL {
            self.pending.remove(name);
            self.types.retain(|t| t.crd.as_deref() != Some(name));
            let group = removed.value["spec"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let plural = removed.value["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.objects.remove(&(group, plural));
        }
        if rt.group.is_empty() && rt.plural == "namespaces" {
            for objs in self.objects.values_mut() {
                objs.retain(|(ons, _), _| ons != name);
            }
        }
        Some(rendered)
    }

    /// `DELETE`: objects with finalizers get a deletionTimestamp; others go at once.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let key = (rt.group.clone(), rt.plural.clone());
        let Some(obj) = self
            .objects
            .get(&key)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
        else {
            return Err(ApiError::not_found(rt, name));
        };
        if dry_run {
            return Ok(self.render(rt, &obj));
        }
        let has_finalizers = obj.value["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        if has_finalizers {
            let rv = self.next_rv();
            let o = self
                .objects
                .get_mut(&key)
                .and_then(|m| m.get_mut(&(ns.to_string(), name.to_string())))
                .expect("present");
            if o.value["metadata"].get("deletionTimestamp").is_none() {
                o.value["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                o.value["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                o.value["metadata"]["resourceVersion"] = json!(rv);
            }
            let o = o.clone();
            return Ok(self.render(rt, &o));
        }
        Ok(self.delete_raw(rt, ns, name).expect("present"))
    }

    /// Encodes a continue token naming the last returned key.
    pub fn continue_token(&self, last: &(String, String)) -> String {
        use base64::Engine;
        let raw =
            json!({"v": "meta.k8s.io/v1", "rv": self.rv, "start": [last.0, last.1]}).to_string();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn parse_continue(&self, token: &str) -> ApiResult<(String, String)> {
        use base64::Engine;
        let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        let rv = v["rv"].as_u64().ok_or_else(bad)?;
        if rv < self.min_continue_rv {
            return Err(ApiError::new(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        }
        let s = v["start"].as_array().ok_or_else(bad)?;
        Ok((
            s.first()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            s.get(1)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ))
    }

    pub fn crd_pending(&self) -> Vec<String> {
        self.pending.keys().cloned().collect()
    }
}

/// What the API server keeps on every Namespace: the `kubernetes.io/metadata.name` label
/// (always the name), the `kubernetes` finalizer and, once created, phase `Active`.
pub(super) fn namespace_server_fields(value: &mut Value) {
    let name = value["metadata"]["name"].clone();
    if !value["metadata"]["labels"].is_object() {
        value["metadata"]["labels"] = json!({});
    }
    value["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    if !value["spec"]["finalizers"].is_array() {
        value["spec"]["finalizers"] = json!(["kubernetes"]);
    }
    if !value["status"]["phase"].is_string() {
        value["status"]["phase"] = json!("Active");
    }
}

pub(super) fn init_server_fields(value: &mut Value, uid: String) {
    let m = &mut value["metadata"];
    m["uid"] = json!(uid);
    m["creationTimestamp"] = json!(now_rfc3339());
    m["generation"] = json!(1);
}

pub(super) fn strip_server_fields(value: &mut Value) {
    if let Some(m) = value["metadata"].as_object_mut() {
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            m.remove(f);
        }
    }
}

pub(super) fn copy_server_fields(old: &Value, new: &mut Value) {
    for f in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        if let Some(v) = old["metadata"].get(f) {
            new["metadata"][f] = v.clone();
        }
    }
}

pub(super) fn bump_generation(value: &mut Value) {
    let g = value["metadata"]["generation"].as_i64().unwrap_or(0);
    value["metadata"]["generation"] = json!(g + 1);
}

pub(super) fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

/// Orders versions like Kubernetes: GA > beta > alpha, higher numbers first.
pub(crate) fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: u32 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (level, n) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    (level, major, n.parse().unwrap_or(0))
}

/// The current time as RFC 3339 with seconds (`2026-11-24T08:00:00Z`).
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "v1beta1"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1"]);
    }
}
