//! The ReplicaSets and Pods workload controllers create, seen through the real kubectl:
//! ownership, rollouts, scaling, garbage collection and the unhealthy switch.

mod common;

use std::time::Duration;

use serde_json::Value;

async fn get_json(env: &common::Env, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let out = env.kubectl_ok(&a).await;
    serde_json::from_str(&out).expect("kubectl prints JSON")
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn of_kind(v: &Value, kind: &str) -> Vec<Value> {
    items(v).into_iter().filter(|i| i["kind"] == kind).collect()
}

/// Poll `check` on `kubectl get <args> -o json` until it holds, or fail with the last value.
async fn eventually(env: &common::Env, args: &[&str], check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = get_json(env, args).await;
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not met for {args:?}: {last:#}");
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_own_replicasets_that_own_pods() {
    let env = common::start().await;
    env.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=3",
    ])
    .await;
    let out = env
        .kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=20s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = get_json(&env, &["deployment", "web"]).await;
    let got = eventually(&env, &["rs,pods", "-l", "app=web"], |v| {
        of_kind(v, "ReplicaSet").len() == 1 && of_kind(v, "Pod").len() == 3
    })
    .await;
    let rs = &of_kind(&got, "ReplicaSet")[0];
    let owner = &rs["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Deployment");
    assert_eq!(owner["name"], "web");
    assert_eq!(owner["uid"], d["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["blockOwnerDeletion"], true);
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!hash.is_empty(), "{rs:#}");
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(rs["status"]["readyReplicas"], 3);
    for pod in of_kind(&got, "Pod") {
        let r = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(r["kind"], "ReplicaSet");
        assert_eq!(r["uid"], rs["metadata"]["uid"]);
        assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], hash);
        assert_eq!(pod["spec"]["nodeName"], "devcluster-node");
        assert_eq!(pod["status"]["phase"], "Running");
        assert!(ready(&pod), "{pod:#}");
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        assert!(name.starts_with(&format!("web-{hash}-")), "{name}");
    }
    let d = get_json(&env, &["deployment", "web"]).await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    env.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=web",
        "--timeout=10s",
    ])
    .await;

    // A new image: a second ReplicaSet with the replicas, the first scaled to zero.
    env.kubectl_ok(&["set", "image", "deployment/web", "nginx=nginx:1.26"])
        .await;
    env.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=20s"])
        .await;
    let got = eventually(&env, &["rs", "-l", "app=web"], |v| {
        items(v).len() == 2
            && items(v)
                .iter()
                .any(|r| r["status"]["readyReplicas"] == 3 && r["spec"]["replicas"] == 3)
    })
    .await;
    let mut by_rev: Vec<(String, i64)> = items(&got)
        .iter()
        .map(|r| {
            (
                r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r["spec"]["replicas"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    by_rev.sort();
    assert_eq!(by_rev, vec![("1".to_string(), 0), ("2".to_string(), 3)]);
    let d = get_json(&env, &["deployment", "web"]).await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    eventually(&env, &["pods", "-l", "app=web"], |v| {
        items(v).len() == 3
            && items(v)
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.26")
    })
    .await;

    // Scaling down removes pods.
    env.kubectl_ok(&["scale", "deployment/web", "--replicas=1"])
        .await;
    eventually(&env, &["pods", "-l", "app=web"], |v| items(v).len() == 1).await;
    env.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=20s"])
        .await;

    // A deleted pod is replaced.
    let pods = get_json(&env, &["pods", "-l", "app=web"]).await;
    let victim = items(&pods)[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    env.kubectl_ok(&["delete", "pod", &victim, "--wait=false"])
        .await;
    eventually(&env, &["pods", "-l", "app=web"], |v| {
        items(v).len() == 1 && items(v)[0]["metadata"]["name"] != victim.as_str()
    })
    .await;

    // Deleting the Deployment takes its ReplicaSets and Pods with it.
    env.kubectl_ok(&["delete", "deployment", "web"]).await;
    eventually(&env, &["rs,pods", "-l", "app=web"], |v| items(v).is_empty()).await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_and_orphan_deletion() {
    let env = common::start().await;
    for name in ["fg", "keep"] {
        env.kubectl_ok(&[
            "create",
            "deployment",
            name,
            "--image=nginx:1.25",
            "--replicas=2",
        ])
        .await;
    }
    let sel_fg = ["rs,pods", "-l", "app=fg"];
    eventually(&env, &sel_fg, |v| items(v).len() == 3).await;
    env.kubectl_ok(&["delete", "deployment", "fg", "--cascade=foreground"])
        .await;
    eventually(&env, &sel_fg, |v| items(v).is_empty()).await;
    let out = env.kubectl(&["get", "deployment", "fg"]).await;
    assert!(!out.status.success(), "the Deployment is gone");

    let sel = ["rs,pods", "-l", "app=keep"];
    let before = eventually(&env, &sel, |v| items(v).len() == 3).await;
    env.kubectl_ok(&["delete", "deployment", "keep", "--cascade=orphan"])
        .await;
    let out = env.kubectl(&["get", "deployment", "keep"]).await;
    assert!(!out.status.success(), "the Deployment is gone");
    let after = eventually(&env, &sel, |v| {
        of_kind(v, "ReplicaSet")
            .iter()
            .all(|r| r["metadata"]["ownerReferences"].is_null())
    })
    .await;
    // Nothing was deleted or replaced, and the Pods still belong to their ReplicaSet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_wait = get_json(&env, &sel).await;
    let uids = |v: &Value| {
        let mut u: Vec<String> = items(v)
            .iter()
            .map(|i| {
                i["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        u.sort();
        u
    };
    assert_eq!(uids(&before), uids(&after));
    assert_eq!(uids(&before), uids(&after_wait));
    for pod in of_kind(&after_wait, "Pod") {
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    }
    env.cluster.shutdown().await;
}

const OTHERS: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: default
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: db
        image: postgres:16
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
        image: busybox:1.36
---
apiVersion: batch/v1
kind: Job
metadata:
  name: j
  namespace: default
spec:
  completions: 2
  template:
    metadata:
      labels:
        app: j
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: busybox:1.36
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_daemonset_and_job_pods() {
    let env = common::start().await;
    let f = env.write("others.yaml", OTHERS);
    env.kubectl_ok(&["apply", "-f", &f]).await;
    env.kubectl_ok(&["rollout", "status", "statefulset/db", "--timeout=20s"])
        .await;
    let pods = eventually(&env, &["pods", "-l", "app=db"], |v| items(v).len() == 2).await;
    let mut names: Vec<String> = items(&pods)
        .iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, vec!["db-0", "db-1"]);
    let sts = get_json(&env, &["statefulset", "db"]).await;
    for p in items(&pods) {
        let labels = &p["metadata"]["labels"];
        assert_eq!(
            labels["statefulset.kubernetes.io/pod-name"],
            p["metadata"]["name"]
        );
        assert_eq!(
            labels["controller-revision-hash"],
            sts["status"]["currentRevision"]
        );
        assert!(labels["apps.kubernetes.io/pod-index"].is_string(), "{p:#}");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        assert!(ready(&p), "{p:#}");
    }

    env.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=20s"])
        .await;
    let pods = eventually(&env, &["pods", "-l", "app=agent"], |v| items(v).len() == 1).await;
    let p = &items(&pods)[0];
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    assert!(
        p["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("agent-") && n.len() == "agent-".len() + 5),
        "{p:#}"
    );

    env.kubectl_ok(&["wait", "--for=condition=complete", "job/j", "--timeout=20s"])
        .await;
    let job = get_json(&env, &["job", "j"]).await;
    let pods = eventually(&env, &["pods", "-l", "job-name=j"], |v| items(v).len() == 2).await;
    for p in items(&pods) {
        assert_eq!(p["status"]["phase"], "Succeeded", "{p:#}");
        let term = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(term["exitCode"], 0, "{p:#}");
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"],
            job["metadata"]["uid"]
        );
        assert_eq!(p["metadata"]["labels"]["batch.kubernetes.io/job-name"], "j");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
    }
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_workloads_have_unready_pods() {
    let env = common::start().await;
    env.cluster
        .set_unhealthy("deployment", "default", "sick", true);
    env.kubectl_ok(&[
        "create",
        "deployment",
        "sick",
        "--image=nginx:1.25",
        "--replicas=2",
    ])
    .await;
    let pods = eventually(&env, &["pods", "-l", "app=sick"], |v| items(v).len() == 2).await;
    for p in items(&pods) {
        assert_eq!(p["status"]["phase"], "Running");
        assert!(!ready(&p), "{p:#}");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], false);
    }
    let out = env
        .kubectl(&[
            "wait",
            "--for=condition=Ready",
            "pod",
            "-l",
            "app=sick",
            "--timeout=2s",
        ])
        .await;
    assert!(!out.status.success(), "the pods should not become ready");

    // Switching back makes the same pods ready.
    env.cluster
        .set_unhealthy("deployment", "default", "sick", false);
    env.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=sick",
        "--timeout=10s",
    ])
    .await;
    let again = get_json(&env, &["pods", "-l", "app=sick"]).await;
    let uids = |v: &Value| {
        let mut u: Vec<String> = items(v)
            .iter()
            .map(|i| {
                i["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        u.sort();
        u
    };
    assert_eq!(uids(&pods), uids(&again));
    env.cluster.shutdown().await;
}
