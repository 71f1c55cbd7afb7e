//! The one public error type of stoa-backup.
//!
//! Every error carries a [`ErrorKind`], whether retrying may help, and context: the
//! component (`postgres`, `storage/local`, …), the operation (`export`, `put`, …), the
//! artifact key, and a hint telling the operator what to do next. Provider and storage
//! modules keep private error enums and convert them at the boundary.
//!
//! Messages never contain secrets: constructors take plain text that callers have already
//! redacted.

use std::fmt;

/// Result type used throughout stoa-backup.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarsely: callers match on this to decide what to do.
///
/// Serialized in snake_case (`not_found`, `permission_denied`, …), as failure reports record
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The thing asked for does not exist (artifact, run, database, realm…).
    NotFound,
    /// Credentials missing, wrong or expired.
    Unauthenticated,
    /// Authenticated, but not allowed to do this.
    PermissionDenied,
    /// Invalid configuration or arguments; fix the input and try again.
    Config,
    /// Data is corrupt, truncated, or does not match its recorded checksum.
    Integrity,
    /// The operation or format is not supported (e.g. a newer manifest format).
    Unsupported,
    /// The run was cancelled by the caller.
    Cancelled,
    /// The source system failed (a child process exited non-zero, an API answered 5xx…).
    Source,
    /// The storage backend failed (disk full, I/O error, object store error…).
    Storage,
    /// The target system refused a restore.
    Restore,
    /// A remote is unreachable or timed out.
    Unavailable,
    /// The target already holds data and the chosen policy forbids touching it.
    Conflict,
    /// A bug or an unexpected state in stoa-backup itself.
    Internal,
}

