//! `GET /openapi/v2`: the Swagger 2.0 document kubectl falls back to.
//!
//! kubectl decides between server-side and client-side field validation from the PATCH
//! operation of a kind in OpenAPI v3. Kinds without a PATCH (the review kinds, TokenRequest)
//! are not found there, so kubectl asks v2, and without a v2 document it refuses to create them
//! unless `--validate=false`. This document carries what that check reads: every PATCH
//! operation with its `x-kubernetes-group-version-kind` and `fieldValidation` parameter. It
//! holds no definitions, so kubectl's client-side schema check skips the kinds (it validates
//! only kinds it finds). kubectl asks for the gnostic protobuf encoding; JSON is served to
//! clients that ask for it.

use serde_json::{Map, Value, json};

use crate::resources::{Registry, ResourceDef};

/// The protobuf media type as served. kubectl asks for the older spelling with `@v1.0`, which
/// Go's media type parser rejects in a Content-Type, so the response uses the dotted one.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// One PATCH path of the document.
struct PatchPath {
    path: String,
    group: String,
    version: String,
    kind: String,
}

fn patch_paths(registry: &Registry) -> Vec<PatchPath> {
    let mut out = Vec::new();
    for d in registry.all().iter() {
        if d.is_virtual() || !d.has_verb("patch") {
            continue;
        }
        out.push(PatchPath {
            path: item_path(d),
            group: d.group.clone(),
            version: d.version.clone(),
            kind: d.kind.clone(),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn item_path(d: &ResourceDef) -> String {
    let base = format!("/{}", crate::openapi::gv_path(&d.group, &d.version));
    if d.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
    } else {
        format!("{base}/{}/{{name}}", d.plural)
    }
}

fn info_version() -> String {
    crate::discovery::version()["gitVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const QUERY_PARAMS: [&str; 4] = ["dryRun", "fieldManager", "fieldValidation", "force"];

/// The document as JSON.
pub fn json_document(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for p in patch_paths(registry) {
        let params: Vec<Value> = QUERY_PARAMS
            .iter()
            .map(|n| json!({"in": "query", "name": n, "type": "string", "uniqueItems": true}))
            .collect();
        paths.insert(
            p.path,
            json!({"patch": {
                "operationId": format!("patch{}", p.kind),
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": p.group, "kind": p.kind, "version": p.version},
            }}),
        );
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": info_version()},
        "paths": paths,
        "definitions": {},
    })
}

/// Protobuf wire writer for the few message shapes used here.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn bytes(&mut self, field: u64, b: &[u8]) {
        self.varint(field << 3 | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, field: u64, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn message(&mut self, field: u64, m: Pb) {
        self.bytes(field, &m.0);
    }
}

/// `NamedAny{name, value: Any{yaml}}`, how gnostic carries vendor extensions.
fn named_any(name: &str, yaml: &str) -> Pb {
    let mut any = Pb::default();
    any.string(2, yaml);
    let mut n = Pb::default();
    n.string(1, name);
    n.message(2, any);
    n
}

/// `ParametersItem{parameter: Parameter{non_body_parameter: NonBodyParameter{
/// query_parameter_sub_schema: {in, name, type}}}}`.
fn query_parameter(name: &str) -> Pb {
    let mut q = Pb::default();
    q.string(2, "query");
    q.string(4, name);
    q.string(6, "string");
    let mut non_body = Pb::default();
    non_body.message(3, q);
    let mut param = Pb::default();
    param.message(2, non_body);
    let mut item = Pb::default();
    item.message(1, param);
    item
}

/// The document in gnostic's `openapi.v2.Document` protobuf encoding.
pub fn protobuf_document(registry: &Registry) -> Vec<u8> {
    let mut doc = Pb::default();
    doc.string(1, "2.0");
    let mut info = Pb::default();
    info.string(1, "Kubernetes");
    info.string(2, &info_version());
    doc.message(2, info);
    let mut paths = Pb::default();
    for p in patch_paths(registry) {
        let mut op = Pb::default();
        op.string(5, &format!("patch{}", p.kind));
        for name in QUERY_PARAMS {
            op.message(8, query_parameter(name));
        }
        op.message(13, named_any("x-kubernetes-action", "patch\n"));
        // yaml.v2 reads this back into map[string]string; quote every value so an empty core
        // group stays a string.
        let gvk = format!(
            "group: \"{}\"\nkind: \"{}\"\nversion: \"{}\"\n",
            p.group, p.kind, p.version
        );
        op.message(13, named_any("x-kubernetes-group-version-kind", &gvk));
        let mut item = Pb::default();
        item.message(8, op);
        let mut named = Pb::default();
        named.string(1, &p.path);
        named.message(2, item);
        paths.message(2, named);
    }
    doc.message(8, paths);
    doc.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal reader: (field, payload) pairs of length-delimited fields.
    fn fields(mut b: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let varint = |b: &mut &[u8]| {
            let mut v = 0u64;
            let mut shift = 0;
            while let Some((&x, rest)) = b.split_first() {
                *b = rest;
                v |= u64::from(x & 0x7f) << shift;
                shift += 7;
                if x < 0x80 {
                    break;
                }
            }
            v
        };
        while !b.is_empty() {
            let key = varint(&mut b);
            assert_eq!(key & 7, 2, "only length-delimited fields are written");
            let len = varint(&mut b) as usize;
            out.push((key >> 3, b[..len].to_vec()));
            b = &b[len..];
        }
        out
    }

    #[test]
    fn protobuf_carries_patch_gvk_and_field_validation() {
        let r = Registry::new();
        let doc = fields(&protobuf_document(&r));
        assert_eq!(doc[0], (1, b"2.0".to_vec()));
        let paths = &doc.iter().find(|(f, _)| *f == 8).expect("paths").1;
        let ns = fields(paths)
            .into_iter()
            .map(|(_, named)| fields(&named))
            .find(|n| n[0].1 == b"/api/v1/namespaces/{name}")
            .expect("namespace path");
        let op = fields(&fields(&ns[1].1)[0].1);
        let params: Vec<String> = op
            .iter()
            .filter(|(f, _)| *f == 8)
            .map(|(_, item)| {
                let q = fields(&fields(&fields(&fields(item)[0].1)[0].1)[0].1);
                String::from_utf8_lossy(&q.iter().find(|(f, _)| *f == 4).expect("name").1)
                    .into_owned()
            })
            .collect();
        assert!(
            params.contains(&"fieldValidation".to_string()),
            "{params:?}"
        );
        let gvk = op
            .iter()
            .filter(|(f, _)| *f == 13)
            .map(|(_, n)| fields(n))
            .find(|n| n[0].1 == b"x-kubernetes-group-version-kind")
            .expect("gvk extension");
        let yaml = String::from_utf8_lossy(&fields(&gvk[1].1)[0].1).into_owned();
        assert_eq!(yaml, "group: \"\"\nkind: \"Namespace\"\nversion: \"v1\"\n");
    }

    #[test]
    fn json_lists_patchable_kinds_only() {
        let r = Registry::new();
        let doc = json_document(&r);
        assert_eq!(
            doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]["x-kubernetes-group-version-kind"]
                ["kind"],
            "Deployment"
        );
        let paths = doc["paths"].as_object().expect("paths");
        assert!(!paths.keys().any(|k| k.contains("tokenreviews")));
    }
}
