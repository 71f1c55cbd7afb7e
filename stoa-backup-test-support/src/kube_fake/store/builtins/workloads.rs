//! CronJobs, Jobs and pod templates, as the API server validates them: the schedule and
//! time zone, policies and limits, the Job's restart and pod failure policies, containers
//! (names, images, environment, mounts, resources, security context) and volumes.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{cron, quantity, Checks};

/// CronJob names are at most 52 characters: the Jobs it creates append 11.
const MAX_CRONJOB_NAME: usize = 52;

pub(super) fn cron_job(c: &mut Checks, name: &str, value: &Value) {
    if name.len() > MAX_CRONJOB_NAME {
        c.invalid(
            "metadata.name",
            &Value::String(name.into()),
            &format!("must be no more than {MAX_CRONJOB_NAME} characters"),
        );
    }
    let spec = &value["spec"];
    if !spec.is_object() {
        c.required("spec");
        return;
    }
    match spec["schedule"].as_str() {
        None | Some("") => c.required("spec.schedule"),
        Some(s) => {
            if let Err(e) = cron::check(s) {
                c.invalid("spec.schedule", &spec["schedule"], &e);
            } else if !spec["timeZone"].is_null() && (s.contains("TZ=")) {
                c.invalid(
                    "spec.schedule",
                    &spec["schedule"],
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                );
            }
        }
    }
    if let Some(tz) = spec["timeZone"].as_str() {
        let known = tz != "Local" && tz.parse::<chrono_tz::Tz>().is_ok();
        if !known {
            c.invalid(
                "spec.timeZone",
                &spec["timeZone"],
                &format!("unknown time zone {tz}"),
            );
        }
    }
    c.one_of(
        "spec.concurrencyPolicy",
        &spec["concurrencyPolicy"],
        &["Allow", "Forbid", "Replace"],
    );
    for field in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        c.at_least(&format!("spec.{field}"), &spec[field], 0);
    }
    let template = &spec["jobTemplate"];
    if template["spec"].is_object() {
        job(c, "spec.jobTemplate.spec", &template["spec"]);
    } else {
        c.required("spec.jobTemplate.spec");
    }
}

pub(super) fn job(c: &mut Checks, at: &str, spec: &Value) {
    c.at_least(&format!("{at}.backoffLimit"), &spec["backoffLimit"], 0);
    c.at_least(
        &format!("{at}.ttlSecondsAfterFinished"),
        &spec["ttlSecondsAfterFinished"],
        0,
    );
    c.at_least(
        &format!("{at}.activeDeadlineSeconds"),
        &spec["activeDeadlineSeconds"],
        1,
    );
    let pod = &spec["template"]["spec"];
    let pod_at = format!("{at}.template.spec");
    if !pod.is_object() {
        c.required(&format!("{at}.template"));
        return;
    }
    let restart = &pod["restartPolicy"];
    match restart.as_str() {
        Some("OnFailure") | Some("Never") => {}
        _ => c.required_because(
            &format!("{pod_at}.restartPolicy"),
            "valid values: \"OnFailure\", \"Never\"",
        ),
    }
    if spec["podFailurePolicy"].is_object() {
        if restart.as_str().is_some_and(|r| r != "Never") {
            c.invalid(
                &format!("{pod_at}.restartPolicy"),
                restart,
                "only \"Never\" is supported when podFailurePolicy is specified",
            );
        }
        failure_policy(
            c,
            &format!("{at}.podFailurePolicy"),
            &spec["podFailurePolicy"],
        );
    }
    pod_spec(c, &pod_at, pod);
}

