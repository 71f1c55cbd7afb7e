//! What Keycloak withholds from a REST export, and stripping masks before restore.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The value Keycloak substitutes for secrets in exports (`StripSecretsUtils`).
pub const MASK: &str = "**********";

/// Which fields of an export were masked by the server or are absent from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedactionReport {
    /// Paths of values the server replaced by `**********`, e.g.
    /// `clients[stoa-api].secret`, `identityProviders[corp].config.clientSecret`,
    /// `smtpServer.password`, `components[ldap].config.bindCredential`.
    pub masked: Vec<String>,
    /// Data the export cannot contain, e.g. user credentials and realm keys.
    pub absent: Vec<String>,
}

impl RedactionReport {
    /// Whether nothing was masked or left out.
    pub fn is_empty(&self) -> bool {
        self.masked.is_empty() && self.absent.is_empty()
    }

    /// One warning line per entry, for verifiers and restore reports: each masked value
    /// with what to do about it after a restore (the remedy of its kind; `{realm}` and
    /// `{id}` stand for the realm and the object's id).
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .masked
            .iter()
            .map(|p| {
                format!(
                    "{p} was masked by Keycloak (value not in the backup): {}",
                    remedy(p, None)
                )
            })
            .collect();
        w.extend(
            self.absent
                .iter()
                .map(|a| format!("not in the backup: {a}")),
        );
        w
    }
}

