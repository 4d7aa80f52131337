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

/// kube-apiserver's create validation for events.k8s.io/v1 (the object in that version's form).
pub fn validate_create(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    if !is_events_api(def) {
        return Ok(());
    }
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let regarding_ns = obj
        .pointer("/regarding/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut errs = Vec::new();
    let has_event_time = !str_of(obj, "eventTime").is_empty();
    let ns_mismatch = if !has_event_time {
        if regarding_ns.is_empty() {
            !ns.is_empty() && ns != "default"
        } else {
            ns != regarding_ns
        }
    } else {
        regarding_ns.is_empty() && ns != "default" && ns != "kube-system"
    };
    if ns_mismatch {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            regarding_ns,
            "does not match event.namespace",
        ));
    }
    if has_event_time {
        for field in [
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
        ] {
            if str_of(obj, field).is_empty() {
                errs.push(FieldError::required(field, ""));
            }
        }
    }
    if !has_event_time {
        errs.push(FieldError::required("eventTime", ""));
    }
    let ty = str_of(obj, "type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            "",
            &format!("has invalid value: {ty}"),
        ));
    }
    for field in [
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedSource",
    ] {
        let empty_source = field == "deprecatedSource"
            && str_of(&obj[field], "component").is_empty()
            && str_of(&obj[field], "host").is_empty();
        if set(obj, field) && !empty_source {
            errs.push(FieldError::invalid(field, "", "needs to be unset"));
        }
    }
    if obj
        .get("deprecatedCount")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        != 0
    {
        errs.push(FieldError::invalid(
            "deprecatedCount",
            "",
            "needs to be unset",
        ));
    }
    if errs.is_empty() {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut err = ApiError::invalid(&def.group, &def.kind, name, errs);
    // kube-apiserver names the kind with its group here.
    if let Some(rest) = err.message.strip_prefix(&def.kind) {
        err.message = format!("{}.{}{rest}", def.kind, def.group);
    }
    Err(err)
}
