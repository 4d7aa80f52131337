//! Minimal workload controllers, so health checks have something to observe: each workload's
//! children are converged first (`workloads`: ReplicaSets and Pods), then Deployments,
//! StatefulSets and DaemonSets report their rollout as complete, Jobs complete. A test switch
//! ([`Controllers::set_unhealthy`]) keeps a named workload unready (or a Job running), and
//! its Pods running but not ready.
//!
//! Every status write goes through the status subresource rules (`generation` and spec
//! untouched) as the manager `kube-controller-manager`, and only when the computed status
//! differs from the stored one, so an idle cluster's resourceVersion stays put.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use crate::lifecycle::{self, is_deleting, meta_str};
use crate::resources::{Registry, ResourceDef};
use crate::ssa;
use crate::store::{Change, Event, EventType, Key, Notice, Store, now_rfc3339};
use crate::workloads::{self, PodHealth};

/// The field manager the built-in controllers write as.
pub const MANAGER: &str = "kube-controller-manager";

/// The workload kinds handled here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
}

impl Workload {
    const ALL: [Workload; 4] = [
        Workload::Deployment,
        Workload::StatefulSet,
        Workload::DaemonSet,
        Workload::Job,
    ];

    /// Accepts the kind, plural, singular or short name, in any case.
    pub fn parse(kind: &str) -> Option<Workload> {
        let k = kind.to_ascii_lowercase();
        let k = k.split('.').next().unwrap_or("");
        match k {
            "deployment" | "deployments" | "deploy" => Some(Workload::Deployment),
            "statefulset" | "statefulsets" | "sts" => Some(Workload::StatefulSet),
            "daemonset" | "daemonsets" | "ds" => Some(Workload::DaemonSet),
            "job" | "jobs" => Some(Workload::Job),
            _ => None,
        }
    }

    fn group(self) -> &'static str {
        match self {
            Workload::Job => "batch",
            _ => "apps",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Workload::Deployment => "deployments",
            Workload::StatefulSet => "statefulsets",
            Workload::DaemonSet => "daemonsets",
            Workload::Job => "jobs",
        }
    }

    fn storage(self) -> String {
        format!("{}/{}", self.group(), self.plural())
    }

    fn from_storage(storage: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.storage() == storage)
    }
}

/// Shared controller state: the unhealthy switch and a wake-up for the loop.
#[derive(Default)]
pub struct Controllers {
    unhealthy: Mutex<HashSet<(Workload, String, String)>>,
    kick: Notify,
}

impl Controllers {
    pub fn new() -> Controllers {
        Controllers::default()
    }

    /// Keep a workload unready (`unhealthy = true`) or let it become ready again. Unknown
    /// kinds are ignored. Takes effect within one controller pass.
    pub fn set_unhealthy(&self, kind: &str, namespace: &str, name: &str, unhealthy: bool) {
        let Some(w) = Workload::parse(kind) else {
            tracing::warn!(
                "set_unhealthy: {kind} is not a Deployment, StatefulSet, DaemonSet or Job"
            );
            return;
        };
        {
            let mut set = match self.unhealthy.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let k = (w, namespace.to_string(), name.to_string());
            if unhealthy {
                set.insert(k);
            } else {
                set.remove(&k);
            }
        }
        self.kick.notify_one();
    }

    fn is_unhealthy(&self, w: Workload, namespace: &str, name: &str) -> bool {
        let set = match self.unhealthy.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        set.contains(&(w, namespace.to_string(), name.to_string()))
    }
}

/// The controller loop: one pass over every workload at start, after a lagged event stream
/// and after a switch changes; otherwise react to each workload's own events.
pub async fn run(store: Arc<Store>, registry: Arc<Registry>, ctl: Arc<Controllers>) {
    let mut rx = store.subscribe();
    resync(&store, &registry, &ctl);
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(Notice::Event(ev)) => on_event(&store, &registry, &ctl, &ev),
                Ok(Notice::Compacted) => {}
                Err(RecvError::Lagged(_)) => resync(&store, &registry, &ctl),
                Err(RecvError::Closed) => return,
            },
            _ = ctl.kick.notified() => resync(&store, &registry, &ctl),
        }
    }
}

