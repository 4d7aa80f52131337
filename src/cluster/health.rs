//! Health of applied objects, following the kstatus conventions that Flux and `kubectl
//! rollout status` users already know.
//!
//! - [`health_of`] judges one live object (pure, no I/O): Deployments, StatefulSets,
//!   DaemonSets and ReplicaSets rolled out, Jobs complete, Pods ready, PVCs bound,
//!   LoadBalancer Services with an address, CRDs established, any object with a `Ready`
//!   condition ready, and the standard `Stalled` / `Reconciling` conditions; everything else
//!   is [`Health::Current`] once it exists.
//! - [`first_unhealthy`] folds the health of a set into the first object that is not
//!   Current, with its reason (what an Application's `Ready=False` message names).
//! - [`wait_healthy`] polls a set of inventory entries through the caller's (impersonated)
//!   client until all are Current, one has Failed, or the timeout passes.
//!
//! Reasons are built from counts and the conditions' own reasons and messages, which
//! controllers write; no Secret is ever read here (Secrets have no health rules).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;
use tokio::time::Instant;

use crate::controller::application::InventoryEntry;

/// The kstatus-like health of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Fully reconciled by its controller (rolled out, complete, ready, or simply present).
    Current,
    /// Still converging; the reason says what it waits for.
    InProgress(String),
    /// Its controller gave up (progress deadline exceeded, Job failed, crash loop, Stalled).
    /// Waiting longer will not help without a change.
    Failed(String),
    /// The object does not exist.
    NotFound,
    /// The object is being deleted (`metadata.deletionTimestamp` is set).
    Terminating,
}

impl Health {
    pub fn is_current(&self) -> bool {
        matches!(self, Health::Current)
    }

    /// The reason for anything but Current (`None` for Current).
    pub fn reason(&self) -> Option<String> {
        match self {
            Health::Current => None,
            Health::InProgress(r) | Health::Failed(r) => Some(r.clone()),
            Health::NotFound => Some("not found".to_owned()),
            Health::Terminating => Some("being deleted".to_owned()),
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Current => f.write_str("Current"),
            Health::InProgress(r) => write!(f, "InProgress: {r}"),
            Health::Failed(r) => write!(f, "Failed: {r}"),
            Health::NotFound => f.write_str("NotFound"),
            Health::Terminating => f.write_str("Terminating"),
        }
    }
}

/// The first object of a set that is not healthy, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object} is not healthy: {reason}")]
pub struct Unhealthy {
    /// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
    pub object: String,
    pub reason: String,
}

/// How an inventory entry is named in reasons and status: `Kind namespace/name`, or
/// `Kind name` when cluster-scoped.
pub fn object_name(entry: &InventoryEntry) -> String {
    match &entry.namespace {
        Some(ns) => format!("{} {ns}/{}", entry.kind, entry.name),
        None => format!("{} {}", entry.kind, entry.name),
    }
}

/// Folds the health of a set (in the caller's order, e.g. apply order) into the first
/// object that is not Current. A Failed object wins over earlier InProgress ones, because
/// it is the one that needs a human.
pub fn first_unhealthy<'a, I>(items: I) -> Option<Unhealthy>
where
    I: IntoIterator<Item = (&'a InventoryEntry, &'a Health)>,
{
    let mut first = None;
    for (entry, health) in items {
        let Some(reason) = health.reason() else {
            continue;
        };
        let u = Unhealthy {
            object: object_name(entry),
            reason,
        };
        if matches!(health, Health::Failed(_)) {
            return Some(u);
        }
        first.get_or_insert(u);
    }
    first
}

/// True for kinds that [`health_of`] can judge beyond "exists": workloads, Jobs, Pods,
/// PVCs, Services (LoadBalancer), CRDs, and custom resources (which may carry `Ready`,
/// `Stalled` or `Reconciling` conditions). False for plain data and RBAC kinds
/// (ConfigMaps, Secrets, Roles, ...), so an app made only of those needs no health wait.
pub fn has_health_rules(group: &str, kind: &str) -> bool {
    match (group, kind) {
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => true,
        ("batch", "Job") => true,
        ("", "Pod" | "PersistentVolumeClaim" | "Service" | "ReplicationController") => true,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => true,
        _ => is_custom_group(group),
    }
}

