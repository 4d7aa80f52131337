//! kustomize's built-in transformers, in its order: strategic merge patches, patches,
//! namespace, prefix/suffix, labels, annotations, JSON 6902 patches, replicas, images.

use std::path::Path;

use serde_json::{Map, Value};

use super::{Builder, KustomizeError, Res, is_cluster_scoped, kerr, opt_str, str_list};

pub(super) fn run(
    b: &mut Builder<'_>,
    dir: &Path,
    kfile: &Path,
    k: &Map<String, Value>,
    rs: &mut Vec<Res>,
) -> Result<(), KustomizeError> {
    // patchesStrategicMerge: files or inline documents.
    for (i, p) in str_list(k, "patchesStrategicMerge", kfile)?
        .iter()
        .enumerate()
    {
        let field = format!("patchesStrategicMerge[{i}]");
        let text = if !p.contains('\n') && !p.trim_start().starts_with('{') {
            let (_, bytes) = b.read_restricted(dir, p, kfile, &field)?;
            bytes
        } else {
            p.as_bytes().to_vec()
        };
        for doc in parse_docs(&text, kfile, &field)? {
            smp_by_id(b, rs, &doc, kfile, &field, false)?;
        }
    }
    // patches: strategic merge or JSON 6902, inline or from a file, with optional target.
    if let Some(v) = k.get("patches") {
        let Value::Array(list) = v else {
            return Err(kerr(kfile, Some("patches"), "must be a list"));
        };
        for (i, p) in list.iter().enumerate() {
            let field = format!("patches[{i}]");
            let Value::Object(p) = p else {
                return Err(kerr(kfile, Some(&field), "must be a map"));
            };
            for key in p.keys() {
                if !matches!(key.as_str(), "path" | "patch" | "target" | "options") {
                    return Err(kerr(
                        kfile,
                        Some(&format!("{field}.{key}")),
                        "unknown field",
                    ));
                }
            }
            let text = patch_text(b, dir, kfile, &field, p)?;
            let opts = p.get("options").cloned().unwrap_or(Value::Null);
            let allow_name = opts
                .get("allowNameChange")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let allow_kind = opts
                .get("allowKindChange")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let docs = parse_docs(&text, kfile, &field)?;
            let is_json6902 = matches!(docs.as_slice(), [Value::Array(_)]);
            match p.get("target") {
                Some(t) => {
                    let sel = Selector::parse(t, kfile, &format!("{field}.target"))?;
                    let idx: Vec<usize> = (0..rs.len()).filter(|&j| sel.matches(&rs[j])).collect();
                    if is_json6902 {
                        for j in idx {
                            json6902(b, &mut rs[j], &docs[0], kfile, &field)?;
                        }
                    } else {
                        for doc in &docs {
                            let mut doc = doc.clone();
                            let mut deleted = Vec::new();
                            for &j in &idx {
                                if let Some(o) = doc.as_object_mut() {
                                    // The target decides what is patched; the patch's own id is
                                    // ignored unless a change is explicitly allowed.
                                    if !allow_kind {
                                        o.shift_remove("kind");
                                        o.shift_remove("apiVersion");
                                    }
                                    if !allow_name
                                        && let Some(Value::Object(m)) = o.get_mut("metadata")
                                    {
                                        m.shift_remove("name");
                                        m.shift_remove("namespace");
                                    }
                                }
                                if !smp_apply(b, &mut rs[j], &doc, kfile, &field)? {
                                    deleted.push(j);
                                }
                            }
                            for j in deleted.into_iter().rev() {
                                rs.remove(j);
                            }
                        }
                    }
                }
                None if is_json6902 => {
                    return Err(kerr(
                        kfile,
                        Some(&field),
                        "a JSON 6902 patch needs a target",
                    ));
                }
                None => {
                    for doc in &docs {
                        smp_by_id(b, rs, doc, kfile, &field, false)?;
                    }
                }
            }
        }
    }
    if let Some(ns) = opt_str(k, "namespace", kfile)?.filter(|n| !n.is_empty()) {
        namespace(rs, ns);
    }
    let prefix = opt_str(k, "namePrefix", kfile)?.unwrap_or("");
    let suffix = opt_str(k, "nameSuffix", kfile)?.unwrap_or("");
    if !prefix.is_empty() || !suffix.is_empty() {
        for r in rs.iter_mut() {
            if matches!(
                (r.group(), r.kind()),
                ("apiextensions.k8s.io", "CustomResourceDefinition")
                    | ("apiregistration.k8s.io", "APIService")
                    | ("", "Namespace")
            ) {
                continue;
            }
            let n = format!("{prefix}{}{suffix}", r.name());
            r.set_name(n);
        }
    }
    // Labels: commonLabels (selectors too), then each labels entry.
    if let Some(v) = k.get("commonLabels") {
        let pairs = string_map(v, kfile, "commonLabels")?;
        for r in rs.iter_mut() {
            add_labels(&mut r.obj, &pairs, true, true);
        }
    }
    if let Some(v) = k.get("labels") {
        let Value::Array(list) = v else {
            return Err(kerr(kfile, Some("labels"), "must be a list"));
        };
        for (i, l) in list.iter().enumerate() {
            let field = format!("labels[{i}]");
            let Value::Object(l) = l else {
                return Err(kerr(kfile, Some(&field), "must be a map"));
            };
            for key in l.keys() {
                if !matches!(
                    key.as_str(),
                    "pairs" | "includeSelectors" | "includeTemplates" | "fields"
                ) {
                    return Err(kerr(
                        kfile,
                        Some(&format!("{field}.{key}")),
                        "unknown field",
                    ));
                }
            }
            let fields = label_fields(l.get("fields"), kfile, &format!("{field}.fields"))?;
            let pairs = string_map(l.get("pairs").unwrap_or(&Value::Null), kfile, &field)?;
            let sel = l
                .get("includeSelectors")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let tmpl = sel
                || l.get("includeTemplates")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
            for r in rs.iter_mut() {
                add_labels(&mut r.obj, &pairs, sel, tmpl);
                if pairs.is_empty() {
                    continue;
                }
                for f in &fields {
                    if f.selects(r) {
                        let path: Vec<&str> = f.path.iter().map(String::as_str).collect();
                        at_path(&mut r.obj, &path, f.create, &mut put_pairs(&pairs));
                    }
                }
            }
        }
    }
    if let Some(v) = k.get("commonAnnotations") {
        let pairs = string_map(v, kfile, "commonAnnotations")?;
        for r in rs.iter_mut() {
            add_annotations(&mut r.obj, &pairs);
        }
    }
    if let Some(v) = k.get("patchesJson6902") {
        let Value::Array(list) = v else {
            return Err(kerr(kfile, Some("patchesJson6902"), "must be a list"));
        };
        for (i, p) in list.iter().enumerate() {
            let field = format!("patchesJson6902[{i}]");
            let Value::Object(p) = p else {
                return Err(kerr(kfile, Some(&field), "must be a map"));
            };
            let text = patch_text(b, dir, kfile, &field, p)?;
            let docs = parse_docs(&text, kfile, &field)?;
            let [ops @ Value::Array(_)] = docs.as_slice() else {
                return Err(kerr(
                    kfile,
                    Some(&field),
                    "a JSON 6902 patch is a list of operations",
                ));
            };
            let t = p
                .get("target")
                .ok_or_else(|| kerr(kfile, Some(&field), "needs a target"))?;
            let sel = Selector::parse(t, kfile, &format!("{field}.target"))?;
            let idx: Vec<usize> = (0..rs.len()).filter(|&j| sel.matches(&rs[j])).collect();
            if idx.is_empty() {
                return Err(kerr(kfile, Some(&field), "the target matches no resource"));
            }
            for j in idx {
                json6902(b, &mut rs[j], ops, kfile, &field)?;
            }
        }
    }
    if let Some(v) = k.get("replicas") {
        let Value::Array(list) = v else {
            return Err(kerr(kfile, Some("replicas"), "must be a list"));
        };
        for (i, rep) in list.iter().enumerate() {
            let field = format!("replicas[{i}]");
            let name = rep
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| kerr(kfile, Some(&format!("{field}.name")), "must be a string"))?;
            let count = rep.get("count").and_then(Value::as_i64).ok_or_else(|| {
                kerr(kfile, Some(&format!("{field}.count")), "must be an integer")
            })?;
            for r in rs.iter_mut() {
                if r.has_name(name)
                    && matches!(
                        r.kind(),
                        "Deployment" | "ReplicationController" | "ReplicaSet" | "StatefulSet"
                    )
                    && let Some(o) = r.obj.as_object_mut()
                {
                    let spec = o.entry("spec").or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(spec) = spec {
                        spec.insert("replicas".into(), Value::from(count));
                    }
                }
            }
        }
    }
    if let Some(v) = k.get("images") {
        let Value::Array(list) = v else {
            return Err(kerr(kfile, Some("images"), "must be a list"));
        };
        for (i, img) in list.iter().enumerate() {
            let field = format!("images[{i}]");
            let Value::Object(img) = img else {
                return Err(kerr(kfile, Some(&field), "must be a map"));
            };
            let get = |key: &str| -> Result<Option<String>, KustomizeError> {
                match img.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(Value::Number(n)) => Ok(Some(n.to_string())),
                    Some(_) => Err(kerr(
                        kfile,
                        Some(&format!("{field}.{key}")),
                        "must be a string",
                    )),
                }
            };
            let rule = ImageRule {
                name: get("name")?
                    .ok_or_else(|| kerr(kfile, Some(&format!("{field}.name")), "is required"))?,
                new_name: get("newName")?,
                new_tag: get("newTag")?,
                digest: get("digest")?,
            };
            for r in rs.iter_mut() {
                images(&mut r.obj, &rule);
            }
        }
    }
    Ok(())
}

