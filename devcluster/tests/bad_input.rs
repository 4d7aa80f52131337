//! Bad requests get kube-apiserver's status codes and `Status` objects, the server keeps
//! serving, and nothing stored changes.

mod common;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::Value;

/// Send one raw request with the admin client; returns (HTTP status, parsed body).
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(kube::client::Body::from(body))
        .expect("request builds");
    let resp = client.send(req).await.expect("server answers");
    let code = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = axum_body(resp).await;
    assert!(
        ct.starts_with("application/json"),
        "{path}: content type {ct}"
    );
    (
        code,
        serde_json::from_slice(&bytes).expect("a Status object"),
    )
}

async fn axum_body(resp: http::Response<kube::client::Body>) -> Vec<u8> {
    use http_body_util::BodyExt;
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default()
}

fn assert_status(got: &(u16, Value), code: u16, reason: &str) {
    assert_eq!(got.0, code, "{}", got.1);
    assert_eq!(got.1["kind"], "Status", "{}", got.1);
    assert_eq!(got.1["status"], "Failure");
    assert_eq!(got.1["code"], code);
    assert_eq!(got.1["reason"], reason, "{}", got.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_change_nothing() {
    let env = common::start().await;
    let client = env.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let url = "/api/v1/namespaces/default/configmaps";
    let ok =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"keep"},"data":{"k":"v"}}"#;
    let created = send(&client, "POST", url, "application/json", ok.to_vec()).await;
    assert_eq!(created.0, 201);
    let before = cms.list(&ListParams::default()).await.expect("list");
    let rv_before = before.metadata.resource_version.clone();

    // Malformed JSON and YAML.
    let r = send(
        &client,
        "POST",
        url,
        "application/json",
        b"{\"kind\": ".to_vec(),
    )
    .await;
    assert_status(&r, 400, "BadRequest");
    let r = send(
        &client,
        "POST",
        url,
        "application/yaml",
        b"kind: [unclosed".to_vec(),
    )
    .await;
    assert_status(&r, 400, "BadRequest");
    // A content type the API does not speak.
    let r = send(&client, "POST", url, "text/plain", ok.to_vec()).await;
    assert_status(&r, 415, "UnsupportedMediaType");
    let r = send(
        &client,
        "PATCH",
        &format!("{url}/keep"),
        "text/plain",
        b"{}".to_vec(),
    )
    .await;
    assert_status(&r, 415, "UnsupportedMediaType");
    // An unknown resource: 404 with empty details.
    let r = send(
        &client,
        "POST",
        "/api/v1/namespaces/default/gadgets",
        "application/json",
        ok.to_vec(),
    )
    .await;
    assert_status(&r, 404, "NotFound");
    assert_eq!(r.1["details"], serde_json::json!({}));
    // A kind that does not match the URL.
    let secret = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}"#;
    let r = send(&client, "POST", url, "application/json", secret.to_vec()).await;
    assert_status(&r, 400, "BadRequest");
    assert!(
        r.1["message"].as_str().is_some_and(
            |m| m.contains("does not match the expected API version (v1) and kind (ConfigMap)")
        ),
        "{}",
        r.1
    );
    // A name that is not a DNS-1123 subdomain.
    let bad_name = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#;
    let r = send(&client, "POST", url, "application/json", bad_name.to_vec()).await;
    assert_status(&r, 422, "Invalid");
    assert_eq!(r.1["details"]["causes"][0]["field"], "metadata.name");
    // A body over 3 MiB.
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#,
        "x".repeat(3 * 1024 * 1024 + 1)
    );
    let r = send(&client, "POST", url, "application/json", big.into_bytes()).await;
    assert_status(&r, 413, "RequestEntityTooLarge");

    // Nothing changed, and the server still answers.
    let after = cms.list(&ListParams::default()).await.expect("list");
    assert_eq!(after.metadata.resource_version, rv_before);
    let names = |l: &kube::core::ObjectList<ConfigMap>| {
        l.items
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&after), names(&before));
    let keep = cms.get("keep").await.expect("still there");
    assert_eq!(
        keep.data.and_then(|d| d.get("k").cloned()).as_deref(),
        Some("v")
    );
    env.cluster.shutdown().await;
}

/// JSON Patch `copy` duplicates server-side what the request never carried: the copies of one
/// patch may add at most the request body limit, and no patch may make an object bigger than a
/// request could send. Refused patches change nothing; the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_patch_copies_cannot_grow_past_the_body_limit() {
    let env = common::start().await;
    // 1.2 MB: three copies exceed the 3 MiB copy limit, one more copy the object limit.
    let value = "x".repeat(1_200_000);
    let file = env.write("big-value", &value);
    env.kubectl_ok(&[
        "create",
        "configmap",
        "big",
        &format!("--from-file=k={file}"),
    ])
    .await;
    let rv = || {
        env.kubectl_ok(&[
            "get",
            "cm",
            "big",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let rv_before = rv().await;
    let copy = |to: &str| serde_json::json!({"op": "copy", "from": "/data/k", "path": to});
    let patch = |ops: Vec<Value>| Value::Array(ops).to_string();

    let doubling = patch(vec![copy("/data/a"), copy("/data/b"), copy("/data/c")]);
    let out = env
        .kubectl(&["patch", "cm", "big", "--type=json", "-p", &doubling])
        .await;
    assert!(!out.status.success(), "a 3.6 MB copy was applied");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "Unable to complete the copy, the accumulated size increase of copy is 3600006, exceeding the limit 3145728"
        ),
        "{err}"
    );
    assert_eq!(rv().await, rv_before, "a refused patch changed the object");

    // Within the copy limit but over the object limit: 413, nothing changes.
    env.kubectl_ok(&[
        "patch",
        "cm",
        "big",
        "--type=json",
        "-p",
        &patch(vec![copy("/data/a")]),
    ])
    .await;
    let rv_two = rv().await;
    let out = env
        .kubectl(&[
            "patch",
            "cm",
            "big",
            "--type=json",
            "-p",
            &patch(vec![copy("/data/b")]),
        ])
        .await;
    assert!(!out.status.success(), "the object grew past the body limit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Request entity too large: limit is 3145728"),
        "{err}"
    );
    assert_eq!(rv().await, rv_two);

    // Still serving, and the object is as the last accepted patch left it.
    let keys = env
        .kubectl_ok(&[
            "get",
            "cm",
            "big",
            "-o",
            "go-template={{range $k, $v := .data}}{{$k}} {{end}}",
        ])
        .await;
    assert_eq!(keys.trim(), "a k");
    env.cluster.shutdown().await;
}
