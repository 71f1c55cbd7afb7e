//! Sources and sinks the pipeline tests share: a source of fixed artifacts and a sink that
//! runs a hook around each put.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;

use crate::error::{Error, ErrorKind, Result};
use crate::key::ObjectKey;
use crate::sink::{MemorySink, ObjectMeta, PutResult, Sink, SinkCapabilities};
use crate::source::{ArtifactPlan, Export, ExportContext, PreflightReport, Source};
use crate::stream::ByteStream;

/// Exports fixed bytes under fixed names (names may repeat, to test collisions).
#[derive(Debug, Clone)]
pub(super) struct Fixed {
    pub component: &'static str,
    pub artifacts: Vec<(&'static str, &'static [u8])>,
}

impl Fixed {
    pub fn one(component: &'static str, name: &'static str, bytes: &'static [u8]) -> Self {
        Fixed {
            component,
            artifacts: vec![(name, bytes)],
        }
    }
}

#[async_trait]
impl Source for Fixed {
    fn component(&self) -> &str {
        self.component
    }
    fn provider(&self) -> &str {
        "fixed"
    }
    async fn preflight(&self) -> Result<PreflightReport> {
        Ok(PreflightReport::default())
    }
    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(self
            .artifacts
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                // The position tells export which of two same-named plans it is.
                let mut plan = ArtifactPlan::new(*name, "application/octet-stream");
                plan.facts.insert("index".into(), i.into());
                plan
            })
            .collect())
    }
    async fn export(&self, plan: &ArtifactPlan, _: &ExportContext) -> Result<Export> {
        let i = plan.facts["index"].as_u64().unwrap() as usize;
        Ok(Export::new(crate::stream::once(Bytes::from_static(
            self.artifacts[i].1,
        ))))
    }
}

/// What a [`Hooked`] sink does around a put.
type PutHook = Arc<
    dyn Fn(MemorySink, ObjectKey, ByteStream) -> BoxFuture<'static, Result<PutResult>>
        + Send
        + Sync,
>;

/// A memory sink whose puts go through a hook (which may store, truncate, cancel…) and
/// whose listing of one prefix may fail; every other call reaches the memory sink.
#[derive(Clone)]
pub(super) struct Hooked {
    pub inner: MemorySink,
    pub put: PutHook,
    /// Listing exactly this prefix fails as unavailable.
    pub failing_list: Option<&'static str>,
    /// What the sink says it can do.
    pub capabilities: SinkCapabilities,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooked")
    }
}

impl Hooked {
    pub fn new<F, Fut>(put: F) -> Self
    where
        F: Fn(MemorySink, ObjectKey, ByteStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<PutResult>> + Send + 'static,
    {
        Hooked {
            inner: MemorySink::new(),
            put: Arc::new(move |inner, key, stream| Box::pin(put(inner, key, stream))),
            failing_list: None,
            capabilities: SinkCapabilities::default(),
        }
    }

    /// Puts go straight to the memory sink.
    pub fn plain() -> Self {
        Self::new(|inner, key, stream| async move { inner.put(&key, stream).await })
    }
}

#[async_trait]
impl Sink for Hooked {
    fn describe(&self) -> String {
        "hooked".into()
    }
    fn capabilities(&self) -> SinkCapabilities {
        self.capabilities.clone()
    }
    async fn preflight(&self) -> Result<()> {
        Ok(())
    }
    async fn put(&self, key: &ObjectKey, stream: ByteStream) -> Result<PutResult> {
        (self.put)(self.inner.clone(), key.clone(), stream).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        if self.failing_list == Some(prefix) {
            return Err(
                Error::new(ErrorKind::Unavailable, "the bucket listing timed out")
                    .with_component("storage/hooked")
                    .with_operation("list"),
            );
        }
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.delete(key).await
    }
}
