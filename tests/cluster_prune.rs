//! Inventory ownership and prune against devcluster: objects are stamped and created the way
//! the reconciler would, then pruned from the previous inventory through kube-rs.
//!
//! Proves: only this Application's objects are deleted; `lockstep.dev/prune: disabled`,
//! objects taken over by a human or another Application, and protected kinds stay; an
//! over-budget prune waits for approval of its digest; a Deployment's ReplicaSets and Pods go
//! with it (devcluster's garbage collector); a delete the app's account may not make fails,
//! leaves the object and stays in the inventory; the ownership check refuses another
//! Application's object.

mod support;

use std::time::Duration;

use devcluster::faults::FaultRule;
use devcluster::{Config, DevCluster};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use lockstep::cluster::inventory::{
    self, APPLICATION_ANNOTATION, InventoryEntry, OwnershipCheckError, PRUNE_ANNOTATION,
    PinnedDiscovery, check_ownership,
};
use lockstep::cluster::prune::{
    self, Budget, KeptReason, OptIns, PruneDecision, PruneInput, PruneRefusal, SkipReason, StagesOk,
};
use serde_json::{Value, json};
use support::{Sandbox, tool};

const NS: &str = "team";
const APP: &str = "web";

async fn start() -> (DevCluster, kube::Client) {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let cluster = DevCluster::start(Config::default())
        .await
        .expect("devcluster starts");
    let client = client_as(&cluster, None).await;
    (cluster, client)
}

/// A client for the cluster's admin, or impersonating `user` as the reconciler does.
async fn client_as(cluster: &DevCluster, user: Option<&str>) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig()).expect("kubeconfig");
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("client config");
    cfg.auth_info.impersonate = user.map(str::to_owned);
    kube::Client::try_from(cfg).expect("client")
}

/// Stamps a manifest for this app (as the apply stage will), creates it, and returns its entry.
async fn create_stamped(client: &kube::Client, yaml: &str) -> InventoryEntry {
    let mut doc = lockstep::manifest::load_documents(yaml.as_bytes())
        .expect("manifest parses")
        .remove(0);
    inventory::stamp(&mut doc, NS, APP);
    let obj = lockstep::render::RenderedObject {
        doc,
        origin: lockstep::render::Origin {
            file: "test.yaml".into(),
            document: 1,
        },
        sealed_scope: None,
        vault_paths: vec![],
        holds_secrets: false,
    };
    let entry = inventory::entry_of(&obj);
    let value: Value =
        serde_json::from_str(&lockstep::sops::stores::json::emit(&obj.doc, None)).expect("json");
    let dynamic: DynamicObject = serde_json::from_value(value).expect("dynamic object");
    let api = inventory::api_for(client, &entry).await.expect("api");
    api.create(&PostParams::default(), &dynamic)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", inventory::describe(&entry)));
    entry
}

fn cm_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {NS}}}\ndata: {{k: v}}\n"
    )
}

fn cm_entry(name: &str) -> InventoryEntry {
    InventoryEntry {
        group: String::new(),
        kind: "ConfigMap".into(),
        namespace: Some(NS.into()),
        name: name.into(),
        version: "v1".into(),
    }
}

async fn annotate(client: &kube::Client, entry: &InventoryEntry, key: &str, value: Value) {
    let api = inventory::api_for(client, entry).await.expect("api");
    api.patch(
        &entry.name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
    )
    .await
    .unwrap_or_else(|e| panic!("annotate {}: {e}", entry.name));
}

async fn exists(client: &kube::Client, entry: &InventoryEntry) -> bool {
    let api = inventory::api_for(client, entry).await.expect("api");
    api.get_opt(&entry.name).await.expect("get").is_some()
}

