//! The real kubectl against the emulator.

mod common;

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const MANIFEST: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cm1
  namespace: team-a
  labels:
    app: demo
data:
  a: "1"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team-a
  labels:
    app: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_version_and_api_resources() {
    let env = common::start().await;
    let v: Value =
        serde_json::from_str(&env.kubectl_ok(&["version", "-o", "json"]).await).expect("json");
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "37");
    let out = env.kubectl_ok(&["api-resources"]).await;
    let line = out
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap_or("");
    assert!(
        line.contains("deploy") && line.contains("apps/v1") && line.contains("Deployment"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("configmaps ") && l.contains(" cm ")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("customresourcedefinitions ")),
        "{out}"
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_get_and_selectors() {
    let env = common::start().await;
    env.kubectl_ok(&["create", "ns", "team-a"]).await;
    let f = env.write("app.yaml", MANIFEST);
    let out = env.kubectl_ok(&["apply", "--server-side", "-f", &f]).await;
    assert!(out.contains("configmap/cm1 serverside-applied"), "{out}");
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );

    let cm: Value = serde_json::from_str(
        &env.kubectl_ok(&["get", "cm", "cm1", "-n", "team-a", "-o", "json"])
            .await,
    )
    .expect("json");
    let rv1 = cm["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(cm["data"]["a"], "1");
    assert!(
        cm["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );

    // Re-applying the same manifest changes nothing, not even the resourceVersion.
    env.kubectl_ok(&["apply", "--server-side", "-f", &f]).await;
    let again: Value = serde_json::from_str(
        &env.kubectl_ok(&["get", "cm", "cm1", "-n", "team-a", "-o", "json"])
            .await,
    )
    .expect("json");
    assert_eq!(again["metadata"]["resourceVersion"], rv1.as_str());

    // An update through apply.
    let f2 = env.write(
        "app2.yaml",
        &MANIFEST
            .replace("a: \"1\"", "a: \"2\"")
            .replace("replicas: 1", "replicas: 3"),
    );
    env.kubectl_ok(&["apply", "--server-side", "-f", &f2]).await;
    let dep: Value = serde_json::from_str(
        &env.kubectl_ok(&["get", "deploy", "web", "-n", "team-a", "-o", "json"])
            .await,
    )
    .expect("json");
    assert_eq!(dep["spec"]["replicas"], 3);
    assert_eq!(dep["metadata"]["generation"], 2);

    let yaml = env
        .kubectl_ok(&["get", "cm", "-n", "team-a", "-l", "app=demo", "-o", "yaml"])
        .await;
    assert!(
        yaml.contains("name: cm1") && yaml.contains("a: \"2\""),
        "{yaml}"
    );
    let none = env
        .kubectl_ok(&["get", "cm", "-n", "team-a", "-l", "app=other", "-o", "json"])
        .await;
    let none: Value = serde_json::from_str(&none).expect("json");
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));
    let all = env
        .kubectl_ok(&["get", "deployments", "-A", "-l", "app=web"])
        .await;
    assert!(all.contains("team-a") && all.contains("web"), "{all}");

    let missing = env.kubectl(&["get", "cm", "nope", "-n", "team-a"]).await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("Error from server (NotFound): configmaps \"nope\" not found")
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_waits_for_finalizers() {
    let env = common::start().await;
    let f = env.write(
        "fin.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fin\n  namespace: default\n  finalizers: [example.com/hold]\n",
    );
    env.kubectl_ok(&["create", "-f", &f]).await;
    let mut del = env
        .kubectl_cmd(&["delete", "cm", "fin", "--timeout=60s"])
        .spawn()
        .expect("spawn");
    // Wait until the delete has marked the object, then release the finalizer.
    let mut marked = false;
    for _ in 0..100 {
        let out = env
            .kubectl_ok(&[
                "get",
                "cm",
                "fin",
                "-o",
                "jsonpath={.metadata.deletionTimestamp}",
            ])
            .await;
        if !out.trim().is_empty() {
            marked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(marked, "delete never marked the object");
    assert!(
        del.try_wait().expect("status").is_none(),
        "delete returned while a finalizer remained"
    );
    env.kubectl_ok(&[
        "patch",
        "cm",
        "fin",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .await;
    let status = del.wait().await.expect("delete finishes");
    assert!(status.success());
    let gone = env.kubectl(&["get", "cm", "fin"]).await;
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_sees_new_objects() {
    let env = common::start().await;
    let mut w = env
        .kubectl_cmd(&["get", "cm", "--watch", "-o", "name"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = w.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    env.kubectl_ok(&["create", "cm", "watched", "--from-literal=k=v"])
        .await;
    let mut seen = false;
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
    {
        if l.contains("configmap/watched") {
            seen = true;
            break;
        }
    }
    assert!(seen, "watch did not report the new ConfigMap");
    w.kill().await.ok();
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_errors_match_apiserver() {
    let env = common::start().await;
    let bad = env.write(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
    );
    let out = env.kubectl(&["create", "-f", &bad]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ConfigMap \"Bad_Name\" is invalid")
            && err.contains("a lowercase RFC 1123 subdomain"),
        "{err}"
    );
    let out = env
        .kubectl(&["create", "cm", "x", "-n", "missing-ns"])
        .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("namespaces \"missing-ns\" not found"));
    let out = env.kubectl(&["get", "widgets"]).await;
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the server doesn't have a resource type \"widgets\"")
    );
    env.cluster.shutdown().await;
}

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Color, type: string, jsonPath: .spec.color}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_crd_serves_its_kind_with_printer_columns() {
    let env = common::start().await;
    let f = env.write("crd.yaml", CRD);
    env.kubectl_ok(&["apply", "--server-side", "-f", &f]).await;
    let w = env.write(
        "w.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  color: blue\n",
    );
    env.kubectl_ok(&["apply", "--server-side", "-f", &w]).await;
    let table = env.kubectl_ok(&["get", "wg"]).await;
    let header = table.lines().next().unwrap_or("");
    assert!(
        header.contains("NAME") && header.contains("COLOR") && header.contains("AGE"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("w1") && l.contains("blue")),
        "{table}"
    );
    let obj: Value =
        serde_json::from_str(&env.kubectl_ok(&["get", "widget", "w1", "-o", "json"]).await)
            .expect("json");
    assert_eq!(obj["metadata"]["generation"], 1);
    // Deleting the CRD removes its objects and the type.
    env.kubectl_ok(&["delete", "crd", "widgets.example.com"])
        .await;
    let out = env.kubectl(&["get", "widgets.example.com"]).await;
    assert!(!out.status.success());
    env.cluster.shutdown().await;
}

const DEFAULTED: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: default
spec:
  selector:
    matchLabels:
      app: api
  template:
    metadata:
      labels:
        app: api
    spec:
      containers:
      - name: api
        image: example/api
        ports:
        - containerPort: 8080
      initContainers:
      - name: init
        image: example/init:v2
---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: default
spec:
  selector:
    app: api
  ports:
  - port: 80
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_fills_defaults_and_diff_is_empty() {
    let env = common::start().await;
    let f = env.write("defaulted.yaml", DEFAULTED);
    env.kubectl_ok(&["apply", "--server-side", "-f", &f]).await;
    let get = |kind: &'static str| {
        let env = &env;
        async move {
            let out = env
                .kubectl_ok(&[
                    "get",
                    kind,
                    "api",
                    "-n",
                    "default",
                    "-o",
                    "json",
                    "--show-managed-fields",
                ])
                .await;
            serde_json::from_str::<Value>(&out).expect("json")
        }
    };
    let dep = get("deploy").await;
    let rv = dep["metadata"]["resourceVersion"].clone();

    let diff = env.kubectl(&["diff", "--server-side", "-f", &f]).await;
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        diff.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );

    env.kubectl_ok(&["apply", "--server-side", "-f", &f]).await;
    let dep = get("deploy").await;
    assert_eq!(dep["metadata"]["resourceVersion"], rv);

    let spec = &dep["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    assert_eq!(pod["schedulerName"], "default-scheduler");
    assert_eq!(pod["securityContext"], serde_json::json!({}));
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    let c = &pod["containers"][0];
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(pod["initContainers"][0]["imagePullPolicy"], "IfNotPresent");

    // The applier owns only what it sent.
    let applied = dep["metadata"]["managedFields"]
        .as_array()
        .and_then(|m| m.iter().find(|e| e["operation"] == "Apply"))
        .cloned()
        .unwrap_or(Value::Null);
    let fields = applied["fieldsV1"].to_string();
    assert!(fields.contains("f:selector"), "{fields}");
    for defaulted in [
        "f:replicas",
        "f:dnsPolicy",
        "f:imagePullPolicy",
        "f:revisionHistoryLimit",
    ] {
        assert!(!fields.contains(defaulted), "{defaulted} in {fields}");
    }

    let svc = get("svc").await;
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    env.cluster.shutdown().await;
}

/// `kubectl get` prints the columns kube-apiserver's printers give each kind, wide ones too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_prints_kube_apiserver_columns() {
    let env = common::start().await;
    env.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=2",
    ])
    .await;
    env.kubectl_ok(&["create", "role", "r", "--verb=get", "--resource=pods"])
        .await;
    env.kubectl_ok(&[
        "create",
        "rolebinding",
        "rb",
        "--role=r",
        "--user=alice",
        "--serviceaccount=default:default",
    ])
    .await;
    env.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    let header = |out: &str| {
        out.lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pods = env.kubectl_ok(&["get", "pods", "-o", "wide"]).await;
    assert_eq!(
        header(&pods),
        "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES",
        "{pods}"
    );
    assert!(
        pods.lines()
            .skip(1)
            .all(|l| l.contains(" 1/1 ") && l.contains(" Running ")),
        "{pods}"
    );
    let rs = env.kubectl_ok(&["get", "rs"]).await;
    assert_eq!(header(&rs), "NAME DESIRED CURRENT READY AGE", "{rs}");
    let deploy = env.kubectl_ok(&["get", "deploy", "-o", "wide"]).await;
    assert_eq!(
        header(&deploy),
        "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR",
        "{deploy}"
    );
    assert!(
        deploy.contains("nginx:1.25") && deploy.contains("app=web"),
        "{deploy}"
    );
    // The API server's own Service is in `default`, as on every cluster.
    let svc = env.kubectl_ok(&["get", "svc", "kubernetes"]).await;
    assert_eq!(
        header(&svc),
        "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE",
        "{svc}"
    );
    assert!(
        svc.contains("10.96.0.1") && svc.contains("443/TCP") && svc.contains("<none>"),
        "{svc}"
    );
    let role = env.kubectl_ok(&["get", "role"]).await;
    assert_eq!(header(&role), "NAME CREATED AT", "{role}");
    let rb = env.kubectl_ok(&["get", "rolebinding", "-o", "wide"]).await;
    assert_eq!(
        header(&rb),
        "NAME ROLE AGE USERS GROUPS SERVICEACCOUNTS",
        "{rb}"
    );
    assert!(
        rb.contains("Role/r") && rb.contains("default/default"),
        "{rb}"
    );
    env.cluster.shutdown().await;
}

/// The kubeconfig holds the admin token: rewriting it leaves a 0600 regular file whatever was
/// at the path, and a symlink planted there (say, to ~/.bashrc) is replaced, not written through.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_rewrite_is_private_and_does_not_follow_links() {
    use std::os::unix::fs::PermissionsExt;
    let env = common::start().await;
    let dir = env.dir.path();
    let private = |p: &std::path::Path| {
        let meta = std::fs::symlink_metadata(p).expect("kubeconfig exists");
        assert!(
            meta.file_type().is_file(),
            "{} is not a regular file",
            p.display()
        );
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", p.display());
    };

    // An existing world-readable file at the path.
    let loose = dir.join("loose.kubeconfig");
    std::fs::write(&loose, "old").expect("write");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    env.cluster.write_kubeconfig(&loose).expect("rewritten");
    private(&loose);
    assert_eq!(
        std::fs::read_to_string(&loose).expect("read"),
        env.cluster.kubeconfig()
    );

    // A link planted at the path.
    let bashrc = dir.join("bashrc");
    let canary = "export CANARY_BASHRC=unchanged\n";
    std::fs::write(&bashrc, canary).expect("write");
    std::fs::set_permissions(&bashrc, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let planted = dir.join("planted.kubeconfig");
    std::os::unix::fs::symlink(&bashrc, &planted).expect("symlink");
    env.cluster.write_kubeconfig(&planted).expect("rewritten");
    assert_eq!(std::fs::read_to_string(&bashrc).expect("read"), canary);
    let mode = std::fs::metadata(&bashrc)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "the link target's mode changed");
    private(&planted);

    // kubectl uses the rewritten file, and no temporary file is left behind.
    let out = env
        .kubectl_cmd(&["get", "ns", "default", "-o", "name"])
        .env("KUBECONFIG", &planted)
        .output()
        .await
        .expect("kubectl runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/default"
    );
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    env.cluster.shutdown().await;
}

/// kubectl failed and said `text`.
fn failed_saying(o: &std::process::Output, text: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "expected a failure mentioning {text:?}"
    );
    assert!(err.contains(text), "expected {text:?} in:\n{err}");
}

/// /healthz, /livez and /readyz answer as kube-apiserver's health handlers: `ok`, the verbose
/// check list, single checks; they are authenticated and authorized like any path, so a bad
/// token is a 401, anonymous callers reach only the roots (system:public-info-viewer), and with
/// anonymous access off a request without credentials is a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_answer_as_kube_apiserver() {
    let env = common::start().await;
    for endpoint in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(env.kubectl_ok(&["get", "--raw", endpoint]).await, "ok");
        let verbose = env
            .kubectl_ok(&["get", "--raw", &format!("{endpoint}?verbose")])
            .await;
        let lines: Vec<&str> = verbose.lines().collect();
        assert_eq!(lines.first(), Some(&"[+]ping ok"), "{verbose}");
        assert!(lines.contains(&"[+]etcd ok"), "{verbose}");
        let name = endpoint.trim_start_matches('/');
        assert_eq!(
            lines.last().copied(),
            Some(format!("{name} check passed").as_str()),
            "{verbose}"
        );
        assert!(
            lines[..lines.len() - 1]
                .iter()
                .all(|l| l.starts_with("[+]")),
            "{verbose}"
        );
        let excluded = env
            .kubectl_ok(&[
                "get",
                "--raw",
                &format!("{endpoint}?verbose&exclude=etcd&exclude=nope"),
            ])
            .await;
        assert!(excluded.contains("[+]etcd excluded: ok\n"), "{excluded}");
        assert!(
            excluded
                .contains("warn: some health checks cannot be excluded: no matches for \"nope\"\n"),
            "{excluded}"
        );
        assert_eq!(
            env.kubectl_ok(&["get", "--raw", &format!("{endpoint}/ping")])
                .await,
            "ok"
        );
        let out = env
            .kubectl(&["get", "--raw", &format!("{endpoint}/no-such-check")])
            .await;
        failed_saying(&out, "NotFound");

        // Anonymous: the root only.
        let anon = ["--as=system:anonymous", "--as-group=system:unauthenticated"];
        assert_eq!(
            env.kubectl_ok(&[&["get", "--raw", endpoint][..], &anon[..]].concat())
                .await,
            "ok"
        );
        let ping = format!("{endpoint}/ping");
        let out = env
            .kubectl(&[&["get", "--raw", ping.as_str()][..], &anon[..]].concat())
            .await;
        failed_saying(
            &out,
            &format!("User \"system:anonymous\" cannot get path \"{ping}\""),
        );
        // A token that does not authenticate is refused here too.
        let out = env
            .kubectl(&["--token=not-a-token", "get", "--raw", endpoint])
            .await;
        failed_saying(&out, "Unauthorized");
    }
    env.cluster.shutdown().await;

    // Without anonymous access, a request without credentials is a 401 (kubectl over plain
    // http sends none).
    let env = common::start_with(devcluster::Config {
        tls: false,
        anonymous: false,
        ..Default::default()
    })
    .await;
    let out = env.kubectl(&["get", "--raw", "/healthz"]).await;
    failed_saying(&out, "Unauthorized");
    env.cluster.shutdown().await;
}
