//! Non-apply PATCH mechanics (spec §2.3): JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386)
//! and strategic merge patch for the common built-in cases. Pure functions on
//! `serde_json::Value`; no I/O.
//!
//! # API
//!
//! ```text
//! pub enum PatchError { BadRequest(String) /* 400: malformed patch */,
//!                       Unprocessable(String) /* 422: well-formed but not applicable */ }
//! impl PatchError { pub fn code(&self) -> u16; pub fn message(&self) -> &str; }
//! pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError>;
//! pub fn json_patch_limited(doc: &Value, patch: &Value, copy_limit: usize) -> Result<Value, PatchError>;
//! pub fn json_size(v: &Value) -> usize;
//! pub fn merge_patch(doc: &Value, patch: &Value) -> Value;
//! pub fn strategic_merge_patch(doc: &Value, patch: &Value, schema: &dyn crate::schema::Schema)
//!     -> Result<Value, PatchError>;
//! ```
//!
//! `json_patch` is atomic: on any failing operation the document is left untouched and the
//! error names the operation. As in kube-apiserver, a patch has at most 10000 operations (413)
//! and its `copy` operations together may add at most the request body limit (3 MiB) of
//! compact JSON (422), so one small request cannot double a document until memory runs out. `strategic_merge_patch` takes its merge keys from the SSA schema:
//! an associative list merges by its first key field (the patchMergeKey of the built-ins:
//! `name`, `containerPort`, `port`, `mountPath`, `uid`, `type`, ...), a set list is unioned
//! (`finalizers`), an atomic list is replaced. Supported directives: `$patch: replace|delete|merge`
//! on maps and list elements, `{"$patch": "replace"}` as a list element, `$retainKeys`,
//! `$deleteFromPrimitiveList/<field>`; `$setElementOrder/<field>` is accepted and ignored.
//! The server answers 415 for strategic patches on custom resources before calling this.

use crate::schema::{ListType, PathElem, Schema};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well-formed but cannot be applied to this document (HTTP 422).
    #[error("{0}")]
    Unprocessable(String),
    /// The patch has more operations than the server takes (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
}

impl PatchError {
    pub fn code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Unprocessable(_) => 422,
            PatchError::TooLarge(_) => 413,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            PatchError::BadRequest(m) | PatchError::Unprocessable(m) | PatchError::TooLarge(m) => m,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 6902
// ---------------------------------------------------------------------------------------------

fn parse_pointer(p: &str) -> Result<Vec<String>, PatchError> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(PatchError::BadRequest(format!(
            "invalid JSON pointer {p:?}: must be empty or start with '/'"
        )));
    };
    // RFC 6901: decode ~1 before ~0 so that "~01" becomes "~1".
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// Array index per RFC 6901: "0" or digits without a leading zero.
fn parse_index(tok: &str) -> Option<usize> {
    if tok.is_empty() || (tok.len() > 1 && tok.starts_with('0')) {
        return None;
    }
    if !tok.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tok.parse().ok()
}

fn get<'v>(doc: &'v Value, toks: &[String]) -> Option<&'v Value> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(parse_index(t)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn get_mut<'v>(doc: &'v mut Value, toks: &[String]) -> Option<&'v mut Value> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => a.get_mut(parse_index(t)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn missing(op: &str, path: &str) -> PatchError {
    PatchError::Unprocessable(format!(
        "{op} operation does not apply: doc is missing path: \"{path}\": missing value"
    ))
}

fn add(doc: &mut Value, toks: &[String], value: Value, path: &str) -> Result<(), PatchError> {
    let Some((last, parent_toks)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    let Some(parent) = get_mut(doc, parent_toks) else {
        return Err(missing("add", path));
    };
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            match parse_index(last) {
                Some(i) if i <= a.len() => {
                    a.insert(i, value);
                    Ok(())
                }
                _ => Err(PatchError::Unprocessable(format!(
                    "add operation does not apply: index out of bounds: \"{path}\""
                ))),
            }
        }
        _ => Err(missing("add", path)),
    }
}

fn remove(doc: &mut Value, toks: &[String], op: &str, path: &str) -> Result<Value, PatchError> {
    let Some((last, parent_toks)) = toks.split_last() else {
        return Err(PatchError::Unprocessable(format!(
            "{op} operation does not apply: cannot remove the document root"
        )));
    };
    let parent = get_mut(doc, parent_toks).ok_or_else(|| missing(op, path))?;
    match parent {
        Value::Object(m) => m.shift_remove(last).ok_or_else(|| missing(op, path)),
        Value::Array(a) => match parse_index(last) {
            Some(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing(op, path)),
        },
        _ => Err(missing(op, path)),
    }
}

/// JSON equality with numbers compared by value (RFC 6902 §4.6: 1 equals 1.0).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn str_member<'p>(
    op: &'p Map<String, Value>,
    name: &str,
    kind: &str,
) -> Result<&'p str, PatchError> {
    op.get(name).and_then(Value::as_str).ok_or_else(|| {
        PatchError::BadRequest(format!("{kind} operation is missing the {name:?} member"))
    })
}

