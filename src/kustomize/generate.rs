//! configMapGenerator and secretGenerator, and kustomize's content hash suffix.

use std::path::Path;

use base64::Engine;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{Builder, KustomizeError, Res, SecretTable, kerr, opt_str, str_list};

/// One generated value: text for ConfigMaps (or binary, base64), always base64 for Secrets.
enum Data {
    Text(Zeroizing<String>),
    Binary(Zeroizing<Vec<u8>>),
}

pub(super) fn run(
    b: &mut Builder<'_>,
    dir: &Path,
    kfile: &Path,
    k: &Map<String, Value>,
    rs: &mut Vec<Res>,
) -> Result<(), KustomizeError> {
    let global = match k.get("generatorOptions") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(kerr(kfile, Some("generatorOptions"), "must be a map")),
    };
    for (field, kind) in [
        ("configMapGenerator", "ConfigMap"),
        ("secretGenerator", "Secret"),
    ] {
        let entries = match k.get(field) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(a)) => a,
            Some(_) => return Err(kerr(kfile, Some(field), "must be a list")),
        };
        for (i, e) in entries.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let Value::Object(e) = e else {
                return Err(kerr(kfile, Some(&at), "must be a map"));
            };
            generate_one(b, dir, kfile, &at, kind, e, &global, rs)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn generate_one(
    b: &mut Builder<'_>,
    dir: &Path,
    kfile: &Path,
    at: &str,
    kind: &str,
    e: &Map<String, Value>,
    global: &Map<String, Value>,
    rs: &mut Vec<Res>,
) -> Result<(), KustomizeError> {
    for key in e.keys() {
        if !matches!(
            key.as_str(),
            "name"
                | "namespace"
                | "behavior"
                | "files"
                | "literals"
                | "envs"
                | "env"
                | "options"
                | "type"
        ) {
            return Err(kerr(kfile, Some(&format!("{at}.{key}")), "unknown field"));
        }
    }
    let name = opt_str(e, "name", kfile)?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            kerr(
                kfile,
                Some(&format!("{at}.name")),
                "a generator needs a name",
            )
        })?
        .to_owned();
    let namespace = opt_str(e, "namespace", kfile)?.map(str::to_owned);
    let behavior = opt_str(e, "behavior", kfile)?.unwrap_or("create");
    if !matches!(behavior, "create" | "merge" | "replace" | "") {
        return Err(kerr(
            kfile,
            Some(&format!("{at}.behavior")),
            format!("{behavior:?} is not create, merge or replace"),
        ));
    }
    let secret = kind == "Secret";
    let mut data: Vec<(String, Data)> = Vec::new();
    let mut push = |key: String, d: Data, field: &str| -> Result<(), KustomizeError> {
        if data.iter().any(|(k, _)| *k == key) {
            return Err(kerr(
                kfile,
                Some(field),
                format!("duplicate key {key:?} in {name:?}"),
            ));
        }
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(kerr(
                kfile,
                Some(field),
                format!("{key:?} is not a valid data key"),
            ));
        }
        data.push((key, d));
        Ok(())
    };
    let mut envs = str_list(e, "envs", kfile)?;
    if let Some(env) = opt_str(e, "env", kfile)? {
        envs.push(env.to_owned());
    }
    // kustomize's order: literals, then files, then env files.
    for (j, lit) in str_list(e, "literals", kfile)?.into_iter().enumerate() {
        let field = format!("{at}.literals[{j}]");
        let Some((key, val)) = lit.split_once('=') else {
            return Err(kerr(kfile, Some(&field), "a literal is KEY=VALUE"));
        };
        let val = strip_quotes(val);
        push(
            key.to_owned(),
            Data::Text(Zeroizing::new(val.to_owned())),
            &field,
        )?;
    }
    for (j, f) in str_list(e, "files", kfile)?.into_iter().enumerate() {
        let field = format!("{at}.files[{j}]");
        let (key, path) = match f.split_once('=') {
            Some((k, p)) => (k.to_owned(), p.to_owned()),
            None => (
                Path::new(&f)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_owned(),
                f.clone(),
            ),
        };
        let bytes = read_input(b, dir, &path, kfile, &field)?;
        let d = match std::str::from_utf8(&bytes) {
            Ok(s) => Data::Text(Zeroizing::new(s.to_owned())),
            Err(_) => Data::Binary(bytes),
        };
        push(key, d, &field)?;
    }
    for (j, f) in envs.iter().enumerate() {
        let field = format!("{at}.envs[{j}]");
        let bytes = read_input(b, dir, f, kfile, &field)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| kerr(kfile, Some(&field), format!("{f:?} is not UTF-8")))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, val)) = line.split_once('=') else {
                return Err(kerr(
                    kfile,
                    Some(&field),
                    format!(
                        "{f:?} line {}: not KEY=VALUE (values from the environment are not read)",
                        n + 1
                    ),
                ));
            };
            if key.contains(char::is_whitespace) {
                return Err(kerr(
                    kfile,
                    Some(&field),
                    format!("{f:?} line {}: invalid key", n + 1),
                ));
            }
            push(
                key.to_owned(),
                Data::Text(Zeroizing::new(val.to_owned())),
                &field,
            )?;
        }
    }

    // Options: the entry's own override the kustomization's generatorOptions.
    let opts = match e.get("options") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(kerr(kfile, Some(&format!("{at}.options")), "must be a map")),
    };
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for src in [global, &opts] {
        for (key, dst) in [("labels", &mut labels), ("annotations", &mut annotations)] {
            if let Some(Value::Object(m)) = src.get(key) {
                for (k, v) in m {
                    dst.insert(k.clone(), Value::String(scalar_text(v)));
                }
            }
        }
    }
    let flag = |key: &str| -> Option<bool> {
        opts.get(key)
            .and_then(Value::as_bool)
            .or_else(|| global.get(key).and_then(Value::as_bool))
    };
    let no_hash = flag("disableNameSuffixHash").unwrap_or(false);
    let immutable = flag("immutable").unwrap_or(false);

    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::String("v1".into()));
    obj.insert("kind".into(), Value::String(kind.into()));
    let mut meta = Map::new();
    meta.insert("name".into(), Value::String(name.clone()));
    if let Some(ns) = &namespace {
        meta.insert("namespace".into(), Value::String(ns.clone()));
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    obj.insert("metadata".into(), Value::Object(meta));
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut text_data = Map::new();
    let mut bin_data = Map::new();
    for (key, d) in data {
        if secret {
            let enc = Zeroizing::new(match &d {
                Data::Text(t) => b64.encode(t.as_bytes()),
                Data::Binary(bytes) => b64.encode(bytes.as_slice()),
            });
            text_data.insert(key, Value::String(b.secrets.put(enc)));
        } else {
            match d {
                Data::Text(t) => {
                    text_data.insert(key, Value::String(t.to_string()));
                }
                Data::Binary(bytes) => {
                    bin_data.insert(key, Value::String(b64.encode(bytes.as_slice())));
                }
            }
        }
    }
    obj.insert("data".into(), Value::Object(text_data));
    if !bin_data.is_empty() {
        obj.insert("binaryData".into(), Value::Object(bin_data));
    }
    if secret {
        let ty = opt_str(e, "type", kfile)?.unwrap_or("Opaque");
        obj.insert("type".into(), Value::String(ty.to_owned()));
    }
    if immutable {
        obj.insert("immutable".into(), Value::Bool(true));
    }
    let new = Res {
        obj: Value::Object(obj),
        prev_names: vec![],
        prev_namespaces: vec![],
        origin: kfile.to_path_buf(),
        sops: None,
        generated_secret: secret,
        needs_hash: !no_hash,
        generated: true,
        written: None,
        renamed_by: None,
    };

    let existing = rs.iter().position(|r| {
        r.kind() == kind
            && r.group().is_empty()
            && r.has_name(&name)
            && (namespace.is_none() || r.namespace() == namespace.as_deref())
    });
    match (behavior, existing) {
        ("create" | "", Some(_)) => Err(kerr(
            kfile,
            Some(at),
            format!(
                "may not add resource with an already registered id: {kind} {name:?} (use behavior: merge or replace)"
            ),
        )),
        ("create" | "", None) => {
            rs.push(new);
            Ok(())
        }
        (_, None) => Err(kerr(
            kfile,
            Some(at),
            format!("behavior {behavior}: there is no {kind} {name:?} to {behavior}"),
        )),
        (_, Some(i)) => {
            let old = &mut rs[i];
            let Value::Object(mut nobj) = new.obj else {
                return Ok(());
            };
            let oobj = old.obj.as_object_mut();
            let Some(oobj) = oobj else { return Ok(()) };
            if behavior == "merge" {
                for key in ["data", "binaryData"] {
                    if let Some(Value::Object(nd)) = nobj.remove(key) {
                        let od = oobj
                            .entry(key.to_owned())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(od) = od {
                            for (k, v) in nd {
                                od.insert(k, v);
                            }
                        }
                    }
                }
            } else {
                for key in ["data", "binaryData"] {
                    match nobj.remove(key) {
                        Some(v) => {
                            oobj.insert(key.to_owned(), v);
                        }
                        None => {
                            oobj.shift_remove(key);
                        }
                    }
                }
            }
            for key in ["labels", "annotations"] {
                if let Some(Value::Object(nm)) =
                    nobj.get("metadata").and_then(|m| m.get(key)).cloned()
                    && let Some(meta) = super::meta_mut(&mut old.obj)
                {
                    let om = meta
                        .entry(key.to_owned())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(om) = om {
                        for (k, v) in nm {
                            om.insert(k, v);
                        }
                    }
                }
            }
            if immutable && let Some(o) = old.obj.as_object_mut() {
                o.insert("immutable".into(), Value::Bool(true));
            }
            old.generated_secret |= secret;
            // As kustomize: once either side disables the suffix, it stays off.
            old.needs_hash = old.needs_hash && !no_hash;
            old.generated = true;
            Ok(())
        }
    }
}

