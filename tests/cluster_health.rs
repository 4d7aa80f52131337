//! Health checks against devcluster: its workload controllers roll Deployments out (creating
//! ReplicaSets and Pods) and its unhealthy switch holds one back, so `wait_healthy` is
//! exercised against real API responses, through an impersonated client as the reconciler
//! uses it.

use std::time::Duration;

use devcluster::{Config, DevCluster};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use lockstep::cluster::health::{Health, Unhealthy, health_of, wait_healthy};
use lockstep::controller::application::InventoryEntry;
use serde_json::{Value, json};
use tokio::time::Instant;

const POLL: Duration = Duration::from_millis(200);
const SETTLE: Duration = Duration::from_secs(30);

async fn start() -> DevCluster {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    DevCluster::start(Config::default())
        .await
        .expect("devcluster starts")
}

/// The admin client, or one impersonating `user` (as the reconciler acts for an app).
async fn client(cluster: &DevCluster, impersonate: Option<&str>) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig()).expect("kubeconfig");
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("client config");
    cfg.auth_info.impersonate = impersonate.map(str::to_owned);
    kube::Client::try_from(cfg).expect("client")
}

fn entry(group: &str, version: &str, kind: &str, ns: Option<&str>, name: &str) -> InventoryEntry {
    InventoryEntry {
        group: group.into(),
        kind: kind.into(),
        namespace: ns.map(str::to_owned),
        name: name.into(),
        version: version.into(),
    }
}

fn deploy_entry(name: &str) -> InventoryEntry {
    entry("apps", "v1", "Deployment", Some("default"), name)
}

async fn create<K>(client: &kube::Client, ns: &str, obj: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let obj: K = serde_json::from_value(obj).expect("valid object");
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .expect("created")
}

fn deployment(name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_becomes_current_and_a_held_deployment_times_out_naming_it() {
    let cluster = start().await;
    let admin = client(&cluster, None).await;
    create::<ConfigMap>(
        &admin,
        "default",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "settings"}, "data": {"mode": "fast"}}),
    )
    .await;
    create::<Deployment>(&admin, "default", deployment("web", 2)).await;
    create::<Job>(
        &admin,
        "default",
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
               "spec": {"template": {"spec": {"restartPolicy": "Never",
                   "containers": [{"name": "m", "image": "busybox:1.36"}]}}}}),
    )
    .await;

    let secret_gets = cluster.request_count("get", "secrets");
    let app = [
        entry("", "v1", "ConfigMap", Some("default"), "settings"),
        // Listed but never read: Secrets have no health rules (and this one does not exist).
        entry("", "v1", "Secret", Some("default"), "credentials"),
        deploy_entry("web"),
        entry("batch", "v1", "Job", Some("default"), "migrate"),
    ];
    let t = Instant::now();
    wait_healthy(&admin, &app, SETTLE, POLL)
        .await
        .expect("the rollout and the Job complete");
    assert!(t.elapsed() < SETTLE);
    assert_eq!(cluster.request_count("get", "secrets"), secret_gets);
    assert!(cluster.request_count("get", "deployments") >= 1);
    assert!(cluster.request_count("get", "configmaps") == 0);

    // What was judged Current is a real rollout: two Pods behind it, and the live object
    // says so under the pure rules too.
    let pods = Api::<Pod>::namespaced(admin.clone(), "default")
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("pods listed");
    assert_eq!(pods.items.len(), 2);
    let live = Api::<Deployment>::namespaced(admin.clone(), "default")
        .get("web")
        .await
        .expect("deployment");
    assert_eq!(
        health_of(&serde_json::to_value(&live).expect("json")),
        Health::Current
    );

    // Held unhealthy: the wait ends at its timeout, naming the Deployment and why.
    cluster.set_unhealthy("Deployment", "default", "stuck", true);
    create::<Deployment>(&admin, "default", deployment("stuck", 1)).await;
    let both = [deploy_entry("web"), deploy_entry("stuck")];
    let t = Instant::now();
    let err = wait_healthy(&admin, &both, Duration::from_secs(3), POLL)
        .await
        .expect_err("a held Deployment never becomes Current");
    let waited = t.elapsed();
    assert_eq!(err.object, "Deployment default/stuck");
    assert_eq!(err.reason, "0 of 1 replicas available");
    assert_eq!(
        err.to_string(),
        "Deployment default/stuck is not healthy: 0 of 1 replicas available"
    );
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(8),
        "{waited:?}"
    );

    // Released, the same wait succeeds.
    cluster.set_unhealthy("Deployment", "default", "stuck", false);
    wait_healthy(&admin, &both, SETTLE, POLL)
        .await
        .expect("released, it rolls out");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_unreadable_objects_are_named_with_a_reason() {
    let cluster = start().await;
    let admin = client(&cluster, None).await;
    create::<Deployment>(&admin, "default", deployment("web", 1)).await;

    let err = wait_healthy(
        &admin,
        &[deploy_entry("ghost")],
        Duration::from_secs(1),
        POLL,
    )
    .await
    .expect_err("a missing object is not healthy");
    assert_eq!(
        err,
        Unhealthy {
            object: "Deployment default/ghost".into(),
            reason: "not found".into()
        }
    );

    // Through the app's impersonated identity, which may not read Deployments yet.
    let sa = client(&cluster, Some("system:serviceaccount:default:deployer")).await;
    let err = wait_healthy(&sa, &[deploy_entry("web")], Duration::from_secs(1), POLL)
        .await
        .expect_err("forbidden reads cannot prove health");
    assert_eq!(err.object, "Deployment default/web");
    assert_eq!(err.reason, "cannot read it: Forbidden (403)");

    create::<RoleBinding>(
        &admin,
        "default",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "deployer-view"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "default"}]}),
    )
    .await;
    wait_healthy(&sa, &[deploy_entry("web")], SETTLE, POLL)
        .await
        .expect("readable as the app, and rolled out");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_custom_resource_fails_without_waiting_for_the_timeout() {
    let cluster = start().await;
    let admin = client(&cluster, None).await;
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .expect("crd");
    Api::<CustomResourceDefinition>::all(admin.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("crd created");
    // The CRD rule: wait until it is Established before using the kind.
    wait_healthy(
        &admin,
        &[entry(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            None,
            "widgets.example.com",
        )],
        SETTLE,
        POLL,
    )
    .await
    .expect("the CRD becomes Established");

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(admin.clone(), "default", &ar);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 3}
    }))
    .expect("widget");
    widgets
        .create(&PostParams::default(), &w)
        .await
        .expect("widget created");
    let widget = [entry("example.com", "v1", "Widget", Some("default"), "w")];
    // No conditions yet: present is healthy (found through discovery, not a table).
    wait_healthy(&admin, &widget, SETTLE, POLL)
        .await
        .expect("a custom resource without conditions is Current");

    widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "reason": "InvalidSpec",
                 "message": "size must be even", "lastTransitionTime": "2026-12-03T03:00:00Z"},
                {"type": "Stalled", "status": "True", "reason": "InvalidSpec",
                 "message": "size must be even", "lastTransitionTime": "2026-12-03T03:00:00Z"}
            ]}})),
        )
        .await
        .expect("status patched");
    let t = Instant::now();
    let err = wait_healthy(&admin, &widget, Duration::from_secs(60), POLL)
        .await
        .expect_err("a Stalled object is Failed");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "failed fast: {:?}",
        t.elapsed()
    );
    assert_eq!(err.object, "Widget default/w");
    assert_eq!(
        err.reason,
        "stalled (Stalled=True, InvalidSpec): size must be even"
    );
    cluster.shutdown().await;
}
