//! The manifest: the versioned record of one run (a backup set).
//!
//! `runs/<id>/manifest.json` is written last and is the only mark of a complete run. A run
//! whose artifacts failed gets `runs/<id>/report.json` instead, so it is never taken for a
//! backup, and retention can still see and remove it. While a run runs, the pipeline
//! refreshes `runs/<id>/heartbeat.json` ([`HEARTBEAT_FILE`]), so the catalog can tell a live
//! run from a crashed one by its newest write ([`RunSummary::inactive_for`]).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;

mod checks;
pub use self::checks::{ArtifactTimings, VerificationRecord, VerifyMethod};

/// The manifest format this library writes. Readers refuse anything newer.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// Directory under which runs live.
pub const RUNS_PREFIX: &str = "runs";

/// File name of the manifest inside a run directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// File name of the failure report of a run that did not complete.
pub const REPORT_FILE: &str = "report.json";

/// Directory inside a run holding later verification records.
pub const VERIFICATIONS_DIR: &str = "verifications";

/// File name of the heartbeat a running pipeline refreshes inside its run directory, and
/// deletes once the manifest is written. The catalog reads it as activity only (it is no
/// artifact): an unfinished run is aged by its newest write, so a live run whose heartbeat
/// is fresh is never taken for a crashed one.
pub const HEARTBEAT_FILE: &str = "heartbeat.json";

/// A sortable run identifier: `YYYYmmddTHHMMSSZ-xxxxxx` (UTC time, then random hex).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// A new id for a run starting at `at`.
    pub fn generate(at: DateTime<Utc>) -> Self {
        let suffix: u32 = rand::random::<u32>() & 0x00ff_ffff;
        RunId(format!("{}-{suffix:06x}", at.format("%Y%m%dT%H%M%SZ")))
    }

    /// Parses an id (must be a single, safe key segment).
    pub fn parse(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(Error::config(format!("invalid run id {s:?}"))
                .with_hint("run ids look like 20261124T080000Z-1a2b3c"));
        }
        Ok(RunId(s))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The start time encoded in the id, when it follows the standard format.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        let ts = self.0.get(..16)?;
        chrono::NaiveDateTime::parse_from_str(ts, "%Y%m%dT%H%M%SZ")
            .ok()
            .map(|n| n.and_utc())
    }

    /// `runs/<id>`.
    pub fn prefix(&self) -> String {
        format!("{RUNS_PREFIX}/{}", self.0)
    }

    /// `runs/<id>/manifest.json`.
    pub fn manifest_key(&self) -> ObjectKey {
        ObjectKey::new(format!("{}/{MANIFEST_FILE}", self.prefix()))
            .expect("run ids are valid keys")
    }

    /// `runs/<id>/report.json`.
    pub fn report_key(&self) -> ObjectKey {
        ObjectKey::new(format!("{}/{REPORT_FILE}", self.prefix())).expect("run ids are valid keys")
    }

    /// `runs/<id>/heartbeat.json` (see [`HEARTBEAT_FILE`]).
    pub fn heartbeat_key(&self) -> ObjectKey {
        ObjectKey::new(format!("{}/{HEARTBEAT_FILE}", self.prefix()))
            .expect("run ids are valid keys")
    }
}

impl TryFrom<String> for RunId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        RunId::parse(s)
    }
}

impl From<RunId> for String {
    fn from(r: RunId) -> String {
        r.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({})", self.0)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every artifact was stored (and verified, if verifiers were configured).
    Complete,
    /// Some artifacts were stored, some failed: not a usable backup set.
    Partial,
    /// Nothing usable was stored.
    Failed,
    /// The run never finished (no manifest, no report): crashed or still running.
    Incomplete,
    /// The catalog found the run damaged (see [`RunDamage`]): its manifest or report cannot
    /// be read, or an artifact its manifest names is missing or has another size. Never a
    /// backup, never a restore candidate, never deleted by retention. Only the catalog
    /// reports this status; manifests are never written with it.
    Damaged,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunStatus::Complete => "complete",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Incomplete => "incomplete",
            RunStatus::Damaged => "damaged",
        })
    }
}

