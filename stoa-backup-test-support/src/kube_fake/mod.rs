//! A fake Kubernetes API server over real HTTP on loopback, for tests with the real `kube`
//! client.
//!
//! It follows `shared/api-contracts.md` §5: discovery (`/api`, `/apis`,
//! `/apis/<group>/<version>`, plain or aggregated `APIGroupDiscoveryList` depending on the
//! `Accept` header), list with `limit`/`continue` (and 410 `Expired` for stale tokens),
//! get, create, replace, merge patch, server-side apply (`fieldManager`, `force`,
//! `dryRun=All`, field-ownership conflicts), delete (finalizers honoured), label and field
//! selectors, namespaces (namespaced writes need the namespace: 404 otherwise; stored
//! Namespaces get the `kubernetes.io/metadata.name` label and phase `Active`), Secrets and
//! ConfigMaps, ServiceAccounts, PersistentVolumeClaims, CronJobs, Jobs, Roles,
//! ClusterRoles and their bindings, `coordination.k8s.io/v1` Leases (409 on a create of an
//! existing name or a replace at a stale `resourceVersion`) (built-in objects validated as
//! the API server does,
//! dry runs included: see `store/builtins`), `Status` error bodies with the right codes
//! (404 for types no CRD serves), CustomResourceDefinitions that become `Established`
//! after a configurable delay (or never), custom resources validated against their CRD's `openAPIV3Schema` on every write,
//! dry runs included (422 `Invalid` with one cause per violation; see `store/schema.rs` for
//! what is checked), bearer-token authentication,
//! injected faults, a request log, and pod exec over the `v5.channel.k8s.io` /
//! `v4.channel.k8s.io` websocket subprotocols running a local command.
//!
//! ```no_run
//! # async fn demo() {
//! use stoa_backup_test_support::kube_fake::FakeKube;
//! let fake = FakeKube::start().await;
//! fake.load_fixture_crds();
//! let client = fake.client();
//! # let _ = client;
//! # }
//! ```

mod exec;
pub mod kcsh;
mod server;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use store::{ApiError, Store};

/// One request the fake received, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method (`GET`, `PATCH`…).
    pub method: String,
    /// The path, e.g. `/apis/gostoa.dev/v1alpha1/namespaces/t/tools/x`.
    pub path: String,
    /// The raw query string (without `?`), e.g. `fieldManager=stoa-backup&force=true`.
    pub query: String,
    /// The request's Content-Type, if any.
    pub content_type: Option<String>,
    /// The status code answered (0 while the request is still being served).
    pub status: u16,
}

impl RequestRecord {
    /// Whether the query string holds `key=value` (exact, undecoded).
    pub fn has_param(&self, key: &str, value: &str) -> bool {
        self.query.split('&').any(|p| p == format!("{key}={value}"))
    }

    /// `METHOD path?query`, for messages.
    pub fn line(&self) -> String {
        if self.query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, self.query)
        }
    }
}

/// A fault answered instead of the real response for matching requests.
#[derive(Debug, Clone)]
pub struct FaultRule {
    method: Option<String>,
    path_is: Option<String>,
    path_contains: Option<String>,
    query_contains: Option<String>,
    error: ApiErrorSpec,
    remaining: Option<usize>,
    user: Option<String>,
}

#[derive(Debug, Clone)]
struct ApiErrorSpec {
    code: u16,
    reason: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl FaultRule {
    /// A fault with any code, reason and message.
    pub fn status(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        FaultRule {
            method: None,
            path_is: None,
            path_contains: None,
            query_contains: None,
            error: ApiErrorSpec {
                code,
                reason,
                message: message.into(),
                retry_after: None,
            },
            remaining: None,
            user: None,
        }
    }

    /// 401 `Unauthorized`, as the API server answers a bad or expired token.
    pub fn unauthorized() -> Self {
        Self::status(401, "Unauthorized", "Unauthorized")
    }

    /// 403 `Forbidden` with the API server's RBAC message for `user`, e.g. `tools.gostoa.dev
    /// is forbidden: User "system:serviceaccount:stoa:backup" cannot list resource "tools" in
    /// API group "gostoa.dev" at the cluster scope`.
    pub fn forbidden(user: &str) -> Self {
        let mut rule = Self::status(403, "Forbidden", "forbidden");
        rule.user = Some(user.to_string());
        rule
    }

    /// 500 `InternalError`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::status(500, "InternalError", message)
    }

