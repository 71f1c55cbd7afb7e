//! Prometheus metrics of backups, fed by observer events (feature `metrics`).
//!
//! [`BackupMetrics`] holds the metrics; [`BackupMetrics::observer`] gives the
//! [`MetricsObserver`] to hand to each pipeline (`PipelineBuilder::observer`), so the numbers
//! come from the events the pipeline emits anyway ([`Event`](crate::Event)), not from a
//! second code path. [`BackupMetrics::update_rpo`] reads the RPO status from the catalog;
//! call it at start-up and then periodically (every few minutes), so runs made elsewhere (the
//! CLI, another replica, a later `verify`) are seen too.
//!
//! | metric | type | meaning |
//! | --- | --- | --- |
//! | `stoa_backup_last_success_timestamp_seconds{component}` | gauge | when the newest complete run holding the component ended (Unix time), as this process saw it end |
//! | `stoa_backup_last_verified_timestamp_seconds{component}` | gauge | when the newest verified backup of the component was verified (Unix time); `0` when the catalog holds none |
//! | `stoa_backup_run_duration_seconds{component}` | histogram | how long runs holding the component took, start to report, whatever their result |
//! | `stoa_backup_bytes_total{component,kind}` | counter | bytes of stored artifacts: `kind="plain"` as the source exported them, `kind="stored"` as written (compressed, encrypted) |
//! | `stoa_backup_runs_total{component,result}` | counter | runs that ended: `result="success"` (complete: a new backup), `"failure"` (partial, failed, or the run could not happen: storage unusable, manifest not writable), `"cancelled"` |
//! | `stoa_backup_retention_deleted_total{component}` | counter | runs holding the component that retention deleted |
//! | `stoa_backup_rpo_target_seconds{component}` | gauge | the component's RPO |
//! | `stoa_backup_rpo_remaining_seconds{component}` | gauge | the RPO minus the age of the newest verified backup (from its start), at scrape time: negative once it is late; `-target` when there is no verified backup at all |
//! | `stoa_backup_replication_lag_seconds{component,target}` | gauge | the age (from its start) of the newest complete, verified run of the component in the primary that the replica target lacks; `0` when it holds them all ([`update_replication_lag`](BackupMetrics::update_replication_lag)) |
//! | `stoa_backup_replications_total{component,target,result}` | counter | copies of runs holding the component to a replica target that ended: `result="success"` (copied, completed or found present), `"failure"`, `"cancelled"` |
//!
//! A component without any verified backup shows `stoa_backup_last_verified_timestamp_seconds`
//! `0` and `stoa_backup_rpo_remaining_seconds` `-target`: both alertable, and the "late"
//! alert fires for it too (`deploy/prometheus-rule.yaml` has the rules). The RPO gauges
//! appear once a target is known ([`set_rpo_target`](BackupMetrics::set_rpo_target),
//! [`update_rpo`](BackupMetrics::update_rpo)); the remaining time only once the newest
//! verified backup is known (from the catalog, or a verified run this process made), so a
//! process that just started shows no false "never". It is computed at each scrape from the
//! backup's start, so it runs down between updates without anything being called.
//!
//! Labels are component names, the names given to replica targets
//! ([`Replicator::named`](crate::replicate::Replicator::named): the configuration's names,
//! never a URL) and fixed words only: no run label, error text, host, path or
//! key reaches a metric, so no secret can. A lock conflict that keeps a run from starting
//! (another replica holds the lease) emits no event and counts nothing.
//!
//! # Why prometheus-client, and an explicit registry
//!
//! The `metrics` facade records into one process-global recorder, installed once: a library
//! installing it would fight its host service's own, two services or pipelines in one
//! process (or two tests) would share counters, and the Prometheus exporter brings its own
//! HTTP listener. prometheus-client has no global state: the caller owns a [`Registry`],
//! mounts it on its own `/metrics` beside its other metrics ([`BackupMetrics::register`]),
//! and any number of [`BackupMetrics`] live side by side, independent. It also encodes the
//! Prometheus text format itself.
//!
//! ```
//! use stoa_backup_core::metrics::BackupMetrics;
//! use stoa_backup_core::metrics::prometheus_client::registry::Registry;
//!
//! let mut registry = Registry::default(); // the service's own
//! let metrics = BackupMetrics::new();
//! metrics.register(&mut registry);
//! metrics.set_rpo_target("postgres", std::time::Duration::from_secs(24 * 3600));
//! // Pipeline::builder().observer(metrics.observer())…; serve `metrics.encode_text()` (or
//! // the caller's registry) with `CONTENT_TYPE` on /metrics.
//! assert!(metrics.encode_text().contains("stoa_backup_rpo_target_seconds{component=\"postgres\"} 86400"));
//! ```