/// One codec stage as recorded in the manifest, in the order it was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "codec", rename_all = "snake_case")]
pub enum CodecStep {
    /// zstd compression.
    Zstd {
        /// Compression level used.
        level: i32,
    },
    /// age encryption.
    Age {
        /// Public recipients (`age1…`), if encrypted to keys.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recipients: Vec<String>,
        /// Whether a passphrase (scrypt) was used instead of recipients.
        #[serde(default)]
        passphrase: bool,
    },
}

impl CodecStep {
    /// A short name (`zstd`, `age`).
    pub fn name(&self) -> &'static str {
        match self {
            CodecStep::Zstd { .. } => "zstd",
            CodecStep::Age { .. } => "age",
        }
    }
}

/// One stored artifact of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// The component it belongs to (`postgres`, `keycloak`, …).
    pub component: String,
    /// The provider that produced it (e.g. `pg_dump`, `command`).
    pub provider: String,
    /// The artifact's name within its component (e.g. `stoa.dump`).
    pub name: String,
    /// Where it is stored.
    pub key: ObjectKey,
    /// Content type of the plain bytes (e.g. `application/x-postgres-custom-dump`).
    pub content_type: String,
    /// Size before codecs.
    pub plain_size: u64,
    /// SHA-256 (hex) before codecs.
    pub plain_sha256: String,
    /// Size as stored.
    pub stored_size: u64,
    /// SHA-256 (hex) as stored.
    pub stored_sha256: String,
    /// Codec stages applied, in order; restore inverts them in reverse.
    pub codecs: Vec<CodecStep>,
    /// Whether the plain bytes hold secrets.
    #[serde(default)]
    pub sensitive: bool,
    /// Provider facts: server version, realm, row counts, TOC entries…
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// How long the export took, in milliseconds.
    pub duration_ms: u64,
    /// Verification results taken during the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verification: Vec<VerificationRecord>,
    /// Where the time went (dump, store, verify); `None` in manifests written before this
    /// was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<ArtifactTimings>,
}

impl ArtifactRecord {
    /// Whether every recorded verification passed (and at least one ran).
    pub fn is_verified(&self) -> bool {
        !self.verification.is_empty() && self.verification.iter().all(|v| v.ok)
    }

    /// Reads the recorded facts as a provider's typed facts (e.g. `PostgresFacts`). Keys the
    /// type does not know are ignored, so older readers still read newer manifests that only
    /// add facts. Fails with an [`ErrorKind::Unsupported`] error when the facts hold a value
    /// this version does not know (written by a newer stoa-backup), and with an
    /// [`ErrorKind::Integrity`] error when a fact is missing or of the wrong type; both name
    /// the artifact key and say what to do.
    pub fn facts_as<T: DeserializeOwned>(&self) -> Result<T> {
        use crate::source::{read_facts, FactsMismatch};
        let e = match read_facts(&self.facts) {
            Ok(t) => return Ok(t),
            Err(FactsMismatch::Unknown(why)) => Error::new(
                ErrorKind::Unsupported,
                format!("the facts recorded for '{}' hold a value this version does not know: {why}", self.key),
            )
            .with_hint("the backup was probably written by a newer stoa-backup: upgrade stoa-backup to read it"),
            Err(FactsMismatch::Shape(why)) => Error::integrity(format!(
                "the facts recorded for '{}' do not have the shape its provider writes: {why}",
                self.key
            ))
            .with_hint(format!(
                "the manifest was edited or damaged, or the artifact comes from another provider than '{}': \
                 check the manifest, or restore another run",
                self.provider
            )),
        };
        Err(e
            .with_component(self.component.clone())
            .with_operation("read facts")
            .with_artifact(self.key.to_string()))
    }
}

