//! Server-side apply (SSA) and `managedFields` bookkeeping, modelled on the behaviour of
//! kube-apiserver's structured-merge-diff field manager (spec §3, §2.8).
//!
//! Everything works on `serde_json::Value`; there is no I/O.
//!
//! # API
//!
//! ```text
//! pub enum PathElem { Field(String), Key(String /* canonical JSON object, keys sorted */),
//!                     Value(String /* canonical JSON */), Index(usize) }
//! pub type Path = Vec<PathElem>;
//! pub type Set = BTreeSet<Path>;
//!
//! pub enum ListType { Atomic, Set, Map(Vec<String> /* key fields */) }
//! pub enum MapType { Granular, Atomic }
//! pub trait Schema {
//!     fn list_type(&self, path: &[PathElem]) -> ListType;
//!     fn map_type(&self, path: &[PathElem]) -> MapType;
//!     fn default_for(&self, path: &[PathElem]) -> Option<Value>;
//!     // provided (overridable) methods:
//!     fn is_struct_field(&self, path: &[PathElem]) -> bool;            // false = key of a free-form map
//!     fn key_default(&self, list_path: &[PathElem], key: &str) -> Option<Value>;
//!     fn omit_empty(&self) -> bool;                                     // typed built-ins drop emptied maps/lists
//!     fn always_present(&self, path: &[PathElem]) -> bool;              // non-pointer structs, non-omitempty lists (no "." on create)
//! }
//! pub fn builtin_schema(group: &str, kind: &str) -> Box<dyn Schema>;
//! pub fn crd_schema(openapi_v3_schema: &Value) -> Box<dyn Schema>;
//!
//! pub struct ApplyRequest<'a> {
//!     pub live: Option<&'a Value>,      // stored object (with its managedFields) or None on create
//!     pub applied: &'a Value,           // the apply body
//!     pub manager: &'a str,             // ?fieldManager=
//!     pub api_version: &'a str,         // group/version of the URL ("v1", "apps/v1")
//!     pub kind: &'a str,                // Kind served at the URL
//!     pub force: bool,
//!     pub subresource: Option<&'a str>, // Some("status") for PATCH .../status
//!     pub status_subresource: bool,     // kind has a status subresource
//!     pub now: &'a str,                 // RFC3339, e.g. "2026-11-26T06:32:38Z"
//!     pub schema: &'a dyn Schema,
//! }
//! pub struct Conflict { pub manager: String, pub operation: String, pub api_version: String,
//!                       pub subresource: Option<String>, pub path: String /* ".spec.replicas" */ }
//! pub enum ApplyError {
//!     Conflict { conflicts: Vec<Conflict>, status: Value /* 409 Status */ },
//!     Invalid { message: String, status: Value /* 400, 422 or 500 Status */ },
//! }
//! impl ApplyError { pub fn status(&self) -> &Value; pub fn code(&self) -> u16; }
//! pub fn apply(req: ApplyRequest) -> Result<Value, ApplyError>;
//! pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, api_version: &str,
//!                      subresource: Option<&str>, now: &str, schema: &dyn Schema);
//! pub fn fields_v1(set: &Set) -> Value;
//! pub fn parse_fields_v1(v: &Value) -> Set;
//! pub fn display_path(path: &[PathElem]) -> String;
//! pub fn managed_fields_equal_ignoring_time(a: &Value, b: &Value) -> bool;
//! ```
//!
//! `apply` returns the merged object including `metadata.managedFields`; the caller still runs
//! defaulting, validation, the no-op check and storage. `record_update` is called for every
//! non-apply write (POST, PUT, merge/JSON/strategic patch) with the final object in `new`.
//!
//! Error statuses of `apply`:
//! * empty manager: 422 `PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: ...`
//! * body not an object / wrong apiVersion or kind: 400 `invalid object type: apps/v1, Kind=Foo`
//! * `metadata.managedFields` in the body: 400 `metadata.managedFields must be nil`
//! * associative list element without a key field: 500 with empty reason, as the real server
//!   answers `failed to create typed patch object (...)` errors.
//! * field conflicts: 409 exactly as §3.6.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The schema types and built-in merge knowledge live in the shared `objmerge` crate.
pub use objmerge::schema::*;

#[derive(Default)]
struct Trie {
    member: bool,
    children: BTreeMap<PathElem, Trie>,
}

impl Trie {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".to_string(), json!({}));
        }
        for (elem, child) in &self.children {
            let key = match elem {
                PathElem::Field(f) => format!("f:{f}"),
                PathElem::Key(k) => format!("k:{k}"),
                PathElem::Value(v) => format!("v:{v}"),
                PathElem::Index(i) => format!("i:{i}"),
            };
            m.insert(key, child.to_json());
        }
        Value::Object(m)
    }
}

/// Encodes a set of paths as a FieldsV1 trie (`f:`, `k:`, `v:`, `i:`, and `.` for members
/// that also have children).
pub fn fields_v1(set: &Set) -> Value {
    let mut root = Trie::default();
    for path in set {
        let mut node = &mut root;
        for e in path {
            node = node.children.entry(e.clone()).or_default();
        }
        node.member = true;
    }
    root.to_json()
}

fn parse_elem(s: &str) -> Option<PathElem> {
    let (prefix, rest) = s.split_at_checked(2)?;
    match prefix {
        "f:" => Some(PathElem::Field(rest.to_string())),
        "k:" => serde_json::from_str::<Value>(rest)
            .ok()
            .filter(Value::is_object)
            .map(|v| PathElem::Key(canonical(&v))),
        "v:" => serde_json::from_str::<Value>(rest)
            .ok()
            .map(|v| PathElem::Value(canonical(&v))),
        "i:" => rest.parse().ok().map(PathElem::Index),
        _ => None,
    }
}

fn parse_trie(v: &Value, prefix: &mut Path, out: &mut Set) {
    let Some(m) = v.as_object() else { return };
    if m.is_empty() && !prefix.is_empty() {
        out.insert(prefix.clone());
        return;
    }
    for (k, child) in m {
        if k == "." {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
            continue;
        }
        // Unknown element prefixes are skipped rather than failing the whole request.
        if let Some(e) = parse_elem(k) {
            prefix.push(e);
            parse_trie(child, prefix, out);
            prefix.pop();
        }
    }
}

/// Decodes a FieldsV1 trie into a set of paths.
pub fn parse_fields_v1(v: &Value) -> Set {
    let mut out = Set::new();
    parse_trie(v, &mut Vec::new(), &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Walks over values: field sets, merge, compare, removal
// ---------------------------------------------------------------------------------------------

/// Path element of one list item, or an error text in structured-merge-diff's wording.
fn item_elem(
    schema: &dyn Schema,
    list_path: &[PathElem],
    lt: &ListType,
    item: &Value,
    idx: usize,
) -> Result<PathElem, String> {
    match lt {
        ListType::Atomic => Ok(PathElem::Index(idx)),
        ListType::Set => Ok(PathElem::Value(canonical(item))),
        ListType::Map(key_fields) => {
            let Some(obj) = item.as_object() else {
                return Err(format!(
                    "{}: element {idx}: associative list with keys may only contain maps",
                    display_path(list_path)
                ));
            };
            let mut sorted_keys: Vec<&String> = key_fields.iter().collect();
            sorted_keys.sort();
            let mut key = Map::new();
            for k in sorted_keys {
                let v = obj
                    .get(k.as_str())
                    .filter(|v| !v.is_null())
                    .cloned()
                    .or_else(|| schema.key_default(list_path, k));
                match v {
                    Some(v) => {
                        key.insert(k.clone(), v);
                    }
                    None => {
                        return Err(format!(
                            "{}: element {idx}: associative list with keys has an element that omits key field {:?} (and doesn't have default value)",
                            display_path(list_path),
                            k
                        ));
                    }
                }
            }
            Ok(PathElem::Key(canonical(&Value::Object(key))))
        }
    }
}

/// Paths of an applied configuration (structured-merge-diff's ToFieldSet).
fn collect_set(
    v: &Value,
    path: &mut Path,
    schema: &dyn Schema,
    out: &mut Set,
) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            if !path.is_empty() && schema.map_type(path) == MapType::Atomic {
                out.insert(path.clone());
                return Ok(());
            }
            for (k, child) in m {
                path.push(PathElem::Field(k.clone()));
                collect_set(child, path, schema, out)?;
                let empty_map = child.as_object().is_some_and(Map::is_empty);
                if child.is_null() || empty_map || !schema.is_struct_field(path) {
                    out.insert(path.clone());
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let lt = schema.list_type(path);
            if lt == ListType::Atomic {
                out.insert(path.clone());
                return Ok(());
            }
            let mut seen = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                let pe = item_elem(schema, path, &lt, item, i)?;
                if !seen.insert(pe.clone()) {
                    return Err(format!(
                        "{}: duplicate entries for key {}",
                        display_path(path),
                        display_path(std::slice::from_ref(&pe))
                    ));
                }
                path.push(pe);
                if matches!(lt, ListType::Map(_)) {
                    collect_set(item, path, schema, out)?;
                }
                out.insert(path.clone());
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
    Ok(())
}

fn index_items(
    schema: &dyn Schema,
    path: &[PathElem],
    lt: &ListType,
    items: &[Value],
) -> Result<Vec<PathElem>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, it)| item_elem(schema, path, lt, it, i))
        .collect()
}