fn value_member(op: &Map<String, Value>, kind: &str) -> Result<Value, PatchError> {
    op.get("value").cloned().ok_or_else(|| {
        PatchError::BadRequest(format!("{kind} operation is missing the \"value\" member"))
    })
}

/// kube-apiserver's bound on the operations of one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Size of a value as compact JSON, without building the text.
pub fn json_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// kube-apiserver's request body limit (3 MiB): the default bound on what `copy`
/// operations may add.
pub const DEFAULT_COPY_LIMIT: usize = 3 * 1024 * 1024;

/// JSON Patch bounded by [`DEFAULT_COPY_LIMIT`].
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    json_patch_limited(doc, patch, DEFAULT_COPY_LIMIT)
}

/// Applies an RFC 6902 JSON Patch whose `copy` operations may add at most `copy_limit` bytes
/// (of compact JSON) in total.
pub fn json_patch_limited(
    doc: &Value,
    patch: &Value,
    copy_limit: usize,
) -> Result<Value, PatchError> {
    let Some(ops) = patch.as_array() else {
        return Err(PatchError::BadRequest(
            "json patch must be an array of operations".into(),
        ));
    };
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            ops.len()
        )));
    }
    let mut copied = 0usize;
    let mut out = doc.clone();
    for op in ops {
        let Some(op) = op.as_object() else {
            return Err(PatchError::BadRequest(
                "json patch operation must be an object".into(),
            ));
        };
        let kind = op.get("op").and_then(Value::as_str).ok_or_else(|| {
            PatchError::BadRequest("json patch operation is missing \"op\"".into())
        })?;
        let path = str_member(op, "path", kind)?;
        let toks = parse_pointer(path)?;
        match kind {
            "add" => add(&mut out, &toks, value_member(op, kind)?, path)?,
            "remove" => {
                remove(&mut out, &toks, kind, path)?;
            }
            "replace" => {
                let v = value_member(op, kind)?;
                let target = get_mut(&mut out, &toks).ok_or_else(|| missing(kind, path))?;
                *target = v;
            }
            "move" => {
                let from = str_member(op, "from", kind)?;
                let from_toks = parse_pointer(from)?;
                if toks.len() > from_toks.len() && toks.starts_with(&from_toks) {
                    return Err(PatchError::Unprocessable(format!(
                        "move operation does not apply: \"{from}\" is a prefix of \"{path}\""
                    )));
                }
                let v = remove(&mut out, &from_toks, kind, from)?;
                add(&mut out, &toks, v, path)?;
            }
            "copy" => {
                let from = str_member(op, "from", kind)?;
                let v = get(&out, &parse_pointer(from)?).ok_or_else(|| missing(kind, from))?;
                // Measured before cloning: the clone is what could exhaust memory.
                copied = copied.saturating_add(json_size(v));
                if copied > copy_limit {
                    return Err(PatchError::Unprocessable(format!(
                        "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {copy_limit}"
                    )));
                }
                let v = v.clone();
                add(&mut out, &toks, v, path)?;
            }
            "test" => {
                let v = value_member(op, kind)?;
                match get(&out, &toks) {
                    Some(cur) if json_equal(cur, &v) => {}
                    _ => {
                        return Err(PatchError::Unprocessable(format!(
                            "testing value {path} failed: test failed"
                        )));
                    }
                }
            }
            other => {
                return Err(PatchError::BadRequest(format!("Unexpected kind: {other}")));
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// RFC 7386
// ---------------------------------------------------------------------------------------------

/// Applies an RFC 7386 JSON Merge Patch.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (k, pv) in p {
        if pv.is_null() {
            out.shift_remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), pv);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch
// ---------------------------------------------------------------------------------------------

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(SET_ORDER)
        || k.starts_with(DELETE_PRIMITIVE)
}

/// A patch fragment used as a brand-new value: directives and nulls carry no data.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !is_directive_key(k) && !v.is_null())
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|e| directive_of(e).is_none())
                .map(clean)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn directive_of(v: &Value) -> Option<&str> {
    v.as_object()?.get(DIRECTIVE)?.as_str()
}

