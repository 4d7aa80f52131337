//! The fidelity suite: the ranked risks of the emulator specification (§7, items 1–14), each
//! checked with the real kubectl 1.37 the way the specification prescribes. One test per item;
//! the expected texts are kube-apiserver's, as quoted in the specification.

mod common;

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command failed and said `text` on stderr.
#[track_caller]
fn stderr_has(o: &Output, text: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected a failure mentioning {text:?}"
    );
    assert!(err.contains(text), "expected {text:?} in:\n{err}");
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn get_json(env: &common::Env, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&env.kubectl_ok(&a).await).expect("kubectl prints JSON")
}

/// The fieldsV1 of one manager's entry (any operation), or Null.
fn fields_of<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == manager))
        .map(|e| &e["fieldsV1"])
        .unwrap_or(&Value::Null)
}

/// `manager/operation` of the entries for the main resource (status writers left out).
fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e.get("subresource").is_none())
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["manager"].as_str().unwrap_or(""),
                        e["operation"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn apply(env: &common::Env, file: &str, text: &str, extra: &[&str]) -> Output {
    let f = env.write(file, text);
    let mut args = vec!["apply", "--server-side", "-f", &f];
    args.extend_from_slice(extra);
    env.kubectl(&args).await
}

async fn apply_ok(env: &common::Env, file: &str, text: &str, extra: &[&str]) -> String {
    let out = apply(env, file, text, extra).await;
    assert!(
        out.status.success(),
        "apply {file} {extra:?}: {}",
        stderr(&out)
    );
    stdout(&out)
}

fn deployment(labels: &str, replicas: Option<u32>, containers: &str) -> String {
    let replicas = replicas
        .map(|r| format!("  replicas: {r}\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team-a
  labels: {{{labels}}}
spec:
{replicas}  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
{containers}"#
    )
}

const NGINX: &str = "      - {name: nginx, image: \"nginx:1.25\", args: [\"--a\"], env: [{name: A, value: \"1\"}]}\n";
const SIDECAR: &str = "      - {name: sidecar, image: busybox}\n";

/// Retry a kubectl command for up to ten seconds (for what controllers do asynchronously).
async fn eventually(env: &common::Env, args: &[&str]) -> String {
    for _ in 0..50 {
        let out = env.kubectl(args).await;
        if out.status.success() {
            return stdout(&out);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.kubectl_ok(args).await
}

async fn with_namespace(name: &str) -> common::Env {
    let env = common::start().await;
    env.kubectl_ok(&["create", "ns", name]).await;
    env
}

/// §7.1: SSA merge, ownership and removal (worked examples A–H of §3.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item01_ssa_merge_ownership_and_removal() {
    let env = with_namespace("team-a").await;
    let v1 = deployment("app: web, tier: fe", Some(2), &format!("{NGINX}{SIDECAR}"));
    // A: the first apply creates; defaults are filled in and owned by nobody.
    let out = apply_ok(&env, "v1.yaml", &v1, &["--field-manager=gitops"]).await;
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let d = get_json(&env, &["deploy", "web", "-n", "team-a"]).await;
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    // Besides the applier, only the Deployment controller's revision annotation, as on a
    // real cluster (it may not have been written yet).
    let mut ms = managers(&d);
    ms.retain(|m| m != "kube-controller-manager/Update");
    assert_eq!(ms, vec!["gitops/Apply"]);
    let kcm = d["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["manager"] == "kube-controller-manager" && e.get("subresource").is_none());
    if let Some(e) = kcm {
        assert_eq!(
            e["fieldsV1"],
            serde_json::json!({"f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}}}),
            "{e:#}"
        );
    }
    let g = fields_of(&d, "gitops");
    assert_eq!(
        g["f:spec"]["f:selector"],
        serde_json::json!({}),
        "selector is atomic"
    );
    let nginx = &g["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert!(
        nginx.get(".").is_some() && nginx.get("f:image").is_some(),
        "{g}"
    );
    assert!(nginx["f:env"].get("k:{\"name\":\"A\"}").is_some(), "{g}");
    assert!(
        nginx.get("f:terminationMessagePath").is_none(),
        "defaults are not the applier's"
    );
    assert!(g["f:spec"].get("f:progressDeadlineSeconds").is_none());

    // B: an Update manager takes replicas over.
    env.kubectl_ok(&["scale", "deploy", "web", "-n", "team-a", "--replicas=5"])
        .await;
    let d = get_json(&env, &["deploy", "web", "-n", "team-a"]).await;
    assert!(
        fields_of(&d, "gitops")["f:spec"]
            .get("f:replicas")
            .is_none(),
        "{d}"
    );
    // C: re-applying replicas 2 conflicts; equal values would share; force takes it back.
    let out = apply(&env, "v1.yaml", &v1, &["--field-manager=gitops"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl"),
        "{err}"
    );
    assert!(err.contains(".spec.replicas"), "{err}");
    let shared = deployment("app: web, tier: fe", Some(5), &format!("{NGINX}{SIDECAR}"));
    apply_ok(&env, "shared.yaml", &shared, &["--field-manager=gitops"]).await;
    let d = get_json(&env, &["deploy", "web", "-n", "team-a"]).await;
    assert!(
        fields_of(&d, "gitops")["f:spec"]
            .get("f:replicas")
            .is_some(),
        "shared ownership"
    );
    apply_ok(
        &env,
        "v1.yaml",
        &v1,
        &["--field-manager=gitops", "--force-conflicts"],
    )
    .await;
    let d = get_json(&env, &["deploy", "web", "-n", "team-a"]).await;
    assert_eq!(d["spec"]["replicas"], 2);

    // D: dropped fields owned only by the applier go; a label another manager also owns stays.
    env.kubectl_ok(&["label", "deploy", "web", "-n", "team-a", "owner=ops"])
        .await;
    let with_owner = deployment(
        "app: web, tier: fe, owner: ops",
        Some(2),
        &format!("{NGINX}{SIDECAR}"),
    );
    apply_ok(&env, "owner.yaml", &with_owner, &["--field-manager=gitops"]).await;
    let v2 = deployment("app: web", Some(2), NGINX);
    apply_ok(&env, "v2.yaml", &v2, &["--field-manager=gitops"]).await;
    let d = get_json(&env, &["deploy", "web", "-n", "team-a"]).await;
    let labels = &d["metadata"]["labels"];
    assert!(labels.get("tier").is_none(), "tier removed: {labels}");
    assert_eq!(labels["owner"], "ops", "kubectl-label still owns owner");
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["nginx"]);
    // Spec changes so far: scale, forced replicas, dropped sidecar.
    assert_eq!(d["metadata"]["generation"], 4);

    // E: a second applier merges into the associative containers list without conflict.
    let team_b = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: team-a}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: nginx, resources: {limits: {cpu: \"1\"}}}\n";
    apply_ok(&env, "b.yaml", team_b, &["--field-manager=team-b"]).await;
    let d = get_json(&env, &["deploy", "web", "-n", "team-a"]).await;
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"]["cpu"], "1");
    assert_eq!(c["image"], "nginx:1.25");
    let b = &fields_of(&d, "team-b")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert!(
        b.get("f:image").is_none() && b["f:resources"]["f:limits"].get("f:cpu").is_some(),
        "{b}"
    );

    // F: args is atomic: a different list from another applier is one conflict on the list.
    let team_b_args = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: team-a}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: nginx, args: [\"--b\"]}\n";
    let out = apply(&env, "bargs.yaml", team_b_args, &["--field-manager=team-b"]).await;
    let err = stderr(&out);
    assert!(
        err.contains("conflict with \"gitops\"")
            && err.contains(".spec.template.spec.containers[name=\"nginx\"].args"),
        "{err}"
    );

    // G: dropping replicas that nobody else owns resets it to the default.
    let v3 = deployment("app: web", None, NGINX);
    apply_ok(&env, "v3.yaml", &v3, &["--field-manager=gitops"]).await;
    let d = get_json(&env, &["deploy", "web", "-n", "team-a"]).await;
    assert_eq!(d["spec"]["replicas"], 1);

    // H: ConfigMap: a dropped key goes; a value another manager changed conflicts.
    let cm = |data: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: team-a}}\ndata: {{{data}}}\n"
        )
    };
    apply_ok(
        &env,
        "cm1.yaml",
        &cm("a: \"1\", b: \"2\""),
        &["--field-manager=gitops"],
    )
    .await;
    apply_ok(
        &env,
        "cm2.yaml",
        &cm("a: \"1\""),
        &["--field-manager=gitops"],
    )
    .await;
    let c = get_json(&env, &["cm", "cfg", "-n", "team-a"]).await;
    assert_eq!(c["data"], serde_json::json!({"a": "1"}));
    env.kubectl_ok(&[
        "patch",
        "cm",
        "cfg",
        "-n",
        "team-a",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"9"}}"#,
        "--field-manager=kubectl-edit",
    ])
    .await;
    let out = apply(
        &env,
        "cm2.yaml",
        &cm("a: \"1\""),
        &["--field-manager=gitops"],
    )
    .await;
    let err = stderr(&out);
    assert!(
        err.contains("conflict with \"kubectl-edit\"") && err.contains(".data.a"),
        "{err}"
    );
    env.cluster.shutdown().await;
}

/// §7.2: conflict detection and force, including leader election by SSA (§3.5 I).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item02_conflicts_and_force() {
    let env = with_namespace("team-a").await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: team-a, labels: {tier: fe}}\ndata: {k: v}\n";
    apply_ok(&env, "c.yaml", cm, &["--field-manager=a"]).await;
    env.kubectl_ok(&["label", "cm", "c", "-n", "team-a", "tier=be", "--overwrite"])
        .await;
    let out = apply(&env, "c.yaml", cm, &["--field-manager=a"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl-label\" using v1: .metadata.labels.tier"),
        "{err}"
    );
    assert!(
        err.contains("--force-conflicts"),
        "kubectl recognises the conflict: {err}"
    );
    apply_ok(
        &env,
        "c.yaml",
        cm,
        &["--field-manager=a", "--force-conflicts"],
    )
    .await;
    let c = get_json(&env, &["cm", "c", "-n", "team-a"]).await;
    assert_eq!(c["metadata"]["labels"]["tier"], "fe");
    assert!(
        !managers(&c).iter().any(|m| m.starts_with("kubectl-label")),
        "{:?}",
        managers(&c)
    );

    // Leader election: the holder owns holderIdentity, a rival conflicts until it forces.
    let lease = |holder: &str| {
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: leader, namespace: team-a}}\nspec: {{holderIdentity: {holder}, leaseDurationSeconds: 15, renewTime: \"2026-11-26T06:32:38.123456Z\"}}\n"
        )
    };
    apply_ok(&env, "l1.yaml", &lease("pod-1"), &["--field-manager=pod-1"]).await;
    let out = apply(&env, "l2.yaml", &lease("pod-2"), &["--field-manager=pod-2"]).await;
    // An Apply manager is named without a version ("using" is for Update managers).
    assert!(
        stderr(&out).contains(
            "Apply failed with 1 conflict: conflict with \"pod-1\": .spec.holderIdentity"
        ),
        "{}",
        stderr(&out)
    );
    apply_ok(
        &env,
        "l2.yaml",
        &lease("pod-2"),
        &["--field-manager=pod-2", "--force-conflicts"],
    )
    .await;
    let l = get_json(&env, &["lease", "leader", "-n", "team-a"]).await;
    assert_eq!(l["spec"]["holderIdentity"], "pod-2");
    // MicroTime is decoded strictly: a second-precision renewTime is a 400.
    let bad = lease("pod-3")
        .replace(".123456Z", "Z")
        .replace("name: leader", "name: other");
    let f = env.write("l3.yaml", &bad);
    let out = env.kubectl(&["create", "-f", &f]).await;
    assert!(
        stderr(&out).contains(
            "parsing time \"2026-11-26T06:32:38Z\" as \"2006-01-02T15:04:05.000000Z07:00\""
        ),
        "{}",
        stderr(&out)
    );
    env.cluster.shutdown().await;
}