#[cfg(test)]
impl ArtifactRecord {
    /// A record for unit tests: artifact `name` of `component`, stored without codecs.
    pub(crate) fn for_test(component: &str, name: &str) -> Self {
        ArtifactRecord {
            component: component.to_string(),
            provider: "test".to_string(),
            name: name.to_string(),
            key: ObjectKey::new(format!("runs/20260101T000000Z-000001/{component}/{name}"))
                .unwrap(),
            content_type: "application/octet-stream".to_string(),
            plain_size: 0,
            plain_sha256: String::new(),
            stored_size: 0,
            stored_sha256: String::new(),
            codecs: Vec::new(),
            sensitive: false,
            facts: Default::default(),
            duration_ms: 0,
            verification: Vec::new(),
            timings: None,
        }
    }
}

#[cfg(test)]
impl Manifest {
    /// A complete manifest of run `run_id` with no artifacts, for unit tests.
    pub(crate) fn for_test(run_id: RunId) -> Self {
        let at = run_id.timestamp().unwrap_or_default();
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            run_id,
            status: RunStatus::Complete,
            started_at: at,
            finished_at: at,
            library_version: env!("CARGO_PKG_VERSION").to_string(),
            host: "test".to_string(),
            labels: BTreeMap::new(),
            artifacts: Vec::new(),
            failures: Vec::new(),
            pinned: false,
        }
    }
}

/// A failure of one artifact (or of a whole source, when `name` is `None`).
///
/// Besides the operator's text it keeps what callers match on: the error's kind, whether a
/// retry may help, its hint, HTTP status and structured context. Reports written before
/// these were recorded still parse: their failures read as [`ErrorKind::Source`], not
/// retryable, with no hint, status or context (what those versions reported for every
/// failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFailure {
    /// Component of the failing source.
    pub component: String,
    /// The artifact, when the failure is specific to one.
    pub name: Option<String>,
    /// Which step failed (`preflight`, `discover`, `export`, `put`, `verify`).
    pub operation: String,
    /// The error, as the operator should read it.
    pub error: String,
    /// The error's kind. A kind this version does not know (written by a newer one) reads
    /// as [`ErrorKind::Source`].
    #[serde(
        default = "legacy_failure_kind",
        deserialize_with = "known_kind_or_source"
    )]
    pub kind: ErrorKind,
    /// Whether retrying the run may succeed.
    #[serde(default)]
    pub retryable: bool,
    /// The artifact key the error names, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// What the operator should do next, when the error says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The HTTP status a remote answered, when the error came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The error's structured details (see [`Error::context`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, String>,
}

impl ArtifactFailure {
    /// The failure of `operation` on `component` (and artifact `name`, if any) with `error`,
    /// keeping its kind, retryability, artifact key, hint, HTTP status and context.
    pub fn from_error(
        component: impl Into<String>,
        name: Option<String>,
        operation: impl Into<String>,
        error: &Error,
    ) -> Self {
        ArtifactFailure {
            component: component.into(),
            name,
            operation: operation.into(),
            error: error.to_string(),
            kind: error.kind(),
            retryable: error.is_retryable(),
            artifact: error.artifact().map(str::to_string),
            hint: error.hint().map(str::to_string),
            http_status: error.http_status(),
            context: error.context().iter().cloned().collect(),
        }
    }
}

fn legacy_failure_kind() -> ErrorKind {
    ErrorKind::Source
}

fn known_kind_or_source<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<ErrorKind, D::Error> {
    let name = String::deserialize(deserializer)?;
    Ok(serde_json::from_value(serde_json::Value::String(name)).unwrap_or(ErrorKind::Source))
}

/// The record of a run. Written as `runs/<id>/manifest.json` (complete runs) or
/// `runs/<id>/report.json` (failed or partial runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version; see [`MANIFEST_FORMAT_VERSION`].
    pub format_version: u32,
    /// The run's id.
    pub run_id: RunId,
    /// How the run ended.
    pub status: RunStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Version of stoa-backup that wrote it.
    pub library_version: String,
    /// Host (or pod) that ran it.
    pub host: String,
    /// Caller labels (cluster, environment, schedule…).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Stored artifacts.
    pub artifacts: Vec<ArtifactRecord>,
    /// Failures, if the run was not complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<ArtifactFailure>,
    /// Whether the run is pinned (kept by retention whatever the rules say).
    #[serde(default)]
    pub pinned: bool,
}