/// Applies a strategic merge patch (`application/strategic-merge-patch+json`).
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    schema: &dyn Schema,
) -> Result<Value, PatchError> {
    let (Value::Object(d), Value::Object(p)) = (doc, patch) else {
        return Err(PatchError::BadRequest(
            "strategic merge patch and document must be JSON objects".into(),
        ));
    };
    Ok(smp_map(d, p, &mut Vec::new(), schema)?
        .map(Value::Object)
        .unwrap_or_else(|| Value::Object(Map::new())))
}

/// Returns `None` when the patch deletes the whole map.
fn smp_map(
    orig: &Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<PathElem>,
    schema: &dyn Schema,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get(DIRECTIVE).map(|d| d.as_str()) {
        None | Some(Some("merge")) => {}
        Some(Some("replace")) => {
            return Ok(clean(&Value::Object(patch.clone())).as_object().cloned());
        }
        Some(Some("delete")) => return Ok(None),
        Some(other) => {
            return Err(PatchError::BadRequest(format!(
                "Unknown patch type found: {}",
                other.unwrap_or("<non-string>")
            )));
        }
    }
    let mut out = orig.clone();
    for (k, pv) in patch {
        if is_directive_key(k) {
            continue;
        }
        if pv.is_null() {
            out.shift_remove(k);
            continue;
        }
        path.push(PathElem::Field(k.clone()));
        let merged = match (out.get(k), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                smp_map(o, p, path, schema)?.map(Value::Object)
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                Some(Value::Array(smp_list(o, p, path, schema)?))
            }
            (_, Value::Object(p)) => smp_map(&Map::new(), p, path, schema)?.map(Value::Object),
            (_, Value::Array(p)) => Some(Value::Array(smp_list(&[], p, path, schema)?)),
            (_, scalar) => Some(scalar.clone()),
        };
        path.pop();
        match merged {
            Some(v) => {
                out.insert(k.clone(), v);
            }
            None => {
                out.shift_remove(k);
            }
        }
    }
    // Deletions from primitive lists run after the merge of the same field.
    for (k, pv) in patch {
        let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) else {
            continue;
        };
        let Some(del) = pv.as_array() else {
            return Err(PatchError::BadRequest(format!(
                "{k} must hold a list of values"
            )));
        };
        if let Some(Value::Array(list)) = out.get_mut(field) {
            list.retain(|v| !del.contains(v));
        }
    }
    if let Some(keep) = patch.get(RETAIN_KEYS) {
        let Some(keep) = keep.as_array() else {
            return Err(PatchError::BadRequest("$retainKeys must be a list".into()));
        };
        out.retain(|k, _| keep.iter().any(|r| r.as_str() == Some(k)));
    }
    Ok(Some(out))
}

