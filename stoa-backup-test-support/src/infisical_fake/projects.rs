//! Creating projects, environments and tags, as an operator (or a restore's set-up) does:
//! `POST /api/v1/projects`, `POST /api/v1/projects/{id}/environments`,
//! `POST /api/v1/projects/{id}/tags` (and the older `/api/v1/workspace/…` paths).

use std::collections::BTreeMap;

use hyper::Response;
use serde_json::{json, Value};

use super::http::{error, invalid, project_json, respond, Body};
use super::{Project, State};

const CREATED_AT: &str = "2025-05-01T10:00:00.000Z";

/// The environments a project gets unless `shouldCreateDefaultEnvs` is `false`.
const DEFAULT_ENVS: [(&str, &str); 3] = [
    ("Development", "dev"),
    ("Staging", "staging"),
    ("Production", "prod"),
];

/// Infisical's slug rule: lowercase letters and digits, single `-` or `_` between them.
fn is_slug(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.split(['-', '_']).all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// The answer to a creation call, or `None` when the request is not one.
pub(super) fn create(
    s: &mut State,
    method: &str,
    segs: &[&str],
    body: &Value,
) -> Option<Response<Body>> {
    if method != "POST" {
        return None;
    }
    Some(match segs {
        ["api", "v1", "projects" | "workspace"] => project(s, body),
        ["api", "v1", "projects" | "workspace", id, "environments"] => environment(s, id, body),
        ["api", "v1", "projects" | "workspace", id, "tags"] => tag(s, id, body),
        _ => return None,
    })
}

fn project(s: &mut State, body: &Value) -> Response<Body> {
    let Some(name) = body["projectName"].as_str().map(str::trim) else {
        return invalid("projectName", "Required");
    };
    if name.is_empty() || name.len() > 64 {
        return invalid("projectName", "Name must be 64 or fewer characters");
    }
    let slug = match body["slug"].as_str() {
        Some(slug) if !is_slug(slug, 36) || slug.len() < 5 => {
            return invalid(
                "slug",
                "Slug must be 5 to 36 lowercase letters, digits, - or _",
            )
        }
        Some(slug) => slug.to_string(),
        None => format!("{}-{:04x}", slugify(name), rand::random::<u16>()),
    };
    if s.projects.values().any(|p| p.slug == slug) {
        return error(
            400,
            "BadRequest",
            &format!("A project with the slug '{slug}' already exists"),
        );
    }
    let id = s.id();
    let envs = if body["shouldCreateDefaultEnvs"].as_bool() == Some(false) {
        Vec::new()
    } else {
        DEFAULT_ENVS
            .iter()
            .map(|(name, slug)| (s.id(), name.to_string(), slug.to_string()))
            .collect()
    };
    let p = Project {
        id: id.clone(),
        name: name.to_string(),
        slug,
        envs,
        tags: Vec::new(),
        folders: BTreeMap::new(),
        secrets: BTreeMap::new(),
        imports: BTreeMap::new(),
    };
    let mut out = project_json(&p);
    out["_id"] = json!(id);
    out["description"] = body["projectDescription"].clone();
    out["type"] = json!(body["type"].as_str().unwrap_or("secret-manager"));
    out["autoCapitalization"] = json!(false);
    out["createdAt"] = json!(CREATED_AT);
    out["updatedAt"] = json!(CREATED_AT);
    s.projects.insert(id, p);
    respond(200, json!({ "project": out }))
}

fn slugify(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let words: Vec<&str> = s.split('-').filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        "project".into()
    } else {
        words.join("-")
    }
}

fn environment(s: &mut State, project: &str, body: &Value) -> Response<Body> {
    let Some(name) = body["name"].as_str().map(str::trim) else {
        return invalid("name", "Required");
    };
    let Some(slug) = body["slug"].as_str() else {
        return invalid("slug", "Required");
    };
    if !is_slug(slug, 64) {
        return invalid("slug", "Slug must be lowercase letters, digits, - or _");
    }
    if body["position"].as_u64() == Some(0) {
        return invalid("position", "Number must be greater than or equal to 1");
    }
    let id = s.id();
    let Some(p) = s.projects.get_mut(project) else {
        return error(
            404,
            "NotFound",
            &format!("Project with ID '{project}' not found"),
        );
    };
    if p.envs.iter().any(|e| e.2 == slug) {
        return error(
            400,
            "BadRequest",
            &format!("Environment with slug '{slug}' already exist"),
        );
    }
    let position = body["position"].as_u64().unwrap_or(p.envs.len() as u64 + 1);
    p.envs
        .push((id.clone(), name.to_string(), slug.to_string()));
    respond(
        200,
        json!({"message": "Successfully created new environment", "projectId": project,
               "environment": {"id": id, "name": name, "slug": slug, "position": position,
                               "projectId": project, "createdAt": CREATED_AT, "updatedAt": CREATED_AT}}),
    )
}

fn tag(s: &mut State, project: &str, body: &Value) -> Response<Body> {
    let Some(slug) = body["slug"].as_str() else {
        return invalid("slug", "Required");
    };
    if !is_slug(slug, 64) {
        return invalid("slug", "Slug must be lowercase letters, digits, - or _");
    }
    let Some(color) = body["color"].as_str() else {
        return invalid("color", "Required");
    };
    let id = s.id();
    let Some(p) = s.projects.get_mut(project) else {
        return error(
            404,
            "NotFound",
            &format!("Project with ID '{project}' not found"),
        );
    };
    if p.tags.iter().any(|t| t["slug"] == slug) {
        return error(400, "BadRequest", "Tag already exists");
    }
    let t = json!({"id": id, "slug": slug, "name": slug, "color": color, "projectId": project,
                   "createdAt": CREATED_AT, "updatedAt": CREATED_AT});
    p.tags.push(t.clone());
    respond(200, json!({ "workspaceTag": t }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_infisicals_rule() {
        for ok in ["pci", "stoa-restore", "team_a", "a1-b2"] {
            assert!(is_slug(ok, 64), "{ok}");
        }
        for bad in ["", "PCI", "a--b", "-a", "a-", "a b", "é"] {
            assert!(!is_slug(bad, 64), "{bad}");
        }
        assert_eq!(slugify("My Project!"), "my-project");
    }
}
