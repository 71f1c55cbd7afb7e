//! The export side of a provider.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::manifest::ArtifactRecord;
use crate::stream::ByteStream;

/// Provider facts recorded in the manifest (server version, row counts, realm…).
///
/// Providers do not build this map by hand: each keeps a serde struct of its facts, writes
/// it with [`to_facts`] and reads it back with [`ArtifactRecord::facts_as`] (or
/// [`ArtifactPlan::facts_as`]), so every key is written in one place and read in one place.
pub type Facts = serde_json::Map<String, serde_json::Value>;

/// Turns typed facts (a struct deriving `Serialize`) into [`Facts`]. Fields skipped by
/// serde (`skip_serializing_if`) are left out of the map. Fails with an internal error when
/// `facts` does not serialize to a JSON object (a bug in the provider).
pub fn to_facts<T: Serialize + ?Sized>(facts: &T) -> Result<Facts> {
    match serde_json::to_value(facts) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::internal(format!(
            "{} does not serialize to a JSON object, so it cannot be recorded as facts",
            type_name::<T>()
        ))),
        Err(e) => Err(
            Error::internal(format!("cannot serialize {} as facts", type_name::<T>()))
                .with_source(e),
        ),
    }
}

/// The last path segment of a type's name (`PostgresFacts`), for messages.
fn type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let path = full.split('<').next().unwrap_or(full);
    path.rsplit("::").next().unwrap_or(path)
}

/// Why facts could not be read as `T`.
pub(crate) enum FactsMismatch {
    /// A value this version does not know (an enum tag written by a newer version).
    Unknown(String),
    /// A missing key or a value of the wrong type.
    Shape(String),
}

/// Reads `facts` as `T`, telling unknown values apart from a wrong shape.
pub(crate) fn read_facts<T: DeserializeOwned>(
    facts: &Facts,
) -> std::result::Result<T, FactsMismatch> {
    T::deserialize(facts).map_err(|e| {
        let at = culprit::<T>(facts)
            .map(|k| format!(" (fact '{k}')"))
            .unwrap_or_default();
        let why = format!("{} cannot be read from them: {e}{at}", type_name::<T>());
        // serde's own wording for an enum tag outside the known variants.
        if e.to_string().starts_with("unknown variant") {
            FactsMismatch::Unknown(why)
        } else {
            FactsMismatch::Shape(why)
        }
    })
}

/// The fact that makes `facts` unreadable as `T`, when one alone does (serde's messages
/// name the expected type, not the key): the key whose removal makes them readable, or else
/// the only key whose removal turns the error into its own absence.
fn culprit<T: DeserializeOwned>(facts: &Facts) -> Option<&String> {
    let without = |k: &String| {
        let mut m = facts.clone();
        m.remove(k);
        T::deserialize(&m).map(|_| ()).map_err(|e| e.to_string())
    };
    if let Some(k) = facts.keys().find(|k| without(k).is_ok()) {
        return Some(k);
    }
    let mut missing = facts
        .keys()
        .filter(|k| without(k).err() == Some(format!("missing field `{k}`")));
    match (missing.next(), missing.next()) {
        (Some(k), None) => Some(k),
        _ => None,
    }
}

/// The result of a source's health check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreflightReport {
    /// Version of the system, when it tells.
    pub server_version: Option<String>,
    /// Notes for the operator (non-fatal findings).
    pub notes: Vec<String>,
}

/// One artifact a source will export, as found by [`Source::discover`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactPlan {
    /// Name within the component; may contain `/` (e.g. `stoa.dump`, `tools/tenant-a/x.yaml`).
    pub name: String,
    /// Content type of the bytes.
    pub content_type: String,
    /// Whether the bytes hold secrets (then the pipeline refuses to store them unencrypted
    /// unless the caller explicitly opted out).
    pub sensitive: bool,
    /// Whether the bytes are text meant to be diffed (YAML, JSON): sinks that prefer plain
    /// text may skip compression for them.
    pub text: bool,
    /// Facts known before export (database name, kind…).
    pub facts: Facts,
    /// Whether this artifact summarises the others of its run (an index): the pipeline
    /// exports it only after every artifact that is not a summary has been stored or has
    /// failed, and hands it the records of its source's stored artifacts in
    /// [`ExportContext::stored`]. See [`ArtifactPlan::summary`].
    #[serde(default)]
    pub summary: bool,
}

impl ArtifactPlan {
    /// A binary, non-sensitive artifact.
    pub fn new(name: impl Into<String>, content_type: impl Into<String>) -> Self {
        ArtifactPlan {
            name: name.into(),
            content_type: content_type.into(),
            sensitive: false,
            text: false,
            facts: Facts::new(),
            summary: false,
        }
    }

    /// Marks the artifact as holding secrets.
    pub fn sensitive(mut self, sensitive: bool) -> Self {
        self.sensitive = sensitive;
        self
    }

    /// Marks the artifact as diffable text.
    pub fn text(mut self, text: bool) -> Self {
        self.text = text;
        self
    }

    /// Adds a fact.
    pub fn fact(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.facts.insert(key.into(), value.into());
        self
    }

    /// Marks the artifact as a summary of the run's other artifacts (an index of what was
    /// stored). A source builds it from [`ExportContext::stored`] — what the run actually
    /// recorded — instead of reading everything from the system a second time. Summaries
    /// are exported after all other artifacts of the run, so they never wait on one
    /// another's inputs and cannot deadlock whatever the pipeline's concurrency.
    pub fn summary(mut self, summary: bool) -> Self {
        self.summary = summary;
        self
    }

