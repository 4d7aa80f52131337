//! Topology knowledge of Kubernetes objects: which lists are associative (and by which
//! keys), sets or atomic; which maps are atomic or free-form. Shared by devcluster's
//! server-side apply and strategic merge and by lockstep's kustomize builds.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// One step of a field path, ordered like structured-merge-diff orders path elements.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElem {
    /// Struct field or map key (`f:`).
    Field(String),
    /// Associative-list element, as canonical JSON of its key fields (`k:`).
    Key(String),
    /// Set-list element, as canonical JSON of the value (`v:`).
    Value(String),
    /// Positional element (`i:`); only appears in parsed input and strategic patches.
    Index(usize),
}

pub type Path = Vec<PathElem>;
pub type Set = BTreeSet<Path>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    Granular,
    Atomic,
}

/// Topology knowledge for one kind. Paths passed in contain list-element steps (`Key`, `Value`
/// or `Index`); implementations treat any non-`Field` step as "into the list items".
pub trait Schema {
    fn list_type(&self, path: &[PathElem]) -> ListType;
    fn map_type(&self, path: &[PathElem]) -> MapType;
    fn default_for(&self, path: &[PathElem]) -> Option<Value>;
    /// Whether the last step is a declared struct field (true) or a key of a free-form map.
    /// Map keys are owned as members even when their value is a non-empty object.
    fn is_struct_field(&self, _path: &[PathElem]) -> bool {
        true
    }
    /// Default of an associative-list key field, used when an element omits it.
    fn key_default(&self, _list_path: &[PathElem], _key: &str) -> Option<Value> {
        None
    }
    /// Typed built-ins serialise empty maps and lists as absent (`omitempty`).
    fn omit_empty(&self) -> bool {
        false
    }
    /// Non-pointer structs (and fields without `omitempty`) exist even in an "empty" typed
    /// object, so creating them does not make the writer own the node itself.
    fn always_present(&self, _path: &[PathElem]) -> bool {
        false
    }
}

