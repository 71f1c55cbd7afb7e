//! Storage targets and encryption.

use std::path::PathBuf;

use serde_saphyr::{Location, Spanned};
use stoa_backup::core::{AgeEncryption, Keyring};
use stoa_backup::storage::{GitCredentials, GitSinkBuilder, S3Credentials, S3SinkBuilder};

use super::{Resolver, Result};
use crate::config::model::{
    Encryption, GitCredentialsView, GitTarget, IdentitySource, LocalTarget, S3CredentialsView,
    S3Target, Target, TargetKind,
};
use crate::config::raw::{RawEncryption, RawGit, RawLocal, RawS3, RawTarget};
use crate::config::references::Referenced;
use crate::config::secret::redact_url;

impl Resolver<'_> {
    pub(super) fn target(&self, name: &str, at: &Location, raw: RawTarget) -> Result<Target> {
        check_name(self, name, at, &format!("storage.{name}"))?;
        let kind = match raw {
            RawTarget::Local(l) => TargetKind::Local(self.local(name, at, l)?),
            RawTarget::S3(s) => TargetKind::S3(self.s3(name, at, s)?),
            RawTarget::Git(g) => TargetKind::Git(self.git(name, at, g)?),
        };
        Ok(Target {
            name: name.to_string(),
            kind,
        })
    }

    fn local(&self, name: &str, at: &Location, raw: RawLocal) -> Result<LocalTarget> {
        let key = |k: &str| format!("storage.{name}.{k}");
        let path = self.required(
            raw.path.as_ref(),
            at,
            &key("path"),
            "the directory the backups go to",
        )?;
        Ok(LocalTarget {
            path: PathBuf::from(path),
            create: raw.create.unwrap_or(false),
        })
    }

    fn s3(&self, name: &str, at: &Location, raw: RawS3) -> Result<S3Target> {
        let key = |k: &str| format!("storage.{name}.{k}");
        let bucket = self.required(raw.bucket.as_ref(), at, &key("bucket"), "the bucket's name")?;
        let prefix = self
            .opt_text(raw.prefix.as_ref(), &key("prefix"))?
            .unwrap_or_default();
        let endpoint = self.opt_text(raw.endpoint.as_ref(), &key("endpoint"))?;
        let region = self.opt_text(raw.region.as_ref(), &key("region"))?;
        let allow_http = raw.allow_http.unwrap_or(false);
        let (mut builder, credentials) = match &raw.credentials {
            None => (
                S3SinkBuilder::from_env_with(&bucket, |v| (self.lookup)(v)),
                S3CredentialsView::Environment,
            ),
            Some(c) => {
                let ck = |k: &str| format!("storage.{name}.credentials.{k}");
                let id = match (&c.value.access_key_id, &c.value.access_key_id_file) {
                    (Some(_), Some(f)) => {
                        return Err(self.err(
                            &f.referenced,
                            &ck("access_key_id_file"),
                            "give `access_key_id` or `access_key_id_file`, not both",
                        ))
                    }
                    (Some(t), None) => self.text(t, &ck("access_key_id"))?,
                    (None, Some(f)) => self
                        .read_file(f, &ck("access_key_id_file"))?
                        .1
                        .expose()
                        .to_string(),
                    (None, None) => {
                        return Err(self.err(
                            &c.referenced,
                            &ck("access_key_id"),
                            "is missing: static credentials need the access key id",
                        ))
                    }
                };
                let secret = self
                    .secret(
                        c.value.secret_access_key.as_ref(),
                        c.value.secret_access_key_file.as_ref(),
                        &ck("secret_access_key"),
                        &ck("secret_access_key_file"),
                    )?
                    .ok_or_else(|| {
                        self.err(
                            &c.referenced,
                            &ck("secret_access_key"),
                            "is missing: static credentials need the secret access key",
                        )
                    })?;
                let token = self.secret(
                    c.value.session_token.as_ref(),
                    c.value.session_token_file.as_ref(),
                    &ck("session_token"),
                    &ck("session_token_file"),
                )?;
                let mut creds = S3Credentials::new(&id, secret.expose());
                if let Some(t) = &token {
                    creds = creds.with_session_token(t.expose());
                }
                (
                    S3SinkBuilder::new(&bucket).credentials(creds),
                    S3CredentialsView::Static {
                        access_key_id: id,
                        secret_access_key: secret,
                        session_token: token,
                    },
                )
            }
        };
        builder = builder.prefix(&prefix).allow_http(allow_http);
        if let Some(e) = &endpoint {
            builder = builder.endpoint(e);
        }
        if let Some(r) = &region {
            builder = builder.region(r);
        }
        builder
            .validate()
            .map_err(|e| self.err(at, &format!("storage.{name}"), e.to_string()))?;
        Ok(S3Target {
            bucket,
            prefix,
            endpoint,
            region,
            allow_http,
            credentials,
            builder,
        })
    }

    fn git(&self, name: &str, at: &Location, raw: RawGit) -> Result<GitTarget> {
        let key = |k: &str| format!("storage.{name}.{k}");
        let remote = match &raw.remote {
            Some(t) => self.url(t, &key("remote"))?,
            None => {
                return Err(self.err(
                    at,
                    &key("remote"),
                    "is missing: the repository's URL or path",
                ))
            }
        };
        let branch = self
            .opt_text(raw.branch.as_ref(), &key("branch"))?
            .unwrap_or_else(|| "main".into());
        let path = self
            .opt_text(raw.path.as_ref(), &key("path"))?
            .unwrap_or_default();
        let workdir = match self.opt_text(raw.workdir.as_ref(), &key("workdir"))? {
            Some(w) => {
                self.record(
                    &key("workdir"),
                    Referenced::WritableDirectory(w.clone().into()),
                );
                PathBuf::from(w)
            }
            None => default_workdir(self, name),
        };
        let (credentials, view) = match &raw.credentials {
            None => (GitCredentials::None, GitCredentialsView::None),
            Some(c) => self.git_credentials(name, c)?,
        };
        let mut builder = GitSinkBuilder::new(&remote, &workdir)
            .branch(&branch)
            .prefix(&path)
            .credentials(credentials);
        let author_name = self.opt_text(raw.author_name.as_ref(), &key("author_name"))?;
        let author_email = self.opt_text(raw.author_email.as_ref(), &key("author_email"))?;
        if author_name.is_some() || author_email.is_some() {
            builder = builder.author(
                author_name.unwrap_or_else(|| "stoa-backup".into()),
                author_email.unwrap_or_else(|| "stoa-backup@localhost".into()),
            );
        }
        builder
            .validate()
            .map_err(|e| self.err(at, &format!("storage.{name}"), e.to_string()))?;
        Ok(GitTarget {
            remote: redact_url(&remote),
            branch,
            path,
            workdir,
            credentials: view,
            builder,
        })
    }

    fn git_credentials(
        &self,
        name: &str,
        c: &Spanned<crate::config::raw::RawGitCredentials>,
    ) -> Result<(GitCredentials, GitCredentialsView)> {
        let ck = |k: &str| format!("storage.{name}.credentials.{k}");
        let raw = &c.value;
        let username = self.opt_text(raw.username.as_ref(), &ck("username"))?;
        let token = self.secret(
            raw.token.as_ref(),
            raw.token_file.as_ref(),
            &ck("token"),
            &ck("token_file"),
        )?;
        let ssh_key = self.opt_text(raw.ssh_key.as_ref(), &ck("ssh_key"))?;
        if let Some(k) = &ssh_key {
            self.record(&ck("ssh_key"), Referenced::File(k.into()));
        }
        let agent = raw.ssh_agent.unwrap_or(false);
        let passphrase = self.secret(
            raw.passphrase.as_ref(),
            raw.passphrase_file.as_ref(),
            &ck("passphrase"),
            &ck("passphrase_file"),
        )?;
        let methods =
            usize::from(token.is_some()) + usize::from(ssh_key.is_some()) + usize::from(agent);
        if methods != 1 {
            return Err(self
                .err(
                    &c.referenced,
                    &format!("storage.{name}.credentials"),
                    "give one of `token` (HTTPS), `ssh_key` or `ssh_agent: true`",
                )
                .with_hint(
                    "leave `credentials` out for a local path or a remote that needs none",
                ));
        }
        if passphrase.is_some() && ssh_key.is_none() {
            return Err(self.err(
                &c.referenced,
                &ck("passphrase"),
                "a passphrase belongs to an `ssh_key`",
            ));
        }
        Ok(if let Some(token) = token {
            let username = username.unwrap_or_else(|| "x-access-token".into());
            (
                GitCredentials::https_token(&username, token.expose()),
                GitCredentialsView::HttpsToken { username, token },
            )
        } else if let Some(key) = ssh_key {
            let username = username.unwrap_or_else(|| "git".into());
            (
                GitCredentials::ssh_key(
                    &username,
                    &key,
                    passphrase.as_ref().map(|p| p.expose().to_string()),
                ),
                GitCredentialsView::SshKey {
                    username,
                    private_key: PathBuf::from(key),
                    passphrase,
                },
            )
        } else {
            let username = username.unwrap_or_else(|| "git".into());
            (
                GitCredentials::ssh_agent(&username),
                GitCredentialsView::SshAgent { username },
            )
        })
    }

    pub(super) fn encryption(&self, raw: Spanned<RawEncryption>) -> Result<Encryption> {
        let at = &raw.referenced;
        let raw = raw.value;
        let mut recipients = self.list(raw.recipients.as_ref(), "encryption.recipients")?;
        if let Some(f) = &raw.recipients_file {
            let (_, text) = self.read_file(f, "encryption.recipients_file")?;
            recipients.extend(
                text.expose()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        if recipients.is_empty() {
            return Err(self
                .err(at, "encryption.recipients", "is missing: the age public keys (age1…) artifacts are encrypted to")
                .with_hint("`age-keygen -o key.txt` prints a recipient; keep key.txt (the identity) for restores"));
        }
        let recipients_at = raw
            .recipients
            .as_ref()
            .and_then(|r| r.first())
            .map(|t| &t.referenced)
            .or(raw.recipients_file.as_ref().map(|t| &t.referenced))
            .unwrap_or(at);
        AgeEncryption::recipients(&recipients)
            .map_err(|e| self.err(recipients_at, "encryption.recipients", e.to_string()))?;
        let mut identities = Vec::new();
        let mut identity_texts = Vec::new();
        if let Some(f) = &raw.identities_file {
            let (path, text) = self.read_file(f, "encryption.identities_file")?;
            Keyring::new()
                .with_identity_file_contents(text.expose())
                .map_err(|e| {
                    self.err(
                        &f.referenced,
                        "encryption.identities_file",
                        format!("{}: {e}", path.display()),
                    )
                })?;
            identities.push(IdentitySource::File { path });
            identity_texts.push(text);
        }
        if let Some(identity) = self.secret(
            raw.identity.as_ref(),
            None,
            "encryption.identity",
            "encryption.identities_file",
        )? {
            let t = raw.identity.as_ref().map(|t| &t.referenced).unwrap_or(at);
            Keyring::new()
                .with_identity(identity.expose())
                .map_err(|e| self.err(t, "encryption.identity", e.to_string()))?;
            identities.push(IdentitySource::Value {
                identity: identity.clone(),
            });
            identity_texts.push(identity);
        }
        Ok(Encryption {
            recipients,
            identities,
            identity_texts,
        })
    }
}

/// Names of targets and components become parts of keys and labels: plain characters only.
pub(super) fn check_name(r: &Resolver<'_>, name: &str, at: &Location, key: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(r.err(
            at,
            key,
            format!("{name:?} is not a valid name: use letters, digits, - and _"),
        ))
    }
}

/// Where a Git target's working clone lives when the file does not say: the user's cache
/// directory (`$XDG_CACHE_HOME`, else `~/.cache`), else the system's temporary directory.
fn default_workdir(r: &Resolver<'_>, name: &str) -> PathBuf {
    let base = (r.lookup)("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            (r.lookup)("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("stoa-backup").join("git").join(name)
}