mod observer;
mod rpo_gauges;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use self::observer::MetricsObserver;
use self::rpo_gauges::RpoGauges;
use crate::catalog::Catalog;
use crate::error::Result;
use crate::replicate::{ReplicationLag, Replicator};
use crate::rpo::RpoStatus;

/// The prometheus-client crate these metrics are built on (its `Registry` and encoders).
pub use prometheus_client;

/// The `Content-Type` of [`BackupMetrics::encode_text`]: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric name as it appears in the exposition (counters with their `_total`, the
/// histogram without its `_bucket`, `_sum` and `_count` series).
pub const METRIC_NAMES: &[&str] = &[
    LAST_SUCCESS,
    LAST_VERIFIED,
    RUN_DURATION,
    "stoa_backup_bytes_total",
    "stoa_backup_runs_total",
    "stoa_backup_retention_deleted_total",
    RPO_TARGET,
    RPO_REMAINING,
    REPLICATION_LAG,
    "stoa_backup_replications_total",
];

const LAST_SUCCESS: &str = "stoa_backup_last_success_timestamp_seconds";
const LAST_VERIFIED: &str = "stoa_backup_last_verified_timestamp_seconds";
const RUN_DURATION: &str = "stoa_backup_run_duration_seconds";
// Counters are registered without `_total`: prometheus-client appends it.
const BYTES: &str = "stoa_backup_bytes";
const RUNS: &str = "stoa_backup_runs";
const RETENTION_DELETED: &str = "stoa_backup_retention_deleted";
const RPO_TARGET: &str = "stoa_backup_rpo_target_seconds";
const RPO_REMAINING: &str = "stoa_backup_rpo_remaining_seconds";
const REPLICATION_LAG: &str = "stoa_backup_replication_lag_seconds";
const REPLICATIONS: &str = "stoa_backup_replications";

/// From a few seconds (a file) to half a day (a large database), in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
    43200.0,
];

/// The results `stoa_backup_runs_total` counts.
const RESULTS: [&str; 3] = ["success", "failure", "cancelled"];

/// The time the metrics read: [`Utc::now`] unless a test injects another.
type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

type F64Gauge = Gauge<f64, AtomicU64>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    component: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    component: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    component: String,
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicationLabels {
    component: String,
    target: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    component: String,
    result: &'static str,
}

/// The backup metrics of a process (or of one part of it): cheap to clone, every clone the
/// same metrics. See the [module docs](self) for the metrics and what they mean.
#[derive(Clone)]
pub struct BackupMetrics {
    last_success: Family<ComponentLabels, F64Gauge>,
    last_verified: Family<ComponentLabels, F64Gauge>,
    run_duration: Family<ComponentLabels, Histogram, fn() -> Histogram>,
    bytes: Family<BytesLabels, Counter>,
    runs: Family<RunLabels, Counter>,
    retention_deleted: Family<ComponentLabels, Counter>,
    replication_lag: Family<ReplicaLabels, F64Gauge>,
    replications: Family<ReplicationLabels, Counter>,
    rpo: RpoGauges,
    clock: Clock,
    /// The registry of [`encode_text`](Self::encode_text), holding these metrics alone.
    own: Arc<Registry>,
}