impl ErrorKind {
    /// Whether errors of this kind are usually worth retrying.
    pub fn default_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }

    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Config => "configuration error",
            ErrorKind::Integrity => "integrity error",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Source => "source failed",
            ErrorKind::Storage => "storage failed",
            ErrorKind::Restore => "restore failed",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Internal => "internal error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of stoa-backup: a kind, a message and context.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    retryable: bool,
    component: Option<String>,
    operation: Option<String>,
    artifact: Option<String>,
    hint: Option<String>,
    http_status: Option<u16>,
    retry_after: Option<std::time::Duration>,
    context: Vec<(String, String)>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a message (which must not contain secrets).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                retryable: kind.default_retryable(),
                component: None,
                operation: None,
                artifact: None,
                hint: None,
                http_status: None,
                retry_after: None,
                context: Vec::new(),
                source: None,
            }),
        }
    }

    /// Shorthand for a [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Shorthand for a [`ErrorKind::Integrity`] error.
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Integrity, message)
    }

    /// Shorthand for a [`ErrorKind::Storage`] error.
    pub fn storage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Storage, message)
    }

    /// Shorthand for a [`ErrorKind::Source`] error.
    pub fn source_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Source, message)
    }

    /// Shorthand for a [`ErrorKind::Cancelled`] error.
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, message)
    }

    /// Shorthand for a [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Maps an I/O error to an error of a fitting kind (not found, permission, storage…).
    pub fn from_io(err: std::io::Error, message: impl Into<String>) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::PermissionDenied => ErrorKind::PermissionDenied,
            Io::TimedOut | Io::ConnectionRefused | Io::ConnectionReset | Io::Interrupted => {
                ErrorKind::Unavailable
            }
            Io::InvalidData | Io::UnexpectedEof => ErrorKind::Integrity,
            _ => ErrorKind::Storage,
        };
        let mut e = Error::new(kind, message);
        if err.raw_os_error() == Some(28) {
            // ENOSPC: the one storage failure operators hit most; say so plainly.
            e = e.with_hint("the storage is full: free space or grow the volume, then re-run");
        }
        e.with_source(err)
    }

    /// Sets the component (e.g. `postgres`, `storage/local`).
    pub fn with_component(mut self, component: impl Into<String>) -> Self {
        self.inner.component = Some(component.into());
        self
    }

    /// Sets the component only if none is set yet (outer layers must not hide inner context).
    pub fn or_component(mut self, component: impl Into<String>) -> Self {
        if self.inner.component.is_none() {
            self.inner.component = Some(component.into());
        }
        self
    }

    /// Sets the operation (e.g. `export`, `put`, `verify`).
    pub fn with_operation(mut self, operation: impl Into<String>) -> Self {
        self.inner.operation = Some(operation.into());
        self
    }

    /// Sets the operation only if none is set yet.
    pub fn or_operation(mut self, operation: impl Into<String>) -> Self {
        if self.inner.operation.is_none() {
            self.inner.operation = Some(operation.into());
        }
        self
    }

    /// Sets the artifact key or name.
    pub fn with_artifact(mut self, artifact: impl Into<String>) -> Self {
        self.inner.artifact = Some(artifact.into());
        self
    }

    /// Sets the artifact only if none is set yet.
    pub fn or_artifact(mut self, artifact: impl Into<String>) -> Self {
        if self.inner.artifact.is_none() {
            self.inner.artifact = Some(artifact.into());
        }
        self
    }

    /// Sets a hint: what the operator should do next.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.inner.hint = Some(hint.into());
        self
    }

    /// Sets a hint only if none is set yet: a more specific hint from an inner layer (e.g.
    /// the ENOSPC one set by [`Error::from_io`]) is kept.
    pub fn or_hint(mut self, hint: impl Into<String>) -> Self {
        if self.inner.hint.is_none() {
            self.inner.hint = Some(hint.into());
        }
        self
    }

    /// Records the HTTP status a remote answered, so callers match on it instead of on the
    /// message.
    pub fn with_http_status(mut self, status: u16) -> Self {
        self.inner.http_status = Some(status);
        self
    }

    /// Records how long the remote asked to wait before a retry (`Retry-After`).
    pub fn with_retry_after(mut self, delay: std::time::Duration) -> Self {
        self.inner.retry_after = Some(delay);
        self
    }

    /// Adds a structured detail (e.g. `("bucket", "backups")`, `("object", "Tool a/b")`).
    /// Values must not be secrets. A key set twice keeps the newer value.
    pub fn with_context(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        let value = value.into();
        match self.inner.context.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.inner.context.push((key, value)),
        }
        self
    }

    /// Changes the kind, keeping everything else (retryability included): for a caller that
    /// knows better what an answer means, e.g. a token endpoint's 400 is bad credentials.
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.inner.kind = kind;
        self
    }

    /// A copy with every field, for handing one failure to two receivers. The cause is kept
    /// as its text (causes cannot be cloned), so the copy reads exactly as the original.
    pub fn duplicate(&self) -> Error {
        Error {
            inner: Box::new(Inner {
                kind: self.inner.kind,
                message: self.inner.message.clone(),
                retryable: self.inner.retryable,
                component: self.inner.component.clone(),
                operation: self.inner.operation.clone(),
                artifact: self.inner.artifact.clone(),
                hint: self.inner.hint.clone(),
                http_status: self.inner.http_status,
                retry_after: self.inner.retry_after,
                context: self.inner.context.clone(),
                source: self.inner.source.as_ref().map(|s| {
                    Box::new(CauseText(s.to_string())) as Box<dyn std::error::Error + Send + Sync>
                }),
            }),
        }
    }

    /// Overrides whether retrying may help.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.inner.retryable = retryable;
        self
    }

    /// Attaches an underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Box::new(source));
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether retrying the operation may succeed.
    pub fn is_retryable(&self) -> bool {
        self.inner.retryable
    }

    /// The message, without context.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The component the error happened in, if known.
    pub fn component(&self) -> Option<&str> {
        self.inner.component.as_deref()
    }

    /// The operation that failed, if known.
    pub fn operation(&self) -> Option<&str> {
        self.inner.operation.as_deref()
    }

    /// The artifact concerned, if any.
    pub fn artifact(&self) -> Option<&str> {
        self.inner.artifact.as_deref()
    }

    /// What the operator should do next, if known.
    pub fn hint(&self) -> Option<&str> {
        self.inner.hint.as_deref()
    }

    /// The HTTP status a remote answered, when the error came from one.
    pub fn http_status(&self) -> Option<u16> {
        self.inner.http_status
    }

    /// How long the remote asked to wait before retrying, when it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.inner.retry_after
    }

    /// Structured details, in the order they were added.
    pub fn context(&self) -> &[(String, String)] {
        &self.inner.context
    }

    /// One structured detail by key.
    pub fn context_value(&self, key: &str) -> Option<&str> {
        self.inner
            .context
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        if let Some(c) = &i.component {
            write!(f, "[{c}] ")?;
        }
        match (&i.operation, &i.artifact) {
            (Some(op), Some(a)) => write!(f, "{op} of '{a}': ")?,
            (Some(op), None) => write!(f, "{op}: ")?,
            (None, Some(a)) => write!(f, "'{a}': ")?,
            (None, None) => {}
        }
        write!(f, "{}: {}", i.kind, i.message)?;
        if !i.context.is_empty() {
            let pairs: Vec<String> = i.context.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, " ({})", pairs.join(", "))?;
        }
        if let Some(src) = &i.source {
            write!(f, ": {src}")?;
        }
        if let Some(h) = &i.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Error")
            .field("kind", &i.kind)
            .field("message", &i.message)
            .field("retryable", &i.retryable)
            .field("component", &i.component)
            .field("operation", &i.operation)
            .field("artifact", &i.artifact)
            .field("hint", &i.hint)
            .field("http_status", &i.http_status)
            .field("retry_after", &i.retry_after)
            .field("context", &i.context)
            .field("source", &i.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

/// The text of a cause, in a [`Error::duplicate`].
#[derive(Debug)]
struct CauseText(String);

impl fmt::Display for CauseText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CauseText {}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        // An io::Error may wrap one of ours (streams cross tokio's AsyncRead boundary).
        if err.get_ref().is_some_and(|e| e.is::<Error>()) {
            let inner = err.into_inner().expect("checked above");
            return *inner.downcast::<Error>().expect("checked above");
        }
        Error::from_io(err, "I/O error")
    }
}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        std::io::Error::other(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_component_operation_artifact_and_hint() {
        let e = Error::integrity("sha256 mismatch")
            .with_component("postgres")
            .with_operation("verify")
            .with_artifact("runs/x/postgres/stoa.dump")
            .with_hint("re-run the backup");
        assert_eq!(
            e.to_string(),
            "[postgres] verify of 'runs/x/postgres/stoa.dump': integrity error: sha256 mismatch (hint: re-run the backup)"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn io_round_trip_keeps_our_error() {
        let e = Error::integrity("bad").with_artifact("a");
        let io: std::io::Error = e.into();
        let back: Error = io.into();
        assert_eq!(back.kind(), ErrorKind::Integrity);
        assert_eq!(back.artifact(), Some("a"));
    }

    #[test]
    fn structured_fields_are_kept_and_shown() {
        let e = Error::new(ErrorKind::Unavailable, "rate limited")
            .with_http_status(429)
            .with_retry_after(std::time::Duration::from_secs(3))
            .with_context("bucket", "b")
            .with_context("bucket", "backups")
            .with_context("object", "Tool a/b");
        assert_eq!(e.http_status(), Some(429));
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(3)));
        assert_eq!(e.context_value("bucket"), Some("backups"));
        assert_eq!(e.context().len(), 2);
        assert_eq!(
            e.to_string(),
            "unavailable: rate limited (bucket=backups, object=Tool a/b)"
        );
        let io: std::io::Error = e.into();
        let back: Error = io.into();
        assert_eq!(back.http_status(), Some(429));
    }

    #[test]
    fn duplicate_keeps_every_field_and_reads_the_same() {
        let e = Error::new(ErrorKind::Unavailable, "rate limited")
            .with_retryable(true)
            .with_component("keycloak")
            .with_operation("export")
            .with_artifact("runs/x/keycloak/stoa-realm.json")
            .with_hint("retry later")
            .with_http_status(429)
            .with_retry_after(std::time::Duration::from_secs(2))
            .with_context("realm", "stoa")
            .with_source(std::io::Error::other("connection reset"));
        let d = e.duplicate();
        assert_eq!(d.to_string(), e.to_string());
        assert_eq!(format!("{d:?}"), format!("{e:?}"));
        assert_eq!((d.kind(), d.is_retryable()), (ErrorKind::Unavailable, true));
        assert_eq!(d.retry_after(), e.retry_after());
        assert_eq!(
            std::error::Error::source(&d).map(|s| s.to_string()),
            Some("connection reset".into())
        );
    }

    #[test]
    fn with_kind_keeps_the_rest() {
        let e = Error::new(ErrorKind::Source, "HTTP 400")
            .with_http_status(400)
            .with_hint("h")
            .with_kind(ErrorKind::Unauthenticated);
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        assert_eq!((e.http_status(), e.hint()), (Some(400), Some("h")));
    }

    #[test]
    fn or_hint_keeps_the_inner_hint() {
        let e = Error::storage("x").with_hint("inner").or_hint("outer");
        assert_eq!(e.hint(), Some("inner"));
        assert_eq!(Error::storage("x").or_hint("outer").hint(), Some("outer"));
    }

    #[test]
    fn enospc_gets_a_hint() {
        let e = Error::from_io(std::io::Error::from_raw_os_error(28), "write failed");
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert!(e.hint().unwrap().contains("full"));
    }
}
