//! A fake Keycloak (24–26, Quarkus paths without `/auth`) over real HTTP on loopback, for
//! tests of the Keycloak provider.
//!
//! It follows `shared/api-contracts.md` §1: the token endpoint (client credentials for the
//! admin client in `master` and for the confidential clients with service accounts a realm
//! holds, with their secret; password and refresh-token grants; access tokens expire),
//! `partial-export` with `StripSecretsUtils`-style masking (client secrets, rotated secrets,
//! IdP `clientSecret`, `smtpServer.password`, LDAP `bindCredential`; undeclared key-provider
//! settings dropped; `${vault.…}` references kept),
//! users paged with `first`/`max` (service accounts excluded,
//! `briefRepresentation`), `users/count`, per-user groups / role mappings / federated
//! identities / credential metadata, `POST /admin/realms` (409 when the realm exists),
//! `PUT /admin/realms/{realm}` (top-level settings only: flows, client scopes, components…
//! are left alone), `partialImport` with `FAIL` (one transaction, 409 on the first existing
//! resource) / `SKIP` / `OVERWRITE` (flows, client scopes and components ignored), 400
//! `{"errorMessage": …}` for a representation the server cannot read (no realm name, a
//! user, client, group or role that is not an object), the Keycloak error bodies, and
//! injected faults (401, 403, 404, 409,
//! 429 with `Retry-After`, 500).
//!
//! ```no_run
//! # async fn demo() {
//! use stoa_backup_test_support::keycloak_fake::FakeKeycloak;
//! let kc = FakeKeycloak::start().await; // realm `stoa` from the shared fixture
//! let (id, secret) = kc.client_credentials();
//! # let _ = (id, secret, kc.url());
//! # }
//! ```

mod http;
mod partial_import;
mod realm;
mod token;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use realm::{full_rep, import_realm};

/// The mask Keycloak puts in place of secrets.
pub const MASK: &str = "**********";

/// Path of the fixture realm (`stoa`).
pub fn fixture_realm_path() -> PathBuf {
    crate::fixtures::path("keycloak/keycloak-realm.json")
}

/// The fixture realm as JSON.
pub fn fixture_realm() -> Value {
    let text = crate::fixtures::read("keycloak/keycloak-realm.json");
    serde_json::from_str(&text).expect("fixture realm is JSON")
}

/// Options of a fake.
#[derive(Debug, Clone)]
pub struct FakeKeycloakOptions {
    /// Access-token lifespan (default 60 s, as the master realm).
    pub token_lifespan: Duration,
    /// Confidential admin client for client credentials.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// Admin user for the password grant (client `admin-cli`).
    pub admin_user: String,
    /// Its password.
    pub admin_password: String,
    /// Version reported by `/admin/serverinfo`.
    pub version: String,
    /// Load the fixture realm `stoa` at start.
    pub load_fixture: bool,
}

impl Default for FakeKeycloakOptions {
    fn default() -> Self {
        FakeKeycloakOptions {
            token_lifespan: Duration::from_secs(60),
            client_id: "stoa-backup".into(),
            client_secret: "backup-client-secret".into(),
            admin_user: "admin".into(),
            admin_password: "admin-password".into(),
            version: "26.0.5".into(),
            load_fixture: true,
        }
    }
}

/// One request the fake received.
pub use crate::http_fake::LoggedRequest as KcRequest;

/// An injected fault: requests matching answer `status` (with Keycloak's body for it).
pub use crate::http_fake::HttpFault as KcFault;

#[derive(Debug, Clone, Default)]
struct Realm {
    settings: Map<String, Value>,
    clients: Vec<Value>,
    realm_roles: Vec<Value>,
    client_roles: BTreeMap<String, Vec<Value>>,
    groups: Vec<Value>,
    users: Vec<Value>,
    idps: Vec<Value>,
    idp_mappers: Vec<Value>,
}

struct State {
    realms: BTreeMap<String, Realm>,
    tokens: HashMap<String, Instant>,
    refresh: HashMap<String, Instant>,
    /// Every access and refresh token ever issued (to grep logs for).
    issued: Vec<String>,
    revoke_every: Option<usize>,
    admin_calls: usize,
}

struct Shared {
    opts: FakeKeycloakOptions,
    state: Mutex<State>,
    log: Mutex<Vec<KcRequest>>,
    faults: Mutex<Vec<KcFault>>,
}

/// A running fake Keycloak; stops when dropped.
pub struct FakeKeycloak {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKeycloak {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeKeycloak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKeycloak")
            .field("addr", &self.addr)
            .finish()
    }
}

