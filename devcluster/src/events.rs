//! Events: core `v1` and `events.k8s.io/v1` share one storage, kept in the core v1 form.
//! Objects are converted on the way in and out per the URL's version, the field mapping
//! kube-apiserver's conversion uses (spec §5.8).

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::resources::ResourceDef;
use crate::status::{ApiError, FieldError};

/// events.k8s.io/v1 field -> core v1 field, for the renamed fields.
const RENAMED: &[(&str, &str)] = &[
    ("note", "message"),
    ("regarding", "involvedObject"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether this descriptor is the events.k8s.io view of the shared storage.
pub fn is_events_api(def: &ResourceDef) -> bool {
    def.group == "events.k8s.io" && def.kind == "Event"
}

fn rename(obj: &Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> Value {
    let Some(m) = obj.as_object() else {
        return obj.clone();
    };
    let mut out: Map<String, Value> = m.clone();
    for (from, to) in pairs {
        out.remove(to);
        if let Some(v) = m.get(from) {
            out.remove(from);
            out.insert(to.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// A stored (core v1) Event as the URL's version serves it.
pub fn served<'a>(def: &ResourceDef, stored: &'a Value) -> Cow<'a, Value> {
    if !is_events_api(def) {
        return Cow::Borrowed(stored);
    }
    let mut v = rename(stored, RENAMED.iter().map(|&(ext, core)| (core, ext)));
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(def.api_version()));
        m.insert("kind".into(), json!("Event"));
        // Empty source and zero counts are not carried over (omitempty in both versions).
        if m.get("deprecatedSource")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            m.remove("deprecatedSource");
        }
    }
    Cow::Owned(v)
}

/// An Event written through the URL's version, in the stored (core v1) form.
pub fn stored(def: &ResourceDef, obj: Value) -> Value {
    if !is_events_api(def) {
        return obj;
    }
    let mut v = rename(&obj, RENAMED.iter().copied());
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("kind".into(), json!("Event"));
    }
    v
}

fn str_of<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get(field).and_then(Value::as_str).unwrap_or("")
}

fn set(obj: &Value, field: &str) -> bool {
    !matches!(obj.get(field), None | Some(Value::Null))
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// kube-apiserver's Event validation, run on the stored (core v1) form of the new object as
/// the real validation runs on the internal type: so error paths carry core field names,
/// except `reportingController`, which it names after the request's version. `old` is the
/// stored object on an update. Core v1 writes get the legacy checks only; events.k8s.io/v1
/// creates must be "new" events, and its updates may not touch the descriptive fields.
pub fn validate(def: &ResourceDef, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    if !(def.kind == "Event" && (def.group.is_empty() || is_events_api(def))) {
        return Ok(());
    }
    let events_api = is_events_api(def);
    let mut errs = legacy_errors(new, events_api);
    if events_api {
        match old {
            None => {
                errs.extend(series_errors(new));
                if str_of(new, "eventTime").is_empty() {
                    errs.push(FieldError::required("eventTime", ""));
                }
                let ty = str_of(new, "type");
                if ty != "Normal" && ty != "Warning" {
                    errs.push(FieldError::invalid(
                        "type",
                        "",
                        &format!("has invalid value: {ty}"),
                    ));
                }
                for field in ["firstTimestamp", "lastTimestamp"] {
                    if set(new, field) {
                        errs.push(FieldError::invalid(field, "", "needs to be unset"));
                    }
                }
                if new.get("count").and_then(Value::as_i64).unwrap_or(0) != 0 {
                    errs.push(FieldError::invalid("count", "", "needs to be unset"));
                }
                if !str_of(&new["source"], "component").is_empty()
                    || !str_of(&new["source"], "host").is_empty()
                {
                    errs.push(FieldError::invalid("source", "", "needs to be unset"));
                }
            }
            Some(old) => {
                if new.get("series") != old.get("series") {
                    errs.extend(series_errors(new));
                }
                for field in [
                    "involvedObject",
                    "reason",
                    "message",
                    "source",
                    "firstTimestamp",
                    "lastTimestamp",
                    "count",
                    "type",
                    "eventTime",
                    "action",
                    "related",
                    "reportingComponent",
                    "reportingInstance",
                ] {
                    let (a, b) = (
                        new.get(field).unwrap_or(&Value::Null),
                        old.get(field).unwrap_or(&Value::Null),
                    );
                    if a != b {
                        let path = if field == "reportingComponent" {
                            "reportingController"
                        } else {
                            field
                        };
                        errs.push(FieldError::invalid(path, &text_of(a), "field is immutable"));
                    }
                }
            }
        }
    }
    if errs.is_empty() {
        return Ok(());
    }
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Err(ApiError::invalid(&def.group, &def.kind, name, errs))
}

/// The checks every Event write passes, whatever the version.
fn legacy_errors(ev: &Value, events_api: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = ev
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let involved_ns = ev
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mismatch = |errs: &mut Vec<FieldError>| {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        ))
    };
    if str_of(ev, "eventTime").is_empty() {
        // An old-style event: its namespace follows the involved object's.
        let ok = if involved_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == involved_ns
        };
        if !ok {
            mismatch(&mut errs);
        }
        return errs;
    }
    if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
        mismatch(&mut errs);
    }
    let controller = if events_api {
        "reportingController"
    } else {
        "reportingComponent"
    };
    for (field, path, limit) in [
        ("reportingComponent", controller, 0),
        ("reportingInstance", "reportingInstance", 128),
        ("action", "action", 128),
        ("reason", "reason", 128),
    ] {
        let v = str_of(ev, field);
        if v.is_empty() {
            errs.push(FieldError::required(path, ""));
        } else if limit > 0 && v.len() > limit {
            errs.push(FieldError::invalid(
                path,
                "",
                &format!("can have at most {limit} characters"),
            ));
        }
    }
    if str_of(ev, "message").len() > 1024 {
        errs.push(FieldError::invalid(
            "message",
            "",
            "can have at most 1024 characters",
        ));
    }
    errs
}

fn series_errors(ev: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(series) = ev.get("series").filter(|s| !s.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errs.push(FieldError::invalid(
                "series.count",
                "",
                "should be at least 2",
            ));
        }
        if str_of(series, "lastObservedTime").is_empty() {
            errs.push(FieldError::required("series.lastObservedTime", ""));
        }
    }
    errs
}