/// Merges `cfg` into `live` per topology (structured-merge-diff's Merge).
fn merge(live: &Value, cfg: &Value, path: &mut Path, schema: &dyn Schema) -> Result<Value, String> {
    match (live, cfg) {
        (Value::Object(l), Value::Object(c))
            if path.is_empty() || schema.map_type(path) == MapType::Granular =>
        {
            let mut out = l.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.shift_remove(k);
                    continue;
                }
                path.push(PathElem::Field(k.clone()));
                let nv = match l.get(k) {
                    Some(lv) => merge(lv, cv, path, schema)?,
                    None => cv.clone(),
                };
                path.pop();
                out.insert(k.clone(), nv);
            }
            Ok(Value::Object(out))
        }
        (Value::Array(l), Value::Array(c)) => {
            let lt = schema.list_type(path);
            if lt == ListType::Atomic {
                return Ok(cfg.clone());
            }
            merge_list(l, c, &lt, path, schema).map(Value::Array)
        }
        _ => Ok(cfg.clone()),
    }
}

/// Keyed list merge. Shared elements follow the applied order; live-only elements keep their
/// place relative to them; applied-only elements are inserted where they appear.
fn merge_list(
    l: &[Value],
    c: &[Value],
    lt: &ListType,
    path: &mut Path,
    schema: &dyn Schema,
) -> Result<Vec<Value>, String> {
    let lpe = index_items(schema, path, lt, l)?;
    let rpe = index_items(schema, path, lt, c)?;
    let mut lidx: HashMap<&PathElem, usize> = HashMap::new();
    for (i, pe) in lpe.iter().enumerate() {
        lidx.entry(pe).or_insert(i);
    }
    let rset: HashSet<&PathElem> = rpe.iter().collect();
    let shared: Vec<&PathElem> = rpe.iter().filter(|pe| lidx.contains_key(pe)).collect();
    let mut next_shared = 0usize;
    let mut merged_r: HashSet<&PathElem> = HashSet::new();
    let mut out = Vec::with_capacity(l.len().max(c.len()));

    let merge_item = |li: Option<usize>, ri: usize, path: &mut Path| -> Result<Value, String> {
        match (li, lt) {
            (Some(li), ListType::Map(_)) => {
                path.push(rpe[ri].clone());
                let v = merge(&l[li], &c[ri], path, schema);
                path.pop();
                v
            }
            _ => Ok(c[ri].clone()),
        }
    };

    let (mut li, mut ri) = (0usize, 0usize);
    while li < l.len() || ri < c.len() {
        let before = (li, ri);
        if li < l.len() && ri < c.len() {
            if lpe[li] == rpe[ri] {
                merged_r.insert(&rpe[ri]);
                out.push(merge_item(Some(li), ri, path)?);
                li += 1;
                ri += 1;
                next_shared += 1;
                continue;
            }
            let wanted = shared.get(next_shared);
            if rset.contains(&lpe[li]) && wanted.is_some_and(|w| **w != lpe[li]) {
                li += 1;
                continue;
            }
        }
        if li < l.len() {
            if !rset.contains(&lpe[li]) {
                out.push(l[li].clone());
                li += 1;
                continue;
            } else if merged_r.contains(&lpe[li]) {
                li += 1;
                continue;
            }
        }
        if ri < c.len() {
            let pe = &rpe[ri];
            merged_r.insert(pe);
            out.push(merge_item(lidx.get(pe).copied(), ri, path)?);
            if shared.get(next_shared).is_some_and(|w| *w == pe) {
                next_shared += 1;
            }
            ri += 1;
        }
        if before == (li, ri) {
            // Only reachable with duplicate keys in the live list; keep what is left.
            out.extend(l[li..].iter().cloned());
            break;
        }
    }
    Ok(out)
}

#[derive(Default, Debug)]
struct Comparison {
    added: Set,
    modified: Set,
    removed: Set,
}

