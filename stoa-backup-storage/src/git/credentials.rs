//! Credentials for the remote and the scrubbing that keeps them (and passwords in remote
//! URLs) out of errors, logs and `Debug`.

use std::fmt;
use std::path::PathBuf;

use git2::{Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks};
use stoa_backup_core::error::Error;

use super::{GitCause, GitSinkConfig};

/// How the sink authenticates to the remote. `Debug` never shows secrets.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum GitCredentials {
    /// No credentials (local paths, `file://`, public or pre-authorized remotes).
    #[default]
    None,
    /// HTTPS with a user name and a token (or password).
    HttpsToken {
        /// The user name (`x-access-token` for GitHub apps, `oauth2` for GitLab, …).
        username: String,
        /// The token; never logged.
        token: String,
    },
    /// SSH with a private key file.
    SshKey {
        /// The SSH user (usually `git`).
        username: String,
        /// Path of the private key.
        private_key: PathBuf,
        /// Passphrase of the key, if it has one; never logged.
        passphrase: Option<String>,
    },
    /// SSH through the running ssh-agent.
    SshAgent {
        /// The SSH user (usually `git`).
        username: String,
    },
}

impl GitCredentials {
    /// HTTPS with a user name and a token.
    pub fn https_token(username: impl Into<String>, token: impl Into<String>) -> Self {
        GitCredentials::HttpsToken {
            username: username.into(),
            token: token.into(),
        }
    }

    /// SSH with a private key file (and its passphrase, if any).
    pub fn ssh_key(
        username: impl Into<String>,
        private_key: impl Into<PathBuf>,
        passphrase: Option<String>,
    ) -> Self {
        GitCredentials::SshKey {
            username: username.into(),
            private_key: private_key.into(),
            passphrase,
        }
    }

    /// SSH through the running ssh-agent.
    pub fn ssh_agent(username: impl Into<String>) -> Self {
        GitCredentials::SshAgent {
            username: username.into(),
        }
    }

    fn secrets(&self) -> Vec<String> {
        match self {
            GitCredentials::HttpsToken { token, .. } if !token.is_empty() => vec![token.clone()],
            GitCredentials::SshKey {
                passphrase: Some(p),
                ..
            } if !p.is_empty() => vec![p.clone()],
            _ => Vec::new(),
        }
    }
}

impl fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitCredentials::None => f.write_str("None"),
            GitCredentials::HttpsToken { username, .. } => f
                .debug_struct("HttpsToken")
                .field("username", username)
                .field("token", &"***")
                .finish(),
            GitCredentials::SshKey {
                username,
                private_key,
                passphrase,
            } => f
                .debug_struct("SshKey")
                .field("username", username)
                .field("private_key", private_key)
                .field("passphrase", &passphrase.as_ref().map(|_| "***"))
                .finish(),
            GitCredentials::SshAgent { username } => f
                .debug_struct("SshAgent")
                .field("username", username)
                .finish(),
        }
    }
}

impl GitSinkConfig {
    /// Callbacks handing the credentials to libgit2 (the only place they are used).
    pub(super) fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        let mut attempts = 0u32;
        cb.credentials(move |_url, username_from_url, allowed| {
            attempts += 1;
            if attempts > 3 {
                return Err(git2::Error::new(
                    ErrorCode::Auth,
                    ErrorClass::Net,
                    "the remote refused the configured credentials",
                ));
            }
            match &self.credentials {
                GitCredentials::HttpsToken { username, token }
                    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
                {
                    Cred::userpass_plaintext(username, token)
                }
                GitCredentials::SshKey {
                    username,
                    private_key,
                    passphrase,
                } if allowed.contains(CredentialType::SSH_KEY) => {
                    Cred::ssh_key(username, None, private_key, passphrase.as_deref())
                }
                GitCredentials::SshAgent { username }
                    if allowed.contains(CredentialType::SSH_KEY) =>
                {
                    Cred::ssh_key_from_agent(username)
                }
                _ if allowed.contains(CredentialType::USERNAME) => {
                    Cred::username(username_from_url.unwrap_or("git"))
                }
                _ if allowed.contains(CredentialType::DEFAULT) => Cred::default(),
                _ => Err(git2::Error::new(
                    ErrorCode::Auth,
                    ErrorClass::Net,
                    "the remote asks for credentials the sink was not given",
                )),
            }
        });
        cb
    }

    /// Replaces secrets and URL passwords in an error's text.
    pub(super) fn scrub(&self, text: &str) -> String {
        let remote = self.remote.as_str();
        let mut out = text.replace(remote, &redact_url(remote));
        for s in self.credentials.secrets() {
            out = out.replace(&s, "***");
        }
        out
    }

    /// `e` with secrets and URL passwords replaced by `***` in all its texts.
    pub(super) fn scrub_error(&self, e: Error) -> Error {
        let secrets = self.credentials.secrets();
        let dirty = secrets.iter().any(|s| e.to_string().contains(s.as_str()))
            || (redact_url(self.remote.as_str()) != self.remote.as_str()
                && e.to_string().contains(self.remote.as_str()));
        if !dirty {
            return e;
        }
        let mut clean = Error::new(e.kind(), self.scrub(e.message()))
            .with_retryable(e.is_retryable())
            .with_source(GitCause(
                self.scrub(
                    &std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                ),
            ));
        if let Some(c) = e.component() {
            clean = clean.with_component(c.to_string());
        }
        if let Some(o) = e.operation() {
            clean = clean.with_operation(o.to_string());
        }
        if let Some(a) = e.artifact() {
            clean = clean.with_artifact(a.to_string());
        }
        if let Some(h) = e.hint() {
            clean = clean.with_hint(self.scrub(h));
        }
        clean
    }
}

/// The remote's URL (or path). `Debug` shows it with any password replaced by `***`.
#[derive(Clone)]
pub(super) struct RemoteUrl(pub(super) String);

impl RemoteUrl {
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_url(&self.0), f)
    }
}

/// `url` with any password in it replaced by `***`.
pub(super) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{}{user}:***{}", &url[..rest_start], &rest[at..])
            } else {
                url.to_string()
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::GitSink;

    #[test]
    fn credentials_never_show() {
        let c = GitCredentials::https_token("x-access-token", "ghp_secret");
        assert!(!format!("{c:?}").contains("ghp_secret"));
        let c = GitCredentials::ssh_key("git", "/k", Some("pass".into()));
        assert!(!format!("{c:?}").contains("pass\""));
        assert_eq!(
            redact_url("https://user:tok@host/repo.git"),
            "https://user:***@host/repo.git"
        );
        assert_eq!(redact_url("/srv/git/r.git"), "/srv/git/r.git");
        let builder = GitSink::builder("https://user:tok@host/repo.git", "/tmp/x")
            .credentials(GitCredentials::https_token("u", "ghp_secret"));
        let cfg = builder.config().unwrap();
        let dbg = format!("{cfg:?} {builder:?}");
        assert!(
            !dbg.contains("tok@") && !dbg.contains("ghp_secret"),
            "{dbg}"
        );
        let e = cfg.scrub_error(Error::storage(
            "failed for ghp_secret at https://user:tok@host/repo.git",
        ));
        assert!(
            !e.to_string().contains("ghp_secret") && !e.to_string().contains(":tok@"),
            "{e}"
        );
    }
}
