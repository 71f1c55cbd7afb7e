//! The CronJob of a scheduled component: `stoa-backup backup <component>` on the
//! component's schedule and time zone, one run at a time, in a locked-down pod.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, JobSpec, JobTemplateSpec, PodFailurePolicy,
    PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
    PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names::{component_labels, CONTAINER, SERVICE_ACCOUNT};
use super::paths::{CACHE, CONFIG_DIR, CONFIG_FILE, TMP, WORKDIR};
use super::rbac::needs_token;
use super::volumes::Volumes;
use crate::config::model::{Component, Settings};
use crate::config::schedule::Schedule;

/// The user and group the image runs as (`deploy/Dockerfile` creates them).
pub const RUN_AS: i64 = 10001;

/// Exit status of a configuration error: retrying cannot help, the Job fails at once.
const CONFIG_ERROR_STATUS: i32 = 2;

/// Retries of a failed run (a new pod each time) before the Job fails.
const BACKOFF_LIMIT: i32 = 2;

/// Jobs kept after they finish, per outcome: what `kubectl get jobs` shows.
const HISTORY: i32 = 3;

/// What a pod of `component` gets: the image, the variables and volumes of every pod.
pub struct PodInputs<'a> {
    /// The container image.
    pub image: &'a str,
    /// Variables from Secrets (see `credentials`).
    pub env: &'a [EnvVar],
    /// Volumes and mounts (see `volumes`).
    pub volumes: &'a Volumes,
}

/// The CronJob named `name` in `namespace` that backs `component` up on `schedule`
/// (written as Kubernetes reads it: see [`kubernetes_schedule`]).
pub fn cron_job(
    name: &str,
    namespace: &str,
    label: &str,
    component: &Component,
    schedule: &Schedule,
    expression: String,
    pod: &PodInputs<'_>,
) -> CronJob {
    let labels = component_labels(label);
    let meta = |name: Option<&str>, namespace: Option<&str>| ObjectMeta {
        name: name.map(str::to_string),
        namespace: namespace.map(str::to_string),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };
    CronJob {
        metadata: meta(Some(name), Some(namespace)),
        spec: CronJobSpec {
            schedule: expression,
            time_zone: Some(schedule.time_zone().name().to_string()),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(starting_deadline(schedule)),
            successful_jobs_history_limit: Some(HISTORY),
            failed_jobs_history_limit: Some(HISTORY),
            job_template: JobTemplateSpec {
                metadata: Some(meta(None, None)),
                spec: Some(JobSpec {
                    backoff_limit: Some(BACKOFF_LIMIT),
                    pod_failure_policy: Some(failure_policy()),
                    template: PodTemplateSpec {
                        metadata: Some(meta(None, None)),
                        spec: Some(pod_spec(component, pod)),
                    },
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        },
        ..CronJob::default()
    }
}

/// A configuration error fails the Job without retries; a pod evicted or preempted
/// (`DisruptionTarget`) does not count as a failure.
fn failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER.into()),
                    operator: "In".into(),
                    values: vec![CONFIG_ERROR_STATUS],
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: Some("True".into()),
                }]),
            },
        ],
    }
}

fn pod_spec(component: &Component, pod: &PodInputs<'_>) -> PodSpec {
    let fixed = [
        ("HOME", TMP),
        ("TMPDIR", TMP),
        ("XDG_CACHE_HOME", CACHE),
        ("RUST_LOG", "info"),
    ];
    let mut env: Vec<EnvVar> = fixed
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.to_string(),
            value: Some(value.to_string()),
            ..EnvVar::default()
        })
        .collect();
    env.extend(pod.env.iter().cloned());
    PodSpec {
        service_account_name: Some(SERVICE_ACCOUNT.into()),
        automount_service_account_token: Some(needs_token(component)),
        restart_policy: Some("Never".into()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            // Volumes (the claim of a local target, the secret files) belong to this group.
            fs_group: Some(RUN_AS),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![Container {
            name: CONTAINER.into(),
            image: Some(pod.image.to_string()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec![
                "stoa-backup".into(),
                "backup".into(),
                component.name.clone(),
                "--config".into(),
                format!("{CONFIG_DIR}/{CONFIG_FILE}"),
            ]),
            working_dir: Some(WORKDIR.into()),
            env: Some(env),
            resources: Some(resources(&component.settings)),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                privileged: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: None,
                }),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(pod.volumes.mounts.clone()),
            ..Container::default()
        }],
        volumes: Some(pod.volumes.volumes.clone()),
        ..PodSpec::default()
    }
}

/// Requests and limits: pg_dump runs in the container and compresses a whole database, the
/// other components stream API exports.
fn resources(settings: &Settings) -> ResourceRequirements {
    let (cpu, memory, cpu_limit, memory_limit) = match settings {
        Settings::Postgres(_) => ("250m", "256Mi", "2", "1Gi"),
        _ => ("100m", "128Mi", "1", "512Mi"),
    };
    let q = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])
    };
    ResourceRequirements {
        requests: Some(q(cpu, memory)),
        limits: Some(q(cpu_limit, memory_limit)),
        ..ResourceRequirements::default()
    }
}

