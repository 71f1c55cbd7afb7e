//! What the manifest records of an artifact's checks and of where its time went.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Result of verifying one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationRecord {
    /// Which verifier ran (`checksum`, `postgres-archive`, …).
    pub verifier: String,
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Whether the artifact passed.
    pub ok: bool,
    /// What was checked, or what failed.
    pub detail: String,
    /// Findings that do not fail the check but an operator should know (e.g. redacted fields).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What the check read; `None` in records written before this was recorded (they read
    /// the stored artifact back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<VerifyMethod>,
    /// How long the check took (the part of it after the last byte was stored, for an
    /// inline check), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// What a verification read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMethod {
    /// The stored artifact, read back from the sink after it was stored (decoded when the
    /// verifier reads plain bytes).
    ReadBack,
    /// A copy of the plain bytes as the source produced them, while they were being stored
    /// ([`crate::verify::Verifier::verify_inline`]); no second read.
    Inline,
    /// The store itself checked what it received against checksums the sink sent with the
    /// bytes ([`crate::sink::PutResult::store_checked`]).
    StoreChecksum,
}

impl fmt::Display for VerifyMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyMethod::ReadBack => "read back",
            VerifyMethod::Inline => "inline",
            VerifyMethod::StoreChecksum => "store checksum",
        })
    }
}

impl VerificationRecord {
    /// What `verifier` found just now, without warnings.
    pub fn now(verifier: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        VerificationRecord {
            verifier: verifier.into(),
            at: Utc::now(),
            ok,
            detail: detail.into(),
            warnings: Vec::new(),
            method: None,
            duration_ms: None,
        }
    }

    /// The same record with these warnings.
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }

    /// The same record, saying what the check read.
    pub fn with_method(mut self, method: VerifyMethod) -> Self {
        self.method = Some(method);
        self
    }
}

/// Where the time of one artifact went. Dumping and storing overlap (the bytes stream from
/// the source through the codecs into the sink), so the phases are measured from the start
/// of the artifact and each includes the time it waited on the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ArtifactTimings {
    /// From the start until the source produced its last byte (the dump).
    pub dump_ms: u64,
    /// From the start until the sink confirmed the last byte stored.
    pub store_ms: u64,
    /// Verification after the last byte was stored: the end of the inline checks and every
    /// check that reads the stored artifact back.
    pub verify_ms: u64,
    /// The whole artifact: start to verified.
    pub total_ms: u64,
    /// Plain bytes per second over the store (`plain_size / store_ms`).
    pub plain_bytes_per_sec: u64,
    /// Stored bytes per second over the store.
    pub stored_bytes_per_sec: u64,
}

impl ArtifactTimings {
    /// Bytes per second of `bytes` over `ms` milliseconds (0 when no time was measured).
    pub fn rate(bytes: u64, ms: u64) -> u64 {
        if ms == 0 {
            0
        } else {
            (bytes as u128 * 1000 / ms as u128).min(u64::MAX as u128) as u64
        }
    }
}