impl fmt::Debug for BackupMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupMetrics")
            .field("rpo", &self.rpo)
            .finish_non_exhaustive()
    }
}

impl Default for BackupMetrics {
    fn default() -> Self {
        BackupMetrics::new()
    }
}

impl BackupMetrics {
    /// New metrics, all empty, reading the time from the system clock.
    pub fn new() -> Self {
        BackupMetrics::with_clock(Utc::now)
    }

    /// New metrics reading the time from `clock`: when a run ends (the timestamps) and at
    /// each scrape (the RPO's remaining time). For tests, or a service with its own clock.
    pub fn with_clock(clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        let clock: Clock = Arc::new(clock);
        let mut metrics = BackupMetrics {
            last_success: Family::default(),
            last_verified: Family::default(),
            run_duration: Family::new_with_constructor(|| {
                Histogram::new(DURATION_BUCKETS.iter().copied())
            }),
            bytes: Family::default(),
            runs: Family::default(),
            retention_deleted: Family::default(),
            replication_lag: Family::default(),
            replications: Family::default(),
            rpo: RpoGauges::new(clock.clone()),
            clock,
            own: Arc::new(Registry::default()),
        };
        let mut own = Registry::default();
        metrics.register(&mut own);
        metrics.own = Arc::new(own);
        metrics
    }