fn failure_policy(c: &mut Checks, at: &str, policy: &Value) {
    let Some(rules) = policy["rules"].as_array() else {
        c.required(&format!("{at}.rules"));
        return;
    };
    for (i, rule) in rules.iter().enumerate() {
        let r = format!("{at}.rules[{i}]");
        if rule["action"].is_null() {
            c.required(&format!("{r}.action"));
        }
        c.one_of(
            &format!("{r}.action"),
            &rule["action"],
            &["Count", "FailIndex", "FailJob", "Ignore"],
        );
        let codes = &rule["onExitCodes"];
        let conditions = &rule["onPodConditions"];
        match (
            codes.is_object(),
            conditions.as_array().is_some_and(|a| !a.is_empty()),
        ) {
            (true, true) => c.invalid(
                &r,
                &Value::String(String::new()),
                "specifying both OnExitCodes and OnPodConditions is not supported",
            ),
            (false, false) => c.invalid(
                &r,
                &Value::String(String::new()),
                "specifying one of OnExitCodes and OnPodConditions is required",
            ),
            _ => {}
        }
        if codes.is_object() {
            let e = format!("{r}.onExitCodes");
            c.one_of(
                &format!("{e}.operator"),
                &codes["operator"],
                &["In", "NotIn"],
            );
            match codes["values"].as_array() {
                Some(v) if !v.is_empty() => {
                    for (j, code) in v.iter().enumerate() {
                        if codes["operator"] == "In" && code.as_i64() == Some(0) {
                            c.invalid(
                                &format!("{e}.values[{j}]"),
                                code,
                                "must not be 0 for the In operator",
                            );
                        }
                    }
                }
                _ => c.required(&format!("{e}.values")),
            }
        }
        for (j, p) in conditions.as_array().into_iter().flatten().enumerate() {
            let at = format!("{r}.onPodConditions[{j}]");
            if p["type"].as_str().is_none_or(str::is_empty) {
                c.required(&format!("{at}.type"));
            }
            c.one_of(
                &format!("{at}.status"),
                &p["status"],
                &["True", "False", "Unknown"],
            );
        }
    }
}

fn pod_spec(c: &mut Checks, at: &str, pod: &Value) {
    let mut volumes = BTreeSet::new();
    for (i, v) in pod["volumes"].as_array().into_iter().flatten().enumerate() {
        volume(c, &format!("{at}.volumes[{i}]"), v, &mut volumes);
    }
    if let Some(sa) = pod["serviceAccountName"].as_str() {
        c.subdomain(&format!("{at}.serviceAccountName"), sa);
    }
    c.one_of(
        &format!("{at}.securityContext.seccompProfile.type"),
        &pod["securityContext"]["seccompProfile"]["type"],
        &["Localhost", "RuntimeDefault", "Unconfined"],
    );
    for field in ["runAsUser", "runAsGroup", "fsGroup"] {
        c.at_least(
            &format!("{at}.securityContext.{field}"),
            &pod["securityContext"][field],
            0,
        );
    }
    c.one_of(
        &format!("{at}.securityContext.fsGroupChangePolicy"),
        &pod["securityContext"]["fsGroupChangePolicy"],
        &["OnRootMismatch", "Always"],
    );
    let containers = match pod["containers"].as_array() {
        Some(list) if !list.is_empty() => list,
        _ => {
            c.required(&format!("{at}.containers"));
            return;
        }
    };
    let mut names = BTreeSet::new();
    for (i, ct) in containers.iter().enumerate() {
        container(
            c,
            &format!("{at}.containers[{i}]"),
            ct,
            &volumes,
            &mut names,
        );
    }
}

