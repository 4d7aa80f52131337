//! The objects workload controllers create: a ReplicaSet per Deployment template, Pods for
//! ReplicaSets, StatefulSets, DaemonSets and Jobs. They carry controller ownerReferences, so
//! the garbage collector removes them with their owner and a pruner meets objects it must not
//! delete. Pods run on one fake node and never pull images or restart; their status is what
//! the kubelet would report once every container started (or, for Job pods, finished).
//!
//! Each function converges one owner's children and writes only what differs, so a pass over
//! an idle cluster changes nothing.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::controllers::MANAGER;
use crate::lifecycle::{self, DeleteOptions, is_deleting, meta_str};
use crate::resources::{Registry, ResourceDef};
use crate::ssa;
use crate::store::{Change, Key, Store, now_rfc3339, random_bytes};

/// The single node every Pod is bound to.
pub const NODE_NAME: &str = "devcluster-node";
const HOST_IP: &str = "172.18.0.2";
/// The kubelet reports Pod status, as on a real node.
const KUBELET: &str = "kubelet";
pub const PODS: &str = "/pods";
pub const REPLICA_SETS: &str = "apps/replicasets";
const NAMESPACES: &str = "/namespaces";
const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";
/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// What a workload's Pods report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodHealth {
    Ready,
    /// Running, but containers not ready (the unhealthy switch).
    NotReady,
    /// Every container exited 0 (Job pods).
    Succeeded,
}

/// A stable 10-character hash of a JSON value, independent of key order.
pub fn template_hash(template: &Value) -> String {
    fn feed(h: &mut u64, bytes: &[u8]) {
        for b in bytes {
            *h ^= u64::from(*b);
            *h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn walk(h: &mut u64, v: &Value) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                feed(h, b"{");
                for k in keys {
                    feed(h, k.as_bytes());
                    feed(h, b":");
                    walk(h, &m[k]);
                    feed(h, b",");
                }
                feed(h, b"}");
            }
            Value::Array(a) => {
                feed(h, b"[");
                for x in a {
                    walk(h, x);
                    feed(h, b",");
                }
                feed(h, b"]");
            }
            other => feed(h, other.to_string().as_bytes()),
        }
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    walk(&mut h, template);
    let mut out = String::new();
    for _ in 0..10 {
        out.push(ALPHABET[(h % ALPHABET.len() as u64) as usize] as char);
        h /= ALPHABET.len() as u64;
    }
    out
}

/// Five random characters, as `generateName` appends.
fn random_suffix() -> String {
    let mut b = [0u8; 5];
    random_bytes(&mut b);
    b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect()
}

fn int_at(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

fn put_count(m: &mut Map<String, Value>, field: &str, n: i64) {
    if n != 0 {
        m.insert(field.into(), json!(n));
    }
}

fn namespace_active(store: &Store, ns: &str) -> bool {
    store
        .get(&Key::new(NAMESPACES, "", ns))
        .is_some_and(|n| !is_deleting(&n))
}

/// The controller ownerReference of `obj`, if any.
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

fn owner_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": meta_str(owner, "name"),
           "uid": meta_str(owner, "uid"), "controller": true, "blockOwnerDeletion": true})
}

/// Live objects of `storage` whose controller is `owner_uid`, oldest first.
fn owned(store: &Store, owner_uid: &str, storage: &str) -> Vec<(Key, Arc<Value>)> {
    if owner_uid.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(Key, Arc<Value>)> = store
        .dependents(owner_uid)
        .into_iter()
        .filter(|(k, v)| {
            k.storage == storage
                && !is_deleting(v)
                && controller_ref(v)
                    .and_then(|r| r.get("uid"))
                    .and_then(Value::as_str)
                    == Some(owner_uid)
        })
        .collect();
    out.sort_by(|a, b| {
        (meta_str(&a.1, "creationTimestamp"), &a.0.name)
            .cmp(&(meta_str(&b.1, "creationTimestamp"), &b.0.name))
    });
    out
}

