//! Drift detection: watches on what lockstep applied, opened as the applying
//! Application's service account and shared by every Application with the same identity,
//! namespace and kind. They are metadata-only (no Secret value is ever received or
//! cached) and label-filtered to lockstep's objects.
//!
//! A change to a managed object by anyone but lockstep (a newer `managedFields` entry of
//! another manager, or a deletion) is reported once as a [`Drift`]. The reconciler
//! re-applies; if the same manager takes the same object again after that one take-back
//! (an HPA owning `spec.replicas`), the drift is reported as a standing conflict instead
//! of being fought over.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::mpsc;

use super::apply::{Applied, FIELD_MANAGER};
use super::client::Clients;
use super::discovery::Discovery;
use super::inventory::{APPLICATION_ANNOTATION, MANAGED_BY_LABEL, api_version_of};
use crate::controller::application::InventoryEntry;

/// An Application: (namespace, name).
pub type AppKey = (String, String);

/// A managed object changed or deleted by someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub app: AppKey,
    pub object: InventoryEntry,
    /// The manager of the newest change (`kubectl-edit`, an HPA's controller), or `None`
    /// for a deletion.
    pub manager: Option<String>,
    /// The fields that manager owns (`.data.GREETING`), at most a few.
    pub fields: Vec<String>,
}

/// One shared watch: identity, namespace (None: cluster-scoped), group, version, kind.
type WatchKey = (String, String, Option<String>, String, String, String);
/// One object: group, kind, namespace, name.
type ObjectKey = (String, String, Option<String>, String);

struct Expected {
    app: AppKey,
    resource_version: String,
    entry: InventoryEntry,
}

#[derive(Default)]
struct State {
    watches: HashMap<WatchKey, tokio::task::JoinHandle<()>>,
    expected: HashMap<ObjectKey, Expected>,
    /// Live objects annotated `lockstep.dev/reconcile: disabled`.
    paused: HashSet<ObjectKey>,
}

/// On a live object (or in its manifest), pauses lockstep's applies and drift
/// correction of that object until removed.
pub const RECONCILE_ANNOTATION: &str = "lockstep.dev/reconcile";

/// The drift watches of one controller.
pub struct DriftWatches {
    clients: Clients,
    discovery: Discovery,
    state: Arc<Mutex<State>>,
    tx: mpsc::UnboundedSender<Drift>,
}

impl DriftWatches {
    /// The watches, and where their drift reports arrive.
    pub fn new(
        clients: Clients,
        discovery: Discovery,
    ) -> (Arc<DriftWatches>, mpsc::UnboundedReceiver<Drift>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(DriftWatches {
                clients,
                discovery,
                state: Arc::default(),
                tx,
            }),
            rx,
        )
    }

    /// Records what an apply left in the cluster and makes sure a watch covers each
    /// object (as `service_account` of `app`'s namespace).
    pub async fn track(&self, app: &AppKey, service_account: &str, applied: &[Applied]) {
        let client = self.clients.for_service_account(&app.0, service_account);
        let mut resources = HashMap::new();
        for a in applied {
            let e = &a.entry;
            let api_version = api_version_of(e);
            let key = (api_version.clone(), e.kind.clone());
            if resources.contains_key(&key) {
                continue;
            }
            if let Ok(r) = self.discovery.resolve(&client, &api_version, &e.kind).await {
                resources.insert(key, r.resource);
            }
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        for a in applied {
            let e = &a.entry;
            let api_version = api_version_of(e);
            let Some(resource) = resources.get(&(api_version, e.kind.clone())) else {
                continue;
            };
            state.expected.insert(
                object_key(e),
                Expected {
                    app: app.clone(),
                    resource_version: a.resource_version.clone(),
                    entry: e.clone(),
                },
            );
            let key: WatchKey = (
                app.0.clone(),
                service_account.to_owned(),
                e.namespace.clone(),
                e.group.clone(),
                e.version.clone(),
                e.kind.clone(),
            );
            if state.watches.get(&key).is_some_and(|h| !h.is_finished()) {
                continue;
            }
            let handle = tokio::spawn(watch_one(
                client.clone(),
                resource.clone(),
                key.clone(),
                self.state.clone(),
                self.tx.clone(),
            ));
            state.watches.insert(key, handle);
        }
    }

    /// Forgets objects no longer applied (pruned, or the Application is gone).
    pub fn untrack(&self, app: &AppKey, keep: &[InventoryEntry]) {
        let keep: HashSet<ObjectKey> = keep.iter().map(object_key).collect();
        if let Ok(mut state) = self.state.lock() {
            state
                .expected
                .retain(|k, v| &v.app != app || keep.contains(k));
        }
    }

    /// Stops expecting these objects (lockstep is about to delete them).
    pub fn forget_objects(&self, entries: &[InventoryEntry]) {
        if let Ok(mut state) = self.state.lock() {
            for e in entries {
                state.expected.remove(&object_key(e));
            }
        }
    }

    /// Whether the live object carries `lockstep.dev/reconcile: disabled` (as last seen).
    pub fn is_paused(&self, entry: &InventoryEntry) -> bool {
        self.state
            .lock()
            .map(|s| s.paused.contains(&object_key(entry)))
            .unwrap_or(false)
    }

    /// How many watch streams are open (for metrics and tests).
    pub fn open_watches(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.watches.values().filter(|h| !h.is_finished()).count())
            .unwrap_or(0)
    }
}

