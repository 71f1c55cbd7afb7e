//! `coordination.k8s.io/v1` Leases, as the API server validates them
//! (`ValidateLeaseSpec`): a positive `leaseDurationSeconds`, a non-negative
//! `leaseTransitions`, a known `strategy`, and a `preferredHolder` only with a strategy. The
//! name is a DNS subdomain (checked for every built-in kind). Writes are the store's:
//! create answers 409 `AlreadyExists` for an existing name, replace with a stale
//! `metadata.resourceVersion` 409 `Conflict` — the compare-and-swap leader election and
//! run locks rely on.

use serde_json::Value;

use super::Checks;

/// The coordination API group.
pub(super) const GROUP: &str = "coordination.k8s.io";

/// The strategies `spec.strategy` accepts.
const STRATEGIES: &[&str] = &["OldestEmulationVersion"];

pub(super) fn lease(c: &mut Checks, spec: &Value) {
    let duration = &spec["leaseDurationSeconds"];
    if !duration.is_null() && duration.as_i64().is_none_or(|n| n <= 0) {
        c.invalid(
            "spec.leaseDurationSeconds",
            duration,
            "must be greater than 0",
        );
    }
    c.at_least("spec.leaseTransitions", &spec["leaseTransitions"], 0);
    c.one_of("spec.strategy", &spec["strategy"], STRATEGIES);
    let preferred = spec["preferredHolder"].as_str().unwrap_or_default();
    let strategy = spec["strategy"].as_str().unwrap_or_default();
    if !preferred.is_empty() && strategy.is_empty() {
        c.push(
            "spec.preferredHolder",
            "FieldValueForbidden",
            "Forbidden: may only be specified if `strategy` is defined".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::super::Store;
    use super::*;

    fn lease_body(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": name}, "spec": spec})
    }

    /// A store with the namespace `stoa`.
    fn store() -> Store {
        let mut s = Store::new(None);
        let ns = s.find_type("", "v1", "namespaces").unwrap();
        s.create(
            &ns,
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "stoa"}}),
            "test",
            false,
        )
        .unwrap();
        s
    }

    #[test]
    fn leases_are_created_once_and_replaced_only_at_the_version_read() {
        let mut s = store();
        let rt = s.find_type(GROUP, "v1", "leases").unwrap();
        assert!(rt.namespaced);
        let spec = json!({"holderIdentity": "a", "leaseDurationSeconds": 30,
                          "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 0});
        let created = s
            .create(
                &rt,
                "stoa",
                lease_body("stoa-backup-db", spec.clone()),
                "test",
                false,
            )
            .unwrap();
        let again = s
            .create(
                &rt,
                "stoa",
                lease_body("stoa-backup-db", spec.clone()),
                "test",
                false,
            )
            .unwrap_err();
        assert_eq!((again.code, again.reason), (409, "AlreadyExists"));
        let rv = created["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let mut next = lease_body("stoa-backup-db", json!({"holderIdentity": "b"}));
        next["metadata"]["resourceVersion"] = json!(rv);
        let replaced = s
            .replace(
                &rt,
                "stoa",
                "stoa-backup-db",
                next.clone(),
                "test",
                false,
                false,
            )
            .unwrap();
        assert_ne!(replaced["metadata"]["resourceVersion"], json!(rv));
        // The same stale version again: someone else wrote first.
        let stale = s
            .replace(&rt, "stoa", "stoa-backup-db", next, "test", false, false)
            .unwrap_err();
        assert_eq!((stale.code, stale.reason), (409, "Conflict"));
    }

    #[test]
    fn lease_specs_are_validated_as_the_api_server_does() {
        let mut s = store();
        let rt = s.find_type(GROUP, "v1", "leases").unwrap();
        let cases = [
            (
                json!({"leaseDurationSeconds": 0}),
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
            ),
            (
                json!({"leaseTransitions": -1}),
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                json!({"strategy": "Newest"}),
                "spec.strategy: Unsupported value: \"Newest\"",
            ),
            (
                json!({"preferredHolder": "b"}),
                "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined",
            ),
        ];
        for (spec, message) in cases {
            let e = s
                .create(&rt, "stoa", lease_body("l", spec.clone()), "test", true)
                .unwrap_err();
            assert_eq!(e.code, 422, "{spec}: {e:?}");
            assert!(e.message.contains(message), "{spec}: {}", e.message);
        }
    }
}