/// Polls until `check` holds on the count of items listed, or fails after ~15 s.
async fn eventually_count<K>(api: &Api<K>, lp: &ListParams, check: impl Fn(usize) -> bool) -> usize
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut last = 0;
    for _ in 0..150 {
        last = api.list(lp).await.expect("list").items.len();
        if check(last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("count condition not met; last count {last}");
}

fn is_send<T: Send>(_: &T) {}

fn input<'a>(previous: &'a [InventoryEntry], desired: &'a [InventoryEntry]) -> PruneInput<'a> {
    PruneInput {
        previous,
        desired,
        stages: StagesOk::ALL,
        prune_enabled: true,
        allow_empty: false,
        opt_ins: OptIns::default(),
        budget: Budget::default(),
        approval: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_what_this_app_still_owns() {
    let (cluster, client) = start().await;
    let namespace = create_stamped(
        &client,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"),
    )
    .await;
    let keep_desired = create_stamped(&client, &cm_yaml("a")).await;
    let stale_b = create_stamped(&client, &cm_yaml("b")).await;
    let stale_c = create_stamped(&client, &cm_yaml("c")).await;
    let disabled = create_stamped(&client, &cm_yaml("disabled")).await;
    let theirs = create_stamped(&client, &cm_yaml("theirs")).await;
    let human = create_stamped(&client, &cm_yaml("human")).await;
    let secret = create_stamped(
        &client,
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {NS}}}\nstringData: {{password: canary-prune-1}}\n"),
    )
    .await;
    let deployment = create_stamped(
        &client,
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: nginx:1.25}}]}}\n"
        ),
    )
    .await;
    // In the inventory but deleted by someone already.
    let ghost = cm_entry("ghost");

    // After the apply, people and other apps changed some objects, with the real kubectl.
    let sb = Sandbox::new();
    let kubeconfig = sb.path("kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");
    let kubectl = async |args: &[&str]| -> String {
        let mut cmd = sb.command(tool("kubectl"));
        cmd.args(args).env("KUBECONFIG", &kubeconfig);
        let out = tokio::process::Command::from(cmd)
            .output()
            .await
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let prune_off = format!("{PRUNE_ANNOTATION}=disabled");
    kubectl(&["annotate", "-n", NS, "configmap", "disabled", &prune_off]).await;
    let other_app = format!("{APPLICATION_ANNOTATION}=team/other");
    kubectl(&[
        "annotate",
        "--overwrite",
        "-n",
        NS,
        "configmap",
        "theirs",
        &other_app,
    ])
    .await;
    let removed = format!("{APPLICATION_ANNOTATION}-");
    kubectl(&["annotate", "-n", NS, "configmap", "human", &removed]).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let by_app = ListParams::default().labels("app=web");
    eventually_count(&pods, &by_app, |n| n == 2).await;
    eventually_count(&sets, &by_app, |n| n >= 1).await;

    let previous = vec![
        namespace.clone(),
        keep_desired.clone(),
        stale_b.clone(),
        stale_c.clone(),
        disabled.clone(),
        theirs.clone(),
        human.clone(),
        secret.clone(),
        deployment.clone(),
        ghost.clone(),
    ];
    let desired = vec![keep_desired.clone()];

    // 8 deletable of 10 (the Namespace is protected) is over budget: refused with a digest.
    let digest = match prune::plan(&input(&previous, &desired)) {
        PruneDecision::Refused(PruneRefusal::OverBudget {
            count,
            inventory,
            digest,
        }) => {
            assert_eq!((count, inventory), (8, 10));
            digest
        }
        other => panic!("expected an over-budget refusal, got {other:?}"),
    };
    // Nothing was touched by planning.
    assert!(exists(&client, &stale_b).await);

    // Approved: exactly that prune goes ahead.
    let mut approved = input(&previous, &desired);
    approved.approval = Some(&digest);
    let PruneDecision::Delete { delete, kept } = prune::plan(&approved) else {
        panic!("approved prune should go ahead");
    };
    assert_eq!(
        kept,
        vec![(namespace.clone(), KeptReason::ProtectedKind("Namespace"))]
    );
    assert_eq!(delete.len(), 8);

    let lookup = PinnedDiscovery::default();
    let running = prune::execute(&client, &lookup, &delete, NS, APP);
    // The reconciler runs it on spawned tasks.
    is_send(&running);
    let report = running.await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let mut want_deleted = vec![
        stale_b.clone(),
        stale_c.clone(),
        secret.clone(),
        deployment.clone(),
    ];
    want_deleted.sort();
    let mut got_deleted = report.deleted.clone();
    got_deleted.sort();
    assert_eq!(got_deleted, want_deleted);
    assert_eq!(report.already_gone, vec![ghost.clone()]);
    let mut skipped = report.skipped.clone();
    skipped.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        skipped,
        vec![
            (disabled.clone(), SkipReason::PruneDisabled),
            (human.clone(), SkipReason::NotOwned),
            (
                theirs.clone(),
                SkipReason::OwnedByOther("team/other".into())
            ),
        ]
    );
    assert_eq!(prune::next_inventory(&desired, &report), desired);
    assert!(!format!("{report:?}").contains("canary-prune-1"));

    for gone in &want_deleted {
        assert!(!exists(&client, gone).await, "{gone:?} should be deleted");
    }
    for stays in [&namespace, &keep_desired, &disabled, &theirs, &human] {
        assert!(exists(&client, stays).await, "{stays:?} should stay");
    }
    // Background propagation: the garbage collector takes the ReplicaSets and Pods.
    eventually_count(&sets, &by_app, |n| n == 0).await;
    eventually_count(&pods, &by_app, |n| n == 0).await;

    let listed = kubectl(&[
        "get",
        "-n",
        NS,
        "deployments,replicasets,pods,configmaps,secrets",
        "-o",
        "name",
    ])
    .await;
    let names: Vec<&str> = listed.lines().collect();
    for stays in [
        "configmap/a",
        "configmap/disabled",
        "configmap/theirs",
        "configmap/human",
    ] {
        assert!(names.contains(&stays), "{stays} missing from {names:?}");
    }
    for gone in [
        "deployment",
        "replicaset",
        "pod/",
        "configmap/b",
        "configmap/c",
        "secret/db",
    ] {
        assert!(
            !names.iter().any(|n| n.starts_with(gone)),
            "{gone} left in {names:?}"
        );
    }

    // Running the same prune again finds nothing left to delete.
    let again = prune::execute(&client, &PinnedDiscovery::default(), &delete, NS, APP).await;
    assert!(again.deleted.is_empty() && again.failed.is_empty());
    assert_eq!(again.already_gone.len(), 5);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_the_app_may_not_make_fails_and_stays_in_the_inventory() {
    let (cluster, client) = start().await;
    create_stamped(
        &client,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"),
    )
    .await;
    let sa = create_stamped(
        &client,
        &format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: deployer, namespace: {NS}}}\n"
        ),
    )
    .await;
    assert_eq!(sa.kind, "ServiceAccount");
    // The account may read ConfigMaps but not delete them.
    create_stamped(
        &client,
        &format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: read, namespace: {NS}}}\nrules: [{{apiGroups: [''], resources: [configmaps], verbs: [get, list, watch]}}]\n"),
    )
    .await;
    create_stamped(
        &client,
        &format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: read, namespace: {NS}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: read}}\nsubjects: [{{kind: ServiceAccount, name: deployer, namespace: {NS}}}]\n"),
    )
    .await;
    let stale = create_stamped(&client, &cm_yaml("stale")).await;
    let as_app = client_as(
        &cluster,
        Some(&format!("system:serviceaccount:{NS}:deployer")),
    )
    .await;

    let report = prune::execute(
        &as_app,
        &PinnedDiscovery::default(),
        std::slice::from_ref(&stale),
        NS,
        APP,
    )
    .await;
    assert!(report.deleted.is_empty());
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].code, Some(403));
    assert!(
        report.failed[0].message.contains("ConfigMap team/stale"),
        "{}",
        report.failed[0].message
    );
    assert_eq!(report.remaining(), vec![stale.clone()]);
    assert_eq!(prune::next_inventory(&[], &report), vec![stale.clone()]);
    assert!(exists(&client, &stale).await);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_check_refuses_another_apps_object() {
    let (cluster, client) = start().await;
    create_stamped(
        &client,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"),
    )
    .await;
    let mine = create_stamped(&client, &cm_yaml("mine")).await;
    let theirs = create_stamped(&client, &cm_yaml("theirs")).await;
    annotate(
        &client,
        &theirs,
        APPLICATION_ANNOTATION,
        json!("team/other"),
    )
    .await;
    let unmanaged = cm_entry("unmanaged");
    let cm: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "unmanaged", "namespace": NS,
                     "labels": {inventory::MANAGED_BY_LABEL: "lockstep"}}
    }))
    .expect("object");
    inventory::api_for(&client, &unmanaged)
        .await
        .expect("api")
        .create(&PostParams::default(), &cm)
        .await
        .expect("create unmanaged");
    let not_yet = cm_entry("not-yet-created");

    // Ours, nobody's (even with a copied label) and absent objects are fine.
    let fine = [mine.clone(), unmanaged, not_yet];
    let checking = check_ownership(&client, &fine, NS, APP);
    is_send(&checking);
    checking.await.expect("no conflict");

    let err = check_ownership(&client, &[mine, theirs], NS, APP)
        .await
        .expect_err("conflict");
    let OwnershipCheckError::Conflict(conflicts) = &err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].object, "ConfigMap team/theirs");
    assert_eq!(conflicts[0].other_app, "team/other");
    assert_eq!(conflicts[0].this_app, "team/web");
    let text = err.to_string();
    assert!(
        text.contains("team/other") && text.contains("team/web"),
        "{text}"
    );

    // A kind the cluster does not serve is an error naming the object, not a pass.
    let unknown = InventoryEntry {
        group: "example.com".into(),
        kind: "Widget".into(),
        namespace: Some(NS.into()),
        name: "w".into(),
        version: "v1".into(),
    };
    let err = check_ownership(&client, &[unknown], NS, APP)
        .await
        .expect_err("unknown kind");
    assert!(
        matches!(&err, OwnershipCheckError::Api { object, .. } if object == "Widget.example.com team/w"),
        "{err:?}"
    );
    cluster.shutdown().await;
}

