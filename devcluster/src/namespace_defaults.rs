//! The objects real clusters put in every namespace: the ServiceAccount `default` (the
//! service-account controller) and the ConfigMap `kube-root-ca.crt` holding the cluster CA
//! (the root-CA publisher). Both are written by `kube-controller-manager` shortly after the
//! namespace appears and again if deleted, never into a terminating namespace. The `default`
//! namespace also holds the API server's own `kubernetes` Service. A GitOps
//! pruner that deletes "everything not in Git" must leave them alone, so the emulator has them.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::controllers::MANAGER;
use crate::defaults;
use crate::lifecycle::{self, is_deleting, meta_str};
use crate::resources::Registry;
use crate::ssa;
use crate::store::{Change, EventType, Key, Notice, Store, now_rfc3339};

const NAMESPACES: &str = "/namespaces";
const SERVICE_ACCOUNTS: &str = "/serviceaccounts";
const CONFIG_MAPS: &str = "/configmaps";
const SERVICES: &str = "/services";
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The `kubernetes` Service in `default`, as kube-apiserver keeps it.
const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
const API_SERVER_MANAGER: &str = "kube-apiserver";

/// React to namespace events (and deletions of the defaults) until the store closes.
pub async fn run(store: Arc<Store>, registry: Arc<Registry>, ca_pem: String) {
    let mut rx = store.subscribe();
    resync(&store, &registry, &ca_pem);
    loop {
        match rx.recv().await {
            Ok(Notice::Event(ev)) => {
                let ns = match ev.key.storage.as_str() {
                    NAMESPACES if ev.kind != EventType::Deleted => ev.key.name.clone(),
                    SERVICE_ACCOUNTS if ev.key.name == "default" => ev.key.namespace.clone(),
                    CONFIG_MAPS if ev.key.name == ROOT_CA_CONFIG_MAP => ev.key.namespace.clone(),
                    SERVICES if ev.key.name == "kubernetes" => ev.key.namespace.clone(),
                    _ => continue,
                };
                ensure(&store, &registry, &ns, &ca_pem);
            }
            Ok(Notice::Compacted) => {}
            Err(RecvError::Lagged(_)) => resync(&store, &registry, &ca_pem),
            Err(RecvError::Closed) => return,
        }
    }
}

fn resync(store: &Store, registry: &Registry, ca_pem: &str) {
    let (namespaces, _) = store.list(NAMESPACES, None);
    for ns in namespaces {
        ensure(store, registry, meta_str(&ns, "name"), ca_pem);
    }
}

/// Create whichever default object is missing in an active namespace.
pub fn ensure(store: &Store, registry: &Registry, namespace: &str, ca_pem: &str) {
    let active = store
        .get(&Key::new(NAMESPACES, "", namespace))
        .is_some_and(|ns| !is_deleting(&ns));
    if !active {
        return;
    }
    let mut objects = vec![
        (
            "serviceaccounts",
            MANAGER,
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "default", "namespace": namespace}}),
        ),
        (
            "configmaps",
            MANAGER,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": ROOT_CA_CONFIG_MAP, "namespace": namespace,
                                "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                   "data": {"ca.crt": ca_pem}}),
        ),
    ];
    if namespace == "default" {
        // The API server's own Service, first address of the service range.
        objects.push((
            "services",
            API_SERVER_MANAGER,
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "kubernetes", "namespace": namespace,
                                "labels": {"component": "apiserver", "provider": "kubernetes"}},
                   "spec": {"clusterIP": KUBERNETES_SERVICE_IP, "clusterIPs": [KUBERNETES_SERVICE_IP],
                            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
        ));
    }
    for (plural, manager, mut obj) in objects {
        let Some(def) = registry.find("", "v1", plural) else {
            continue;
        };
        let key = Key::new(&def.storage, namespace, meta_str(&obj, "name"));
        let res = store.mutate(&key, false, |old| {
            if let Some(old) = old {
                return Ok(Change::Keep(old.clone()));
            }
            lifecycle::prepare_create(&def, &mut obj);
            defaults::apply_defaults(&def, &mut obj);
            let schema = ssa::builtin_schema(&def.group, &def.kind);
            ssa::record_update(
                None,
                &mut obj,
                manager,
                "v1",
                None,
                &now_rfc3339(),
                schema.as_ref(),
            );
            Ok(Change::Put(obj))
        });
        if let Err(e) = res {
            tracing::debug!("namespace default {key:?} not written: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn setup() -> (Store, Registry) {
        let store = Store::new(1000);
        let registry = Registry::new();
        lifecycle::seed(&store, &registry);
        (store, registry)
    }

    #[test]
    fn active_namespaces_get_defaults_and_terminating_ones_do_not() {
        let (store, registry) = setup();
        ensure(&store, &registry, "default", "PEM");
        let sa = store.get(&Key::new(SERVICE_ACCOUNTS, "default", "default"));
        assert!(sa.is_some());
        let cm = store
            .get(&Key::new(CONFIG_MAPS, "default", ROOT_CA_CONFIG_MAP))
            .map(|v| v["data"]["ca.crt"].clone());
        assert_eq!(cm, Some(Value::String("PEM".into())));
        // The ServiceAccount has no fields to own (its entry is dropped); the ConfigMap has.
        let entry = store
            .get(&Key::new(CONFIG_MAPS, "default", ROOT_CA_CONFIG_MAP))
            .map(|v| v["metadata"]["managedFields"][0]["manager"].clone());
        assert_eq!(entry, Some(Value::String(MANAGER.into())));
        let svc = store.get(&Key::new(SERVICES, "default", "kubernetes"));
        assert_eq!(
            svc.map(|v| v["spec"]["clusterIP"].clone()),
            Some(Value::String(KUBERNETES_SERVICE_IP.into()))
        );
        // A namespace that does not exist gets nothing.
        ensure(&store, &registry, "ghost", "PEM");
        assert!(
            store
                .get(&Key::new(SERVICE_ACCOUNTS, "ghost", "default"))
                .is_none()
        );
    }
}