/// Every node of a subtree that appeared or disappeared.
fn subtree(v: &Value, path: &mut Path, schema: &dyn Schema, out: &mut Set) {
    match v {
        Value::Object(m) => {
            if !path.is_empty() && schema.map_type(path) == MapType::Atomic {
                out.insert(path.clone());
                return;
            }
            if !path.is_empty() && (m.is_empty() || !schema.always_present(path)) {
                out.insert(path.clone());
            }
            for (k, child) in m {
                path.push(PathElem::Field(k.clone()));
                subtree(child, path, schema, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            let lt = schema.list_type(path);
            if lt == ListType::Atomic || !schema.always_present(path) {
                out.insert(path.clone());
            }
            if lt == ListType::Atomic {
                return;
            }
            for (i, item) in items.iter().enumerate() {
                let Ok(pe) = item_elem(schema, path, &lt, item, i) else {
                    continue;
                };
                path.push(pe);
                out.insert(path.clone());
                if matches!(lt, ListType::Map(_)) {
                    subtree(item, path, schema, out);
                }
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

fn compare(
    o: Option<&Value>,
    n: Option<&Value>,
    path: &mut Path,
    schema: &dyn Schema,
    cmp: &mut Comparison,
) {
    match (o, n) {
        (None, None) => {}
        (None, Some(nv)) => subtree(nv, path, schema, &mut cmp.added),
        (Some(ov), None) => subtree(ov, path, schema, &mut cmp.removed),
        (Some(ov), Some(nv)) => match (ov, nv) {
            (Value::Object(a), Value::Object(b))
                if path.is_empty() || schema.map_type(path) == MapType::Granular =>
            {
                for (k, av) in a {
                    path.push(PathElem::Field(k.clone()));
                    compare(Some(av), b.get(k), path, schema, cmp);
                    path.pop();
                }
                for (k, bv) in b {
                    if !a.contains_key(k) {
                        path.push(PathElem::Field(k.clone()));
                        compare(None, Some(bv), path, schema, cmp);
                        path.pop();
                    }
                }
            }
            (Value::Array(a), Value::Array(b)) if schema.list_type(path) != ListType::Atomic => {
                let lt = schema.list_type(path);
                let (Ok(ape), Ok(bpe)) = (
                    index_items(schema, path, &lt, a),
                    index_items(schema, path, &lt, b),
                ) else {
                    if ov != nv {
                        cmp.modified.insert(path.clone());
                    }
                    return;
                };
                let bmap: HashMap<&PathElem, &Value> = bpe.iter().zip(b).collect();
                let amap: HashMap<&PathElem, &Value> = ape.iter().zip(a).collect();
                for (pe, av) in ape.iter().zip(a) {
                    path.push(pe.clone());
                    compare_item(Some(av), bmap.get(pe).copied(), path, &lt, schema, cmp);
                    path.pop();
                }
                for (pe, bv) in bpe.iter().zip(b) {
                    if !amap.contains_key(pe) {
                        path.push(pe.clone());
                        compare_item(None, Some(bv), path, &lt, schema, cmp);
                        path.pop();
                    }
                }
            }
            _ => {
                if ov != nv {
                    cmp.modified.insert(path.clone());
                }
            }
        },
    }
}

fn compare_item(
    o: Option<&Value>,
    n: Option<&Value>,
    path: &mut Path,
    lt: &ListType,
    schema: &dyn Schema,
    cmp: &mut Comparison,
) {
    match (o, n, lt) {
        (Some(_), Some(_), ListType::Set) => {}
        (Some(_), None, ListType::Set) => {
            cmp.removed.insert(path.clone());
        }
        (None, Some(_), ListType::Set) => {
            cmp.added.insert(path.clone());
        }
        (Some(ov), Some(nv), _) => compare(Some(ov), Some(nv), path, schema, cmp),
        (Some(ov), None, _) => {
            cmp.removed.insert(path.clone());
            subtree(ov, path, schema, &mut cmp.removed);
        }
        (None, Some(nv), _) => {
            cmp.added.insert(path.clone());
            subtree(nv, path, schema, &mut cmp.added);
        }
        (None, None, _) => {}
    }
}

/// Removes (or resets to its default) the value at `path`. Returns whether anything changed.
fn remove_at(node: &mut Value, full: &[PathElem], depth: usize, schema: &dyn Schema) -> bool {
    let Some(elem) = full.get(depth) else {
        return false;
    };
    let last = depth + 1 == full.len();
    let child: &mut Value = match elem {
        PathElem::Field(name) => {
            let Some(m) = node.as_object_mut() else {
                return false;
            };
            if last {
                return match schema.default_for(full) {
                    Some(d) => {
                        let differs = m.get(name) != Some(&d);
                        m.insert(name.clone(), d);
                        differs
                    }
                    None => m.shift_remove(name).is_some(),
                };
            }
            let Some(child) = m.get_mut(name) else {
                return false;
            };
            let changed = remove_at(child, full, depth + 1, schema);
            if changed && schema.omit_empty() && emptied_collection(child, full, depth + 1, schema)
            {
                m.shift_remove(name);
            }
            return changed;
        }
        PathElem::Key(_) | PathElem::Value(_) => {
            let list_path = &full[..depth];
            let lt = schema.list_type(list_path);
            let Some(items) = node.as_array_mut() else {
                return false;
            };
            let pos = items.iter().enumerate().position(|(i, it)| {
                item_elem(schema, list_path, &lt, it, i).is_ok_and(|pe| &pe == elem)
            });
            let Some(pos) = pos else { return false };
            if last {
                items.remove(pos);
                return true;
            }
            &mut items[pos]
        }
        PathElem::Index(i) => {
            let Some(items) = node.as_array_mut() else {
                return false;
            };
            let Some(it) = items.get_mut(*i) else {
                return false;
            };
            if last {
                return false;
            }
            it
        }
    };
    remove_at(child, full, depth + 1, schema)
}

/// Whether a strict prefix of `full` is an atomic map or list in `root`, so that `full`
/// names a part of one value rather than a field.
fn inside_atomic(root: &Value, full: &[PathElem], schema: &dyn Schema) -> bool {
    let mut node = root;
    for depth in 0..full.len().saturating_sub(1) {
        let child = match &full[depth] {
            PathElem::Field(name) => node.get(name.as_str()),
            PathElem::Key(_) | PathElem::Value(_) => {
                let list_path = &full[..depth];
                let lt = schema.list_type(list_path);
                node.as_array().and_then(|items| {
                    items.iter().enumerate().find_map(|(i, it)| {
                        item_elem(schema, list_path, &lt, it, i)
                            .is_ok_and(|pe| pe == full[depth])
                            .then_some(it)
                    })
                })
            }
            PathElem::Index(i) => node.as_array().and_then(|items| items.get(*i)),
        };
        let Some(child) = child else { return false };
        let prefix = &full[..=depth];
        let atomic = match child {
            Value::Object(_) => schema.map_type(prefix) == MapType::Atomic,
            Value::Array(_) => schema.list_type(prefix) == ListType::Atomic,
            _ => false,
        };
        if atomic {
            return true;
        }
        node = child;
    }
    false
}

/// After a removal below `child`: did it leave an empty list, or an empty free-form map?
fn emptied_collection(child: &Value, full: &[PathElem], depth: usize, schema: &dyn Schema) -> bool {
    match child {
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty() && !schema.is_struct_field(&full[..=depth]),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// managedFields entries
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    set: Set,
}

impl Entry {
    /// Manager identity as kube-apiserver builds it: apiVersion only counts for Update.
    fn identifier(&self) -> String {
        identifier(
            &self.manager,
            &self.operation,
            &self.api_version,
            self.subresource.as_deref(),
        )
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), fields_v1(&self.set));
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m)
    }
}

fn identifier(manager: &str, operation: &str, api_version: &str, sub: Option<&str>) -> String {
    let mut m = Map::new();
    m.insert("manager".into(), json!(manager));
    m.insert("operation".into(), json!(operation));
    if operation != "Apply" {
        m.insert("apiVersion".into(), json!(api_version));
    }
    if let Some(s) = sub {
        m.insert("subresource".into(), json!(s));
    }
    Value::Object(m).to_string()
}

fn decode_entries(list: Option<&Value>) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let Some(items) = list.and_then(Value::as_array) else {
        return out;
    };
    for it in items {
        let s = |k: &str| it.get(k).and_then(Value::as_str).map(str::to_string);
        let Some(manager) = s("manager") else {
            continue;
        };
        let e = Entry {
            manager,
            operation: s("operation").unwrap_or_else(|| "Update".into()),
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").filter(|x| !x.is_empty()),
            set: it.get("fieldsV1").map(parse_fields_v1).unwrap_or_default(),
        };
        let id = e.identifier();
        if let Some(prev) = out.iter_mut().find(|p| p.identifier() == id) {
            prev.set.extend(e.set);
        } else {
            out.push(e);
        }
    }
    out
}

/// Seconds since the epoch of an RFC3339 timestamp (0 if unparsable), for entry ordering.
fn rfc3339_seconds(t: &str) -> i64 {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { t.get(r)?.parse().ok() };
    let parsed = (|| {
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        let offset = match b.get(i) {
            Some(b'+') | Some(b'-') => {
                let sign = if b[i] == b'-' { -1 } else { 1 };
                sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
            }
            _ => 0,
        };
        // Days from civil date (proleptic Gregorian).
        let yy = if mo <= 2 { y - 1 } else { y };
        let era = yy.div_euclid(400);
        let yoe = yy - era * 400;
        let mp = (mo + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146097 + doe - 719468;
        Some(days * 86400 + h * 3600 + mi * 60 + s - offset)
    })();
    parsed.unwrap_or(0)
}

/// Orders entries as kube-apiserver stores them: operation, time, manager, apiVersion,
/// subresource.
fn encode_entries(mut entries: Vec<Entry>) -> Vec<Value> {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|p, q| {
        p.operation
            .cmp(&q.operation)
            .then_with(|| {
                let ps = p.time.as_deref().map(rfc3339_seconds).unwrap_or(0);
                let qs = q.time.as_deref().map(rfc3339_seconds).unwrap_or(0);
                ps.cmp(&qs)
            })
            .then_with(|| p.manager.cmp(&q.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.subresource.cmp(&q.subresource))
    });
    entries.iter().map(Entry::to_json).collect()
}

/// Paths never tracked (kube-apiserver's strip-meta set).
fn is_stripped(path: &[PathElem]) -> bool {
    let names: Vec<&str> = path
        .iter()
        .map(|e| match e {
            PathElem::Field(f) => f.as_str(),
            _ => "",
        })
        .collect();
    match names.as_slice() {
        ["apiVersion"] | ["kind"] | ["metadata"] => true,
        ["metadata", f] => matches!(
            *f,
            "name"
                | "namespace"
                | "creationTimestamp"
                | "selfLink"
                | "uid"
                | "clusterName"
                | "generation"
                | "managedFields"
                | "resourceVersion"
        ),
        ["metadata", "managedFields", ..] => true,
        _ => false,
    }
}

fn strip(set: Set) -> Set {
    set.into_iter().filter(|p| !is_stripped(p)).collect()
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.shift_remove("managedFields");
    }
    v
}

/// kube-apiserver keeps at most this many Update entries per object.
const MAX_UPDATE_MANAGERS: usize = 10;
/// The manager that absorbs the oldest Update entries beyond the cap.
const ANCIENT_CHANGES: &str = "ancient-changes";

/// Merge the oldest Update entries, per API version, into an `ancient-changes` entry until at
/// most `MAX_UPDATE_MANAGERS` remain, as kube-apiserver's field manager does: the first
/// (oldest) entry of a version stays unless a second one of that version must go, which turns
/// it into the bucket; the bucket takes the time of the newest entry merged into it.
fn cap_update_entries(entries: &mut Vec<Entry>) {
    let mut updaters: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation == "Update")
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    // Oldest first; an entry without a time counts as the epoch. RFC 3339 UTC sorts as text.
    updaters.sort_by(|&a, &b| {
        let key = |i: usize| {
            (
                entries[i].time.clone().unwrap_or_default(),
                entries[i].identifier(),
            )
        };
        key(a).cmp(&key(b))
    });
    let is_bucket = |e: &Entry, version: &str| {
        e.manager == ANCIENT_CHANGES
            && e.operation == "Update"
            && e.subresource.is_none()
            && e.api_version == version
    };
    let mut remaining = updaters.len();
    let mut first_of_version: Vec<(String, usize)> = Vec::new();
    let mut dropped = std::collections::BTreeSet::new();
    for &i in &updaters {
        if remaining <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        let Some(&(_, first)) = first_of_version.iter().find(|(v, _)| *v == version) else {
            first_of_version.push((version, i));
            continue;
        };
        let bucket = match (0..entries.len())
            .find(|&b| !dropped.contains(&b) && is_bucket(&entries[b], &version))
        {
            Some(b) => b,
            None => {
                let e = &mut entries[first];
                e.manager = ANCIENT_CHANGES.to_string();
                e.subresource = None;
                first
            }
        };
        if bucket == i {
            continue;
        }
        let merged: Set = entries[i].set.clone();
        let time = entries[i].time.clone();
        entries[bucket].set.extend(merged);
        entries[bucket].time = time;
        dropped.insert(i);
        remaining -= 1;
    }
    let mut idx = 0;
    entries.retain(|_| {
        let keep = !dropped.contains(&idx);
        idx += 1;
        keep
    });
}

fn write_managed_fields(obj: &mut Value, mut entries: Vec<Entry>) {
    cap_update_entries(&mut entries);
    let encoded = encode_entries(entries);
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    if encoded.is_empty() {
        if let Some(m) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            m.shift_remove("managedFields");
        }
        return;
    }
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(m) = meta.as_object_mut() {
        m.insert("managedFields".into(), Value::Array(encoded));
    }
}

// ---------------------------------------------------------------------------------------------
// Apply
// ---------------------------------------------------------------------------------------------

pub struct ApplyRequest<'a> {
    pub live: Option<&'a Value>,
    pub applied: &'a Value,
    pub manager: &'a str,
    pub api_version: &'a str,
    pub kind: &'a str,
    pub force: bool,
    pub subresource: Option<&'a str>,
    pub status_subresource: bool,
    pub now: &'a str,
    pub schema: &'a dyn Schema,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: Option<String>,
    /// Display form, e.g. `.spec.template.spec.containers[name="nginx"].image`.
    pub path: String,
}

impl Conflict {
    /// `"m"`, `"m" using v1`, or `"m" with subresource "status" using v1`.
    fn manager_display(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

fn status_message(status: &Value) -> &str {
    status
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("apply failed")
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{}", status_message(.status))]
    Conflict {
        conflicts: Vec<Conflict>,
        status: Value,
    },
    #[error("{message}")]
    Invalid { message: String, status: Value },
}

impl ApplyError {
    /// The `Status` body to return.
    pub fn status(&self) -> &Value {
        match self {
            ApplyError::Conflict { status, .. } | ApplyError::Invalid { status, .. } => status,
        }
    }

    /// HTTP status code of [`ApplyError::status`].
    pub fn code(&self) -> u16 {
        self.status()
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(500)
    }
}

fn failure(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), json!("Status"));
    m.insert("apiVersion".into(), json!("v1"));
    m.insert("metadata".into(), json!({}));
    m.insert("status".into(), json!("Failure"));
    m.insert("message".into(), json!(message));
    if !reason.is_empty() {
        m.insert("reason".into(), json!(reason));
    }
    if let Some(d) = details {
        m.insert("details".into(), d);
    }
    m.insert("code".into(), json!(code));
    Value::Object(m)
}

fn bad_request(message: String) -> ApplyError {
    let status = failure(400, "BadRequest", &message, None);
    ApplyError::Invalid { message, status }
}