/// Groups served by CRDs always contain a dot and are not Kubernetes' own (`*.k8s.io`);
/// the built-in groups without a dot (`apps`, `batch`, `policy`, ...) are not custom.
fn is_custom_group(group: &str) -> bool {
    group.contains('.') && !group.ends_with(".k8s.io")
}

/// The health of one live object (as returned by the API server) under kstatus rules.
/// `Value::Null` (an object that could not be found) is [`Health::NotFound`].
pub fn health_of(live: &Value) -> Health {
    if !live.is_object() {
        return Health::NotFound;
    }
    if live
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return Health::Terminating;
    }
    // Status written for an older spec says nothing about the current one.
    if let (Some(generation), Some(observed)) = (
        int(live, "/metadata/generation"),
        int(live, "/status/observedGeneration"),
    ) && observed < generation
    {
        return Health::InProgress(format!(
            "generation {generation} not yet observed by its controller (at {observed})"
        ));
    }
    // The standard kstatus conditions any controller may set.
    if let Some(c) = condition(live, "Stalled")
        && c.status == "True"
    {
        return Health::Failed(c.describe("stalled"));
    }
    if let Some(c) = condition(live, "Reconciling")
        && c.status == "True"
    {
        return Health::InProgress(c.describe("reconciling"));
    }

    let api_version = str_at(live, "/apiVersion").unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let kind = str_at(live, "/kind").unwrap_or_default();
    match (group, kind) {
        ("apps", "Deployment") => deployment(live),
        ("apps", "StatefulSet") => stateful_set(live),
        ("apps", "DaemonSet") => daemon_set(live),
        ("apps", "ReplicaSet") | ("", "ReplicationController") => replica_set(live),
        ("batch", "Job") => job(live),
        ("", "Pod") => pod(live),
        ("", "PersistentVolumeClaim") => pvc(live),
        ("", "Service") => service(live),
        ("", "Namespace") => namespace(live),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(live),
        _ => ready_condition(live),
    }
}

/// Without `status.observedGeneration` a built-in workload's status may predate the spec
/// (or the controller has not seen it at all).
fn require_observed(live: &Value) -> Option<Health> {
    if int(live, "/status/observedGeneration").is_none()
        && int(live, "/metadata/generation").is_some()
    {
        return Some(Health::InProgress(
            "not yet observed by its controller".to_owned(),
        ));
    }
    None
}

