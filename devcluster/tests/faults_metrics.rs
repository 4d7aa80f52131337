//! Fault injection and request metrics, through kube-rs.

mod common;

use devcluster::faults::FaultRule;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "data": {"k": "v"}
    }))
    .expect("configmap")
}

/// A client without kube-rs's default retry of 429/503/504, so injected errors surface.
async fn client_without_retry(env: &common::Env) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&env.cluster.kubeconfig()).expect("kubeconfig");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    cfg.default_retry = false;
    kube::Client::try_from(cfg).expect("client")
}

async fn scrape(client: &kube::Client) -> String {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    client.request_text(req).await.expect("metrics scrape")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_reach_the_client() {
    let env = common::start().await;
    let client = client_without_retry(&env).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("c1"))
        .await
        .expect("create");

    env.cluster.set_faults(vec![
        FaultRule::new(Some("get"), Some("configmaps")).internal_errors(1.0),
    ]);
    match api.get("c1").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 500);
            assert_eq!(s.reason, "InternalError");
        }
        other => panic!("expected a 500, got {other:?}"),
    }
    // Other verbs and resources are untouched.
    api.list(&Default::default())
        .await
        .expect("list still works");

    env.cluster.set_faults(vec![
        FaultRule::new(Some("get"), Some("configmaps")).too_many_requests(1.0, 1),
    ]);
    let req = http::Request::get("/api/v1/namespaces/default/configmaps/c1")
        .body(kube::client::Body::empty())
        .expect("request");
    let resp = client.send(req).await.expect("response");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    match api.get("c1").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 429);
            assert_eq!(s.reason, "TooManyRequests");
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    assert!(
        env.cluster.request_count_where(&[
            ("verb", "get"),
            ("resource", "configmaps"),
            ("code", "429")
        ]) >= 2
    );

    // With a partial rate, kube-rs's default retry gets through; the 429s still show.
    env.cluster.set_fault_seed(3);
    env.cluster.set_faults(vec![
        FaultRule::new(Some("get"), Some("configmaps")).too_many_requests(0.3, 0),
    ]);
    let retrying: Api<ConfigMap> = Api::namespaced(env.client().await, "default");
    let before = env
        .cluster
        .request_count_where(&[("resource", "configmaps"), ("code", "429")]);
    for _ in 0..10 {
        retrying.get("c1").await.expect("retried get succeeds");
    }
    assert!(
        env.cluster
            .request_count_where(&[("resource", "configmaps"), ("code", "429")])
            > before
    );

    env.cluster.set_faults(Vec::new());
    api.get("c1").await.expect("get works again");
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_repeat() {
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let cfg = devcluster::Config {
            faults: vec![FaultRule::new(Some("get"), Some("configmaps")).internal_errors(0.5)],
            fault_seed: Some(42),
            ..Default::default()
        };
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
        let cluster = devcluster::DevCluster::start(cfg).await.expect("start");
        let kc = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig()).expect("kubeconfig");
        let conf = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let api: Api<ConfigMap> =
            Api::namespaced(kube::Client::try_from(conf).expect("client"), "default");
        let mut run = Vec::new();
        for _ in 0..16 {
            // The object does not exist: 404 when not failed, 500 when failed.
            let code = match api.get("missing").await {
                Err(kube::Error::Api(s)) => s.code,
                Ok(_) => 200,
                Err(e) => panic!("{e}"),
            };
            run.push(code);
        }
        outcomes.push(run);
        cluster.shutdown().await;
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert!(outcomes[0].contains(&500) && outcomes[0].contains(&404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_by_verb_resource_and_user() {
    let env = common::start().await;
    let client = env.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let before = env.cluster.request_count("create", "configmaps");
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("m{i}")))
            .await
            .expect("create");
    }
    api.get("m0").await.expect("get");
    assert_eq!(
        env.cluster.request_count("create", "configmaps"),
        before + 3
    );
    assert!(env.cluster.request_count("get", "configmaps") >= 1);

    let text = scrape(&client).await;
    let creates = devcluster::metrics::count_in(
        &text,
        &[
            ("verb", "create"),
            ("resource", "configmaps"),
            ("code", "201"),
        ],
    );
    assert_eq!(creates, before + 3);
    // Every sample names a user; the admin token's user made these.
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("verb=\"create\"")
                && l.contains("resource=\"configmaps\"")
        })
        .unwrap_or("");
    assert!(line.contains("user=\""), "{text}");
    assert!(!line.contains("user=\"\""), "{text}");
    assert!(
        text.contains("apiserver_request_duration_seconds_bucket"),
        "{text}"
    );
    // kubectl's requests are counted under the same user.
    let user = devcluster::metrics::parse_sample(line)
        .and_then(|(_, labels, _)| labels.into_iter().find(|(k, _)| k == "user"))
        .map(|(_, v)| v)
        .unwrap_or_default();
    let n = env.cluster.request_count_where(&[
        ("verb", "list"),
        ("resource", "configmaps"),
        ("user", &user),
    ]);
    env.kubectl_ok(&["get", "configmaps"]).await;
    assert!(
        env.cluster.request_count_where(&[
            ("verb", "list"),
            ("resource", "configmaps"),
            ("user", &user)
        ]) > n
    );
    env.cluster.shutdown().await;
}