    /// Reads the plan's facts as the source's typed facts. Fails with a configuration error
    /// naming the artifact when they do not fit: the plan was not made by this source's
    /// [`Source::discover`].
    pub fn facts_as<T: DeserializeOwned>(&self) -> Result<T> {
        read_facts(&self.facts).map_err(|m| {
            let (FactsMismatch::Unknown(why) | FactsMismatch::Shape(why)) = m;
            Error::config(format!(
                "the facts of artifact plan '{}' do not fit this source: {why}",
                self.name
            ))
            .with_operation("read facts")
            .with_artifact(self.name.clone())
            .with_hint("export only plans returned by this source's discover()")
        })
    }
}

/// What a run gives a source while it exports.
#[derive(Debug, Clone)]
pub struct ExportContext {
    /// Cancelled when the run is cancelled; sources stop child processes and requests.
    pub cancel: CancellationToken,
    /// The run id, for sources that name things after it.
    pub run_id: crate::manifest::RunId,
    /// For a [summary](ArtifactPlan::summary) artifact: the records of the artifacts its
    /// source stored in this run, sorted by key (digests, sizes and facts as the manifest
    /// will hold them). Empty for every other artifact.
    pub stored: Vec<ArtifactRecord>,
}

/// A running export: the byte stream and, optionally, facts that are known only once the
/// stream has been fully consumed (exit status, entry counts…).
pub struct Export {
    /// The plain bytes of the artifact.
    pub stream: ByteStream,
    /// Awaited after the stream ended and was stored; an error fails the artifact.
    pub finish: Option<BoxFuture<'static, Result<Facts>>>,
}

impl Export {
    /// An export with no after-the-fact facts.
    pub fn new(stream: ByteStream) -> Self {
        Export {
            stream,
            finish: None,
        }
    }

    /// An export whose `finish` future yields extra facts (and can still fail it).
    pub fn with_finish(
        stream: ByteStream,
        finish: impl std::future::Future<Output = Result<Facts>> + Send + 'static,
    ) -> Self {
        Export {
            stream,
            finish: Some(Box::pin(finish)),
        }
    }
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Export")
            .field("finish", &self.finish.is_some())
            .finish_non_exhaustive()
    }
}

/// Something that can be backed up. Exports must be idempotent: the pipeline may re-run an
/// export to retry a whole artifact.
#[async_trait]
pub trait Source: Send + Sync + fmt::Debug {
    /// The component name (`postgres`, `keycloak`, …), used in keys and the manifest.
    fn component(&self) -> &str;

    /// The provider name recorded in the manifest (`pg_dump`, `command`, …).
    fn provider(&self) -> &str;

    /// Checks the system is reachable, the credentials work and the version is supported.
    async fn preflight(&self) -> Result<PreflightReport>;

    /// Lists the artifacts this source will export.
    async fn discover(&self) -> Result<Vec<ArtifactPlan>>;

    /// Exports one artifact as a stream of plain bytes.
    async fn export(&self, artifact: &ArtifactPlan, ctx: &ExportContext) -> Result<Export>;
}

macro_rules! forward_source {
    ($($ptr:ident),+) => {$(
        /// Forwards every method to the wrapped source, so a shared or boxed source (also
        /// `Arc<dyn Source>`, `Box<dyn Source>`) is a source itself.
        #[async_trait]
        impl<S: Source + ?Sized> Source for $ptr<S> {
            fn component(&self) -> &str {
                (**self).component()
            }
            fn provider(&self) -> &str {
                (**self).provider()
            }
            async fn preflight(&self) -> Result<PreflightReport> {
                (**self).preflight().await
            }
            async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
                (**self).discover().await
            }
            async fn export(&self, artifact: &ArtifactPlan, ctx: &ExportContext) -> Result<Export> {
                (**self).export(artifact, ctx).await
            }
        }
    )+};
}

forward_source!(Arc, Box);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    #[async_trait]
    impl Source for Fixed {
        fn component(&self) -> &str {
            "fixed-component"
        }
        fn provider(&self) -> &str {
            "fixed-provider"
        }
        async fn preflight(&self) -> Result<PreflightReport> {
            Ok(PreflightReport {
                server_version: Some("9.9".into()),
                notes: vec![],
            })
        }
        async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
            Ok(vec![ArtifactPlan::new("a.bin", "application/octet-stream")])
        }
        async fn export(&self, artifact: &ArtifactPlan, _ctx: &ExportContext) -> Result<Export> {
            Ok(Export::new(crate::stream::once(bytes::Bytes::from(
                artifact.name.clone(),
            ))))
        }
    }

    async fn check(source: &dyn Source) {
        assert_eq!(source.component(), "fixed-component");
        assert_eq!(source.provider(), "fixed-provider");
        let preflight = source.preflight().await.unwrap();
        assert_eq!(preflight.server_version.as_deref(), Some("9.9"));
        let plans = source.discover().await.unwrap();
        assert_eq!(plans.len(), 1);
        let ctx = ExportContext {
            cancel: CancellationToken::new(),
            run_id: crate::manifest::RunId::parse("20260101T000000Z-000001").unwrap(),
            stored: Vec::new(),
        };
        let export = source.export(&plans[0], &ctx).await.unwrap();
        assert_eq!(
            crate::stream::collect(export.stream).await.unwrap(),
            b"a.bin"
        );
    }

    #[tokio::test]
    async fn shared_and_boxed_sources_forward_every_method() {
        check(&Arc::new(Fixed)).await;
        check(&(Arc::new(Fixed) as Arc<dyn Source>)).await;
        check(&Box::new(Fixed)).await;
        check(&(Box::new(Fixed) as Box<dyn Source>)).await;
    }
}
