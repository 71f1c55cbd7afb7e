//! [`MetricsObserver`]: the pipeline's events, counted.

use crate::error::ErrorKind;
use crate::manifest::RunStatus;
use crate::observer::{Event, Observer};

use super::{
    component_labels, unix_secs, BackupMetrics, BytesLabels, ReplicationLabels, RunLabels,
};

/// Feeds a [`BackupMetrics`] from pipeline events; give one to every pipeline whose runs the
/// metrics should count (they may share it). From [`BackupMetrics::observer`].
///
/// - `ArtifactDone`: plain and stored bytes.
/// - `RunDone`: per component of the run, the run counted by result, its duration, and for
///   a complete run the last-success time (and, verified, the last-verified time and the
///   newest verified backup the RPO is judged by).
/// - `RetentionApplied`: per component, the runs deleted.
/// - `ReplicationDone`: per component of the run, the copy to its target counted by result.
#[derive(Debug, Clone)]
pub struct MetricsObserver {
    metrics: BackupMetrics,
}

impl MetricsObserver {
    /// An observer feeding `metrics`.
    pub fn new(metrics: BackupMetrics) -> Self {
        MetricsObserver { metrics }
    }

    /// The metrics it feeds.
    pub fn metrics(&self) -> &BackupMetrics {
        &self.metrics
    }
}

impl Observer for MetricsObserver {
    fn on_event(&self, event: &Event<'_>) {
        let m = &self.metrics;
        match event {
            Event::ArtifactDone {
                component,
                plain_size,
                stored_size,
                ..
            } => {
                for (kind, bytes) in [("plain", plain_size), ("stored", stored_size)] {
                    m.bytes
                        .get_or_create(&BytesLabels {
                            component: component.to_string(),
                            kind,
                        })
                        .inc_by(*bytes);
                }
            }
            Event::RunDone {
                run_id,
                status,
                components,
                duration,
                verified,
                error,
            } => {
                let result = match (status, error) {
                    (RunStatus::Complete, _) => "success",
                    (_, Some(e)) if e.kind() == ErrorKind::Cancelled => "cancelled",
                    _ => "failure",
                };
                let now = m.now();
                for component in components.iter() {
                    m.touch(component);
                    m.runs
                        .get_or_create(&RunLabels {
                            component: component.clone(),
                            result,
                        })
                        .inc();
                    let labels = component_labels(component);
                    m.run_duration
                        .get_or_create(&labels)
                        .observe(duration.as_secs_f64());
                    if *status != RunStatus::Complete {
                        continue;
                    }
                    m.last_success.get_or_create(&labels).set(unix_secs(now));
                    if *verified {
                        m.last_verified.get_or_create(&labels).set(unix_secs(now));
                        // The run id carries its start, which the RPO counts from.
                        if let Some(started) = run_id.timestamp() {
                            m.rpo.verified_run(component, started);
                        }
                    }
                }
            }
            Event::RetentionApplied { removed } => {
                for run in removed.iter() {
                    for component in &run.components {
                        m.retention_deleted
                            .get_or_create(&component_labels(component))
                            .inc();
                    }
                }
            }
            Event::ReplicationDone {
                target,
                components,
                error,
                ..
            } => {
                let result = match error {
                    None => "success",
                    Some(e) if e.kind() == ErrorKind::Cancelled => "cancelled",
                    Some(_) => "failure",
                };
                for component in components.iter() {
                    m.touch_replica(component, target);
                    m.replications
                        .get_or_create(&ReplicationLabels {
                            component: component.clone(),
                            target: target.to_string(),
                            result,
                        })
                        .inc();
                }
            }
            _ => {}
        }
    }
}
