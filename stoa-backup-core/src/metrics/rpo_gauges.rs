//! The RPO gauges, computed at each scrape: the remaining time of a component runs down
//! with the clock between catalog reads, and crosses zero on time without anything being
//! called.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::{component_labels, Clock, RPO_REMAINING, RPO_TARGET};

/// What is known of one component's RPO.
#[derive(Debug, Clone, Default)]
struct Entry {
    target: Option<Duration>,
    /// The start of its newest verified backup: `None` unknown yet (no catalog read, no
    /// verified run seen), `Some(None)` known to be none.
    newest_verified: Option<Option<DateTime<Utc>>>,
}

/// The RPO state of every component, shared by the metrics' clones and their registries.
#[derive(Clone)]
pub(super) struct RpoGauges {
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    clock: Clock,
}

impl fmt::Debug for RpoGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.lock().iter()).finish()
    }
}

impl RpoGauges {
    pub(super) fn new(clock: Clock) -> Self {
        RpoGauges {
            entries: Arc::default(),
            clock,
        }
    }

    pub(super) fn set_target(&self, component: &str, target: Duration) {
        self.entry(component, |e| e.target = Some(target));
    }

    /// The catalog's word: replaces what was known.
    pub(super) fn set_newest_verified(&self, component: &str, started_at: Option<DateTime<Utc>>) {
        self.entry(component, |e| e.newest_verified = Some(started_at));
    }

    /// A verified run this process made: moves the newest backup forward, never back.
    pub(super) fn verified_run(&self, component: &str, started_at: DateTime<Utc>) {
        self.entry(component, |e| {
            let known = e.newest_verified.flatten();
            if known.is_none_or(|k| k < started_at) {
                e.newest_verified = Some(Some(started_at));
            }
        });
    }

    /// The target of `component` and, when its newest verified backup is known, the
    /// remaining time at `now` in seconds (`-target` when it has none).
    fn gauges(entry: &Entry, now: DateTime<Utc>) -> Option<(f64, Option<f64>)> {
        let target = entry.target?;
        let remaining = entry.newest_verified.map(|newest| match newest {
            Some(started) => {
                let age = (now - started).to_std().unwrap_or(Duration::ZERO);
                target.as_secs_f64() - age.as_secs_f64()
            }
            None => -target.as_secs_f64(),
        });
        Some((target.as_secs_f64(), remaining))
    }

    fn entry(&self, component: &str, change: impl FnOnce(&mut Entry)) {
        change(self.lock().entry(component.to_string()).or_default());
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // The state stays consistent whatever panicked while holding it: each change is
        // one assignment.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Collector for RpoGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let now = (self.clock)();
        let gauges: Vec<(String, f64, Option<f64>)> = self
            .lock()
            .iter()
            .filter_map(|(c, e)| Self::gauges(e, now).map(|(t, r)| (c.clone(), t, r)))
            .collect();
        let mut targets = encoder.encode_descriptor(
            RPO_TARGET,
            "The component's recovery point objective.",
            None,
            MetricType::Gauge,
        )?;
        for (component, target, _) in &gauges {
            let labels = component_labels(component);
            ConstGauge::new(*target).encode(targets.encode_family(&labels)?)?;
        }
        let mut remaining = encoder.encode_descriptor(
            RPO_REMAINING,
            "The RPO minus the age of the newest verified backup (from its start): negative when late, minus the RPO when there is none.",
            None,
            MetricType::Gauge,
        )?;
        for (component, _, left) in &gauges {
            if let Some(left) = left {
                let labels = component_labels(component);
                ConstGauge::new(*left).encode(remaining.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