fn deployment(live: &Value) -> Health {
    if let Some(h) = require_observed(live) {
        return h;
    }
    // kube's deployment controller reports a stuck rollout through this reason.
    if let Some(c) = condition(live, "Progressing")
        && c.reason == "ProgressDeadlineExceeded"
    {
        return Health::Failed(c.describe("progress deadline exceeded"));
    }
    let want = int(live, "/spec/replicas").unwrap_or(1);
    let replicas = int(live, "/status/replicas").unwrap_or(0);
    let updated = int(live, "/status/updatedReplicas").unwrap_or(0);
    let ready = int(live, "/status/readyReplicas").unwrap_or(0);
    let available = int(live, "/status/availableReplicas").unwrap_or(0);
    if updated < want {
        return Health::InProgress(format!("{updated} of {want} replicas updated"));
    }
    if replicas > updated {
        return Health::InProgress(format!(
            "{} old replicas pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Health::InProgress(format!("{available} of {want} replicas available"));
    }
    if ready < want {
        return Health::InProgress(format!("{ready} of {want} replicas ready"));
    }
    if let Some(c) = condition(live, "Available")
        && c.status != "True"
    {
        return Health::InProgress(c.describe("not available"));
    }
    Health::Current
}

fn stateful_set(live: &Value) -> Health {
    if let Some(h) = require_observed(live) {
        return h;
    }
    if str_at(live, "/spec/updateStrategy/type") == Some("OnDelete") {
        // Pods are replaced only when someone deletes them: nothing to wait for.
        return Health::Current;
    }
    let want = int(live, "/spec/replicas").unwrap_or(1);
    let replicas = int(live, "/status/replicas").unwrap_or(0);
    let ready = int(live, "/status/readyReplicas").unwrap_or(0);
    let updated = int(live, "/status/updatedReplicas").unwrap_or(0);
    if replicas > want {
        return Health::InProgress(format!(
            "{} extra replicas pending termination",
            replicas - want
        ));
    }
    if ready < want {
        return Health::InProgress(format!("{ready} of {want} replicas ready"));
    }
    if let Some(partition) = int(live, "/spec/updateStrategy/rollingUpdate/partition")
        && partition > 0
    {
        // A partitioned rollout is done when the pods at or above the partition are updated.
        let expected = (want - partition).max(0);
        if updated < expected {
            return Health::InProgress(format!(
                "{updated} of {expected} replicas updated (partition {partition})"
            ));
        }
        return Health::Current;
    }
    let current_rev = str_at(live, "/status/currentRevision").unwrap_or_default();
    let update_rev = str_at(live, "/status/updateRevision").unwrap_or_default();
    if current_rev != update_rev {
        return Health::InProgress(format!(
            "rolling update in progress: {updated} of {want} replicas at revision {update_rev}"
        ));
    }
    Health::Current
}

fn daemon_set(live: &Value) -> Health {
    if let Some(h) = require_observed(live) {
        return h;
    }
    let Some(desired) = int(live, "/status/desiredNumberScheduled") else {
        return Health::InProgress("not yet scheduled by its controller".to_owned());
    };
    let scheduled = int(live, "/status/currentNumberScheduled").unwrap_or(0);
    let updated = int(live, "/status/updatedNumberScheduled").unwrap_or(0);
    let available = int(live, "/status/numberAvailable").unwrap_or(0);
    let ready = int(live, "/status/numberReady").unwrap_or(0);
    for (have, what) in [
        (scheduled, "scheduled"),
        (updated, "updated"),
        (available, "available"),
        (ready, "ready"),
    ] {
        if have < desired {
            return Health::InProgress(format!("{have} of {desired} pods {what}"));
        }
    }
    Health::Current
}

fn replica_set(live: &Value) -> Health {
    if let Some(h) = require_observed(live) {
        return h;
    }
    if let Some(c) = condition(live, "ReplicaFailure")
        && c.status == "True"
    {
        return Health::InProgress(c.describe("replica failure"));
    }
    let want = int(live, "/spec/replicas").unwrap_or(1);
    let replicas = int(live, "/status/replicas").unwrap_or(0);
    let ready = int(live, "/status/readyReplicas").unwrap_or(0);
    let available = int(live, "/status/availableReplicas").unwrap_or(0);
    if replicas > want {
        return Health::InProgress(format!(
            "{} extra replicas pending termination",
            replicas - want
        ));
    }
    if ready < want {
        return Health::InProgress(format!("{ready} of {want} replicas ready"));
    }
    if available < want {
        return Health::InProgress(format!("{available} of {want} replicas available"));
    }
    Health::Current
}

fn job(live: &Value) -> Health {
    if let Some(c) = condition(live, "Failed")
        && c.status == "True"
    {
        return Health::Failed(c.describe("job failed"));
    }
    if let Some(c) = condition(live, "Complete")
        && c.status == "True"
    {
        return Health::Current;
    }
    if let Some(c) = condition(live, "Suspended")
        && c.status == "True"
    {
        return Health::InProgress("job is suspended".to_owned());
    }
    let active = int(live, "/status/active").unwrap_or(0);
    let succeeded = int(live, "/status/succeeded").unwrap_or(0);
    let failed = int(live, "/status/failed").unwrap_or(0);
    let completions = int(live, "/spec/completions").unwrap_or(1);
    Health::InProgress(format!(
        "job running: {succeeded} of {completions} completions, {active} active, {failed} failed"
    ))
}

fn pod(live: &Value) -> Health {
    match str_at(live, "/status/phase") {
        Some("Succeeded") => return Health::Current,
        Some("Failed") => {
            let why = str_at(live, "/status/reason")
                .or_else(|| str_at(live, "/status/message"))
                .unwrap_or("a container exited with an error");
            return Health::Failed(format!("pod failed: {why}"));
        }
        _ => {}
    }
    let statuses = live
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for cs in statuses {
        let Some(waiting) = cs.pointer("/state/waiting/reason").and_then(Value::as_str) else {
            continue;
        };
        let name = cs.get("name").and_then(Value::as_str).unwrap_or("?");
        if waiting == "CrashLoopBackOff" {
            return Health::Failed(format!("container {name} is in CrashLoopBackOff"));
        }
        if matches!(
            waiting,
            "ImagePullBackOff" | "ErrImagePull" | "CreateContainerConfigError" | "InvalidImageName"
        ) {
            return Health::InProgress(format!("container {name} is waiting: {waiting}"));
        }
    }
    if let Some(c) = condition(live, "Ready")
        && c.status == "True"
    {
        return Health::Current;
    }
    if let Some(c) = condition(live, "PodScheduled")
        && c.status == "False"
    {
        return Health::InProgress(c.describe("not scheduled"));
    }
    let phase = str_at(live, "/status/phase").unwrap_or("Pending");
    Health::InProgress(format!("pod {phase}, not ready"))
}

fn pvc(live: &Value) -> Health {
    match str_at(live, "/status/phase") {
        Some("Bound") => Health::Current,
        Some("Lost") => Health::Failed("volume lost".to_owned()),
        phase => Health::InProgress(format!("not Bound (phase {})", phase.unwrap_or("unknown"))),
    }
}

fn service(live: &Value) -> Health {
    if str_at(live, "/spec/type") != Some("LoadBalancer") {
        return Health::Current;
    }
    let has_address = live
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_address {
        Health::Current
    } else {
        Health::InProgress("waiting for a load balancer address".to_owned())
    }
}

fn namespace(live: &Value) -> Health {
    if str_at(live, "/status/phase") == Some("Terminating") {
        Health::Terminating
    } else {
        Health::Current
    }
}

fn crd(live: &Value) -> Health {
    if let Some(c) = condition(live, "NamesAccepted")
        && c.status == "False"
    {
        return Health::Failed(c.describe("names not accepted"));
    }
    match condition(live, "Established") {
        Some(c) if c.status == "True" => Health::Current,
        _ => Health::InProgress("not yet Established".to_owned()),
    }
}

/// Any other kind: a `Ready` condition decides when present (kstatus treats `False` as
/// still in progress; `Stalled` marks real failure and was checked before).
fn ready_condition(live: &Value) -> Health {
    let generation = int(live, "/metadata/generation");
    match condition(live, "Ready") {
        // metav1.Condition carries its own observedGeneration: a Ready written for an older
        // spec (lockstep's own Applications do this) is not an answer yet.
        Some(Cond {
            status: "True",
            observed_generation: Some(seen),
            ..
        }) if generation.is_some_and(|g| seen < g) => Health::InProgress(format!(
            "Ready for an older generation ({seen} of {})",
            generation.unwrap_or_default()
        )),
        Some(c) if c.status == "True" => Health::Current,
        Some(c) => Health::InProgress(c.describe("not ready")),
        None => Health::Current,
    }
}

struct Cond<'a> {
    type_: &'a str,
    status: &'a str,
    reason: &'a str,
    message: &'a str,
    observed_generation: Option<i64>,
}

impl Cond<'_> {
    /// `fallback (Type=Status, Reason): message`, skipping empty parts.
    fn describe(&self, fallback: &str) -> String {
        let mut s = format!("{fallback} ({}={}", self.type_, self.status);
        if !self.reason.is_empty() {
            s.push_str(", ");
            s.push_str(self.reason);
        }
        s.push(')');
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(self.message);
        }
        s
    }
}

