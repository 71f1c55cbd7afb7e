//! `deploy/prometheus-rule.yaml`: a PrometheusRule whose alerts name only metrics and label
//! values these metrics have, and cover late, never verified, absent and failing, and the
//! replication lag against the RPO and failing copies.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::metrics::{METRIC_NAMES, RESULTS};

const RULE: &str = include_str!("../../../../deploy/prometheus-rule.yaml");

/// The `stoa_backup_…` names an expression reads.
fn metric_names(expr: &str) -> BTreeSet<&str> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("stoa_backup_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(&tail[..end]);
        rest = &tail[end..];
    }
    names
}

/// Whether `name` is a series the metrics expose.
fn exposed(name: &str) -> bool {
    METRIC_NAMES.contains(&name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| base == "stoa_backup_run_duration_seconds")
        })
}

fn alerts() -> Vec<Value> {
    let rule: Value = serde_saphyr::from_str(RULE).expect("prometheus-rule.yaml parses");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(rule["metadata"]["name"].is_string());
    let groups = rule["spec"]["groups"].as_array().expect("spec.groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

#[test]
fn every_alert_reads_metrics_that_exist() {
    let alerts = alerts();
    assert!(!alerts.is_empty());
    for alert in &alerts {
        let name = alert["alert"].as_str().expect("alert name");
        let expr = alert["expr"].as_str().expect("expr");
        let read = metric_names(expr);
        assert!(
            !read.is_empty(),
            "{name} reads no stoa_backup metric: {expr}"
        );
        for metric in &read {
            assert!(exposed(metric), "{name} reads {metric}, which is no metric");
        }
        // Label values it matches are values the metrics have.
        for (i, _) in expr.match_indices("result=\"") {
            let value = expr[i + 8..].split('"').next().unwrap();
            assert!(RESULTS.contains(&value), "{name}: result {value}");
        }
        assert!(
            ["warning", "critical"].contains(&alert["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
        assert!(alert["annotations"]["summary"].is_string(), "{name}");
        assert!(alert["annotations"]["description"].is_string(), "{name}");
    }
}

#[test]
fn the_alerts_cover_late_never_absent_and_failing() {
    let alerts = alerts();
    let expr_of = |name: &str| -> String {
        alerts
            .iter()
            .find(|a| a["alert"] == name)
            .unwrap_or_else(|| panic!("no alert {name}"))["expr"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let late = expr_of("StoaBackupRpoMissed");
    assert!(late.contains("stoa_backup_rpo_remaining_seconds"), "{late}");
    let never = expr_of("StoaBackupNeverVerified");
    assert!(
        never.contains("stoa_backup_last_verified_timestamp_seconds") && never.contains("== 0"),
        "{never}"
    );
    let absent = expr_of("StoaBackupRpoStatusAbsent");
    assert!(absent.starts_with("absent(stoa_backup_"), "{absent}");
    let failing = expr_of("StoaBackupRunsFailing");
    assert!(failing.contains("result=\"failure\""), "{failing}");
    assert!(expr_of("StoaBackupRunFailed").contains("stoa_backup_runs_total"));
}

#[test]
fn the_alerts_cover_replication_lag_against_the_rpo_and_failing_copies() {
    let alerts = alerts();
    let alert = |name: &str| -> &Value {
        alerts
            .iter()
            .find(|a| a["alert"] == name)
            .unwrap_or_else(|| panic!("no alert {name}"))
    };
    let expr_of = |name: &str| alert(name)["expr"].as_str().unwrap().to_string();
    for (name, factor, severity) in [
        ("StoaBackupReplicationLagging", "", "warning"),
        ("StoaBackupReplicationLagCritical", "2 * ", "critical"),
    ] {
        let expr = expr_of(name);
        // The lag of each component and target, above the component's RPO (times the factor),
        // matched on the component: the value is the lag.
        let (lag, rpo) = expr
            .split_once(" > on (namespace, component) group_left ")
            .unwrap_or_else(|| panic!("{name}: {expr}"));
        assert_eq!(
            lag, "max by (namespace, component, target) (stoa_backup_replication_lag_seconds)",
            "{name}"
        );
        assert_eq!(
            rpo,
            format!("{factor}max by (namespace, component) (stoa_backup_rpo_target_seconds)"),
            "{name}"
        );
        assert_eq!(alert(name)["labels"]["severity"], severity, "{name}");
        assert!(alert(name)["for"].is_string(), "{name}");
        let description = alert(name)["annotations"]["description"].as_str().unwrap();
        assert!(description.contains("stoa-backup replicate --to"), "{name}");
    }
    let failing = expr_of("StoaBackupReplicationFailing");
    assert!(
        failing.contains("stoa_backup_replications_total{result=\"failure\"}")
            && failing.contains("unless")
            && failing.contains("stoa_backup_replications_total{result=\"success\"}"),
        "{failing}"
    );
    assert!(
        failing.contains("by (namespace, component, target)"),
        "{failing}"
    );
}

#[test]
fn the_name_scanner_finds_histogram_series_and_refuses_unknown_names() {
    let names = metric_names("rate(stoa_backup_run_duration_seconds_sum[5m]) / stoa_backup_nope");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["stoa_backup_nope", "stoa_backup_run_duration_seconds_sum"]
    );
    assert!(exposed("stoa_backup_run_duration_seconds_sum"));
    assert!(!exposed("stoa_backup_nope"));
    assert!(!exposed("stoa_backup_runs"));
}