    /// Registers these metrics into the caller's `registry` (the one its `/metrics` serves;
    /// a [sub-registry](Registry::sub_registry_with_label) works too). The metrics stay
    /// shared: what the observer records shows in every registry they are registered in.
    /// Register them once per registry: twice would list each metric twice.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            LAST_SUCCESS,
            "When the newest complete run holding the component ended, as Unix time",
            self.last_success.clone(),
        );
        registry.register(
            LAST_VERIFIED,
            "When the newest verified backup of the component was verified, as Unix time; 0 when there is none",
            self.last_verified.clone(),
        );
        registry.register(
            RUN_DURATION,
            "How long runs holding the component took, whatever their result",
            self.run_duration.clone(),
        );
        registry.register(
            BYTES,
            "Bytes of stored artifacts: plain as the source exported them, stored as written",
            self.bytes.clone(),
        );
        registry.register(
            RUNS,
            "Runs holding the component that ended, by result: success, failure or cancelled",
            self.runs.clone(),
        );
        registry.register(
            RETENTION_DELETED,
            "Runs holding the component that retention deleted",
            self.retention_deleted.clone(),
        );
        registry.register(
            REPLICATION_LAG,
            "Age of the newest complete, verified run of the component in the primary that the replica target lacks; 0 when it holds them all",
            self.replication_lag.clone(),
        );
        registry.register(
            REPLICATIONS,
            "Copies of runs holding the component to a replica target that ended, by result: success, failure or cancelled",
            self.replications.clone(),
        );
        registry.register_collector(Box::new(self.rpo.clone()));
    }

    /// The Prometheus text format (0.0.4, [`CONTENT_TYPE`]) of these metrics alone, for a
    /// `/metrics` that serves nothing else.
    pub fn encode_text(&self) -> String {
        // Writing into a String cannot fail, and neither can these metrics' encoders.
        encode_text(&self.own).expect("encoding the backup metrics into a String")
    }

    /// An observer that feeds these metrics, for `PipelineBuilder::observer` (wrap it with
    /// other observers in one of your own to have both).
    pub fn observer(&self) -> MetricsObserver {
        MetricsObserver::new(self.clone())
    }

    /// Sets the RPO of `component`: `stoa_backup_rpo_target_seconds` shows from now on, the
    /// remaining time once the newest verified backup is known. Creates the component's
    /// counters at zero, so a first failure already shows as an increase.
    pub fn set_rpo_target(&self, component: &str, target: Duration) {
        self.touch(component);
        self.rpo.set_target(component, target);
    }

    /// Records an RPO status read from the catalog: its target, its newest verified backup
    /// (or that there is none: remaining `-target`, last verified `0`) and when that backup
    /// was verified. The catalog is the authority: this replaces what events said before.
    pub fn set_rpo(&self, status: &RpoStatus) {
        self.set_rpo_target(&status.component, status.target);
        let newest = status.newest_verified.as_ref();
        self.rpo
            .set_newest_verified(&status.component, newest.map(|b| b.started_at));
        let verified_at = newest.map_or(0.0, |b| unix_secs(b.verified_at.unwrap_or(b.started_at)));
        self.last_verified
            .get_or_create(&component_labels(&status.component))
            .set(verified_at);
    }

    /// Reads the RPO status of each `(component, target)` from `catalog` at `now` (one
    /// listing), records it ([`set_rpo`](Self::set_rpo)) and returns it. When the listing
    /// fails, nothing changes (the remaining time keeps running down from the last known
    /// backup) and the error is returned.
    pub async fn update_rpo<C: AsRef<str>>(
        &self,
        catalog: &Catalog,
        targets: impl IntoIterator<Item = (C, Duration)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RpoStatus>> {
        let statuses = catalog.rpo_status(targets, now).await?;
        for status in &statuses {
            self.set_rpo(status);
        }
        Ok(statuses)
    }

    /// Records how far a replica target is behind for one component
    /// (`stoa_backup_replication_lag_seconds`), and creates its copy counters at zero.
    pub fn set_replication_lag(&self, lag: &ReplicationLag) {
        self.touch_replica(&lag.component, &lag.target);
        self.replication_lag
            .get_or_create(&ReplicaLabels {
                component: lag.component.clone(),
                target: lag.target.clone(),
            })
            .set(lag.lag.as_secs_f64());
    }

    /// Reads the lag of `replicator`'s target behind its source for each component at `now`
    /// (one listing of each), records it ([`set_replication_lag`](Self::set_replication_lag))
    /// and returns it. When a listing fails nothing changes and the error is returned: an
    /// unreachable target keeps its last lag (alert on its copies failing, and on the lag
    /// growing once it answers again).
    pub async fn update_replication_lag<C: AsRef<str>>(
        &self,
        replicator: &Replicator,
        components: impl IntoIterator<Item = C>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReplicationLag>> {
        let lags = replicator.lag(components, now).await?;
        for lag in &lags {
            self.set_replication_lag(lag);
        }
        Ok(lags)
    }

    /// Creates a replica's copy counters at zero.
    fn touch_replica(&self, component: &str, target: &str) {
        for result in RESULTS {
            let _ = self.replications.get_or_create(&ReplicationLabels {
                component: component.to_string(),
                target: target.to_string(),
                result,
            });
        }
    }

    /// Creates the component's counters at zero (a counter that appears at 1 shows no
    /// increase to Prometheus).
    fn touch(&self, component: &str) {
        for result in RESULTS {
            let _ = self.runs.get_or_create(&RunLabels {
                component: component.to_string(),
                result,
            });
        }
        for kind in ["plain", "stored"] {
            let _ = self.bytes.get_or_create(&BytesLabels {
                component: component.to_string(),
                kind,
            });
        }
        let _ = self
            .retention_deleted
            .get_or_create(&component_labels(component));
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }
}

/// The Prometheus text format (0.0.4, [`CONTENT_TYPE`]) of a whole registry (the caller's,
/// with these metrics [registered](BackupMetrics::register) in it). Fails only when one of
/// the registry's own collectors fails.
pub fn encode_text(registry: &Registry) -> std::result::Result<String, fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

fn component_labels(component: &str) -> ComponentLabels {
    ComponentLabels {
        component: component.to_string(),
    }
}

/// Unix time in seconds, milliseconds kept.
fn unix_secs(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}
