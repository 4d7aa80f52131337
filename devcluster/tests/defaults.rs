//! kube-apiserver's defaults and Service address allocation, seen through the real kubectl.

mod common;

use serde_json::Value;

const WORKLOADS: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: once
  namespace: default
spec:
  template:
    metadata:
      labels:
        app: once
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: busybox:1.36
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  namespace: default
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: run
            image: busybox:1.36
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: default
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      containers:
      - name: agent
        image: example/agent:v1
        readinessProbe:
          httpGet:
            port: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: inside
  namespace: default
spec:
  selector:
    app: agent
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: outside
  namespace: default
spec:
  type: NodePort
  selector:
    app: agent
  ports:
  - name: http
    port: 80
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: default
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: dns-only
  namespace: default
spec:
  podSelector: {}
  egress:
  - ports:
    - port: 53
"#;

async fn get(env: &common::Env, kind: &str, name: &str) -> Value {
    let out = env
        .kubectl_ok(&[
            "get",
            kind,
            name,
            "-n",
            "default",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await;
    serde_json::from_str(&out).expect("kubectl prints JSON")
}

/// The `fieldsV1` of the managedFields entry of `manager`, as text.
fn owned_by(obj: &Value, manager: &str) -> String {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|m| m.iter().find(|e| e["manager"] == manager))
        .map(|e| e["fieldsV1"].to_string())
        .unwrap_or_default()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_fills_defaults_and_diff_stays_empty() {
    let env = common::start().await;
    let f = env.write("workloads.yaml", WORKLOADS);
    env.kubectl_ok(&["apply", "--server-side", "-f", &f]).await;

    let diff = env.kubectl(&["diff", "--server-side", "-f", &f]).await;
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));
    assert!(diff.stdout.is_empty(), "{}", text(&diff));

    let job = get(&env, "job", "once").await;
    let s = &job["spec"];
    assert_eq!(s["completions"], 1);
    assert_eq!(s["parallelism"], 1);
    assert_eq!(s["backoffLimit"], 6);
    assert_eq!(s["completionMode"], "NonIndexed");
    assert_eq!(s["suspend"], false);
    assert_eq!(s["manualSelector"], false);
    assert_eq!(s["podReplacementPolicy"], "TerminatingOrFailed");
    let uid = job["metadata"]["uid"].as_str().unwrap_or("none");
    assert_eq!(
        s["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    let labels = &s["template"]["metadata"]["labels"];
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(labels["controller-uid"], uid);
    assert_eq!(labels["batch.kubernetes.io/job-name"], "once");
    assert_eq!(labels["job-name"], "once");
    assert_eq!(labels["app"], "once");
    assert_eq!(job["metadata"]["labels"], *labels);
    let applied = owned_by(&job, "kubectl");
    for unowned in [
        "f:backoffLimit",
        "f:selector",
        "f:controller-uid",
        "f:suspend",
    ] {
        assert!(!applied.contains(unowned), "{unowned} in {applied}");
    }

    let cj = get(&env, "cronjob", "nightly").await;
    let s = &cj["spec"];
    assert_eq!(s["concurrencyPolicy"], "Allow");
    assert_eq!(s["suspend"], false);
    assert_eq!(s["successfulJobsHistoryLimit"], 3);
    assert_eq!(s["failedJobsHistoryLimit"], 1);
    // kube-apiserver does not run the Job defaults on a job template.
    assert!(
        s["jobTemplate"]["spec"].get("backoffLimit").is_none(),
        "{s}"
    );
    let pod = &s["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");

    let ds = get(&env, "daemonset", "agent").await;
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["readinessProbe"],
        serde_json::json!({"httpGet":{"port":8080,"path":"/","scheme":"HTTP"},
            "timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3})
    );

    let inside = get(&env, "service", "inside").await;
    let s = &inside["spec"];
    let ip = s["clusterIP"].as_str().unwrap_or("");
    assert!(ip.starts_with("10."), "{s}");
    assert_eq!(s["clusterIPs"], serde_json::json!([ip]));
    assert_eq!(s["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(s["ipFamilyPolicy"], "SingleStack");
    assert_eq!(s["internalTrafficPolicy"], "Cluster");
    assert!(s.get("externalTrafficPolicy").is_none(), "{s}");
    let applied = owned_by(&inside, "kubectl");
    for unowned in ["f:clusterIP", "f:ipFamilies", "f:internalTrafficPolicy"] {
        assert!(!applied.contains(unowned), "{unowned} in {applied}");
    }

    let outside = get(&env, "service", "outside").await;
    let s = &outside["spec"];
    assert_eq!(s["externalTrafficPolicy"], "Cluster");
    assert_eq!(s["ports"][0]["targetPort"], 80);
    let node_port = s["ports"][0]["nodePort"].as_i64().unwrap_or(0);
    assert!((30000..=32767).contains(&node_port), "{s}");
    assert_ne!(s["clusterIP"], inside["spec"]["clusterIP"]);

    let pvc = get(&env, "pvc", "data").await;
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["status"]["phase"], "Pending");

    let np = get(&env, "networkpolicy", "dns-only").await;
    assert_eq!(
        np["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");

    // A second apply changes nothing: no allocation moves.
    let rv = outside["metadata"]["resourceVersion"].clone();
    env.kubectl_ok(&["apply", "--server-side", "-f", &f]).await;
    let again = get(&env, "service", "outside").await;
    assert_eq!(again["metadata"]["resourceVersion"], rv);
    assert_eq!(again["spec"]["ports"][0]["nodePort"], node_port);
}

const PLAIN: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: NAME
  namespace: default
spec:
  ports:
  - port: 80
"#;

const DNS: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: NAME
  namespace: default
spec:
  clusterIP: 10.96.0.10
  ports:
  - port: 53
    protocol: UDP
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_are_distinct_and_a_taken_one_is_refused() {
    let env = common::start().await;
    for name in ["a", "b"] {
        let f = env.write(&format!("{name}.yaml"), &PLAIN.replace("NAME", name));
        env.kubectl_ok(&["create", "-f", &f]).await;
    }
    let a = get(&env, "service", "a").await;
    let b = get(&env, "service", "b").await;
    assert!(a["spec"]["clusterIP"].is_string(), "{a}");
    assert_ne!(a["spec"]["clusterIP"], b["spec"]["clusterIP"]);

    let first = env.write("dns.yaml", &DNS.replace("NAME", "dns"));
    env.kubectl_ok(&["apply", "--server-side", "-f", &first])
        .await;
    let dns = get(&env, "service", "dns").await;
    assert_eq!(dns["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(dns["spec"]["clusterIPs"], serde_json::json!(["10.96.0.10"]));

    let second = env.write("dns2.yaml", &DNS.replace("NAME", "dns2"));
    let out = env.kubectl(&["create", "-f", &second]).await;
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains(r#"The Service "dns2" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.10"}: failed to allocate IP 10.96.0.10: provided IP is already allocated"#),
        "{err}"
    );

    // Deleting a Service frees its address.
    env.kubectl_ok(&["delete", "service", "dns"]).await;
    env.kubectl_ok(&["create", "-f", &second]).await;
}

const DEPLOY: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
  namespace: default
spec:
  selector:
    matchLabels:
      app: NAME
  template:
    metadata:
      labels:
        app: NAME
    spec:
      containers:
      - name: app
        image: example/app:v1
"#;

const NODEPORT: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: edge
  namespace: default
spec:
  type: NodePort
  selector:
    app: edge
  ports:
  - port: 80
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creators_own_defaulted_fields_and_appliers_do_not() {
    let env = common::start().await;
    let created = env.write("created.yaml", &DEPLOY.replace("NAME", "made"));
    env.kubectl_ok(&["create", "-f", &created]).await;
    let dep = get(&env, "deployment", "made").await;
    let fields = owned_by(&dep, "kubectl-create");
    let set: Value = serde_json::from_str(&fields).unwrap_or(Value::Null);
    let spec = &set["f:spec"];
    assert!(spec.get("f:progressDeadlineSeconds").is_some(), "{fields}");
    assert!(spec.get("f:revisionHistoryLimit").is_some(), "{fields}");
    assert!(spec.get("f:strategy").is_some(), "{fields}");
    let container = &spec["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"app"}"#];
    for f in [
        "f:terminationMessagePath",
        "f:terminationMessagePolicy",
        "f:imagePullPolicy",
        "f:resources",
    ] {
        assert!(container.get(f).is_some(), "{f} not in {fields}");
    }
    assert!(
        spec["f:template"]["f:spec"].get("f:dnsPolicy").is_some(),
        "{fields}"
    );
    // The list itself is in every typed Deployment, so nobody owns it as a member.
    assert!(
        spec["f:template"]["f:spec"]["f:containers"]
            .get(".")
            .is_none(),
        "{fields}"
    );

    let applied = env.write("applied.yaml", &DEPLOY.replace("NAME", "applied"));
    env.kubectl_ok(&["apply", "--server-side", "-f", &applied])
        .await;
    let dep = get(&env, "deployment", "applied").await;
    assert_eq!(dep["spec"]["progressDeadlineSeconds"], 600);
    let fields = owned_by(&dep, "kubectl");
    assert!(fields.contains("f:image"), "{fields}");
    for f in [
        "f:progressDeadlineSeconds",
        "f:terminationMessagePath",
        "f:dnsPolicy",
    ] {
        assert!(!fields.contains(f), "{f} in {fields}");
    }

    // Allocation happens after the bookkeeping: the creator owns the defaulted traffic
    // policy, not the allocated address and node port.
    let svc = env.write("edge.yaml", NODEPORT);
    env.kubectl_ok(&["create", "-f", &svc]).await;
    let edge = get(&env, "service", "edge").await;
    let fields = owned_by(&edge, "kubectl-create");
    assert!(fields.contains("f:externalTrafficPolicy"), "{fields}");
    assert!(fields.contains("f:internalTrafficPolicy"), "{fields}");
    for f in ["f:clusterIP", "f:nodePort", "f:ipFamilies"] {
        assert!(!fields.contains(f), "{f} in {fields}");
    }
    assert!(edge["spec"]["ports"][0]["nodePort"].is_i64(), "{edge}");
}
