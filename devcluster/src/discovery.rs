//! Discovery: `/version`, legacy `/api` and `/apis` documents, and aggregated discovery
//! (apidiscovery.k8s.io/v2) when the Accept header asks for it.

use serde_json::{Map, Value, json};

use crate::resources::{Registry, ResourceDef};

pub fn version() -> Value {
    json!({
        "major":"1","minor":"37","emulationMajor":"1","emulationMinor":"37",
        "minCompatibilityMajor":"1","minCompatibilityMinor":"36",
        "gitVersion":"v1.37.0-devcluster","gitCommit":"0000000000000000000000000000000000000000",
        "gitTreeState":"clean","buildDate":"2026-01-01T00:00:00Z","goVersion":"go1.25.0",
        "compiler":"gc","platform":"linux/amd64"
    })
}

/// The aggregated-discovery version an Accept header asks for, first match wins.
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let Some(media) = params.first() else {
            continue;
        };
        let has = |p: &str| params.contains(&p);
        if *media == "application/json"
            && has("g=apidiscovery.k8s.io")
            && has("as=APIGroupDiscoveryList")
        {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
        if *media == "application/json" && params.len() == 1 || *media == "*/*" {
            return None;
        }
    }
    None
}

pub fn aggregated_content_type(v: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList")
}

pub fn api_versions(server_address: &str) -> Value {
    json!({"kind":"APIVersions","versions":["v1"],
        "serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":server_address}]})
}

fn gv(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions.iter().map(|v| gv(group, v)).collect();
    json!({"name": group, "versions": vs, "preferredVersion": gv(group, &versions[0])})
}

pub fn api_group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({"kind":"APIGroupList","apiVersion":"v1","groups":groups})
}

pub fn api_group(registry: &Registry, group: &str) -> Option<Value> {
    let (g, vs) = registry.groups().into_iter().find(|(g, _)| g == group)?;
    let mut e = group_entry(&g, &vs);
    if let Some(o) = e.as_object_mut() {
        o.insert("kind".into(), json!("APIGroup"));
        o.insert("apiVersion".into(), json!("v1"));
    }
    Some(e)
}

fn resource_entry(d: &ResourceDef) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(d.plural));
    m.insert("singularName".into(), json!(d.singular));
    m.insert("namespaced".into(), json!(d.namespaced));
    m.insert("kind".into(), json!(d.kind));
    m.insert("verbs".into(), json!(d.verbs));
    if !d.short_names.is_empty() {
        m.insert("shortNames".into(), json!(d.short_names));
    }
    if !d.categories.is_empty() {
        m.insert("categories".into(), json!(d.categories));
    }
    Value::Object(m)
}

pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs = registry.in_group_version(group, version);
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for d in &defs {
        resources.push(resource_entry(d));
        for s in &d.subresources {
            let mut m = Map::new();
            m.insert("name".into(), json!(format!("{}/{}", d.plural, s.name)));
            m.insert("singularName".into(), json!(""));
            m.insert("namespaced".into(), json!(d.namespaced));
            if s.group != d.group || s.version != d.version {
                m.insert("group".into(), json!(s.group));
                m.insert("version".into(), json!(s.version));
            }
            m.insert("kind".into(), json!(s.kind));
            m.insert("verbs".into(), json!(s.verbs));
            resources.push(Value::Object(m));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion":group_version,"resources":resources}),
    )
}

fn aggregated_resource(d: &ResourceDef) -> Value {
    let mut m = Map::new();
    m.insert("resource".into(), json!(d.plural));
    m.insert(
        "responseKind".into(),
        json!({"group":d.group,"version":d.version,"kind":d.kind}),
    );
    m.insert(
        "scope".into(),
        json!(if d.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }),
    );
    m.insert("singularResource".into(), json!(d.singular));
    m.insert("verbs".into(), json!(d.verbs));
    if !d.short_names.is_empty() {
        m.insert("shortNames".into(), json!(d.short_names));
    }
    if !d.categories.is_empty() {
        m.insert("categories".into(), json!(d.categories));
    }
    if !d.subresources.is_empty() {
        let subs: Vec<Value> = d
            .subresources
            .iter()
            .map(|s| {
                json!({"subresource":s.name,
                    "responseKind":{"group":s.group,"version":s.version,"kind":s.kind},
                    "verbs":s.verbs})
            })
            .collect();
        m.insert("subresources".into(), json!(subs));
    }
    Value::Object(m)
}

/// APIGroupDiscoveryList for `/api` (core only) or `/apis` (every group).
pub fn aggregated(registry: &Registry, core: bool, api_version: &str) -> Value {
    let mut items = Vec::new();
    let groups: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".into()])]
    } else {
        registry.groups()
    };
    for (g, vs) in groups {
        let versions: Vec<Value> = vs
            .iter()
            .map(|v| {
                let res: Vec<Value> = registry
                    .in_group_version(&g, v)
                    .iter()
                    .map(|d| aggregated_resource(d))
                    .collect();
                json!({"version":v,"resources":res,"freshness":"Current"})
            })
            .collect();
        let metadata = if g.is_empty() {
            json!({"creationTimestamp":null})
        } else {
            json!({"name":g,"creationTimestamp":null})
        };
        items.push(json!({"metadata":metadata,"versions":versions}));
    }
    json!({"kind":"APIGroupDiscoveryList","apiVersion":format!("apidiscovery.k8s.io/{api_version}"),
        "metadata":{},"items":items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let kubectl =
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(kubectl), Some("v2"));
        let beta = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(beta), Some("v2beta1"));
        assert_eq!(aggregated_version("application/json, */*"), None);
        assert_eq!(aggregated_version(""), None);
    }

    #[test]
    fn legacy_documents_list_subresources() {
        let r = Registry::new();
        let apps = resource_list(&r, "apps", "v1").unwrap_or_default();
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(names.contains(&"deployments") && names.contains(&"deployments/status"));
        assert!(resource_list(&r, "nope", "v1").is_none());
        let agg = aggregated(&r, true, "v2");
        assert_eq!(agg["items"][0]["versions"][0]["version"], "v1");
        assert!(agg["items"][0]["metadata"].get("name").is_none());
    }
}
