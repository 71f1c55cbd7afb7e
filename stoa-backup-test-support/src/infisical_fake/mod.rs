//! A fake Infisical server over real HTTP on `127.0.0.1` (feature `infisical`).
//!
//! Follows `api-contracts.md` §4: universal-auth login (`expiresIn` seconds; an expired or
//! unknown token answers **403 `TokenError`**, a missing one 401), error bodies
//! `{"reqId","statusCode","message","error"}`, projects (`/api/v1/projects`, older
//! `/api/v1/workspace`) with environments and tags, created through the API too
//! (`POST /api/v1/projects` with Infisical's default environments unless
//! `shouldCreateDefaultEnvs` is false, `POST …/environments`, `POST …/tags`; duplicate slugs
//! → 400), schema errors as 422 `ValidationFailure` with a list of zod issues, folders (`/api/v2/folders` with
//! `projectId`, `/api/v1/folders` with `workspaceId`; parents must exist), secrets listing
//! (`/api/v4/secrets`, `/api/v3/secrets/raw`) with `recursive`, `include_imports` and
//! hidden values (`<hidden-by-infisical>`), batch create/update (`/api/v4/secrets/batch`,
//! `/api/v3/secrets/batch/raw`; an existing key fails a create with 400; `mode` `upsert`),
//! approval policies (200 `{"approval":…}`, nothing written) and 429 rate limiting.

mod http;
mod projects;
mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The value Infisical returns instead of a secret the identity may not read.
pub const HIDDEN: &str = "<hidden-by-infisical>";

/// One secret as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeSecret {
    /// Id.
    pub id: String,
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// Comment.
    pub comment: String,
    /// `shared` or `personal`.
    pub kind: String,
    /// Version (starts at 1).
    pub version: u64,
    /// Tag ids.
    pub tag_ids: Vec<String>,
    /// `secretMetadata` items.
    pub metadata: Vec<Value>,
    /// `skipMultilineEncoding`.
    pub skip_multiline: bool,
}

#[derive(Debug, Clone)]
struct Project {
    id: String,
    name: String,
    slug: String,
    envs: Vec<(String, String, String)>, // id, name, slug
    tags: Vec<Value>,
    /// env slug → folder paths (without "/").
    folders: BTreeMap<String, BTreeSet<String>>,
    /// env slug → (path, key) → secret.
    secrets: BTreeMap<String, BTreeMap<(String, String), FakeSecret>>,
    /// env slug → (path, imported env, imported path).
    imports: BTreeMap<String, Vec<(String, String, String)>>,
}

struct State {
    client_id: String,
    client_secret: String,
    token_ttl: Duration,
    tokens: BTreeMap<String, Instant>,
    logins: u64,
    projects: BTreeMap<String, Project>,
    hidden_keys: BTreeSet<String>,
    approval_paths: BTreeSet<(String, String)>,
    rate_limited: u64,
    rate_limit_hits: u64,
    requests: Vec<(String, String)>,
    next_id: u64,
}

impl State {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{:08x}-0000-4000-8000-{:012x}", self.next_id, self.next_id)
    }
}

/// The fake server; stops when dropped.
pub struct FakeInfisical {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeInfisical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeInfisical")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeInfisical {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Client id the fake accepts.
pub const CLIENT_ID: &str = "4c1f0a55-fake-4a11-9c1e-5d3b9f0e7a21";

fn norm_path(p: &str) -> String {
    let t = p.trim_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        format!("/{t}")
    }
}

fn parent_of(p: &str) -> String {
    match p.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => p[..i].to_string(),
    }
}

