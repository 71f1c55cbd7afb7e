//! The fake's realms: import of representations, the views the admin API serves.

use serde_json::{json, Map, Value};

use super::{new_id, now_ms, Realm, MASK};

// ---------------------------------------------------------------------------------------
// Import and representations

/// What a realm representation holds besides its top-level settings: `PUT
/// /admin/realms/{realm}` leaves these alone, and partialImport reads only some of them.
pub(super) const NOT_SETTINGS: [&str; 19] = [
    "id",
    "realm",
    "users",
    "federatedUsers",
    "clients",
    "clientScopes",
    "groups",
    "roles",
    "identityProviders",
    "identityProviderMappers",
    "protocolMappers",
    "components",
    "authenticationFlows",
    "authenticatorConfig",
    "requiredActions",
    "scopeMappings",
    "clientScopeMappings",
    "organizations",
    "userFederationProviders",
];

/// Checks what the server would fail to read in a realm (or partialImport)
/// representation: the realm name (when `needs_realm`), and that every user, client,
/// group, role, identity provider, mapper and credential is an object. The message is the
/// `errorMessage` of the 400.
pub(super) fn check_representation(rep: &Value, needs_realm: bool) -> Result<(), String> {
    let Some(m) = rep.as_object() else {
        return Err("Invalid representation: not a JSON object".into());
    };
    if needs_realm
        && m.get("realm")
            .and_then(Value::as_str)
            .is_none_or(|r| r.trim().is_empty())
    {
        return Err("Realm name cannot be empty".into());
    }
    for key in [
        "users",
        "clients",
        "groups",
        "identityProviders",
        "identityProviderMappers",
    ] {
        objects(m.get(key), key)?;
    }
    for (i, u) in m
        .get("users")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        objects(u.get("credentials"), &format!("users[{i}].credentials"))?;
    }
    subgroups(m.get("groups"), "groups")?;
    match m.get("roles") {
        None | Some(Value::Null) => {}
        Some(Value::Object(roles)) => {
            objects(roles.get("realm"), "roles.realm")?;
            match roles.get("client") {
                None | Some(Value::Null) => {}
                Some(Value::Object(by_client)) => {
                    for (c, list) in by_client {
                        objects(Some(list), &format!("roles.client.{c}"))?;
                    }
                }
                Some(_) => {
                    return Err("Invalid representation: roles.client is not an object".into())
                }
            }
        }
        Some(_) => return Err("Invalid representation: roles is not an object".into()),
    }
    Ok(())
}

/// `Ok` when `v` is absent, null, or an array of objects.
fn objects(v: Option<&Value>, path: &str) -> Result<(), String> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => match items.iter().position(|x| !x.is_object()) {
            Some(i) => Err(format!(
                "Invalid representation: {path}[{i}] is not an object"
            )),
            None => Ok(()),
        },
        Some(_) => Err(format!("Invalid representation: {path} is not an array")),
    }
}

fn subgroups(groups: Option<&Value>, path: &str) -> Result<(), String> {
    for (i, g) in groups
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("{path}[{i}].subGroups");
        objects(g.get("subGroups"), &p)?;
        subgroups(g.get("subGroups"), &p)?;
    }
    Ok(())
}

