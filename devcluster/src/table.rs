//! Server-side printing: `meta.k8s.io/v1` Table and PartialObjectMetadata renderings.

use serde_json::{Map, Value, json};

use crate::resources::ResourceDef;
use crate::store::{parse_rfc3339, unix_seconds};

/// Which rendering the Accept header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    Full,
    Table,
    Metadata,
}

pub fn rendering(accept: &str) -> Rendering {
    for range in accept.split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("as=Table") && has("g=meta.k8s.io") {
            return Rendering::Table;
        }
        if (has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList"))
            && has("g=meta.k8s.io")
        {
            return Rendering::Metadata;
        }
        if params
            .first()
            .is_some_and(|m| *m == "application/json" || *m == "*/*")
            && params.len() == 1
        {
            return Rendering::Full;
        }
    }
    Rendering::Full
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
}

pub fn partial_metadata_list(list_meta: Value, items: &[Value]) -> Value {
    let items: Vec<Value> = items.iter().map(partial_metadata).collect();
    json!({"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":list_meta,"items":items})
}

/// `5s`, `3m10s`, `2d`: the age format kubectl shows.
pub fn human_age(created: &str) -> String {
    let Some(t) = parse_rfc3339(created) else {
        return "<unknown>".into();
    };
    let s = (unix_seconds() - t).max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10_800 => format!("{}m", s / 60),
        10_800..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Evaluate the simple JSONPath subset printer columns use (`.spec.a.b`, `.x[0].y`).
fn json_path(obj: &Value, path: &str) -> Value {
    let mut cur = obj;
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    for seg in p
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
    {
        let (field, index) = match seg.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !field.is_empty() {
            match cur.get(field) {
                Some(v) => cur = v,
                None => return Value::Null,
            }
        }
        if let Some(i) = index {
            match cur.get(i) {
                Some(v) => cur = v,
                None => return Value::Null,
            }
        }
    }
    cur.clone()
}

fn builtin_columns(def: &ResourceDef) -> Vec<(String, String, String)> {
    let c = |n: &str, t: &str, p: &str| (n.to_string(), t.to_string(), p.to_string());
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Namespace") => vec![c("Status", "string", ".status.phase")],
        ("", "ConfigMap") => vec![c("Data", "integer", "#data")],
        ("", "Secret") => vec![c("Type", "string", ".type"), c("Data", "integer", "#data")],
        ("", "Pod") => vec![c("Status", "string", ".status.phase")],
        ("", "Service") => vec![
            c("Type", "string", ".spec.type"),
            c("Cluster-IP", "string", ".spec.clusterIP"),
        ],
        ("apps", "Deployment") => vec![
            c("Ready", "string", "#ready"),
            c("Up-to-date", "integer", ".status.updatedReplicas"),
            c("Available", "integer", ".status.availableReplicas"),
        ],
        _ => vec![],
    }
}

fn builtin_cell(obj: &Value, path: &str) -> Value {
    match path {
        "#data" => json!(
            obj.get("data")
                .and_then(Value::as_object)
                .map(|m| m.len())
                .unwrap_or(0)
                + obj
                    .get("binaryData")
                    .and_then(Value::as_object)
                    .map(|m| m.len())
                    .unwrap_or(0)
        ),
        "#ready" => json!(format!(
            "{}/{}",
            obj.pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            obj.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        )),
        p => match json_path(obj, p) {
            Value::Null => json!("<none>"),
            v => v,
        },
    }
}

/// A Table of `objs`; `with_columns` is false for watch events after the first.
pub fn table(def: &ResourceDef, objs: &[Value], list_meta: Value, with_columns: bool) -> Value {
    let mut cols = vec![json!({"name":"Name","type":"string","format":"name",
        "description":"Name must be unique within a namespace.","priority":0})];
    let mut rows = Vec::new();
    let custom: Vec<Value> = def
        .custom
        .as_ref()
        .map(|c| c.printer_columns.clone())
        .unwrap_or_default();
    let builtin = builtin_columns(def);
    for b in &builtin {
        cols.push(json!({"name":b.0,"type":b.1,"format":"","description":"","priority":0}));
    }
    for c in &custom {
        let mut m = Map::new();
        m.insert("name".into(), c.get("name").cloned().unwrap_or(json!("")));
        m.insert(
            "type".into(),
            c.get("type").cloned().unwrap_or(json!("string")),
        );
        m.insert(
            "format".into(),
            c.get("format").cloned().unwrap_or(json!("")),
        );
        m.insert(
            "description".into(),
            c.get("description").cloned().unwrap_or(json!("")),
        );
        m.insert(
            "priority".into(),
            c.get("priority").cloned().unwrap_or(json!(0)),
        );
        cols.push(Value::Object(m));
    }
    cols.push(json!({"name":"Age","type":"string","format":"",
        "description":"CreationTimestamp is a timestamp representing the server time when this object was created.","priority":0}));
    for o in objs {
        let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(json!(""))];
        for b in &builtin {
            cells.push(builtin_cell(o, &b.2));
        }
        for c in &custom {
            let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
            let v = json_path(o, path);
            let is_date = c.get("type").and_then(Value::as_str) == Some("date");
            cells.push(match (&v, is_date) {
                (Value::String(s), true) => json!(human_age(s)),
                (Value::Null, _) => json!("<none>"),
                _ => v,
            });
        }
        cells.push(json!(human_age(
            o.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or("")
        )));
        rows.push(json!({"cells":cells,"object":partial_metadata(o)}));
    }
    let mut t = Map::new();
    t.insert("kind".into(), json!("Table"));
    t.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    t.insert("metadata".into(), list_meta);
    if with_columns {
        t.insert("columnDefinitions".into(), Value::Array(cols));
    } else {
        t.insert("columnDefinitions".into(), Value::Null);
    }
    t.insert("rows".into(), Value::Array(rows));
    Value::Object(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_selects_rendering() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(rendering(kubectl), Rendering::Table);
        assert_eq!(
            rendering("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Rendering::Metadata
        );
        assert_eq!(rendering("application/json"), Rendering::Full);
    }

    #[test]
    fn printer_columns_are_evaluated() {
        let mut def = crate::resources::builtins()
            .into_iter()
            .find(|d| d.kind == "ConfigMap")
            .unwrap_or_else(|| unreachable!());
        def.custom = Some(crate::resources::CustomInfo {
            printer_columns: vec![json!({"name":"Color","type":"string","jsonPath":".spec.color"})],
            ..Default::default()
        });
        let o = json!({"metadata":{"name":"a","creationTimestamp":"2020-01-01T00:00:00Z"},"spec":{"color":"red"}});
        let t = table(&def, &[o], json!({}), true);
        assert_eq!(t["rows"][0]["cells"][0], "a");
        assert_eq!(t["rows"][0]["cells"][2], "red");
        assert!(
            t["rows"][0]["cells"][3]
                .as_str()
                .is_some_and(|s| s.ends_with('d'))
        );
    }
}