fn labels_of(obj: &Value, pointer: &str) -> Map<String, Value> {
    obj.pointer(pointer)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn schema_for(def: &ResourceDef) -> Box<dyn ssa::Schema> {
    ssa::builtin_schema(&def.group, &def.kind)
}

/// Create `obj` at `key` unless something is there; `status`, if any, is then reported by
/// `status_manager`. Returns whether it was created.
fn create(
    store: &Store,
    def: &ResourceDef,
    key: &Key,
    mut obj: Value,
    status: Option<(&str, Value)>,
) -> bool {
    let res = store.mutate(key, false, |old| {
        if let Some(old) = old {
            return Ok(Change::Keep(old.clone()));
        }
        let now = now_rfc3339();
        let api_version = def.api_version();
        lifecycle::prepare_create(def, &mut obj);
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        let schema = schema_for(def);
        ssa::record_update(
            None,
            &mut obj,
            MANAGER,
            &api_version,
            None,
            &now,
            schema.as_ref(),
        );
        if let Some((manager, status)) = status {
            let created = obj.clone();
            if let Some(o) = obj.as_object_mut() {
                o.insert("status".into(), status);
            }
            ssa::record_update(
                Some(&created),
                &mut obj,
                manager,
                &api_version,
                Some("status"),
                &now,
                schema.as_ref(),
            );
        }
        Ok(Change::Put(obj))
    });
    match res {
        Ok(o) => o.created && o.changed,
        Err(e) => {
            tracing::debug!("controller create of {key:?} failed: {e}");
            false
        }
    }
}

/// Apply `edit` to the stored object (the main resource, or `status`) and write it when it
/// changed. Returns the stored object afterwards.
fn update(
    store: &Store,
    def: &ResourceDef,
    key: &Key,
    manager: &str,
    sub: Option<&str>,
    edit: impl FnOnce(&mut Value),
) -> Option<Value> {
    let res = store.mutate(key, false, |old| {
        let Some(old) = old else {
            return Ok(Change::Keep(Value::Null));
        };
        let mut body = old.clone();
        edit(&mut body);
        if &body == old {
            return Ok(Change::Keep(old.clone()));
        }
        match lifecycle::prepare_update(def, old, body, sub)? {
            Change::Put(mut new) => {
                let schema = schema_for(def);
                ssa::record_update(
                    Some(old),
                    &mut new,
                    manager,
                    &def.api_version(),
                    sub,
                    &now_rfc3339(),
                    schema.as_ref(),
                );
                Ok(Change::Put(new))
            }
            other => Ok(other),
        }
    });
    match res {
        Ok(o) if !o.object.is_null() => Some(o.object),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!("controller update of {key:?} failed: {e}");
            None
        }
    }
}

fn remove(store: &Store, def: &ResourceDef, key: &Key, registry: &Registry) {
    let opts = DeleteOptions {
        propagation: Some("Background".into()),
        ..Default::default()
    };
    if let Err(e) = lifecycle::delete(store, registry, def, key, &opts) {
        tracing::debug!("controller delete of {key:?} failed: {e}");
    }
}

fn set_annotation(obj: &mut Value, k: &str, v: &str) {
    let m = lifecycle::meta_mut(obj);
    let a = m.entry("annotations").or_insert_with(|| json!({}));
    if !a.is_object() {
        *a = json!({});
    }
    if let Some(a) = a.as_object_mut() {
        a.insert(k.into(), json!(v));
    }
}

fn annotation<'a>(obj: &'a Value, k: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(k))
        .and_then(Value::as_str)
}

fn revision(obj: &Value) -> i64 {
    annotation(obj, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// `replicas + maxSurge`, the surge rounded up as the Deployment controller does.
fn max_replicas(deploy: &Value, replicas: i64) -> i64 {
    let surge = deploy.pointer("/spec/strategy/rollingUpdate/maxSurge");
    let extra = match surge {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) => (replicas * p + 99) / 100,
            None => 0,
        },
        _ => 0,
    };
    replicas + extra.max(0)
}