/// Creates the namespace and the given ConfigMaps, all stamped for this app.
async fn seed_configmaps(client: &kube::Client, names: &[&str]) -> Vec<InventoryEntry> {
    create_stamped(
        client,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"),
    )
    .await;
    let mut out = Vec::new();
    for name in names {
        out.push(create_stamped(client, &cm_yaml(name)).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_between_check_and_delete_is_not_deleted() {
    let (cluster, client) = start().await;
    let entries = seed_configmaps(&client, &["taken"]).await;
    // Every delete of a ConfigMap waits, leaving time for a human to take the object over
    // after prune has checked it.
    cluster.set_faults(vec![
        FaultRule::new(Some("delete"), Some("configmaps")).latency(Duration::from_millis(800)),
    ]);
    let lookup = PinnedDiscovery::default();
    let prune = prune::execute(&client, &lookup, &entries, NS, APP);
    let takeover = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        annotate(&client, &entries[0], APPLICATION_ANNOTATION, Value::Null).await;
    };
    let (report, ()) = tokio::join!(prune, takeover);
    cluster.set_faults(vec![]);
    // The delete carried the checked resourceVersion, so it was refused; the second look
    // saw the object was no longer ours.
    assert_eq!(
        report.skipped,
        vec![(entries[0].clone(), SkipReason::NotOwned)],
        "{report:?}"
    );
    assert!(report.deleted.is_empty() && report.failed.is_empty());
    assert!(exists(&client, &entries[0]).await);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deletes_stay_in_the_inventory_and_go_next_time() {
    let (cluster, client) = start().await;
    let entries = seed_configmaps(&client, &["a", "b", "c", "d"]).await;
    let desired = vec![entries[0].clone()];
    let plan = |previous: &[InventoryEntry]| match prune::plan(&input(previous, &desired)) {
        PruneDecision::Delete { delete, kept } => {
            assert!(kept.is_empty());
            delete
        }
        other => panic!("expected a delete plan, got {other:?}"),
    };
    let delete = plan(&entries);
    assert_eq!(delete, entries[1..]);

    cluster.set_faults(vec![
        FaultRule::new(Some("delete"), Some("configmaps")).internal_errors(1.0),
    ]);
    let report = prune::execute(&client, &PinnedDiscovery::default(), &delete, NS, APP).await;
    assert!(report.deleted.is_empty());
    assert_eq!(report.failed.len(), 3);
    assert!(report.failed.iter().all(|f| f.code == Some(500)));
    let next = prune::next_inventory(&desired, &report);
    assert_eq!(next, entries, "the failed deletes stay in the inventory");
    for e in &entries {
        assert!(exists(&client, e).await);
    }

    // Next reconcile, the API server is well again: the same prune goes through.
    cluster.set_faults(vec![]);
    let delete = plan(&next);
    let report = prune::execute(&client, &PinnedDiscovery::default(), &delete, NS, APP).await;
    assert_eq!(report.deleted, entries[1..]);
    assert_eq!(prune::next_inventory(&desired, &report), desired);
    assert!(exists(&client, &entries[0]).await);
    for e in &entries[1..] {
        assert!(!exists(&client, e).await);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_in_namespace_and_cluster_scoped_objects_go_last() {
    let (cluster, client) = start().await;
    let entries = seed_configmaps(&client, &["keep", "inside"]).await;
    let namespace = cm_entry("unused");
    let namespace = InventoryEntry {
        kind: "Namespace".into(),
        namespace: None,
        name: NS.into(),
        ..namespace
    };
    let role = create_stamped(
        &client,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\nrules: []\n",
    )
    .await;
    assert_eq!(role.namespace, None);
    let previous = vec![
        namespace.clone(),
        entries[0].clone(),
        entries[1].clone(),
        role.clone(),
    ];
    // Everything but one ConfigMap leaves Git; the app opted in to pruning Namespaces.
    let desired = vec![cm_entry("elsewhere")];
    let mut inp = input(&previous, &desired);
    inp.opt_ins.namespaces = true;
    let PruneDecision::Delete { delete, kept } = prune::plan(&inp) else {
        panic!("expected a delete plan");
    };
    assert!(kept.is_empty());
    assert_eq!(delete.len(), 4);
    let report = prune::execute(&client, &PinnedDiscovery::default(), &delete, NS, APP).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    // Namespaced objects first, then cluster-scoped ones, the Namespace last.
    let kinds: Vec<&str> = report.deleted.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "ConfigMap", "ClusterRole", "Namespace"]
    );
    assert!(!exists(&client, &role).await);
    let ns = inventory::api_for(&client, &namespace)
        .await
        .expect("api")
        .get_opt(NS)
        .await
        .expect("get namespace");
    assert!(
        ns.as_ref()
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some()),
        "the namespace is going: {ns:?}"
    );
    cluster.shutdown().await;
}