impl Manifest {
    /// Serializes the manifest (pretty JSON, stable field order).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| Error::internal("cannot serialize manifest").with_source(e))
    }

    /// Parses a manifest, refusing newer formats with a clear error.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(bytes).map_err(|e| {
            Error::integrity("manifest is not valid JSON or has no format_version")
                .with_operation("read manifest")
                .with_source(e)
        })?;
        if v.format_version > MANIFEST_FORMAT_VERSION {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "manifest format version {} is newer than this library supports ({})",
                    v.format_version, MANIFEST_FORMAT_VERSION
                ),
            )
            .with_operation("read manifest")
            .with_hint("upgrade stoa-backup to read backups written by a newer version"));
        }
        serde_json::from_slice(bytes).map_err(|e| {
            Error::integrity("manifest does not match its format")
                .with_operation("read manifest")
                .with_source(e)
        })
    }

    /// The components present in the run.
    pub fn components(&self) -> Vec<String> {
        let mut c: Vec<String> = self.artifacts.iter().map(|a| a.component.clone()).collect();
        c.extend(self.failures.iter().map(|f| f.component.clone()));
        c.sort();
        c.dedup();
        c
    }

    /// Whether every artifact has passed verification.
    pub fn is_verified(&self) -> bool {
        !self.artifacts.is_empty() && self.artifacts.iter().all(|a| a.is_verified())
    }
}

/// Why the catalog reports a run as [`RunStatus::Damaged`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDamage {
    /// What kind of damage: [`ErrorKind::Integrity`] (unreadable or truncated record, an
    /// artifact missing or of another size than recorded), [`ErrorKind::Unsupported`]
    /// (written by a newer stoa-backup), [`ErrorKind::NotFound`] (listed, but gone when
    /// read).
    pub kind: ErrorKind,
    /// The object that shows the damage (manifest, report, verification record, artifact).
    pub key: ObjectKey,
    /// What is wrong, for the operator.
    pub reason: String,
    /// What to do about it.
    pub hint: String,
}

impl RunDamage {
    /// The damage as an error naming the run, the object and what to do.
    pub fn to_error(&self, run: &RunId) -> Error {
        Error::new(self.kind, format!("run {run} is damaged: {}", self.reason))
            .with_component("catalog")
            .with_artifact(self.key.to_string())
            .with_hint(self.hint.clone())
    }
}

impl fmt::Display for RunDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.key, self.hint)
    }
}

/// What retention and listings need to know about a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: RunId,
    /// When it started (from the manifest, or the id for incomplete runs).
    pub started_at: DateTime<Utc>,
    /// How it ended.
    pub status: RunStatus,
    /// Whether it passed verification (during the run or later).
    pub verified: bool,
    /// When the verification that makes it [`verified`](Self::verified) ran: the newest
    /// later verification (`Catalog::verify_run`) when it passed, else the run's end when
    /// the run verified itself; `None` when it is not verified. Incremental re-verification
    /// skips runs verified recently enough by it.
    pub verified_at: Option<DateTime<Utc>>,
    /// Whether it is pinned.
    pub pinned: bool,
    /// Components it covers.
    pub components: Vec<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Total stored bytes, when known.
    pub stored_bytes: u64,
    /// The newest `last_modified` of the run's objects (artifacts, report, heartbeat…), by
    /// the storage's clock; `None` when the backend reports no times.
    pub last_activity: Option<DateTime<Utc>>,
    /// The storage's clock as the listing showed it: the newest `last_modified` of any object
    /// in the listing this summary came from (the same for every run of one listing).
    pub storage_now: Option<DateTime<Utc>>,
    /// Why the run is damaged, when its status is [`RunStatus::Damaged`].
    pub damage: Option<RunDamage>,
}

