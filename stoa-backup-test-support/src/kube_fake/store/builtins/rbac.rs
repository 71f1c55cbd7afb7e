//! Roles, ClusterRoles and their bindings, as the API server validates them: every rule
//! names verbs, resource rules name API groups and resources, non-resource URLs only in
//! ClusterRoles; a binding refers to a role of the RBAC group (a ClusterRoleBinding to a
//! ClusterRole only) and names its subjects.

use serde_json::Value;

use super::Checks;

/// The RBAC API group.
pub(super) const GROUP: &str = "rbac.authorization.k8s.io";

pub(super) fn validate(c: &mut Checks, kind: &str, value: &Value) {
    match kind {
        "Role" => rules(c, &value["rules"], true),
        // An aggregated ClusterRole's rules are the controller's to fill.
        "ClusterRole" if value["aggregationRule"].is_null() => rules(c, &value["rules"], false),
        "RoleBinding" => binding(c, value, &["Role", "ClusterRole"], false),
        "ClusterRoleBinding" => binding(c, value, &["ClusterRole"], true),
        _ => {}
    }
}

fn rules(c: &mut Checks, rules: &Value, namespaced: bool) {
    for (i, rule) in rules.as_array().into_iter().flatten().enumerate() {
        let at = format!("rules[{i}]");
        let non_empty = |field: &str| rule[field].as_array().is_some_and(|a| !a.is_empty());
        if !non_empty("verbs") {
            c.required_because(
                &format!("{at}.verbs"),
                "verbs must contain at least one value",
            );
        }
        if non_empty("nonResourceURLs") {
            if namespaced {
                c.invalid(
                    &format!("{at}.nonResourceURLs"),
                    &rule["nonResourceURLs"],
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            if non_empty("apiGroups") || non_empty("resources") {
                c.invalid(
                    &format!("{at}.nonResourceURLs"),
                    &rule["nonResourceURLs"],
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if !non_empty("apiGroups") {
            c.required_because(
                &format!("{at}.apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if !non_empty("resources") {
            c.required_because(
                &format!("{at}.resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

fn binding(c: &mut Checks, value: &Value, role_kinds: &[&str], cluster: bool) {
    let role_ref = &value["roleRef"];
    if !role_ref.is_object() {
        c.required("roleRef");
    } else {
        if role_ref["apiGroup"].is_null() {
            c.required("roleRef.apiGroup");
        }
        c.one_of("roleRef.apiGroup", &role_ref["apiGroup"], &[GROUP]);
        if role_ref["kind"].is_null() {
            c.required("roleRef.kind");
        }
        c.one_of("roleRef.kind", &role_ref["kind"], role_kinds);
        match role_ref["name"].as_str() {
            None | Some("") => c.required("roleRef.name"),
            Some(n) => c.path_segment_name("roleRef.name", n),
        }
    }
    for (i, s) in value["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("subjects[{i}]");
        c.one_of(
            &format!("{at}.kind"),
            &s["kind"],
            &["ServiceAccount", "User", "Group"],
        );
        let name = s["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            c.required(&format!("{at}.name"));
        }
        if s["kind"] == "ServiceAccount" {
            if s["apiGroup"].as_str().is_some_and(|g| !g.is_empty()) {
                c.one_of(&format!("{at}.apiGroup"), &s["apiGroup"], &[""]);
            }
            if !name.is_empty() {
                c.subdomain(&format!("{at}.name"), name);
            }
            if cluster && s["namespace"].as_str().is_none_or(str::is_empty) {
                c.required(&format!("{at}.namespace"));
            }
        } else if s["kind"] == "User" || s["kind"] == "Group" {
            c.one_of(&format!("{at}.apiGroup"), &s["apiGroup"], &[GROUP]);
        }
    }
}