fn patch_text(
    b: &Builder<'_>,
    dir: &Path,
    kfile: &Path,
    field: &str,
    p: &Map<String, Value>,
) -> Result<Vec<u8>, KustomizeError> {
    match (
        p.get("path").and_then(Value::as_str),
        p.get("patch").and_then(Value::as_str),
    ) {
        (Some(path), None) => Ok(b
            .read_restricted(dir, path, kfile, &format!("{field}.path"))?
            .1),
        (None, Some(text)) => Ok(text.as_bytes().to_vec()),
        _ => Err(kerr(
            kfile,
            Some(field),
            "exactly one of path and patch is required",
        )),
    }
}

fn parse_docs(bytes: &[u8], kfile: &Path, field: &str) -> Result<Vec<Value>, KustomizeError> {
    // A JSON 6902 patch is one list; everything else goes through the manifest parser.
    let text = std::str::from_utf8(bytes)
        .map_err(|_| kerr(kfile, Some(field), "the patch is not UTF-8"))?;
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---")
        .unwrap_or("");
    if first.starts_with('-') || first.starts_with('[') {
        let v: Value = serde_saphyr::from_str(text).map_err(|e| {
            kerr(
                kfile,
                Some(field),
                format!(
                    "cannot parse the JSON 6902 patch: {}",
                    crate::render::scrub_quoted(&e.to_string())
                ),
            )
        })?;
        return Ok(vec![v]);
    }
    let docs = crate::manifest::parse_strict(bytes)
        .map_err(|e| kerr(kfile, Some(field), crate::render::scrub_quoted(&e.message)))?;
    Ok(docs
        .iter()
        .filter(|d| !crate::manifest::is_empty_doc(d))
        .map(super::node_to_value)
        .collect())
}