fn conflict_error(mut conflicts: Vec<Conflict>) -> ApplyError {
    let id_of = |c: &Conflict| {
        identifier(
            &c.manager,
            &c.operation,
            &c.api_version,
            c.subresource.as_deref(),
        )
    };
    // Grouped by manager identifier like the real message; paths in set order per manager.
    conflicts.sort_by_key(id_of);
    let message = if conflicts.len() == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].manager_display(),
            conflicts[0].path
        )
    } else {
        let mut lines: Vec<String> = Vec::new();
        let mut current: Option<String> = None;
        for c in &conflicts {
            let id = id_of(c);
            if current.as_ref() != Some(&id) {
                lines.push(format!("conflicts with {}:", c.manager_display()));
                current = Some(id);
            }
            lines.push(format!("- {}", c.path));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", c.manager_display()),
                "field": c.path,
            })
        })
        .collect();
    let status = failure(409, "Conflict", &message, Some(json!({ "causes": causes })));
    ApplyError::Conflict { conflicts, status }
}

fn split_api_version(av: &str) -> (&str, &str) {
    match av.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", av),
    }
}

/// Metadata fields the server owns; an applied value never overwrites them.
const SYSTEM_META: [&str; 8] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
];

/// Runs server-side apply. See the module docs for the error statuses.
pub fn apply(req: ApplyRequest) -> Result<Value, ApplyError> {
    if req.manager.is_empty() {
        let message = "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".to_string();
        let status = failure(
            422,
            "Invalid",
            &message,
            Some(json!({
                "group": "meta.k8s.io",
                "kind": "PatchOptions",
                "causes": [{
                    "reason": "FieldValueRequired",
                    "message": "Required value: is required for apply patch",
                    "field": "fieldManager",
                }],
            })),
        );
        return Err(ApplyError::Invalid { message, status });
    }
    let Some(applied_obj) = req.applied.as_object() else {
        return Err(bad_request(
            "error decoding YAML: the apply body must be an object".into(),
        ));
    };
    let body_av = applied_obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let body_kind = applied_obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body_av != req.api_version || body_kind != req.kind {
        let (g, v) = split_api_version(body_av);
        return Err(bad_request(format!(
            "invalid object type: {g}/{v}, Kind={body_kind}"
        )));
    }
    let meta = applied_obj.get("metadata");
    if meta
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|mf| !mf.is_null())
    {
        return Err(bad_request("metadata.managedFields must be nil".into()));
    }

    // The configuration this manager asserts, after dropping what the endpoint ignores.
    let mut config = req.applied.clone();
    if let Some(root) = config.as_object_mut() {
        if let Some(m) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in SYSTEM_META {
                m.shift_remove(f);
            }
        }
        if req.subresource == Some("status") {
            root.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
            if let Some(m) = root.get_mut("metadata").and_then(Value::as_object_mut) {
                m.retain(|k, _| k == "name" || k == "namespace");
            }
        } else if req.status_subresource {
            root.shift_remove("status");
        }
    }

    let typed_err = |e: String| {
        let ns = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let (g, v) = split_api_version(req.api_version);
        let message = format!(
            "failed to create typed patch object ({ns}/{name}; {g}/{v}, Kind={}): {e}",
            req.kind
        );
        let status = failure(500, "", &message, None);
        ApplyError::Invalid { message, status }
    };

    let mut config_set = Set::new();
    collect_set(&config, &mut Vec::new(), req.schema, &mut config_set).map_err(typed_err)?;
    let config_set = strip(config_set);

    let live_clean = req
        .live
        .map(without_managed_fields)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut entries = decode_entries(
        req.live
            .and_then(|l| l.get("metadata"))
            .and_then(|m| m.get("managedFields")),
    );
    let my_id = identifier(req.manager, "Apply", req.api_version, req.subresource);

    let mut merged = merge(&live_clean, &config, &mut Vec::new(), req.schema).map_err(typed_err)?;

    // Prune what this manager applied last time, no longer applies, and nobody else owns.
    let previous = entries.iter().position(|e| e.identifier() == my_id);
    let last_set = previous.map(|i| entries[i].set.clone()).unwrap_or_default();
    let mut owned: HashSet<&Path> = config_set.iter().collect();
    for e in &entries {
        if e.identifier() != my_id {
            owned.extend(e.set.iter());
        }
    }
    // Parents before children: removing an element takes its key fields with it, so it has
    // to go first while it can still be found by key. A path that is itself unowned but has
    // owned descendants stays as their container, as structured-merge-diff adds owned items
    // back after pruning: a client-side apply records "." for every map it set, and once
    // kubectl migrates that entry to Apply, the next apply of the same manifest (which
    // records no "." for maps with fields) must not drop those maps.
    // Likewise a path inside an atomic value (a migrated entry can name one) is no field of
    // its own: it goes only with that value.
    let has_owned_descendant =
        |p: &Path| owned.iter().any(|o| o.len() > p.len() && o.starts_with(p));
    let to_remove: Vec<&Path> = last_set
        .iter()
        .filter(|p| {
            !owned.contains(p) && !has_owned_descendant(p) && !inside_atomic(&merged, p, req.schema)
        })
        .collect();
    for p in to_remove {
        remove_at(&mut merged, p, 0, req.schema);
    }

    let mut cmp = Comparison::default();
    compare(
        Some(&live_clean),
        Some(&merged),
        &mut Vec::new(),
        req.schema,
        &mut cmp,
    );
    let changed: Set = strip(cmp.added.union(&cmp.modified).cloned().collect());
    let removed = strip(std::mem::take(&mut cmp.removed));

    let mut conflicts = Vec::new();
    for e in &entries {
        if e.identifier() == my_id {
            continue;
        }
        for p in e.set.intersection(&changed) {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                operation: e.operation.clone(),
                api_version: e.api_version.clone(),
                subresource: e.subresource.clone(),
                path: display_path(p),
            });
        }
    }
    if !conflicts.is_empty() && !req.force {
        return Err(conflict_error(conflicts));
    }
    for e in entries.iter_mut() {
        if e.identifier() == my_id {
            continue;
        }
        e.set = e
            .set
            .iter()
            .filter(|p| !changed.contains(*p) && !removed.contains(*p))
            .cloned()
            .collect();
    }

    let object_changed = merged != live_clean;
    match previous {
        Some(i) => {
            let e = &mut entries[i];
            if object_changed || e.set != config_set || e.api_version != req.api_version {
                e.time = Some(req.now.to_string());
            }
            e.set = config_set;
            e.api_version = req.api_version.to_string();
        }
        None => entries.push(Entry {
            manager: req.manager.to_string(),
            operation: "Apply".into(),
            api_version: req.api_version.to_string(),
            time: Some(req.now.to_string()),
            subresource: req.subresource.map(str::to_string),
            set: config_set,
        }),
    }
    write_managed_fields(&mut merged, entries);
    Ok(merged)
}

// ---------------------------------------------------------------------------------------------
// Update bookkeeping
// ---------------------------------------------------------------------------------------------

/// kube-apiserver resets managedFields when a write sends `[]` or `[{}]`.
fn is_reset(mf: &Value) -> bool {
    match mf.as_array() {
        Some(a) if a.is_empty() => true,
        Some(a) if a.len() == 1 => a[0].as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

/// Records a non-apply write by `manager` (operation Update): fields that changed or appeared
/// move to this manager, fields that disappeared leave every manager. Writes the resulting
/// `metadata.managedFields` into `new`.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: &str,
    schema: &dyn Schema,
) {
    let live_mf = old
        .and_then(|o| o.get("metadata"))
        .and_then(|m| m.get("managedFields"));
    let new_mf = new
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .cloned();
    // A client may rewrite managedFields through the main resource, never via a subresource.
    let mut entries = if subresource.is_some() {
        decode_entries(live_mf)
    } else {
        match &new_mf {
            Some(mf) if is_reset(mf) => Vec::new(),
            Some(mf) => {
                let decoded = decode_entries(Some(mf));
                if decoded.is_empty() {
                    decode_entries(live_mf)
                } else {
                    decoded
                }
            }
            None => decode_entries(live_mf),
        }
    };
    let old_clean = old
        .map(without_managed_fields)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let new_clean = without_managed_fields(new);
    let mut cmp = Comparison::default();
    compare(
        Some(&old_clean),
        Some(&new_clean),
        &mut Vec::new(),
        schema,
        &mut cmp,
    );
    let changed: Set = strip(cmp.added.union(&cmp.modified).cloned().collect());
    let removed = strip(cmp.removed);

    for e in entries.iter_mut() {
        e.set = e
            .set
            .iter()
            .filter(|p| !changed.contains(*p) && !removed.contains(*p))
            .cloned()
            .collect();
    }
    let my_id = identifier(manager, "Update", api_version, subresource);
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.identifier() == my_id) {
            Some(e) => {
                e.set.extend(changed);
                e.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: Some(now.to_string()),
                subresource: subresource.map(str::to_string),
                set: changed,
            }),
        }
    }
    *new = new_clean;
    write_managed_fields(new, entries);
}

fn strip_times(v: &Value) -> Value {
    let mut v = v.clone();
    let entries = match &mut v {
        Value::Array(a) => Some(a),
        Value::Object(_) => v
            .get_mut("metadata")
            .and_then(|m| m.get_mut("managedFields"))
            .and_then(Value::as_array_mut),
        _ => None,
    };
    if let Some(entries) = entries {
        for e in entries.iter_mut() {
            if let Some(m) = e.as_object_mut() {
                m.shift_remove("time");
            }
        }
    }
    v
}