/// One Deployment's ReplicaSets: the one for the current template gets the replicas and
/// the next revision, older ones are scaled to zero and pruned to `revisionHistoryLimit`;
/// then each ReplicaSet's Pods. Records the revision on the Deployment.
pub fn sync_deployment(
    store: &Store,
    registry: &Registry,
    key: &Key,
    health: PodHealth,
) -> Option<()> {
    let d = store.get(key)?;
    if is_deleting(&d) || !namespace_active(store, &key.namespace) {
        return None;
    }
    let rs_def = registry.find("apps", "v1", "replicasets")?;
    let d_def = registry.find("apps", "v1", "deployments")?;
    let uid = meta_str(&d, "uid").to_string();
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template);
    let new_name = format!("{}-{hash}", key.name);
    let new_key = Key::new(REPLICA_SETS, &key.namespace, &new_name);
    let replicas = int_at(&d, "/spec/replicas").unwrap_or(1).max(0);
    let max = max_replicas(&d, replicas);
    let mut rss = owned(store, &uid, REPLICA_SETS);
    let top = rss.iter().map(|(_, v)| revision(v)).max().unwrap_or(0);
    let new_rev = match rss.iter().find(|(k, _)| *k == new_key) {
        Some((_, v)) if revision(v) >= top && revision(v) > 0 => revision(v),
        _ => top + 1,
    };
    if !rss.iter().any(|(k, _)| *k == new_key) {
        match store.get(&new_key) {
            // A ReplicaSet left by an orphaning delete is adopted, as kube does by selector.
            Some(rs) if controller_ref(&rs).is_none() && !is_deleting(&rs) => {
                let oref = owner_ref(&d, "apps/v1", "Deployment");
                update(store, &rs_def, &new_key, MANAGER, None, |o| {
                    lifecycle::meta_mut(o).insert("ownerReferences".into(), json!([oref]));
                });
            }
            Some(_) => {
                tracing::debug!("ReplicaSet {new_key:?} belongs to another controller");
                return None;
            }
            None => {
                let mut labels = labels_of(&d, "/spec/template/metadata/labels");
                labels.insert(HASH_LABEL.into(), json!(hash));
                let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                if let Some(s) = selector.as_object_mut() {
                    let ml = s.entry("matchLabels").or_insert_with(|| json!({}));
                    if let Some(ml) = ml.as_object_mut() {
                        ml.insert(HASH_LABEL.into(), json!(hash));
                    }
                }
                let mut tpl = template.clone();
                if let Some(m) = lifecycle::meta_mut(&mut tpl).get_mut("labels") {
                    *m = Value::Object(labels.clone());
                } else {
                    lifecycle::meta_mut(&mut tpl)
                        .insert("labels".into(), Value::Object(labels.clone()));
                }
                let mut spec = json!({"replicas": 0, "selector": selector, "template": tpl});
                if let Some(mrs) = d.pointer("/spec/minReadySeconds")
                    && let Some(s) = spec.as_object_mut()
                {
                    s.insert("minReadySeconds".into(), mrs.clone());
                }
                let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": new_name, "namespace": key.namespace,
                        "labels": labels,
                        "annotations": {DESIRED: replicas.to_string(), MAX: max.to_string(),
                                        REVISION: new_rev.to_string()},
                        "ownerReferences": [owner_ref(&d, "apps/v1", "Deployment")]},
                    "spec": spec});
                create(store, &rs_def, &new_key, rs, None);
            }
        }
        rss = owned(store, &uid, REPLICA_SETS);
    }
    for (k, _) in &rss {
        let is_new = *k == new_key;
        update(store, &rs_def, k, MANAGER, None, |o| {
            let want = if is_new { replicas } else { 0 };
            let scaled = int_at(o, "/spec/replicas") != Some(want);
            if let Some(s) = o.get_mut("spec").and_then(Value::as_object_mut) {
                s.insert("replicas".into(), json!(want));
            }
            // The controller stamps the Deployment's size on every ReplicaSet it scales.
            if is_new || scaled {
                set_annotation(o, DESIRED, &replicas.to_string());
                set_annotation(o, MAX, &max.to_string());
            }
            if is_new {
                set_annotation(o, REVISION, &new_rev.to_string());
            }
        });
    }
    // Old revisions beyond the history limit go, oldest first.
    let limit = int_at(&d, "/spec/revisionHistoryLimit")
        .unwrap_or(10)
        .max(0) as usize;
    let mut old: Vec<(Key, Arc<Value>)> = owned(store, &uid, REPLICA_SETS)
        .into_iter()
        .filter(|(k, v)| *k != new_key && int_at(v, "/spec/replicas") == Some(0))
        .collect();
    old.sort_by_key(|(_, v)| revision(v));
    let excess = old.len().saturating_sub(limit);
    for (k, _) in old.iter().take(excess) {
        remove(store, &rs_def, k, registry);
    }
    for (k, _) in owned(store, &uid, REPLICA_SETS) {
        sync_replicaset(store, registry, &k, health);
    }
    update(store, &d_def, key, MANAGER, None, |o| {
        set_annotation(o, REVISION, &new_rev.to_string());
    });
    Some(())
}

