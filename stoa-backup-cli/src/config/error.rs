//! [`ConfigError`]: what is wrong in a configuration file, and where (file, line, key).

use std::fmt;

use serde::Serialize;
use serde_saphyr::Location;

/// A configuration error: the file, the line and column, the key path
/// (`components.postgres.schedule`), what is wrong and what to do ([`Details`]). Never holds
/// a secret: messages name variables and files, not their contents. Boxed: it travels
/// through every `Result` of the resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ConfigError(Box<Details>);

impl std::ops::Deref for ConfigError {
    type Target = Details;
    fn deref(&self) -> &Details {
        &self.0
    }
}

impl std::ops::DerefMut for ConfigError {
    fn deref_mut(&mut self) -> &mut Details {
        &mut self.0
    }
}

/// What a [`ConfigError`] says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Details {
    /// The file (as given, or `<embedded default>`).
    pub file: String,
    /// 1-based line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 1-based column, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// The key path, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ConfigError {
    /// An error about the file as a whole (missing, unreadable).
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError(Box::new(Details {
            file: file.into(),
            line: None,
            column: None,
            key: None,
            message: message.into(),
            hint: None,
        }))
    }

    /// An error at `key`, at `location` when known.
    pub fn at(
        file: impl Into<String>,
        location: Option<&Location>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let known = location.filter(|l| l.line() > 0);
        ConfigError(Box::new(Details {
            file: file.into(),
            line: known.map(Location::line),
            column: known.map(Location::column),
            key: Some(key.into()),
            message: message.into(),
            hint: None,
        }))
    }

    /// Adds what to do.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A parser error as a [`ConfigError`]: its message without the position suffix, the key
/// path of its line, its line and column.
pub fn from_yaml(file: &str, source: &str, err: &serde_saphyr::Error) -> ConfigError {
    let location = err.location();
    let text = err.to_string();
    // Without snippets, serde-saphyr ends its messages with " at line L, column C".
    let message = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let key = location
        .as_ref()
        .and_then(|l| super::keypath::key_path_at(source, l.line()));
    let mut e = ConfigError::at(file, location.as_ref(), key.unwrap_or_default(), message);
    if e.key.as_deref() == Some("") {
        e.key = None;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_key_and_hint() {
        // A value at line 7, column 15 (Location has no public constructor).
        let source = format!("{}{:>15}", "\n".repeat(6), 7);
        let at = serde_saphyr::from_str::<serde_saphyr::Spanned<u8>>(&source)
            .unwrap()
            .referenced;
        let e = ConfigError::at(
            "stoa-backup.yaml",
            Some(&at),
            "components.postgres.schedule",
            "bad cron",
        )
        .with_hint("write 5 fields");
        assert_eq!(
            e.to_string(),
            "stoa-backup.yaml:7:15: components.postgres.schedule: bad cron (hint: write 5 fields)"
        );
        assert_eq!(
            ConfigError::file("x.yaml", "not found").to_string(),
            "x.yaml: not found"
        );
    }
}
