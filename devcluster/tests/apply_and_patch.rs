//! Server-side apply, managedFields bookkeeping, the patch types and fieldValidation, driven by
//! the real kubectl and kube-rs.

mod common;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

fn cm_manifest(manager_note: &str, data: &[(&str, &str)]) -> String {
    let mut s = format!(
        "# {manager_note}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\n  namespace: default\ndata:\n"
    );
    for (k, v) in data {
        s.push_str(&format!("  {k}: \"{v}\"\n"));
    }
    s
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
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
      - name: sidecar
        image: busybox:1.36
"#;

async fn get_json(env: &common::Env, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&env.kubectl_ok(&a).await).unwrap_or(Value::Null)
}

/// The managedFields entry of `manager` with `operation`.
fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_conflict_force_and_field_removal() {
    let env = common::start().await;

    // Create by apply under another manager.
    let other = env.write("other.yaml", &cm_manifest("other", &[("a", "1")]));
    let out = env
        .kubectl_ok(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            &other,
        ])
        .await;
    assert!(out.contains("configmap/cm1 serverside-applied"), "{out}");

    // The default manager changes a field owned by "other": conflict, nothing changes.
    let mine = env.write("mine.yaml", &cm_manifest("mine", &[("a", "9"), ("c", "3")]));
    let failed = env.kubectl(&["apply", "--server-side", "-f", &mine]).await;
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "conflict must fail: {stderr}");
    assert!(
        stderr.contains(r#"Apply failed with 1 conflict: conflict with "other": .data.a"#),
        "{stderr}"
    );
    assert!(stderr.contains("--force-conflicts"), "{stderr}");
    let cm = get_json(&env, &["cm", "cm1"]).await;
    assert_eq!(cm["data"], json!({"a": "1"}));

    // With --force-conflicts the value and its ownership move to kubectl.
    env.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", &mine])
        .await;
    let cm = get_json(&env, &["cm", "cm1"]).await;
    assert_eq!(cm["data"], json!({"a": "9", "c": "3"}));
    let kubectl = entry(&cm, "kubectl", "Apply")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(kubectl["apiVersion"], "v1", "{cm}");
    assert_eq!(kubectl["fieldsType"], "FieldsV1");
    assert!(
        kubectl["fieldsV1"]["f:data"]["f:a"].is_object()
            && kubectl["fieldsV1"]["f:data"]["f:c"].is_object(),
        "{cm}"
    );
    // "other" lost its only field, so its entry is gone.
    assert!(entry(&cm, "other", "Apply").is_none(), "{cm}");

    // A field the manager stops applying (and nobody else owns) is removed.
    let fewer = env.write("fewer.yaml", &cm_manifest("fewer", &[("a", "9")]));
    let rv_before = cm["metadata"]["resourceVersion"].clone();
    env.kubectl_ok(&["apply", "--server-side", "-f", &fewer])
        .await;
    let cm = get_json(&env, &["cm", "cm1"]).await;
    assert_eq!(cm["data"], json!({"a": "9"}));
    assert_ne!(cm["metadata"]["resourceVersion"], rv_before);
    let kubectl = entry(&cm, "kubectl", "Apply")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(kubectl["fieldsV1"]["f:data"].get("f:c").is_none(), "{cm}");

    // A field shared with another manager survives when one of them drops it.
    let shared = env.write("shared.yaml", &cm_manifest("shared", &[("a", "9")]));
    env.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        &shared,
    ])
    .await;
    let none = env.write(
        "none.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\n  namespace: default\n",
    );
    env.kubectl_ok(&["apply", "--server-side", "-f", &none])
        .await;
    let cm = get_json(&env, &["cm", "cm1"]).await;
    assert_eq!(cm["data"], json!({"a": "9"}), "{cm}");
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_patch_types_and_label_keep_managed_fields() {
    let env = common::start().await;
    let f = env.write("web.yaml", DEPLOYMENT);
    let out = env.kubectl_ok(&["apply", "--server-side", "-f", &f]).await;
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );

    // Strategic merge: the container list merges by name, the sidecar stays.
    env.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#,
    ])
    .await;
    let dep = get_json(&env, &["deploy", "web"]).await;
    let containers = &dep["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(2), "{dep}");
    assert_eq!(containers[0]["name"], "nginx");
    assert_eq!(containers[0]["image"], "nginx:1.27");
    assert_eq!(containers[1]["image"], "busybox:1.36");
    assert_eq!(dep["metadata"]["generation"], 2);
    let patcher = entry(&dep, "kubectl-patch", "Update")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(patcher["apiVersion"], "apps/v1");
    assert!(
        patcher
            .pointer("/fieldsV1/f:spec/f:template/f:spec/f:containers")
            .and_then(|c| c.get(r#"k:{"name":"nginx"}"#))
            .and_then(|c| c.get("f:image"))
            .is_some(),
        "{dep}"
    );

    // Re-applying the old image now conflicts with the patcher.
    let failed = env.kubectl(&["apply", "--server-side", "-f", &f]).await;
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        stderr.contains(r#"conflict with "kubectl-patch" using apps/v1: .spec.template.spec.containers[name="nginx"].image"#),
        "{stderr}"
    );

    // JSON patch.
    env.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ])
    .await;
    let dep = get_json(&env, &["deploy", "web"]).await;
    assert_eq!(dep["spec"]["replicas"], 3);
    // A failing JSON patch operation changes nothing.
    let bad = env
        .kubectl(&[
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/nope"}]"#,
        ])
        .await;
    assert!(!bad.status.success());

    // kubectl label: a merge patch recorded under kubectl-label.
    env.kubectl_ok(&["label", "deploy", "web", "tier=fe"]).await;
    let dep = get_json(&env, &["deploy", "web"]).await;
    assert_eq!(dep["metadata"]["labels"]["tier"], "fe");
    let labeler = entry(&dep, "kubectl-label", "Update")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        labeler
            .pointer("/fieldsV1/f:metadata/f:labels/f:tier")
            .is_some(),
        "{dep}"
    );
    // The applier still owns what nobody took from it.
    let applier = entry(&dep, "kubectl", "Apply")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        applier
            .pointer("/fieldsV1/f:metadata/f:labels/f:app")
            .is_some(),
        "{dep}"
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_field_validation_strict_and_warn() {
    let env = common::start().await;
    let bad = env.write(
        "bad.yaml",
        &DEPLOYMENT.replace("  replicas: 1\n", "  replicas: 1\n  foo: bar\n"),
    );
    // kubectl create validates strictly on the server by default.
    let out = env.kubectl(&["create", "-f", &bad]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"strict decoding error: unknown field "spec.foo""#),
        "{stderr}"
    );
    // Warn: created, with the warning printed by kubectl.
    let out = env
        .kubectl(&["create", "--validate=warn", "-f", &bad])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(r#"unknown field "spec.foo""#), "{stderr}");
    // Normal manifests pass strict validation on every write path.
    let good = env.write(
        "good.yaml",
        &DEPLOYMENT.replace("name: web\n  namespace", "name: web2\n  namespace"),
    );
    env.kubectl_ok(&["create", "-f", &good]).await;
    env.kubectl_ok(&["replace", "-f", &good]).await;
    env.cluster.shutdown().await;
}

fn cm(data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ssa", "namespace": "default"},
        "data": data
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_apply_managed_fields_noop_and_conflict() {
    let env = common::start().await;
    let client = env.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let pp = PatchParams::apply("lockstep").force();

    let first = cms
        .patch("ssa", &pp, &Patch::Apply(cm(json!({"k": "v"}))))
        .await
        .expect("create by apply");
    let mf = first.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!(mf.len(), 1, "{mf:?}");
    assert_eq!(mf[0].manager.as_deref(), Some("lockstep"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    assert_eq!(mf[0].api_version.as_deref(), Some("v1"));
    let rv = first.metadata.resource_version.clone();
    assert!(rv.is_some());

    // Re-applying the same configuration is a no-op: same RV and managedFields time.
    let again = cms
        .patch("ssa", &pp, &Patch::Apply(cm(json!({"k": "v"}))))
        .await
        .expect("re-apply");
    assert_eq!(again.metadata.resource_version, rv);
    let mf2 = again.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!(mf2.len(), 1);
    assert_eq!(mf2[0].time, mf[0].time);

    // A second manager changing the same field without force: 409 Conflict.
    let err = cms
        .patch(
            "ssa",
            &PatchParams::apply("intruder"),
            &Patch::Apply(cm(json!({"k": "other"}))),
        )
        .await
        .expect_err("conflict");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.reason, "Conflict");
            assert_eq!(s.code, 409);
            assert!(
                s.message
                    .contains(r#"Apply failed with 1 conflict: conflict with "lockstep": .data.k"#),
                "{}",
                s.message
            );
            let causes = s.details.map(|d| d.causes).unwrap_or_default();
            assert_eq!(causes.len(), 1);
            assert_eq!(causes[0].reason, "FieldManagerConflict");
            assert_eq!(causes[0].field, ".data.k");
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    let now = cms.get("ssa").await.expect("get");
    assert_eq!(now.metadata.resource_version, rv);

    // Equal values never conflict: ownership becomes shared.
    let shared = cms
        .patch(
            "ssa",
            &PatchParams::apply("intruder"),
            &Patch::Apply(cm(json!({"k": "v"}))),
        )
        .await
        .expect("shared apply");
    let managers: Vec<String> = shared
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.manager)
        .collect();
    assert!(
        managers.contains(&"lockstep".to_string()) && managers.contains(&"intruder".to_string()),
        "{managers:?}"
    );

    // A merge patch by a named manager is recorded as an Update.
    let patched = cms
        .patch(
            "ssa",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"extra": "1"}})),
        )
        .await
        .expect("merge patch");
    assert!(
        patched
            .metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .any(|e| e.operation.as_deref() == Some("Update"))
    );
    env.cluster.shutdown().await;
}