/// A ReplicaSet's Pods: create or delete (newest first) to reach `spec.replicas`, keep
/// their status in line with `health`, and report the counts.
pub fn sync_replicaset(
    store: &Store,
    registry: &Registry,
    key: &Key,
    health: PodHealth,
) -> Option<()> {
    let rs = store.get(key)?;
    if is_deleting(&rs) || !namespace_active(store, &key.namespace) {
        return None;
    }
    let pod_def = registry.find("", "v1", "pods")?;
    let rs_def = registry.find("apps", "v1", "replicasets")?;
    let uid = meta_str(&rs, "uid").to_string();
    let want = int_at(&rs, "/spec/replicas").unwrap_or(1).max(0) as usize;
    let pods = owned(store, &uid, PODS);
    if pods.len() > want {
        for (k, _) in pods.iter().rev().take(pods.len() - want) {
            remove(store, &pod_def, k, registry);
        }
    }
    let labels = labels_of(&rs, "/spec/template/metadata/labels");
    for _ in pods.len()..want {
        let name = format!("{}-{}", key.name, random_suffix());
        let pod = new_pod(&rs, "apps/v1", "ReplicaSet", &name, labels.clone(), None);
        create_pod(store, &pod_def, &key.namespace, &name, pod, health);
    }
    let pods = owned(store, &uid, PODS);
    refresh_pods(store, &pod_def, &pods, health);
    let pods = owned(store, &uid, PODS);
    let n = pods.len() as i64;
    let ready = pods.iter().filter(|(_, p)| pod_ready(p)).count() as i64;
    let mut status = Map::new();
    status.insert("replicas".into(), json!(n));
    put_count(&mut status, "fullyLabeledReplicas", n);
    put_count(&mut status, "readyReplicas", ready);
    put_count(&mut status, "availableReplicas", ready);
    status.insert(
        "observedGeneration".into(),
        json!(int_at(&rs, "/metadata/generation").unwrap_or(1)),
    );
    let status = Value::Object(status);
    update(store, &rs_def, key, MANAGER, Some("status"), |o| {
        if let Some(m) = o.as_object_mut() {
            m.insert("status".into(), status);
        }
    });
    Some(())
}

/// StatefulSet Pods `<name>-0..N-1`, replaced when their revision is not the current one.
pub fn sync_statefulset(store: &Store, registry: &Registry, sts: &Value, health: PodHealth) {
    let ns = meta_str(sts, "namespace");
    let name = meta_str(sts, "name");
    if is_deleting(sts) || !namespace_active(store, ns) {
        return;
    }
    let Some(pod_def) = registry.find("", "v1", "pods") else {
        return;
    };
    let rev = format!(
        "{name}-{}",
        template_hash(sts.pointer("/spec/template").unwrap_or(&Value::Null))
    );
    let want = int_at(sts, "/spec/replicas").unwrap_or(1).max(0);
    let pods = owned(store, meta_str(sts, "uid"), PODS);
    for (k, p) in &pods {
        let ordinal = k
            .name
            .strip_prefix(&format!("{name}-"))
            .and_then(|s| s.parse::<i64>().ok());
        let stale = p
            .pointer("/metadata/labels/controller-revision-hash")
            .and_then(Value::as_str)
            != Some(rev.as_str());
        if ordinal.is_none_or(|i| i >= want) || stale {
            remove(store, &pod_def, k, registry);
        }
    }
    let service = sts
        .pointer("/spec/serviceName")
        .and_then(Value::as_str)
        .unwrap_or("");
    for i in 0..want {
        let pod_name = format!("{name}-{i}");
        let mut labels = labels_of(sts, "/spec/template/metadata/labels");
        labels.insert("apps.kubernetes.io/pod-index".into(), json!(i.to_string()));
        labels.insert("controller-revision-hash".into(), json!(rev));
        labels.insert("statefulset.kubernetes.io/pod-name".into(), json!(pod_name));
        let mut extra = json!({"hostname": pod_name});
        if !service.is_empty() {
            extra["subdomain"] = json!(service);
        }
        let pod = new_pod(
            sts,
            "apps/v1",
            "StatefulSet",
            &pod_name,
            labels,
            Some(extra),
        );
        create_pod(store, &pod_def, ns, &pod_name, pod, health);
    }
    refresh_pods(
        store,
        &pod_def,
        &owned(store, meta_str(sts, "uid"), PODS),
        health,
    );
}