fn new_id() -> String {
    let a: u128 = rand::random();
    let h = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl FakeKeycloak {
    /// Starts a fake with the fixture realm `stoa` and default options.
    pub async fn start() -> Self {
        Self::start_with(FakeKeycloakOptions::default()).await
    }

    /// Starts a fake with no realm but `master`.
    pub async fn start_empty() -> Self {
        Self::start_with(FakeKeycloakOptions {
            load_fixture: false,
            ..Default::default()
        })
        .await
    }

    /// Starts a fake with options.
    pub async fn start_with(opts: FakeKeycloakOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let mut realms = BTreeMap::new();
        realms.insert(
            "master".to_string(),
            Realm {
                settings: json!({"id": "master", "realm": "master", "enabled": true})
                    .as_object()
                    .cloned()
                    .expect("object"),
                ..Default::default()
            },
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                realms,
                tokens: HashMap::new(),
                issued: Vec::new(),
                refresh: HashMap::new(),
                revoke_every: None,
                admin_calls: 0,
            }),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            opts: opts.clone(),
        });
        if opts.load_fixture {
            shared.state.lock().expect("state").realms.insert(
                "stoa".into(),
                import_realm(fixture_realm()).expect("fixture"),
            );
        }
        let task = crate::http_fake::spawn_server(listener, shared.clone(), http::handle);
        FakeKeycloak { shared, addr, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The admin client's id and secret (client credentials grant).
    pub fn client_credentials(&self) -> (String, String) {
        (
            self.shared.opts.client_id.clone(),
            self.shared.opts.client_secret.clone(),
        )
    }

    /// The admin user's name and password (password grant with `admin-cli`).
    pub fn admin_password(&self) -> (String, String) {
        (
            self.shared.opts.admin_user.clone(),
            self.shared.opts.admin_password.clone(),
        )
    }

    /// Creates (or replaces) a realm from a representation, as an import would.
    ///
    /// # Panics
    /// If the server would refuse the representation; the message is the `errorMessage`
    /// `POST /admin/realms` answers it with.
    pub fn load_realm(&self, rep: Value) {
        if let Err(e) = realm::check_representation(&rep, true) {
            panic!("load_realm: {e}");
        }
        let realm = import_realm(rep).unwrap_or_else(|e| panic!("load_realm: {e}"));
        let name = realm.settings["realm"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.shared
            .state
            .lock()
            .expect("state")
            .realms
            .insert(name, realm);
    }

    /// Whether a realm exists.
    pub fn has_realm(&self, realm: &str) -> bool {
        self.shared
            .state
            .lock()
            .expect("state")
            .realms
            .contains_key(realm)
    }

    /// The secret of a realm's client (as stored: given, or generated for a confidential
    /// client stored without one), to log in as it; `None` without such a realm, client or
    /// secret.
    pub fn client_secret(&self, realm: &str, client_id: &str) -> Option<String> {
        let st = self.shared.state.lock().expect("state");
        st.realms
            .get(realm)?
            .clients
            .iter()
            .find(|c| c["clientId"].as_str() == Some(client_id))?["secret"]
            .as_str()
            .map(str::to_string)
    }

    /// Number of regular (not service-account) users in a realm.
    pub fn user_count(&self, realm: &str) -> usize {
        let st = self.shared.state.lock().expect("state");
        st.realms.get(realm).map_or(0, |r| {
            r.users
                .iter()
                .filter(|u| u.get("serviceAccountClientId").is_none())
                .count()
        })
    }

    /// Adds `n` users `user-00000`… with a realm role, a group (when the realm has groups)
    /// and a password credential.
    pub fn add_users(&self, realm: &str, n: usize) {
        let mut st = self.shared.state.lock().expect("state");
        let r = st.realms.get_mut(realm).expect("realm");
        let role = r
            .realm_roles
            .first()
            .and_then(|x| x["name"].as_str())
            .map(str::to_string);
        let group = r
            .groups
            .first()
            .and_then(|x| x["path"].as_str())
            .map(str::to_string);
        for i in 0..n {
            let mut u = json!({
                "id": new_id(), "username": format!("user-{i:05}"),
                "email": format!("user-{i:05}@example.org"), "enabled": true,
                "emailVerified": false, "firstName": "User", "lastName": format!("{i}"),
                "createdTimestamp": now_ms(), "attributes": {"tenant": ["bulk"]},
                "requiredActions": [],
                "credentials": [{"type": "password", "hashedSaltedValue": "x", "salt": "y"}],
            });
            if let Some(role) = &role {
                u["realmRoles"] = json!([role]);
            }
            if let Some(g) = &group {
                u["groups"] = json!([g]);
            }
            r.users.push(u);
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<KcRequest> {
        self.shared.log.lock().expect("log").clone()
    }

    /// Injects a fault.
    pub fn fault(&self, f: KcFault) {
        self.shared.faults.lock().expect("faults").push(f);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().expect("faults").clear();
    }

    /// Invalidates every access token now (as if they all expired).
    pub fn expire_tokens(&self) {
        self.shared.state.lock().expect("state").tokens.clear();
    }

    /// Invalidates every access token after each `n` admin calls (tokens expiring during a
    /// long export).
    pub fn expire_tokens_every(&self, n: usize) {
        self.shared.state.lock().expect("state").revoke_every = Some(n);
    }

    /// Every access and refresh token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.state.lock().expect("state").issued.clone()
    }

    /// Number of successful token grants.
    pub fn token_grants(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.ends_with("/openid-connect/token") && r.status == 200)
            .count()
    }

    /// A full internal representation of a realm (users with their credentials,
    /// unmasked) — what a `kc.sh export` would give.
    pub fn realm_representation(&self, realm: &str) -> Option<Value> {
        let st = self.shared.state.lock().expect("state");
        st.realms.get(realm).map(full_rep)
    }
}