/// §7.3: an unchanged apply keeps the resourceVersion and emits no watch event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item03_no_op_writes_keep_the_resource_version() {
    let env = with_namespace("team-a").await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same, namespace: team-a}\ndata: {k: v}\n";
    apply_ok(&env, "same.yaml", cm, &[]).await;
    async fn rv(env: &common::Env) -> String {
        env.kubectl_ok(&[
            "get",
            "cm",
            "same",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .await
    }
    let before = rv(&env).await;
    let mut watch = env
        .kubectl_cmd(&[
            "get",
            "cm",
            "-n",
            "team-a",
            "-w",
            "--output-watch-events",
            "--no-headers",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch starts");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    // The watch lists first: wait for the existing object.
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await
    {
        let done = l.contains("same");
        seen.push(l);
        if done {
            break;
        }
    }
    apply_ok(&env, "same.yaml", cm, &[]).await;
    apply_ok(&env, "same.yaml", cm, &[]).await;
    assert_eq!(
        rv(&env).await,
        before,
        "no-op applies keep the resourceVersion"
    );
    // A marker object: events are ordered, so a MODIFIED for `same` would come before it.
    env.kubectl_ok(&["create", "cm", "marker", "-n", "team-a"])
        .await;
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await
    {
        let done = l.contains("marker");
        seen.push(l);
        if done {
            break;
        }
    }
    watch.kill().await.ok();
    assert!(seen.iter().any(|l| l.contains("marker")), "{seen:?}");
    assert!(!seen.iter().any(|l| l.starts_with("MODIFIED")), "{seen:?}");
    env.cluster.shutdown().await;
}

/// §7.4: watch semantics: in-stream 410 after compaction, selector filtering, and the
/// watch-list initial-events-end bookmark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item04_watch_gone_selectors_and_initial_events() {
    let env = common::start().await;
    env.kubectl_ok(&["create", "cm", "one", "--from-literal=k=v"])
        .await;
    env.kubectl_ok(&["create", "cm", "two", "--from-literal=k=v"])
        .await;
    env.kubectl_ok(&["label", "cm", "two", "pick=yes"]).await;
    env.cluster.compact();
    let out = env
        .kubectl_ok(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1&timeoutSeconds=5",
        ])
        .await;
    let lines: Vec<Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["type"], "ERROR");
    assert_eq!(lines[0]["object"]["code"], 410);
    assert_eq!(lines[0]["object"]["reason"], "Expired");

    // Watch-list: initial ADDED events filtered by the selector, then the end bookmark.
    let out = env
        .kubectl_ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&labelSelector=pick%3Dyes&timeoutSeconds=2"])
        .await;
    let events: Vec<Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON event"))
        .collect();
    let added: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .filter_map(|e| e["object"]["metadata"]["name"].as_str())
        .collect();
    assert_eq!(added, vec!["two"], "{out}");
    let end = events
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("bookmark");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(end["object"]["kind"], "ConfigMap");
    assert!(
        end["object"]["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );

    // A field selector watch sees only its object's events.
    let mut w = env
        .kubectl_cmd(&[
            "get",
            "cm",
            "--field-selector=metadata.name=one",
            "-w",
            "--output-watch-events",
            "--no-headers",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    let mut lines = BufReader::new(w.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
    assert!(
        matches!(&first, Ok(Ok(Some(l))) if l.starts_with("ADDED") && l.contains("one")),
        "{first:?}"
    );
    env.kubectl_ok(&["label", "cm", "two", "x=1"]).await;
    env.kubectl_ok(&["label", "cm", "one", "x=1"]).await;
    let next = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
    assert!(
        matches!(&next, Ok(Ok(Some(l))) if l.starts_with("MODIFIED") && l.contains("one")),
        "{next:?}"
    );
    w.kill().await.ok();
    env.cluster.shutdown().await;
}

/// §7.5: authorization: SA groups, namespace-scoped bindings, resourceNames, subresources,
/// SSA create needing `create`, escalation checks, and `--as-group` without `--as`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item05_authorization_surface() {
    let env = with_namespace("team-a").await;
    env.kubectl_ok(&["create", "ns", "team-b"]).await;
    env.kubectl_ok(&["create", "sa", "deployer", "-n", "team-a"])
        .await;
    let sa = "--as=system:serviceaccount:team-a:deployer";
    let can = |args: Vec<&'static str>| {
        let env = &env;
        async move {
            let mut a = vec!["auth", "can-i"];
            a.extend(args);
            a.push(sa);
            let out = env.kubectl(&a).await;
            stdout(&out).trim().to_string()
        }
    };
    assert_eq!(can(vec!["patch", "configmaps", "-n", "team-a"]).await, "no");
    // A Role allowing get/patch (not create) on configmaps, and get on one named secret.
    let rbac = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-patcher, namespace: team-a}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: [get, list, patch]}
- {apiGroups: [""], resources: [secrets], resourceNames: [allowed], verbs: [get]}
- {apiGroups: ["apps"], resources: [deployments/scale], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: cm-patcher, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-patcher}
subjects:
- {kind: ServiceAccount, name: deployer, namespace: team-a}
"#;
    apply_ok(&env, "rbac.yaml", rbac, &[]).await;
    assert_eq!(
        can(vec!["patch", "configmaps", "-n", "team-a"]).await,
        "yes"
    );
    assert_eq!(
        can(vec!["patch", "configmaps", "-n", "team-b"]).await,
        "no",
        "bindings are namespaced"
    );
    assert_eq!(
        can(vec!["get", "secrets/allowed", "-n", "team-a"]).await,
        "yes"
    );
    assert_eq!(
        can(vec!["get", "secrets/other", "-n", "team-a"]).await,
        "no"
    );
    assert_eq!(
        can(vec![
            "get",
            "deployments.apps",
            "--subresource=scale",
            "-n",
            "team-a"
        ])
        .await,
        "yes"
    );
    assert_eq!(
        can(vec!["get", "deployments.apps", "-n", "team-a"]).await,
        "no"
    );
    // SA implicit groups: a binding to system:serviceaccounts:team-a applies.
    env.kubectl_ok(&[
        "create",
        "rolebinding",
        "sa-view",
        "-n",
        "team-a",
        "--clusterrole=view",
        "--group=system:serviceaccounts:team-a",
    ])
    .await;
    assert_eq!(can(vec!["list", "pods", "-n", "team-a"]).await, "yes");

    // SSA of a new object needs create: 403 with kube-apiserver's text.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: newcm, namespace: team-a}\ndata: {k: v}\n";
    let out = apply(&env, "new.yaml", cm, &[sa]).await;
    stderr_has(
        &out,
        "configmaps \"newcm\" is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"team-a\"",
    );
    // ...while an existing one can be applied with patch alone.
    env.kubectl_ok(&["create", "cm", "newcm", "-n", "team-a"])
        .await;
    apply_ok(&env, "new.yaml", cm, &[sa]).await;

    // Escalation: a Role granting more than the SA holds.
    env.kubectl_ok(&[
        "create",
        "role",
        "rbac-writer",
        "-n",
        "team-a",
        "--verb=create,get,patch",
        "--resource=roles.rbac.authorization.k8s.io",
    ])
    .await;
    env.kubectl_ok(&[
        "create",
        "rolebinding",
        "rbac-writer",
        "-n",
        "team-a",
        "--role=rbac-writer",
        "--serviceaccount=team-a:deployer",
    ])
    .await;
    let greedy = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: greedy, namespace: team-a}\nrules:\n- {apiGroups: [\"\"], resources: [secrets], verbs: [\"*\"]}\n";
    let out = apply(&env, "greedy.yaml", greedy, &[sa]).await;
    stderr_has(
        &out,
        "is attempting to grant RBAC permissions not currently held",
    );
    let modest = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: modest, namespace: team-a}\nrules:\n- {apiGroups: [\"\"], resources: [configmaps], verbs: [get]}\n";
    apply_ok(&env, "modest.yaml", modest, &[sa]).await;

    // Once an admin created it, the SA may touch the Role's GC fields, nothing else.
    let greedy_file = env.write("greedy-admin.yaml", greedy);
    env.kubectl_ok(&["create", "-f", &greedy_file]).await;
    env.kubectl_ok(&[
        "patch",
        "role",
        "greedy",
        "-n",
        "team-a",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/keep"]}}"#,
        sa,
    ])
    .await;
    let out = env
        .kubectl(&["label", "role", "greedy", "-n", "team-a", "x=y", sa])
        .await;
    stderr_has(
        &out,
        "is attempting to grant RBAC permissions not currently held",
    );

    // A review without attributes or subject is invalid, not evaluated.
    let sar = env.write(
        "sar.json",
        r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{}}"#,
    );
    let out = env
        .kubectl(&[
            "create",
            "--raw",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            "-f",
            &sar,
        ])
        .await;
    let err = stderr(&out);
    assert!(
        err.contains("spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified")
            && err.contains("spec.user: Invalid value: \"\": at least one of user or group must be specified"),
        "{err}"
    );

    // Impersonating a group without a user is refused.
    let out = env
        .kubectl(&["get", "cm", "-n", "team-a", "--as-group=devs"])
        .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).to_lowercase().contains("impersonat"),
        "{}",
        stderr(&out)
    );
    env.cluster.shutdown().await;
}

const WIDGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              color: {type: string}
              size: {type: integer, default: 3}
"#;

fn widget(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  color: red\n{extra}"
    )
}

/// §7.6: defaults make a second `diff --server-side` empty; CRs are pruned to their schema
/// under each `--validate` mode, and schema defaults are filled in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item06_defaulting_and_pruning() {
    let env = with_namespace("team-a").await;
    let app = format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: team-a}}\nspec:\n  selector: {{app: web}}\n  ports:\n  - {{port: 80}}\n",
        deployment("app: web", Some(2), NGINX)
    );
    apply_ok(&env, "app.yaml", &app, &[]).await;
    let f = env.write("app.yaml", &app);
    let diff = env.kubectl(&["diff", "--server-side", "-f", &f]).await;
    assert_eq!(
        diff.status.code(),
        Some(0),
        "diff not empty: {}{}",
        stdout(&diff),
        stderr(&diff)
    );
    let svc = get_json(&env, &["svc", "web", "-n", "team-a"]).await;
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");

    apply_ok(&env, "crd.yaml", WIDGET_CRD, &[]).await;
    env.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
    ])
    .await;
    // Server-side apply converts the manifest to the schema's typed form first: an undeclared
    // field is kube-apiserver's 500 whatever --validate says, and nothing is stored.
    for mode in ["strict", "warn", "false"] {
        let name = format!("apply-{mode}");
        let validate = format!("--validate={mode}");
        let out = apply(
            &env,
            &format!("{name}.yaml"),
            &widget(&name, "  shade: dark\n"),
            &[&validate],
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{mode}");
        assert!(
            stderr(&out).contains(".spec.shade: field not declared in schema"),
            "{mode}: {}",
            stderr(&out)
        );
        assert!(
            !env.kubectl(&["get", "widget", &name])
                .await
                .status
                .success(),
            "{mode}: nothing stored"
        );
    }
    // A create decodes leniently unless strict: the field is refused, warned about and
    // pruned, or pruned silently.
    async fn create(env: &common::Env, name: &str, mode: &str) -> Output {
        let f = env.write(&format!("{name}.yaml"), &widget(name, "  shade: dark\n"));
        env.kubectl(&["create", &format!("--validate={mode}"), "-f", &f])
            .await
    }
    let out = create(&env, "strict", "strict").await;
    assert!(!out.status.success());
    stderr_has(&out, "strict decoding error: unknown field \"spec.shade\"");
    assert!(
        !env.kubectl(&["get", "widget", "strict"])
            .await
            .status
            .success(),
        "nothing stored"
    );
    let out = create(&env, "warned", "warn").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: unknown field \"spec.shade\""),
        "{}",
        stderr(&out)
    );
    let w = get_json(&env, &["widget", "warned"]).await;
    assert!(w["spec"].get("shade").is_none(), "pruned: {w}");
    assert_eq!(w["spec"]["size"], 3, "schema default");
    let out = create(&env, "quiet", "false").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("shade"), "{}", stderr(&out));
    let w = get_json(&env, &["widget", "quiet"]).await;
    assert!(w["spec"].get("shade").is_none(), "pruned: {w}");
    // A valid apply gets the default without owning it.
    apply_ok(&env, "ok.yaml", &widget("applied", ""), &[]).await;
    let w = get_json(&env, &["widget", "applied"]).await;
    assert_eq!(w["spec"]["size"], 3);
    assert!(
        fields_of(&w, "kubectl")["f:spec"].get("f:size").is_none(),
        "{w}"
    );
    env.cluster.shutdown().await;
}

