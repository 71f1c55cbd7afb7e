//! The fake API server's in-memory state: resource types, objects, field ownership,
//! label selectors, and the Kubernetes `Status` error bodies.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

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

/// A Kubernetes API error, rendered as a `Status` body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified()),
        )
        .details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    pub fn namespace_not_found(ns: &str) -> Self {
        ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            .details(json!({"name": ns, "kind": "namespaces"}))
    }

    pub fn no_resource() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .details(json!({}))
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
        )
        .details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                rt.qualified()
            ),
        )
        .details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn invalid(rt: &ResourceType, name: &str, field: &str, message: &str) -> Self {
        ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {field}: Invalid value: {message}",
                rt.qualified()
            ),
        )
        .details(json!({
            "name": name, "group": rt.group, "kind": rt.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": format!("Invalid value: {message}"), "field": field}]
        }))
    }

    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// A field path such as `["spec", "endpoint"]`.
type FieldPath = Vec<String>;

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

const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_PLURAL: &str = "customresourcedefinitions";

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

    /// Marks CRDs whose delay has passed as Established and serves their types.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.established_at.is_some_and(|t| t <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.pending.remove(&name);
            self.establish(&name);
        }
    }

    fn establish(&mut self, name: &str) {
        let key = (CRD_GROUP.to_string(), CRD_PLURAL.to_string());
        let Some(obj) = self
            .objects
            .get(&key)
            .and_then(|m| m.get(&(String::new(), name.to_string())))
            .cloned()
        else {
            return;
        };
        let mut value = obj.value.clone();
        set_crd_conditions(&mut value, true);
        let rv = self.next_rv();
        value["metadata"]["resourceVersion"] = json!(rv);
        if let Some(o) = self
            .objects
            .get_mut(&key)
            .and_then(|m| m.get_mut(&(String::new(), name.to_string())))
        {
            o.value = value.clone();
        }
        self.register_crd_types(name, &value);
    }

    fn register_crd_types(&mut self, crd_name: &str, crd: &Value) {
        self.types.retain(|t| t.crd.as_deref() != Some(crd_name));
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let names = &spec["names"];
        let kind = names["kind"].as_str().unwrap_or_default().to_string();
        let plural = names["plural"].as_str().unwrap_or_default().to_string();
        let singular = names["singular"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_ascii_lowercase());
        let short_names: Vec<String> = names["shortNames"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        for v in spec["versions"].as_array().cloned().unwrap_or_default() {
            if v["served"].as_bool() != Some(true) {
                continue;
            }
            let mut subresources = Vec::new();
            if v["subresources"]["status"].is_object() {
                subresources.push("status".to_string());
            }
            if v["subresources"]["scale"].is_object() {
                subresources.push("scale".to_string());
            }
            self.types.push(ResourceType {
                group: group.clone(),
                version: v["name"].as_str().unwrap_or_default().to_string(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                short_names: short_names.clone(),
                subresources,
                crd: Some(crd_name.to_string()),
            });
        }
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

    fn after_crd_write(&mut self, name: &str, created: bool, establish_now: bool) {
        let key = (CRD_GROUP.to_string(), CRD_PLURAL.to_string());
        let established = self
            .objects
            .get(&key)
            .and_then(|m| m.get(&(String::new(), name.to_string())))
            .map(|o| crd_is_established(&o.value))
            .unwrap_or(false);
        if establish_now {
            self.pending.remove(name);
            self.establish(name);
            return;
        }
        if created || !established {
            if let Some(o) = self
                .objects
                .get_mut(&key)
                .and_then(|m| m.get_mut(&(String::new(), name.to_string())))
            {
                set_crd_conditions(&mut o.value, false);
            }
            let established_at = self.established_delay.map(|d| Instant::now() + d);
            self.pending
                .insert(name.to_string(), PendingCrd { established_at });
            self.tick();
        } else {
            // An update of an established CRD: serve its (possibly new) versions.
            let value = self.objects[&key][&(String::new(), name.to_string())]
                .value
                .clone();
            self.register_crd_types(name, &value);
        }
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

    /// `POST`: create.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        manager: &str,
        dry_run: bool,
    ) -> ApiResult<Value> {
        check_body_type(rt, &body)?;
        let name = body["metadata"]["name"].as_str().map(str::to_string);
        let name = match name {
            Some(n) if !n.is_empty() => n,
            _ => match body["metadata"]["generateName"].as_str() {
                Some(prefix) => format!("{prefix}{:05x}", rand::random::<u32>() & 0xfffff),
                None => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        "metadata.name",
                        "name or generateName is required",
                    ))
                }
            },
        };
        body["metadata"]["name"] = json!(name);
        self.check_namespace(rt, ns, &body)?;
        let key = (rt.group.clone(), rt.plural.clone());
        if self
            .objects
            .get(&key)
            .is_some_and(|m| m.contains_key(&(ns.to_string(), name.clone())))
        {
            return Err(ApiError::already_exists(rt, &name));
        }
        if body["metadata"]
            .get("managedFields")
            .is_some_and(|m| !m.is_null())
        {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        self.validate(rt, &name, &body)?;
        let mut value = body;
        strip_server_fields(&mut value);
        if rt.status_is_separate() {
            if let Some(m) = value.as_object_mut() {
                m.remove("status");
            }
        }
        if rt.namespaced {
            value["metadata"]["namespace"] = json!(ns);
        }
        let uid = self.next_uid();
        init_server_fields(&mut value, uid);
        let mut owners = BTreeMap::new();
        for (p, _) in ownable_leaves(&value, rt.status_is_separate()) {
            owners.insert(p, manager.to_string());
        }
        let mut managers = BTreeMap::new();
        managers.insert(manager.to_string(), "Update".to_string());
        self.commit(rt, ns, &name, value, owners, managers, dry_run, true)
    }

    /// `PUT`: replace.
    #[allow(clippy::too_many_arguments)]
    pub fn replace(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        manager: &str,
        dry_run: bool,
        status_only: bool,
    ) -> ApiResult<Value> {
        check_body_type(rt, &body)?;
        let key = (rt.group.clone(), rt.plural.clone());
        let Some(old) = self
            .objects
            .get(&key)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
        else {
            return Err(ApiError::not_found(rt, name));
        };
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str() {
            if rv
                != old.value["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            {
                return Err(ApiError::stale(rt, name));
            }
        }
        let mut value = if status_only {
            let mut v = old.value.clone();
            v["status"] = body.get("status").cloned().unwrap_or(Value::Null);
            v
        } else {
            let mut v = body;
            if rt.status_is_separate() {
                match old.value.get("status") {
                    Some(s) => v["status"] = s.clone(),
                    None => {
                        if let Some(m) = v.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            v
        };
        strip_server_fields(&mut value);
        copy_server_fields(&old.value, &mut value);
        if rt.namespaced {
            value["metadata"]["namespace"] = json!(ns);
        }
        self.validate(rt, name, &value)?;
        let mut owners = old.owners.clone();
        let before: BTreeMap<FieldPath, Value> =
            ownable_leaves(&old.value, false).into_iter().collect();
        let after = ownable_leaves(&value, false);
        let after_paths: BTreeSet<FieldPath> = after.iter().map(|(p, _)| p.clone()).collect();
        owners.retain(|p, _| after_paths.contains(p));
        for (p, v) in after {
            if before.get(&p) != Some(&v) {
                owners.insert(p, manager.to_string());
            }
        }
        let mut managers = old.managers.clone();
        managers
            .entry(manager.to_string())
            .or_insert_with(|| "Update".into());
        self.commit(rt, ns, name, value, owners, managers, dry_run, false)
    }

    /// `PATCH` with a JSON merge patch (also used for strategic merge patches).
    #[allow(clippy::too_many_arguments)]
    pub fn merge_patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        patch: Value,
        manager: &str,
        dry_run: bool,
        status_only: bool,
    ) -> ApiResult<Value> {
        let key = (rt.group.clone(), rt.plural.clone());
        let Some(old) = self
            .objects
            .get(&key)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
        else {
            return Err(ApiError::not_found(rt, name));
        };
        let mut value = old.value.clone();
        if status_only {
            if let Some(s) = patch.get("status") {
                json_merge(&mut value["status"], s);
            }
        } else {
            let mut patch = patch;
            if rt.status_is_separate() {
                if let Some(m) = patch.as_object_mut() {
                    m.remove("status");
                }
            }
            json_merge(&mut value, &patch);
        }
        // A merge patch carrying the old resourceVersion is a precondition.
        if let Some(rv) = value["metadata"]["resourceVersion"].as_str() {
            if rv
                != old.value["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            {
                return Err(ApiError::stale(rt, name));
            }
        }
        let body = value.clone();
        self.replace(rt, ns, name, body, manager, dry_run, false)
    }

    /// `PATCH` with `application/apply-patch+yaml`: server-side apply.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        manager: &str,
        force: bool,
        dry_run: bool,
    ) -> ApiResult<(Value, WriteOutcome)> {
        check_body_type(rt, &body)?;
        if body["metadata"]["name"].as_str() != Some(name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                body["metadata"]["name"].as_str().unwrap_or("")
            )));
        }
        if body["metadata"]
            .get("managedFields")
            .is_some_and(|m| !m.is_null())
        {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        self.check_namespace(rt, ns, &body)?;
        let key = (rt.group.clone(), rt.plural.clone());
        let existing = self
            .objects
            .get(&key)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned();
        let mut applied = body;
        if let Some(m) = applied["metadata"].as_object_mut() {
            for f in [
                "uid",
                "creationTimestamp",
                "generation",
                "selfLink",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                m.remove(f);
            }
        }
        let rv_precondition = applied["metadata"]
            .as_object_mut()
            .and_then(|m| m.remove("resourceVersion"));
        if rt.status_is_separate() {
            if let Some(m) = applied.as_object_mut() {
                m.remove("status");
            }
        }
        let applied_leaves = ownable_leaves(&applied, rt.status_is_separate());
        let Some(old) = existing else {
            if rv_precondition.is_some() {
                return Err(ApiError::not_found(rt, name));
            }
            let mut value = applied;
            if rt.namespaced {
                value["metadata"]["namespace"] = json!(ns);
            }
            self.validate(rt, name, &value)?;
            let uid = self.next_uid();
            init_server_fields(&mut value, uid);
            let owners = applied_leaves
                .into_iter()
                .map(|(p, _)| (p, manager.to_string()))
                .collect();
            let mut managers = BTreeMap::new();
            managers.insert(manager.to_string(), "Apply".to_string());
            let v = self.commit(rt, ns, name, value, owners, managers, dry_run, true)?;
            return Ok((v, WriteOutcome::Created));
        };
        if let Some(rv) = rv_precondition {
            if rv.as_str() != old.value["metadata"]["resourceVersion"].as_str() {
                return Err(ApiError::stale(rt, name));
            }
        }
        // Conflicts: a field this manager sets to a different value, owned by another.
        let mut conflicts: BTreeMap<String, Vec<FieldPath>> = BTreeMap::new();
        for (p, v) in &applied_leaves {
            if let Some(owner) = old.owners.get(p) {
                if owner != manager && get_path(&old.value, p) != Some(v) {
                    conflicts.entry(owner.clone()).or_default().push(p.clone());
                }
            }
        }
        if !conflicts.is_empty() && !force {
            let mut causes = Vec::new();
            let mut parts = Vec::new();
            let n: usize = conflicts.values().map(Vec::len).sum();
            for (owner, paths) in &conflicts {
                for p in paths {
                    let field = format_path(p);
                    causes.push(json!({
                        "reason": "FieldManagerConflict",
                        "type": "FieldManagerConflict",
                        "message": format!("conflict with \"{owner}\" using {}", rt.api_version()),
                        "field": field,
                    }));
                    parts.push(format!(
                        "conflict with \"{owner}\" using {}: {field}",
                        rt.api_version()
                    ));
                }
            }
            let message = format!(
                "Apply failed with {n} conflict{}: {}",
                if n == 1 { "" } else { "s" },
                parts.join("\n")
            );
            return Err(ApiError::new(409, "Conflict", message).details(
                json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}),
            ));
        }
        let mut value = old.value.clone();
        let applied_paths: BTreeSet<FieldPath> =
            applied_leaves.iter().map(|(p, _)| p.clone()).collect();
        let mut owners = old.owners.clone();
        // Fields this manager applied before and no longer applies are removed.
        let dropped: Vec<FieldPath> = owners
            .iter()
            .filter(|(p, o)| *o == manager && !applied_paths.contains(*p))
            .map(|(p, _)| p.clone())
            .collect();
        for p in &dropped {
            remove_path(&mut value, p);
            owners.remove(p);
        }
        for (p, v) in &applied_leaves {
            set_path(&mut value, p, v.clone());
            owners.insert(p.clone(), manager.to_string());
        }
        self.validate(rt, name, &value)?;
        let mut managers = old.managers.clone();
        managers.insert(manager.to_string(), "Apply".to_string());
        managers.retain(|m, _| owners.values().any(|o| o == m));
        let v = self.commit(rt, ns, name, value, owners, managers, dry_run, false)?;
        Ok((v, WriteOutcome::Updated))
    }

    fn check_namespace(&self, rt: &ResourceType, ns: &str, body: &Value) -> ApiResult<()> {
        if let Some(bns) = body["metadata"]["namespace"].as_str() {
            if rt.namespaced && !bns.is_empty() && bns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        if rt.namespaced && !self.namespace_exists(ns) {
            return Err(ApiError::namespace_not_found(ns));
        }
        Ok(())
    }

    fn validate(&self, rt: &ResourceType, name: &str, value: &Value) -> ApiResult<()> {
        if rt.group == CRD_GROUP && rt.plural == CRD_PLURAL {
            let spec = &value["spec"];
            let group = spec["group"].as_str().unwrap_or_default();
            let plural = spec["names"]["plural"].as_str().unwrap_or_default();
            if group.is_empty()
                || plural.is_empty()
                || spec["names"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty()
            {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    "spec",
                    "group, names.plural and names.kind are required",
                ));
            }
            if name != format!("{plural}.{group}") {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    "metadata.name",
                    &format!("\"{name}\": must be spec.names.plural+\".\"+spec.group"),
                ));
            }
            if spec["versions"].as_array().is_none_or(|v| v.is_empty()) {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    "spec.versions",
                    "must have at least one version",
                ));
            }
        }
        Ok(())
    }

    /// Stores (unless dry run) and renders. No-op writes keep the resourceVersion.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut value: Value,
        owners: BTreeMap<FieldPath, String>,
        managers: BTreeMap<String, String>,
        dry_run: bool,
        created: bool,
    ) -> ApiResult<Value> {
        let key = (rt.group.clone(), rt.plural.clone());
        let old = self
            .objects
            .get(&key)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned();
        if let Some(old) = &old {
            let unchanged = old.value == value && old.owners == owners && old.managers == managers;
            if unchanged {
                return Ok(self.render(rt, old));
            }
            if spec_changed(&old.value, &value) {
                bump_generation(&mut value);
            }
        }
        value["metadata"]["resourceVersion"] = json!(if dry_run {
            (self.rv + 1).to_string()
        } else {
            self.next_rv()
        });
        let stored = StoredObject {
            value,
            owners,
            managers,
        };
        let rendered = self.render(rt, &stored);
        if dry_run {
            return Ok(rendered);
        }
        self.objects
            .entry(key)
            .or_default()
            .insert((ns.to_string(), name.to_string()), stored);
        if rt.group == CRD_GROUP && rt.plural == CRD_PLURAL {
            self.after_crd_write(name, created, false);
            let o = self.objects[&(rt.group.clone(), rt.plural.clone())]
                [&(String::new(), name.to_string())]
                .clone();
            return Ok(self.render(rt, &o));
        }
        Ok(rendered)
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

fn check_body_type(rt: &ResourceType, body: &Value) -> ApiResult<()> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    let av = body["apiVersion"].as_str().unwrap_or_default();
    let kind = body["kind"].as_str().unwrap_or_default();
    if av.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in the request body (apiVersion and kind are required)",
        ));
    }
    let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    if group != rt.group || kind != rt.kind {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    Ok(())
}

