//! Built-in workload controllers and the unhealthy switch, seen through the real kubectl.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

const WORKLOADS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 2
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
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: default
spec:
  serviceName: db
  replicas: 1
  updateStrategy:
    type: RollingUpdate
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
  updateStrategy:
    type: RollingUpdate
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
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: busybox:1.36
"#;

const BROKEN: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels:
      app: broken
  template:
    metadata:
      labels:
        app: broken
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
---
apiVersion: batch/v1
kind: Job
metadata:
  name: stuck
  namespace: default
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: busybox:1.36
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_complete_and_jobs_finish() {
    let env = common::start().await;
    let f = env.write("workloads.yaml", WORKLOADS);
    env.kubectl_ok(&["apply", "--server-side", "-f", &f]).await;
    let out = env
        .kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=20s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    env.kubectl_ok(&["rollout", "status", "statefulset/db", "--timeout=20s"])
        .await;
    env.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=20s"])
        .await;
    let out = env
        .kubectl_ok(&[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=20s",
        ])
        .await;
    assert!(out.contains("condition met"), "{out}");
    let out = env
        .kubectl_ok(&["wait", "--for=condition=complete", "job/j", "--timeout=20s"])
        .await;
    assert!(out.contains("condition met"), "{out}");

    // The controller writes status only, as kube-controller-manager, without a spec bump.
    let api: Api<Deployment> = Api::namespaced(env.client().await, "default");
    let d = api.get("web").await.expect("get deployment");
    assert_eq!(d.metadata.generation, Some(1));
    let st = d.status.clone().unwrap_or_default();
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.ready_replicas, Some(2));
    assert_eq!(st.available_replicas, Some(2));
    let managers: Vec<_> = d
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.subresource.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("kube-controller-manager".into(), "status".into())),
        "{managers:?}"
    );

    // A scale-up is observed and completes again.
    env.kubectl_ok(&[
        "patch",
        "deployment/web",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ])
    .await;
    env.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=20s"])
        .await;
    let d = api.get("web").await.expect("get deployment");
    assert_eq!(d.metadata.generation, Some(2));
    let st = d.status.unwrap_or_default();
    assert_eq!(st.observed_generation, Some(2));
    assert_eq!(st.available_replicas, Some(3));
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_switch_blocks_rollout_and_wait() {
    let env = common::start().await;
    env.cluster
        .set_unhealthy("Deployment", "default", "broken", true);
    env.cluster.set_unhealthy("job", "default", "stuck", true);
    let f = env.write("broken.yaml", BROKEN);
    env.kubectl_ok(&["apply", "--server-side", "-f", &f]).await;

    let out = env
        .kubectl(&["rollout", "status", "deployment/broken", "--timeout=3s"])
        .await;
    assert!(!out.status.success(), "rollout status should time out");
    let out = env
        .kubectl(&[
            "wait",
            "--for=condition=Available",
            "deployment/broken",
            "--timeout=2s",
        ])
        .await;
    assert!(!out.status.success(), "wait should time out");
    let out = env
        .kubectl(&[
            "wait",
            "--for=condition=complete",
            "job/stuck",
            "--timeout=2s",
        ])
        .await;
    assert!(!out.status.success(), "the job should not complete");

    let api: Api<Deployment> = Api::namespaced(env.client().await, "default");
    let st = api
        .get("broken")
        .await
        .expect("get deployment")
        .status
        .unwrap_or_default();
    assert_eq!(st.ready_replicas.unwrap_or(0), 0);
    let available = st
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_.as_deref() == Some("Available"))
        .expect("Available condition");
    assert_eq!(available.status.as_deref(), Some("False"));
    assert_eq!(
        available.reason.as_deref(),
        Some("MinimumReplicasUnavailable")
    );

    // Switching back lets both finish.
    env.cluster
        .set_unhealthy("deployment", "default", "broken", false);
    env.cluster.set_unhealthy("jobs", "default", "stuck", false);
    env.kubectl_ok(&["rollout", "status", "deployment/broken", "--timeout=20s"])
        .await;
    env.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/stuck",
        "--timeout=20s",
    ])
    .await;
    // Nothing left to do: the status stays put.
    let before = api
        .get("broken")
        .await
        .expect("get")
        .metadata
        .resource_version;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = api
        .get("broken")
        .await
        .expect("get")
        .metadata
        .resource_version;
    assert_eq!(before, after);
    env.cluster.shutdown().await;
}

