//! The size a transfer is expected to reach, for its ETA: the plain size of the same
//! artifact in the component's newest complete run.
//!
//! PostgreSQL's `pg_database_size` is not used: the library's public API has no way to
//! read it (its query is internal to the postgres source), and the CLI keeps to that API.
//! It would be a poor estimate anyway (the dump holds no indexes, nor dead rows).

use std::collections::BTreeMap;
use std::sync::Arc;

use stoa_backup::core::{ArtifactRecord, Catalog, RunFilter, Sink};

/// Expected plain sizes per (component, artifact name). Empty: spinners without an ETA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedSizes(BTreeMap<(String, String), u64>);

impl ExpectedSizes {
    /// No expectations: every transfer shows a spinner with bytes and rate.
    pub fn none() -> Self {
        ExpectedSizes::default()
    }

    /// The plain sizes of `component`'s artifacts among `artifacts` (a manifest's). Empty
    /// artifacts give no expectation (a bar of length 0 would say nothing).
    pub fn of_component<'a>(
        artifacts: impl IntoIterator<Item = &'a ArtifactRecord>,
        component: &str,
    ) -> Self {
        ExpectedSizes(
            artifacts
                .into_iter()
                .filter(|a| a.component == component && a.plain_size > 0)
                .map(|a| ((a.component.clone(), a.name.clone()), a.plain_size))
                .collect(),
        )
    }

    /// The sizes of `component`'s newest complete run in `sink`. Reading the catalog costs
    /// one listing of the sink and a manifest read; when either fails there is simply no
    /// expectation (the backup itself will report a sink that does not work).
    pub async fn previous_run(sink: Arc<dyn Sink>, component: &str) -> Self {
        let catalog = Catalog::new(sink);
        let runs = match catalog.list_runs(&RunFilter::component(component)).await {
            Ok(runs) => runs,
            Err(e) => {
                tracing::debug!(component, error = %e, "no previous run for the progress ETA");
                return ExpectedSizes::none();
            }
        };
        let Some(newest) = runs.first() else {
            return ExpectedSizes::none();
        };
        match catalog.read_manifest(&newest.run_id).await {
            Ok(manifest) => ExpectedSizes::of_component(&manifest.artifacts, component),
            Err(e) => {
                tracing::debug!(component, run = %newest.run_id, error = %e, "no previous sizes for the progress ETA");
                ExpectedSizes::none()
            }
        }
    }

    /// The expected plain size of one artifact.
    pub fn get(&self, component: &str, name: &str) -> Option<u64> {
        // Few artifacts per component, looked up once per artifact start.
        self.0
            .iter()
            .find(|((c, n), _)| c == component && n == name)
            .map(|(_, size)| *size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(component: &str, name: &str, plain_size: u64) -> ArtifactRecord {
        serde_json::from_value(serde_json::json!({
            "component": component,
            "provider": "pg_dump",
            "name": name,
            "key": format!("runs/20260101T000000Z-000001/{component}/{name}.zst"),
            "content_type": "application/octet-stream",
            "plain_size": plain_size,
            "plain_sha256": "00",
            "stored_size": plain_size / 4,
            "stored_sha256": "00",
            "codecs": [],
            "duration_ms": 10,
        }))
        .expect("an artifact record")
    }

    #[test]
    fn sizes_are_the_components_artifacts_by_name() {
        let artifacts = [
            artifact("app", "app.dump", 4096),
            artifact("app", "globals.sql", 300),
            artifact("other", "app.dump", 99),
            artifact("app", "empty.dump", 0),
        ];
        let sizes = ExpectedSizes::of_component(&artifacts, "app");
        assert_eq!(sizes.get("app", "app.dump"), Some(4096));
        assert_eq!(sizes.get("app", "globals.sql"), Some(300));
        assert_eq!(sizes.get("other", "app.dump"), None, "another component's");
        assert_eq!(sizes.get("app", "empty.dump"), None, "an empty artifact");
        assert_eq!(
            sizes.get("app", "new.dump"),
            None,
            "not in the previous run"
        );
        assert_eq!(ExpectedSizes::none().get("app", "app.dump"), None);
    }

    #[tokio::test]
    async fn the_previous_run_is_read_from_the_catalog() {
        use stoa_backup::core::{FileSource, Pipeline};
        use stoa_backup::storage::LocalSink;

        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, vec![b'x'; 5000]).expect("write the source file");
        let root = dir.path().join("backups");
        std::fs::create_dir(&root).expect("backups dir");
        let sink: Arc<dyn Sink> = Arc::new(LocalSink::new(&root).expect("local sink"));

        assert_eq!(
            ExpectedSizes::previous_run(sink.clone(), "notes").await,
            ExpectedSizes::none(),
            "no run yet"
        );
        Pipeline::builder()
            .source(FileSource::new("notes", &file, "notes.txt"))
            .sink(sink.clone())
            .build()
            .expect("pipeline")
            .run()
            .await
            .expect("backup");
        let sizes = ExpectedSizes::previous_run(sink.clone(), "notes").await;
        assert_eq!(sizes.get("notes", "notes.txt"), Some(5000));
        assert_eq!(
            ExpectedSizes::previous_run(sink, "elsewhere").await,
            ExpectedSizes::none()
        );
    }
}
