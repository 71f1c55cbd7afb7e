//! A stand-in for Keycloak's `kc.sh export` / `kc.sh import` behind the fake API server's pod
//! exec, so the kc.sh providers can be tested without a Keycloak image.
//!
//! The Keycloak "database" is one realm representation in memory ([`KcShDb`], e.g. a
//! `FakeKeycloak::realm_representation` with users and their hashed credentials). Exec requests for `/opt/keycloak/bin/kc.sh` are
//! answered by the stand-in, everything else (`tar`, `sh`, `rm`) runs for real on this
//! machine, in the paths the command names:
//!
//! - `kc.sh --version` prints `Keycloak 26.0.5`.
//! - `kc.sh export --dir D --realm R [--users-per-file N]` writes `R-realm.json` (the realm
//!   without users) and `R-users-<i>.json` with `N` users each (default 50), as
//!   `--users different_files` does.
//! - `kc.sh import --dir D --override true|false` reads every JSON file in `D` and replaces
//!   the realm with the realm file plus the users of every users file found. Like the real
//!   command it imports whatever is there: a directory missing a users file imports fewer
//!   users and still says `Realm '…' imported`. With `--override false` an existing realm is
//!   left alone (`Realm '…' already exists. Import skipped`).
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::{Arc, Mutex};
//! use stoa_backup_test_support::kube_fake::kcsh::KcShStandIn;
//!
//! let db = Arc::new(Mutex::new(None)); // an empty Keycloak
//! let kube = KcShStandIn::new(db.clone()).start_kube().await;
//! let client = kube.client(); // exec into keycloak/keycloak-0, container keycloak
//! # let _ = client;
//! # }
//! ```

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{ExecRequest, FakeKube};

/// The realm a stand-in exports from and imports into (`None`: no realm yet).
pub type KcShDb = Arc<Mutex<Option<Value>>>;

/// Where `kc.sh` lives in the Keycloak image; only this path is answered by the stand-in.
pub const KC_SH: &str = "/opt/keycloak/bin/kc.sh";

/// Namespace of the pod [`KcShStandIn::start_kube`] creates.
pub const NAMESPACE: &str = "keycloak";

/// Name of that pod.
pub const POD: &str = "keycloak-0";

/// Its only container.
pub const CONTAINER: &str = "keycloak";

/// `kc.sh` over an in-memory realm; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct KcShStandIn {
    db: KcShDb,
    drop_users_file: Option<usize>,
}

impl KcShStandIn {
    /// A stand-in exporting from and importing into `db`.
    pub fn new(db: KcShDb) -> Self {
        KcShStandIn {
            db,
            drop_users_file: None,
        }
    }

    /// Makes `kc.sh export` leave out `<realm>-users-<index>.json` (a broken export that
    /// still exits 0).
    pub fn drop_users_file(mut self, index: usize) -> Self {
        self.drop_users_file = Some(index);
        self
    }

    /// Answers `kube`'s exec requests with this stand-in from now on.
    pub fn install(self, kube: &FakeKube) {
        kube.set_exec_handler(move |r| self.handle(r));
    }

    /// Starts a fake API server with a running pod [`NAMESPACE`]/[`POD`] (container
    /// [`CONTAINER`]) whose exec requests this stand-in answers.
    pub async fn start_kube(self) -> FakeKube {
        let kube = FakeKube::start().await;
        kube.add_pod(NAMESPACE, POD, &[CONTAINER]);
        self.install(&kube);
        kube
    }

    /// The local command line for one exec request (what [`FakeKube::set_exec_handler`]
    /// expects): kc.sh calls are carried out here and answered with a `printf` of their
    /// output, other commands run as requested.
    pub fn handle(&self, request: &ExecRequest) -> Result<Vec<String>, String> {
        let c = &request.command;
        if c.first().map(String::as_str) != Some(KC_SH) {
            return Ok(c.clone());
        }
        match c.get(1).map(String::as_str) {
            Some("--version") => Ok(print("Keycloak 26.0.5")),
            Some("export") => self.export(c).map(|m| print(&m)),
            Some("import") => self.import(c).map(|m| print(&m)),
            other => Err(format!("kc.sh stand-in: unknown command {other:?}")),
        }
    }

    fn export(&self, c: &[String]) -> Result<String, String> {
        let dir = arg(c, "--dir").ok_or("kc.sh export: no --dir")?;
        let realm = arg(c, "--realm").ok_or("kc.sh export: no --realm")?;
        let per_file: usize = match arg(c, "--users-per-file") {
            Some(n) => n
                .parse()
                .map_err(|_| format!("kc.sh export: bad --users-per-file {n}"))?,
            None => 50,
        };
        let mut rep = self
            .db
            .lock()
            .expect("kc.sh db")
            .clone()
            .ok_or_else(|| format!("realm '{realm}' not found"))?;
        let users = rep["users"].as_array().cloned().unwrap_or_default();
        if let Some(m) = rep.as_object_mut() {
            m.remove("users");
        }
        let d = Path::new(&dir);
        std::fs::create_dir_all(d).map_err(|e| format!("{dir}: {e}"))?;
        write_json(&d.join(format!("{realm}-realm.json")), &rep)?;
        for (i, chunk) in users.chunks(per_file.max(1)).enumerate() {
            if self.drop_users_file == Some(i) {
                continue;
            }
            let file = json!({"realm": realm, "users": chunk});
            write_json(&d.join(format!("{realm}-users-{i}.json")), &file)?;
        }
        Ok(format!("Realm '{realm}' - data exported"))
    }

    fn import(&self, c: &[String]) -> Result<String, String> {
        let dir = arg(c, "--dir").ok_or("kc.sh import: no --dir")?;
        let overwrite = arg(c, "--override").as_deref() != Some("false");
        let mut realm: Option<Value> = None;
        let mut users = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("{dir}: {e}"))?.path();
            let name = path.to_string_lossy().to_string();
            if !name.ends_with(".json") {
                continue;
            }
            let text = std::fs::read(&path).map_err(|e| format!("{name}: {e}"))?;
            let v: Value = serde_json::from_slice(&text).map_err(|e| format!("{name}: {e}"))?;
            if name.ends_with("-realm.json") {
                realm = Some(v);
            } else {
                users.extend(v["users"].as_array().cloned().unwrap_or_default());
            }
        }
        let mut rep = realm.ok_or("kc.sh import: no realm file")?;
        let name = rep["realm"]
            .as_str()
            .ok_or("kc.sh import: the realm file names no realm")?
            .to_string();
        let mut db = self.db.lock().expect("kc.sh db");
        if db.is_some() && !overwrite {
            return Ok(format!("Realm '{name}' already exists. Import skipped"));
        }
        rep["users"] = json!(users);
        *db = Some(rep);
        Ok(format!("Realm '{name}' imported"))
    }
}

fn arg(cmd: &[String], name: &str) -> Option<String> {
    cmd.iter()
        .position(|a| a == name)
        .and_then(|i| cmd.get(i + 1).cloned())
}

/// A command printing `text` (no shell: the text is never interpreted).
fn print(text: &str) -> Vec<String> {
    vec!["printf".into(), "%s\\n".into(), text.into()]
}

fn write_json(path: &Path, v: &Value) -> Result<(), String> {
    std::fs::write(path, v.to_string()).map_err(|e| format!("{}: {e}", path.display()))
}
