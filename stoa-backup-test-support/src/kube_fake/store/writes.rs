//! Writes through the API: create, replace, merge patch, server-side apply (field
//! ownership and conflicts), with validation, namespaces and dry runs.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::crd::{CRD_GROUP, CRD_PLURAL};
use super::fields::{
    format_path, get_path, json_merge, ownable_leaves, remove_path, set_path, FieldPath,
};
use super::{
    bump_generation, copy_server_fields, init_server_fields, namespace_server_fields, spec_changed,
    strip_server_fields, ApiError, ApiResult, ResourceType, Store, StoredObject, WriteOutcome,
};

impl Store {
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

    pub(super) fn check_namespace(
        &self,
        rt: &ResourceType,
        ns: &str,
        body: &Value,
    ) -> ApiResult<()> {
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

    pub(super) fn validate(&self, rt: &ResourceType, name: &str, value: &Value) -> ApiResult<()> {
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
        let violations = super::builtins::validate(rt, name, value);
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(rt, name, &violations));
        }
        if let Some(schema) = self.schema_of(rt) {
            let violations = super::schema::validate(&schema, value);
            if !violations.is_empty() {
                return Err(ApiError::invalid_fields(rt, name, &violations));
            }
        }
        Ok(())
    }

    /// The `openAPIV3Schema` of a custom resource type's version, from its CRD.
    fn schema_of(&self, rt: &ResourceType) -> Option<Value> {
        let crd = rt.crd.as_deref()?;
        let stored = self
            .objects
            .get(&(CRD_GROUP.to_string(), CRD_PLURAL.to_string()))?
            .get(&(String::new(), crd.to_string()))?;
        stored.value["spec"]["versions"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == rt.version.as_str())
            .map(|v| v["schema"]["openAPIV3Schema"].clone())
            .filter(Value::is_object)
    }

    /// Stores (unless dry run) and renders. No-op writes keep the resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit(
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
        if rt.is_namespace() {
            namespace_server_fields(&mut value);
        }
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
}

pub(super) fn check_body_type(rt: &ResourceType, body: &Value) -> ApiResult<()> {
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
