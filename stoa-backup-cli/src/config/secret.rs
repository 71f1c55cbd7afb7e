//! [`Secret`]: a value read from the environment or a file that must never be printed.

use std::fmt;

use serde::{Serialize, Serializer};

/// What every secret prints as: in `Debug`, `Display`, JSON and `config check`.
pub const REDACTED: &str = "***";

/// A password, token or key read through `${ENV}` or a `*_file` field. `Debug`, `Display`
/// and `Serialize` print `***`; only [`Secret::expose`] gives the value, to hand it to the
/// library's constructors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself: pass it on, never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// Whether a URL carries a password in its user information (`scheme://user:pw@host`).
pub fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// The URL with the password of its user information replaced by `***`.
pub fn redact_url(url: &str) -> String {
    if !url_has_password(url) {
        return url.to_string();
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host) = authority.rsplit_once('@').unwrap_or(("", authority));
    let user = userinfo.split(':').next().unwrap_or_default();
    format!("{scheme}://{user}:{REDACTED}@{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn passwords_in_urls_are_found_and_redacted() {
        assert!(url_has_password("postgres://u:pw@h:5432/db"));
        assert!(!url_has_password("postgres://u@h:5432/db"));
        assert!(!url_has_password("https://h/a:b@c"));
        assert!(!url_has_password("host=h user=u"));
        assert_eq!(
            redact_url("postgres://u:p@ss@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_url("https://h/x"), "https://h/x");
    }
}
