//! A source that runs a command and stores its stdout.

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::process::{spawn_stdout_stream, CommandSpec};
use crate::source::{ArtifactPlan, Export, ExportContext, Facts, PreflightReport, Source};

/// Runs a child process and stores its stdout as one artifact.
///
/// A missing binary, a non-zero exit or a signal fails the artifact with the tail of stderr
/// in the error; the child is killed when the run is cancelled.
#[derive(Debug, Clone)]
pub struct CommandSource {
    component: String,
    artifact: ArtifactPlan,
    spec: CommandSpec,
}

impl CommandSource {
    /// A source for `component` storing the stdout of `spec` as artifact `name`.
    pub fn new(component: impl Into<String>, name: impl Into<String>, spec: CommandSpec) -> Self {
        CommandSource {
            component: component.into(),
            artifact: ArtifactPlan::new(name, "application/octet-stream"),
            spec,
        }
    }

    /// Sets the content type recorded in the manifest.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.artifact.content_type = content_type.into();
        self
    }

    /// Marks the output as holding secrets (it must then be encrypted).
    pub fn sensitive(mut self, sensitive: bool) -> Self {
        self.artifact.sensitive = sensitive;
        self
    }

    /// Marks the output as diffable text.
    pub fn text(mut self, text: bool) -> Self {
        self.artifact.text = text;
        self
    }
}

#[async_trait]
impl Source for CommandSource {
    fn component(&self) -> &str {
        &self.component
    }

    fn provider(&self) -> &str {
        "command"
    }

    async fn preflight(&self) -> Result<PreflightReport> {
        // Resolve the program the way spawning would, without running it.
        let program = &self.spec.program;
        let found = if program.contains('/') {
            std::path::Path::new(program).is_file()
        } else {
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
                .unwrap_or(false)
        };
        if !found {
            return Err(Error::config(format!("program '{program}' not found"))
                .with_component(self.component.clone())
                .with_operation("preflight")
                .with_hint(format!("install '{program}' or put it on PATH")));
        }
        Ok(PreflightReport::default())
    }

    async fn discover(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![self.artifact.clone()])
    }

    async fn export(&self, artifact: &ArtifactPlan, _ctx: &ExportContext) -> Result<Export> {
        let ps = spawn_stdout_stream(&self.spec, &self.component, None)
            .map_err(|e| e.with_artifact(artifact.name.clone()))?;
        let command = self.spec.display();
        let outcome = ps.outcome;
        Ok(Export::with_finish(ps.stream, async move {
            let mut facts = Facts::new();
            facts.insert("command".into(), command.into());
            if let Ok(o) = outcome.await {
                facts.insert("stdout_bytes".into(), o.stdout_bytes.into());
            }
            Ok(facts)
        }))
    }
}