/// A workload's own change reconciles it; a change to a ReplicaSet or Pod (deletions too,
/// so a deleted Pod is replaced) reconciles its controller.
fn on_event(store: &Store, registry: &Registry, ctl: &Controllers, ev: &Event) {
    if let Some(w) = Workload::from_storage(&ev.key.storage) {
        if ev.kind != EventType::Deleted {
            reconcile(store, registry, ctl, w, &ev.key);
        }
        return;
    }
    if ev.key.storage != workloads::PODS && ev.key.storage != workloads::REPLICA_SETS {
        return;
    }
    let Some(owner) = workloads::controller_ref(&ev.object) else {
        if ev.key.storage == workloads::REPLICA_SETS && ev.kind != EventType::Deleted {
            workloads::sync_replicaset(store, registry, &ev.key, PodHealth::Ready);
        }
        return;
    };
    let kind = owner.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = owner.get("name").and_then(Value::as_str).unwrap_or("");
    if kind == "ReplicaSet" {
        let rs = Key::new(workloads::REPLICA_SETS, &ev.key.namespace, name);
        match store
            .get(&rs)
            .as_deref()
            .and_then(workloads::controller_ref)
        {
            Some(d) if d.get("kind").and_then(Value::as_str) == Some("Deployment") => {
                let dn = d.get("name").and_then(Value::as_str).unwrap_or("");
                let dk = Key::new(&Workload::Deployment.storage(), &ev.key.namespace, dn);
                reconcile(store, registry, ctl, Workload::Deployment, &dk);
            }
            Some(_) => {}
            None => {
                workloads::sync_replicaset(store, registry, &rs, PodHealth::Ready);
            }
        }
        return;
    }
    if let Some(w) = Workload::parse(kind) {
        let key = Key::new(&w.storage(), &ev.key.namespace, name);
        reconcile(store, registry, ctl, w, &key);
    }
}

fn resync(store: &Store, registry: &Registry, ctl: &Controllers) {
    // ReplicaSets no controller owns are managed on their own.
    for key in store.keys(workloads::REPLICA_SETS, None) {
        let unowned = store
            .get(&key)
            .is_some_and(|rs| workloads::controller_ref(&rs).is_none());
        if unowned {
            workloads::sync_replicaset(store, registry, &key, PodHealth::Ready);
        }
    }
    for w in Workload::ALL {
        let (items, _) = store.list(&w.storage(), None);
        for obj in items {
            let key = Key::new(
                &w.storage(),
                meta_str(&obj, "namespace"),
                meta_str(&obj, "name"),
            );
            reconcile(store, registry, ctl, w, &key);
        }
    }
}

fn def_for(registry: &Registry, w: Workload) -> Option<Arc<ResourceDef>> {
    registry.find(w.group(), "v1", w.plural())
}

/// Bring one workload's status in line; a no-op when it already is.
pub fn reconcile(store: &Store, registry: &Registry, ctl: &Controllers, w: Workload, key: &Key) {
    let Some(def) = def_for(registry, w) else {
        return;
    };
    let unhealthy = ctl.is_unhealthy(w, &key.namespace, &key.name);
    sync_children(store, registry, w, key, unhealthy);
    let res = store.mutate(key, false, |old| {
        let Some(old) = old else {
            return Ok(Change::Keep(Value::Null));
        };
        if is_deleting(old) {
            return Ok(Change::Keep(old.clone()));
        }
        let now = now_rfc3339();
        let current = old.get("status").cloned().unwrap_or_else(|| json!({}));
        let desired = desired_status(w, old, &current, unhealthy, &now);
        if desired == current {
            return Ok(Change::Keep(old.clone()));
        }
        let mut body = old.clone();
        if let Some(o) = body.as_object_mut() {
            o.insert("status".into(), desired);
        }
        match lifecycle::prepare_update(&def, old, body, Some("status"))? {
            Change::Put(mut new) => {
                let schema = ssa::builtin_schema(&def.group, &def.kind);
                ssa::record_update(
                    Some(old),
                    &mut new,
                    MANAGER,
                    &def.api_version(),
                    Some("status"),
                    &now,
                    schema.as_ref(),
                );
                Ok(Change::Put(new))
            }
            other => Ok(other),
        }
    });
    if let Err(e) = res {
        tracing::debug!("controller status write for {key:?} failed: {e}");
    }
}