/// §7.7: validation and strict field validation, and name/namespace mismatches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item07_validation() {
    let env = with_namespace("team-a").await;
    let with_foo = deployment("app: web", Some(1), NGINX)
        .replace("spec:\n  replicas", "spec:\n  foo: bar\n  replicas");
    let out = apply(&env, "foo.yaml", &with_foo, &[]).await;
    stderr_has(&out, ".spec.foo: field not declared in schema");
    let f = env.write("foo.yaml", &with_foo);
    let out = env.kubectl(&["create", "-f", &f]).await;
    stderr_has(&out, "strict decoding error: unknown field \"spec.foo\"");
    let out = env.kubectl(&["create", "--validate=false", "-f", &f]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let d = get_json(&env, &["deploy", "web", "-n", "team-a"]).await;
    assert!(d["spec"].get("foo").is_none());

    let bad = env.write(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name, namespace: team-a}\n",
    );
    let out = env.kubectl(&["create", "-f", &bad]).await;
    stderr_has(
        &out,
        "The ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain",
    );
    // Raw writes whose body disagrees with the URL.
    let body = env.write(
        "cm.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"team-b"}}"#,
    );
    let out = env
        .kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/team-a/configmaps",
            "-f",
            &body,
        ])
        .await;
    assert!(
        stderr(&out).contains(
            "the namespace of the provided object does not match the namespace sent on the request"
        ),
        "{}",
        stderr(&out)
    );
    env.kubectl_ok(&["create", "cm", "b", "-n", "team-a"]).await;
    let body = env.write(
        "cm2.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"team-a"}}"#,
    );
    let out = env
        .kubectl(&[
            "replace",
            "--raw",
            "/api/v1/namespaces/team-a/configmaps/b",
            "-f",
            &body,
        ])
        .await;
    stderr_has(
        &out,
        "the name of the object (a) does not match the name on the URL (b)",
    );
    env.cluster.shutdown().await;
}

