//! kubectl's typed generator commands (`create deployment|service|job|cronjob|ingress`) POST
//! their objects in the protobuf envelope. Each object must be stored exactly
//! as the same object sent as JSON would be: every test creates it both ways (the JSON copy is
//! the command's `--dry-run=client -o json` output under another name, sent with `create -f`)
//! and compares what `kubectl get -o json` returns, managedFields included. `run` and
//! `expose` go through kubectl's generic helper, which sends JSON; they are covered for the
//! objects they leave behind.

mod common;

use common::Env;
use serde_json::Value;

async fn get(env: &Env, kind: &str, name: &str) -> Value {
    let out = env
        .kubectl_ok(&["get", kind, name, "-o", "json", "--show-managed-fields"])
        .await;
    serde_json::from_str(&out).expect("kubectl get prints JSON")
}

/// The stored object without what the server sets per object or what controllers change
/// later, with the JSON copy's name mapped back so both copies can be compared.
fn comparable(mut v: Value, name: &str, copy: &str) -> Value {
    let uid = v["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    if let Some(m) = v["metadata"].as_object_mut() {
        for k in ["name", "uid", "resourceVersion", "creationTimestamp"] {
            m.remove(k);
        }
        // Set by the deployment controller whenever it gets to each copy.
        if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("deployment.kubernetes.io/revision");
            if a.is_empty() {
                m.remove("annotations");
            }
        }
        if let Some(Value::Array(mf)) = m.get_mut("managedFields") {
            mf.retain(|e| {
                e["manager"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("kubectl"))
            });
            for e in mf.iter_mut() {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                    // `kubectl run` is `kubectl-run`, its JSON copy `kubectl-create`.
                    e.insert("manager".into(), Value::String("kubectl".into()));
                }
            }
        }
    }
    // Allocated addresses and ports differ between the two copies.
    if let Some(s) = v["spec"].as_object_mut() {
        if s.get("clusterIP").and_then(Value::as_str) != Some("None") {
            s.remove("clusterIP");
            s.remove("clusterIPs");
        }
        if let Some(Value::Array(ports)) = s.get_mut("ports") {
            for p in ports {
                if let Some(p) = p.as_object_mut() {
                    p.remove("nodePort");
                }
            }
        }
    }
    let text = v.to_string();
    let text = if uid.is_empty() {
        text
    } else {
        text.replace(&uid, "UID")
    };
    serde_json::from_str(&text.replace(copy, name)).expect("still JSON")
}

