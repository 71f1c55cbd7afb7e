//! Conditional writes of small objects: create-if-absent and compare-and-swap, the one
//! primitive a lease in the sink ([`SinkLock`](crate::lock::SinkLock)) needs.
//!
//! A sink that has them says so in [`SinkCapabilities::conditional_put`](super::SinkCapabilities)
//! and implements [`Sink::get_versioned`](super::Sink::get_versioned) and
//! [`Sink::put_if`](super::Sink::put_if); the defaults fail with
//! [`ErrorKind::Unsupported`].

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind};
use crate::key::ObjectKey;

/// The version of a stored object, as its sink compares it in
/// [`PutCondition::Matches`]: an opaque token (an S3 ETag, a content digest, a Git commit
/// id). Equal versions mean equal content; only the sink that issued one understands it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectVersion(String);

impl ObjectVersion {
    /// A version from the sink's own token.
    pub fn new(token: impl Into<String>) -> Self {
        ObjectVersion(token.into())
    }

    /// The version of `bytes` for sinks that compare content: `sha256:<hex>`.
    pub fn of_content(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        let mut hex = String::with_capacity(7 + 64);
        hex.push_str("sha256:");
        for b in digest {
            hex.push_str(&format!("{b:02x}"));
        }
        ObjectVersion(hex)
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ObjectVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// When a [`Sink::put_if`](super::Sink::put_if) may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// Only if no object exists under the key (create).
    Absent,
    /// Only if the object under the key is still at this version (compare-and-swap).
    Matches(ObjectVersion),
}

/// What a [`Sink::put_if`](super::Sink::put_if) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written; this is its new version.
    Written(ObjectVersion),
    /// The condition did not hold (the object exists, or moved on since the version was
    /// read): nothing was written.
    ConditionFailed,
}

impl PutOutcome {
    /// Whether the object was written.
    pub fn is_written(&self) -> bool {
        matches!(self, PutOutcome::Written(_))
    }
}

/// A small object read whole, with the version to compare against in a later
/// [`PutCondition::Matches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedObject {
    /// The content.
    pub bytes: Bytes,
    /// Its version.
    pub version: ObjectVersion,
}

/// The error of the default [`Sink::get_versioned`](super::Sink::get_versioned) and
/// [`Sink::put_if`](super::Sink::put_if): the sink `describe`d as `sink` has no
/// conditional writes.
pub fn conditional_unsupported(sink: &str, key: &ObjectKey, operation: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("the sink {sink} has no conditional writes (create-if-absent, compare-and-swap)"),
    )
    .with_operation(operation.to_string())
    .with_artifact(key.as_str())
    .with_hint(
        "use a sink that has them (local directory, S3, Git, memory) for a lease in the sink, \
         or give the pipeline another lock (a Kubernetes Lease)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_versions_are_digests() {
        let a = ObjectVersion::of_content(b"a");
        assert_eq!(
            a.as_str(),
            "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
        );
        assert_eq!(a, ObjectVersion::of_content(b"a"));
        assert_ne!(a, ObjectVersion::of_content(b"b"));
        assert_eq!(a.to_string(), a.as_str());
    }
}