    /// Only requests with this method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests for exactly this path.
    pub fn path_is(mut self, path: &str) -> Self {
        self.path_is = Some(path.to_string());
        self
    }

    /// Only requests whose path contains this text.
    pub fn path_contains(mut self, text: &str) -> Self {
        self.path_contains = Some(text.to_string());
        self
    }

    /// Only requests whose raw query contains this text.
    pub fn query_contains(mut self, text: &str) -> Self {
        self.query_contains = Some(text.to_string());
        self
    }

    /// Applies to the next `n` matching requests only (default: all).
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Adds a `Retry-After` header (for 429/503).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.error.retry_after = Some(secs);
        self
    }

    fn matches(&self, method: &str, path: &str, query: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.path_is.as_deref().is_none_or(|p| p == path)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
            && self
                .query_contains
                .as_deref()
                .is_none_or(|q| query.contains(q))
            && self.remaining != Some(0)
    }

    fn to_error(&self, method: &str, path: &str) -> ApiError {
        let mut e = ApiError::new(
            self.error.code,
            self.error.reason,
            self.error.message.clone(),
        );
        if self.error.reason == "Forbidden" {
            if let Some(user) = &self.user {
                let (message, details) = server::forbidden_message(method, path, user);
                e.message = message;
                e.details = Some(details);
            }
        }
        e.retry_after = self.error.retry_after;
        e
    }
}

/// What an exec request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container (the pod's first when not given).
    pub container: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Whether stdin was requested.
    pub stdin: bool,
    /// Whether stdout was requested.
    pub stdout: bool,
    /// Whether stderr was requested.
    pub stderr: bool,
    /// Whether a TTY was requested.
    pub tty: bool,
}

/// Maps an exec request to the local command line to run (`Err` fails the exec with that
/// message on the status channel).
pub type ExecHandler = Arc<dyn Fn(&ExecRequest) -> Result<Vec<String>, String> + Send + Sync>;

pub(crate) struct ExecConfig {
    handler: ExecHandler,
    protocols: Vec<&'static str>,
}

pub(crate) struct Shared {
    store: Mutex<Store>,
    log: Mutex<Vec<RequestRecord>>,
    faults: Mutex<Vec<FaultRule>>,
    token: Mutex<Option<String>>,
    exec: Mutex<ExecConfig>,
    exec_log: Mutex<Vec<ExecRequest>>,
    port: u16,
}

impl Shared {
    fn take_fault(&self, method: &str, path: &str, query: &str) -> Option<ApiError> {
        let mut faults = self.faults.lock().expect("faults");
        let rule = faults.iter_mut().find(|f| f.matches(method, path, query))?;
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        Some(rule.to_error(method, path))
    }
}

/// Options for [`FakeKube::start_with`].
#[derive(Debug, Clone, Default)]
pub struct FakeKubeOptions {
    /// Require `Authorization: Bearer <token>` on every request (401 otherwise).
    pub token: Option<String>,
    /// How long a newly created CRD takes to become Established; `None` in
    /// [`FakeKubeOptions::never_establish`] means never. Default: immediately.
    pub established_delay: Duration,
    /// CRDs never become Established (to test timeouts).
    pub never_establish: bool,
}

