//! Field paths and their owners (server-side apply's managed fields), and JSON merge patches.

use serde_json::{json, Map, Value};

/// A field path such as `["spec", "endpoint"]`.
pub(super) type FieldPath = Vec<String>;

/// Leaves a manager can own: everything but identity and server fields; `status` only when
/// it is not a separate subresource. Arrays and empty objects are leaves.
pub(super) fn ownable_leaves(value: &Value, skip_status: bool) -> Vec<(FieldPath, Value)> {
    let mut out = Vec::new();
    let Some(obj) = value.as_object() else {
        return out;
    };
    for (k, v) in obj {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "status" if skip_status => {}
            "metadata" => {
                if let Some(m) = v.as_object() {
                    for f in ["labels", "annotations"] {
                        if let Some(map) = m.get(f).and_then(Value::as_object) {
                            for (lk, lv) in map {
                                out.push((
                                    vec!["metadata".into(), f.into(), lk.clone()],
                                    lv.clone(),
                                ));
                            }
                        }
                    }
                    for f in ["finalizers", "ownerReferences"] {
                        if let Some(x) = m.get(f) {
                            out.push((vec!["metadata".into(), f.into()], x.clone()));
                        }
                    }
                }
            }
            _ => collect_leaves(vec![k.clone()], v, &mut out),
        }
    }
    out
}

pub(super) fn collect_leaves(path: FieldPath, v: &Value, out: &mut Vec<(FieldPath, Value)>) {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, c) in m {
                let mut p = path.clone();
                p.push(k.clone());
                collect_leaves(p, c, out);
            }
        }
        _ => out.push((path, v.clone())),
    }
}

pub(super) fn get_path<'a>(v: &'a Value, p: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in p {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

pub(super) fn set_path(v: &mut Value, p: &[String], leaf: Value) {
    let mut cur = v;
    for seg in &p[..p.len() - 1] {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("object")
            .entry(seg.clone())
            .or_insert_with(|| json!({}));
    }
    if !cur.is_object() {
        *cur = json!({});
    }
    cur.as_object_mut()
        .expect("object")
        .insert(p[p.len() - 1].clone(), leaf);
}

pub(super) fn remove_path(v: &mut Value, p: &[String]) {
    fn go(cur: &mut Value, p: &[String]) {
        let Some(m) = cur.as_object_mut() else { return };
        if p.len() == 1 {
            m.remove(&p[0]);
            return;
        }
        if let Some(child) = m.get_mut(&p[0]) {
            go(child, &p[1..]);
            if child.as_object().is_some_and(|c| c.is_empty()) {
                m.remove(&p[0]);
            }
        }
    }
    go(v, p);
}

pub(super) fn format_path(p: &[String]) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

pub(super) fn insert_fields_v1(tree: &mut Map<String, Value>, path: &[String]) {
    let mut cur = tree;
    for seg in path {
        let entry = cur.entry(format!("f:{seg}")).or_insert_with(|| json!({}));
        cur = entry.as_object_mut().expect("object");
    }
}

/// RFC 7386 JSON merge patch.
pub(crate) fn json_merge(target: &mut Value, patch: &Value) {
    match patch.as_object() {
        Some(pm) => {
            if !target.is_object() {
                *target = json!({});
            }
            let tm = target.as_object_mut().expect("object");
            for (k, v) in pm {
                if v.is_null() {
                    tm.remove(k);
                } else {
                    json_merge(tm.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        None => *target = patch.clone(),
    }
}