/// Applies a strategic merge patch to the resource its own apiVersion/kind/name names.
fn smp_by_id(
    b: &Builder<'_>,
    rs: &mut Vec<Res>,
    doc: &Value,
    kfile: &Path,
    field: &str,
    _allow: bool,
) -> Result<(), KustomizeError> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ns = doc.pointer("/metadata/namespace").and_then(Value::as_str);
    let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    if kind.is_empty() || name.is_empty() {
        return Err(kerr(
            kfile,
            Some(field),
            "a patch without a target needs kind and metadata.name",
        ));
    }
    let matches: Vec<usize> = (0..rs.len())
        .filter(|&j| {
            let r = &rs[j];
            r.kind() == kind
                && r.group() == group
                && r.has_name(name)
                && (ns.is_none()
                    || r.namespace() == ns
                    || r.prev_namespaces.iter().any(|p| p.as_deref() == ns))
        })
        .collect();
    let j = match matches.as_slice() {
        [j] => *j,
        [] => {
            return Err(kerr(
                kfile,
                Some(field),
                format!("no resource matches the patch's {kind} {name:?}"),
            ));
        }
        _ => {
            return Err(kerr(
                kfile,
                Some(field),
                format!("more than one resource matches the patch's {kind} {name:?}"),
            ));
        }
    };
    let mut doc = doc.clone();
    if let Some(Value::Object(m)) = doc.get_mut("metadata") {
        m.shift_remove("name");
        m.shift_remove("namespace");
    }
    if !smp_apply(b, &mut rs[j], &doc, kfile, field)? {
        rs.remove(j);
    }
    Ok(())
}