/// The fake API server. Stops serving when dropped.
pub struct FakeKube {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKube")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The directory of the STOA fixtures (see [`crate::fixtures`]).
pub fn fixtures_dir() -> PathBuf {
    crate::fixtures::stoa_dir()
}

/// Parses a (multi-document) YAML text into JSON values, skipping empty documents.
pub fn parse_yaml_documents(text: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("invalid YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

impl FakeKube {
    /// Starts a fake on `127.0.0.1` with a random port, no auth, CRDs Established at once.
    pub async fn start() -> Self {
        Self::start_with(FakeKubeOptions::default()).await
    }

    /// Starts a fake with options.
    pub async fn start_with(options: FakeKubeOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let delay = if options.never_establish {
            None
        } else {
            Some(options.established_delay)
        };
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(delay)),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            token: Mutex::new(options.token),
            exec: Mutex::new(ExecConfig {
                handler: Arc::new(|r: &ExecRequest| Ok(r.command.clone())),
                protocols: vec!["v5.channel.k8s.io", "v4.channel.k8s.io"],
            }),
            exec_log: Mutex::new(Vec::new()),
            port: addr.port(),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| server::handle(s.clone(), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .with_upgrades();
                    conn.await.ok();
                });
            }
        });
        FakeKube { shared, addr, task }
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube::Config` pointing at the fake (default namespace `default`, client retries
    /// off so injected 5xx answers show at once), authenticating with the configured token.
    pub fn config(&self) -> kube::Config {
        let token = self.shared.token.lock().expect("token").clone();
        let mut cfg = kube::Config::new(self.url().parse().expect("url"));
        cfg.default_namespace = "default".into();
        cfg.default_retry = false;
        cfg.connect_timeout = Some(Duration::from_secs(5));
        cfg.read_timeout = Some(Duration::from_secs(30));
        if let Some(t) = token {
            cfg.headers.push((
                http_auth(),
                format!("Bearer {t}").parse().expect("header value"),
            ));
        }
        cfg
    }

    /// A ready `kube::Client` for the fake.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("kube client for the fake")
    }

    /// A client sending `token` (for authentication tests).
    pub fn client_with_token(&self, token: &str) -> kube::Client {
        let mut cfg = self.config();
        cfg.headers.retain(|(k, _)| *k != http_auth());
        cfg.headers.push((
            http_auth(),
            format!("Bearer {token}").parse().expect("header value"),
        ));
        kube::Client::try_from(cfg).expect("kube client for the fake")
    }

    /// Requires `token` from now on (`None`: no authentication).
    pub fn set_token(&self, token: Option<&str>) {
        *self.shared.token.lock().expect("token") = token.map(str::to_string);
    }

    /// How long CRDs created from now on take to become Established (`None`: never).
    pub fn set_established_delay(&self, delay: Option<Duration>) {
        self.shared.store.lock().expect("store").established_delay = delay;
    }

    /// Makes every continue token issued so far answer 410 `Expired`.
    pub fn expire_continue_tokens(&self) {
        let mut store = self.shared.store.lock().expect("store");
        let rv = store.resource_version() + 1;
        store.min_continue_rv = rv;
    }

    /// Adds a fault rule (checked in order, before routing).
    pub fn inject(&self, rule: FaultRule) {
        self.shared.faults.lock().expect("faults").push(rule);
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().expect("faults").clear();
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.lock().expect("log").clone()
    }

    /// Clears the request log.
    pub fn clear_requests(&self) {
        self.shared.log.lock().expect("log").clear();
    }

    /// Sets how exec requests map to local commands (default: run the requested command
    /// line as is).
    pub fn set_exec_handler(
        &self,
        handler: impl Fn(&ExecRequest) -> Result<Vec<String>, String> + Send + Sync + 'static,
    ) {
        self.shared.exec.lock().expect("exec").handler = Arc::new(handler);
    }

    /// Restricts the websocket subprotocols the fake accepts for exec (e.g. only
    /// `v4.channel.k8s.io`). Default: v5, then v4.
    pub fn set_exec_protocols(&self, protocols: &[&'static str]) {
        self.shared.exec.lock().expect("exec").protocols = protocols.to_vec();
    }

    /// The exec requests received so far.
    pub fn exec_requests(&self) -> Vec<ExecRequest> {
        self.shared.exec_log.lock().expect("exec log").clone()
    }

    /// Stores an object as a controller would: `status` kept, server fields (uid,
    /// resourceVersion, creationTimestamp, generation, managedFields) filled, fields owned
    /// by `manager`; the namespace is created if missing; CRDs become Established at once.
    /// Returns the stored object as the API serves it.
    ///
    /// # Panics
    /// If the object's apiVersion/kind is not served.
    pub fn put_as(&self, object: Value, manager: &str) -> Value {
        let mut store = self.shared.store.lock().expect("store");
        store.tick();
        let av = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let rt = store
            .find_type_by_kind(av, kind)
            .unwrap_or_else(|| panic!("the fake serves no {av} {kind}"));
        store.put_raw(&rt, object, manager, true)
    }

    /// [`FakeKube::put_as`] with the manager `kubectl`.
    pub fn put(&self, object: Value) -> Value {
        self.put_as(object, "kubectl")
    }

    /// Stores every document of a YAML text (see [`FakeKube::put`]).
    pub fn put_yaml(&self, text: &str) -> Vec<Value> {
        parse_yaml_documents(text)
            .into_iter()
            .map(|d| self.put(d))
            .collect()
    }

    /// Loads the five STOA CRDs of the fixtures' `crds/` (Established at once).
    pub fn load_fixture_crds(&self) -> Vec<Value> {
        self.load_fixture_files(|name| name.ends_with(".gostoa.dev.yaml"))
    }

    /// Loads the two example resources of the fixtures' `crds/` (a Tool and a
    /// ToolSet in `tenant-acme`; the namespace is created).
    pub fn load_fixture_resources(&self) -> Vec<Value> {
        self.load_fixture_files(|name| !name.ends_with(".gostoa.dev.yaml"))
    }

    fn load_fixture_files(&self, pick: impl Fn(&str) -> bool) -> Vec<Value> {
        let files: Vec<PathBuf> = crate::fixtures::files("crds", "yaml")
            .into_iter()
            .filter(|p| pick(&p.file_name().unwrap_or_default().to_string_lossy()))
            .collect();
        let mut out = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
            out.extend(self.put_yaml(&text));
        }
        out
    }

    /// Adds a running pod with the given containers (for exec).
    pub fn add_pod(&self, namespace: &str, name: &str, containers: &[&str]) -> Value {
        let containers: Vec<Value> = containers
            .iter()
            .map(|c| json!({"name": c, "image": format!("{c}:latest")}))
            .collect();
        self.put(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": containers},
            "status": {"phase": "Running"},
        }))
    }

    /// The object as the API would serve it, if present.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let mut store = self.shared.store.lock().expect("store");
        store.tick();
        let rt = store.find_type_by_kind(api_version, kind)?;
        store.get(&rt, namespace.unwrap_or_default(), name)
    }

    /// All objects of a kind (all namespaces), sorted by namespace/name.
    pub fn objects(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let mut store = self.shared.store.lock().expect("store");
        store.tick();
        match store.find_type_by_kind(api_version, kind) {
            Some(rt) => store.list(&rt, None).into_iter().map(|(_, v)| v).collect(),
            None => Vec::new(),
        }
    }

    /// Removes an object at once (finalizers ignored). Returns whether it existed.
    pub fn remove(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        let mut store = self.shared.store.lock().expect("store");
        match store.find_type_by_kind(api_version, kind) {
            Some(rt) => store
                .delete_raw(&rt, namespace.unwrap_or_default(), name)
                .is_some(),
            None => false,
        }
    }

    /// Forgets every object and CRD (as a freshly created cluster); the request log and
    /// faults are kept.
    pub fn wipe(&self) {
        self.shared.store.lock().expect("store").wipe();
    }

    /// Names of CRDs that are not Established yet.
    pub fn pending_crds(&self) -> Vec<String> {
        self.shared.store.lock().expect("store").crd_pending()
    }

    /// Whether the fake currently serves `group/version` (its CRDs are Established).
    pub fn serves(&self, group: &str, version: &str) -> bool {
        let mut store = self.shared.store.lock().expect("store");
        store.tick();
        !store.types_of(group, version).is_empty()
    }
}

fn http_auth() -> hyper::header::HeaderName {
    hyper::header::AUTHORIZATION
}

#[cfg(test)]
mod tests;
