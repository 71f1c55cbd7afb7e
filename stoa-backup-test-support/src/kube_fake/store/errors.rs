//! Kubernetes API errors, rendered as `Status` bodies (api-contracts §5.7).

use serde_json::{json, Value};

use super::schema::Violation;
use super::ResourceType;

/// A Kubernetes API error, rendered as a `Status` body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified()),
        )
        .details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    pub fn namespace_not_found(ns: &str) -> Self {
        ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            .details(json!({"name": ns, "kind": "namespaces"}))
    }

    pub fn no_resource() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .details(json!({}))
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
        )
        .details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                rt.qualified()
            ),
        )
        .details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn invalid(rt: &ResourceType, name: &str, field: &str, message: &str) -> Self {
        Self::invalid_fields(
            rt,
            name,
            &[Violation {
                field: field.to_string(),
                reason: "FieldValueInvalid",
                message: format!("Invalid value: {message}"),
            }],
        )
    }

    /// 422 `Invalid` with one cause per violation, worded as the API server words it:
    /// `Tool.gostoa.dev "x" is invalid: spec.endpoint: Required value`, or with several
    /// causes `... is invalid: [spec.endpoint: Required value, spec.method: ...]`.
    pub fn invalid_fields(rt: &ResourceType, name: &str, violations: &[Violation]) -> Self {
        let qualified_kind = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        let each: Vec<String> = violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.message))
            .collect();
        let list = match each.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let causes: Vec<Value> = violations
            .iter()
            .map(|v| json!({"reason": v.reason, "message": v.message, "field": v.field}))
            .collect();
        ApiError::new(
            422,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {list}"),
        )
        .details(json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}))
    }

    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