impl Drop for DriftWatches {
    fn drop(&mut self) {
        if let Ok(state) = self.state.lock() {
            for h in state.watches.values() {
                h.abort();
            }
        }
    }
}

fn object_key(e: &InventoryEntry) -> ObjectKey {
    (
        e.group.clone(),
        e.kind.clone(),
        e.namespace.clone(),
        e.name.clone(),
    )
}

async fn watch_one(
    client: kube::Client,
    ar: ApiResource,
    key: WatchKey,
    state: Arc<Mutex<State>>,
    tx: mpsc::UnboundedSender<Drift>,
) {
    let (_, _, namespace, group, _, kind) = &key;
    let api: Api<PartialObjectMeta<DynamicObject>> = match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    };
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}=lockstep"));
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    while let Some(ev) = stream.next().await {
        let (meta, deleted) = match ev {
            Ok(watcher::Event::Apply(m)) | Ok(watcher::Event::InitApply(m)) => (m, false),
            Ok(watcher::Event::Delete(m)) => (m, true),
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(kind = %kind, error = %e, "drift watch interrupted");
                continue;
            }
        };
        let name = meta.metadata.name.clone().unwrap_or_default();
        let okey: ObjectKey = (group.clone(), kind.clone(), namespace.clone(), name);
        let rv = meta.metadata.resource_version.clone().unwrap_or_default();
        let drift = {
            let Ok(mut st) = state.lock() else { return };
            let paused = !deleted
                && meta
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(RECONCILE_ANNOTATION))
                    .is_some_and(|v| v == "disabled");
            if paused {
                st.paused.insert(okey.clone());
            } else {
                st.paused.remove(&okey);
            }
            let Some(exp) = st.expected.get_mut(&okey) else {
                continue;
            };
            if paused {
                // Not lockstep's to correct while paused; seen again once unpaused.
                exp.resource_version = rv;
                continue;
            }
            let owner = meta
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(APPLICATION_ANNOTATION))
                .cloned();
            if !deleted && exp.resource_version == rv {
                continue;
            }
            let newest = newest_manager(&meta.metadata);
            let by_other = deleted || newest.as_ref().is_some_and(|(m, _)| m != FIELD_MANAGER);
            // lockstep's own writes move the expected version forward.
            exp.resource_version = rv;
            let app_name = format!("{}/{}", exp.app.0, exp.app.1);
            if !by_other || (!deleted && owner.as_deref() != Some(app_name.as_str())) {
                continue;
            }
            Drift {
                app: exp.app.clone(),
                object: exp.entry.clone(),
                manager: if deleted {
                    None
                } else {
                    newest.as_ref().map(|(m, _)| m.clone())
                },
                fields: if deleted {
                    Vec::new()
                } else {
                    newest.map(|(_, f)| f).unwrap_or_default()
                },
            }
        };
        if tx.send(drift).is_err() {
            return;
        }
    }
}