/// The DaemonSet's Pod on the single node, replaced on a template change.
pub fn sync_daemonset(store: &Store, registry: &Registry, ds: &Value, health: PodHealth) {
    let ns = meta_str(ds, "namespace");
    let name = meta_str(ds, "name");
    if is_deleting(ds) || !namespace_active(store, ns) {
        return;
    }
    let Some(pod_def) = registry.find("", "v1", "pods") else {
        return;
    };
    let hash = template_hash(ds.pointer("/spec/template").unwrap_or(&Value::Null));
    let mut pods = owned(store, meta_str(ds, "uid"), PODS);
    pods.retain(|(k, p)| {
        let keep = p
            .pointer("/metadata/labels/controller-revision-hash")
            .and_then(Value::as_str)
            == Some(hash.as_str());
        if !keep {
            remove(store, &pod_def, k, registry);
        }
        keep
    });
    for (k, _) in pods.iter().skip(1) {
        remove(store, &pod_def, k, registry);
    }
    if pods.is_empty() {
        let pod_name = format!("{name}-{}", random_suffix());
        let mut labels = labels_of(ds, "/spec/template/metadata/labels");
        labels.insert("controller-revision-hash".into(), json!(hash));
        labels.insert(
            "pod-template-generation".into(),
            json!(int_at(ds, "/metadata/generation").unwrap_or(1).to_string()),
        );
        let pod = new_pod(ds, "apps/v1", "DaemonSet", &pod_name, labels, None);
        create_pod(store, &pod_def, ns, &pod_name, pod, health);
    }
    refresh_pods(
        store,
        &pod_def,
        &owned(store, meta_str(ds, "uid"), PODS),
        health,
    );
}

/// A Job's `completions` Pods (its parallelism when completions is unset); they are never
/// replaced, only their status follows `health`.
pub fn sync_job(store: &Store, registry: &Registry, job: &Value, health: PodHealth) {
    let ns = meta_str(job, "namespace");
    let name = meta_str(job, "name");
    if is_deleting(job) || !namespace_active(store, ns) {
        return;
    }
    let Some(pod_def) = registry.find("", "v1", "pods") else {
        return;
    };
    let want = int_at(job, "/spec/completions")
        .or_else(|| int_at(job, "/spec/parallelism"))
        .unwrap_or(1)
        .max(0) as usize;
    let have = owned(store, meta_str(job, "uid"), PODS).len();
    for _ in have..want {
        let pod_name = format!("{name}-{}", random_suffix());
        let labels = labels_of(job, "/spec/template/metadata/labels");
        let pod = new_pod(job, "batch/v1", "Job", &pod_name, labels, None);
        create_pod(store, &pod_def, ns, &pod_name, pod, health);
    }
    refresh_pods(
        store,
        &pod_def,
        &owned(store, meta_str(job, "uid"), PODS),
        health,
    );
}

