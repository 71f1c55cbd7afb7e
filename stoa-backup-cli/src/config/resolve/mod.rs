//! From the file as written ([`super::raw`]) to the checked [`Config`]: values
//! interpolated, secrets read and wrapped, names checked, and every connection and sink
//! built by the library's own constructors, without connecting. Every error names the
//! file, the line and the key.

mod components;
mod replicas;
mod targets;

use std::cell::RefCell;
use std::path::PathBuf;

use serde_saphyr::Location;

use super::error::ConfigError;
use super::interpolate::{interpolate, InterpolationError};
use super::model::Config;
use super::raw::{RawConfig, Text};
use super::references::{Reference, Referenced};
use super::secret::{url_has_password, Secret};

/// Looks a variable up (the process environment, or a map in tests).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Checks `raw`, read from `file`.
pub fn resolve(
    file: &str,
    raw: RawConfig,
    lookup: Lookup<'_>,
) -> std::result::Result<Config, ConfigError> {
    let r = Resolver {
        file,
        lookup,
        references: RefCell::new(Vec::new()),
    };
    let mut storage = Vec::new();
    for (name, location, target) in raw.storage {
        storage.push(r.target(&name, &location, target)?);
    }
    let encryption = match raw.encryption {
        Some(e) => Some(r.encryption(e)?),
        None => None,
    };
    if raw.components.is_empty() {
        return Err(ConfigError::file(file, "no components are configured").with_hint(
            "add a `components:` section; `stoa-backup config example` prints a commented example",
        ));
    }
    let replicate_to = r.global_replicas(raw.replicate_to.as_ref(), &storage)?;
    let mut components = Vec::new();
    for (name, location, component) in raw.components {
        components.push(r.component(
            &name,
            &location,
            component,
            &storage,
            &replicate_to,
            encryption.is_some(),
        )?);
    }
    Ok(Config {
        file: file.to_string(),
        storage,
        encryption,
        components,
        replicate_to,
        references: r.references.into_inner(),
    })
}

/// The file being resolved, where variables come from, and what it was seen to read.
struct Resolver<'a> {
    file: &'a str,
    lookup: Lookup<'a>,
    references: RefCell<Vec<Reference>>,
}

type Result<T> = std::result::Result<T, ConfigError>;

impl Resolver<'_> {
    fn err(&self, location: &Location, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, Some(location), key, message)
    }

    /// Notes that `key` reads `what` (see [`Reference`]).
    fn record(&self, key: &str, what: Referenced) {
        self.references.borrow_mut().push(Reference {
            key: key.to_string(),
            what,
        });
    }

    /// A value with its `${…}` references replaced; also whether it had any.
    fn interpolated(&self, t: &Text, key: &str) -> Result<(String, bool)> {
        match interpolate(&t.value, self.lookup) {
            Ok(i) => {
                for (name, optional) in i.variables {
                    self.record(key, Referenced::Variable { name, optional });
                }
                Ok((i.value, i.referenced))
            }
            Err(InterpolationError::Unset(name)) => Err(self
                .err(&t.referenced, key, format!("${{{name}}} is not set"))
                .with_hint(format!(
                    "export {name}, or write ${{{name}:-default}} to give a default"
                ))),
            Err(InterpolationError::Malformed(m)) => Err(self
                .err(&t.referenced, key, m)
                .with_hint("write ${NAME}, ${NAME:-default}, or $$ for a literal $")),
        }
    }

    /// A non-empty value, interpolated.
    fn text(&self, t: &Text, key: &str) -> Result<String> {
        let (v, _) = self.interpolated(t, key)?;
        if v.trim().is_empty() {
            return Err(self.err(&t.referenced, key, "is empty"));
        }
        Ok(v)
    }

    fn opt_text(&self, t: Option<&Text>, key: &str) -> Result<Option<String>> {
        t.map(|t| self.text(t, key)).transpose()
    }

    /// A value that must be there: missing, the error points at `parent` (where the target
    /// or component starts).
    fn required(
        &self,
        t: Option<&Text>,
        parent: &Location,
        key: &str,
        what: &str,
    ) -> Result<String> {
        match t {
            Some(t) => self.text(t, key),
            None => Err(self.err(parent, key, format!("is missing: {what}"))),
        }
    }

    fn list(&self, v: Option<&Vec<Text>>, key: &str) -> Result<Vec<String>> {
        v.map(|items| items.iter().map(|t| self.text(t, key)).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// A URL that may carry a password: only through `${ENV}` (or a file), never inline.
    fn url(&self, t: &Text, key: &str) -> Result<String> {
        let (v, referenced) = self.interpolated(t, key)?;
        if !referenced && url_has_password(&v) {
            return Err(self
                .err(&t.referenced, key, "holds a password written in the file")
                .with_hint("secrets are never inline: put the URL in an environment variable and write ${VARIABLE}, or use a *_file key"));
        }
        if v.trim().is_empty() {
            return Err(self.err(&t.referenced, key, "is empty"));
        }
        Ok(v)
    }

    /// A secret from `inline` (which must be a `${ENV}` reference) or from the file named
    /// by `file` (read now, one trailing newline dropped); at most one of the two.
    fn secret(
        &self,
        inline: Option<&Text>,
        file: Option<&Text>,
        key: &str,
        file_key: &str,
    ) -> Result<Option<Secret>> {
        match (inline, file) {
            (Some(_), Some(f)) => Err(self.err(
                &f.referenced,
                file_key,
                format!("give `{}` or `{}`, not both", last(key), last(file_key)),
            )),
            (Some(t), None) => {
                let (v, referenced) = self.interpolated(t, key)?;
                if !referenced {
                    return Err(self
                        .err(&t.referenced, key, "is a secret written in the file")
                        .with_hint(format!(
                            "secrets are never inline: write ${{VARIABLE}} and export it, or name a file with `{}` (a mounted Kubernetes Secret)",
                            last(file_key)
                        )));
                }
                if v.is_empty() {
                    return Err(self.err(
                        &t.referenced,
                        key,
                        "is empty (its variable is set to nothing)",
                    ));
                }
                Ok(Some(Secret::new(v)))
            }
            (None, Some(f)) => {
                let (_, text) = self.read_file(f, file_key)?;
                Ok(Some(text))
            }
            (None, None) => Ok(None),
        }
    }

    /// Reads the file a `*_file` key names; the contents are a secret (one trailing newline
    /// dropped). Errors name the file, never its contents.
    fn read_file(&self, f: &Text, key: &str) -> Result<(PathBuf, Secret)> {
        let path = PathBuf::from(self.text(f, key)?);
        self.record(key, Referenced::File(path.clone()));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            self.err(
                &f.referenced,
                key,
                format!("cannot read {}: {e}", path.display()),
            )
            .with_hint("the file is read when the configuration loads: check the path and the mount of the Secret")
        })?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if text.is_empty() {
            return Err(self.err(&f.referenced, key, format!("{} is empty", path.display())));
        }
        Ok((path, Secret::new(text)))
    }
}

/// The last segment of a key path.
fn last(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}
