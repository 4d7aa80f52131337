//! Events through core v1 and events.k8s.io/v1: one storage, fields mapped per version.

mod common;

use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::api::events::v1::Event as NewEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn regarding() -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: Some("web-0".into()),
        namespace: Some("default".into()),
        api_version: Some("v1".into()),
        ..Default::default()
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_api_maps_to_core_and_back() {
    let env = common::start().await;
    let client = env.client().await;
    let new_api: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let core_api: Api<CoreEvent> = Api::namespaced(client.clone(), "default");

    let ev = NewEvent {
        metadata: ObjectMeta {
            name: Some("e1".into()),
            ..Default::default()
        },
        event_time: Some(MicroTime(ts("2026-01-02T03:04:05.123456Z"))),
        reporting_controller: Some("example.com/ctl".into()),
        reporting_instance: Some("ctl-1".into()),
        action: Some("Reconcile".into()),
        reason: Some("Synced".into()),
        type_: Some("Normal".into()),
        regarding: Some(regarding()),
        note: Some("all good".into()),
        ..Default::default()
    };
    let created = new_api
        .create(&PostParams::default(), &ev)
        .await
        .expect("create events.k8s.io");
    assert_eq!(created.note.as_deref(), Some("all good"));
    assert_eq!(created.regarding, Some(regarding()));

    let core = core_api.get("e1").await.expect("get core");
    assert_eq!(core.message.as_deref(), Some("all good"));
    assert_eq!(core.involved_object, regarding());
    assert_eq!(core.reporting_component.as_deref(), Some("example.com/ctl"));
    assert_eq!(core.reporting_instance.as_deref(), Some("ctl-1"));
    assert_eq!(core.action.as_deref(), Some("Reconcile"));
    assert_eq!(core.reason.as_deref(), Some("Synced"));
    assert_eq!(core.type_.as_deref(), Some("Normal"));
    assert!(core.event_time.is_some());

    // The recorder's repeat: a merge patch of `series` through events.k8s.io.
    let patch = json!({"series": {"count": 2, "lastObservedTime": "2026-01-02T03:05:00.000000Z"}});
    let patched = new_api
        .patch("e1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("merge patch series");
    assert_eq!(patched.note.as_deref(), Some("all good"));
    assert_eq!(patched.series.as_ref().map(|s| s.count), Some(2));
    let core = core_api.get("e1").await.expect("get core");
    assert_eq!(core.series.and_then(|s| s.count), Some(2));
    assert_eq!(core.message.as_deref(), Some("all good"));

    // The reverse: a legacy core Event read through events.k8s.io.
    let old = CoreEvent {
        metadata: ObjectMeta {
            name: Some("e2".into()),
            ..Default::default()
        },
        involved_object: regarding(),
        message: Some("legacy".into()),
        reason: Some("Started".into()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some("node-1".into()),
        }),
        first_timestamp: Some(Time(ts("2026-01-02T03:04:05Z"))),
        last_timestamp: Some(Time(ts("2026-01-02T03:06:05Z"))),
        count: Some(3),
        ..Default::default()
    };
    core_api
        .create(&PostParams::default(), &old)
        .await
        .expect("create core");
    let got = new_api.get("e2").await.expect("get events.k8s.io");
    assert_eq!(got.note.as_deref(), Some("legacy"));
    assert_eq!(got.regarding, Some(regarding()));
    assert_eq!(got.deprecated_count, Some(3));
    assert_eq!(
        got.deprecated_source.and_then(|s| s.component).as_deref(),
        Some("kubelet")
    );
    assert!(got.deprecated_first_timestamp.is_some());
    assert!(got.deprecated_last_timestamp.is_some());
    assert_eq!(got.type_.as_deref(), Some("Warning"));

    // Both URLs list the same storage.
    let listed = new_api.list(&Default::default()).await.expect("list");
    assert_eq!(listed.items.len(), 2);
    assert!(listed.items.iter().all(|e| e.note.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_api_requires_fields() {
    let env = common::start().await;
    let client = env.client().await;
    let new_api: Api<NewEvent> = Api::namespaced(client, "default");
    let ev = NewEvent {
        metadata: ObjectMeta {
            name: Some("bad".into()),
            ..Default::default()
        },
        event_time: Some(MicroTime(ts("2026-01-02T03:04:05.123456Z"))),
        reporting_instance: Some("ctl-1".into()),
        action: Some("Reconcile".into()),
        reason: Some("Synced".into()),
        type_: Some("Normal".into()),
        regarding: Some(regarding()),
        ..Default::default()
    };
    let err = new_api
        .create(&PostParams::default(), &ev)
        .await
        .expect_err("reportingController is required");
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err:?}");
    };
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "Event.events.k8s.io \"bad\" is invalid: reportingController: Required value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_api_selectors_and_immutable_fields() {
    use kube::api::ListParams;
    let env = common::start().await;
    let client = env.client().await;
    let new_api: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let ev = NewEvent {
        metadata: ObjectMeta {
            name: Some("e2".into()),
            ..Default::default()
        },
        event_time: Some(MicroTime(ts("2026-01-02T03:04:05.123456Z"))),
        reporting_controller: Some("example.com/ctl".into()),
        reporting_instance: Some("ctl-1".into()),
        action: Some("Reconcile".into()),
        reason: Some("Synced".into()),
        type_: Some("Normal".into()),
        regarding: Some(regarding()),
        note: Some("first".into()),
        ..Default::default()
    };
    new_api
        .create(&PostParams::default(), &ev)
        .await
        .expect("create");
    // events.k8s.io field labels select; the core names are not labels of this version.
    let hit = new_api
        .list(
            &ListParams::default()
                .fields("regarding.name=web-0,reportingController=example.com/ctl"),
        )
        .await
        .expect("list by regarding");
    assert_eq!(hit.items.len(), 1);
    let miss = new_api
        .list(&ListParams::default().fields("regarding.name=other"))
        .await
        .expect("list");
    assert!(miss.items.is_empty());
    let err = new_api
        .list(&ListParams::default().fields("involvedObject.name=web-0"))
        .await
        .expect_err("core label on events.k8s.io");
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err:?}");
    };
    assert_eq!(status.code, 400);
    assert_eq!(
        status.message,
        "field label not supported: involvedObject.name"
    );

    // A series update is allowed; changing the note is not.
    let series = json!({"series": {"count": 2, "lastObservedTime": "2026-01-02T03:05:05.000000Z"}});
    new_api
        .patch("e2", &PatchParams::default(), &Patch::Merge(&series))
        .await
        .expect("series update");
    let err = new_api
        .patch(
            "e2",
            &PatchParams::default(),
            &Patch::Merge(&json!({"note": "second"})),
        )
        .await
        .expect_err("note is immutable");
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err:?}");
    };
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "Event.events.k8s.io \"e2\" is invalid: message: Invalid value: \"second\": field is immutable"
    );
    let stored = new_api.get("e2").await.expect("get");
    assert_eq!(stored.note.as_deref(), Some("first"));
    assert_eq!(stored.series.map(|s| s.count), Some(2));
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_events_prints_the_event_columns() {
    let env = common::start().await;
    let client = env.client().await;
    let new_api: Api<NewEvent> = Api::namespaced(client, "default");
    let ev = NewEvent {
        metadata: ObjectMeta {
            name: Some("e3".into()),
            ..Default::default()
        },
        event_time: Some(MicroTime(ts("2026-01-02T03:04:05.123456Z"))),
        reporting_controller: Some("example.com/ctl".into()),
        reporting_instance: Some("ctl-1".into()),
        action: Some("Reconcile".into()),
        reason: Some("Synced".into()),
        type_: Some("Warning".into()),
        regarding: Some(regarding()),
        note: Some("drift corrected".into()),
        ..Default::default()
    };
    new_api
        .create(&PostParams::default(), &ev)
        .await
        .expect("create");
    let out = env.kubectl_ok(&["get", "events"]).await;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{out}"
    );
    let row = lines.next().unwrap_or("");
    assert!(
        row.contains("Warning")
            && row.contains("Synced")
            && row.contains("pod/web-0")
            && row.ends_with("drift corrected"),
        "{out}"
    );
    let wide = env
        .kubectl_ok(&["get", "events.v1.events.k8s.io", "-o", "wide"])
        .await;
    assert!(
        wide.contains("example.com/ctl") && wide.contains(" e3"),
        "{wide}"
    );
    env.cluster.shutdown().await;
}