fn volume(c: &mut Checks, at: &str, v: &Value, names: &mut BTreeSet<String>) {
    match v["name"].as_str() {
        None | Some("") => c.required(&format!("{at}.name")),
        Some(n) => {
            c.label(&format!("{at}.name"), n);
            if !names.insert(n.to_string()) {
                c.duplicate(&format!("{at}.name"), &v["name"]);
            }
        }
    }
    const SOURCES: &[&str] = &[
        "configMap",
        "secret",
        "emptyDir",
        "persistentVolumeClaim",
        "projected",
        "hostPath",
        "downwardAPI",
        "ephemeral",
        "csi",
        "nfs",
        "image",
    ];
    let given: Vec<&str> = SOURCES
        .iter()
        .copied()
        .filter(|s| v[*s].is_object())
        .collect();
    match given.as_slice() {
        [] => c.required_because(at, "must specify a volume type"),
        [_] => {}
        [_, second, ..] => c.push(
            &format!("{at}.{second}"),
            "FieldValueForbidden",
            "Forbidden: may not specify more than 1 volume type".into(),
        ),
    }
    if v["configMap"].is_object() {
        named(c, &format!("{at}.configMap.name"), &v["configMap"]["name"]);
        items(
            c,
            &format!("{at}.configMap.items"),
            &v["configMap"]["items"],
        );
    }
    if v["secret"].is_object() {
        named(
            c,
            &format!("{at}.secret.secretName"),
            &v["secret"]["secretName"],
        );
        items(c, &format!("{at}.secret.items"), &v["secret"]["items"]);
    }
    if v["persistentVolumeClaim"].is_object() {
        named(
            c,
            &format!("{at}.persistentVolumeClaim.claimName"),
            &v["persistentVolumeClaim"]["claimName"],
        );
    }
    if v["projected"].is_object() {
        let p = &v["projected"];
        if let Some(mode) = p["defaultMode"].as_i64() {
            if !(0..=0o777).contains(&mode) {
                c.invalid(
                    &format!("{at}.projected.defaultMode"),
                    &p["defaultMode"],
                    "must be a number between 0 and 0777 (octal), both inclusive",
                );
            }
        }
        let mut paths = BTreeSet::new();
        for (i, s) in p["sources"].as_array().into_iter().flatten().enumerate() {
            let sa = format!("{at}.projected.sources[{i}]");
            if s["secret"].is_object() {
                named(c, &format!("{sa}.secret.name"), &s["secret"]["name"]);
                items(c, &format!("{sa}.secret.items"), &s["secret"]["items"]);
                for item in s["secret"]["items"].as_array().into_iter().flatten() {
                    if let Some(path) = item["path"].as_str() {
                        if !paths.insert(path.to_string()) {
                            c.invalid(
                                &format!("{sa}.secret.items.path"),
                                &item["path"],
                                "conflicting duplicate paths",
                            );
                        }
                    }
                }
            }
        }
    }
}

fn named(c: &mut Checks, field: &str, name: &Value) {
    match name.as_str() {
        None | Some("") => c.required(field),
        Some(n) => c.subdomain(field, n),
    }
}

fn items(c: &mut Checks, at: &str, items: &Value) {
    for (i, item) in items.as_array().into_iter().flatten().enumerate() {
        if item["key"].as_str().is_none_or(str::is_empty) {
            c.required(&format!("{at}[{i}].key"));
        }
        match item["path"].as_str() {
            None | Some("") => c.required(&format!("{at}[{i}].path")),
            Some(p) if p.starts_with('/') => c.invalid(
                &format!("{at}[{i}].path"),
                &item["path"],
                "must be a relative path",
            ),
            Some(p) if p.split('/').any(|s| s == "..") => c.invalid(
                &format!("{at}[{i}].path"),
                &item["path"],
                "must not contain '..'",
            ),
            Some(_) => {}
        }
    }
}

