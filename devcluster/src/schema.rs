//! Structural schemas of custom resources (spec §5.6): what kube-apiserver does with a CRD
//! version's `openAPIV3Schema` when a custom resource is written.
//!
//! ```text
//! pub fn prune(obj: &mut Value, schema: &Value) -> Vec<String>
//! pub fn apply_defaults(obj: &mut Value, schema: &Value)
//! pub fn validate(obj: &Value, schema: &Value) -> Vec<FieldError>
//! pub fn check(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError>
//! pub fn undeclared_for_apply(obj: &Value, schema: &Value) -> Vec<String>
//! ```
//!
//! * `prune` drops fields the schema does not declare and returns their paths in
//!   kube-apiserver's order (root `metadata` first, then the pruned paths sorted, then unknown
//!   fields of embedded resources' `metadata`); `fieldValidation` decides what the caller makes
//!   of them. `x-kubernetes-preserve-unknown-fields` keeps unknown fields below its node;
//!   `x-kubernetes-embedded-resource` keeps `apiVersion`, `kind` and an ObjectMeta `metadata`.
//! * `apply_defaults` fills `default:` values in where a field is absent (or a non-nullable
//!   `null`), and drops non-nullable `null`s that have no default.
//! * `validate` checks type, nullable, enum, string length, pattern and a few string formats,
//!   numeric bounds and multipleOf, item and property counts, `required`, and embedded
//!   resources' apiVersion/kind, with kube-apiserver's field error texts.
//! * `undeclared_for_apply` is the stricter check server-side apply makes when it converts the
//!   applied configuration to its typed form: an object with `properties` (and neither
//!   `additionalProperties` nor preserve-unknown-fields) declares exactly those fields, and an
//!   object without `properties` is free-form. Paths come in structured-merge-diff's form
//!   (`.spec.items[name="a"].x`).
//!
//! Not covered: CEL `x-kubernetes-validations`, `allOf`/`anyOf`/`oneOf`/`not`, list-type
//! uniqueness (`Duplicate value`), and formats other than date, date-time, uuid, byte, ipv4 and
//! ipv6.

use regex::Regex;
use serde_json::{Map, Value};

use crate::fieldcheck;
use crate::resources::ResourceDef;
use crate::status::{ApiError, FieldError};

fn props(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

fn prop<'a>(s: &'a Value, k: &str) -> Option<&'a Value> {
    props(s).and_then(|p| p.get(k))
}

/// `additionalProperties` as a schema, if it is one.
fn additional(s: &Value) -> Option<&Value> {
    s.get("additionalProperties").filter(|a| a.is_object())
}

fn flag(s: &Value, name: &str) -> bool {
    s.get(name).and_then(Value::as_bool) == Some(true)
}

/// Unknown fields below this node are kept (preserve-unknown-fields, or the
/// `additionalProperties: true` spelling of it).
fn preserves_unknown(s: &Value) -> bool {
    flag(s, "x-kubernetes-preserve-unknown-fields") || flag(s, "additionalProperties")
}

fn child(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

// ---------------------------------------------------------------------------------------------
// Pruning
// ---------------------------------------------------------------------------------------------

/// ObjectMeta keeps only its declared fields.
fn prune_object_meta(meta: &mut Value, path: &str, out: &mut Vec<String>) {
    if let Some(m) = meta.as_object_mut() {
        m.retain(|k, _| {
            let known = fieldcheck::is_object_meta_field(k);
            if !known {
                out.push(child(path, k));
            }
            known
        });
    }
}

struct Pruned {
    paths: Vec<String>,
    embedded_meta: Vec<String>,
}

fn prune_node(v: &mut Value, s: &Value, path: &str, acc: &mut Pruned) {
    match v {
        Value::Object(m) => prune_map(m, s, path, false, acc),
        Value::Array(a) => {
            if let Some(items) = s.get("items").filter(|i| i.is_object()) {
                for (i, x) in a.iter_mut().enumerate() {
                    prune_node(x, items, &format!("{path}[{i}]"), acc);
                }
            }
        }
        _ => {}
    }
}

fn prune_map(m: &mut Map<String, Value>, s: &Value, path: &str, root: bool, acc: &mut Pruned) {
    let keep_unknown = preserves_unknown(s);
    let embedded = flag(s, "x-kubernetes-embedded-resource");
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        let p = child(path, &k);
        let type_meta = k == "apiVersion" || k == "kind";
        if (root || embedded) && type_meta {
            continue;
        }
        if root && k == "metadata" {
            // The caller prunes the root ObjectMeta itself.
            continue;
        }
        if embedded && k == "metadata" {
            if let Some(meta) = m.get_mut(&k) {
                prune_object_meta(meta, &p, &mut acc.embedded_meta);
            }
            continue;
        }
        let sub = prop(s, &k).or_else(|| additional(s));
        match (sub, m.get_mut(&k)) {
            (Some(sub), Some(v)) => prune_node(v, sub, &p, acc),
            _ if keep_unknown => {}
            _ => {
                m.remove(&k);
                acc.paths.push(p);
            }
        }
    }
}