impl FakeInfisical {
    /// Starts a fake with one identity (client id [`CLIENT_ID`], a random client secret).
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            client_id: CLIENT_ID.into(),
            client_secret: format!("cs-{:032x}", rand::random::<u128>()),
            token_ttl: Duration::from_secs(7200),
            tokens: BTreeMap::new(),
            logins: 0,
            projects: BTreeMap::new(),
            hidden_keys: BTreeSet::new(),
            approval_paths: BTreeSet::new(),
            rate_limited: 0,
            rate_limit_hits: 0,
            requests: Vec::new(),
            next_id: 0,
        }));
        let task = crate::http_fake::spawn_server(listener, state.clone(), http::handle);
        FakeInfisical { state, addr, task }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("infisical state"))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The client secret of the identity.
    pub fn client_secret(&self) -> String {
        self.with(|s| s.client_secret.clone())
    }

    /// Lifetime of new access tokens (default 2 h).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.with(|s| s.token_ttl = ttl);
    }

    /// Expires every issued token now (the next call answers 403 `TokenError`).
    pub fn expire_tokens(&self) {
        self.with(|s| {
            let past = Instant::now() - Duration::from_secs(1);
            for t in s.tokens.values_mut() {
                *t = past;
            }
        });
    }

    /// Every token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.with(|s| s.tokens.keys().cloned().collect())
    }

    /// Logins so far.
    pub fn logins(&self) -> u64 {
        self.with(|s| s.logins)
    }

    /// Creates a project with environments (slugs); returns its id.
    pub fn add_project(&self, name: &str, envs: &[&str]) -> String {
        self.with(|s| {
            let id = s.id();
            let envs = envs
                .iter()
                .map(|e| (s.id(), e.to_uppercase(), e.to_string()))
                .collect();
            s.projects.insert(
                id.clone(),
                Project {
                    id: id.clone(),
                    name: name.into(),
                    slug: format!("{name}-x9k2"),
                    envs,
                    tags: Vec::new(),
                    folders: BTreeMap::new(),
                    secrets: BTreeMap::new(),
                    imports: BTreeMap::new(),
                },
            );
            id
        })
    }

    /// Adds a tag; returns its id.
    pub fn add_tag(&self, project: &str, slug: &str) -> String {
        self.with(|s| {
            let id = s.id();
            s.projects
                .get_mut(project)
                .expect("project")
                .tags
                .push(json!({"id": id, "slug": slug, "name": slug, "color": "#d9534f"}));
            id
        })
    }

    /// Creates a folder and its parents.
    pub fn add_folder(&self, project: &str, env: &str, path: &str) {
        self.with(|s| {
            let p = s.projects.get_mut(project).expect("project");
            let set = p.folders.entry(env.into()).or_default();
            let mut cur = String::new();
            for seg in path.split('/').filter(|x| !x.is_empty()) {
                cur = format!("{cur}/{seg}");
                set.insert(cur.clone());
            }
        });
    }

    /// Writes a secret (creating folders); `tags` are tag slugs.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        project: &str,
        env: &str,
        path: &str,
        key: &str,
        value: &str,
        comment: &str,
        tags: &[&str],
    ) {
        self.add_folder(project, env, path);
        self.with(|s| {
            let id = s.id();
            let p = s.projects.get_mut(project).expect("project");
            let tag_ids = tags
                .iter()
                .map(|t| {
                    p.tags
                        .iter()
                        .find(|x| x["slug"] == *t)
                        .and_then(|x| x["id"].as_str())
                        .expect("tag exists")
                        .to_string()
                })
                .collect();
            let map = p.secrets.entry(env.into()).or_default();
            let k = (norm_path(path), key.to_string());
            let version = map.get(&k).map_or(1, |x| x.version + 1);
            map.insert(
                k,
                FakeSecret {
                    id,
                    key: key.into(),
                    value: value.into(),
                    comment: comment.into(),
                    kind: "shared".into(),
                    version,
                    tag_ids,
                    metadata: vec![json!({"key": "owner", "value": "team-a"})],
                    skip_multiline: false,
                },
            );
        });
    }

    /// Adds a personal override (machine identities should not see these; the fake lists
    /// them anyway to test that backups skip them).
    pub fn put_personal(&self, project: &str, env: &str, path: &str, key: &str, value: &str) {
        self.put(project, env, path, key, value, "", &[]);
        self.with(|s| {
            let p = s.projects.get_mut(project).expect("project");
            let map = p.secrets.get_mut(env).expect("env");
            let mut sec = map
                .remove(&(norm_path(path), key.to_string()))
                .expect("just put");
            sec.kind = "personal".into();
            map.insert((norm_path(path), format!("{key}\u{0}personal")), sec);
        });
    }

    /// A secret import at `path`: `(env, secretPath)` of the imported folder.
    pub fn add_import(
        &self,
        project: &str,
        env: &str,
        path: &str,
        from_env: &str,
        from_path: &str,
    ) {
        self.with(|s| {
            s.projects
                .get_mut(project)
                .expect("project")
                .imports
                .entry(env.into())
                .or_default()
                .push((norm_path(path), from_env.into(), norm_path(from_path)));
        });
    }

    /// Hides the values of secrets with this key from the identity.
    pub fn hide_values_of(&self, key: &str) {
        self.with(|s| {
            s.hidden_keys.insert(key.into());
        });
    }

    /// Puts `path` of `env` under an approval policy: batch writes there are only requested.
    pub fn require_approval(&self, env: &str, path: &str) {
        self.with(|s| {
            s.approval_paths.insert((env.into(), norm_path(path)));
        });
    }

    /// Answers the next `n` reads of secrets or folders with 429.
    pub fn rate_limit_next(&self, n: u64) {
        self.with(|s| s.rate_limited = n);
    }

    /// How many 429s were sent.
    pub fn rate_limit_hits(&self) -> u64 {
        self.with(|s| s.rate_limit_hits)
    }

    /// Removes every secret and folder of an environment.
    pub fn wipe(&self, project: &str, env: &str) {
        self.with(|s| {
            let p = s.projects.get_mut(project).expect("project");
            p.secrets.remove(env);
            p.folders.remove(env);
        });
    }

    /// The stored secret at (`path`, `key`).
    pub fn get(&self, project: &str, env: &str, path: &str, key: &str) -> Option<FakeSecret> {
        self.with(|s| {
            s.projects
                .get(project)?
                .secrets
                .get(env)?
                .get(&(norm_path(path), key.to_string()))
                .cloned()
        })
    }

    /// Number of secrets in an environment.
    pub fn count(&self, project: &str, env: &str) -> usize {
        self.with(|s| {
            s.projects
                .get(project)
                .and_then(|p| p.secrets.get(env))
                .map_or(0, |m| m.len())
        })
    }

    /// Folder paths of an environment.
    pub fn folders(&self, project: &str, env: &str) -> Vec<String> {
        self.with(|s| {
            s.projects
                .get(project)
                .and_then(|p| p.folders.get(env))
                .map(|f| f.iter().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// `(method, path?query)` of every request so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.with(|s| s.requests.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(norm_path(""), "/");
        assert_eq!(norm_path("a/b/"), "/a/b");
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a"), "/");
        assert_eq!(crate::percent::decode_form("%2Fa+b"), "/a b");
    }
}