/// §7.8: namespace lifecycle, per-namespace defaults and deletion semantics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item08_namespaces_and_deletion() {
    let env = common::start().await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: nowhere}\n";
    let out = apply(&env, "c.yaml", cm, &[]).await;
    stderr_has(&out, "namespaces \"nowhere\" not found");

    env.kubectl_ok(&["create", "ns", "doomed"]).await;
    let ns = get_json(&env, &["ns", "doomed"]).await;
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "doomed"
    );
    assert_eq!(ns["spec"]["finalizers"], serde_json::json!(["kubernetes"]));
    // Real controllers add these shortly after; a pruner must leave them alone.
    eventually(&env, &["get", "sa", "default", "-n", "doomed"]).await;
    eventually(&env, &["get", "cm", "kube-root-ca.crt", "-n", "doomed"]).await;
    let held = env.write("held.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: doomed, finalizers: [example.com/hold]}\n");
    env.kubectl_ok(&["create", "-f", &held]).await;
    env.kubectl_ok(&["delete", "ns", "doomed", "--wait=false"])
        .await;
    let phase = env
        .kubectl_ok(&["get", "ns", "doomed", "-o", "jsonpath={.status.phase}"])
        .await;
    assert_eq!(phase, "Terminating");
    let out = env.kubectl(&["create", "cm", "late", "-n", "doomed"]).await;
    assert!(
        stderr(&out).contains(
            "unable to create new content in namespace doomed because it is being terminated"
        ),
        "{}",
        stderr(&out)
    );
    env.kubectl_ok(&[
        "patch",
        "cm",
        "held",
        "-n",
        "doomed",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .await;
    env.kubectl_ok(&["wait", "--for=delete", "ns/doomed", "--timeout=30s"])
        .await;
    let out = env.kubectl(&["delete", "ns", "kube-system"]).await;
    stderr_has(&out, "this namespace may not be deleted");

    // Foreground deletion removes the dependents before the owner.
    env.kubectl_ok(&["create", "cm", "parent"]).await;
    let uid = env
        .kubectl_ok(&["get", "cm", "parent", "-o", "jsonpath={.metadata.uid}"])
        .await;
    let child = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: child\n  namespace: default\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: parent, uid: {uid}, blockOwnerDeletion: true}}\n"
    );
    apply_ok(&env, "child.yaml", &child, &[]).await;
    env.kubectl_ok(&[
        "delete",
        "cm",
        "parent",
        "--cascade=foreground",
        "--timeout=30s",
    ])
    .await;
    assert!(!env.kubectl(&["get", "cm", "parent"]).await.status.success());
    assert!(
        !env.kubectl(&["get", "cm", "child"]).await.status.success(),
        "child collected"
    );
    env.cluster.shutdown().await;
}