/// Converge the workload's ReplicaSets and Pods before its status is computed.
fn sync_children(store: &Store, registry: &Registry, w: Workload, key: &Key, unhealthy: bool) {
    let health = match (w, unhealthy) {
        (_, true) => PodHealth::NotReady,
        (Workload::Job, false) => PodHealth::Succeeded,
        (_, false) => PodHealth::Ready,
    };
    if w == Workload::Deployment {
        workloads::sync_deployment(store, registry, key, health);
        return;
    }
    let Some(obj) = store.get(key) else {
        return;
    };
    match w {
        Workload::StatefulSet => workloads::sync_statefulset(store, registry, &obj, health),
        Workload::DaemonSet => workloads::sync_daemonset(store, registry, &obj, health),
        Workload::Job => workloads::sync_job(store, registry, &obj, health),
        Workload::Deployment => {}
    }
}

fn int_at(obj: &Value, path: &[&str]) -> Option<i64> {
    let mut v = obj;
    for p in path {
        v = v.get(p)?;
    }
    v.as_i64()
}

fn generation(obj: &Value) -> i64 {
    int_at(obj, &["metadata", "generation"]).unwrap_or(1)
}

/// The hash naming the current template's ReplicaSet or revision (see `workloads`).
fn template_hash(obj: &Value) -> String {
    workloads::template_hash(obj.pointer("/spec/template").unwrap_or(&Value::Null))
}

/// Insert `n` unless it is zero (the typed status fields are `omitempty`).
fn put_count(m: &mut Map<String, Value>, field: &str, n: i64) {
    if n != 0 {
        m.insert(field.into(), json!(n));
    }
}

/// A condition, keeping the stored timestamps when nothing about it changed.
fn condition(
    current: &Value,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    time_fields: &[&str],
    now: &str,
) -> Value {
    let old = current
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        });
    let same_status = old.is_some_and(|c| c.get("status").and_then(Value::as_str) == Some(status));
    let same_all = same_status
        && old.is_some_and(|c| {
            c.get("reason").and_then(Value::as_str) == Some(reason)
                && c.get("message").and_then(Value::as_str) == Some(message)
        });
    let keep = |field: &str, keep_old: bool| -> Value {
        if keep_old && let Some(v) = old.and_then(|c| c.get(field)) {
            return v.clone();
        }
        json!(now)
    };
    let mut m = Map::new();
    m.insert("type".into(), json!(kind));
    m.insert("status".into(), json!(status));
    for f in time_fields {
        let keep_old = if *f == "lastTransitionTime" {
            same_status
        } else {
            same_all
        };
        m.insert((*f).into(), keep(f, keep_old));
    }
    m.insert("reason".into(), json!(reason));
    m.insert("message".into(), json!(message));
    Value::Object(m)
}

