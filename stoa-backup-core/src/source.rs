//! The export side of a provider.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::stream::ByteStream;

/// Provider facts recorded in the manifest (server version, row counts, realm…).
pub type Facts = serde_json::Map<String, serde_json::Value>;

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
}

/// What a run gives a source while it exports.
#[derive(Debug, Clone)]
pub struct ExportContext {
    /// Cancelled when the run is cancelled; sources stop child processes and requests.
    pub cancel: CancellationToken,
    /// The run id, for sources that name things after it.
    pub run_id: crate::manifest::RunId,
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