/// §7.9: list details: unstamped items, a list resourceVersion, pagination, expired tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item09_list_details() {
    let env = common::start().await;
    for n in ["a", "b", "c"] {
        env.kubectl_ok(&["create", "cm", n]).await;
    }
    let page: Value = serde_json::from_str(
        &env.kubectl_ok(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/configmaps?limit=1",
        ])
        .await,
    )
    .expect("json");
    assert_eq!(page["kind"], "ConfigMapList");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert!(page["items"][0].get("kind").is_none() && page["items"][0].get("apiVersion").is_none());
    assert!(
        page["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    let token = page["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!token.is_empty());
    let next: Value = serde_json::from_str(
        &env.kubectl_ok(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/configmaps?limit=1&continue={token}"),
        ])
        .await,
    )
    .expect("json");
    assert_ne!(
        next["items"][0]["metadata"]["name"],
        page["items"][0]["metadata"]["name"]
    );
    let all = env
        .kubectl_ok(&["get", "cm", "--chunk-size=1", "-o", "name"])
        .await;
    for n in ["a", "b", "c", "kube-root-ca.crt"] {
        assert!(all.contains(&format!("configmap/{n}")), "{all}");
    }
    env.kubectl_ok(&["create", "cm", "d"]).await;
    env.cluster.compact();
    let out = env
        .kubectl(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/configmaps?limit=1&continue={token}"),
        ])
        .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Expired") || err.contains("410") || err.contains("expired"),
        "{err}"
    );
    env.cluster.shutdown().await;
}

