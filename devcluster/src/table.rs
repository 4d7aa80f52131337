//! Server-side printing: `meta.k8s.io/v1` Table and PartialObjectMetadata renderings.

use serde_json::{Map, Value, json};

use crate::resources::ResourceDef;
use crate::store::{parse_rfc3339, unix_seconds};

/// Which rendering the Accept header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    Full,
    Table,
    Metadata,
}

pub fn rendering(accept: &str) -> Rendering {
    for range in accept.split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("as=Table") && has("g=meta.k8s.io") {
            return Rendering::Table;
        }
        if (has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList"))
            && has("g=meta.k8s.io")
        {
            return Rendering::Metadata;
        }
        if params
            .first()
            .is_some_and(|m| *m == "application/json" || *m == "*/*")
            && params.len() == 1
        {
            return Rendering::Full;
        }
    }
    Rendering::Full
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
}

pub fn partial_metadata_list(list_meta: Value, items: &[Value]) -> Value {
    let items: Vec<Value> = items.iter().map(partial_metadata).collect();
    json!({"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":list_meta,"items":items})
}

/// `5s`, `3m10s`, `2d`: the age format kubectl shows.
pub fn human_age(created: &str) -> String {
    let Some(t) = parse_rfc3339(created) else {
        return "<unknown>".into();
    };
    let s = (unix_seconds() - t).max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10_800 => format!("{}m", s / 60),
        10_800..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Evaluate the simple JSONPath subset printer columns use (`.spec.a.b`, `.x[0].y`).
fn json_path(obj: &Value, path: &str) -> Value {
    let mut cur = obj;
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    for seg in p
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
    {
        let (field, index) = match seg.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !field.is_empty() {
            match cur.get(field) {
                Some(v) => cur = v,
                None => return Value::Null,
            }
        }
        if let Some(i) = index {
            match cur.get(i) {
                Some(v) => cur = v,
                None => return Value::Null,
            }
        }
    }
    cur.clone()
}

/// A built-in printer column: name, type, priority (1 = `-o wide` only) and what fills it
/// (a JSONPath, or a `#name` computed in `builtin_cell`).
struct Col {
    name: &'static str,
    ty: &'static str,
    priority: u8,
    source: &'static str,
}

const fn col(name: &'static str, ty: &'static str, priority: u8, source: &'static str) -> Col {
    Col {
        name,
        ty,
        priority,
        source,
    }
}

const AGE: Col = col("Age", "string", 0, "#age");
const CONTAINERS: Col = col("Containers", "string", 1, "#containers");
const IMAGES: Col = col("Images", "string", 1, "#images");
const SELECTOR: Col = col("Selector", "string", 1, "#selector");

/// The columns kube-apiserver's printers give the built-in kinds (after Name), in order.
/// None: just Name and Age.
fn builtin_columns(def: &ResourceDef) -> Option<Vec<Col>> {
    Some(match (def.group.as_str(), def.kind.as_str()) {
        ("", "Namespace") => vec![col("Status", "string", 0, ".status.phase"), AGE],
        ("", "ConfigMap") => vec![col("Data", "integer", 0, "#data"), AGE],
        ("", "Secret") => vec![
            col("Type", "string", 0, ".type"),
            col("Data", "string", 0, "#data"),
            AGE,
        ],
        ("", "ServiceAccount") => vec![col("Secrets", "string", 0, "#secrets"), AGE],
        ("", "Pod") => vec![
            col("Ready", "string", 0, "#pod-ready"),
            col("Status", "string", 0, "#pod-status"),
            col("Restarts", "string", 0, "#restarts"),
            AGE,
            col("IP", "string", 1, ".status.podIP"),
            col("Node", "string", 1, ".spec.nodeName"),
            col("Nominated Node", "string", 1, ".status.nominatedNodeName"),
            col("Readiness Gates", "string", 1, "#readiness-gates"),
        ],
        ("", "Service") => vec![
            col("Type", "string", 0, ".spec.type"),
            col("Cluster-IP", "string", 0, ".spec.clusterIP"),
            col("External-IP", "string", 0, "#external-ip"),
            col("Port(s)", "string", 0, "#service-ports"),
            AGE,
            col("Selector", "string", 1, "#service-selector"),
        ],
        ("", "PersistentVolumeClaim") => vec![
            col("Status", "string", 0, ".status.phase"),
            col("Volume", "string", 0, ".spec.volumeName"),
            col("Capacity", "string", 0, ".status.capacity.storage"),
            col("Access Modes", "string", 0, "#access-modes"),
            col("StorageClass", "string", 0, ".spec.storageClassName"),
            col(
                "VolumeAttributesClass",
                "string",
                0,
                ".spec.volumeAttributesClassName",
            ),
            AGE,
            col("VolumeMode", "string", 1, ".spec.volumeMode"),
        ],
        ("apps", "Deployment") => vec![
            col("Ready", "string", 0, "#ready"),
            col("Up-to-date", "integer", 0, ".status.updatedReplicas"),
            col("Available", "integer", 0, ".status.availableReplicas"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "ReplicaSet") => vec![
            col("Desired", "integer", 0, ".spec.replicas"),
            col("Current", "integer", 0, ".status.replicas"),
            col("Ready", "integer", 0, ".status.readyReplicas"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "StatefulSet") => {
            vec![col("Ready", "string", 0, "#ready"), AGE, CONTAINERS, IMAGES]
        }
        ("apps", "DaemonSet") => vec![
            col("Desired", "integer", 0, ".status.desiredNumberScheduled"),
            col("Current", "integer", 0, ".status.currentNumberScheduled"),
            col("Ready", "integer", 0, ".status.numberReady"),
            col("Up-to-date", "integer", 0, ".status.updatedNumberScheduled"),
            col("Available", "integer", 0, ".status.numberAvailable"),
            col("Node Selector", "string", 0, "#node-selector"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "Job") => vec![
            col("Status", "string", 0, "#job-status"),
            col("Completions", "string", 0, "#completions"),
            col("Duration", "string", 0, "#duration"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "CronJob") => vec![
            col("Schedule", "string", 0, ".spec.schedule"),
            col("Timezone", "string", 0, ".spec.timeZone"),
            col("Suspend", "boolean", 0, ".spec.suspend"),
            col("Active", "integer", 0, "#active"),
            col("Last Schedule", "string", 0, "#last-schedule"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("networking.k8s.io", "Ingress") => vec![
            col("Class", "string", 0, ".spec.ingressClassName"),
            col("Hosts", "string", 0, "#hosts"),
            col("Address", "string", 0, "#lb-address"),
            col("Ports", "string", 0, "#ingress-ports"),
            AGE,
        ],
        ("networking.k8s.io", "NetworkPolicy") => {
            vec![col("Pod-Selector", "string", 0, "#pod-selector"), AGE]
        }
        ("coordination.k8s.io", "Lease") => {
            vec![col("Holder", "string", 0, ".spec.holderIdentity"), AGE]
        }
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole")
        | ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            vec![col("Created At", "date", 0, "#created-at")]
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => vec![
            col("Role", "string", 0, "#role-ref"),
            AGE,
            col("Users", "string", 1, "#subjects:User"),
            col("Groups", "string", 1, "#subjects:Group"),
            col("ServiceAccounts", "string", 1, "#subjects:ServiceAccount"),
        ],
        ("" | "events.k8s.io", "Event") => vec![
            col("Last Seen", "string", 0, "#event-last-seen"),
            col("Type", "string", 0, ".type"),
            col("Reason", "string", 0, ".reason"),
            col("Object", "string", 0, "#event-object"),
            col("Subobject", "string", 1, "#event-subobject"),
            col("Source", "string", 1, "#event-source"),
            col("Message", "string", 0, "#event-message"),
            col("First Seen", "string", 1, "#event-first-seen"),
            col("Count", "string", 1, "#event-count"),
            col("Name", "string", 1, ".metadata.name"),
        ],
        _ => return None,
    })
}

/// Kinds whose table does not start with the Name column (kube's event printer).
fn leads_with_name(def: &ResourceDef) -> bool {
    def.kind != "Event" || !(def.group.is_empty() || def.group == "events.k8s.io")
}

/// A field of an Event in either version's form (core name, events.k8s.io name).
fn event_field<'a>(obj: &'a Value, core: &str, events_api: &str) -> Option<&'a Value> {
    obj.get(core)
        .or_else(|| obj.get(events_api))
        .filter(|v| !v.is_null())
}

fn arr<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `a,b` or kubectl's `<none>` for an empty list.
fn joined(items: Vec<String>) -> String {
    if items.is_empty() {
        "<none>".into()
    } else {
        items.join(",")
    }
}

/// A label selector as kubectl prints it (`app=web,tier in (a,b)`).
fn selector_text(sel: &Value) -> String {
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    for e in arr(sel, "/matchExpressions") {
        let key = text(e, "/key");
        let values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        parts.push(match text(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        });
    }
    joined(parts)
}

/// A map of strings as `k=v,k=v` (kubectl's printing of selectors and node selectors).
fn map_text(m: Option<&Value>) -> String {
    joined(
        m.and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// The pod template's containers, for `-o wide`.
fn template_containers(obj: &Value) -> &[Value] {
    let p = if obj.get("kind").and_then(Value::as_str) == Some("CronJob") {
        "/spec/jobTemplate/spec/template/spec/containers"
    } else {
        "/spec/template/spec/containers"
    };
    arr(obj, p)
}

fn pod_status(obj: &Value) -> String {
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let mut reason = text(obj, "/status/reason").to_string();
    if reason.is_empty() {
        reason = text(obj, "/status/phase").to_string();
    }
    for cs in arr(obj, "/status/containerStatuses") {
        if let Some(r) = cs.pointer("/state/waiting/reason").and_then(Value::as_str) {
            return r.to_string();
        }
        if let Some(t) = cs.pointer("/state/terminated") {
            let r = text(t, "/reason");
            return if r.is_empty() {
                format!("ExitCode:{}", int(t, "/exitCode"))
            } else {
                r.to_string()
            };
        }
    }
    reason
}

fn builtin_cell(obj: &Value, source: &str) -> Value {
    match source {
        "#age" => json!(human_age(text(obj, "/metadata/creationTimestamp"))),
        "#data" => json!(
            obj.get("data")
                .and_then(Value::as_object)
                .map(|m| m.len())
                .unwrap_or(0)
                + obj
                    .get("binaryData")
                    .and_then(Value::as_object)
                    .map(|m| m.len())
                    .unwrap_or(0)
        ),
        "#secrets" => json!(arr(obj, "/secrets").len()),
        "#ready" => json!(format!(
            "{}/{}",
            int(obj, "/status/readyReplicas"),
            obj.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        )),
        "#pod-ready" => {
            let statuses = arr(obj, "/status/containerStatuses");
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            json!(format!("{ready}/{}", arr(obj, "/spec/containers").len()))
        }
        "#pod-status" => json!(pod_status(obj)),
        "#restarts" => json!(
            arr(obj, "/status/containerStatuses")
                .iter()
                .map(|c| int(c, "/restartCount"))
                .sum::<i64>()
                .to_string()
        ),
        "#readiness-gates" => {
            let gates = arr(obj, "/spec/readinessGates");
            if gates.is_empty() {
                json!("<none>")
            } else {
                json!(format!("0/{}", gates.len()))
            }
        }
        "#external-ip" => {
            let mut ips: Vec<String> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| i.get("ip").or_else(|| i.get("hostname")))
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            ips.extend(
                arr(obj, "/spec/externalIPs")
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string)),
            );
            let ty = text(obj, "/spec/type");
            json!(match (ty, ips.is_empty()) {
                ("ExternalName", _) => text(obj, "/spec/externalName").to_string(),
                ("LoadBalancer", true) => "<pending>".to_string(),
                (_, true) => "<none>".to_string(),
                _ => ips.join(","),
            })
        }
        "#service-ports" => {
            let ports: Vec<String> = arr(obj, "/spec/ports")
                .iter()
                .map(|p| {
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(n) => format!("{}:{n}/{proto}", int(p, "/port")),
                        None => format!("{}/{proto}", int(p, "/port")),
                    }
                })
                .collect();
            json!(joined(ports))
        }
        "#service-selector" => json!(map_text(obj.pointer("/spec/selector"))),
        "#node-selector" => json!(map_text(obj.pointer("/spec/template/spec/nodeSelector"))),
        "#access-modes" => {
            let modes: Vec<String> = arr(obj, "/status/accessModes")
                .iter()
                .filter_map(Value::as_str)
                .map(|m| match m {
                    "ReadWriteOnce" => "RWO".to_string(),
                    "ReadOnlyMany" => "ROX".to_string(),
                    "ReadWriteMany" => "RWX".to_string(),
                    "ReadWriteOncePod" => "RWOP".to_string(),
                    other => other.to_string(),
                })
                .collect();
            json!(modes.join(","))
        }
        "#containers" => json!(joined(
            template_containers(obj)
                .iter()
                .map(|c| text(c, "/name").to_string())
                .collect()
        )),
        "#images" => json!(joined(
            template_containers(obj)
                .iter()
                .map(|c| text(c, "/image").to_string())
                .collect()
        )),
        "#selector" => {
            let sel = if obj.get("kind").and_then(Value::as_str) == Some("CronJob") {
                obj.pointer("/spec/jobTemplate/spec/selector")
            } else {
                obj.pointer("/spec/selector")
            };
            json!(sel.map(selector_text).unwrap_or_else(|| "<none>".into()))
        }
        "#pod-selector" => json!(
            obj.pointer("/spec/podSelector")
                .map(selector_text)
                .unwrap_or_else(|| "<none>".into())
        ),
        "#job-status" => {
            let cond = |t: &str| {
                arr(obj, "/status/conditions")
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            json!(if cond("Complete") {
                "Complete"
            } else if cond("Failed") {
                "Failed"
            } else if obj.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else if cond("Suspended") {
                "Suspended"
            } else {
                "Running"
            })
        }
        "#completions" => {
            let completions = obj.pointer("/spec/completions").and_then(Value::as_i64);
            let succeeded = int(obj, "/status/succeeded");
            json!(match completions {
                Some(c) => format!("{succeeded}/{c}"),
                None => format!("{succeeded}/1 of {}", int(obj, "/spec/parallelism").max(1)),
            })
        }
        "#duration" => {
            let start = parse_rfc3339(text(obj, "/status/startTime"));
            let end = parse_rfc3339(text(obj, "/status/completionTime"));
            json!(match (start, end) {
                (Some(s), Some(e)) => duration_text((e - s).max(0)),
                (Some(s), None) => duration_text((unix_seconds() - s).max(0)),
                _ => String::new(),
            })
        }
        "#active" => json!(arr(obj, "/status/active").len()),
        "#last-schedule" => {
            let t = text(obj, "/status/lastScheduleTime");
            json!(if t.is_empty() {
                "<none>".to_string()
            } else {
                human_age(t)
            })
        }
        "#hosts" => {
            let hosts: Vec<String> = arr(obj, "/spec/rules")
                .iter()
                .filter_map(|r| r.get("host").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            json!(if arr(obj, "/spec/rules").is_empty() || hosts.is_empty() {
                "*".to_string()
            } else {
                hosts.join(",")
            })
        }
        "#lb-address" => json!(
            arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| i.get("ip").or_else(|| i.get("hostname")))
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        ),
        "#ingress-ports" => json!(if arr(obj, "/spec/tls").is_empty() {
            "80"
        } else {
            "80, 443"
        }),
        "#created-at" => json!(text(obj, "/metadata/creationTimestamp")),
        "#role-ref" => json!(format!(
            "{}/{}",
            text(obj, "/roleRef/kind"),
            text(obj, "/roleRef/name")
        )),
        s if s.starts_with("#subjects:") => {
            let kind = &s["#subjects:".len()..];
            let names: Vec<String> = arr(obj, "/subjects")
                .iter()
                .filter(|x| text(x, "/kind") == kind)
                .map(|x| {
                    if kind == "ServiceAccount" {
                        format!("{}/{}", text(x, "/namespace"), text(x, "/name"))
                    } else {
                        text(x, "/name").to_string()
                    }
                })
                .collect();
            json!(names.join(", "))
        }
        "#event-last-seen" => {
            let t = event_field(obj, "lastTimestamp", "deprecatedLastTimestamp")
                .or_else(|| obj.pointer("/series/lastObservedTime"))
                .or_else(|| obj.get("eventTime"))
                .and_then(Value::as_str)
                .unwrap_or("");
            json!(if t.is_empty() {
                "<unknown>".to_string()
            } else {
                human_age(t)
            })
        }
        "#event-first-seen" => {
            let t = event_field(obj, "firstTimestamp", "deprecatedFirstTimestamp")
                .or_else(|| obj.get("eventTime"))
                .and_then(Value::as_str)
                .unwrap_or("");
            json!(if t.is_empty() {
                "<unknown>".to_string()
            } else {
                human_age(t)
            })
        }
        "#event-object" => {
            let o = event_field(obj, "involvedObject", "regarding").unwrap_or(&Value::Null);
            json!(format!(
                "{}/{}",
                text(o, "/kind").to_lowercase(),
                text(o, "/name")
            ))
        }
        "#event-subobject" => json!(
            event_field(obj, "involvedObject", "regarding")
                .map(|o| text(o, "/fieldPath").to_string())
                .unwrap_or_default()
        ),
        "#event-source" => {
            let src = event_field(obj, "source", "deprecatedSource").unwrap_or(&Value::Null);
            let component = match text(src, "/component") {
                "" => text(obj, "/reportingComponent"),
                c => c,
            };
            let component = match component {
                "" => text(obj, "/reportingController"),
                c => c,
            };
            json!(match text(src, "/host") {
                "" => component.to_string(),
                host => format!("{component}, {host}"),
            })
        }
        "#event-message" => json!(
            event_field(obj, "message", "note")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
        ),
        "#event-count" => json!(
            event_field(obj, "count", "deprecatedCount")
                .and_then(Value::as_i64)
                .or_else(|| obj.pointer("/series/count").and_then(Value::as_i64))
                .unwrap_or(1)
                .to_string()
        ),
        p => match json_path(obj, p) {
            Value::Null => json!("<none>"),
            v => v,
        },
    }
}

/// `5s`, `2m3s`: kubectl's rendering of a Job's duration.
fn duration_text(s: i64) -> String {
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10_800 => format!("{}m", s / 60),
        10_800..172_800 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A Table of `objs`; `with_columns` is false for watch events after the first.
pub fn table(def: &ResourceDef, objs: &[Value], list_meta: Value, with_columns: bool) -> Value {
    let with_name = leads_with_name(def);
    let mut cols = Vec::new();
    if with_name {
        cols.push(json!({"name":"Name","type":"string","format":"name",
            "description":"Name must be unique within a namespace.","priority":0}));
    }
    let mut rows = Vec::new();
    let custom: Vec<Value> = def
        .custom
        .as_ref()
        .map(|c| c.printer_columns.clone())
        .unwrap_or_default();
    // Custom resources and unlisted kinds: Name, the printer columns, Age.
    let builtin = builtin_columns(def).unwrap_or_else(|| vec![AGE]);
    let age_at = builtin
        .iter()
        .position(|c| c.source == "#age")
        .unwrap_or(builtin.len());
    let col_json = |c: &Col| {
        let description = if c.source == "#age" {
            "CreationTimestamp is a timestamp representing the server time when this object was created."
        } else {
            ""
        };
        json!({"name":c.name,"type":c.ty,"format":"","description":description,"priority":c.priority})
    };
    for b in &builtin[..age_at] {
        cols.push(col_json(b));
    }
    for c in &custom {
        let mut m = Map::new();
        m.insert("name".into(), c.get("name").cloned().unwrap_or(json!("")));
        m.insert(
            "type".into(),
            c.get("type").cloned().unwrap_or(json!("string")),
        );
        m.insert(
            "format".into(),
            c.get("format").cloned().unwrap_or(json!("")),
        );
        m.insert(
            "description".into(),
            c.get("description").cloned().unwrap_or(json!("")),
        );
        m.insert(
            "priority".into(),
            c.get("priority").cloned().unwrap_or(json!(0)),
        );
        cols.push(Value::Object(m));
    }
    for b in &builtin[age_at..] {
        cols.push(col_json(b));
    }
    for o in objs {
        let mut cells = Vec::new();
        if with_name {
            cells.push(o.pointer("/metadata/name").cloned().unwrap_or(json!("")));
        }
        for b in &builtin[..age_at] {
            cells.push(builtin_cell(o, b.source));
        }
        for c in &custom {
            let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
            let v = json_path(o, path);
            let is_date = c.get("type").and_then(Value::as_str) == Some("date");
            cells.push(match (&v, is_date) {
                (Value::String(s), true) => json!(human_age(s)),
                (Value::Null, _) => json!("<none>"),
                _ => v,
            });
        }
        for b in &builtin[age_at..] {
            cells.push(builtin_cell(o, b.source));
        }
        rows.push(json!({"cells":cells,"object":partial_metadata(o)}));
    }
    let mut t = Map::new();
    t.insert("kind".into(), json!("Table"));
    t.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    t.insert("metadata".into(), list_meta);
    if with_columns {
        t.insert("columnDefinitions".into(), Value::Array(cols));
    } else {
        t.insert("columnDefinitions".into(), Value::Null);
    }
    t.insert("rows".into(), Value::Array(rows));
    Value::Object(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_selects_rendering() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(rendering(kubectl), Rendering::Table);
        assert_eq!(
            rendering("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Rendering::Metadata
        );
        assert_eq!(rendering("application/json"), Rendering::Full);
    }

    #[test]
    fn printer_columns_are_evaluated() {
        let mut def = crate::resources::builtin_def("ConfigMap");
        def.custom = Some(crate::resources::CustomInfo {
            printer_columns: vec![json!({"name":"Color","type":"string","jsonPath":".spec.color"})],
            ..Default::default()
        });
        let o = json!({"metadata":{"name":"a","creationTimestamp":"2020-01-01T00:00:00Z"},"spec":{"color":"red"}});
        let t = table(&def, &[o], json!({}), true);
        assert_eq!(t["rows"][0]["cells"][0], "a");
        assert_eq!(t["rows"][0]["cells"][2], "red");
        assert!(
            t["rows"][0]["cells"][3]
                .as_str()
                .is_some_and(|s| s.ends_with('d'))
        );
    }
}
