//! Validation of custom resources against their CRD's `openAPIV3Schema`, as the API server
//! does on every create, update and apply, dry runs included: `type` (with `nullable` and
//! `x-kubernetes-int-or-string`), `required`, `enum`, `minimum` / `maximum`, nested
//! `properties`, `additionalProperties` and array `items`. Each violation becomes one cause
//! of the 422 `Invalid` answer, worded as the API server words it.
//!
//! Not reproduced: pruning of unknown fields and defaulting (the fake stores objects as they
//! were sent, so tests can compare what they wrote), `format`, `pattern`, CEL rules.

use serde_json::Value;

/// One schema violation: a cause of a 422 `Invalid` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The field, as the API server names it (`spec.endpoint`, `spec.tools[0]`).
    pub field: String,
    /// `FieldValueRequired`, `FieldValueTypeInvalid`, `FieldValueNotSupported` or
    /// `FieldValueInvalid`.
    pub reason: &'static str,
    /// The message without the field (`Required value`).
    pub message: String,
}

/// Every violation of `object` against `schema` (a CRD version's `openAPIV3Schema`), sorted
/// by field. `apiVersion`, `kind` and `metadata` are checked by the server elsewhere.
pub(crate) fn validate(schema: &Value, object: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(obj) = object.as_object() else {
        return out;
    };
    for key in required(schema) {
        if !obj.contains_key(key) {
            out.push(Violation {
                field: key.to_string(),
                reason: "FieldValueRequired",
                message: "Required value".into(),
            });
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        for (key, value) in obj {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(s) = props.get(key) {
                check(s, value, key, &mut out);
            }
        }
    }
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

fn required(schema: &Value) -> impl Iterator<Item = &str> {
    schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// The JSON type of a value as the API server names it in messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How a value is quoted in messages: strings in quotes, others as JSON, objects and arrays
/// by their type (the server does not print whole objects either).
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) | Value::Array(_) | Value::Null => format!("\"{}\"", type_name(v)),
        other => other.to_string(),
    }
}

fn type_matches(schema: &Value, v: &Value) -> bool {
    if v.is_null() {
        return schema["nullable"] == true;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        return v.is_string() || type_name(v) == "integer";
    }
    match schema["type"].as_str() {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("boolean") => v.is_boolean(),
        Some("integer") => type_name(v) == "integer",
        Some("number") => v.is_number(),
        Some(_) => true,
    }
}

fn check(schema: &Value, v: &Value, path: &str, out: &mut Vec<Violation>) {
    if !type_matches(schema, v) {
        let want = if schema["x-kubernetes-int-or-string"] == true {
            "integer,string"
        } else {
            schema["type"].as_str().unwrap_or("object")
        };
        out.push(Violation {
            field: path.to_string(),
            reason: "FieldValueTypeInvalid",
            message: format!(
                "Invalid value: {}: {path} in body must be of type {want}: {}",
                shown(v),
                shown(v)
            ),
        });
        return;
    }
    if v.is_null() {
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(shown).collect();
            out.push(Violation {
                field: path.to_string(),
                reason: "FieldValueNotSupported",
                message: format!(
                    "Unsupported value: {}: supported values: {}",
                    shown(v),
                    list.join(", ")
                ),
            });
        }
    }
    if let Some(n) = v.as_f64() {
        for (bound, word, broken) in [
            (
                "minimum",
                "greater",
                n < schema["minimum"].as_f64().unwrap_or(f64::MIN),
            ),
            (
                "maximum",
                "less",
                n > schema["maximum"].as_f64().unwrap_or(f64::MAX),
            ),
        ] {
            if broken {
                out.push(Violation {
                    field: path.to_string(),
                    reason: "FieldValueInvalid",
                    message: format!(
                        "Invalid value: {v}: {path} in body should be {word} than or equal to {}",
                        schema[bound]
                    ),
                });
            }
        }
    }
    match v {
        Value::Object(m) => {
            for key in required(schema) {
                if !m.contains_key(key) {
                    out.push(Violation {
                        field: format!("{path}.{key}"),
                        reason: "FieldValueRequired",
                        message: "Required value".into(),
                    });
                }
            }
            let props = schema["properties"].as_object();
            for (key, child) in m {
                let child_path = format!("{path}.{key}");
                match props.and_then(|p| p.get(key)) {
                    Some(s) => check(s, child, &child_path, out),
                    None if schema["additionalProperties"].is_object() => {
                        check(&schema["additionalProperties"], child, &child_path, out)
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter().enumerate() {
                check(&schema["items"], item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool_schema() -> Value {
        let text = crate::fixtures::read("crds/tools.gostoa.dev.yaml");
        let crd = crate::kube_fake::parse_yaml_documents(&text).remove(0);
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn the_fixture_tool_is_valid_and_broken_ones_are_not() {
        let schema = tool_schema();
        let text = crate::fixtures::read("crds/tool-weather.yaml");
        let tool = crate::kube_fake::parse_yaml_documents(&text).remove(0);
        assert_eq!(validate(&schema, &tool), []);

        let mut bad = tool.clone();
        bad["spec"]["method"] = json!("FETCH");
        bad["spec"]["annotations"]["readOnly"] = json!("yes");
        bad["spec"].as_object_mut().unwrap().remove("endpoint");
        let v = validate(&schema, &bad);
        let fields: Vec<(&str, &str)> = v.iter().map(|v| (v.field.as_str(), v.reason)).collect();
        assert_eq!(
            fields,
            [
                ("spec.annotations.readOnly", "FieldValueTypeInvalid"),
                ("spec.endpoint", "FieldValueRequired"),
                ("spec.method", "FieldValueNotSupported"),
            ]
        );
        assert_eq!(
            v[2].message,
            "Unsupported value: \"FETCH\": supported values: \"GET\", \"POST\", \"PUT\", \"DELETE\", \"PATCH\""
        );
        assert_eq!(
            v[0].message,
            "Invalid value: \"yes\": spec.annotations.readOnly in body must be of type boolean: \"yes\""
        );
        // No spec at all is valid (the schema does not require one), a string spec is not.
        assert_eq!(validate(&schema, &json!({"metadata": {"name": "x"}})), []);
        assert_eq!(
            validate(&schema, &json!({"spec": "x"}))[0].reason,
            "FieldValueTypeInvalid"
        );
    }

    #[test]
    fn bounds_items_and_additional_properties() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "priority": {"type": "integer", "minimum": 0, "maximum": 100},
            "tags": {"type": "array", "items": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "port": {"x-kubernetes-int-or-string": true},
            "note": {"type": "string", "nullable": true}}}}});
        let ok = json!({"spec": {"priority": 100, "tags": ["a"], "labels": {"a": "b"},
                                 "port": "http", "note": null}});
        assert_eq!(validate(&schema, &ok), []);
        let bad = json!({"spec": {"priority": 150, "tags": ["a", 2], "labels": {"a": 1},
                                  "port": 1.5}});
        let v = validate(&schema, &bad);
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.labels.a",
                "spec.port",
                "spec.priority",
                "spec.tags[1]"
            ]
        );
        assert_eq!(
            v[2].message,
            "Invalid value: 150: spec.priority in body should be less than or equal to 100"
        );
    }
}