/// Drops what the schema does not declare; returns the dropped paths (`spec.foo`,
/// `spec.ports[0].bar`, `metadata.baz`) in kube-apiserver's order.
pub fn prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut meta_unknown = Vec::new();
    let mut acc = Pruned {
        paths: Vec::new(),
        embedded_meta: Vec::new(),
    };
    let Some(root) = obj.as_object_mut() else {
        return meta_unknown;
    };
    if let Some(meta) = root.get_mut("metadata") {
        prune_object_meta(meta, "metadata", &mut meta_unknown);
    }
    prune_map(root, schema, "", true, &mut acc);
    meta_unknown.sort();
    acc.paths.sort();
    meta_unknown.extend(acc.paths);
    meta_unknown.extend(acc.embedded_meta);
    meta_unknown
}

// ---------------------------------------------------------------------------------------------
// Defaulting
// ---------------------------------------------------------------------------------------------

fn nullable(s: &Value) -> bool {
    flag(s, "nullable")
}

/// A present `null` the schema does not allow: replaced by the default, or dropped.
fn fix_null(m: &mut Map<String, Value>, k: &str, s: &Value) {
    if m.get(k).is_some_and(Value::is_null) && !nullable(s) {
        match s.get("default") {
            Some(d) => {
                m.insert(k.to_string(), d.clone());
            }
            None => {
                m.remove(k);
            }
        }
    }
}

fn default_node(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(ps) = props(s) {
                for (k, ps) in ps {
                    if let (Some(d), false) = (ps.get("default"), m.contains_key(k)) {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let Some(sub) = prop(s, &k).or_else(|| additional(s)) else {
                    continue;
                };
                fix_null(m, &k, sub);
                if let Some(x) = m.get_mut(&k) {
                    default_node(x, sub);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.get("items").filter(|i| i.is_object()) {
                for x in a.iter_mut() {
                    if x.is_null()
                        && !nullable(items)
                        && let Some(d) = items.get("default")
                    {
                        *x = d.clone();
                    }
                    default_node(x, items);
                }
            }
        }
        _ => {}
    }
}

/// Fills in schema defaults (kube-apiserver does this when it decodes a request body).
pub fn apply_defaults(obj: &mut Value, schema: &Value) {
    default_node(obj, schema);
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// The OpenAPI type name of a JSON value, as kube-openapi's validator names it.
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

/// Go's `%v` of a float64: integral values without a fraction, exponents from 1e21 on.
fn go_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        format!("{f}")
    }
}

/// Go's `%q` of a string, close enough for error texts.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A bad value as apimachinery's field errors print it.
fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => go_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => go_quote(s),
        other => other.to_string(),
    }
}

fn num(s: &Value, k: &str) -> Option<f64> {
    s.get(k).and_then(Value::as_f64)
}

fn count(s: &Value, k: &str) -> Option<u64> {
    s.get(k).and_then(Value::as_u64)
}

fn field_error(reason: &'static str, field: &str, message: String) -> FieldError {
    FieldError {
        reason,
        field: field.to_string(),
        message,
    }
}

fn invalid(field: &str, value: &Value, detail: &str) -> FieldError {
    field_error(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {}: {detail}", show(value)),
    )
}