/// §7.10: discovery and OpenAPI freshness for CRDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_crd_discovery_freshness() {
    let env = common::start().await;
    let index_before = env.kubectl_ok(&["get", "--raw", "/openapi/v3"]).await;
    assert!(!index_before.contains("apis/example.com/v1"));
    // One invocation: kubectl maps every object before applying any, so the CR cannot be
    // mapped yet and kubectl tells the user to install CRDs first; the CRD itself goes in.
    let both = format!("{WIDGET_CRD}---\n{}", widget("w1", ""));
    let out = apply(&env, "both.yaml", &both, &[]).await;
    let created = env.kubectl(&["get", "widget", "w1"]).await.status.success();
    assert!(
        created || stderr(&out).contains("ensure CRDs are installed first"),
        "{}",
        stderr(&out)
    );
    env.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
    ])
    .await;
    // The second invocation (with default, strict validation) finds the kind.
    apply_ok(&env, "both.yaml", &both, &[]).await;
    env.kubectl_ok(&["get", "widget", "w1"]).await;
    let res = env
        .kubectl_ok(&["api-resources", "--api-group=example.com"])
        .await;
    assert!(
        res.lines()
            .any(|l| l.starts_with("widgets ") && l.contains("example.com/v1")),
        "{res}"
    );
    let index: Value =
        serde_json::from_str(&env.kubectl_ok(&["get", "--raw", "/openapi/v3"]).await)
            .expect("json");
    let url = index["paths"]["apis/example.com/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(url.contains("?hash="), "{index}");
    let doc: Value =
        serde_json::from_str(&env.kubectl_ok(&["get", "--raw", &url]).await).expect("json");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    assert!(
        schemas
            .values()
            .any(|s| s["x-kubernetes-group-version-kind"][0]["kind"] == "Widget")
    );
    // Deleting the CRD takes the kind out of discovery again.
    env.kubectl_ok(&["delete", "crd", "widgets.example.com", "--timeout=30s"])
        .await;
    let res = env
        .kubectl_ok(&["api-resources", "--api-group=example.com"])
        .await;
    assert!(!res.contains("widgets"), "{res}");
    env.cluster.shutdown().await;
}