impl RunSummary {
    /// A summary with no components, labels, bytes, times or damage; not verified, not
    /// pinned. Set the other fields with struct update syntax.
    pub fn new(run_id: RunId, started_at: DateTime<Utc>, status: RunStatus) -> Self {
        RunSummary {
            run_id,
            started_at,
            status,
            verified: false,
            verified_at: None,
            pinned: false,
            components: Vec::new(),
            labels: BTreeMap::new(),
            stored_bytes: 0,
            last_activity: None,
            storage_now: None,
            damage: None,
        }
    }

    /// How long the run has been inactive at `now` (the planner's clock), conservatively:
    /// the smaller of `now - last_activity` and `storage_now - last_activity`. A planner
    /// whose clock runs ahead, or a storage whose clock does, cannot make a live run look
    /// old alone: both clocks must agree. Without `last_activity` (a backend that reports
    /// no times), the age since `started_at` by the planner's clock.
    ///
    /// A crashed run that is the newest write in the storage stays young until something
    /// else is written (the next run), which is the safe side.
    pub fn inactive_for(&self, now: DateTime<Utc>) -> chrono::Duration {
        let Some(active) = self.last_activity else {
            return now.signed_duration_since(self.started_at);
        };
        let by_planner = now.signed_duration_since(active);
        match self.storage_now {
            Some(storage) => by_planner.min(storage.signed_duration_since(active)),
            None => by_planner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_parse_back() {
        let a = RunId::generate("2026-01-01T00:00:00Z".parse().unwrap());
        let b = RunId::generate("2026-01-01T00:00:01Z".parse().unwrap());
        assert!(a < b);
        assert_eq!(
            a.timestamp().unwrap().to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        assert!(RunId::parse("../x").is_err());
        assert_eq!(a.manifest_key().as_str(), format!("runs/{a}/manifest.json"));
    }

    #[test]
    fn newer_manifest_format_is_refused_clearly() {
        let json = br#"{"format_version": 99, "run_id": "x"}"#;
        let err = Manifest::from_json(json).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("newer"), "{err}");
    }

    fn report_with_failure(failure: &str) -> String {
        format!(
            r#"{{"format_version": 1, "run_id": "20260101T000000Z-0a0b0c", "status": "failed",
                "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:05Z",
                "library_version": "0.1.0", "host": "h", "artifacts": [],
                "failures": [{failure}]}}"#
        )
    }