const PLAIN: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: plain
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels:
      app: plain
  template:
    metadata:
      labels:
        app: plain
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: plaindb
  namespace: default
spec:
  serviceName: plaindb
  replicas: 1
  selector:
    matchLabels:
      app: plaindb
  template:
    metadata:
      labels:
        app: plaindb
    spec:
      containers:
      - name: db
        image: postgres:16
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: plainagent
  namespace: default
spec:
  selector:
    matchLabels:
      app: plainagent
  template:
    metadata:
      labels:
        app: plainagent
    spec:
      containers:
      - name: agent
        image: busybox:1.36
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_are_defaulted_so_rollout_status_works() {
    let env = common::start().await;
    let f = env.write("plain.yaml", PLAIN);
    env.kubectl_ok(&["apply", "-f", &f]).await;
    let jp = |path: &str| format!("jsonpath={path}");
    let out = env
        .kubectl_ok(&[
            "get",
            "deployment/plain",
            "-o",
            &jp("{.spec.strategy.type} {.spec.strategy.rollingUpdate.maxSurge} {.spec.strategy.rollingUpdate.maxUnavailable}"),
        ])
        .await;
    assert_eq!(out.trim(), "RollingUpdate 25% 25%");
    let out = env
        .kubectl_ok(&[
            "get",
            "statefulset/plaindb",
            "-o",
            &jp("{.spec.updateStrategy.type} {.spec.updateStrategy.rollingUpdate.partition}"),
        ])
        .await;
    assert_eq!(out.trim(), "RollingUpdate 0");
    let out = env
        .kubectl_ok(&[
            "get",
            "daemonset/plainagent",
            "-o",
            &jp("{.spec.updateStrategy.type} {.spec.updateStrategy.rollingUpdate.maxUnavailable} {.spec.updateStrategy.rollingUpdate.maxSurge}"),
        ])
        .await;
    assert_eq!(out.trim(), "RollingUpdate 1 0");
    for w in [
        "deployment/plain",
        "statefulset/plaindb",
        "daemonset/plainagent",
    ] {
        env.kubectl_ok(&["rollout", "status", w, "--timeout=20s"])
            .await;
    }
    // An explicit strategy is kept, and re-applying the same manifest is a no-op.
    env.kubectl_ok(&[
        "patch",
        "statefulset/plaindb",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}"#,
    ])
    .await;
    let out = env
        .kubectl_ok(&[
            "get",
            "statefulset/plaindb",
            "-o",
            &jp("{.spec.updateStrategy}"),
        ])
        .await;
    assert_eq!(out.trim(), r#"{"type":"OnDelete"}"#);
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_uses_the_scale_subresource() {
    let env = common::start().await;
    let f = env.write("plain.yaml", PLAIN);
    env.kubectl_ok(&["apply", "-f", &f]).await;
    let out = env
        .kubectl_ok(&["scale", "deployment/plain", "--replicas=3"])
        .await;
    assert!(out.contains("scaled"), "{out}");
    env.kubectl_ok(&["scale", "statefulset/plaindb", "--replicas=2"])
        .await;
    let out = env
        .kubectl_ok(&[
            "get",
            "deployment/plain",
            "statefulset/plaindb",
            "-o",
            "jsonpath={.items[*].spec.replicas}",
        ])
        .await;
    assert_eq!(out.trim(), "3 2");
    env.kubectl_ok(&["rollout", "status", "deployment/plain", "--timeout=20s"])
        .await;
    let out = env
        .kubectl_ok(&[
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/default/statefulsets/plaindb/scale",
        ])
        .await;
    assert!(out.contains(r#""kind":"Scale""#), "{out}");
    assert!(out.contains(r#""replicas":2"#), "{out}");
    // The precondition kubectl offers, and the validation of negative counts.
    let out = env
        .kubectl(&[
            "scale",
            "deployment/plain",
            "--current-replicas=5",
            "--replicas=1",
        ])
        .await;
    assert!(!out.status.success(), "{out:?}");
    let out = env
        .kubectl(&[
            "patch",
            "deployment/plain",
            "--subresource=scale",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":-1}}"#,
        ])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("greater than or equal to 0"), "{err}");
    let out = env
        .kubectl_ok(&["get", "deployment/plain", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(out.trim(), "3");
    env.cluster.shutdown().await;
}
