//! What a configuration makes the command read besides the file itself: the variables of its
//! `${…}` references and the files of its `*_file` keys (and the key files a run reads).
//! Recorded while the file is resolved, by key, so that `manifests` can give a pod each of
//! them from a Kubernetes Secret. Names and paths only: never a value.

use std::path::PathBuf;

/// One thing the configuration reads, and the key that reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The key path (`components.keycloak.client_secret`).
    pub key: String,
    /// What it reads.
    pub what: Referenced,
}

/// What a [`Reference`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Referenced {
    /// An environment variable (`${NAME}`); `optional` when the reference gives a default
    /// (`${NAME:-default}`).
    Variable {
        /// The variable's name.
        name: String,
        /// Whether the reference gives a default.
        optional: bool,
    },
    /// A file whose contents are a secret: a `*_file` key (read when the configuration
    /// loads), an SSH key or a libpq password file (read by a run). The path as written
    /// (relative paths are relative to the working directory).
    File(PathBuf),
    /// A directory a run writes that the file names explicitly (a Git target's `workdir`).
    WritableDirectory(PathBuf),
}

impl Reference {
    /// The component or storage target the key belongs to (see [`owner_of`]).
    pub fn owner(&self) -> Option<(&str, &str)> {
        owner_of(&self.key)
    }
}

/// The component (`components.<name>.…`) or storage target (`storage.<name>.…`) a key path
/// belongs to, as (section, name); `None` for the top-level sections (`encryption`).
pub fn owner_of(key: &str) -> Option<(&str, &str)> {
    let mut parts = key.splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some(section @ ("components" | "storage")), Some(name)) => Some((section, name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolving_records_variables_files_and_directories_by_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").expect("write");
        let text = format!(
            "storage:\n  git:\n    type: git\n    remote: https://git.example.org/s.git\n    workdir: /var/lib/stoa-git\n    credentials:\n      token_file: {}\n  ssh:\n    type: git\n    remote: ssh://git@git.example.org/s.git\n    credentials:\n      ssh_key: /run/secrets/git/id\ncomponents:\n  db:\n    type: postgres\n    host: ${{PGHOST:-localhost}}\n    user: ${{PGUSER}}\n    passfile: /run/secrets/pg/pgpass\n    storage: git\n",
            token.display()
        );
        let config = crate::config::parse("t.yaml", &text, &|name| {
            (name == "PGUSER").then(|| "stoa".to_string())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let seen: Vec<(&str, &Referenced)> = config
            .references
            .iter()
            .map(|r| (r.key.as_str(), &r.what))
            .collect();
        let variable = |name: &str, optional| Referenced::Variable {
            name: name.into(),
            optional,
        };
        assert_eq!(
            seen,
            [
                (
                    "storage.git.workdir",
                    &Referenced::WritableDirectory("/var/lib/stoa-git".into())
                ),
                (
                    "storage.git.credentials.token_file",
                    &Referenced::File(token.clone())
                ),
                (
                    "storage.ssh.credentials.ssh_key",
                    &Referenced::File("/run/secrets/git/id".into())
                ),
                ("components.db.host", &variable("PGHOST", true)),
                ("components.db.user", &variable("PGUSER", false)),
                (
                    "components.db.passfile",
                    &Referenced::File("/run/secrets/pg/pgpass".into())
                ),
            ]
        );
        // Values are never recorded: the token's contents appear nowhere.
        assert!(!format!("{:?}", config.references).contains("t0ken"));
    }

    #[test]
    fn owners_are_the_component_or_target_of_the_key() {
        let r = |key: &str| Reference {
            key: key.into(),
            what: Referenced::File("/x".into()),
        };
        assert_eq!(
            r("components.db.password_file").owner(),
            Some(("components", "db"))
        );
        assert_eq!(
            r("storage.offsite.credentials.secret_access_key").owner(),
            Some(("storage", "offsite"))
        );
        assert_eq!(r("encryption.identities_file").owner(), None);
    }
}