pub fn field_names(path: &[PathElem]) -> Vec<&str> {
    path.iter()
        .filter_map(|e| match e {
            PathElem::Field(f) => Some(f.as_str()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Built-in schema (§3.4 table)
// ---------------------------------------------------------------------------------------------

struct BuiltinSchema {
    group: String,
    kind: String,
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
const FREE_FORM_MAPS: [&str; 11] = [
    "labels",
    "annotations",
    "data",
    "binaryData",
    "stringData",
    "limits",
    "requests",
    "matchLabels",
    "capacity",
    "allocatable",
    "overhead",
];
const ATOMIC_MAPS: [&str; 5] = [
    "selector",
    "labelSelector",
    "podSelector",
    "namespaceSelector",
    "nodeSelector",
];

impl BuiltinSchema {
    fn pod_spec_prefix(&self) -> Option<&'static [&'static str]> {
        match self.kind.as_str() {
            "Pod" => Some(&["spec"]),
            "PodTemplate" => Some(&["template", "spec"]),
            "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "ReplicaSet"
            | "Job"
            | "ReplicationController" => Some(&["spec", "template", "spec"]),
            "CronJob" => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
            _ => None,
        }
    }

    /// Path relative to the PodSpec, if `names` lies inside one.
    fn pod_rel<'n>(&self, names: &'n [&'n str]) -> Option<&'n [&'n str]> {
        let prefix = self.pod_spec_prefix()?;
        names.strip_prefix(prefix)
    }

    /// Path relative to an ObjectMeta (the object's own or a pod template's).
    fn meta_rel<'n>(&self, names: &'n [&'n str]) -> Option<&'n [&'n str]> {
        if let Some(rest) = names.strip_prefix(&["metadata"][..]) {
            return Some(rest);
        }
        let prefix = self.pod_spec_prefix()?;
        let tmpl = &prefix[..prefix.len() - 1];
        names.strip_prefix(tmpl)?.strip_prefix(&["metadata"][..])
    }

    fn is_service(&self) -> bool {
        self.group.is_empty() && self.kind == "Service"
    }
}

pub fn keys(k: &[&str]) -> ListType {
    ListType::Map(k.iter().map(|s| s.to_string()).collect())
}

impl Schema for BuiltinSchema {
    fn list_type(&self, path: &[PathElem]) -> ListType {
        let names = field_names(path);
        if let Some(rel) = self.meta_rel(&names) {
            match rel {
                ["finalizers"] => return ListType::Set,
                ["ownerReferences"] => return keys(&["uid"]),
                _ => {}
            }
        }
        if names.as_slice() == ["status", "conditions"] {
            return keys(&["type"]);
        }
        if self.is_service() && names.as_slice() == ["spec", "ports"] {
            return keys(&["port", "protocol"]);
        }
        if let Some(rel) = self.pod_rel(&names) {
            match rel {
                [l] if CONTAINER_LISTS.contains(l)
                    || [
                        "volumes",
                        "imagePullSecrets",
                        "resourceClaims",
                        "schedulingGates",
                    ]
                    .contains(l) =>
                {
                    return keys(&["name"]);
                }
                ["hostAliases"] => return keys(&["ip"]),
                ["topologySpreadConstraints"] => {
                    return keys(&["topologyKey", "whenUnsatisfiable"]);
                }
                [c, f] if CONTAINER_LISTS.contains(c) => match *f {
                    "env" => return keys(&["name"]),
                    "ports" => return keys(&["containerPort", "protocol"]),
                    "volumeMounts" => return keys(&["mountPath"]),
                    "volumeDevices" => return keys(&["devicePath"]),
                    _ => {}
                },
                [c, "resources", "claims"] if CONTAINER_LISTS.contains(c) => {
                    return keys(&["name"]);
                }
                _ => {}
            }
        }
        ListType::Atomic
    }

    fn map_type(&self, path: &[PathElem]) -> MapType {
        match path.last() {
            Some(PathElem::Field(f)) if ATOMIC_MAPS.contains(&f.as_str()) => MapType::Atomic,
            _ => MapType::Granular,
        }
    }

    fn default_for(&self, path: &[PathElem]) -> Option<Value> {
        let names = field_names(path);
        match (self.kind.as_str(), names.as_slice()) {
            (
                "Deployment" | "StatefulSet" | "ReplicaSet" | "ReplicationController",
                ["spec", "replicas"],
            ) => return Some(json!(1)),
            ("Deployment" | "StatefulSet" | "DaemonSet", ["spec", "revisionHistoryLimit"]) => {
                return Some(json!(10));
            }
            ("Deployment", ["spec", "progressDeadlineSeconds"]) => return Some(json!(600)),
            ("StatefulSet", ["spec", "podManagementPolicy"]) => {
                return Some(json!("OrderedReady"));
            }
            _ => {}
        }
        if self.is_service() {
            match names.as_slice() {
                ["spec", "type"] => return Some(json!("ClusterIP")),
                ["spec", "sessionAffinity"] => return Some(json!("None")),
                ["spec", "ports", "protocol"] => return Some(json!("TCP")),
                _ => {}
            }
        }
        let rel = self.pod_rel(&names)?;
        match rel {
            ["restartPolicy"] if !matches!(self.kind.as_str(), "Job" | "CronJob") => {
                Some(json!("Always"))
            }
            ["dnsPolicy"] => Some(json!("ClusterFirst")),
            ["schedulerName"] => Some(json!("default-scheduler")),
            ["terminationGracePeriodSeconds"] => Some(json!(30)),
            ["securityContext"] => Some(json!({})),
            [c, "terminationMessagePath"] if CONTAINER_LISTS.contains(c) => {
                Some(json!("/dev/termination-log"))
            }
            [c, "terminationMessagePolicy"] if CONTAINER_LISTS.contains(c) => Some(json!("File")),
            [c, "ports", "protocol"] if CONTAINER_LISTS.contains(c) => Some(json!("TCP")),
            _ => None,
        }
    }

    fn is_struct_field(&self, path: &[PathElem]) -> bool {
        let n = path.len();
        if n < 2 {
            return true;
        }
        !matches!(&path[n - 2], PathElem::Field(p) if FREE_FORM_MAPS.contains(&p.as_str()))
    }

    fn key_default(&self, list_path: &[PathElem], key: &str) -> Option<Value> {
        match list_path.last() {
            Some(PathElem::Field(f)) if f == "ports" && key == "protocol" => Some(json!("TCP")),
            _ => None,
        }
    }

    fn omit_empty(&self) -> bool {
        true
    }

    fn always_present(&self, path: &[PathElem]) -> bool {
        matches!(path.last(), Some(PathElem::Field(f)) if matches!(
            f.as_str(),
            "metadata" | "spec" | "status" | "template" | "strategy" | "updateStrategy"
                | "jobTemplate" | "resources"
                // PodSpec.containers has no omitempty: an empty typed object has it (null).
                | "containers"
        ))
    }
}

/// Topology of a built-in kind (group "" for core).
pub fn builtin_schema(group: &str, kind: &str) -> Box<dyn Schema> {
    Box::new(BuiltinSchema {
        group: group.to_string(),
        kind: kind.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// CRD schema
// ---------------------------------------------------------------------------------------------

struct CrdSchema {
    root: Value,
    meta: BuiltinSchema,
}

enum Node<'a> {
    Known(&'a Value),
    /// Inside `x-kubernetes-preserve-unknown-fields` or otherwise undeclared.
    Unknown,
}

impl CrdSchema {
    fn resolve(&self, path: &[PathElem]) -> Node<'_> {
        let mut node = &self.root;
        for elem in path {
            let next = match elem {
                PathElem::Field(name) => node
                    .get("properties")
                    .and_then(|p| p.get(name))
                    .or_else(|| node.get("additionalProperties").filter(|a| a.is_object())),
                _ => node.get("items"),
            };
            match next {
                Some(n) => node = n,
                None => return Node::Unknown,
            }
        }
        Node::Known(node)
    }

    fn in_metadata(path: &[PathElem]) -> bool {
        matches!(path.first(), Some(PathElem::Field(f)) if f == "metadata")
    }
}

impl Schema for CrdSchema {
    fn list_type(&self, path: &[PathElem]) -> ListType {
        if Self::in_metadata(path) {
            return self.meta.list_type(path);
        }
        let Node::Known(n) = self.resolve(path) else {
            return ListType::Atomic;
        };
        match n.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                n.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => ListType::Atomic,
        }
    }

    fn map_type(&self, path: &[PathElem]) -> MapType {
        if Self::in_metadata(path) {
            return self.meta.map_type(path);
        }
        match self.resolve(path) {
            Node::Known(n)
                if n.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") =>
            {
                MapType::Atomic
            }
            _ => MapType::Granular,
        }
    }

    fn default_for(&self, path: &[PathElem]) -> Option<Value> {
        if Self::in_metadata(path) {
            return None;
        }
        match self.resolve(path) {
            Node::Known(n) => n.get("default").cloned(),
            Node::Unknown => None,
        }
    }

    fn is_struct_field(&self, path: &[PathElem]) -> bool {
        let Some((PathElem::Field(name), parent)) = path.split_last() else {
            return true;
        };
        if parent.is_empty() && matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
            return true;
        }
        if Self::in_metadata(path) {
            return self.meta.is_struct_field(path);
        }
        match self.resolve(parent) {
            Node::Known(n) => n.get("properties").and_then(|p| p.get(name)).is_some(),
            Node::Unknown => false,
        }
    }

    fn key_default(&self, list_path: &[PathElem], key: &str) -> Option<Value> {
        match self.resolve(list_path) {
            Node::Known(n) => n
                .get("items")
                .and_then(|i| i.get("properties"))
                .and_then(|p| p.get(key))
                .and_then(|k| k.get("default"))
                .cloned(),
            Node::Unknown => None,
        }
    }
}

/// Topology from a CRD version's `openAPIV3Schema`.
pub fn crd_schema(openapi_v3_schema: &Value) -> Box<dyn Schema> {
    Box::new(CrdSchema {
        root: openapi_v3_schema.clone(),
        meta: BuiltinSchema {
            group: String::new(),
            kind: String::new(),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Canonical JSON, path display, FieldsV1
// ---------------------------------------------------------------------------------------------

pub fn sorted_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut ks: Vec<&String> = m.keys().collect();
            ks.sort();
            let mut out = Map::new();
            for k in ks {
                out.insert(k.clone(), sorted_value(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_value).collect()),
        other => other.clone(),
    }
}

/// Compact JSON with object keys sorted, as used in `k:` and `v:` path elements.
pub fn canonical(v: &Value) -> String {
    serde_json::to_string(&sorted_value(v)).unwrap_or_default()
}

/// Go-style rendering of a value inside a displayed path (strings quoted, numbers bare).
pub fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(display_value).collect::<Vec<_>>().join(",")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}={}", display_value(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

/// kube-apiserver's display form of a path: `.spec.containers[name="nginx"].image`.
pub fn display_path(path: &[PathElem]) -> String {
    let mut out = String::new();
    for e in path {
        match e {
            PathElem::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElem::Key(k) => {
                let parsed: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                let parts: Vec<String> = parsed
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", display_value(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push('[');
                out.push_str(&parts.join(","));
                out.push(']');
            }
            PathElem::Value(v) => {
                let parsed: Value = serde_json::from_str(v).unwrap_or(Value::Null);
                out.push_str(&format!("[={}]", display_value(&parsed)));
            }
            PathElem::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}