fn smp_list(
    orig: &[Value],
    patch: &[Value],
    path: &mut Vec<PathElem>,
    schema: &dyn Schema,
) -> Result<Vec<Value>, PatchError> {
    if patch.iter().any(|e| directive_of(e) == Some("replace")) {
        return Ok(patch
            .iter()
            .filter(|e| directive_of(e) != Some("replace"))
            .map(clean)
            .collect());
    }
    match schema.list_type(path) {
        ListType::Map(keys) => {
            let Some(key) = keys.first() else {
                return Ok(patch.iter().map(clean).collect());
            };
            let mut out = orig.to_vec();
            for pe in patch {
                let Some(pobj) = pe.as_object() else {
                    out.push(pe.clone());
                    continue;
                };
                let kv = pobj.get(key.as_str());
                let pos =
                    kv.and_then(|kv| out.iter().position(|o| o.get(key.as_str()) == Some(kv)));
                if directive_of(pe) == Some("delete") {
                    if let Some(kv) = kv {
                        out.retain(|o| o.get(key.as_str()) != Some(kv));
                    }
                    continue;
                }
                match pos {
                    Some(i) => {
                        path.push(PathElem::Index(i));
                        let merged = match out[i].as_object() {
                            Some(o) => smp_map(o, pobj, path, schema)?,
                            None => Some(pobj.clone()),
                        };
                        path.pop();
                        match merged {
                            Some(m) => out[i] = Value::Object(m),
                            None => {
                                out.remove(i);
                            }
                        }
                    }
                    None => out.push(clean(pe)),
                }
            }
            Ok(out)
        }
        ListType::Set => {
            let mut out = orig.to_vec();
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(out)
        }
        ListType::Atomic => Ok(patch.iter().map(clean).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::builtin_schema;
    use serde_json::json;

    fn jp(doc: Value, patch: Value) -> Result<Value, PatchError> {
        json_patch(&doc, &patch)
    }

    // RFC 6902 appendix A scenarios.
    #[test]
    fn rfc6902_add_object_member() {
        assert_eq!(
            jp(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux"}])
            )
            .unwrap(),
            json!({"baz": "qux", "foo": "bar"})
        );
    }

    #[test]
    fn rfc6902_add_array_element_and_append() {
        assert_eq!(
            jp(
                json!({"foo": ["bar", "baz"]}),
                json!([{"op": "add", "path": "/foo/1", "value": "qux"}])
            )
            .unwrap(),
            json!({"foo": ["bar", "qux", "baz"]})
        );
        assert_eq!(
            jp(
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}])
            )
            .unwrap(),
            json!({"foo": ["bar", ["abc", "def"]]})
        );
        assert!(
            jp(
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/2", "value": 1}])
            )
            .is_err()
        );
        assert!(
            jp(
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/01", "value": 1}])
            )
            .is_err()
        );
    }

    #[test]
    fn rfc6902_remove_member_and_element() {
        assert_eq!(
            jp(
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "remove", "path": "/baz"}])
            )
            .unwrap(),
            json!({"foo": "bar"})
        );
        assert_eq!(
            jp(
                json!({"foo": ["bar", "qux", "baz"]}),
                json!([{"op": "remove", "path": "/foo/1"}])
            )
            .unwrap(),
            json!({"foo": ["bar", "baz"]})
        );
        let err = jp(json!({"a": 1}), json!([{"op": "remove", "path": "/b"}])).unwrap_err();
        assert_eq!(err.code(), 422);
    }

    #[test]
    fn rfc6902_replace() {
        assert_eq!(
            jp(
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "replace", "path": "/baz", "value": "boo"}])
            )
            .unwrap(),
            json!({"baz": "boo", "foo": "bar"})
        );
        assert!(
            jp(
                json!({}),
                json!([{"op": "replace", "path": "/x", "value": 1}])
            )
            .is_err()
        );
        assert_eq!(
            jp(
                json!({"a": 1}),
                json!([{"op": "replace", "path": "", "value": [1]}])
            )
            .unwrap(),
            json!([1])
        );
    }

    #[test]
    fn rfc6902_move_and_copy() {
        assert_eq!(
            jp(
                json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
                json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}])
            )
            .unwrap(),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})
        );
        assert_eq!(
            jp(
                json!({"foo": ["all", "grass", "cows", "eat"]}),
                json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}])
            )
            .unwrap(),
            json!({"foo": ["all", "cows", "eat", "grass"]})
        );
        assert!(
            jp(
                json!({"a": {"b": 1}}),
                json!([{"op": "move", "from": "/a", "path": "/a/b/c"}])
            )
            .is_err()
        );
        assert_eq!(
            jp(
                json!({"a": {"b": 1}}),
                json!([{"op": "copy", "from": "/a", "path": "/c"}])
            )
            .unwrap(),
            json!({"a": {"b": 1}, "c": {"b": 1}})
        );
    }

    #[test]
    fn rfc6902_test_op() {
        let doc = json!({"baz": "qux", "foo": ["a", 2, "c"]});
        assert!(
            jp(
                doc.clone(),
                json!([
                    {"op": "test", "path": "/baz", "value": "qux"},
                    {"op": "test", "path": "/foo/1", "value": 2}
                ])
            )
            .is_ok()
        );
        let err = jp(doc, json!([{"op": "test", "path": "/baz", "value": "bar"}])).unwrap_err();
        assert_eq!(
            err,
            PatchError::Unprocessable("testing value /baz failed: test failed".into())
        );
        // Strings and numbers never compare equal; 1 and 1.0 do.
        assert!(
            jp(
                json!({"/": 9}),
                json!([{"op": "test", "path": "/~1", "value": "9"}])
            )
            .is_err()
        );
        assert!(
            jp(
                json!({"n": 1}),
                json!([{"op": "test", "path": "/n", "value": 1.0}])
            )
            .is_ok()
        );
    }

    #[test]
    fn rfc6902_escapes_nested_and_unknown_members() {
        assert_eq!(
            jp(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}])
            )
            .unwrap(),
            json!({"foo": "bar", "child": {"grandchild": {}}})
        );
        assert_eq!(
            jp(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}])
            )
            .unwrap(),
            json!({"foo": "bar", "baz": "qux"})
        );
        assert!(
            jp(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz/bat", "value": "qux"}])
            )
            .is_err()
        );
        assert!(
            jp(
                json!({"~1": 10}),
                json!([{"op": "test", "path": "/~01", "value": 10}])
            )
            .is_ok()
        );
        assert_eq!(
            jp(
                json!({"metadata": {"annotations": {}}}),
                json!([{"op": "add", "path": "/metadata/annotations/example.com~1x", "value": "1"}])
            )
            .unwrap(),
            json!({"metadata": {"annotations": {"example.com/x": "1"}}})
        );
    }

    #[test]
    fn rfc6902_is_atomic_and_validates_shape() {
        let doc = json!({"a": 1});
        assert!(
            jp(
                doc.clone(),
                json!([
                    {"op": "add", "path": "/b", "value": 2},
                    {"op": "remove", "path": "/zzz"}
                ])
            )
            .is_err()
        );
        assert_eq!(
            jp(doc.clone(), json!({"op": "add"})).unwrap_err().code(),
            400
        );
        assert_eq!(
            jp(doc.clone(), json!([{"op": "frob", "path": "/a"}]))
                .unwrap_err()
                .code(),
            400
        );
        assert_eq!(
            jp(doc.clone(), json!([{"op": "add", "path": "/b"}]))
                .unwrap_err()
                .code(),
            400
        );
        assert_eq!(
            jp(doc, json!([{"op": "add", "path": "b", "value": 1}]))
                .unwrap_err()
                .code(),
            400
        );
    }

    #[test]
    fn copies_accumulate_against_the_limit() {
        // Each copy of "/a" adds 12 bytes ("\"xxxxxxxxxx\""): two fit in 24, three do not.
        let doc = json!({"a": "x".repeat(10)});
        let copy = |to: &str| json!({"op": "copy", "from": "/a", "path": to});
        let two = json!([copy("/b"), copy("/c")]);
        assert!(json_patch_limited(&doc, &two, 24).is_ok());
        let three = json!([copy("/b"), copy("/c"), copy("/d")]);
        let e = json_patch_limited(&doc, &three, 24).unwrap_err();
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.message(),
            "Unable to complete the copy, the accumulated size increase of copy is 36, exceeding the limit 24"
        );
        // Doubling a document with copies of itself stops at the default limit.
        let mut doubling =
            vec![json!({"op": "add", "path": "/d", "value": {"x": "y".repeat(1000)}})];
        for i in 0..40 {
            doubling.push(json!({"op": "copy", "from": "/d", "path": format!("/d/{i}")}));
        }
        let e = json_patch(&json!({}), &Value::Array(doubling)).unwrap_err();
        assert_eq!(e.code(), 422, "{e}");
        let too_many = Value::Array(vec![json!({"op": "test", "path": "", "value": {}}); 10_001]);
        let e = json_patch(&json!({}), &too_many).unwrap_err();
        assert_eq!(e.code(), 413);
        assert_eq!(
            e.message(),
            "The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
        assert_eq!(json_size(&json!({"a": [1, "b"]})), 13);
    }

    // RFC 7386 appendix A table.
    #[test]
    fn rfc7386_test_vectors() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (doc, patch, want) in cases {
            assert_eq!(merge_patch(&doc, &patch), want, "doc {doc} patch {patch}");
        }
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
            "labels": {"app": "web"}, "finalizers": ["a"]},
        "spec": {"replicas": 1, "template": {"spec": {
            "containers": [
                {"name": "nginx", "image": "nginx:1", "args": ["--x"],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "side", "image": "busybox"}
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "tolerations": [{"key": "k", "operator": "Exists"}]
        }}}})
    }

    fn smp(patch: Value) -> Result<Value, PatchError> {
        let schema = builtin_schema("apps", "Deployment");
        strategic_merge_patch(&deployment(), &patch, schema.as_ref())
    }

    #[test]
    fn smp_merges_containers_and_env_by_name() {
        let out = smp(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "image": "nginx:2", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]},
            {"name": "new", "image": "n"}
        ]}}}}))
        .unwrap();
        let cs = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[0]["image"], "nginx:2");
        assert_eq!(cs[0]["args"], json!(["--x"]));
        assert_eq!(
            cs[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
        assert_eq!(cs[1]["name"], "side");
        assert_eq!(cs[2]["name"], "new");
    }

    #[test]
    fn smp_delete_directive_on_list_element_and_map() {
        let out = smp(json!({"spec": {"template": {"spec": {
            "containers": [{"name": "side", "$patch": "delete"},
                           {"name": "nginx", "env": [{"name": "A", "$patch": "delete"}]}],
            "volumes": [{"name": "data", "$patch": "delete"}]
        }}}}))
        .unwrap();
        let cs = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0]["env"], json!([{"name": "B", "value": "2"}]));
        assert_eq!(out["spec"]["template"]["spec"]["volumes"], json!([]));
        let out = smp(json!({"metadata": {"labels": {"$patch": "delete"}}})).unwrap();
        assert!(out["metadata"].get("labels").is_none());
    }

    #[test]
    fn smp_replace_directives() {
        let out = smp(json!({"metadata": {"labels": {"$patch": "replace", "new": "1"}}})).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"new": "1"}));
        let out = smp(json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "o"}
        ]}}}}))
        .unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "o"}])
        );
    }

    #[test]
    fn smp_volumes_merge_and_lists_without_key_replace() {
        let out = smp(json!({"spec": {"template": {"spec": {
            "volumes": [{"name": "cfg", "configMap": {"name": "c"}}],
            "tolerations": [{"key": "other", "operator": "Exists"}],
            "containers": [{"name": "nginx", "args": ["--y"]}]
        }}}}))
        .unwrap();
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 2);
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "other", "operator": "Exists"}])
        );
        assert_eq!(spec["containers"][0]["args"], json!(["--y"]));
    }

    #[test]
    fn smp_ports_merge_by_container_port_and_null_deletes() {
        let out = smp(json!({"spec": {"replicas": null, "template": {"spec": {"containers": [
            {"name": "nginx", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}
        ]}}}}))
        .unwrap();
        assert!(out["spec"].get("replicas").is_none());
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}])
        );
    }

    #[test]
    fn smp_finalizers_union_and_delete_from_primitive_list() {
        let out = smp(json!({"metadata": {"finalizers": ["b", "a"]}})).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let out = smp(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!([]));
    }

    #[test]
    fn smp_retain_keys_and_set_element_order_ignored() {
        let schema = builtin_schema("apps", "Deployment");
        let doc = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out = strategic_merge_patch(
            &doc,
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            schema.as_ref(),
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"strategy": {"type": "Recreate"}}}));
        let out = smp(json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "nginx"}],
            "containers": [{"name": "side", "image": "b2"}]
        }}}}))
        .unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][1]["image"],
            "b2"
        );
        assert!(
            out["spec"]["template"]["spec"]
                .get("$setElementOrder/containers")
                .is_none()
        );
    }

    #[test]
    fn smp_client_side_apply_annotation_patch() {
        let out = smp(json!({"metadata": {"annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{}\n"}}}))
        .unwrap();
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{}\n"
        );
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    }

    #[test]
    fn smp_rejects_unknown_directive_and_non_objects() {
        assert_eq!(
            smp(json!({"metadata": {"$patch": "frob"}}))
                .unwrap_err()
                .code(),
            400
        );
        let schema = builtin_schema("", "ConfigMap");
        assert!(strategic_merge_patch(&json!({}), &json!([1]), schema.as_ref()).is_err());
    }
}