    #[test]
    fn old_report_without_error_fields_still_parses() {
        // The shape report.json had before failures kept their kind.
        let json = report_with_failure(
            r#"{"component": "postgres", "name": "stoa.dump", "operation": "export",
                "error": "[postgres] export: source failed: pg_dump exited with code 1"}"#,
        );
        let m = Manifest::from_json(json.as_bytes()).unwrap();
        let f = &m.failures[0];
        assert_eq!(f.component, "postgres");
        assert_eq!(f.name.as_deref(), Some("stoa.dump"));
        assert_eq!(f.kind, ErrorKind::Source);
        assert!(!f.retryable);
        assert_eq!((f.artifact.as_ref(), f.hint.as_ref()), (None, None));
        assert_eq!(f.http_status, None);
        assert!(f.context.is_empty());
    }

    #[test]
    fn failure_keeps_the_error_fields_through_json() {
        let e = Error::new(ErrorKind::Unavailable, "Grafana answered 503")
            .with_retryable(true)
            .with_artifact("runs/x/grafana/index.json")
            .with_hint("retry later")
            .with_http_status(503)
            .with_context("url_path", "/api/health");
        let f = ArtifactFailure::from_error("grafana", Some("index.json".into()), "export", &e);
        let mut m = Manifest::from_json(report_with_failure("").as_bytes()).unwrap();
        m.failures.push(f.clone());
        let text = String::from_utf8(m.to_json().unwrap()).unwrap();
        assert!(text.contains(r#""kind": "unavailable""#), "{text}");
        let back = Manifest::from_json(text.as_bytes()).unwrap();
        assert_eq!(back.failures, vec![f.clone()]);
        assert_eq!(f.kind, ErrorKind::Unavailable);
        assert!(f.retryable);
        assert_eq!(f.artifact.as_deref(), Some("runs/x/grafana/index.json"));
        assert_eq!(f.hint.as_deref(), Some("retry later"));
        assert_eq!(f.http_status, Some(503));
        assert_eq!(
            f.context.get("url_path").map(String::as_str),
            Some("/api/health")
        );
        assert_eq!(f.error, e.to_string());
    }

    #[test]
    fn unknown_failure_kind_reads_as_source() {
        let json = report_with_failure(
            r#"{"component": "c", "name": null, "operation": "discover", "error": "x",
                "kind": "a_kind_from_the_future", "retryable": true}"#,
        );
        let m = Manifest::from_json(json.as_bytes()).unwrap();
        assert_eq!(m.failures[0].kind, ErrorKind::Source);
        assert!(m.failures[0].retryable);
        let kinds: Vec<ErrorKind> = ["not_found", "permission_denied", "unavailable"]
            .iter()
            .map(|k| serde_json::from_value(serde_json::json!(k)).unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                ErrorKind::NotFound,
                ErrorKind::PermissionDenied,
                ErrorKind::Unavailable
            ]
        );
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Rest,
        Tar,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct TestFacts {
        realm: String,
        mode: Mode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        users: Option<u64>,
    }

    fn record(facts: crate::source::Facts) -> ArtifactRecord {
        ArtifactRecord {
            provider: "keycloak-rest".into(),
            key: ObjectKey::new("runs/r/keycloak/stoa-realm.json").unwrap(),
            content_type: "application/json".into(),
            facts,
            ..ArtifactRecord::for_test("keycloak", "stoa-realm.json")
        }
    }

    #[test]
    fn typed_facts_round_trip_and_ignore_unknown_keys() {
        let typed = TestFacts {
            realm: "stoa".into(),
            mode: Mode::Rest,
            users: None,
        };
        let mut facts = crate::source::to_facts(&typed).unwrap();
        assert_eq!(
            serde_json::Value::Object(facts.clone()),
            serde_json::json!({"realm": "stoa", "mode": "rest"})
        );
        facts.insert("added_later".into(), serde_json::json!([1, 2]));
        assert_eq!(record(facts).facts_as::<TestFacts>().unwrap(), typed);
        assert_eq!(
            crate::source::to_facts(&1u8).unwrap_err().kind(),
            ErrorKind::Internal
        );
    }

    #[test]
    fn facts_of_the_wrong_shape_are_an_integrity_error_naming_the_key() {
        let facts = serde_json::json!({"realm": "stoa", "mode": "rest", "users": "many"});
        let serde_json::Value::Object(facts) = facts else {
            unreachable!()
        };
        let err = record(facts).facts_as::<TestFacts>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity);
        assert_eq!(err.artifact(), Some("runs/r/keycloak/stoa-realm.json"));
        assert_eq!(err.component(), Some("keycloak"));
        let text = err.to_string();
        assert!(
            text.contains("TestFacts") && text.contains("(fact 'users')"),
            "{text}"
        );
        assert!(err.hint().unwrap().contains("restore another run"), "{err}");

        let err = record(Default::default())
            .facts_as::<TestFacts>()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity);
        assert!(err.to_string().contains("missing field `realm`"), "{err}");
    }

    #[test]
    fn facts_with_an_unknown_tag_are_unsupported() {
        let facts = serde_json::json!({"realm": "stoa", "mode": "quantum"});
        let serde_json::Value::Object(facts) = facts else {
            unreachable!()
        };
        let err = record(facts).facts_as::<TestFacts>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert!(err.to_string().contains("quantum"), "{err}");
        assert!(err.hint().unwrap().contains("upgrade"), "{err}");
    }

    #[test]
    fn plan_facts_that_do_not_fit_are_a_config_error() {
        let plan = crate::source::ArtifactPlan::new("x.json", "application/json").fact("realm", 3);
        let err = plan.facts_as::<TestFacts>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(err.artifact(), Some("x.json"));
        assert!(err.hint().unwrap().contains("discover()"), "{err}");
    }

    #[test]
    fn garbage_manifest_is_an_integrity_error() {
        let err = Manifest::from_json(b"{not json").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity);
    }
}