fn strip_quotes(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Reads a generator input inside the kustomization's directory; SOPS-encrypted inputs
/// are opened in memory.
fn read_input(
    b: &mut Builder<'_>,
    dir: &Path,
    name: &str,
    kfile: &Path,
    field: &str,
) -> Result<Zeroizing<Vec<u8>>, KustomizeError> {
    let (real, bytes) = b.read_restricted(dir, name, kfile, field)?;
    b.charge(bytes.len(), kfile, field)?;
    let format = crate::sops::Format::for_path(&real);
    if crate::sops::load_encrypted(&bytes, format).is_ok() {
        let Some(opener) = b.opts.sops else {
            return Err(kerr(
                kfile,
                Some(field),
                format!("{name:?} is SOPS-encrypted and no keys are at hand"),
            ));
        };
        return opener
            .open(&real, &bytes)
            .map_err(|m| kerr(kfile, Some(field), format!("{name:?}: {m}")));
    }
    Ok(Zeroizing::new(bytes))
}

/// Appends kustomize's content hash to every generated object that wants one.
pub(super) fn add_hashes(rs: &mut [Res], secrets: &SecretTable) {
    for r in rs.iter_mut() {
        if !r.needs_hash {
            continue;
        }
        let h = content_hash(&r.obj, secrets);
        let name = format!("{}-{h}", r.name());
        r.set_name(name);
    }
}

/// kustomize's hash: SHA-256 of Go's JSON encoding of {kind, name: "", data, ...} (keys
/// sorted), the first ten hex digits with vowel-like digits swapped out.
pub(crate) fn content_hash(obj: &Value, secrets: &SecretTable) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let mut out = Zeroizing::new(String::new());
    out.push('{');
    let mut first = true;
    let mut field = |out: &mut String, k: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        go_string(out, k);
        out.push(':');
    };
    let map_field = |out: &mut String, m: Option<&Value>| {
        out.push('{');
        if let Some(Value::Object(m)) = m {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_string(out, k);
                out.push(':');
                let v = m.get(*k).and_then(Value::as_str).unwrap_or("");
                go_string(out, secrets.lookup(v).unwrap_or(v));
            }
        }
        out.push('}');
    };
    let bin = obj
        .get("binaryData")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty());
    if kind == "ConfigMap" && bin.is_some() {
        field(&mut out, "binaryData");
        map_field(&mut out, obj.get("binaryData"));
    }
    field(&mut out, "data");
    map_field(&mut out, obj.get("data"));
    if let Some(im) = obj.get("immutable").and_then(Value::as_bool) {
        field(&mut out, "immutable");
        out.push_str(if im { "true" } else { "false" });
    }
    field(&mut out, "kind");
    go_string(&mut out, kind);
    field(&mut out, "name");
    go_string(&mut out, "");
    if kind == "Secret" {
        field(&mut out, "type");
        go_string(
            &mut out,
            obj.get("type").and_then(Value::as_str).unwrap_or(""),
        );
    }
    out.push('}');
    let digest = ring::digest::digest(&ring::digest::SHA256, out.as_bytes());
    digest.as_ref()[..5]
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .map(|n| match n {
            0 => 'g',
            1 => 'h',
            3 => 'k',
            10 => 'm',
            14 => 't',
            n => char::from_digit(n as u32, 16).unwrap_or('0'),
        })
        .collect()
}

/// Go's `json.Marshal` for a string (HTML-safe escaping included).
fn go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