/// Returns false when the patch deletes the resource.
fn smp_apply(
    b: &Builder<'_>,
    r: &mut Res,
    patch: &Value,
    kfile: &Path,
    field: &str,
) -> Result<bool, KustomizeError> {
    if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
        return Ok(false);
    }
    let schema = objmerge::schema::builtin_schema(r.group(), r.kind());
    let out =
        objmerge::patch::strategic_merge_patch(&r.obj, patch, schema.as_ref()).map_err(|e| {
            kerr(
                kfile,
                Some(field),
                format!("{} {:?}: {}", r.kind(), r.name(), e.message()),
            )
        })?;
    let size = super::json_size(&out);
    if size > b.opts.limits.max_total_bytes {
        return Err(kerr(kfile, Some(field), "the patch result is too large"));
    }
    b.charge(size, kfile, field)?;
    r.obj = out;
    Ok(true)
}

fn json6902(
    b: &Builder<'_>,
    r: &mut Res,
    ops: &Value,
    kfile: &Path,
    field: &str,
) -> Result<(), KustomizeError> {
    let limit = b.opts.limits.max_total_bytes.min(8 * 1024 * 1024);
    let out = objmerge::patch::json_patch_limited(&r.obj, ops, limit).map_err(|e| {
        kerr(
            kfile,
            Some(field),
            format!("{} {:?}: {}", r.kind(), r.name(), e.message()),
        )
    })?;
    let size = super::json_size(&out);
    if size > b.opts.limits.max_total_bytes {
        return Err(kerr(kfile, Some(field), "the patch result is too large"));
    }
    b.charge(size, kfile, field)?;
    let old_name = r.name().to_owned();
    r.obj = out;
    // A JSON patch may rename: keep the history so references still follow.
    let new_name = r.name().to_owned();
    if new_name != old_name {
        r.prev_names.push(old_name);
    }
    Ok(())
}

/// A patch target.
struct Selector {
    group: Option<regex::Regex>,
    version: Option<regex::Regex>,
    kind: Option<regex::Regex>,
    name: Option<regex::Regex>,
    namespace: Option<regex::Regex>,
    labels: Vec<Req>,
    annotations: Vec<Req>,
}

enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Selector {
    fn parse(t: &Value, kfile: &Path, field: &str) -> Result<Selector, KustomizeError> {
        let Value::Object(t) = t else {
            return Err(kerr(kfile, Some(field), "must be a map"));
        };
        let re = |key: &str| -> Result<Option<regex::Regex>, KustomizeError> {
            match t.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => regex::RegexBuilder::new(&format!("^(?:{s})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map(Some)
                    .map_err(|e| {
                        kerr(
                            kfile,
                            Some(&format!("{field}.{key}")),
                            format!("bad regex: {e}"),
                        )
                    }),
                Some(_) => Err(kerr(
                    kfile,
                    Some(&format!("{field}.{key}")),
                    "must be a string",
                )),
            }
        };
        for key in t.keys() {
            if !matches!(
                key.as_str(),
                "group"
                    | "version"
                    | "kind"
                    | "name"
                    | "namespace"
                    | "labelSelector"
                    | "annotationSelector"
            ) {
                return Err(kerr(
                    kfile,
                    Some(&format!("{field}.{key}")),
                    "unknown field",
                ));
            }
        }
        let sel = |key: &str| -> Result<Vec<Req>, KustomizeError> {
            match t.get(key).and_then(Value::as_str) {
                None => Ok(vec![]),
                Some(s) => {
                    parse_selector(s).map_err(|m| kerr(kfile, Some(&format!("{field}.{key}")), m))
                }
            }
        };
        Ok(Selector {
            group: re("group")?,
            version: re("version")?,
            kind: re("kind")?,
            name: re("name")?,
            namespace: re("namespace")?,
            labels: sel("labelSelector")?,
            annotations: sel("annotationSelector")?,
        })
    }

    fn matches(&self, r: &Res) -> bool {
        let ok = |re: &Option<regex::Regex>, v: &str| re.as_ref().is_none_or(|re| re.is_match(v));
        ok(&self.group, r.group())
            && ok(&self.version, r.version())
            && ok(&self.kind, r.kind())
            && (self.name.is_none()
                || ok(&self.name, r.name())
                || r.prev_names.iter().any(|n| ok(&self.name, n)))
            && ok(&self.namespace, r.namespace().unwrap_or(""))
            && reqs_match(&self.labels, r.obj.pointer("/metadata/labels"))
            && reqs_match(&self.annotations, r.obj.pointer("/metadata/annotations"))
    }
}

fn reqs_match(reqs: &[Req], m: Option<&Value>) -> bool {
    let get = |k: &str| m.and_then(|m| m.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Req::Eq(k, v) => get(k) == Some(v),
        Req::Ne(k, v) => get(k) != Some(v),
        Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
        Req::Exists(k) => get(k).is_some(),
        Req::NotExists(k) => get(k).is_none(),
    })
}