/// §7.11: generation moves with spec changes only; status writes go through the subresource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item11_generation_and_status_subresource() {
    let env = with_namespace("team-a").await;
    apply_ok(&env, "d.yaml", &deployment("app: web", Some(1), NGINX), &[]).await;
    async fn generation(env: &common::Env) -> String {
        env.kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
        .await
    }
    assert_eq!(generation(&env).await, "1");
    env.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "team-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"observedGeneration":1}}"#,
    ])
    .await;
    assert_eq!(generation(&env).await, "1", "status writes keep generation");
    // A main-resource write cannot change status.
    env.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "team-a",
        "--type=merge",
        "-p",
        r#"{"status":{"observedGeneration":7}}"#,
    ])
    .await;
    let og = env
        .kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.status.observedGeneration}",
        ])
        .await;
    assert_ne!(og, "7");
    env.kubectl_ok(&["label", "deploy", "web", "-n", "team-a", "x=y"])
        .await;
    assert_eq!(
        generation(&env).await,
        "1",
        "metadata writes keep generation"
    );
    env.kubectl_ok(&[
        "set",
        "image",
        "deploy/web",
        "-n",
        "team-a",
        "nginx=nginx:1.26",
    ])
    .await;
    assert_eq!(generation(&env).await, "2", "spec writes bump generation");
    // Kinds without generation never get one.
    env.kubectl_ok(&["create", "cm", "c", "-n", "team-a"]).await;
    let g = env
        .kubectl_ok(&[
            "get",
            "cm",
            "c",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
        .await;
    assert_eq!(g, "");
    env.cluster.shutdown().await;
}

/// The response body of one request in kubectl's -v=9 log.
fn response_body(log: &str, verb: &str) -> Option<Value> {
    let mut after = false;
    for line in log.lines() {
        if line.contains(&format!("verb=\"{verb}\"")) || line.contains(&format!("\"{verb} ")) {
            after = true;
        }
        if after && line.contains("Response Body") {
            let start = line.find('{')?;
            let text = line[start..].trim_end_matches('"').replace("\\\"", "\"");
            return serde_json::from_str(&text).ok();
        }
    }
    None
}

/// §7.12: DELETE answers with a Status for most kinds and the object for some; server dry
/// runs change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item12_delete_response_shapes_and_dry_run() {
    let env = common::start().await;
    env.kubectl_ok(&["create", "cm", "x"]).await;
    env.kubectl_ok(&["create", "sa", "x"]).await;
    let rv = env
        .kubectl_ok(&[
            "get",
            "cm",
            "x",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .await;
    let out = env
        .kubectl_ok(&["delete", "cm", "x", "--dry-run=server"])
        .await;
    assert!(
        out.contains("configmap \"x\" deleted") && out.contains("(server dry run)"),
        "{out}"
    );
    let after = env
        .kubectl_ok(&[
            "get",
            "cm",
            "x",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .await;
    assert_eq!(rv, after, "a dry run changes nothing");

    let cm = env.kubectl(&["delete", "cm", "x", "-v=9"]).await;
    assert!(cm.status.success());
    let body = response_body(&stderr(&cm), "DELETE").expect("DELETE response logged");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["status"], "Success");
    assert_eq!(body["details"]["kind"], "configmaps");
    assert_eq!(body["details"]["name"], "x");
    let sa = env.kubectl(&["delete", "sa", "x", "-v=9"]).await;
    assert!(sa.status.success());
    let body = response_body(&stderr(&sa), "DELETE").expect("DELETE response logged");
    assert_eq!(body["kind"], "ServiceAccount", "{body}");
    assert_eq!(body["metadata"]["name"], "x");
    env.cluster.shutdown().await;
}

fn b64url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap_or_default()
}

/// §7.13: TokenRequest and TokenReview as Vault's Kubernetes auth uses them, and the OIDC
/// discovery documents whose keys verify the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item13_token_request_and_review() {
    let env = with_namespace("team-a").await;
    env.kubectl_ok(&["create", "sa", "vault-auth", "-n", "team-a"])
        .await;
    let uid = env
        .kubectl_ok(&[
            "get",
            "sa",
            "vault-auth",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .await;
    let token = env
        .kubectl_ok(&[
            "create",
            "token",
            "vault-auth",
            "-n",
            "team-a",
            "--audience=vault",
        ])
        .await;
    let token = token.trim().to_string();
    let review = |token: &str| {
        format!(
            "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n  audiences: [vault]\n"
        )
    };
    // Default (strict) validation: kubectl consults /openapi/v2 for this kind.
    let f = env.write("review.yaml", &review(&token));
    let out: Value =
        serde_json::from_str(&env.kubectl_ok(&["create", "-f", &f, "-o", "json"]).await)
            .expect("json");
    assert_eq!(out["status"]["authenticated"], true, "{out}");
    assert_eq!(
        out["status"]["user"]["username"],
        "system:serviceaccount:team-a:vault-auth"
    );
    assert_eq!(out["status"]["user"]["uid"], uid.as_str());
    assert_eq!(out["status"]["audiences"], serde_json::json!(["vault"]));

    // The issuer's discovery document and keys verify the token's signature.
    let oidc: Value = serde_json::from_str(
        &env.kubectl_ok(&["get", "--raw", "/.well-known/openid-configuration"])
            .await,
    )
    .expect("json");
    assert!(
        oidc["jwks_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://127.0.0.1:") && u.ends_with("/openid/v1/jwks")),
        "{oidc}"
    );
    let jwks: Value =
        serde_json::from_str(&env.kubectl_ok(&["get", "--raw", "/openid/v1/jwks"]).await)
            .expect("json");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&b64url(parts[0])).expect("header");
    let claims: Value = serde_json::from_slice(&b64url(parts[1])).expect("claims");
    assert_eq!(claims["iss"], oidc["issuer"]);
    assert_eq!(claims["aud"], serde_json::json!(["vault"]));
    let key = jwks["keys"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["kid"] == header["kid"]))
        .expect("the token's key is published");
    let mut point = vec![4u8];
    point.extend(b64url(key["x"].as_str().unwrap_or_default()));
    point.extend(b64url(key["y"].as_str().unwrap_or_default()));
    let signed = format!("{}.{}", parts[0], parts[1]);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(signed.as_bytes(), &b64url(parts[2]))
        .expect("signature verifies with the published key");

    // A recreated service account has a new uid: the old token no longer authenticates.
    env.kubectl_ok(&["delete", "sa", "vault-auth", "-n", "team-a"])
        .await;
    env.kubectl_ok(&["create", "sa", "vault-auth", "-n", "team-a"])
        .await;
    let out: Value =
        serde_json::from_str(&env.kubectl_ok(&["create", "-f", &f, "-o", "json"]).await)
            .expect("json");
    assert_ne!(out["status"]["authenticated"], true, "{out}");
    assert!(
        out["status"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{out}"
    );
    env.cluster.shutdown().await;
}

/// §7.14: HTTP-level details: discovery content types, trailing `?`, authentication before
/// routing, and what kubectl does with credentials over plain http.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item14_http_details() {
    let env = common::start().await;
    let out = env.kubectl(&["api-resources", "-v=8"]).await;
    assert!(out.status.success());
    let log = stderr(&out);
    assert!(
        log.contains("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
        "aggregated discovery content type: {log}"
    );
    let ns: Value = serde_json::from_str(
        &env.kubectl_ok(&["get", "--raw", "/api/v1/namespaces/default?"])
            .await,
    )
    .expect("json");
    assert_eq!(ns["metadata"]["name"], "default");
    // Admin: an unknown path is a 404; a stranger's token is a 401 before any routing.
    let out = env
        .kubectl(&["get", "--raw", "/apis/nope.example.com/v1/things"])
        .await;
    stderr_has(&out, "the server could not find the requested resource");
    let out = env
        .kubectl(&[
            "get",
            "--raw",
            "/apis/nope.example.com/v1/things",
            "--token=not-a-token",
        ])
        .await;
    stderr_has(&out, "Unauthorized");
    env.kubectl_ok(&["create", "sa", "nobody"]).await;
    let out = env
        .kubectl(&[
            "get",
            "--raw",
            "/apis/nope.example.com/v1/things",
            "--as=system:serviceaccount:default:nobody",
        ])
        .await;
    stderr_has(
        &out,
        "things.nope.example.com is forbidden: User \"system:serviceaccount:default:nobody\" cannot list resource \"things\" in API group \"nope.example.com\" at the cluster scope",
    );
    let out = env
        .kubectl(&[
            "get",
            "--raw",
            "/nowhere",
            "--as=system:serviceaccount:default:nobody",
        ])
        .await;
    stderr_has(&out, "cannot get path \"/nowhere\"");
    env.cluster.shutdown().await;

    // Over plain http kubectl leaves the token out: the request is anonymous (403 with
    // anonymous access on, 401 without), never the admin.
    for anonymous in [true, false] {
        let env = common::start_with(devcluster::Config {
            tls: false,
            anonymous,
            ..Default::default()
        })
        .await;
        let out = env
            .kubectl(&["get", "--raw", "/api/v1/namespaces/default/configmaps"])
            .await;
        let err = stderr(&out);
        if anonymous {
            assert!(
                err.contains("User \"system:anonymous\" cannot list resource \"configmaps\""),
                "{err}"
            );
            env.kubectl_ok(&["version"]).await;
        } else {
            assert!(err.contains("Unauthorized"), "{err}");
        }
        env.cluster.shutdown().await;
    }
}
