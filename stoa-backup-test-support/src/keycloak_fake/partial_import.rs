//! `partialImport`: all or nothing, with `FAIL`, `SKIP` and `OVERWRITE`.

use serde_json::{json, Value};

use super::realm::{ensure_id, fix_groups, new_client, store_user};
use super::{new_id, Realm};

/// Applies a partialImport to a copy of the realm: all or nothing.
pub(super) fn partial_import(
    r: &Realm,
    realm_name: &str,
    rep: &Value,
) -> Result<(Realm, Value), String> {
    let policy = rep["ifResourceExists"].as_str().unwrap_or("FAIL");
    let mut new = r.clone();
    let mut results = Vec::new();
    let (mut added, mut over, mut skipped) = (0u64, 0u64, 0u64);
    let list = |k: &str| rep[k].as_array().cloned().unwrap_or_default();
    // Returns Ok(true) to write, Ok(false) to skip.
    let mut decide =
        |exists: bool, kind: &str, label: &str, name: &str, id: Value| -> Result<bool, String> {
            let action = match (exists, policy) {
                (false, _) => "ADDED",
                (true, "SKIP") => "SKIPPED",
                (true, "OVERWRITE") => "OVERWRITTEN",
                (true, _) => return Err(format!("{label} '{name}' already exists.")),
            };
            match action {
                "ADDED" => added += 1,
                "SKIPPED" => skipped += 1,
                _ => over += 1,
            }
            results.push(
                json!({"action": action, "resourceType": kind, "resourceName": name, "id": id}),
            );
            Ok(action != "SKIPPED")
        };
    for c in list("clients") {
        let name = c["clientId"].as_str().unwrap_or("").to_string();
        let pos = new
            .clients
            .iter()
            .position(|x| x["clientId"].as_str() == Some(&name));
        if decide(pos.is_some(), "CLIENT", "Client", &name, c["id"].clone())? {
            if let Some(p) = pos {
                new.clients.remove(p);
            }
            let c = new_client(c, &mut new, realm_name);
            new.clients.push(c);
        }
    }
    for mut role in rep["roles"]["realm"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = role["name"].as_str().unwrap_or("").to_string();
        let pos = new
            .realm_roles
            .iter()
            .position(|x| x["name"].as_str() == Some(&name));
        if decide(
            pos.is_some(),
            "REALM_ROLE",
            "Realm role",
            &name,
            role["id"].clone(),
        )? {
            if let Some(p) = pos {
                new.realm_roles.remove(p);
            }
            ensure_id(&mut role);
            new.realm_roles.push(role);
        }
    }
    if let Some(cr) = rep["roles"]["client"].as_object() {
        for (c, roles) in cr {
            for mut role in roles.as_array().cloned().unwrap_or_default() {
                let name = role["name"].as_str().unwrap_or("").to_string();
                let list = new.client_roles.entry(c.clone()).or_default();
                let pos = list.iter().position(|x| x["name"].as_str() == Some(&name));
                if decide(
                    pos.is_some(),
                    "CLIENT_ROLE",
                    "Client role",
                    &name,
                    role["id"].clone(),
                )? {
                    let list = new.client_roles.entry(c.clone()).or_default();
                    if let Some(p) = pos {
                        list.remove(p);
                    }
                    ensure_id(&mut role);
                    list.push(role);
                }
            }
        }
    }
    for mut i in list("identityProviders") {
        let name = i["alias"].as_str().unwrap_or("").to_string();
        let pos = new
            .idps
            .iter()
            .position(|x| x["alias"].as_str() == Some(&name));
        if decide(
            pos.is_some(),
            "IDP",
            "Identity provider",
            &name,
            i["internalId"].clone(),
        )? {
            if let Some(p) = pos {
                new.idps.remove(p);
            }
            if i.get("internalId").is_none() {
                i["internalId"] = json!(new_id());
            }
            new.idps.push(i);
        }
    }
    for mut i in list("identityProviderMappers") {
        let name = i["name"].as_str().unwrap_or("").to_string();
        let alias = i["identityProviderAlias"].clone();
        let pos = new
            .idp_mappers
            .iter()
            .position(|x| x["name"].as_str() == Some(&name) && x["identityProviderAlias"] == alias);
        if decide(
            pos.is_some(),
            "IDP_MAPPER",
            "Identity provider mapper",
            &name,
            i["id"].clone(),
        )? {
            if let Some(p) = pos {
                new.idp_mappers.remove(p);
            }
            ensure_id(&mut i);
            new.idp_mappers.push(i);
        }
    }
    for mut g in list("groups") {
        let name = g["name"].as_str().unwrap_or("").to_string();
        let pos = new
            .groups
            .iter()
            .position(|x| x["name"].as_str() == Some(&name));
        if decide(pos.is_some(), "GROUP", "Group", &name, g["id"].clone())? {
            if let Some(p) = pos {
                new.groups.remove(p);
            }
            fix_groups(std::slice::from_mut(&mut g), "");
            new.groups.push(g);
        }
    }
    for u in list("users") {
        let name = u["username"].as_str().unwrap_or("").to_string();
        let pos = new
            .users
            .iter()
            .position(|x| x["username"].as_str() == Some(&name));
        if decide(pos.is_some(), "USER", "User", &name, u["id"].clone())? {
            if let Some(p) = pos {
                new.users.remove(p);
            }
            new.users.push(store_user(u));
        }
    }
    Ok((
        new,
        json!({"overwritten": over, "added": added, "skipped": skipped, "results": results}),
    ))
}
