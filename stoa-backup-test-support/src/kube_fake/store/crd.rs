//! CustomResourceDefinitions: their conditions, becoming Established after the configured
//! delay, and the resource types they serve.

use std::time::Instant;

use serde_json::{json, Value};

use super::{now_rfc3339, PendingCrd, ResourceType, Store};

pub(super) const CRD_GROUP: &str = "apiextensions.k8s.io";
pub(super) const CRD_PLURAL: &str = "customresourcedefinitions";

impl Store {
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

    pub(super) fn establish(&mut self, name: &str) {
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

    pub(super) fn register_crd_types(&mut self, crd_name: &str, crd: &Value) {
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

    pub(super) fn after_crd_write(&mut self, name: &str, created: bool, establish_now: bool) {
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
}

pub(super) fn crd_is_established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

pub(super) fn set_crd_conditions(crd: &mut Value, established: bool) {
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
