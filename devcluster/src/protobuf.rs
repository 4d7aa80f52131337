//! Decoding of the Kubernetes protobuf envelope for the few kinds kubectl sends as
//! protobuf (`kubectl create namespace|configmap|secret`, `auth can-i`, `auth whoami`,
//! `create token`). Responses stay JSON, which client-go accepts.

use serde_json::{Map, Value, json};

use crate::status::ApiError;

const MAGIC: &[u8] = b"k8s\0";

fn bad(what: &str) -> ApiError {
    ApiError::bad_request(format!("unable to decode protobuf body: {what}"))
}

/// One decoded field: number and its raw payload.
enum Field<'a> {
    /// A varint: read past (no kind decoded here needs its value).
    Varint,
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        out |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(bad("varint too long"))
}

fn fields(b: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ApiError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let tag = varint(b, &mut pos)?;
        let (num, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => {
                varint(b, &mut pos)?;
                out.push((num, Field::Varint));
            }
            2 => {
                let len = usize::try_from(varint(b, &mut pos)?).map_err(|_| bad("length"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= b.len())
                    .ok_or_else(|| bad("truncated field"))?;
                out.push((num, Field::Bytes(&b[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return Err(bad("unsupported wire type")),
        }
    }
    Ok(out)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn string_map(entries: &[&[u8]], bytes_values: bool) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for e in entries {
        let mut k = String::new();
        let mut v = Value::String(String::new());
        for (n, f) in fields(e)? {
            if let Field::Bytes(x) = f {
                match n {
                    1 => k = text(x),
                    2 if bytes_values => {
                        use base64::Engine;
                        v = json!(base64::engine::general_purpose::STANDARD.encode(x));
                    }
                    2 => v = json!(text(x)),
                    _ => {}
                }
            }
        }
        m.insert(k, v);
    }
    Ok(Value::Object(m))
}

fn repeated<'a>(fs: &'a [(u64, Field<'a>)], num: u64) -> Vec<&'a [u8]> {
    fs.iter()
        .filter_map(|(n, f)| match f {
            Field::Bytes(b) if *n == num => Some(*b),
            _ => None,
        })
        .collect()
}

fn single<'a>(fs: &'a [(u64, Field<'a>)], num: u64) -> Option<&'a [u8]> {
    repeated(fs, num).into_iter().last()
}

fn object_meta(b: &[u8]) -> Result<Value, ApiError> {
    let fs = fields(b)?;
    let mut m = Map::new();
    for (num, key) in [(1, "name"), (2, "generateName"), (3, "namespace")] {
        if let Some(x) = single(&fs, num) {
            m.insert(key.into(), json!(text(x)));
        }
    }
    let labels = repeated(&fs, 11);
    if !labels.is_empty() {
        m.insert("labels".into(), string_map(&labels, false)?);
    }
    let ann = repeated(&fs, 12);
    if !ann.is_empty() {
        m.insert("annotations".into(), string_map(&ann, false)?);
    }
    let fins: Vec<Value> = repeated(&fs, 14)
        .into_iter()
        .map(|x| json!(text(x)))
        .collect();
    if !fins.is_empty() {
        m.insert("finalizers".into(), Value::Array(fins));
    }
    Ok(Value::Object(m))
}

fn strings(fs: &[(u64, Field<'_>)], num: u64) -> Vec<Value> {
    repeated(fs, num)
        .into_iter()
        .map(|x| json!(text(x)))
        .collect()
}

/// rbac.authorization.k8s.io/v1 PolicyRule.
fn policy_rule(b: &[u8]) -> Result<Value, ApiError> {
    let f = fields(b)?;
    let mut m = Map::new();
    for (n, k) in [
        (1, "verbs"),
        (2, "apiGroups"),
        (3, "resources"),
        (4, "resourceNames"),
        (5, "nonResourceURLs"),
    ] {
        let v = strings(&f, n);
        if !v.is_empty() || n == 1 {
            m.insert(k.into(), Value::Array(v));
        }
    }
    Ok(Value::Object(m))
}

/// meta/v1 LabelSelector.
fn label_selector(b: &[u8]) -> Result<Value, ApiError> {
    let f = fields(b)?;
    let mut m = Map::new();
    let labels = repeated(&f, 1);
    if !labels.is_empty() {
        m.insert("matchLabels".into(), string_map(&labels, false)?);
    }
    let mut exprs = Vec::new();
    for e in repeated(&f, 2) {
        let ef = fields(e)?;
        exprs.push(json!({
            "key": single(&ef, 1).map(text).unwrap_or_default(),
            "operator": single(&ef, 2).map(text).unwrap_or_default(),
            "values": strings(&ef, 3),
        }));
    }
    if !exprs.is_empty() {
        m.insert("matchExpressions".into(), Value::Array(exprs));
    }
    Ok(Value::Object(m))
}

/// Decode an envelope into the JSON object it encodes.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing k8s magic"))?;
    let env = fields(rest)?;
    let tm = fields(single(&env, 1).unwrap_or(&[]))?;
    let api_version = single(&tm, 1).map(text).unwrap_or_default();
    let kind = single(&tm, 2).map(text).unwrap_or_default();
    let raw = fields(single(&env, 2).unwrap_or(&[]))?;
    let mut obj = Map::new();
    obj.insert("kind".into(), json!(kind));
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert(
        "metadata".into(),
        match single(&raw, 1) {
            Some(m) => object_meta(m)?,
            None => json!({}),
        },
    );
    match kind.as_str() {
        // `kubectl create serviceaccount` sends metadata only.
        "Namespace" | "ServiceAccount" => {}
        // `kubectl create role|clusterrole|rolebinding|clusterrolebinding`.
        "Role" | "ClusterRole" => {
            let rules = repeated(&raw, 2)
                .into_iter()
                .map(policy_rule)
                .collect::<Result<Vec<_>, _>>()?;
            obj.insert("rules".into(), Value::Array(rules));
            if let Some(agg) = single(&raw, 3) {
                let f = fields(agg)?;
                let selectors = repeated(&f, 1)
                    .into_iter()
                    .map(label_selector)
                    .collect::<Result<Vec<_>, _>>()?;
                obj.insert(
                    "aggregationRule".into(),
                    json!({"clusterRoleSelectors": selectors}),
                );
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let mut subjects = Vec::new();
            for sb in repeated(&raw, 2) {
                let f = fields(sb)?;
                let mut m = Map::new();
                for (n, k) in [(1, "kind"), (2, "apiGroup"), (3, "name"), (4, "namespace")] {
                    if let Some(x) = single(&f, n) {
                        m.insert(k.into(), json!(text(x)));
                    }
                }
                subjects.push(Value::Object(m));
            }
            if !subjects.is_empty() {
                obj.insert("subjects".into(), Value::Array(subjects));
            }
            let f = fields(single(&raw, 3).unwrap_or(&[]))?;
            obj.insert(
                "roleRef".into(),
                json!({
                    "apiGroup": single(&f, 1).map(text).unwrap_or_default(),
                    "kind": single(&f, 2).map(text).unwrap_or_default(),
                    "name": single(&f, 3).map(text).unwrap_or_default(),
                }),
            );
        }
        "ConfigMap" => {
            let data = repeated(&raw, 2);
            if !data.is_empty() {
                obj.insert("data".into(), string_map(&data, false)?);
            }
            let bin = repeated(&raw, 3);
            if !bin.is_empty() {
                obj.insert("binaryData".into(), string_map(&bin, true)?);
            }
        }
        "Secret" => {
            let data = repeated(&raw, 2);
            if !data.is_empty() {
                obj.insert("data".into(), string_map(&data, true)?);
            }
            if let Some(t) = single(&raw, 3) {
                obj.insert("type".into(), json!(text(t)));
            }
            let sd = repeated(&raw, 4);
            if !sd.is_empty() {
                obj.insert("stringData".into(), string_map(&sd, false)?);
            }
        }
        // The review and token kinds have one decoder, next to the code that answers them.
        "SelfSubjectAccessReview"
        | "SelfSubjectRulesReview"
        | "SelfSubjectReview"
        | "TokenRequest"
        | "SubjectAccessReview"
        | "LocalSubjectAccessReview"
        | "TokenReview" => {
            return crate::auth::decode_k8s_protobuf(body).map_err(|e| {
                ApiError::bad_request(format!("unable to decode protobuf body: {e}"))
            });
        }
        other => {
            return Err(ApiError::unsupported_media(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (protobuf is not supported for {other})"
            )));
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(num << 3) | 2, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_configmap() {
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let label = [field(1, b"app"), field(2, b"web")].concat();
        let meta = [field(1, b"cm"), field(11, &label)].concat();
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let raw = [field(1, &meta), field(2, &entry)].concat();
        let body = [MAGIC.to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode(&body).map_err(|e| e.message);
        assert_eq!(
            v,
            Ok(json!({"kind":"ConfigMap","apiVersion":"v1",
                "metadata":{"name":"cm","labels":{"app":"web"}},"data":{"k":"v"}}))
        );
        assert!(decode(b"nope").is_err());
        assert!(decode(&[MAGIC, &[0x0a, 0x50]].concat()).is_err());
    }
}