fn container(
    c: &mut Checks,
    at: &str,
    ct: &Value,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
) {
    match ct["name"].as_str() {
        None | Some("") => c.required(&format!("{at}.name")),
        Some(n) => {
            c.label(&format!("{at}.name"), n);
            if !names.insert(n.to_string()) {
                c.duplicate(&format!("{at}.name"), &ct["name"]);
            }
        }
    }
    if ct["image"].as_str().is_none_or(|i| i.trim().is_empty()) {
        c.required(&format!("{at}.image"));
    }
    c.one_of(
        &format!("{at}.imagePullPolicy"),
        &ct["imagePullPolicy"],
        &["Always", "IfNotPresent", "Never"],
    );
    for (i, e) in ct["env"].as_array().into_iter().flatten().enumerate() {
        env_var(c, &format!("{at}.env[{i}]"), e);
    }
    let mut paths = BTreeSet::new();
    for (i, m) in ct["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let ma = format!("{at}.volumeMounts[{i}]");
        match m["name"].as_str() {
            None | Some("") => c.required(&format!("{ma}.name")),
            Some(n) if !volumes.contains(n) => c.not_found(&format!("{ma}.name"), &m["name"]),
            Some(_) => {}
        }
        match m["mountPath"].as_str() {
            None | Some("") => c.required(&format!("{ma}.mountPath")),
            Some(p) => {
                if !paths.insert(p.to_string()) {
                    c.invalid(
                        &format!("{ma}.mountPath"),
                        &m["mountPath"],
                        "must be unique",
                    );
                }
            }
        }
    }
    resources(c, &format!("{at}.resources"), &ct["resources"]);
    let sc = &ct["securityContext"];
    c.at_least(
        &format!("{at}.securityContext.runAsUser"),
        &sc["runAsUser"],
        0,
    );
    if sc["privileged"] == true && sc["allowPrivilegeEscalation"] == false {
        c.invalid(
            &format!("{at}.securityContext"),
            &Value::String(String::new()),
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        );
    }
}

/// `[-._a-zA-Z][-._a-zA-Z0-9]*`.
fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || matches!(f, b'-' | b'.' | b'_'))
        && b.all(|x| x.is_ascii_alphanumeric() || matches!(x, b'-' | b'.' | b'_'))
}

fn env_var(c: &mut Checks, at: &str, e: &Value) {
    match e["name"].as_str() {
        None | Some("") => c.required(&format!("{at}.name")),
        Some(n) if !is_env_name(n) => c.invalid(
            &format!("{at}.name"),
            &e["name"],
            "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')",
        ),
        Some(_) => {}
    }
    let from = &e["valueFrom"];
    if from.is_object() && e["value"].as_str().is_some_and(|v| !v.is_empty()) {
        c.invalid(
            &format!("{at}.valueFrom"),
            &Value::String(String::new()),
            "may not be specified when `value` is not empty",
        );
    }
    let selector = &from["secretKeyRef"];
    if selector.is_object() {
        let sa = format!("{at}.valueFrom.secretKeyRef");
        named(c, &format!("{sa}.name"), &selector["name"]);
        match selector["key"].as_str() {
            None | Some("") => c.required(&format!("{sa}.key")),
            Some(k) if !super::is_config_key(k) => c.invalid(
                &format!("{sa}.key"),
                &selector["key"],
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            ),
            Some(_) => {}
        }
    }
}

fn resources(c: &mut Checks, at: &str, r: &Value) {
    for part in ["requests", "limits"] {
        for (name, q) in r[part].as_object().into_iter().flatten() {
            if q.as_str().and_then(quantity).is_none() {
                c.invalid(
                    &format!("{at}.{part}[{name}]"),
                    q,
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                );
            }
        }
    }
    for (name, request) in r["requests"].as_object().into_iter().flatten() {
        let limit = &r["limits"][name];
        let (Some(rq), Some(lq)) = (
            request.as_str().and_then(quantity),
            limit.as_str().and_then(quantity),
        ) else {
            continue;
        };
        if rq > lq {
            c.invalid(
                &format!("{at}.requests"),
                request,
                &format!(
                    "must be less than or equal to {name} limit of {}",
                    limit.as_str().unwrap_or_default()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_env_name;

    #[test]
    fn environment_names() {
        assert!(is_env_name("DATABASE_URL"));
        assert!(is_env_name("my.env-name"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name(""));
        assert!(!is_env_name("A B"));
    }
}
