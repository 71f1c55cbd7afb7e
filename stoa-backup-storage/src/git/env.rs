//! [`GitSinkBuilder::from_env`]: a Git sink configured by `STOA_GIT_*` variables, the way
//! the examples and container jobs pass it (Git itself has no convention for this).

use std::path::PathBuf;

use stoa_backup_core::error::{Error, Result};

use super::{GitCredentials, GitSink, GitSinkBuilder};

impl GitSink {
    /// A builder configured by `STOA_GIT_*` variables: see [`GitSinkBuilder::from_env`].
    pub fn from_env() -> Result<GitSinkBuilder> {
        GitSinkBuilder::from_env()
    }
}

impl GitSinkBuilder {
    /// A builder from the process environment:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `STOA_GIT_REMOTE` (required) | the remote: a URL or the path of a bare repository |
    /// | `STOA_GIT_WORKDIR` | the working clone (default: a directory in the system temp dir named after the remote) |
    /// | `STOA_GIT_BRANCH`, `STOA_GIT_PREFIX` | [`branch`](Self::branch), [`prefix`](Self::prefix) |
    /// | `STOA_GIT_TOKEN` (+ `STOA_GIT_USERNAME`, default `x-access-token`) | HTTPS token credentials |
    /// | `STOA_GIT_SSH_KEY` (+ `STOA_GIT_USERNAME`, default `git`; `STOA_GIT_SSH_PASSPHRASE`) | an SSH private key file, when no token is set |
    ///
    /// Empty values count as unset. Settings made on the builder afterwards win.
    pub fn from_env() -> Result<Self> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// [`GitSinkBuilder::from_env`] with the variables looked up through `var`.
    pub fn from_env_with(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let remote = var("STOA_GIT_REMOTE").ok_or_else(|| {
            Error::config("STOA_GIT_REMOTE is not set")
                .with_hint("set it to the remote to commit to (a URL or a bare repository's path)")
        })?;
        let workdir = var("STOA_GIT_WORKDIR").map_or_else(
            || std::env::temp_dir().join(format!("stoa-backup-git-{:016x}", fnv1a(&remote))),
            PathBuf::from,
        );
        let user = |default: &str| var("STOA_GIT_USERNAME").unwrap_or_else(|| default.into());
        let credentials = if let Some(token) = var("STOA_GIT_TOKEN") {
            GitCredentials::https_token(user("x-access-token"), token)
        } else if let Some(key) = var("STOA_GIT_SSH_KEY") {
            GitCredentials::ssh_key(user("git"), key, var("STOA_GIT_SSH_PASSPHRASE"))
        } else {
            GitCredentials::None
        };
        let mut builder = GitSinkBuilder::new(remote, workdir).credentials(credentials);
        if let Some(branch) = var("STOA_GIT_BRANCH") {
            builder = builder.branch(branch);
        }
        if let Some(prefix) = var("STOA_GIT_PREFIX") {
            builder = builder.prefix(prefix);
        }
        Ok(builder)
    }
}

/// A hash that stays the same across Rust releases (the default work dir must be stable).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoa_backup_core::error::ErrorKind;

    fn from(vars: &[(&str, &str)]) -> Result<GitSinkBuilder> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        GitSinkBuilder::from_env_with(|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_remote_is_required_and_empty_counts_as_unset() {
        for vars in [&[][..], &[("STOA_GIT_REMOTE", " ")][..]] {
            let e = from(vars).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.to_string().contains("STOA_GIT_REMOTE"), "{e}");
        }
    }

    #[test]
    fn variables_fill_the_builder() {
        let b = from(&[
            ("STOA_GIT_REMOTE", "/srv/git/backups.git"),
            ("STOA_GIT_WORKDIR", "/var/lib/stoa/clone"),
            ("STOA_GIT_BRANCH", "backups"),
            ("STOA_GIT_PREFIX", "prod"),
            ("STOA_GIT_TOKEN", "s3cr3t-token"),
        ])
        .unwrap();
        let debug = format!("{b:?}");
        assert!(debug.contains("/var/lib/stoa/clone"), "{debug}");
        assert!(
            debug.contains("\"backups\"") && debug.contains("\"prod\""),
            "{debug}"
        );
        assert!(debug.contains("x-access-token"), "{debug}");
        assert!(!debug.contains("s3cr3t-token"), "the token leaked: {debug}");
        b.validate().unwrap();
    }

    #[test]
    fn the_default_workdir_is_stable_and_differs_per_remote() {
        let a = format!("{:?}", from(&[("STOA_GIT_REMOTE", "/a.git")]).unwrap());
        let again = format!("{:?}", from(&[("STOA_GIT_REMOTE", "/a.git")]).unwrap());
        let b = format!("{:?}", from(&[("STOA_GIT_REMOTE", "/b.git")]).unwrap());
        assert_eq!(a, again);
        assert_ne!(a, b);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