/// The schedule as a CronJob takes it. Kubernetes parses schedules with robfig/cron, whose
/// day of week is 0-6: Sunday written 7 (which the configuration accepts, as cron does)
/// becomes 0. The extensions the configuration's parser knows and Kubernetes does not (`L`,
/// `W`, `#`) are refused, naming what to write instead.
pub fn kubernetes_schedule(schedule: &Schedule) -> Result<String, String> {
    let expression = schedule.expression();
    if let Some(c) = expression
        .chars()
        .find(|c| matches!(c, 'L' | 'l' | 'W' | 'w' | '#'))
    {
        // Names (`WED`, `JUL`) hold some of these letters: look at the fields' other parts.
        let named = |part: &str| part.chars().all(|ch| ch.is_ascii_alphabetic());
        let extension = expression.split_whitespace().any(|field| {
            field
                .split([',', '-', '/'])
                .any(|p| p.contains(c) && !(named(p) && p.len() == 3))
        });
        if extension {
            return Err(format!(
                "{expression:?}: Kubernetes CronJobs do not support `L`, `W` or `#` (last day, weekday, nth weekday)"
            ));
        }
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let Some((day_of_week, rest)) = fields.split_last() else {
        return Ok(expression.to_string());
    };
    let mut parts = Vec::new();
    for part in day_of_week.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let (start, end) = match range.split_once('-') {
            Some((a, b)) => (a, Some(b)),
            None => (range, None),
        };
        match (start, end, step) {
            ("7", None, None) => parts.push("0".to_string()),
            ("7", Some("7"), None) => parts.push("0".to_string()),
            (a, Some("7"), None) => {
                parts.push(format!("{a}-6"));
                parts.push("0".to_string());
            }
            (a, b, Some(_)) if a == "7" || b == Some("7") => {
                return Err(format!(
                    "{expression:?}: write Sunday as 0 in a stepped day-of-week range (Kubernetes reads days of week as 0-6)"
                ))
            }
            _ => parts.push(part.to_string()),
        }
    }
    let mut out: Vec<String> = rest.iter().map(|f| f.to_string()).collect();
    out.push(parts.join(","));
    Ok(out.join(" "))
}

/// How late a missed run may still start: half the shortest gap between two runs (a late
/// run never runs into the next one), at least a minute, at most an hour. Computed from a
/// fixed date so that the output does not change from one day to the next.
pub fn starting_deadline(schedule: &Schedule) -> i64 {
    let reference: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid date");
    let mut previous = schedule.next_after(reference);
    let mut shortest: Option<i64> = None;
    for _ in 0..400 {
        let Some(at) = previous else { break };
        let Some(next) = schedule.next_after(at) else {
            break;
        };
        let gap = (next - at).num_seconds();
        shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
        previous = Some(next);
    }
    shortest.map_or(3600, |gap| (gap / 2).clamp(60, 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_written_as_kubernetes_reads_them() {
        let k = |e: &str| kubernetes_schedule(&Schedule::parse(e, None).unwrap());
        assert_eq!(k("0 2 * * *").as_deref(), Ok("0 2 * * *"));
        assert_eq!(k("0 3 * * 7").as_deref(), Ok("0 3 * * 0"));
        assert_eq!(k("0 3 * * 5-7").as_deref(), Ok("0 3 * * 5-6,0"));
        assert_eq!(k("0 3 * * 1,7").as_deref(), Ok("0 3 * * 1,0"));
        assert_eq!(k("0 3 * * SUN").as_deref(), Ok("0 3 * * SUN"));
        assert_eq!(k("0 3 * JUL WED").as_deref(), Ok("0 3 * JUL WED"));
        assert!(k("0 3 * * 1-7/2").is_err());
        let mut checked = 0;
        for extension in ["0 0 L * *", "0 0 * * 5L", "0 0 * * 1#2", "0 0 15W * *"] {
            // Those the configuration's parser takes are refused for Kubernetes.
            if let Ok(s) = Schedule::parse(extension, None) {
                assert!(kubernetes_schedule(&s).is_err(), "{extension}");
                checked += 1;
            }
        }
        assert!(checked >= 2, "croner takes fewer extensions than expected");
    }

    #[test]
    fn a_late_run_never_reaches_the_next_one() {
        let s = |e: &str| Schedule::parse(e, None).unwrap();
        assert_eq!(starting_deadline(&s("0 2 * * *")), 3600);
        assert_eq!(starting_deadline(&s("*/10 * * * *")), 300);
        assert_eq!(starting_deadline(&s("* * * * *")), 60);
        assert_eq!(starting_deadline(&s("0,30 * * * *")), 900);
        assert_eq!(starting_deadline(&s("0 3 * * SUN")), 3600);
    }
}