/// The manager of the newest `managedFields` entry that owns content (not only metadata,
/// not the status subresource), and the fields it owns. A controller writing status, or
/// adding its own annotations, changes nothing lockstep applies: that is not drift.
fn newest_manager(meta: &kube::api::ObjectMeta) -> Option<(String, Vec<String>)> {
    let entries = meta.managed_fields.as_ref()?;
    let mut best: Option<(
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry,
        Vec<String>,
    )> = None;
    for e in entries {
        if e.subresource.as_deref().is_some_and(|s| !s.is_empty()) {
            continue;
        }
        let mut fields = Vec::new();
        if let Some(f) = &e.fields_v1 {
            flatten_fields(&f.0, "", &mut fields);
        }
        if fields.is_empty() && e.manager.as_deref() != Some(FIELD_MANAGER) {
            continue;
        }
        let newer = match &best {
            None => true,
            Some((b, _)) => e.time.as_ref().map(|t| &t.0) >= b.time.as_ref().map(|t| &t.0),
        };
        if newer {
            best = Some((e, fields));
        }
    }
    let (entry, mut fields) = best?;
    fields.truncate(8);
    Some((entry.manager.clone()?, fields))
}

/// `{"f:data": {"f:GREETING": {}}}` -> `.data.GREETING`. Keys of list items (`k:`, `v:`)
/// are shown as `[...]`.
fn flatten_fields(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    let Some(map) = v.as_object() else {
        return;
    };
    let mut leaf = true;
    for (k, child) in map {
        if k == "." {
            continue;
        }
        leaf = false;
        let part = if let Some(f) = k.strip_prefix("f:") {
            format!("{prefix}.{f}")
        } else {
            format!("{prefix}[...]")
        };
        flatten_fields(child, &part, out);
    }
    if leaf
        && !prefix.is_empty()
        && !prefix.starts_with(".metadata")
        && !prefix.starts_with(".status")
    {
        out.push(prefix.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_writers_and_annotation_adders_are_not_drift() {
        let meta: kube::api::ObjectMeta = serde_json::from_value(serde_json::json!({
            "managedFields": [
                {"manager": "lockstep", "operation": "Apply", "time": "2026-01-01T00:00:01Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
                 "time": "2026-01-01T00:00:05Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:status": {"f:replicas": {}}}},
                {"manager": "kube-controller-manager", "operation": "Update",
                 "time": "2026-01-01T00:00:06Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}}}
            ]
        }))
        .unwrap();
        assert_eq!(
            newest_manager(&meta).map(|(m, _)| m).as_deref(),
            Some("lockstep")
        );
        let mut taken = meta.clone();
        if let Some(m) = taken.managed_fields.as_mut() {
            m.push(
                serde_json::from_value(serde_json::json!({
                    "manager": "hpa", "operation": "Update", "time": "2026-01-01T00:00:07Z",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}
                }))
                .unwrap(),
            );
        }
        assert_eq!(
            newest_manager(&taken),
            Some(("hpa".to_owned(), vec![".spec.replicas".to_owned()]))
        );
    }

    #[test]
    fn managed_fields_flatten_to_paths_without_metadata() {
        let v = serde_json::json!({
            "f:metadata": {"f:annotations": {"f:x": {}}},
            "f:data": {"f:GREETING": {}, ".": {}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {"f:image": {}}}}
        });
        let mut out = Vec::new();
        flatten_fields(&v, "", &mut out);
        out.sort();
        assert_eq!(out, vec![".data.GREETING", ".spec.containers[...].image"]);
    }
}