/// Equality ignoring `time` of managedFields entries. `a` and `b` are either two
/// `managedFields` arrays or two whole objects (compared entirely, minus those times); the
/// latter is the no-op check of §2.8.
pub fn managed_fields_equal_ignoring_time(a: &Value, b: &Value) -> bool {
    strip_times(a) == strip_times(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_entries_are_capped_into_ancient_changes() {
        let mut obj =
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{}});
        let schema = builtin_schema("", "ConfigMap");
        for i in 0..12 {
            let old = obj.clone();
            obj["data"][format!("k{i:02}")] = json!("v");
            let now = format!("2026-11-26T06:{i:02}:00Z");
            record_update(
                Some(&old),
                &mut obj,
                &format!("m{i:02}"),
                "v1",
                None,
                &now,
                schema.as_ref(),
            );
        }
        let mf = obj["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(mf.len(), MAX_UPDATE_MANAGERS);
        let names: Vec<&str> = mf.iter().filter_map(|e| e["manager"].as_str()).collect();
        assert!(names.contains(&ANCIENT_CHANGES), "{names:?}");
        for gone in ["m00", "m01", "m02"] {
            assert!(!names.contains(&gone), "{names:?}");
        }
        let bucket = mf
            .iter()
            .find(|e| e["manager"] == ANCIENT_CHANGES)
            .cloned()
            .unwrap_or_default();
        // The three oldest managers' fields, with the newest merged one's time.
        let owned: Vec<String> = bucket["fieldsV1"]["f:data"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(owned, vec!["f:k00", "f:k01", "f:k02"]);
        assert_eq!(bucket["time"], "2026-11-26T06:02:00Z");
        // Another write keeps the cap, merging into the existing bucket.
        let old = obj.clone();
        obj["data"]["k12"] = json!("v");
        record_update(
            Some(&old),
            &mut obj,
            "m12",
            "v1",
            None,
            "2026-11-26T06:12:00Z",
            schema.as_ref(),
        );
        let mf = obj["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(mf.len(), MAX_UPDATE_MANAGERS);
        assert_eq!(
            mf.iter()
                .filter(|e| e["manager"] == ANCIENT_CHANGES)
                .count(),
            1
        );
    }

    const T0: &str = "2026-11-26T06:32:38Z";
    const T1: &str = "2026-11-26T06:40:00Z";
    const T2: &str = "2026-11-26T07:00:00Z";

    fn deploy() -> Box<dyn Schema> {
        builtin_schema("apps", "Deployment")
    }

    fn run(
        live: Option<&Value>,
        applied: &Value,
        manager: &str,
        force: bool,
        now: &str,
        schema: &dyn Schema,
    ) -> Result<Value, ApplyError> {
        let api_version = applied["apiVersion"].as_str().unwrap_or("");
        let kind = applied["kind"].as_str().unwrap_or("");
        apply(ApplyRequest {
            live,
            applied,
            manager,
            api_version,
            kind,
            force,
            subresource: None,
            status_subresource: false,
            now,
            schema,
        })
    }

    fn entry<'v>(obj: &'v Value, manager: &str, op: &str) -> Option<&'v Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager && e["operation"] == op)
    }

    fn fields(obj: &Value, manager: &str, op: &str) -> Value {
        entry(obj, manager, op)
            .map(|e| e["fieldsV1"].clone())
            .unwrap_or(Value::Null)
    }

    fn manifest_a() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "team-a", "labels": {"app": "web", "tier": "fe"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "nginx", "image": "nginx:1.25", "env": [{"name": "A", "value": "1"}]},
                        {"name": "sidecar", "image": "busybox"}
                    ]}
                }
            }
        })
    }

    fn created_a() -> Value {
        run(None, &manifest_a(), "gitops", false, T0, deploy().as_ref()).unwrap()
    }

    fn conflict_status(err: ApplyError) -> (Vec<Conflict>, Value) {
        match err {
            ApplyError::Conflict { conflicts, status } => (conflicts, status),
            other => panic!("expected conflict, got {other:?}"),
        }
    }

    /// `kubectl scale`-like Update by `hpa`.
    fn scaled(live: &Value, replicas: i64) -> Value {
        let mut new = live.clone();
        new["spec"]["replicas"] = json!(replicas);
        record_update(
            Some(live),
            &mut new,
            "hpa",
            "apps/v1",
            None,
            T1,
            deploy().as_ref(),
        );
        new
    }

    #[test]
    fn example_a_first_apply_managed_fields() {
        let obj = created_a();
        let mf = obj["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 1);
        assert_eq!(
            mf[0],
            json!({
                "manager": "gitops", "operation": "Apply", "apiVersion": "apps/v1", "time": T0,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": {"f:app": {}}},
                            "f:spec": {"f:containers": {
                                "k:{\"name\":\"nginx\"}": {".": {}, "f:name": {}, "f:image": {},
                                    "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}}},
                                "k:{\"name\":\"sidecar\"}": {".": {}, "f:name": {}, "f:image": {}}
                            }}
                        }
                    }
                }
            })
        );
        assert_eq!(obj["spec"]["replicas"], 2);
        assert_eq!(obj["metadata"]["name"], "web");
    }

    #[test]
    fn fields_v1_keys_are_emitted_sorted_with_dot_first() {
        let obj = created_a();
        let text = serde_json::to_string(&fields(&obj, "gitops", "Apply")).unwrap();
        assert!(text.starts_with(
            r#"{"f:metadata":{"f:labels":{"f:app":{},"f:tier":{}}},"f:spec":{"f:replicas":{},"f:selector":{}"#
        ));
        assert!(text.contains(r#"{".":{},"f:env":"#));
    }

    #[test]
    fn example_b_update_moves_ownership() {
        let obj = scaled(&created_a(), 5);
        assert_eq!(obj["spec"]["replicas"], 5);
        assert_eq!(
            fields(&obj, "hpa", "Update"),
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert!(
            fields(&obj, "gitops", "Apply")["f:spec"]
                .get("f:replicas")
                .is_none()
        );
        let hpa = entry(&obj, "hpa", "Update").unwrap();
        assert_eq!(hpa["time"], T1);
        assert_eq!(hpa["apiVersion"], "apps/v1");
        // Apply entries sort before Update entries.
        assert_eq!(obj["metadata"]["managedFields"][0]["manager"], "gitops");
    }

    #[test]
    fn example_c_conflict_exact_status() {
        let live = scaled(&created_a(), 5);
        let err = run(
            Some(&live),
            &manifest_a(),
            "gitops",
            false,
            T2,
            deploy().as_ref(),
        )
        .unwrap_err();
        assert_eq!(err.code(), 409);
        let (conflicts, status) = conflict_status(err);
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].manager, "hpa");
        assert_eq!(conflicts[0].path, ".spec.replicas");
        assert_eq!(
            status,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Apply failed with 1 conflict: conflict with \"hpa\" using apps/v1: .spec.replicas",
                "reason": "Conflict",
                "details": {"causes": [{"reason": "FieldManagerConflict",
                    "message": "conflict with \"hpa\" using apps/v1", "field": ".spec.replicas"}]},
                "code": 409})
        );
    }

    #[test]
    fn example_c_force_steals_ownership() {
        let live = scaled(&created_a(), 5);
        let obj = run(
            Some(&live),
            &manifest_a(),
            "gitops",
            true,
            T2,
            deploy().as_ref(),
        )
        .unwrap();
        assert_eq!(obj["spec"]["replicas"], 2);
        // hpa owned nothing else, so its entry disappears.
        assert!(entry(&obj, "hpa", "Update").is_none());
        assert!(
            fields(&obj, "gitops", "Apply")["f:spec"]
                .get("f:replicas")
                .is_some()
        );
        assert_eq!(entry(&obj, "gitops", "Apply").unwrap()["time"], T2);
    }

    #[test]
    fn example_c_equal_value_is_shared_ownership() {
        let live = scaled(&created_a(), 5);
        let mut m = manifest_a();
        m["spec"]["replicas"] = json!(5);
        let obj = run(Some(&live), &m, "gitops", false, T2, deploy().as_ref()).unwrap();
        assert_eq!(obj["spec"]["replicas"], 5);
        assert_eq!(
            fields(&obj, "hpa", "Update"),
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert!(
            fields(&obj, "gitops", "Apply")["f:spec"]
                .get("f:replicas")
                .is_some()
        );
        // gitops' set changed (it owns replicas again), so its time moves.
        assert_eq!(entry(&obj, "gitops", "Apply").unwrap()["time"], T2);
    }

    #[test]
    fn example_d_removal_of_dropped_fields() {
        let live = created_a();
        let mut m = manifest_a();
        m["metadata"]["labels"] = json!({"app": "web"});
        m["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .pop();
        let obj = run(Some(&live), &m, "gitops", false, T1, deploy().as_ref()).unwrap();
        assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
        let containers = obj["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "nginx");
        let f = fields(&obj, "gitops", "Apply");
        assert!(f["f:metadata"]["f:labels"].get("f:tier").is_none());
    }

    #[test]
    fn reapply_after_client_side_apply_migration_keeps_maps_recorded_with_dot() {
        // kubectl apply --server-side over a client-side apply rewrites the
        // kubectl-client-side-apply Update entry as the Apply entry of its manager; that
        // set holds "." for each map it created. Re-applying the same manifest then
        // records no "." for those maps: the maps and their fields must stay.
        let mut live = created_a();
        let entries = live["metadata"]["managedFields"].as_array_mut().unwrap();
        entries[0]["fieldsV1"] = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:tier": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {".": {}, "f:matchLabels": {".": {}, "f:app": {}}},
                "f:template": {
                    ".": {},
                    "f:metadata": {".": {}, "f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {".": {}, "f:containers": {
                        "k:{\"name\":\"nginx\"}": {".": {}, "f:name": {}, "f:image": {},
                            "f:env": {".": {}, "k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}}},
                        "k:{\"name\":\"sidecar\"}": {".": {}, "f:name": {}, "f:image": {}}
                    }}
                }
            }
        });
        let obj = run(
            Some(&live),
            &manifest_a(),
            "gitops",
            false,
            T1,
            deploy().as_ref(),
        )
        .unwrap();
        assert_eq!(
            without_managed_fields(&obj),
            without_managed_fields(&live),
            "the same manifest re-applied must change nothing"
        );
        // The new set is the manifest's, without the migrated "." entries.
        assert!(
            fields(&obj, "gitops", "Apply")["f:spec"]["f:template"]
                .get(".")
                .is_none()
        );

        // A map recorded with "." whose fields are all dropped from the manifest still goes.
        let mut m = manifest_a();
        m["spec"]["template"]["metadata"]
            .as_object_mut()
            .unwrap()
            .shift_remove("labels");
        let obj = run(Some(&live), &m, "gitops", false, T1, deploy().as_ref()).unwrap();
        assert!(
            obj["spec"]["template"]["metadata"].get("labels").is_none(),
            "{obj}"
        );
        assert_eq!(
            obj["spec"]["template"]["spec"],
            live["spec"]["template"]["spec"]
        );
    }

    #[test]
    fn reapply_after_migrating_a_recorded_client_side_apply_changes_nothing() {
        // The same, with the entry devcluster itself records for a client-side apply.
        let mut live = manifest_a();
        record_update(
            None,
            &mut live,
            "kubectl-client-side-apply",
            "apps/v1",
            None,
            T0,
            deploy().as_ref(),
        );
        let migrated = &mut live["metadata"]["managedFields"][0];
        migrated["manager"] = json!("gitops");
        migrated["operation"] = json!("Apply");
        let before = fields(&live, "gitops", "Apply");
        assert_eq!(before["f:metadata"]["f:labels"]["."], json!({}), "{before}");
        let obj = run(
            Some(&live),
            &manifest_a(),
            "gitops",
            false,
            T1,
            deploy().as_ref(),
        )
        .unwrap();
        assert_eq!(without_managed_fields(&obj), without_managed_fields(&live));
    }

    #[test]
    fn example_d_variant_field_owned_by_other_manager_survives() {
        let live = created_a();
        let mut labelled = live.clone();
        labelled["metadata"]["labels"]["tier"] = json!("be");
        record_update(
            Some(&live),
            &mut labelled,
            "kubectl-label",
            "apps/v1",
            None,
            T1,
            deploy().as_ref(),
        );
        assert_eq!(
            fields(&labelled, "kubectl-label", "Update"),
            json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
        );
        let mut m = manifest_a();
        m["metadata"]["labels"] = json!({"app": "web"});
        let obj = run(Some(&labelled), &m, "gitops", false, T2, deploy().as_ref()).unwrap();
        assert_eq!(obj["metadata"]["labels"]["tier"], "be");
    }

    #[test]
    fn update_with_unchanged_value_takes_no_ownership() {
        let live = created_a();
        let mut same = live.clone();
        record_update(
            Some(&live),
            &mut same,
            "kubectl-label",
            "apps/v1",
            None,
            T1,
            deploy().as_ref(),
        );
        assert!(entry(&same, "kubectl-label", "Update").is_none());
        assert_eq!(same, live);
    }

    fn team_b_manifest() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "resources": {"limits": {"cpu": "1"}}}
        ]}}}})
    }

    #[test]
    fn example_e_second_applier_merges_into_associative_list() {
        let live = created_a();
        let obj = run(
            Some(&live),
            &team_b_manifest(),
            "team-b",
            false,
            T1,
            deploy().as_ref(),
        )
        .unwrap();
        let c = &obj["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "nginx:1.25");
        assert_eq!(c["resources"]["limits"]["cpu"], "1");
        assert_eq!(
            fields(&obj, "team-b", "Apply"),
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nginx\"}": {".": {}, "f:name": {}, "f:resources": {"f:limits": {"f:cpu": {}}}}
            }}}}})
        );
        // gitops keeps the image; its set is untouched.
        assert_eq!(
            fields(&obj, "gitops", "Apply"),
            fields(&live, "gitops", "Apply")
        );

        // gitops drops nginx entirely: the element survives with team-b's fields only.
        let mut m = manifest_a();
        m["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "sidecar", "image": "busybox"}]);
        let obj2 = run(Some(&obj), &m, "gitops", false, T2, deploy().as_ref()).unwrap();
        let cs = obj2["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        let nginx = cs.iter().find(|c| c["name"] == "nginx").unwrap();
        assert!(nginx.get("image").is_none());
        assert!(nginx.get("env").is_none());
        assert_eq!(nginx["resources"]["limits"]["cpu"], "1");
        assert!(cs.iter().any(|c| c["name"] == "sidecar"));
    }

    #[test]
    fn example_f_atomic_list_conflicts_as_a_whole() {
        let mut m = manifest_a();
        m["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--a"]);
        let live = run(None, &m, "gitops", false, T0, deploy().as_ref()).unwrap();
        assert!(fields(&live, "gitops", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"nginx\"}"]["f:args"]
            .as_object()
            .unwrap()
            .is_empty());
        let mut b = team_b_manifest();
        b["spec"]["template"]["spec"]["containers"][0] = json!({"name": "nginx", "args": ["--b"]});
        let err = run(Some(&live), &b, "team-b", false, T1, deploy().as_ref()).unwrap_err();
        let (_, status) = conflict_status(err);
        assert_eq!(
            status["message"],
            "Apply failed with 1 conflict: conflict with \"gitops\": .spec.template.spec.containers[name=\"nginx\"].args"
        );
        assert_eq!(
            status["details"]["causes"][0]["message"],
            "conflict with \"gitops\""
        );
        let obj = run(Some(&live), &b, "team-b", true, T1, deploy().as_ref()).unwrap();
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["--b"])
        );
    }

    #[test]
    fn example_g_reset_to_default() {
        let live = created_a();
        let mut m = manifest_a();
        m["spec"].as_object_mut().unwrap().shift_remove("replicas");
        let obj = run(Some(&live), &m, "gitops", false, T1, deploy().as_ref()).unwrap();
        assert_eq!(obj["spec"]["replicas"], 1);
        assert!(
            fields(&obj, "gitops", "Apply")["f:spec"]
                .get("f:replicas")
                .is_none()
        );
    }

    #[test]
    fn dropped_field_owned_by_other_manager_is_not_reset() {
        let live = scaled(&created_a(), 5);
        let mut m = manifest_a();
        m["spec"].as_object_mut().unwrap().shift_remove("replicas");
        let obj = run(Some(&live), &m, "gitops", false, T2, deploy().as_ref()).unwrap();
        assert_eq!(obj["spec"]["replicas"], 5);
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm1", "namespace": "default"}, "data": data})
    }

    #[test]
    fn example_h_configmap_removal_and_conflict() {
        let schema = builtin_schema("", "ConfigMap");
        let s = schema.as_ref();
        let live = run(
            None,
            &cm(json!({"a": "1", "b": "2"})),
            "kubectl",
            false,
            T0,
            s,
        )
        .unwrap();
        assert_eq!(
            fields(&live, "kubectl", "Apply"),
            json!({"f:data": {"f:a": {}, "f:b": {}}})
        );
        let obj = run(Some(&live), &cm(json!({"a": "1"})), "kubectl", false, T1, s).unwrap();
        assert_eq!(obj["data"], json!({"a": "1"}));

        let mut edited = obj.clone();
        edited["data"]["a"] = json!("9");
        record_update(Some(&obj), &mut edited, "kubectl-edit", "v1", None, T1, s);
        let err = run(
            Some(&edited),
            &cm(json!({"a": "1"})),
            "kubectl",
            false,
            T2,
            s,
        )
        .unwrap_err();
        let (_, status) = conflict_status(err);
        assert_eq!(
            status["message"],
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.a"
        );
        assert_eq!(
            status["details"],
            json!({"causes": [{"reason": "FieldManagerConflict",
                "message": "conflict with \"kubectl-edit\" using v1", "field": ".data.a"}]})
        );
    }

    #[test]
    fn removing_last_map_entry_drops_the_map_for_builtins() {
        let schema = builtin_schema("", "ConfigMap");
        let s = schema.as_ref();
        let live = run(None, &cm(json!({"a": "1"})), "m", false, T0, s).unwrap();
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm1", "namespace": "default", "labels": {"x": "y"}}});
        let obj = run(Some(&live), &applied, "m", false, T1, s).unwrap();
        assert!(obj.get("data").is_none());
        assert_eq!(obj["metadata"]["labels"]["x"], "y");
    }

    #[test]
    fn example_i_lease_holder_conflict_and_takeover() {
        let schema = builtin_schema("coordination.k8s.io", "Lease");
        let s = schema.as_ref();
        let lease = |holder: &str| {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "leader", "namespace": "default"},
                "spec": {"holderIdentity": holder}})
        };
        let live = run(None, &lease("a"), "candidate-a", false, T0, s).unwrap();
        let err = run(Some(&live), &lease("b"), "candidate-b", false, T1, s).unwrap_err();
        let (conflicts, status) = conflict_status(err);
        assert_eq!(conflicts[0].path, ".spec.holderIdentity");
        assert_eq!(
            status["message"],
            "Apply failed with 1 conflict: conflict with \"candidate-a\": .spec.holderIdentity"
        );
        let taken = run(Some(&live), &lease("b"), "candidate-b", true, T1, s).unwrap();
        assert_eq!(taken["spec"]["holderIdentity"], "b");
        assert!(entry(&taken, "candidate-a", "Apply").is_none());
        // The holder renewing its own value never conflicts.
        assert!(run(Some(&live), &lease("a"), "candidate-a", false, T1, s).is_ok());
    }

    #[test]
    fn multiple_conflicts_message_groups_by_manager() {
        let schema = builtin_schema("", "ConfigMap");
        let s = schema.as_ref();
        let live = run(
            None,
            &cm(json!({"a": "1", "b": "1", "c": "1"})),
            "base",
            false,
            T0,
            s,
        )
        .unwrap();
        let mut e1 = live.clone();
        e1["data"]["a"] = json!("2");
        e1["data"]["b"] = json!("2");
        record_update(Some(&live), &mut e1, "beta", "v1", None, T1, s);
        let mut e2 = e1.clone();
        e2["data"]["c"] = json!("2");
        record_update(Some(&e1), &mut e2, "alpha", "v1", None, T1, s);
        let err = run(
            Some(&e2),
            &cm(json!({"a": "3", "b": "3", "c": "3"})),
            "base",
            false,
            T2,
            s,
        )
        .unwrap_err();
        let (conflicts, status) = conflict_status(err);
        assert_eq!(conflicts.len(), 3);
        assert_eq!(
            status["message"],
            "Apply failed with 3 conflicts: conflicts with \"alpha\" using v1:\n- .data.c\nconflicts with \"beta\" using v1:\n- .data.a\n- .data.b"
        );
        let fields: Vec<&str> = status["details"]["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [".data.c", ".data.a", ".data.b"]);
    }

    #[test]
    fn container_ports_keyed_with_defaulted_protocol() {
        let mut m = manifest_a();
        m["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
        let obj = run(None, &m, "kubectl", false, T0, deploy().as_ref()).unwrap();
        let nginx = &fields(&obj, "kubectl", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"nginx\"}"];
        assert_eq!(
            nginx["f:ports"],
            json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
        );
        // A live object defaulted to protocol TCP keys to the same element.
        let mut live = obj.clone();
        live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        let mut m2 = m.clone();
        m2["spec"]["template"]["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 80, "name": "http"}]);
        let obj2 = run(Some(&live), &m2, "kubectl", false, T1, deploy().as_ref()).unwrap();
        let ports = obj2["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            ports[0],
            json!({"containerPort": 80, "protocol": "TCP", "name": "http"})
        );
    }

    #[test]
    fn env_merged_by_name_across_managers() {
        let live = created_a();
        let mut b = team_b_manifest();
        b["spec"]["template"]["spec"]["containers"][0] =
            json!({"name": "nginx", "env": [{"name": "B", "value": "2"}]});
        let obj = run(Some(&live), &b, "team-b", false, T1, deploy().as_ref()).unwrap();
        let env = &obj["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(
            env,
            &json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        // Changing A's value from team-b conflicts with gitops on that one field.
        b["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "A", "value": "x"}]);
        let (conflicts, _) = conflict_status(
            run(Some(&obj), &b, "team-b", false, T2, deploy().as_ref()).unwrap_err(),
        );
        assert_eq!(
            conflicts[0].path,
            ".spec.template.spec.containers[name=\"nginx\"].env[name=\"A\"].value"
        );
    }

    #[test]
    fn finalizers_are_a_set() {
        let schema = builtin_schema("", "ConfigMap");
        let s = schema.as_ref();
        let with_fin = |f: Value| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cm1", "namespace": "default", "finalizers": f}})
        };
        let live = run(None, &with_fin(json!(["a.io/x"])), "one", false, T0, s).unwrap();
        assert_eq!(
            fields(&live, "one", "Apply"),
            json!({"f:metadata": {"f:finalizers": {"v:\"a.io/x\"": {}}}})
        );
        let both = run(
            Some(&live),
            &with_fin(json!(["b.io/y"])),
            "two",
            false,
            T1,
            s,
        )
        .unwrap();
        assert_eq!(both["metadata"]["finalizers"], json!(["a.io/x", "b.io/y"]));
        let dropped = run(Some(&both), &with_fin(json!([])), "one", false, T2, s).unwrap();
        assert_eq!(dropped["metadata"]["finalizers"], json!(["b.io/y"]));
        assert!(entry(&dropped, "one", "Apply").is_none());
    }

    #[test]
    fn label_selector_is_atomic() {
        let live = created_a();
        let mut b = team_b_manifest();
        b["spec"] = json!({"selector": {"matchLabels": {"app": "web", "extra": "x"}}});
        let (conflicts, _) = conflict_status(
            run(Some(&live), &b, "team-b", false, T1, deploy().as_ref()).unwrap_err(),
        );
        assert_eq!(conflicts[0].path, ".spec.selector");
        let obj = run(Some(&live), &b, "team-b", true, T1, deploy().as_ref()).unwrap();
        assert_eq!(
            obj["spec"]["selector"],
            json!({"matchLabels": {"app": "web", "extra": "x"}})
        );
    }

    #[test]
    fn update_after_apply_moves_image_ownership() {
        let live = created_a();
        let mut new = live.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        record_update(
            Some(&live),
            &mut new,
            "kubectl-set",
            "apps/v1",
            None,
            T1,
            deploy().as_ref(),
        );
        assert_eq!(
            fields(&new, "kubectl-set", "Update"),
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nginx\"}": {"f:image": {}}}}}}})
        );
        assert!(fields(&new, "gitops", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"nginx\"}"]
            .get("f:image")
            .is_none());
        let err = run(
            Some(&new),
            &manifest_a(),
            "gitops",
            false,
            T2,
            deploy().as_ref(),
        )
        .unwrap_err();
        let (_, status) = conflict_status(err);
        assert_eq!(
            status["message"],
            "Apply failed with 1 conflict: conflict with \"kubectl-set\" using apps/v1: .spec.template.spec.containers[name=\"nginx\"].image"
        );
    }

    #[test]
    fn no_op_apply_keeps_time_and_object() {
        let live = created_a();
        let again = run(
            Some(&live),
            &manifest_a(),
            "gitops",
            false,
            T2,
            deploy().as_ref(),
        )
        .unwrap();
        assert_eq!(again, live);
        assert!(managed_fields_equal_ignoring_time(&again, &live));
        // A real change bumps this manager's time only.
        let mut m = manifest_a();
        m["spec"]["replicas"] = json!(3);
        let changed = run(Some(&live), &m, "gitops", false, T2, deploy().as_ref()).unwrap();
        assert_eq!(entry(&changed, "gitops", "Apply").unwrap()["time"], T2);
        assert!(!managed_fields_equal_ignoring_time(&changed, &live));
    }

    #[test]
    fn managed_fields_equality_ignores_only_time() {
        let a =
            json!([{"manager": "m", "operation": "Apply", "time": T0, "fieldsV1": {"f:a": {}}}]);
        let b =
            json!([{"manager": "m", "operation": "Apply", "time": T1, "fieldsV1": {"f:a": {}}}]);
        let c =
            json!([{"manager": "m", "operation": "Apply", "time": T0, "fieldsV1": {"f:b": {}}}]);
        assert!(managed_fields_equal_ignoring_time(&a, &b));
        assert!(!managed_fields_equal_ignoring_time(&a, &c));
    }

    #[test]
    fn invalid_requests() {
        let s = deploy();
        let mut with_mf = manifest_a();
        with_mf["metadata"]["managedFields"] = json!([]);
        let err = run(None, &with_mf, "gitops", false, T0, s.as_ref()).unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.status()["message"],
            "metadata.managedFields must be nil"
        );
        assert_eq!(err.status()["reason"], "BadRequest");

        let err = run(None, &manifest_a(), "", false, T0, s.as_ref()).unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.status()["message"],
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );

        let err = apply(ApplyRequest {
            live: None,
            applied: &manifest_a(),
            manager: "gitops",
            api_version: "apps/v1",
            kind: "StatefulSet",
            force: false,
            subresource: None,
            status_subresource: false,
            now: T0,
            schema: s.as_ref(),
        })
        .unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.status()["message"],
            "invalid object type: apps/v1, Kind=Deployment"
        );

        let mut no_av = cm(json!({}));
        no_av.as_object_mut().unwrap().shift_remove("apiVersion");
        let cms = builtin_schema("", "ConfigMap");
        let err = apply(ApplyRequest {
            live: None,
            applied: &no_av,
            manager: "m",
            api_version: "v1",
            kind: "ConfigMap",
            force: false,
            subresource: None,
            status_subresource: false,
            now: T0,
            schema: cms.as_ref(),
        })
        .unwrap_err();
        assert_eq!(
            err.status()["message"],
            "invalid object type: /, Kind=ConfigMap"
        );

        let mut no_key = manifest_a();
        no_key["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
        let err = run(None, &no_key, "gitops", false, T0, s.as_ref()).unwrap_err();
        assert_eq!(err.code(), 500);
        assert_eq!(
            err.status()["message"],
            "failed to create typed patch object (team-a/web; apps/v1, Kind=Deployment): .spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
        );
        assert!(err.status().get("reason").is_none());
    }

    #[test]
    fn status_ignored_on_main_resource_and_only_status_on_subresource() {
        let s = deploy();
        let mut m = manifest_a();
        m["status"] = json!({"replicas": 9});
        let obj = apply(ApplyRequest {
            live: None,
            applied: &m,
            manager: "gitops",
            api_version: "apps/v1",
            kind: "Deployment",
            force: false,
            subresource: None,
            status_subresource: true,
            now: T0,
            schema: s.as_ref(),
        })
        .unwrap();
        assert!(obj.get("status").is_none());
        assert!(fields(&obj, "gitops", "Apply").get("f:status").is_none());

        let status_body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "team-a", "labels": {"x": "y"}},
            "spec": {"replicas": 7},
            "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}});
        let obj2 = apply(ApplyRequest {
            live: Some(&obj),
            applied: &status_body,
            manager: "ctrl",
            api_version: "apps/v1",
            kind: "Deployment",
            force: false,
            subresource: Some("status"),
            status_subresource: true,
            now: T1,
            schema: s.as_ref(),
        })
        .unwrap();
        assert_eq!(obj2["spec"]["replicas"], 2);
        assert!(obj2["metadata"]["labels"].get("x").is_none());
        assert_eq!(obj2["status"]["replicas"], 2);
        let e = entry(&obj2, "ctrl", "Apply").unwrap();
        assert_eq!(e["subresource"], "status");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:status": {"f:replicas": {}, "f:conditions": {
                "k:{\"type\":\"Available\"}": {".": {}, "f:type": {}, "f:status": {}}}}})
        );
    }

    #[test]
    fn fields_v1_round_trip() {
        let v = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}},
                "f:finalizers": {"v:\"x\"": {}}, "f:list": {"i:0": {}}}});
        let set = parse_fields_v1(&v);
        assert_eq!(set.len(), 6);
        assert!(set.contains(&vec![
            PathElem::Field("metadata".into()),
            PathElem::Field("labels".into())
        ]));
        assert_eq!(fields_v1(&set), v);
        // Key JSON is canonicalised (sorted keys) on parse.
        let unsorted = json!({"k:{\"protocol\":\"TCP\",\"port\":80}": {}});
        let set = parse_fields_v1(&unsorted);
        assert_eq!(
            set.iter().next().unwrap()[0],
            PathElem::Key("{\"port\":80,\"protocol\":\"TCP\"}".into())
        );
    }

    #[test]
    fn display_path_forms() {
        let p = vec![
            PathElem::Field("spec".into()),
            PathElem::Field("ports".into()),
            PathElem::Key("{\"port\":80,\"protocol\":\"TCP\"}".into()),
            PathElem::Field("name".into()),
        ];
        assert_eq!(
            display_path(&p),
            ".spec.ports[port=80,protocol=\"TCP\"].name"
        );
        assert_eq!(
            display_path(&[PathElem::Field("f".into()), PathElem::Value("\"x\"".into())]),
            ".f[=\"x\"]"
        );
        assert_eq!(display_path(&[PathElem::Index(3)]), "[3]");
    }

    #[test]
    fn entries_ordered_apply_first_then_time_then_manager() {
        let schema = builtin_schema("", "ConfigMap");
        let s = schema.as_ref();
        let live = run(None, &cm(json!({"a": "1"})), "zeta", false, T2, s).unwrap();
        let mut u = live.clone();
        u["data"]["b"] = json!("1");
        record_update(Some(&live), &mut u, "early", "v1", None, T0, s);
        let mut u2 = u.clone();
        u2["data"]["c"] = json!("1");
        record_update(Some(&u), &mut u2, "abc", "v1", None, T1, s);
        let obj = run(
            Some(&u2),
            &cm(json!({"a": "1", "d": "1"})),
            "alpha",
            false,
            T2,
            s,
        )
        .unwrap();
        let order: Vec<&str> = obj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(order, ["alpha", "zeta", "early", "abc"]);
    }

    #[test]
    fn create_via_update_owns_everything_with_member_markers() {
        let schema = builtin_schema("apps", "Deployment");
        let mut new = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "x", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "i",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}});
        record_update(
            None,
            &mut new,
            "kubectl-create",
            "apps/v1",
            None,
            T0,
            schema.as_ref(),
        );
        assert_eq!(
            fields(&new, "kubectl-create", "Update"),
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:replicas": {},
                    "f:strategy": {"f:type": {}, "f:rollingUpdate": {".": {}, "f:maxSurge": {}}},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                        ".": {}, "f:name": {}, "f:image": {},
                        "f:ports": {".": {}, "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:containerPort": {}, "f:protocol": {}}}}}}}}})
        );
    }

    #[test]
    fn update_can_reset_managed_fields() {
        let live = created_a();
        let mut new = live.clone();
        new["metadata"]["managedFields"] = json!([{}]);
        record_update(
            Some(&live),
            &mut new,
            "m",
            "apps/v1",
            None,
            T1,
            deploy().as_ref(),
        );
        assert!(new["metadata"].get("managedFields").is_none());
        // Without managedFields in the body the stored ones are kept.
        let mut put = live.clone();
        put["metadata"]
            .as_object_mut()
            .unwrap()
            .shift_remove("managedFields");
        record_update(
            Some(&live),
            &mut put,
            "m",
            "apps/v1",
            None,
            T1,
            deploy().as_ref(),
        );
        assert_eq!(put, live);
    }

    #[test]
    fn update_removing_a_field_removes_it_from_all_managers() {
        let live = created_a();
        let mut new = live.clone();
        new["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .shift_remove("tier");
        record_update(
            Some(&live),
            &mut new,
            "kubectl-edit",
            "apps/v1",
            None,
            T1,
            deploy().as_ref(),
        );
        assert!(
            fields(&new, "gitops", "Apply")["f:metadata"]["f:labels"]
                .get("f:tier")
                .is_none()
        );
        assert!(entry(&new, "kubectl-edit", "Update").is_none());
    }

    fn widget_schema() -> Value {
        json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "size": {"type": "integer", "default": 1},
            "items": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "string"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "args": {"type": "array", "items": {"type": "string"}},
            "sel": {"type": "object", "x-kubernetes-map-type": "atomic",
                "additionalProperties": {"type": "string"}},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }}}})
    }

    fn widget(spec: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn crd_schema_topology_and_unknown_fields() {
        let schema = crd_schema(&widget_schema());
        let s = schema.as_ref();
        let obj = run(
            None,
            &widget(
                json!({"size": 3, "items": [{"name": "a", "v": "1"}], "tags": ["x"],
                "args": ["--a"], "sel": {"k": "v"}, "extra": {"free": {"deep": 1}}}),
            ),
            "kubectl",
            false,
            T0,
            s,
        )
        .unwrap();
        assert_eq!(
            fields(&obj, "kubectl", "Apply"),
            json!({"f:spec": {"f:size": {}, "f:items": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:v": {}}},
                "f:tags": {"v:\"x\"": {}}, "f:args": {}, "f:sel": {},
                "f:extra": {"f:free": {".": {}, "f:deep": {}}}}})
        );
        // Dropping size resets it to the schema default.
        let obj2 = run(
            Some(&obj),
            &widget(json!({"items": [{"name": "a", "v": "1"}]})),
            "kubectl",
            false,
            T1,
            s,
        )
        .unwrap();
        assert_eq!(obj2["spec"]["size"], 1);
        assert!(
            obj2["spec"]
                .get("tags")
                .is_some_and(|t| t.as_array().is_some_and(Vec::is_empty))
        );
        assert!(obj2["spec"].get("extra").is_some());
    }

    #[test]
    fn crd_whole_spec_preserved_unknown_gets_member_marker() {
        let schema =
            crd_schema(&json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        let obj = run(
            None,
            &widget(json!({"size": 3})),
            "kubectl",
            false,
            T0,
            schema.as_ref(),
        )
        .unwrap();
        assert_eq!(
            fields(&obj, "kubectl", "Apply"),
            json!({"f:spec": {".": {}, "f:size": {}}})
        );
    }

    #[test]
    fn crd_lists_default_to_atomic() {
        let schema = crd_schema(
            &json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"l": {"type": "array", "items": {"type": "object"}}}}}}),
        );
        let s = schema.as_ref();
        let live = run(None, &widget(json!({"l": [{"a": 1}]})), "one", false, T0, s).unwrap();
        let obj = run(
            Some(&live),
            &widget(json!({"l": [{"b": 2}]})),
            "two",
            true,
            T1,
            s,
        )
        .unwrap();
        assert_eq!(obj["spec"]["l"], json!([{"b": 2}]));
        assert!(entry(&obj, "one", "Apply").is_none());
    }

    #[test]
    fn service_ports_keyed_by_port_and_protocol() {
        let schema = builtin_schema("", "Service");
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "d"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}});
        let obj = run(None, &svc, "m", false, T0, schema.as_ref()).unwrap();
        assert_eq!(
            fields(&obj, "m", "Apply"),
            json!({"f:spec": {"f:selector": {},
                "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}}}})
        );
    }

    #[test]
    fn rbac_rules_are_atomic_and_owner_references_keyed_by_uid() {
        let schema = builtin_schema("rbac.authorization.k8s.io", "Role");
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "r", "namespace": "d",
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u1"}]},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        let obj = run(None, &role, "m", false, T0, schema.as_ref()).unwrap();
        let f = fields(&obj, "m", "Apply");
        assert_eq!(f["f:rules"], json!({}));
        assert_eq!(
            f["f:metadata"]["f:ownerReferences"],
            json!({"k:{\"uid\":\"u1\"}": {".": {}, "f:apiVersion": {}, "f:kind": {}, "f:name": {}, "f:uid": {}}})
        );
    }

    #[test]
    fn cronjob_and_pod_templates_use_pod_spec_topology() {
        let schema = builtin_schema("batch", "CronJob");
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "c", "namespace": "d"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "x", "image": "i", "volumeMounts": [{"name": "v", "mountPath": "/m"}]}]}}}}}});
        let obj = run(None, &cj, "m", false, T0, schema.as_ref()).unwrap();
        let c = &fields(&obj, "m", "Apply")["f:spec"]["f:jobTemplate"]["f:spec"]["f:template"]["f:spec"]
            ["f:containers"]["k:{\"name\":\"x\"}"];
        assert!(
            c["f:volumeMounts"]
                .get("k:{\"mountPath\":\"/m\"}")
                .is_some()
        );
    }

    #[test]
    fn list_merge_keeps_live_only_elements_in_place() {
        let live = created_a();
        let mut b = team_b_manifest();
        b["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "sidecar", "image": "busybox"},
            {"name": "third", "image": "t"}
        ]);
        let obj = run(Some(&live), &b, "team-b", false, T1, deploy().as_ref()).unwrap();
        let names: Vec<&str> = obj["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["nginx", "sidecar", "third"]);
    }

    #[test]
    fn duplicate_keys_in_applied_list_are_rejected() {
        let mut m = manifest_a();
        m["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]);
        let err = run(None, &m, "gitops", false, T0, deploy().as_ref()).unwrap_err();
        assert_eq!(err.code(), 500);
        assert!(
            err.to_string()
                .contains("duplicate entries for key [name=\"a\"]")
        );
    }

    #[test]
    fn rfc3339_parsing() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), 0);
        assert_eq!(rfc3339_seconds("1970-01-02T00:00:01.5Z"), 86401);
        assert_eq!(rfc3339_seconds("2000-03-01T01:00:00+01:00"), 951868800);
        assert_eq!(rfc3339_seconds("garbage"), 0);
    }
}