fn init_server_fields(value: &mut Value, uid: String) {
    let m = &mut value["metadata"];
    m["uid"] = json!(uid);
    m["creationTimestamp"] = json!(now_rfc3339());
    m["generation"] = json!(1);
}

fn strip_server_fields(value: &mut Value) {
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

fn copy_server_fields(old: &Value, new: &mut Value) {
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

fn bump_generation(value: &mut Value) {
    let g = value["metadata"]["generation"].as_i64().unwrap_or(0);
    value["metadata"]["generation"] = json!(g + 1);
}

fn spec_changed(old: &Value, new: &Value) -> bool {
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

fn crd_is_established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

fn set_crd_conditions(crd: &mut Value, established: bool) {
    let names = crd["spec"]["names"].clone();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"] == true)
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    let now = now_rfc3339();
    let mut conditions = vec![json!({
        "type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
        "message": "no conflicts found", "lastTransitionTime": now,
    })];
    conditions.push(if established {
        json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
               "message": "the initial names have been accepted", "lastTransitionTime": now})
    } else {
        json!({"type": "Established", "status": "False", "reason": "Installing",
               "message": "the initial names have not been accepted yet", "lastTransitionTime": now})
    });
    crd["status"] = json!({
        "acceptedNames": {
            "kind": kind,
            "listKind": names["listKind"].as_str().map(str::to_string).unwrap_or_else(|| format!("{kind}List")),
            "plural": names["plural"],
            "singular": names["singular"],
        },
        "storedVersions": stored,
        "conditions": conditions,
    });
}

/// Leaves a manager can own: everything but identity and server fields; `status` only when
/// it is not a separate subresource. Arrays and empty objects are leaves.
fn ownable_leaves(value: &Value, skip_status: bool) -> Vec<(FieldPath, Value)> {
    let mut out = Vec::new();
    let Some(obj) = value.as_object() else {
        return out;
    };
    for (k, v) in obj {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "status" if skip_status => {}
            "metadata" => {
                if let Some(m) = v.as_object() {
                    for f in ["labels", "annotations"] {
                        if let Some(map) = m.get(f).and_then(Value::as_object) {
                            for (lk, lv) in map {
                                out.push((
                                    vec!["metadata".into(), f.into(), lk.clone()],
                                    lv.clone(),
                                ));
                            }
                        }
                    }
                    for f in ["finalizers", "ownerReferences"] {
                        if let Some(x) = m.get(f) {
                            out.push((vec!["metadata".into(), f.into()], x.clone()));
                        }
                    }
                }
            }
            _ => collect_leaves(vec![k.clone()], v, &mut out),
        }
    }
    out
}