/// The status a real controller would converge to.
pub fn desired_status(
    w: Workload,
    obj: &Value,
    current: &Value,
    unhealthy: bool,
    now: &str,
) -> Value {
    let name = meta_str(obj, "name");
    let generation = generation(obj);
    let mut m = Map::new();
    match w {
        Workload::Deployment => {
            let n = int_at(obj, &["spec", "replicas"]).unwrap_or(1).max(0);
            let rs = format!("{name}-{}", template_hash(obj));
            m.insert("observedGeneration".into(), json!(generation));
            put_count(&mut m, "replicas", n);
            put_count(&mut m, "updatedReplicas", n);
            let times = &["lastUpdateTime", "lastTransitionTime"];
            let conditions = if unhealthy {
                put_count(&mut m, "unavailableReplicas", n);
                vec![
                    condition(
                        current,
                        "Available",
                        "False",
                        "MinimumReplicasUnavailable",
                        "Deployment does not have minimum availability.",
                        times,
                        now,
                    ),
                    condition(
                        current,
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        &format!("ReplicaSet \"{rs}\" is progressing."),
                        times,
                        now,
                    ),
                ]
            } else {
                put_count(&mut m, "readyReplicas", n);
                put_count(&mut m, "availableReplicas", n);
                vec![
                    condition(
                        current,
                        "Available",
                        "True",
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.",
                        times,
                        now,
                    ),
                    condition(
                        current,
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        &format!("ReplicaSet \"{rs}\" has successfully progressed."),
                        times,
                        now,
                    ),
                ]
            };
            m.insert("conditions".into(), Value::Array(conditions));
        }
        Workload::StatefulSet => {
            let n = int_at(obj, &["spec", "replicas"]).unwrap_or(1).max(0);
            let rev = format!("{name}-{}", template_hash(obj));
            m.insert("observedGeneration".into(), json!(generation));
            m.insert("replicas".into(), json!(n));
            put_count(&mut m, "currentReplicas", n);
            put_count(&mut m, "updatedReplicas", n);
            if !unhealthy {
                put_count(&mut m, "readyReplicas", n);
                put_count(&mut m, "availableReplicas", n);
            }
            m.insert("currentRevision".into(), json!(rev));
            m.insert("updateRevision".into(), json!(rev));
            m.insert("collisionCount".into(), json!(0));
        }
        Workload::DaemonSet => {
            // One emulated node.
            let ready = if unhealthy { 0 } else { 1 };
            m.insert("currentNumberScheduled".into(), json!(1));
            m.insert("numberMisscheduled".into(), json!(0));
            m.insert("desiredNumberScheduled".into(), json!(1));
            m.insert("numberReady".into(), json!(ready));
            m.insert("observedGeneration".into(), json!(generation));
            put_count(&mut m, "updatedNumberScheduled", 1);
            put_count(&mut m, "numberAvailable", ready);
            put_count(&mut m, "numberUnavailable", 1 - ready);
        }
        Workload::Job => {
            let start = current
                .get("startTime")
                .cloned()
                .unwrap_or_else(|| json!(now));
            m.insert("startTime".into(), start);
            if unhealthy {
                let active = int_at(obj, &["spec", "parallelism"]).unwrap_or(1).max(0);
                put_count(&mut m, "active", active);
            } else {
                let done = current
                    .get("completionTime")
                    .cloned()
                    .unwrap_or_else(|| json!(now));
                m.insert("completionTime".into(), done);
                let succeeded = int_at(obj, &["spec", "completions"]).unwrap_or(1).max(0);
                put_count(&mut m, "succeeded", succeeded);
                let times = &["lastProbeTime", "lastTransitionTime"];
                let msg = "Reached expected number of succeeded pods";
                m.insert(
                    "conditions".into(),
                    json!([
                        condition(
                            current,
                            "SuccessCriteriaMet",
                            "True",
                            "CompletionsReached",
                            msg,
                            times,
                            now
                        ),
                        condition(
                            current,
                            "Complete",
                            "True",
                            "CompletionsReached",
                            msg,
                            times,
                            now
                        ),
                    ]),
                );
            }
            m.insert("ready".into(), json!(0));
            m.insert("terminating".into(), json!(0));
            m.insert("uncountedTerminatedPods".into(), json!({}));
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy() -> Value {
        json!({"metadata": {"name": "web", "namespace": "a", "generation": 3},
               "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}}}})
    }

    #[test]
    fn deployment_status_is_complete_and_stable() {
        let d = deploy();
        let s = desired_status(
            Workload::Deployment,
            &d,
            &json!({}),
            false,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["availableReplicas"], 2);
        assert_eq!(s["conditions"][1]["reason"], "NewReplicaSetAvailable");
        // A later pass keeps the timestamps, so nothing changes.
        let again = desired_status(Workload::Deployment, &d, &s, false, "2026-01-02T00:00:00Z");
        assert_eq!(s, again);
        let bad = desired_status(Workload::Deployment, &d, &s, true, "2026-01-02T00:00:00Z");
        assert_eq!(bad["conditions"][0]["status"], "False");
        assert_eq!(bad["conditions"][0]["reason"], "MinimumReplicasUnavailable");
        assert!(bad.get("readyReplicas").is_none());
    }

    #[test]
    fn kinds_parse_by_any_name() {
        assert_eq!(Workload::parse("deploy"), Some(Workload::Deployment));
        assert_eq!(Workload::parse("StatefulSet"), Some(Workload::StatefulSet));
        assert_eq!(Workload::parse("jobs.batch"), Some(Workload::Job));
        assert_eq!(Workload::parse("pod"), None);
    }
}