/// A Kubernetes label selector string.
fn parse_selector(s: &str) -> Result<Vec<Req>, String> {
    let mut out = Vec::new();
    // Split on commas outside parentheses.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("{p:?}: expected (values)"))?;
            Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
        };
        if let Some(k) = p.strip_prefix('!') {
            out.push(Req::NotExists(k.trim().to_owned()));
        } else if let Some((k, v)) = p.split_once("!=") {
            out.push(Req::Ne(k.trim().to_owned(), v.trim().to_owned()));
        } else if let Some((k, v)) = p.split_once("==") {
            out.push(Req::Eq(k.trim().to_owned(), v.trim().to_owned()));
        } else if let Some((k, v)) = p.split_once('=') {
            out.push(Req::Eq(k.trim().to_owned(), v.trim().to_owned()));
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            out.push(Req::NotIn(k.trim().to_owned(), set(rest)?));
        } else if let Some((k, rest)) = p.split_once(" in ") {
            out.push(Req::In(k.trim().to_owned(), set(rest)?));
        } else if p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            out.push(Req::Exists(p.to_owned()));
        } else {
            return Err(format!("{p:?} is not a selector requirement"));
        }
    }
    Ok(out)
}

fn string_map(
    v: &Value,
    kfile: &Path,
    field: &str,
) -> Result<Vec<(String, String)>, KustomizeError> {
    match v {
        Value::Null => Ok(vec![]),
        Value::Object(m) => Ok(m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    },
                )
            })
            .collect()),
        _ => Err(kerr(kfile, Some(field), "must be a map of strings")),
    }
}

fn namespace(rs: &mut [Res], ns: &str) {
    for r in rs.iter_mut() {
        if r.group().is_empty() && r.kind() == "Namespace" {
            r.set_name(ns.to_owned());
            continue;
        }
        if !is_cluster_scoped(r.group(), r.kind()) {
            r.set_namespace(ns);
        }
        // RBAC subjects and webhook services follow their object at the end of the build
        // (nameref); an APIService's service namespace is set outright, as kustomize does.
        if (r.group(), r.kind()) == ("apiregistration.k8s.io", "APIService") {
            at_path(&mut r.obj, &["spec", "service"], true, &mut |m| {
                if let Value::Object(m) = m {
                    m.insert("namespace".into(), Value::String(ns.to_owned()));
                }
            });
        }
    }
}

/// Visits the map at `path` (lists along the way are entered element by element),
/// creating missing maps when `create`.
pub(super) fn at_path(v: &mut Value, path: &[&str], create: bool, f: &mut dyn FnMut(&mut Value)) {
    match v {
        Value::Array(a) => {
            for x in a.iter_mut() {
                at_path(x, path, create, f);
            }
        }
        Value::Object(m) => {
            let Some((first, rest)) = path.split_first() else {
                f(v);
                return;
            };
            if !m.contains_key(*first) {
                if !create {
                    return;
                }
                m.insert((*first).to_owned(), Value::Object(Map::new()));
            }
            if let Some(next) = m.get_mut(*first) {
                if next.is_null() && create {
                    *next = Value::Object(Map::new());
                }
                at_path(next, rest, create, f);
            }
        }
        _ => {}
    }
}

/// One entry of `labels[].fields`: where else the pairs go, for which objects.
struct LabelField {
    group: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    path: Vec<String>,
    create: bool,
}

impl LabelField {
    fn selects(&self, r: &Res) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        is(&self.group, r.group()) && is(&self.version, r.version()) && is(&self.kind, r.kind())
    }
}