fn collect_leaves(path: FieldPath, v: &Value, out: &mut Vec<(FieldPath, Value)>) {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, c) in m {
                let mut p = path.clone();
                p.push(k.clone());
                collect_leaves(p, c, out);
            }
        }
        _ => out.push((path, v.clone())),
    }
}

fn get_path<'a>(v: &'a Value, p: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in p {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

fn set_path(v: &mut Value, p: &[String], leaf: Value) {
    let mut cur = v;
    for seg in &p[..p.len() - 1] {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("object")
            .entry(seg.clone())
            .or_insert_with(|| json!({}));
    }
    if !cur.is_object() {
        *cur = json!({});
    }
    cur.as_object_mut()
        .expect("object")
        .insert(p[p.len() - 1].clone(), leaf);
}

fn remove_path(v: &mut Value, p: &[String]) {
    fn go(cur: &mut Value, p: &[String]) {
        let Some(m) = cur.as_object_mut() else { return };
        if p.len() == 1 {
            m.remove(&p[0]);
            return;
        }
        if let Some(child) = m.get_mut(&p[0]) {
            go(child, &p[1..]);
            if child.as_object().is_some_and(|c| c.is_empty()) {
                m.remove(&p[0]);
            }
        }
    }
    go(v, p);
}

fn format_path(p: &[String]) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

fn insert_fields_v1(tree: &mut Map<String, Value>, path: &[String]) {
    let mut cur = tree;
    for seg in path {
        let entry = cur.entry(format!("f:{seg}")).or_insert_with(|| json!({}));
        cur = entry.as_object_mut().expect("object");
    }
}

/// RFC 7386 JSON merge patch.
pub(crate) fn json_merge(target: &mut Value, patch: &Value) {
    match patch.as_object() {
        Some(pm) => {
            if !target.is_object() {
                *target = json!({});
            }
            let tm = target.as_object_mut().expect("object");
            for (k, v) in pm {
                if v.is_null() {
                    tm.remove(k);
                } else {
                    json_merge(tm.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        None => *target = patch.clone(),
    }
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

/// A parsed label selector.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selector {
    reqs: Vec<Requirement>,
}

#[derive(Debug, Clone)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Selector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let bad = || ApiError::bad_request(format!("unable to parse requirement: {part}"));
            let req = if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), parse_set(rest).ok_or_else(bad)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement::In(k.trim().into(), parse_set(rest).ok_or_else(bad)?)
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(part.to_string())
            } else {
                return Err(bad());
            };
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let s = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
    )
}

/// A field selector (`metadata.name=x`, `metadata.namespace!=y`).
pub(crate) fn field_selector_matches(selector: &str, obj: &Value) -> ApiResult<bool> {
    for part in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, want, negate) = if let Some((f, v)) = part.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, v, false)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, v, false)
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid field selector: {part}"
            )));
        };
        let actual = match field.trim() {
            "metadata.name" => obj["metadata"]["name"].as_str().unwrap_or_default(),
            "metadata.namespace" => obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            "type" => obj["type"].as_str().unwrap_or_default(),
            other => {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {other}"
                )))
            }
        };
        if (actual == want.trim()) == negate {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The current time as RFC 3339 with seconds (`2026-11-24T08:00:00Z`).
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let labels: Map<String, Value> =
            serde_json::from_value(json!({"app": "stoa", "tier": "gw"})).unwrap();
        for (s, want) in [
            ("app=stoa", true),
            ("app==stoa,tier=gw", true),
            ("app!=stoa", false),
            ("tier in (gw, db)", true),
            ("tier notin (gw)", false),
            ("app", true),
            ("!missing", true),
            ("missing", false),
        ] {
            assert_eq!(Selector::parse(s).unwrap().matches(&labels), want, "{s}");
        }
    }

    #[test]
    fn version_order() {
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "v1beta1"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1"]);
    }
}