/// A Pod from the owner's template, bound to the node; `extra` fields go into its spec.
fn new_pod(
    owner: &Value,
    api_version: &str,
    kind: &str,
    name: &str,
    labels: Map<String, Value>,
    extra: Option<Value>,
) -> Value {
    let mut spec = owner
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or(json!({}));
    if let Some(s) = spec.as_object_mut() {
        s.insert("nodeName".into(), json!(NODE_NAME));
        if let Some(Value::Object(x)) = extra {
            s.extend(x);
        }
    }
    let mut meta = json!({"name": name, "namespace": meta_str(owner, "namespace"),
        "generateName": format!("{}-", meta_str(owner, "name")),
        "labels": labels,
        "ownerReferences": [owner_ref(owner, api_version, kind)]});
    // StatefulSet Pods have fixed names.
    if kind == "StatefulSet"
        && let Some(m) = meta.as_object_mut()
    {
        m.remove("generateName");
    }
    if let Some(a) = owner.pointer("/spec/template/metadata/annotations")
        && let Some(m) = meta.as_object_mut()
    {
        m.insert("annotations".into(), a.clone());
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

fn create_pod(
    store: &Store,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    pod: Value,
    health: PodHealth,
) -> bool {
    let ip = free_pod_ip(store);
    let status = pod_status(&pod, health, &json!({"podIP": ip}), &now_rfc3339());
    create(
        store,
        def,
        &Key::new(PODS, ns, name),
        pod,
        Some((KUBELET, status)),
    )
}

/// A random address in 10.244.0.0/16 that no stored Pod has.
fn free_pod_ip(store: &Store) -> String {
    let (pods, _) = store.list(PODS, None);
    let used: HashSet<&str> = pods
        .iter()
        .filter_map(|p| p.pointer("/status/podIP").and_then(Value::as_str))
        .collect();
    let mut ip = String::from("10.244.0.2");
    for _ in 0..64 {
        let mut b = [0u8; 2];
        random_bytes(&mut b);
        let (x, y) = (b[0], b[1].clamp(2, 254));
        ip = format!("10.244.{x}.{y}");
        if !used.contains(ip.as_str()) {
            break;
        }
    }
    ip
}

fn refresh_pods(store: &Store, def: &ResourceDef, pods: &[(Key, Arc<Value>)], health: PodHealth) {
    for (k, p) in pods {
        let current = p.get("status").cloned().unwrap_or(json!({}));
        let want = pod_status(p, health, &current, &now_rfc3339());
        if want != current {
            update(store, def, k, KUBELET, Some("status"), |o| {
                if let Some(m) = o.as_object_mut() {
                    m.insert("status".into(), want);
                }
            });
        }
    }
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n / 2];
    random_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A digest-pinned reference for an image, stable per image name.
fn image_id(image: &str) -> String {
    let name = image.split(['@']).next().unwrap_or(image);
    let repo = match name.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => name,
    };
    let h = template_hash(&json!(image));
    let digest: String = h.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    format!("{repo}@sha256:{digest:0<64}")
}

/// The status the kubelet would report for `pod`, keeping what it reported before (IP,
/// start times, container IDs, transition times) where the state did not change.
pub fn pod_status(pod: &Value, health: PodHealth, current: &Value, now: &str) -> Value {
    let old = |field: &str| current.get(field).cloned();
    let start = old("startTime").unwrap_or_else(|| json!(now));
    let ip = old("podIP").unwrap_or_else(|| json!("10.244.0.2"));
    let containers: Vec<&Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let old_cs = |name: &str| {
        current
            .get("containerStatuses")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
            })
    };
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            let prev = old_cs(name);
            let id = prev
                .and_then(|p| p.get("containerID"))
                .cloned()
                .unwrap_or_else(|| json!(format!("containerd://{}", random_hex(64))));
            let started_at = prev
                .and_then(|p| {
                    p.pointer("/state/running/startedAt")
                        .or_else(|| p.pointer("/state/terminated/startedAt"))
                })
                .cloned()
                .unwrap_or_else(|| start.clone());
            let (state, ready, started) = match health {
                PodHealth::Succeeded => {
                    let finished = prev
                        .and_then(|p| p.pointer("/state/terminated/finishedAt"))
                        .cloned()
                        .unwrap_or_else(|| json!(now));
                    (
                        json!({"terminated": {"exitCode": 0, "reason": "Completed",
                            "startedAt": started_at, "finishedAt": finished, "containerID": id}}),
                        false,
                        false,
                    )
                }
                PodHealth::Ready => (json!({"running": {"startedAt": started_at}}), true, true),
                PodHealth::NotReady => (json!({"running": {"startedAt": started_at}}), false, true),
            };
            json!({"name": name, "state": state, "lastState": {}, "ready": ready,
                   "restartCount": 0, "image": image, "imageID": image_id(image),
                   "containerID": id, "started": started})
        })
        .collect();
    let cond = |kind: &str, ok: bool, reason: Option<(&str, String)>| {
        let status = if ok { "True" } else { "False" };
        let prev = current
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
            });
        let t = prev
            .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
            .and_then(|c| c.get("lastTransitionTime"))
            .cloned()
            .unwrap_or_else(|| json!(now));
        let mut m = json!({"type": kind, "status": status, "lastProbeTime": null,
                           "lastTransitionTime": t});
        if let Some((r, msg)) = reason {
            m["reason"] = json!(r);
            if !msg.is_empty() {
                m["message"] = json!(msg);
            }
        }
        m
    };
    let unready = format!("containers with unready status: [{}]", names.join(" "));
    let (phase, conditions) = match health {
        PodHealth::Ready => (
            "Running",
            vec![
                cond("PodReadyToStartContainers", true, None),
                cond("Initialized", true, None),
                cond("Ready", true, None),
                cond("ContainersReady", true, None),
                cond("PodScheduled", true, None),
            ],
        ),
        PodHealth::NotReady => (
            "Running",
            vec![
                cond("PodReadyToStartContainers", true, None),
                cond("Initialized", true, None),
                cond(
                    "Ready",
                    false,
                    Some(("ContainersNotReady", unready.clone())),
                ),
                cond(
                    "ContainersReady",
                    false,
                    Some(("ContainersNotReady", unready)),
                ),
                cond("PodScheduled", true, None),
            ],
        ),
        PodHealth::Succeeded => (
            "Succeeded",
            vec![
                cond("PodReadyToStartContainers", false, None),
                cond("Initialized", true, Some(("PodCompleted", String::new()))),
                cond("Ready", false, Some(("PodCompleted", String::new()))),
                cond(
                    "ContainersReady",
                    false,
                    Some(("PodCompleted", String::new())),
                ),
                cond("PodScheduled", true, None),
            ],
        ),
    };
    let has_resources = containers.iter().any(|c| {
        c.get("resources")
            .and_then(Value::as_object)
            .is_some_and(|r| !r.is_empty())
    });
    json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": start,
        "containerStatuses": statuses,
        "qosClass": if has_resources { "Burstable" } else { "BestEffort" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_is_stable_and_order_independent() {
        let a = json!({"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"c": 1}});
        let b = json!({"spec": {"c": 1}, "metadata": {"labels": {"tier": "x", "app": "web"}}});
        let h = template_hash(&a);
        assert_eq!(h, template_hash(&b));
        assert_eq!(h.len(), 10);
        assert!(
            h.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(h, template_hash(&json!({"spec": {"c": 2}})));
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|c| ALPHABET.contains(&c)));
    }

    #[test]
    fn pod_status_follows_health_and_keeps_times() {
        let pod = json!({"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}});
        let ready = pod_status(
            &pod,
            PodHealth::Ready,
            &json!({"podIP": "10.244.1.2"}),
            "t1",
        );
        assert_eq!(ready["phase"], "Running");
        assert_eq!(ready["podIP"], "10.244.1.2");
        assert!(pod_ready(&json!({"status": ready.clone()})));
        assert_eq!(ready["containerStatuses"][0]["ready"], true);
        assert!(
            ready["containerStatuses"][0]["imageID"]
                .as_str()
                .is_some_and(|s| s.starts_with("nginx@sha256:") && s.len() == 77)
        );
        // A later pass changes nothing.
        assert_eq!(pod_status(&pod, PodHealth::Ready, &ready, "t2"), ready);
        let bad = pod_status(&pod, PodHealth::NotReady, &ready, "t3");
        assert!(!pod_ready(&json!({"status": bad.clone()})));
        assert_eq!(bad["containerStatuses"][0]["ready"], false);
        assert_eq!(bad["containerStatuses"][0]["started"], true);
        assert_eq!(bad["conditions"][2]["lastTransitionTime"], "t3");
        assert_eq!(bad["conditions"][4]["lastTransitionTime"], "t1");
        let done = pod_status(&pod, PodHealth::Succeeded, &ready, "t4");
        assert_eq!(done["phase"], "Succeeded");
        assert_eq!(
            done["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            0
        );
        assert_eq!(
            done["containerStatuses"][0]["containerID"],
            ready["containerStatuses"][0]["containerID"]
        );
    }

    fn setup() -> (Store, Registry, Key) {
        let store = Store::new(10_000);
        let registry = Registry::new();
        lifecycle::seed(&store, &registry);
        let key = Key::new("apps/deployments", "default", "web");
        (store, registry, key)
    }

    fn put_deployment(store: &Store, registry: &Registry, key: &Key, image: &str, n: i64) {
        let Some(def) = registry.find("apps", "v1", "deployments") else {
            panic!("no deployments")
        };
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": n, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": image}]}}}});
        let res = store.mutate(key, false, |old| match old {
            None => {
                let mut b = body;
                lifecycle::prepare_create(&def, &mut b);
                Ok(Change::Put(b))
            }
            Some(old) => lifecycle::prepare_update(&def, old, body, None),
        });
        assert!(res.is_ok());
    }

    fn names(store: &Store, storage: &str) -> Vec<String> {
        store
            .keys(storage, Some("default"))
            .into_iter()
            .map(|k| k.name)
            .collect()
    }

    #[test]
    fn deployment_gets_a_replicaset_and_pods_and_rolls_over() {
        let (store, registry, key) = setup();
        put_deployment(&store, &registry, &key, "nginx:1.25", 3);
        sync_deployment(&store, &registry, &key, PodHealth::Ready);
        let rss = names(&store, REPLICA_SETS);
        assert_eq!(rss.len(), 1);
        let rs = store
            .get(&Key::new(REPLICA_SETS, "default", &rss[0]))
            .unwrap_or_default();
        let d = store.get(&key).unwrap_or_default();
        assert_eq!(
            rs["metadata"]["ownerReferences"][0]["uid"],
            d["metadata"]["uid"]
        );
        assert_eq!(rs["metadata"]["annotations"][REVISION], "1");
        assert_eq!(rs["metadata"]["annotations"][MAX], "4");
        assert_eq!(rs["status"]["readyReplicas"], 3);
        assert_eq!(d["metadata"]["annotations"][REVISION], "1");
        let hash = rs["metadata"]["labels"][HASH_LABEL].as_str().unwrap_or("");
        assert_eq!(rss[0], format!("web-{hash}"));
        assert_eq!(rs["spec"]["selector"]["matchLabels"][HASH_LABEL], hash);
        let pods = names(&store, PODS);
        assert_eq!(pods.len(), 3);
        assert!(pods.iter().all(|p| p.starts_with(&format!("{}-", rss[0]))));
        // An idle pass writes nothing.
        let rv = store.current_rv();
        sync_deployment(&store, &registry, &key, PodHealth::Ready);
        assert_eq!(store.current_rv(), rv);
        // A new template: a second ReplicaSet takes the replicas, the first is scaled to 0.
        put_deployment(&store, &registry, &key, "nginx:1.26", 3);
        sync_deployment(&store, &registry, &key, PodHealth::Ready);
        assert_eq!(names(&store, REPLICA_SETS).len(), 2);
        assert_eq!(
            store
                .get(&Key::new(REPLICA_SETS, "default", &rss[0]))
                .map(|r| r["spec"]["replicas"].clone()),
            Some(json!(0))
        );
        assert_eq!(names(&store, PODS).len(), 3);
        let d = store.get(&key).unwrap_or_default();
        assert_eq!(d["metadata"]["annotations"][REVISION], "2");
        // Unhealthy: the pods stay but are not ready.
        sync_deployment(&store, &registry, &key, PodHealth::NotReady);
        let (pods, _) = store.list(PODS, Some("default"));
        assert_eq!(pods.len(), 3);
        assert!(pods.iter().all(|p| !pod_ready(p)));
        let rv = store.current_rv();
        sync_deployment(&store, &registry, &key, PodHealth::NotReady);
        assert_eq!(store.current_rv(), rv);
    }

    #[test]
    fn max_replicas_rounds_surge_up() {
        let d = json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%"}}}});
        assert_eq!(max_replicas(&d, 3), 4);
        assert_eq!(max_replicas(&d, 4), 5);
        let d = json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 2}}}});
        assert_eq!(max_replicas(&d, 3), 5);
    }
}
