//! Removing what crashed runs left: every database this crate creates carries a marker
//! (its comment) with its kind, creation time, host and process id.

use std::time::Duration;

use chrono::Utc;
use stoa_backup_core::error::Result;
use tokio_postgres::Client;

use crate::server::{drop_database, pg_error, Marker, MarkerKind, MARKER_PREFIX};

/// When a database left behind counts as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StalePolicy {
    /// Clones, snapshots and half-done restores: stale once their process is gone (same
    /// host), or after this long whatever the host (6 hours by default).
    pub clone_max_age: Duration,
    /// Templates of other migration sets: stale when no pool used them for this long
    /// (14 days by default). The current template is never removed.
    pub template_max_age: Duration,
}

impl Default for StalePolicy {
    fn default() -> Self {
        StalePolicy {
            clone_max_age: Duration::from_secs(6 * 3600),
            template_max_age: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// A template being built for longer than this is a crashed build.
const BUILD_MAX_AGE: Duration = Duration::from_secs(3600);

/// What a cleanup removed and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Databases dropped.
    pub dropped: Vec<String>,
    /// Databases that could not be dropped, with why.
    pub failed: Vec<(String, String)>,
}

/// Whether the database marked `marker` is stale under `policy` (`keep`: the current
/// template's hash).
pub(crate) fn is_stale(marker: &Marker, policy: &StalePolicy, keep: Option<&str>) -> bool {
    let age = |at: chrono::DateTime<Utc>| (Utc::now() - at).to_std().unwrap_or_default();
    match marker.kind {
        MarkerKind::Template => {
            marker.hash.as_deref() != keep
                && age(marker.last_used_at.unwrap_or(marker.created_at)) > policy.template_max_age
        }
        MarkerKind::Building => marker.owner_gone() || age(marker.created_at) > BUILD_MAX_AGE,
        MarkerKind::Snapshot | MarkerKind::Clone | MarkerKind::Replaced => {
            marker.owner_gone() || age(marker.created_at) > policy.clone_max_age
        }
    }
}

/// Drops every stale database this crate made on the server.
pub(crate) async fn cleanup(
    client: &Client,
    policy: &StalePolicy,
    keep: Option<&str>,
) -> Result<CleanupReport> {
    let rows = client
        .query(
            "SELECT d.datname::text, shobj_description(d.oid, 'pg_database') FROM pg_database d \
             WHERE shobj_description(d.oid, 'pg_database') LIKE $1",
            &[&format!("{MARKER_PREFIX}%")],
        )
        .await
        .map_err(|e| pg_error(e, "list stale databases", "*"))?;
    let mut report = CleanupReport::default();
    for row in rows {
        let name: String = row.get(0);
        let comment: String = row.get(1);
        let Some(marker) = Marker::parse(&comment) else {
            continue;
        };
        if !is_stale(&marker, policy, keep) {
            continue;
        }
        match drop_database(client, &name).await {
            Ok(()) => {
                tracing::info!(database = %name, kind = ?marker.kind, "dropped a stale test database");
                report.dropped.push(name)
            }
            Err(e) => report.failed.push((name, e.to_string())),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aged(kind: MarkerKind, hours: i64) -> Marker {
        let mut m = Marker::new(kind).hash("h1");
        m.created_at = Utc::now() - chrono::Duration::hours(hours);
        m
    }

    #[test]
    fn clones_are_stale_by_age_or_when_their_process_is_gone() {
        let p = StalePolicy::default();
        assert!(!is_stale(&aged(MarkerKind::Clone, 1), &p, None));
        assert!(is_stale(&aged(MarkerKind::Clone, 7), &p, None));
        let mut dead = aged(MarkerKind::Clone, 0);
        dead.pid = u32::MAX - 1;
        assert_eq!(is_stale(&dead, &p, None), cfg!(target_os = "linux"));
        let mut elsewhere = dead.clone();
        elsewhere.host = "another-host".into();
        assert!(!is_stale(&elsewhere, &p, None));
    }

    #[test]
    fn the_current_template_is_kept_and_others_age_by_last_use() {
        let p = StalePolicy::default();
        let old = aged(MarkerKind::Template, 24 * 30);
        assert!(!is_stale(&old, &p, Some("h1")));
        assert!(is_stale(&old, &p, Some("h2")));
        let mut used = old.clone();
        used.last_used_at = Some(Utc::now());
        assert!(!is_stale(&used, &p, Some("h2")));
        assert!(is_stale(&aged(MarkerKind::Building, 2), &p, Some("h1")));
    }
}
