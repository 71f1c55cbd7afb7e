//! Validated storage keys.
//!
//! A key is a relative, `/`-separated path. Keys are checked when they are built, so a sink
//! can never be asked to write outside its root: no `..` or `.` segments, no absolute paths,
//! no empty segments, no backslashes, control characters or NUL.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A validated relative storage key such as `runs/20261124T080000Z-ab12/postgres/stoa.dump`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Parses and validates a key.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        validate(&key).map_err(|why| {
            Error::config(format!("invalid storage key {key:?}: {why}"))
                .with_operation("validate key")
                .with_hint(
                    "keys are relative paths like 'runs/<id>/<component>/<name>' without '..'",
                )
        })?;
        Ok(ObjectKey(key))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Appends a relative path (validated) to this key.
    pub fn join(&self, rest: &str) -> Result<Self> {
        ObjectKey::new(format!("{}/{}", self.0, rest))
    }

    /// The segments of the key.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment (the file name).
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Whether this key lies under `prefix` (segment-wise; an empty prefix matches all).
    pub fn starts_with_prefix(&self, prefix: &str) -> bool {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty()
            || self.0 == prefix
            || (self.0.starts_with(prefix) && self.0.as_bytes().get(prefix.len()) == Some(&b'/'))
    }
}

fn validate(key: &str) -> std::result::Result<(), &'static str> {
    if key.is_empty() {
        return Err("empty key");
    }
    if key.len() > 1024 {
        return Err("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return Err("absolute path");
    }
    if key.as_bytes().get(1) == Some(&b':') {
        return Err("looks like a Windows drive path");
    }
    if key.contains('\\') {
        return Err("backslash");
    }
    if key.chars().any(|c| c.is_control()) {
        return Err("control character");
    }
    for seg in key.split('/') {
        match seg {
            "" => return Err("empty path segment"),
            "." | ".." => return Err("'.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Validates a key prefix used for listing: empty, or a valid key with an optional trailing `/`.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(());
    }
    ObjectKey::new(trimmed).map(|_| ())
}

impl TryFrom<String> for ObjectKey {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        ObjectKey::new(value)
    }
}

impl TryFrom<&str> for ObjectKey {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self> {
        ObjectKey::new(value)
    }
}

impl From<ObjectKey> for String {
    fn from(k: ObjectKey) -> String {
        k.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({:?})", self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_relative_paths() {
        for k in ["a", "runs/x/manifest.json", "a/b.c/.hidden", "a..b/c"] {
            assert!(ObjectKey::new(k).is_ok(), "{k}");
        }
    }

    #[test]
    fn refuses_escapes_and_garbage() {
        for k in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "C:/x",
            "a\0b",
            "a\nb",
        ] {
            let err = ObjectKey::new(k).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{k:?}");
        }
    }

    #[test]
    fn prefix_matching_is_segment_wise() {
        let k = ObjectKey::new("runs/abc/x").unwrap();
        assert!(k.starts_with_prefix("runs"));
        assert!(k.starts_with_prefix("runs/"));
        assert!(k.starts_with_prefix("runs/abc"));
        assert!(!k.starts_with_prefix("runs/ab"));
        assert!(k.starts_with_prefix(""));
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<ObjectKey>("\"../x\"").is_err());
        let k: ObjectKey = serde_json::from_str("\"a/b\"").unwrap();
        assert_eq!(k.as_str(), "a/b");
    }
}