/// Parses `labels[i].fields`: `path` (slash-separated, `\/` for a slash inside a key),
/// optional `group`, `version`, `kind` and `create`.
fn label_fields(
    v: Option<&Value>,
    kfile: &Path,
    field: &str,
) -> Result<Vec<LabelField>, KustomizeError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(kerr(kfile, Some(field), "must be a list")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, f) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Value::Object(f) = f else {
            return Err(kerr(kfile, Some(&at), "must be a map"));
        };
        let text = |key: &str| -> Result<Option<String>, KustomizeError> {
            match f.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(kerr(
                    kfile,
                    Some(&format!("{at}.{key}")),
                    "must be a string",
                )),
            }
        };
        for key in f.keys() {
            if !matches!(
                key.as_str(),
                "path" | "group" | "version" | "kind" | "create"
            ) {
                return Err(kerr(kfile, Some(&format!("{at}.{key}")), "unknown field"));
            }
        }
        let Some(path) = text("path")? else {
            return Err(kerr(kfile, Some(&format!("{at}.path")), "is required"));
        };
        let create = match f.get("create") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(kerr(
                    kfile,
                    Some(&format!("{at}.create")),
                    "must be true or false",
                ));
            }
        };
        out.push(LabelField {
            group: text("group")?,
            version: text("version")?,
            kind: text("kind")?,
            path: split_field_path(&path),
            create,
        });
    }
    Ok(out)
}

/// Splits a field path on `/`, keeping `\/` as a slash inside a key.
fn split_field_path(p: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'/') => {
                chars.next();
                if let Some(s) = out.last_mut() {
                    s.push('/');
                }
            }
            '/' => out.push(String::new()),
            c => {
                if let Some(s) = out.last_mut() {
                    s.push(c);
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn put_pairs(pairs: &[(String, String)]) -> impl FnMut(&mut Value) + '_ {
    move |m: &mut Value| {
        if let Value::Object(m) = m {
            for (k, v) in pairs {
                m.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
}

fn workload_kind(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet"
    )
}

fn add_labels(obj: &mut Value, pairs: &[(String, String)], selectors: bool, templates: bool) {
    if pairs.is_empty() {
        return;
    }
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut f = put_pairs(pairs);
    at_path(obj, &["metadata", "labels"], true, &mut f);
    if templates {
        match kind.as_str() {
            k if workload_kind(k) || k == "ReplicationController" || k == "Job" => {
                at_path(
                    obj,
                    &["spec", "template", "metadata", "labels"],
                    true,
                    &mut f,
                );
            }
            "CronJob" => {
                at_path(
                    obj,
                    &["spec", "jobTemplate", "metadata", "labels"],
                    true,
                    &mut f,
                );
                at_path(
                    obj,
                    &[
                        "spec",
                        "jobTemplate",
                        "spec",
                        "template",
                        "metadata",
                        "labels",
                    ],
                    true,
                    &mut f,
                );
            }
            _ => {}
        }
        if kind == "StatefulSet" && selectors {
            at_path(
                obj,
                &["spec", "volumeClaimTemplates", "metadata", "labels"],
                true,
                &mut f,
            );
        }
    }
    if !selectors {
        return;
    }
    match kind.as_str() {
        "Service" => at_path(obj, &["spec", "selector"], true, &mut f),
        "ReplicationController" => at_path(obj, &["spec", "selector"], true, &mut f),
        k if workload_kind(k) => {
            at_path(obj, &["spec", "selector", "matchLabels"], true, &mut f);
            for aff in ["podAffinity", "podAntiAffinity"] {
                at_path(
                    obj,
                    &[
                        "spec",
                        "template",
                        "spec",
                        "affinity",
                        aff,
                        "preferredDuringSchedulingIgnoredDuringExecution",
                        "podAffinityTerm",
                        "labelSelector",
                        "matchLabels",
                    ],
                    false,
                    &mut f,
                );
                at_path(
                    obj,
                    &[
                        "spec",
                        "template",
                        "spec",
                        "affinity",
                        aff,
                        "requiredDuringSchedulingIgnoredDuringExecution",
                        "labelSelector",
                        "matchLabels",
                    ],
                    false,
                    &mut f,
                );
            }
        }
        "Job" => at_path(obj, &["spec", "selector", "matchLabels"], false, &mut f),
        "CronJob" => at_path(
            obj,
            &["spec", "jobTemplate", "spec", "selector", "matchLabels"],
            false,
            &mut f,
        ),
        "PodDisruptionBudget" => at_path(obj, &["spec", "selector", "matchLabels"], false, &mut f),
        "NetworkPolicy" => {
            at_path(obj, &["spec", "podSelector", "matchLabels"], false, &mut f);
            at_path(
                obj,
                &["spec", "ingress", "from", "podSelector", "matchLabels"],
                false,
                &mut f,
            );
            at_path(
                obj,
                &["spec", "egress", "to", "podSelector", "matchLabels"],
                false,
                &mut f,
            );
        }
        _ => {}
    }
}

fn add_annotations(obj: &mut Value, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        return;
    }
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut f = put_pairs(pairs);
    at_path(obj, &["metadata", "annotations"], true, &mut f);
    match kind.as_str() {
        k if workload_kind(k) || k == "ReplicationController" || k == "Job" => {
            at_path(
                obj,
                &["spec", "template", "metadata", "annotations"],
                true,
                &mut f,
            );
        }
        "CronJob" => {
            at_path(
                obj,
                &["spec", "jobTemplate", "metadata", "annotations"],
                true,
                &mut f,
            );
            at_path(
                obj,
                &[
                    "spec",
                    "jobTemplate",
                    "spec",
                    "template",
                    "metadata",
                    "annotations",
                ],
                true,
                &mut f,
            );
        }
        _ => {}
    }
}

struct ImageRule {
    name: String,
    new_name: Option<String>,
    new_tag: Option<String>,
    digest: Option<String>,
}

/// Splits an image reference into name, tag and digest.
fn split_image(s: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..]), digest),
        None => (rest, None, digest),
    }
}

