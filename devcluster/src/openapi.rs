//! Minimal OpenAPI v3, generated from the resource table: enough for kubectl to learn that
//! every resource supports server-side field validation.

use serde_json::{Map, Value, json};

use crate::resources::{Registry, ResourceDef};

/// `api/v1` or `apis/<g>/<v>`.
pub(crate) fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash(doc: &Value) -> String {
    let d = ring::digest::digest(&ring::digest::SHA512, doc.to_string().as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

fn all_gvs(registry: &Registry) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for d in registry.all().iter() {
        let gv = (d.group.clone(), d.version.clone());
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out
}

/// `GET /openapi/v3`.
pub fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (g, v) in all_gvs(registry) {
        let p = gv_path(&g, &v);
        if let Some(doc) = document(registry, &g, &v) {
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}

/// Resolve `/openapi/v3/<rest>` to a group and version.
pub fn parse_path(rest: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        ["api", v] => Some((String::new(), v.to_string())),
        ["apis", g, v] => Some((g.to_string(), v.to_string())),
        _ => None,
    }
}

fn operation(d: &ResourceDef, action: &str, with_validation: bool) -> Value {
    let mut params = vec![json!({"name":"dryRun","in":"query","schema":{"type":"string"}})];
    if with_validation {
        params.push(json!({"name":"fieldValidation","in":"query","schema":{"type":"string"}}));
        params.push(json!({"name":"fieldManager","in":"query","schema":{"type":"string"}}));
    }
    if action == "patch" {
        params.push(json!({"name":"force","in":"query","schema":{"type":"boolean"}}));
    }
    json!({
        "operationId": format!("{action}{}", d.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": d.group, "version": d.version, "kind": d.kind},
        "parameters": params,
        "responses": {"200": {"description": "OK"}}
    })
}

fn schema_name(d: &ResourceDef) -> String {
    let g = if d.group.is_empty() {
        "core"
    } else {
        d.group.as_str()
    };
    format!("{g}.{}.{}", d.version, d.kind)
}

/// The per-group-version document, or None for an unknown GV.
pub fn document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs = registry.in_group_version(group, version);
    if defs.is_empty() {
        return None;
    }
    let base = format!("/{}", gv_path(group, version));
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for d in &defs {
        let collection = if d.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", d.plural)
        } else {
            format!("{base}/{}", d.plural)
        };
        paths.insert(
            collection.clone(),
            json!({"post": operation(d, "post", true)}),
        );
        if !d.is_virtual() {
            paths.insert(
                format!("{collection}/{{name}}"),
                json!({
                    "get": operation(d, "get", false),
                    "put": operation(d, "put", true),
                    "patch": operation(d, "patch", true),
                    "delete": operation(d, "delete", false),
                }),
            );
            if d.has_status_subresource {
                paths.insert(
                    format!("{collection}/{{name}}/status"),
                    json!({"patch": operation(d, "patch", true), "put": operation(d, "put", true)}),
                );
            }
        }
        let mut schema = d
            .custom
            .as_ref()
            .and_then(|c| c.schema.clone())
            .unwrap_or_else(|| json!({"type":"object"}));
        if let Some(o) = schema.as_object_mut() {
            o.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": d.group, "version": d.version, "kind": d.kind}]),
            );
        }
        schemas.insert(schema_name(d), schema);
    }
    let info_version = crate::discovery::version()["gitVersion"].clone();
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": info_version},
        "paths": paths,
        "components": {"schemas": schemas}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_documents_carry_gvk_and_field_validation() {
        let r = Registry::new();
        let idx = index(&r);
        let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap_or("");
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        let doc = document(&r, "apps", "v1").unwrap_or_default();
        let p = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(p["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            p["parameters"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["name"] == "fieldValidation"))
        );
        assert_eq!(
            parse_path("apis/apps/v1"),
            Some(("apps".into(), "v1".into()))
        );
    }
}