fn type_invalid(field: &str, value: &str, detail: &str) -> FieldError {
    field_error(
        "FieldValueTypeInvalid",
        field,
        format!("Invalid value: {}: {detail}", go_quote(value)),
    )
}

fn required(field: &str, detail: &str) -> FieldError {
    FieldError::required(field, detail)
}

fn too_many(field: &str, actual: usize, max: u64) -> FieldError {
    field_error(
        "FieldValueTooMany",
        field,
        format!("Too many: {actual}: must have at most {max} items"),
    )
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

fn valid_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return false;
    };
    if !(is_digits(y, 4) && is_digits(m, 2) && is_digits(d, 2)) {
        return false;
    }
    let (y, m, d): (u32, u32, u32) = match (y.parse(), m.parse(), d.parse()) {
        (Ok(y), Ok(m), Ok(d)) => (y, m, d),
        _ => return false,
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// The date-time layouts go-openapi's strfmt accepts: a date, `T`/`t`/space, `HH:MM` with
/// optional seconds and fraction, and an optional `Z` or numeric offset.
fn valid_date_time(s: &str) -> bool {
    if s.len() < 16 || !s.is_char_boundary(10) || !valid_date(&s[..10]) {
        return false;
    }
    if !matches!(s.as_bytes()[10], b'T' | b't' | b' ') {
        return false;
    }
    let rest = &s[11..];
    let (time, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let zone_ok = match zone {
        "" | "Z" | "z" => true,
        z => {
            let z = &z[1..];
            let hm: Vec<&str> = z.split(':').collect();
            match hm.as_slice() {
                [h, m] => is_digits(h, 2) && is_digits(m, 2),
                [hm] => is_digits(hm, 4),
                _ => false,
            }
        }
    };
    let (clock, frac) = match time.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (time, None),
    };
    let fields: Vec<&str> = clock.split(':').collect();
    let clock_ok = match fields.as_slice() {
        [h, m] => is_digits(h, 2) && is_digits(m, 2) && frac.is_none(),
        [h, m, sec] => is_digits(h, 2) && is_digits(m, 2) && is_digits(sec, 2),
        _ => false,
    };
    let frac_ok = frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    zone_ok && clock_ok && frac_ok
}

fn valid_uuid(s: &str) -> bool {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let dashes_ok = s.len() == 32
        || (s.len() == 36 && [8, 13, 18, 23].iter().all(|i| s.as_bytes()[*i] == b'-'));
    dashes_ok && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

/// Whether a string satisfies a format; unknown formats always pass.
fn format_ok(format: &str, s: &str) -> bool {
    use base64::Engine;
    match format {
        "date" => valid_date(s),
        "date-time" | "datetime" => valid_date_time(s),
        "uuid" => valid_uuid(s),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.contains(':') && s.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    }
}

fn schema_types(s: &Value) -> Vec<&str> {
    if flag(s, "x-kubernetes-int-or-string") {
        return vec!["integer", "string"];
    }
    match s.get("type").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => vec![t],
        _ => vec![],
    }
}

fn validate_string(v: &str, raw: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let len = v.chars().count() as u64;
    if let Some(max) = count(s, "maxLength").filter(|m| len > *m) {
        errs.push(field_error(
            "FieldValueTooLong",
            path,
            format!("Too long: may not be longer than {max}"),
        ));
    }
    if let Some(min) = count(s, "minLength").filter(|m| len < *m) {
        errs.push(invalid(
            path,
            raw,
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        // An invalid pattern cannot get into a CRD; if one does, it checks nothing.
        if let Ok(re) = Regex::new(p)
            && !re.is_match(v)
        {
            errs.push(invalid(
                path,
                raw,
                &format!("{path} in body should match '{p}'"),
            ));
        }
    }
    if let Some(f) = s.get("format").and_then(Value::as_str)
        && !format_ok(f, v)
    {
        errs.push(field_error(
            "FieldValueTypeInvalid",
            path,
            format!(
                "Invalid value: {}: {path} in body must be of type {f}: {}",
                go_quote(v),
                go_quote(v)
            ),
        ));
    }
}

fn validate_number(x: f64, raw: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(m) = num(s, "multipleOf").filter(|m| *m != 0.0) {
        let q = x / m;
        if q != q.trunc() {
            errs.push(invalid(
                path,
                raw,
                &format!("{path} in body should be a multiple of {}", go_float(m)),
            ));
        }
    }
    if let Some(max) = num(s, "maximum") {
        let exclusive = flag(s, "exclusiveMaximum");
        if x > max || (exclusive && x == max) {
            let how = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            errs.push(invalid(
                path,
                raw,
                &format!("{path} in body should be {how} {}", go_float(max)),
            ));
        }
    }
    if let Some(min) = num(s, "minimum") {
        let exclusive = flag(s, "exclusiveMinimum");
        if x < min || (exclusive && x == min) {
            let how = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errs.push(invalid(
                path,
                raw,
                &format!("{path} in body should be {how} {}", go_float(min)),
            ));
        }
    }
}

/// apiVersion and kind of an embedded object, as kube-apiserver's ObjectMeta coercion checks.
fn validate_embedded(m: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    for k in ["apiVersion", "kind"] {
        let p = child(path, k);
        match m.get(k) {
            None => errs.push(required(&p, "must not be empty")),
            Some(Value::String(s)) if s.is_empty() => errs.push(invalid(
                &p,
                &Value::String(String::new()),
                "must not be empty",
            )),
            Some(Value::String(_)) => {}
            Some(other) => errs.push(invalid(&p, other, "must be a string")),
        }
    }
}

fn validate_object(
    m: &Map<String, Value>,
    s: &Value,
    path: &str,
    root: bool,
    errs: &mut Vec<FieldError>,
) {
    let n = m.len();
    if let Some(max) = count(s, "maxProperties").filter(|max| n as u64 > *max) {
        errs.push(too_many(path, n, max));
    }
    if let Some(min) = count(s, "minProperties").filter(|min| (n as u64) < *min) {
        errs.push(invalid(
            path,
            &Value::from(n),
            &format!("{path} in body should have at least {min} properties"),
        ));
    }
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for k in req.iter().filter_map(Value::as_str) {
            if !m.contains_key(k) {
                errs.push(required(&child(path, k), ""));
            }
        }
    }
    if flag(s, "x-kubernetes-embedded-resource") {
        validate_embedded(m, path, errs);
    }
    for (k, v) in m {
        let p = child(path, k);
        if root && k == "metadata" {
            // ObjectMeta is validated as such; a schema may only constrain name/generateName.
            if let (Some(ms), Some(meta)) = (prop(s, "metadata"), v.as_object()) {
                for f in ["name", "generateName"] {
                    if let (Some(fs), Some(fv)) = (prop(ms, f), meta.get(f)) {
                        validate_node(fv, fs, &child(&p, f), false, errs);
                    }
                }
            }
            continue;
        }
        if let Some(sub) = prop(s, k).or_else(|| additional(s)) {
            validate_node(v, sub, &p, false, errs);
        }
    }
}

fn validate_node(v: &Value, s: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    let want = schema_types(s);
    let got = type_name(v);
    if v.is_null() && nullable(s) {
        return;
    }
    // An integer satisfies `number`.
    let type_ok =
        want.is_empty() || want.contains(&got) || (got == "integer" && want.contains(&"number"));
    if !type_ok {
        errs.push(type_invalid(
            path,
            got,
            &format!(
                "{path} in body must be of type {}: {}",
                want.join(","),
                go_quote(got)
            ),
        ));
        return;
    }
    if let Value::String(st) = v {
        validate_string(st, v, s, path, errs);
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.iter().any(|a| json_eq(a, v))
    {
        let values: Vec<String> = allowed
            .iter()
            .map(|a| match a {
                Value::String(x) => go_quote(x),
                other => go_quote(&other.to_string()),
            })
            .collect();
        errs.push(field_error(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                show(v),
                values.join(", ")
            ),
        ));
    }
    match v {
        Value::Object(m) => validate_object(m, s, path, root, errs),
        Value::Array(a) => {
            let n = a.len();
            if let Some(min) = count(s, "minItems").filter(|min| (n as u64) < *min) {
                errs.push(invalid(
                    path,
                    &Value::from(n),
                    &format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = count(s, "maxItems").filter(|max| n as u64 > *max) {
                errs.push(too_many(path, n, max));
            }
            if let Some(items) = s.get("items").filter(|i| i.is_object()) {
                for (i, x) in a.iter().enumerate() {
                    validate_node(x, items, &format!("{path}[{i}]"), false, errs);
                }
            }
        }
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                validate_number(x, v, s, path, errs);
            }
        }
        _ => {}
    }
}

/// Every schema violation of a (pruned, defaulted) custom resource.
pub fn validate(obj: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_node(obj, schema, "", true, &mut errs);
    errs
}

/// The served version's schema of a custom resource kind.
pub fn schema_of(def: &ResourceDef) -> Option<&Value> {
    def.custom.as_ref()?.schema.as_ref()
}

/// Defaulting, then validation, of a custom resource about to be stored: 422 Invalid naming
/// `<Kind>.<group>` on failure. Kinds without a schema pass unchanged.
pub fn check(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let Some(schema) = schema_of(def) else {
        return Ok(());
    };
    apply_defaults(obj, schema);
    let errs = validate(obj, schema);
    if errs.is_empty() {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Err(ApiError::invalid(&def.group, &def.kind, name, errs))
}

// ---------------------------------------------------------------------------------------------
// Server-side apply's typed conversion
// ---------------------------------------------------------------------------------------------

/// structured-merge-diff's path element of a list item.
fn item_path(path: &str, s: &Value, i: usize, item: &Value) -> String {
    let list_type = s.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys: Vec<&str> = s
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match list_type {
        Some("map") if !keys.is_empty() => {
            let mut keys = keys;
            keys.sort_unstable();
            let parts: Vec<String> = keys
                .iter()
                .filter_map(|k| item.get(*k).map(|v| format!("{k}={v}")))
                .collect();
            format!("{path}[{}]", parts.join(","))
        }
        Some("set") => format!("{path}[={item}]"),
        _ => format!("{path}[{i}]"),
    }
}

fn undeclared_node(v: &Value, s: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let embedded = flag(s, "x-kubernetes-embedded-resource");
            // No properties and no additionalProperties: a free-form object to apply.
            let free = preserves_unknown(s) || (props(s).is_none() && additional(s).is_none());
            for (k, x) in m {
                let p = format!("{path}.{k}");
                if (root || embedded) && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if (root || embedded) && k == "metadata" {
                    if let Some(meta) = x.as_object() {
                        out.extend(
                            meta.keys()
                                .filter(|f| !fieldcheck::is_object_meta_field(f))
                                .map(|f| format!("{p}.{f}: field not declared in schema")),
                        );
                    }
                    continue;
                }
                match prop(s, k).or_else(|| additional(s)) {
                    Some(sub) => undeclared_node(x, sub, &p, false, out),
                    None if free => {}
                    None => out.push(format!("{p}: field not declared in schema")),
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.get("items").filter(|i| i.is_object()) {
                for (i, x) in a.iter().enumerate() {
                    undeclared_node(x, items, &item_path(path, s, i, x), false, out);
                }
            }
        }
        _ => {}
    }
}

/// The errors server-side apply reports for fields of the applied configuration that the
/// schema does not declare (`.spec.foo: field not declared in schema`), in document order.
pub fn undeclared_for_apply(obj: &Value, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    undeclared_node(obj, schema, "", true, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "required": ["spec"], "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
                "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0},
                "id": {"type": "string", "format": "uuid"},
                "ports": {"type": "array", "maxItems": 2, "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["port"],
                    "items": {"type": "object", "properties": {
                        "port": {"type": "integer"},
                        "protocol": {"type": "string", "default": "TCP"}}}},
                "tags": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                "free": {"type": "object"},
                "note": {"type": "string", "nullable": true},
                "opt": {"type": "string"},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                    "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}}
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
        }})
    }

    fn widget(spec: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1", "namespace": "default"}, "spec": spec})
    }

    fn texts(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
    }

    #[test]
    fn prunes_undeclared_fields_in_kube_apiserver_order() {
        let mut obj = widget(json!({
            "size": 1, "zzz": 1, "foo": {"deep": 1},
            "ports": [{"port": 80, "bogus": true}],
            "labels": {"any-key": "v"},
            "extra": {"anything": {"goes": 1}, "known": {"a": "x", "b": "pruned"}},
            "free": {"gone": 1},
            "template": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "surprise": 1}, "spec": {"x": "1", "y": "2"}, "other": 1}
        }));
        obj["metadata"]["bogus"] = json!(1);
        obj["status"] = json!({"ready": true, "what": 1});
        obj["topLevel"] = json!(1);
        let pruned = prune(&mut obj, &schema());
        assert_eq!(
            pruned,
            [
                "metadata.bogus",
                "spec.extra.known.b",
                "spec.foo",
                "spec.free.gone",
                "spec.ports[0].bogus",
                "spec.template.other",
                "spec.template.spec.y",
                "spec.zzz",
                "status.what",
                "topLevel",
                "spec.template.metadata.surprise",
            ]
        );
        assert_eq!(
            obj["spec"],
            json!({"size": 1, "ports": [{"port": 80}], "labels": {"any-key": "v"},
                "extra": {"anything": {"goes": 1}, "known": {"a": "x"}}, "free": {},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                    "spec": {"x": "1"}}})
        );
        assert_eq!(
            obj["metadata"],
            json!({"name": "w1", "namespace": "default"})
        );
        assert_eq!(obj["status"], json!({"ready": true}));
        assert_eq!(obj["apiVersion"], "example.com/v1");
    }

    #[test]
    fn preserve_unknown_at_the_root_keeps_everything_but_unknown_metadata() {
        let s = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        let mut obj = widget(json!({"anything": [1, {"x": 2}]}));
        obj["metadata"]["nope"] = json!(true);
        assert_eq!(prune(&mut obj, &s), vec!["metadata.nope"]);
        assert_eq!(obj["spec"], json!({"anything": [1, {"x": 2}]}));
    }

    #[test]
    fn defaults_fill_absent_fields_and_replace_disallowed_nulls() {
        let mut obj = widget(
            json!({"size": 2, "ports": [{"port": 80}, {"port": 81, "protocol": "UDP"}],
            "opt": null, "note": null}),
        );
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["mode"], "fast");
        assert_eq!(obj["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(obj["spec"]["ports"][1]["protocol"], "UDP");
        // A non-nullable null without a default is dropped; a nullable one stays.
        assert!(obj["spec"].get("opt").is_none());
        assert_eq!(obj["spec"]["note"], Value::Null);
        let mut explicit = widget(json!({"size": 2, "mode": null}));
        apply_defaults(&mut explicit, &schema());
        assert_eq!(explicit["spec"]["mode"], "fast");
    }

    #[test]
    fn valid_object_has_no_errors() {
        let mut obj = widget(
            json!({"size": 3, "name": "abc", "ratio": 0.5, "tags": ["a"],
            "id": "123e4567-e89b-12d3-a456-426614174000", "note": null,
            "template": {"apiVersion": "v1", "kind": "Pod"}}),
        );
        apply_defaults(&mut obj, &schema());
        assert!(validate(&obj, &schema()).is_empty());
    }

    #[test]
    fn validation_texts_match_kube_apiserver() {
        let obj = widget(
            json!({"size": "three", "mode": "medium", "name": "TOOLONGNAME",
            "ratio": 0, "tags": [], "ports": [{"port": 1}, {"port": 2}, {"port": 3}],
            "id": "nope", "labels": {"a": 1}, "opt": null,
            "template": {"kind": ""}}),
        );
        let errs = validate(&obj, &schema());
        assert_eq!(
            texts(&errs),
            vec![
                r#"spec.size: Invalid value: "string": spec.size in body must be of type integer: "string""#,
                r#"spec.mode: Unsupported value: "medium": supported values: "fast", "slow""#,
                "spec.name: Too long: may not be longer than 5",
                r#"spec.name: Invalid value: "TOOLONGNAME": spec.name in body should match '^[a-z]+$'"#,
                "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0",
                "spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items",
                "spec.ports: Too many: 3: must have at most 2 items",
                r#"spec.id: Invalid value: "nope": spec.id in body must be of type uuid: "nope""#,
                r#"spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer""#,
                r#"spec.opt: Invalid value: "null": spec.opt in body must be of type string: "null""#,
                "spec.template.apiVersion: Required value: must not be empty",
                r#"spec.template.kind: Invalid value: "": must not be empty"#,
            ]
        );
        assert_eq!(errs[0].reason, "FieldValueTypeInvalid");
        assert_eq!(errs[1].reason, "FieldValueNotSupported");
        assert_eq!(errs[2].reason, "FieldValueTooLong");
        assert_eq!(errs[6].reason, "FieldValueTooMany");
    }

    #[test]
    fn required_and_bounds() {
        let errs = validate(&widget(json!({"name": "a"})), &schema());
        assert_eq!(
            texts(&errs),
            vec![
                "spec.size: Required value",
                r#"spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long"#,
            ]
        );
        assert_eq!(errs[0].reason, "FieldValueRequired");
        let errs = validate(&widget(json!({"size": 11})), &schema());
        assert_eq!(
            texts(&errs),
            vec![
                "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
            ]
        );
        let errs = validate(&widget(json!({"size": 0})), &schema());
        assert_eq!(
            texts(&errs),
            vec![
                "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
            ]
        );
        let no_spec =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        assert_eq!(
            texts(&validate(&no_spec, &schema())),
            vec!["spec: Required value"]
        );
        // An integer is a number; a float is not an integer.
        let errs = validate(&widget(json!({"size": 1.5, "ratio": 2})), &schema());
        assert_eq!(
            texts(&errs),
            vec![
                r#"spec.size: Invalid value: "number": spec.size in body must be of type integer: "number""#
            ]
        );
    }

    #[test]
    fn check_reports_invalid_with_group_kind() {
        let def = {
            let mut reg = crate::resources::builtin_def("ConfigMap");
            reg.group = "example.com".into();
            reg.kind = "Widget".into();
            reg.custom = Some(crate::resources::CustomInfo {
                crd_name: "widgets.example.com".into(),
                printer_columns: vec![],
                schema: Some(schema()),
            });
            reg
        };
        let mut obj = widget(json!({"size": 0}));
        let Err(e) = check(&def, &mut obj) else {
            panic!("invalid object accepted");
        };
        let st = e.to_status();
        assert_eq!(
            st["message"],
            "Widget.example.com \"w1\" is invalid: spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        );
        assert_eq!(st["details"]["kind"], "Widget");
        assert_eq!(st["details"]["group"], "example.com");
        assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueInvalid");
        assert_eq!(st["details"]["causes"][0]["field"], "spec.size");
        let mut two = widget(json!({"mode": "x"}));
        let Err(e) = check(&def, &mut two) else {
            panic!("invalid object accepted");
        };
        assert_eq!(
            e.message,
            "Widget.example.com \"w1\" is invalid: [spec.size: Required value, spec.mode: Unsupported value: \"x\": supported values: \"fast\", \"slow\"]"
        );
        let mut ok = widget(json!({"size": 1}));
        assert!(check(&def, &mut ok).is_ok());
        assert_eq!(ok["spec"]["mode"], "fast");
    }

    #[test]
    fn apply_rejects_what_the_typed_schema_does_not_declare() {
        let mut obj = widget(json!({"size": 1, "foo": 1, "free": {"any": {"thing": 1}},
            "extra": {"x": 1, "known": {"b": 1}},
            "ports": [{"port": 80, "bad": 1}], "template": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "odd": 1}}}));
        obj["metadata"]["weird"] = json!(1);
        assert_eq!(
            undeclared_for_apply(&obj, &schema()),
            vec![
                ".metadata.weird: field not declared in schema",
                ".spec.foo: field not declared in schema",
                ".spec.extra.known.b: field not declared in schema",
                ".spec.ports[port=80].bad: field not declared in schema",
                ".spec.template.metadata.odd: field not declared in schema",
            ]
        );
        let free = json!({"type": "object"});
        assert!(undeclared_for_apply(&widget(json!({"a": 1})), &free).is_empty());
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
        assert!(valid_date_time("2024-02-29T10:00:00Z"));
        assert!(valid_date_time("2024-02-29T10:00:00.123+01:00"));
        assert!(!valid_date_time("2023-02-29T10:00:00Z"));
        assert!(!valid_date_time("yesterday"));
        assert!(valid_uuid("123e4567e89b12d3a456426614174000"));
    }
}