/// The kinds of masked values, each set again its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MaskedField<'a> {
    /// `clients[<clientId>].secret`: Keycloak can generate a new one.
    ClientSecret(&'a str),
    /// `clients[<clientId>].attributes.client.secret.rotated`: the previous secret kept
    /// during a rotation.
    RotatedClientSecret(&'a str),
    /// `identityProviders[<alias>].config.clientSecret`: issued by the provider.
    IdentityProviderSecret(&'a str),
    /// `components.org.keycloak.storage.UserStorageProvider[<name>].config.bindCredential`:
    /// the LDAP bind DN's password.
    LdapBindCredential(&'a str),
    /// `smtpServer.password`: the mail server's credentials.
    SmtpPassword,
    /// Another secret setting of a component (`components.<type>[<name>].config.<key>`).
    ComponentSetting { name: &'a str, key: &'a str },
    /// Anything else.
    Other,
}

/// `inner` when `path` is `<prefix>[<inner>]<suffix>`.
fn between<'a>(path: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(suffix)?
        .strip_suffix(']')
}

fn masked_field(path: &str) -> MaskedField<'_> {
    if path == "smtpServer.password" {
        return MaskedField::SmtpPassword;
    }
    if let Some(c) = between(path, "clients", ".secret") {
        return MaskedField::ClientSecret(c);
    }
    if let Some(c) = between(path, "clients", ".attributes.client.secret.rotated") {
        return MaskedField::RotatedClientSecret(c);
    }
    if let Some(a) = between(path, "identityProviders", ".config.clientSecret") {
        return MaskedField::IdentityProviderSecret(a);
    }
    const LDAP: &str = "components.org.keycloak.storage.UserStorageProvider";
    if let Some(n) = between(path, LDAP, ".config.bindCredential") {
        return MaskedField::LdapBindCredential(n);
    }
    if let Some(rest) = path.strip_prefix("components.") {
        if let (Some(open), Some(close)) = (rest.find('['), rest.rfind("].config.")) {
            if open < close {
                return MaskedField::ComponentSetting {
                    name: &rest[open + 1..close],
                    key: &rest[close + "].config.".len()..],
                };
            }
        }
    }
    MaskedField::Other
}

/// What to do about the masked value at `path` (one of [`masked_paths`]) once the realm
/// is restored: each kind is set again its own way. `realm` names the realm in the admin
/// calls given (`{realm}` when unknown).
pub(crate) fn remedy(path: &str, realm: Option<&str>) -> String {
    let realm = realm.unwrap_or("{realm}");
    match masked_field(path) {
        MaskedField::ClientSecret(c) => format!(
            "regenerate the secret of client '{c}' (POST /admin/realms/{realm}/clients/{{id}}/client-secret) \
             and give the new one to the applications using the client"
        ),
        MaskedField::RotatedClientSecret(c) => format!(
            "the rotated (previous) secret of client '{c}' cannot be restored: applications still \
             using it must switch to the client's current secret"
        ),
        MaskedField::IdentityProviderSecret(a) => format!(
            "copy the client secret from the identity provider '{a}' (the client registered there \
             for this realm) and set it with PUT /admin/realms/{realm}/identity-provider/instances/{a}"
        ),
        MaskedField::LdapBindCredential(n) => format!(
            "set the bind credential of user federation '{n}' again: the password of its bind DN, \
             from the LDAP administrator (PUT /admin/realms/{realm}/components/{{id}})"
        ),
        MaskedField::SmtpPassword => format!(
            "set the SMTP password again with the mail server's credentials (PUT \
             /admin/realms/{realm} with smtpServer.password)"
        ),
        MaskedField::ComponentSetting { name, key } => format!(
            "set '{key}' of component '{name}' again from where it was issued (PUT \
             /admin/realms/{realm}/components/{{id}})"
        ),
        MaskedField::Other => "set it again from where it was issued".to_string(),
    }
}

/// A readable label for an array element: its `clientId`, `alias`, `username`, `name`.
fn label(v: &Value, index: usize) -> String {
    for k in ["clientId", "alias", "username", "name", "id"] {
        if let Some(s) = v.get(k).and_then(Value::as_str) {
            return s.to_string();
        }
    }
    index.to_string()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn is_mask(v: &Value) -> bool {
    v.as_str() == Some(MASK)
}

/// Every path in `value` holding the mask (directly, or as the only element of a
/// component-config array).
pub fn masked_paths(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

fn walk(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                let p = join(path, k);
                if is_mask(v) || v.as_array().is_some_and(|a| a.iter().any(is_mask)) {
                    out.push(p);
                } else {
                    walk(v, &p, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                walk(v, &format!("{path}[{}]", label(v, i)), out);
            }
        }
        _ => {}
    }
}

/// Removes every masked value (object keys, and mask elements of arrays; arrays left empty
/// are removed) so no mask is ever sent back to the server as a value. Returns the paths.
pub fn strip_masked(value: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    strip(value, "", &mut out);
    out
}

fn strip(value: &mut Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let p = join(path, &k);
                let v = m.get_mut(&k).expect("key listed");
                if is_mask(v) {
                    m.remove(&k);
                    out.push(p);
                } else if let Some(a) = v.as_array_mut().filter(|a| a.iter().any(is_mask)) {
                    a.retain(|x| !is_mask(x));
                    if a.is_empty() {
                        m.remove(&k);
                    }
                    out.push(p);
                } else {
                    strip(v, &p, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                let l = label(v, i);
                strip(v, &format!("{path}[{l}]"), out);
            }
        }
        _ => {}
    }
}

/// Key providers (`org.keycloak.keys.KeyProvider` components) of a realm representation:
/// their key material is never exported over REST.
pub fn key_providers(realm: &Value) -> Vec<String> {
    realm["components"]["org.keycloak.keys.KeyProvider"]
        .as_array()
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(i, c)| {
                    format!(
                        "{} ({})",
                        label(c, i),
                        c["providerId"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The redaction report of a partial export, plus what is absent by construction.
pub fn report_for(realm: &Value, users_with_credentials: &Map<String, Value>) -> RedactionReport {
    let mut masked = masked_paths(realm);
    masked.sort();
    let mut absent = Vec::new();
    let keys = key_providers(realm);
    absent.push(if keys.is_empty() {
        "realm keys: private keys and certificates are never exported over REST; a realm \
         rebuilt from this backup gets new keys and previously issued tokens become invalid"
            .to_string()
    } else {
        format!(
            "realm keys: private keys and certificates of key providers {} (a realm rebuilt from \
             this backup gets new keys; previously issued tokens become invalid)",
            keys.join(", ")
        )
    });
    let total: u64 = users_with_credentials
        .values()
        .filter_map(Value::as_u64)
        .sum();
    if total > 0 {
        let by: Vec<String> = users_with_credentials
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        absent.push(format!(
            "user credentials: secrets of {total} credentials ({}) — password hashes, OTP \
             secrets and WebAuthn keys cannot be read over REST (use kc.sh export)",
            by.join(", ")
        ));
    } else {
        absent.push(
            "user credentials: password hashes, OTP secrets and WebAuthn keys cannot be read \
             over REST (use kc.sh export)"
                .to_string(),
        );
    }
    absent.push("user sessions and offline tokens".to_string());
    RedactionReport { masked, absent }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_masked_field_kind_has_its_own_remedy() {
        let cases = [
            ("clients[stoa-api].secret", "regenerate the secret of client 'stoa-api'"),
            (
                "clients[stoa-api].attributes.client.secret.rotated",
                "rotated (previous) secret of client 'stoa-api' cannot be restored",
            ),
            (
                "identityProviders[corp].config.clientSecret",
                "copy the client secret from the identity provider 'corp'",
            ),
            (
                "components.org.keycloak.storage.UserStorageProvider[corp-ldap].config.bindCredential",
                "bind credential of user federation 'corp-ldap' again",
            ),
            ("smtpServer.password", "SMTP password"),
            (
                "components.org.keycloak.keys.KeyProvider[hmac].config.secret",
                "set 'secret' of component 'hmac' again",
            ),
            ("attributes.custom", "set it again"),
        ];
        for (path, wanted) in cases {
            let r = remedy(path, Some("stoa"));
            assert!(r.contains(wanted), "{path}: {r}");
            let regenerates = r.contains("regenerate");
            assert_eq!(
                regenerates,
                path.ends_with("].secret") && path.starts_with("clients"),
                "{path}: {r}"
            );
        }
        assert!(remedy("clients[a].secret", Some("stoa"))
            .contains("/admin/realms/stoa/clients/{id}/client-secret"));
        assert!(remedy("identityProviders[corp].config.clientSecret", None)
            .contains("PUT /admin/realms/{realm}/identity-provider/instances/corp"));
    }

    #[test]
    fn finds_and_strips_masks() {
        let mut v = json!({
            "clients": [{"clientId": "a", "secret": MASK, "attributes": {"client.secret.rotated": MASK}},
                        {"clientId": "b", "publicClient": true}],
            "identityProviders": [{"alias": "corp", "config": {"clientSecret": MASK, "clientId": "x"}}],
            "smtpServer": {"host": "h", "password": MASK},
            "components": {"org.keycloak.storage.UserStorageProvider": [
                {"name": "ldap", "config": {"bindCredential": [MASK], "vault": ["${vault.x}"]}}]}
        });
        let mut paths = masked_paths(&v);
        paths.sort();
        assert_eq!(
            paths,
            [
                "clients[a].attributes.client.secret.rotated",
                "clients[a].secret",
                "components.org.keycloak.storage.UserStorageProvider[ldap].config.bindCredential",
                "identityProviders[corp].config.clientSecret",
                "smtpServer.password",
            ]
        );
        let stripped = strip_masked(&mut v);
        assert_eq!(stripped.len(), 5);
        assert!(masked_paths(&v).is_empty());
        assert!(!v.to_string().contains(MASK));
        assert_eq!(v["identityProviders"][0]["config"]["clientId"], "x");
        assert_eq!(
            v["components"]["org.keycloak.storage.UserStorageProvider"][0]["config"]["vault"][0],
            "${vault.x}"
        );
    }
}