pub(super) fn take_array(m: &mut Map<String, Value>, k: &str) -> Vec<Value> {
    match m.remove(k) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

pub(super) fn ensure_id(v: &mut Value) {
    if v.get("id").and_then(Value::as_str).is_none() {
        v["id"] = json!(new_id());
    }
}

pub(super) fn fix_groups(groups: &mut [Value], parent: &str) {
    for g in groups.iter_mut() {
        ensure_id(g);
        let path = format!("{parent}/{}", g["name"].as_str().unwrap_or(""));
        g["path"] = json!(path);
        if g.get("subGroups").and_then(Value::as_array).is_none() {
            g["subGroups"] = json!([]);
        }
        if let Some(a) = g["subGroups"].as_array_mut() {
            fix_groups(a, &path);
        }
    }
}

pub(super) fn new_client(mut c: Value, realm: &mut Realm, realm_name: &str) -> Value {
    ensure_id(&mut c);
    let cid = c["clientId"].as_str().unwrap_or("").to_string();
    let confidential = !c["publicClient"].as_bool().unwrap_or(false)
        && !c["bearerOnly"].as_bool().unwrap_or(false);
    if confidential && c.get("secret").and_then(Value::as_str).is_none() {
        c["secret"] = json!(format!("generated-{}", new_id()));
    }
    if c["serviceAccountsEnabled"].as_bool() == Some(true)
        && !realm
            .users
            .iter()
            .any(|u| u["serviceAccountClientId"].as_str() == Some(&cid))
    {
        realm.users.push(json!({
            "id": new_id(),
            "username": format!("service-account-{}", cid.to_lowercase()),
            "enabled": true,
            "serviceAccountClientId": cid,
            "createdTimestamp": now_ms(),
            "realmRoles": [format!("default-roles-{realm_name}")],
        }));
    }
    c
}

pub(super) fn store_user(mut u: Value) -> Value {
    ensure_id(&mut u);
    if u.get("createdTimestamp").is_none() {
        u["createdTimestamp"] = json!(now_ms());
    }
    if let Some(creds) = u.get_mut("credentials").and_then(Value::as_array_mut) {
        for c in creds.iter_mut() {
            if let Some(m) = c.as_object_mut() {
                if m.remove("value").is_some() {
                    m.insert("hashedSaltedValue".into(), json!("pbkdf2-sha512$fake"));
                }
                m.entry("id").or_insert_with(|| json!(new_id()));
                m.entry("createdDate").or_insert_with(|| json!(now_ms()));
            }
        }
    }
    u
}

pub(super) fn import_realm(rep: Value) -> Result<Realm, String> {
    let Value::Object(mut m) = rep else {
        return Err("not an object".into());
    };
    let name = m
        .get("realm")
        .and_then(Value::as_str)
        .ok_or("no realm name")?
        .to_string();
    let mut realm = Realm::default();
    let roles = m.remove("roles").unwrap_or(json!({}));
    realm.realm_roles = roles["realm"].as_array().cloned().unwrap_or_default();
    let default_role = format!("default-roles-{name}");
    if !realm
        .realm_roles
        .iter()
        .any(|r| r["name"] == json!(default_role))
    {
        realm
            .realm_roles
            .push(json!({"name": default_role, "composite": true, "description": "${role_default-roles}"}));
    }
    for r in realm.realm_roles.iter_mut() {
        ensure_id(r);
    }
    if let Some(cr) = roles["client"].as_object() {
        for (c, list) in cr {
            let mut list = list.as_array().cloned().unwrap_or_default();
            for r in list.iter_mut() {
                ensure_id(r);
            }
            realm.client_roles.insert(c.clone(), list);
        }
    }
    realm.groups = take_array(&mut m, "groups");
    fix_groups(&mut realm.groups, "");
    let users = take_array(&mut m, "users");
    realm.users = users.into_iter().map(store_user).collect();
    for c in take_array(&mut m, "clients") {
        let c = new_client(c, &mut realm, &name);
        realm.clients.push(c);
    }
    realm.idps = take_array(&mut m, "identityProviders");
    for i in realm.idps.iter_mut() {
        i["internalId"] = i.get("internalId").cloned().unwrap_or(json!(new_id()));
    }
    realm.idp_mappers = take_array(&mut m, "identityProviderMappers");
    for i in realm.idp_mappers.iter_mut() {
        ensure_id(i);
    }
    if m.get("id").is_none() {
        m.insert("id".into(), json!(new_id()));
    }
    realm.settings = m;
    Ok(realm)
}

pub(super) fn full_rep(r: &Realm) -> Value {
    let mut m = r.settings.clone();
    m.insert("clients".into(), json!(r.clients));
    m.insert(
        "roles".into(),
        json!({"realm": r.realm_roles, "client": r.client_roles}),
    );
    m.insert("groups".into(), json!(r.groups));
    m.insert("users".into(), json!(r.users));
    m.insert("identityProviders".into(), json!(r.idps));
    m.insert("identityProviderMappers".into(), json!(r.idp_mappers));
    Value::Object(m)
}

pub(super) const PROFILE_TYPE: &str = "org.keycloak.userprofile.UserProfileProvider";

/// The declarative user-profile configuration stored as a realm component.
pub(super) fn user_profile(r: &Realm) -> Option<Value> {
    let text = r.settings.get("components")?[PROFILE_TYPE][0]["config"]["kc.user.profile.config"]
        [0]
    .as_str()?
    .to_string();
    serde_json::from_str(&text).ok()
}

pub(super) fn is_vault(s: &str) -> bool {
    s.starts_with("${vault.") && s.ends_with('}')
}

pub(super) fn mask(v: &mut Value) {
    if let Some(s) = v.as_str() {
        if !is_vault(s) {
            *v = json!(MASK);
        }
    }
}

/// What `partial-export?exportClients=true&exportGroupsAndRoles=true` answers.
pub(super) fn partial_export(r: &Realm, clients: bool, groups_roles: bool) -> Value {
    let mut m = r.settings.clone();
    if let Some(smtp) = m.get_mut("smtpServer") {
        if smtp.get("password").is_some() {
            mask(&mut smtp["password"]);
        }
    }
    if let Some(Value::Object(types)) = m.get_mut("components") {
        for (ptype, list) in types.iter_mut() {
            for c in list.as_array_mut().into_iter().flatten() {
                let provider = c["providerId"].as_str().unwrap_or("").to_string();
                let Some(cfg) = c.get_mut("config").and_then(Value::as_object_mut) else {
                    continue;
                };
                if ptype == "org.keycloak.keys.KeyProvider" {
                    for k in [
                        "privateKey",
                        "certificate",
                        "secret",
                        "keystorePassword",
                        "keyPassword",
                    ] {
                        cfg.remove(k);
                    }
                } else if provider == "ldap" {
                    if let Some(Value::Array(a)) = cfg.get_mut("bindCredential") {
                        a.iter_mut().for_each(mask);
                    }
                }
            }
        }
    }
    let mut idps = r.idps.clone();
    for i in idps.iter_mut() {
        if i["config"].get("clientSecret").is_some() {
            mask(&mut i["config"]["clientSecret"]);
        }
    }
    m.insert("identityProviders".into(), json!(idps));
    m.insert("identityProviderMappers".into(), json!(r.idp_mappers));
    if clients {
        let mut cs = r.clients.clone();
        for c in cs.iter_mut() {
            if c.get("secret").is_some() {
                mask(&mut c["secret"]);
            }
            if c["attributes"].get("client.secret.rotated").is_some() {
                mask(&mut c["attributes"]["client.secret.rotated"]);
            }
        }
        m.insert("clients".into(), json!(cs));
        let sa: Vec<Value> = r
            .users
            .iter()
            .filter(|u| u.get("serviceAccountClientId").is_some())
            .map(|u| {
                let mut u = u.clone();
                u.as_object_mut().map(|m| m.remove("credentials"));
                u
            })
            .collect();
        m.insert("users".into(), json!(sa));
    }
    if groups_roles {
        m.insert(
            "roles".into(),
            json!({"realm": r.realm_roles, "client": r.client_roles}),
        );
        m.insert("groups".into(), json!(r.groups));
    }
    Value::Object(m)
}

pub(super) const USER_INTERNAL: [&str; 5] = [
    "credentials",
    "realmRoles",
    "clientRoles",
    "groups",
    "federatedIdentities",
];

pub(super) fn user_view(u: &Value, brief: bool) -> Value {
    let mut v = u.clone();
    if let Some(m) = v.as_object_mut() {
        for k in USER_INTERNAL {
            m.remove(k);
        }
        if brief {
            m.remove("attributes");
        }
        m.entry("totp").or_insert(json!(false));
        m.entry("emailVerified").or_insert(json!(false));
        m.entry("requiredActions").or_insert(json!([]));
        m.entry("notBefore").or_insert(json!(0));
        m.insert(
            "access".into(),
            json!({"manageGroupMembership": true, "view": true, "mapRoles": true, "impersonate": false, "manage": true}),
        );
    }
    v
}

pub(super) fn find_group<'a>(groups: &'a [Value], path: &str) -> Option<&'a Value> {
    for g in groups {
        if g["path"].as_str() == Some(path) {
            return Some(g);
        }
        if let Some(f) = g["subGroups"].as_array().and_then(|s| find_group(s, path)) {
            return Some(f);
        }
    }
    None
}