/// Run `args` (the protobuf path) and create its dry-run output as `<name>-json` (the JSON
/// path); assert both are stored alike and return the protobuf-created object.
async fn create_both(env: &Env, args: &[&str], kind: &str, name: &str) -> Value {
    let copy = format!("{name}-json");
    // The flags go before `--`, after which everything is the container's command.
    let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let dry_args = [
        &args[..at],
        &["--dry-run=client", "-o", "json"],
        &args[at..],
    ]
    .concat();
    let mut dry: Value =
        serde_json::from_str(&env.kubectl_ok(&dry_args).await).expect("dry run prints JSON");
    assert_eq!(dry["metadata"]["name"], name, "dry run of {args:?}");
    dry["metadata"]["name"] = Value::String(copy.clone());
    let file = env.write(&format!("{copy}.json"), &dry.to_string());
    env.kubectl_ok(&["create", "-f", &file]).await;
    env.kubectl_ok(args).await;

    let via_protobuf = get(env, kind, name).await;
    let via_json = get(env, kind, &copy).await;
    assert!(
        via_protobuf["metadata"]["managedFields"][0]["fieldsV1"].is_object(),
        "{kind}/{name} records its creator: {via_protobuf}"
    );
    assert_eq!(
        comparable(via_protobuf.clone(), name, &copy),
        comparable(via_json, name, &copy),
        "{kind}/{name}: protobuf and JSON creates differ"
    );
    via_protobuf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_deployment_rolls_out_and_exposes() {
    let env = common::start().await;
    let d = create_both(
        &env,
        &[
            "create",
            "deployment",
            "nginx",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
            "--",
            "nginx",
            "-g",
            "daemon off;",
        ],
        "deployment",
        "nginx",
    )
    .await;
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["selector"]["matchLabels"]["app"], "nginx");
    let c = &spec["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "nginx");
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(
        c["command"],
        serde_json::json!(["nginx", "-g", "daemon off;"])
    );
    assert_eq!(c["ports"][0]["containerPort"], 80);
    // Defaults apply because no empty strings came through from the protobuf zero values.
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(spec["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");

    env.kubectl_ok(&["rollout", "status", "deployment/nginx", "--timeout=30s"])
        .await;

    let svc = create_both(
        &env,
        &["expose", "deployment", "nginx", "--port=80"],
        "service",
        "nginx",
    )
    .await;
    assert_eq!(svc["spec"]["selector"], spec["selector"]["matchLabels"]);
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty())
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_service_of_every_type() {
    let env = common::start().await;
    let web = create_both(
        &env,
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
        "service",
        "web",
    )
    .await;
    assert_eq!(web["spec"]["type"], "ClusterIP");
    assert_eq!(web["spec"]["selector"]["app"], "web");
    assert_eq!(web["spec"]["ports"][0]["name"], "80-8080");
    assert_eq!(web["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(web["spec"]["sessionAffinity"], "None");
    let listed = env.kubectl_ok(&["get", "svc"]).await;
    assert!(
        listed.lines().any(|l| l.starts_with("web ")),
        "web is listed: {listed}"
    );

    let headless = create_both(
        &env,
        &[
            "create",
            "service",
            "clusterip",
            "headless",
            "--tcp=5432",
            "--clusterip=None",
        ],
        "service",
        "headless",
    )
    .await;
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["ports"][0]["targetPort"], 5432);

    let np = create_both(
        &env,
        &["create", "service", "nodeport", "np", "--tcp=80:8080"],
        "service",
        "np",
    )
    .await;
    assert_eq!(np["spec"]["type"], "NodePort");
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    assert!(np["spec"]["ports"][0]["nodePort"].is_u64());
    env.kubectl_ok(&[
        "create",
        "service",
        "nodeport",
        "fixed",
        "--tcp=80:8080",
        "--node-port=30080",
    ])
    .await;
    assert_eq!(
        get(&env, "service", "fixed").await["spec"]["ports"][0]["nodePort"],
        30080
    );

    let lb = create_both(
        &env,
        &["create", "service", "loadbalancer", "lb", "--tcp=443:https"],
        "service",
        "lb",
    )
    .await;
    assert_eq!(lb["spec"]["type"], "LoadBalancer");
    assert_eq!(lb["spec"]["ports"][0]["targetPort"], "https");

    let ext = create_both(
        &env,
        &[
            "create",
            "service",
            "externalname",
            "ext",
            "--external-name=example.com",
        ],
        "service",
        "ext",
    )
    .await;
    assert_eq!(ext["spec"]["type"], "ExternalName");
    assert_eq!(ext["spec"]["externalName"], "example.com");
    assert!(ext["spec"].get("clusterIP").is_none(), "{ext}");
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_job_and_cronjob() {
    let env = common::start().await;
    let cj = create_both(
        &env,
        &[
            "create",
            "cronjob",
            "nightly",
            "--image=busybox:1.36",
            "--schedule=*/5 * * * *",
            "--restart=OnFailure",
            "--",
            "echo",
            "hi",
        ],
        "cronjob",
        "nightly",
    )
    .await;
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "OnFailure");
    assert_eq!(
        pod["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );

    let job = create_both(
        &env,
        &[
            "create",
            "job",
            "once",
            "--image=busybox:1.36",
            "--",
            "echo",
            "hi",
        ],
        "job",
        "once",
    )
    .await;
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(job["spec"]["backoffLimit"], 6);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.36"
    );

    // `--from` copies the CronJob's template and points back at it.
    let manual = create_both(
        &env,
        &["create", "job", "manual", "--from=cronjob/nightly"],
        "job",
        "manual",
    )
    .await;
    let owner = &manual["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "CronJob");
    assert_eq!(owner["name"], "nightly");
    assert_eq!(owner["uid"], cj["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    assert_eq!(
        manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(
        manual["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_ingress_with_rules_tls_and_default_backend() {
    let env = common::start().await;
    let ing = create_both(
        &env,
        &[
            "create",
            "ingress",
            "site",
            "--class=nginx",
            "--rule=foo.com/bar=svc1:8080,tls=my-cert",
            "--rule=bar.com/*=svc2:http",
            "--annotation=team=web",
            "--default-backend=def:80",
        ],
        "ingress",
        "site",
    )
    .await;
    let spec = &ing["spec"];
    assert_eq!(ing["metadata"]["annotations"]["team"], "web");
    assert_eq!(spec["ingressClassName"], "nginx");
    assert_eq!(spec["defaultBackend"]["service"]["name"], "def");
    assert_eq!(spec["defaultBackend"]["service"]["port"]["number"], 80);
    assert_eq!(spec["tls"][0]["secretName"], "my-cert");
    assert_eq!(spec["tls"][0]["hosts"], serde_json::json!(["foo.com"]));
    let p0 = &spec["rules"][0]["http"]["paths"][0];
    assert_eq!(spec["rules"][0]["host"], "foo.com");
    assert_eq!(p0["path"], "/bar");
    assert_eq!(p0["pathType"], "Exact");
    assert_eq!(p0["backend"]["service"]["port"]["number"], 8080);
    let p1 = &spec["rules"][1]["http"]["paths"][0];
    assert_eq!(p1["pathType"], "Prefix");
    assert_eq!(p1["backend"]["service"]["port"]["name"], "http");
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_a_pod_and_expose_it() {
    let env = common::start().await;
    let pod = create_both(
        &env,
        &[
            "run",
            "web",
            "--image=nginx:1.27",
            "--port=80",
            "--env=MODE=prod",
            "--env=EMPTY=",
            "--labels=app=web,tier=front",
            "--restart=Never",
            "--command",
            "--",
            "nginx",
            "-g",
            "daemon off;",
        ],
        "pod",
        "web",
    )
    .await;
    assert_eq!(pod["metadata"]["labels"]["tier"], "front");
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    let c = &spec["containers"][0];
    assert_eq!(
        c["command"],
        serde_json::json!(["nginx", "-g", "daemon off;"])
    );
    assert_eq!(c["ports"][0]["containerPort"], 80);
    assert_eq!(
        c["env"],
        serde_json::json!([{"name": "MODE", "value": "prod"}, {"name": "EMPTY"}])
    );

    let svc = create_both(
        &env,
        &[
            "expose",
            "pod",
            "web",
            "--port=8080",
            "--target-port=80",
            "--name=web-svc",
            "--protocol=TCP",
            "--type=NodePort",
        ],
        "service",
        "web-svc",
    )
    .await;
    assert_eq!(svc["spec"]["selector"], pod["metadata"]["labels"]);
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);

    let svc2 = create_both(
        &env,
        &[
            "expose",
            "service",
            "web-svc",
            "--port=9090",
            "--name=web-svc2",
        ],
        "service",
        "web-svc2",
    )
    .await;
    assert_eq!(svc2["spec"]["selector"], pod["metadata"]["labels"]);
    assert_eq!(svc2["spec"]["ports"][0]["port"], 9090);
    // Without --target-port kubectl targets the exposed port itself.
    assert_eq!(svc2["spec"]["ports"][0]["targetPort"], 9090);
    env.cluster.shutdown().await;
}