fn images(obj: &mut Value, rule: &ImageRule) {
    let mut f = |c: &mut Value| {
        let Some(Value::String(img)) = c.get_mut("image") else {
            return;
        };
        let (name, tag, digest) = split_image(img);
        if name != rule.name {
            return;
        }
        let mut out = rule.new_name.clone().unwrap_or_else(|| name.to_owned());
        if let Some(d) = &rule.digest {
            out.push('@');
            out.push_str(d);
        } else if let Some(t) = &rule.new_tag {
            out.push(':');
            out.push_str(t);
        } else {
            if let Some(t) = tag {
                out.push(':');
                out.push_str(t);
            }
            if let Some(d) = digest {
                out.push('@');
                out.push_str(d);
            }
        }
        *img = out;
    };
    for base in [
        &["spec"][..],
        &["spec", "template", "spec"][..],
        &["spec", "jobTemplate", "spec", "template", "spec"][..],
    ] {
        for list in ["containers", "initContainers"] {
            let mut p = base.to_vec();
            p.push(list);
            at_path(obj, &p, false, &mut f);
        }
    }
}

const ORDER_FIRST: [&str; 22] = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const ORDER_LAST: [&str; 2] = [
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

fn kind_rank(kind: &str) -> i64 {
    if let Some(i) = ORDER_FIRST.iter().position(|k| *k == kind) {
        return i as i64 - ORDER_FIRST.len() as i64;
    }
    if let Some(i) = ORDER_LAST.iter().position(|k| *k == kind) {
        return 1 + i as i64;
    }
    0
}

/// kustomize's legacy output order.
pub(super) fn legacy_sort(rs: &mut [Res]) {
    rs.sort_by(|a, b| {
        let ka = (kind_rank(a.kind()), gvk_string(a));
        let kb = (kind_rank(b.kind()), gvk_string(b));
        ka.cmp(&kb)
            // kustomize writes an empty namespace as "~X" in ids, so it sorts last.
            .then_with(|| {
                a.namespace()
                    .unwrap_or("~X")
                    .cmp(b.namespace().unwrap_or("~X"))
            })
            .then_with(|| a.name().cmp(b.name()))
    });
}

fn gvk_string(r: &Res) -> String {
    // kustomize's Gvk.String(): empty parts sort last as "~G", "~V", "~K".
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_owned()
        } else {
            s.to_owned()
        }
    };
    format!(
        "{}_{}_{}",
        or(r.group(), "~G"),
        or(r.version(), "~V"),
        or(r.kind(), "~K")
    )
}
