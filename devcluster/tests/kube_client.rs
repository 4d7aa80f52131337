//! kube-rs against the emulator: discovery, CRUD, apply, errors and the watcher.

mod common;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use kube::runtime::watcher;
use serde_json::json;

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "data": {"k": value}
    }))
    .expect("configmap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_legacy_and_aggregated() {
    let env = common::start().await;
    let client = env.client().await;
    let info = client.apiserver_version().await.expect("version");
    assert_eq!(info.major, "1");
    for d in [
        Discovery::new(client.clone())
            .run()
            .await
            .expect("legacy discovery"),
        Discovery::new(client.clone())
            .run_aggregated()
            .await
            .expect("aggregated discovery"),
    ] {
        let (ar, caps) = d
            .groups()
            .find(|g| g.name() == "apps")
            .and_then(|g| g.recommended_kind("Deployment"))
            .expect("apps/v1 Deployment");
        assert_eq!(ar.plural, "deployments");
        assert_eq!(caps.scope, Scope::Namespaced);
        assert!(
            caps.subresources
                .iter()
                .any(|(s, _)| s.plural == "deployments/status" || s.plural == "status")
        );
        assert!(d.groups().any(|g| g.name() == ""));
    }
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_apply_and_errors() {
    let env = common::start().await;
    let client = env.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .expect("create");
    let uid = created.metadata.uid.clone().expect("uid");
    assert!(created.metadata.creation_timestamp.is_some());
    assert!(
        created.metadata.generation.is_none(),
        "ConfigMaps have no generation"
    );
    let dup = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .expect_err("duplicate");
    assert!(matches!(dup, kube::Error::Api(ref s) if s.is_already_exists()));

    let got = cms.get("a").await.expect("get");
    assert_eq!(got.metadata.uid.as_deref(), Some(uid.as_str()));
    let list = cms
        .list(&ListParams::default().labels("app=demo"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    assert!(
        list.metadata
            .resource_version
            .is_some_and(|r| !r.is_empty())
    );

    // Apply: update, then the same again keeps the resourceVersion.
    let pp = PatchParams::apply("tests").force();
    let applied = cms
        .patch("a", &pp, &Patch::Apply(cm("a", "2")))
        .await
        .expect("apply");
    assert_eq!(
        applied
            .data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str),
        Some("2")
    );
    let again = cms
        .patch("a", &pp, &Patch::Apply(cm("a", "2")))
        .await
        .expect("apply again");
    assert_eq!(
        again.metadata.resource_version,
        applied.metadata.resource_version
    );
    // Apply creates.
    cms.patch("b", &pp, &Patch::Apply(cm("b", "1")))
        .await
        .expect("apply creates");

    // Stale resourceVersion on replace: 409 Conflict.
    let mut stale = got.clone();
    stale.data = Some([("k".to_string(), "x".to_string())].into());
    let err = cms
        .replace("a", &PostParams::default(), &stale)
        .await
        .expect_err("stale");
    assert!(matches!(err, kube::Error::Api(ref s) if s.is_conflict()));

    // Paging with limit/continue.
    let page = cms
        .list(&ListParams::default().limit(1))
        .await
        .expect("page 1");
    assert_eq!(page.items.len(), 1);
    let token = page.metadata.continue_.clone().expect("continue token");
    let page2 = cms
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(page2.items.len(), 1);
    assert_ne!(page.items[0].metadata.name, page2.items[0].metadata.name);

    // Delete returns a Status for ConfigMaps; a second delete is NotFound.
    let del = cms
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(del.is_right());
    let err = cms
        .delete("a", &DeleteParams::default())
        .await
        .expect_err("gone");
    assert!(matches!(err, kube::Error::Api(ref s) if s.is_not_found()));

    // Namespace lifecycle: creating into a missing namespace is NotFound.
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = other
        .create(&PostParams::default(), &cm("x", "1"))
        .await
        .expect_err("no ns");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.is_not_found() && s.message.contains("namespaces"))
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_generation_and_status_subresource() {
    let env = common::start().await;
    let client = env.client().await;
    let deps: Api<Deployment> = Api::namespaced(client, "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
        "spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},
            "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}},
        "status":{"replicas":9}
    }))
    .expect("deployment");
    let created = deps
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.status.as_ref().and_then(|s| s.replicas).is_none(),
        "status is reset on create"
    );
    let st = deps
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status":{"observedGeneration":1,"replicas":1}})),
        )
        .await
        .expect("status patch");
    assert_eq!(st.metadata.generation, Some(1));
    assert_eq!(st.status.and_then(|s| s.observed_generation), Some(1));
    let scaled = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec":{"replicas":2}})),
        )
        .await
        .expect("spec patch");
    assert_eq!(scaled.metadata.generation, Some(2));
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_relists_after_compaction() {
    let env = common::start().await;
    let client = env.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &cm("first", "1"))
        .await
        .expect("create");
    let mut stream = watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("watcher event in time")
            .expect("stream open")
    };
    // Initial list.
    let mut inits = 0;
    loop {
        match next().await {
            Ok(watcher::Event::Init) => inits += 1,
            Ok(watcher::Event::InitDone) => break,
            _ => {}
        }
    }
    assert_eq!(inits, 1);
    cms.create(&PostParams::default(), &cm("second", "1"))
        .await
        .expect("create");
    loop {
        if let Ok(watcher::Event::Apply(o)) = next().await
            && o.metadata.name.as_deref() == Some("second")
        {
            break;
        }
    }
    env.cluster.compact();
    cms.create(&PostParams::default(), &cm("third", "1"))
        .await
        .expect("create");
    // After the in-stream 410 the watcher re-lists and sees all three.
    let mut relisted = false;
    let mut names = Vec::new();
    loop {
        match next().await {
            Ok(watcher::Event::Init) => {
                relisted = true;
                names.clear();
            }
            Ok(watcher::Event::InitApply(o)) => names.push(o.metadata.name.unwrap_or_default()),
            Ok(watcher::Event::InitDone) if relisted => break,
            _ => {}
        }
    }
    names.sort();
    // kube-root-ca.crt is every namespace's own (written by the root-CA publisher).
    assert_eq!(names, ["first", "kube-root-ca.crt", "second", "third"]);
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher_and_namespace_deletion() {
    let env = common::start().await;
    let client = env.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata":{"name":"team-b"}})).expect("ns");
    nss.create(&PostParams::default(), &ns)
        .await
        .expect("create ns");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team-b");
    cms.create(&PostParams::default(), &cm("x", "1"))
        .await
        .expect("create cm");
    let mut stream = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut saw_x = false;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("event in time")
            .expect("stream open");
        match ev {
            Ok(watcher::Event::InitApply(o)) => saw_x |= o.metadata.name.as_deref() == Some("x"),
            Ok(watcher::Event::InitDone) => break,
            _ => {}
        }
    }
    assert!(saw_x);
    nss.delete("team-b", &DeleteParams::default())
        .await
        .expect("delete ns");
    // The namespace controller deletes the contents, then the namespace.
    let mut deleted = false;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
        if let Ok(watcher::Event::Delete(o)) = ev
            && o.metadata.name.as_deref() == Some("x")
        {
            deleted = true;
            break;
        }
    }
    assert!(deleted);
    let mut gone = false;
    for _ in 0..100 {
        if nss.get_opt("team-b").await.expect("get").is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "namespace never finished terminating");
    env.cluster.shutdown().await;
}