fn condition<'a>(live: &'a Value, type_: &str) -> Option<Cond<'a>> {
    let c = live
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))?;
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default();
    Some(Cond {
        type_: s("type"),
        status: s("status"),
        reason: s("reason"),
        message: s("message"),
        observed_generation: c.get("observedGeneration").and_then(Value::as_i64),
    })
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn int(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// Polls (every `poll`; 1-2 s is sensible) the given objects through the given
/// (impersonated) client until all are Current or `timeout` passes. Only objects whose
/// kind [`has_health_rules`] are fetched; the rest count as healthy once applied.
///
/// Returns early with the object as soon as one is [`Health::Failed`] (a rollout past its
/// progress deadline, a failed Job): waiting longer cannot fix it. On timeout, returns the
/// first object (in the given order) that is still not Current, with its reason; the last
/// round's reads may take up to `min(poll, 5 s)` past the timeout. An object
/// that was Current once is not fetched again in the same wait, which keeps the requests
/// per poll down to the objects still converging. API errors are retried on the next poll
/// and, if still failing at the timeout, reported by status code and reason only (an API
/// server may echo request bodies in its messages).
pub async fn wait_healthy(
    client: &kube::Client,
    objects: &[InventoryEntry],
    timeout: Duration,
    poll: Duration,
) -> Result<(), Unhealthy> {
    let deadline = Instant::now() + timeout;
    let poll = poll.max(Duration::from_millis(10));
    // Each object still converging, with what the last poll saw of it.
    let mut pending: Vec<(&InventoryEntry, Option<Health>)> = objects
        .iter()
        .filter(|e| has_health_rules(&e.group, &e.kind))
        .map(|e| (e, None))
        .collect();
    let mut resources = Resources::default();
    loop {
        let mut first: Option<Unhealthy> = None;
        let mut still = Vec::with_capacity(pending.len());
        for (entry, last) in pending {
            // The round that starts at the deadline still gets a short chance to answer.
            let read_by = deadline.max(Instant::now() + poll.min(Duration::from_secs(5)));
            let read = tokio::time::timeout_at(read_by, fetch(client, &mut resources, entry));
            let health = match (read.await, last) {
                (Ok(Ok(h)), _) => h,
                (Ok(Err(reason)), _) => Health::InProgress(reason),
                // Out of time mid-request: what the previous poll saw is the best answer.
                (Err(_), Some(h)) => h,
                (Err(_), None) => {
                    Health::InProgress("no answer from the API server in time".to_owned())
                }
            };
            let Some(reason) = health.reason() else {
                continue;
            };
            let u = Unhealthy {
                object: object_name(entry),
                reason,
            };
            if matches!(health, Health::Failed(_)) {
                return Err(u);
            }
            first.get_or_insert(u);
            still.push((entry, Some(health)));
        }
        let Some(first) = first else {
            return Ok(());
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(first);
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
        pending = still;
    }
}

/// REST mappings found so far in one wait: built-in kinds from a table, custom kinds by
/// discovery (once per group/version/kind).
#[derive(Default)]
struct Resources {
    found: HashMap<(String, String, String), ApiResource>,
}

impl Resources {
    async fn resolve(
        &mut self,
        client: &kube::Client,
        entry: &InventoryEntry,
    ) -> Result<ApiResource, String> {
        let key = (
            entry.group.clone(),
            entry.version.clone(),
            entry.kind.clone(),
        );
        if let Some(ar) = self.found.get(&key) {
            return Ok(ar.clone());
        }
        let gvk = GroupVersionKind::gvk(&entry.group, &entry.version, &entry.kind);
        let ar = match builtin_plural(&entry.group, &entry.kind) {
            Some(plural) => ApiResource::from_gvk_with_plural(&gvk, plural),
            None => match kube::discovery::pinned_kind(client, &gvk).await {
                Ok((ar, _)) => ar,
                Err(e) => return Err(format!("cannot find its API: {}", short_error(&e))),
            },
        };
        self.found.insert(key, ar.clone());
        Ok(ar)
    }
}

fn builtin_plural(group: &str, kind: &str) -> Option<&'static str> {
    Some(match (group, kind) {
        ("apps", "Deployment") => "deployments",
        ("apps", "StatefulSet") => "statefulsets",
        ("apps", "DaemonSet") => "daemonsets",
        ("apps", "ReplicaSet") => "replicasets",
        ("batch", "Job") => "jobs",
        ("", "Pod") => "pods",
        ("", "PersistentVolumeClaim") => "persistentvolumeclaims",
        ("", "Service") => "services",
        ("", "ReplicationController") => "replicationcontrollers",
        ("apiextensions.k8s.io", "CustomResourceDefinition") => "customresourcedefinitions",
        _ => return None,
    })
}

async fn fetch(
    client: &kube::Client,
    resources: &mut Resources,
    entry: &InventoryEntry,
) -> Result<Health, String> {
    let ar = resources.resolve(client, entry).await?;
    let api: Api<DynamicObject> = match &entry.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    match api.get_opt(&entry.name).await {
        Ok(Some(obj)) => {
            let live =
                serde_json::to_value(&obj).map_err(|e| format!("cannot read its status: {e}"))?;
            Ok(health_of(&live))
        }
        Ok(None) => Ok(Health::NotFound),
        Err(e) => Err(format!("cannot read it: {}", short_error(&e))),
    }
}

/// An API error by code and reason only: messages may quote request bodies.
fn short_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.reason.is_empty() => format!("{} ({})", s.reason, s.code),
        kube::Error::Api(s) => format!("HTTP {}", s.code),
        _ => "the API server could not be reached".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": 2},
            "spec": {"replicas": 2, "progressDeadlineSeconds": 600},
            "status": status,
        })
    }

    fn rolled_out() -> Value {
        json!({
            "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": "ReplicaSet \"web-7d4b9c\" has successfully progressed."}
            ]
        })
    }

    fn in_progress(h: Health, needle: &str) {
        match h {
            Health::InProgress(r) => assert!(r.contains(needle), "reason {r:?} lacks {needle:?}"),
            other => panic!("expected InProgress({needle}), got {other:?}"),
        }
    }

    #[test]
    fn deployment_rolled_out_is_current() {
        assert_eq!(health_of(&deploy(rolled_out())), Health::Current);
    }

    #[test]
    fn deployment_with_stale_status_is_in_progress() {
        let mut s = rolled_out();
        s["observedGeneration"] = json!(1);
        in_progress(health_of(&deploy(s)), "generation 2 not yet observed");
        let mut s = rolled_out();
        if let Some(m) = s.as_object_mut() {
            m.remove("observedGeneration");
        }
        in_progress(health_of(&deploy(s)), "not yet observed");
    }

    #[test]
    fn deployment_counts_each_stage_of_a_rollout() {
        let mut s = rolled_out();
        s["updatedReplicas"] = json!(1);
        in_progress(health_of(&deploy(s)), "1 of 2 replicas updated");
        let mut s = rolled_out();
        s["replicas"] = json!(3);
        in_progress(health_of(&deploy(s)), "1 old replicas pending termination");
        let mut s = rolled_out();
        s["availableReplicas"] = json!(0);
        in_progress(health_of(&deploy(s)), "0 of 2 replicas available");
        let mut s = rolled_out();
        s["readyReplicas"] = json!(1);
        in_progress(health_of(&deploy(s)), "1 of 2 replicas ready");
    }

    #[test]
    fn deployment_past_its_progress_deadline_failed() {
        let mut s = rolled_out();
        s["availableReplicas"] = json!(0);
        s["conditions"][1] = json!({"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"web-7d4b9c\" has timed out progressing."});
        match health_of(&deploy(s)) {
            Health::Failed(r) => {
                assert!(r.contains("ProgressDeadlineExceeded"), "{r}");
                assert!(r.contains("timed out progressing"), "{r}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deployment_default_replicas_is_one() {
        let mut d = deploy(json!({"observedGeneration": 2, "replicas": 1,
            "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}));
        if let Some(m) = d["spec"].as_object_mut() {
            m.remove("replicas");
        }
        assert_eq!(health_of(&d), Health::Current);
        d["status"]["readyReplicas"] = json!(0);
        in_progress(health_of(&d), "0 of 1 replicas ready");
    }

    fn sts(status: Value, strategy: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "db", "namespace": "shop", "generation": 1},
               "spec": {"replicas": 3, "updateStrategy": strategy},
               "status": status})
    }

    #[test]
    fn statefulset_rules() {
        let done = json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3,
            "currentReplicas": 3, "updatedReplicas": 3,
            "currentRevision": "db-5c8f", "updateRevision": "db-5c8f"});
        let rolling = json!({"type": "RollingUpdate"});
        assert_eq!(
            health_of(&sts(done.clone(), rolling.clone())),
            Health::Current
        );

        let mut s = done.clone();
        s["readyReplicas"] = json!(2);
        in_progress(health_of(&sts(s, rolling.clone())), "2 of 3 replicas ready");

        let mut s = done.clone();
        s["updateRevision"] = json!("db-9a1e");
        s["updatedReplicas"] = json!(1);
        in_progress(
            health_of(&sts(s.clone(), rolling.clone())),
            "1 of 3 replicas at revision db-9a1e",
        );
        // With a partition of 2 only the last pod is updated, so 1 updated is done.
        let partitioned = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
        assert_eq!(health_of(&sts(s.clone(), partitioned)), Health::Current);
        // OnDelete never rolls by itself.
        assert_eq!(
            health_of(&sts(s, json!({"type": "OnDelete"}))),
            Health::Current
        );
    }

    #[test]
    fn daemonset_rules() {
        let ds = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                   "metadata": {"name": "agent", "namespace": "ops", "generation": 4},
                   "status": status})
        };
        let done = json!({"observedGeneration": 4, "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3, "updatedNumberScheduled": 3,
            "numberAvailable": 3, "numberReady": 3});
        assert_eq!(health_of(&ds(done.clone())), Health::Current);
        let mut s = done.clone();
        s["updatedNumberScheduled"] = json!(1);
        in_progress(health_of(&ds(s)), "1 of 3 pods updated");
        let mut s = done.clone();
        s["numberReady"] = json!(2);
        in_progress(health_of(&ds(s)), "2 of 3 pods ready");
        in_progress(
            health_of(&ds(json!({"observedGeneration": 4}))),
            "not yet scheduled",
        );
    }

    #[test]
    fn replicaset_rules() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "namespace": "a", "generation": 1},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 1,
                       "availableReplicas": 1}});
        in_progress(health_of(&rs), "1 of 2 replicas ready");
    }

    fn job(conditions: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "migrate", "namespace": "shop", "generation": 1},
               "spec": {"completions": 1},
               "status": {"active": 1, "conditions": conditions}})
    }

    #[test]
    fn job_rules() {
        in_progress(health_of(&job(json!([]))), "0 of 1 completions, 1 active");
        assert_eq!(
            health_of(&job(json!([
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached"}
            ]))),
            Health::Current
        );
        match health_of(&job(json!([{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}])))
        {
            Health::Failed(r) => assert!(r.contains("BackoffLimitExceeded"), "{r}"),
            other => panic!("{other:?}"),
        }
        in_progress(
            health_of(&job(json!([{"type": "Suspended", "status": "True"}]))),
            "suspended",
        );
    }

    fn pod(status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web-7d4b9c-x2x", "namespace": "shop"},
               "status": status})
    }

    #[test]
    fn pod_rules() {
        assert_eq!(
            health_of(&pod(json!({"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}]}))),
            Health::Current
        );
        assert_eq!(
            health_of(&pod(json!({"phase": "Succeeded"}))),
            Health::Current
        );
        assert!(matches!(
            health_of(&pod(json!({"phase": "Failed", "reason": "Evicted"}))),
            Health::Failed(r) if r.contains("Evicted")
        ));
        assert!(matches!(
            health_of(&pod(json!({"phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}))),
            Health::Failed(r) if r.contains("container app") && r.contains("CrashLoopBackOff")
        ));
        in_progress(
            health_of(&pod(json!({"phase": "Pending",
                "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}))),
            "ImagePullBackOff",
        );
        in_progress(
            health_of(&pod(
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
                "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}]}),
            )),
            "Unschedulable",
        );
    }

    #[test]
    fn pvc_and_service_rules() {
        let pvc = |phase: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "data", "namespace": "shop"}, "status": {"phase": phase}})
        };
        assert_eq!(health_of(&pvc("Bound")), Health::Current);
        in_progress(health_of(&pvc("Pending")), "not Bound (phase Pending)");
        assert!(matches!(health_of(&pvc("Lost")), Health::Failed(_)));

        let svc = |type_: &str, status: Value| {
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"type": type_}, "status": status})
        };
        assert_eq!(health_of(&svc("ClusterIP", json!({}))), Health::Current);
        in_progress(
            health_of(&svc("LoadBalancer", json!({"loadBalancer": {}}))),
            "load balancer address",
        );
        assert_eq!(
            health_of(&svc(
                "LoadBalancer",
                json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}})
            )),
            Health::Current
        );
    }

    #[test]
    fn crd_namespace_and_termination() {
        let crd = |conds: Value| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "widgets.example.com", "generation": 1},
                   "status": {"conditions": conds}})
        };
        in_progress(health_of(&crd(json!([]))), "not yet Established");
        assert_eq!(
            health_of(&crd(json!([{"type": "NamesAccepted", "status": "True"},
                                  {"type": "Established", "status": "True"}]))),
            Health::Current
        );
        assert!(matches!(
            health_of(&crd(json!([{"type": "NamesAccepted", "status": "False",
                "reason": "ListKindConflict"}]))),
            Health::Failed(r) if r.contains("ListKindConflict")
        ));
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop"}, "status": {"phase": "Terminating"}});
        assert_eq!(health_of(&ns), Health::Terminating);
        let mut d = deploy(rolled_out());
        d["metadata"]["deletionTimestamp"] = json!("2026-12-03T03:00:00Z");
        assert_eq!(health_of(&d), Health::Terminating);
        assert_eq!(health_of(&Value::Null), Health::NotFound);
    }

    #[test]
    fn custom_resources_follow_ready_stalled_and_reconciling() {
        let cr = |conds: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                   "metadata": {"name": "w", "namespace": "shop", "generation": 3},
                   "status": {"observedGeneration": 3, "conditions": conds}})
        };
        assert_eq!(health_of(&cr(json!([]))), Health::Current);
        assert_eq!(
            health_of(&cr(json!([{"type": "Ready", "status": "True"}]))),
            Health::Current
        );
        in_progress(
            health_of(&cr(json!([{"type": "Ready", "status": "False",
                "reason": "DependencyNotReady", "message": "waiting for db"}]))),
            "DependencyNotReady): waiting for db",
        );
        in_progress(
            health_of(&cr(
                json!([{"type": "Reconciling", "status": "True", "reason": "Progressing"},
                                 {"type": "Ready", "status": "True"}]),
            )),
            "reconciling",
        );
        assert!(matches!(
            health_of(&cr(json!([{"type": "Stalled", "status": "True", "reason": "InvalidSpec"},
                                 {"type": "Ready", "status": "False"}]))),
            Health::Failed(r) if r.contains("InvalidSpec")
        ));
        // A Ready condition stamped with an older generation does not count either.
        let mut app = cr(json!([{"type": "Ready", "status": "True", "observedGeneration": 2}]));
        in_progress(health_of(&app), "Ready for an older generation (2 of 3)");
        app["status"]["conditions"][0]["observedGeneration"] = json!(3);
        assert_eq!(health_of(&app), Health::Current);
        // Status from an older generation does not count, even when it says Ready.
        let mut stale = cr(json!([{"type": "Ready", "status": "True"}]));
        stale["status"]["observedGeneration"] = json!(2);
        in_progress(health_of(&stale), "generation 3 not yet observed");
    }

    #[test]
    fn plain_objects_are_current() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "shop"}, "data": {"a": "b"}});
        assert_eq!(health_of(&cm), Health::Current);
    }

    #[test]
    fn which_kinds_have_rules() {
        assert!(has_health_rules("apps", "Deployment"));
        assert!(has_health_rules("batch", "Job"));
        assert!(has_health_rules("", "PersistentVolumeClaim"));
        assert!(has_health_rules("example.com", "Widget"));
        assert!(has_health_rules("cluster.x-k8s.io", "Cluster"));
        assert!(!has_health_rules("", "ConfigMap"));
        assert!(!has_health_rules("", "Secret"));
        assert!(!has_health_rules("rbac.authorization.k8s.io", "Role"));
        assert!(!has_health_rules("batch", "CronJob"));
        assert!(!has_health_rules("policy", "PodDisruptionBudget"));
    }

    fn entry(kind: &str, ns: Option<&str>, name: &str) -> InventoryEntry {
        InventoryEntry {
            group: "apps".into(),
            kind: kind.into(),
            namespace: ns.map(str::to_owned),
            name: name.into(),
            version: "v1".into(),
        }
    }

    #[test]
    fn aggregation_names_the_first_unhealthy_and_prefers_failed() {
        let a = entry("Deployment", Some("shop"), "a");
        let b = entry("StatefulSet", Some("shop"), "b");
        let c = entry("Namespace", None, "shop");
        let current = Health::Current;
        let slow = Health::InProgress("0 of 2 replicas ready".into());
        let broken = Health::Failed("progress deadline exceeded".into());
        assert_eq!(first_unhealthy([(&a, &current), (&b, &current)]), None);
        assert_eq!(
            first_unhealthy([(&a, &current), (&b, &slow), (&c, &Health::Terminating)]),
            Some(Unhealthy {
                object: "StatefulSet shop/b".into(),
                reason: "0 of 2 replicas ready".into()
            })
        );
        let u = first_unhealthy([(&a, &slow), (&b, &current), (&c, &broken)]);
        assert_eq!(
            u.as_ref().map(|u| u.object.as_str()),
            Some("Namespace shop")
        );
        assert_eq!(
            u.map(|u| u.to_string()).as_deref(),
            Some("Namespace shop is not healthy: progress deadline exceeded")
        );
    }
}
