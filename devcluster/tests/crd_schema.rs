//! Custom resources follow their CRD's structural schema (spec §5.6, §7 items 6 and 7):
//! pruning with fieldValidation, defaulting and validation, checked with the real kubectl and
//! with kube-rs.

mod common;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::core::params::ValidationDirective;
use serde_json::{Value, json};

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              mode: {type: string, enum: [fast, slow], default: fast}
              extra:
                type: object
                x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            properties:
              phase: {type: string, enum: [Pending, Ready]}
"#;

fn gadget(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

/// A spec with an undeclared field (`foo`) next to a free-form subtree (`extra`).
const SPEC_WITH_UNKNOWN: &str =
    "  size: 2\n  foo: bar\n  extra:\n    anything:\n      goes: true\n";

async fn env_with_crd() -> common::Env {
    let env = common::start().await;
    let crd = env.write("crd.yaml", CRD);
    env.kubectl_ok(&["apply", "--server-side", "-f", &crd])
        .await;
    env
}

async fn get_json(env: &common::Env, name: &str) -> Value {
    let text = env.kubectl_ok(&["get", "gadget", name, "-o", "json"]).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl json: {e}: {text}"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_refuses_undeclared_fields_of_a_custom_resource() {
    let env = env_with_crd().await;
    let bad = env.write("bad.yaml", &gadget("g1", SPEC_WITH_UNKNOWN));
    // kube-apiserver's typed apply refuses the field whatever fieldValidation says; nothing
    // is stored.
    for validate in ["--validate=strict", "--validate=warn", "--validate=false"] {
        let out = env
            .kubectl(&["apply", "--server-side", validate, "-f", &bad])
            .await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{validate}: {err}");
        assert!(
            err.contains(
                "failed to create typed patch object (default/g1; example.com/v1, Kind=Gadget): .spec.foo: field not declared in schema"
            ),
            "{validate}: {err}"
        );
        let get = env.kubectl(&["get", "gadget", "g1"]).await;
        assert!(
            stderr(&get).contains(r#"gadgets.example.com "g1" not found"#),
            "{validate}: {}",
            stderr(&get)
        );
    }

    // Without the undeclared field: created, the default filled in (and not owned by the
    // applier), the free-form subtree kept.
    let good = env.write(
        "good.yaml",
        &gadget(
            "g1",
            "  size: 2\n  extra:\n    anything:\n      goes: true\n",
        ),
    );
    let out = env.kubectl(&["apply", "--server-side", "-f", &good]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Warning"), "{}", stderr(&out));
    let obj = get_json(&env, "g1").await;
    assert_eq!(obj["spec"]["mode"], "fast");
    assert_eq!(obj["spec"]["extra"], json!({"anything": {"goes": true}}));
    let mf = env
        .kubectl_ok(&[
            "get",
            "gadget",
            "g1",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[0].fieldsV1}",
        ])
        .await;
    assert!(mf.contains("f:size"), "{mf}");
    assert!(!mf.contains("f:mode"), "{mf}");

    // A schema violation through apply is a 422 naming the group kind; the object is unchanged.
    let small = env.write("small.yaml", &gadget("g1", "  size: 0\n"));
    let out = env.kubectl(&["apply", "--server-side", "-f", &small]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        ),
        "{err}"
    );
    assert_eq!(get_json(&env, "g1").await["spec"]["size"], 2);
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_prunes_warns_or_rejects_unknown_custom_resource_fields() {
    let env = env_with_crd().await;

    // Strict (kubectl's default): the decoding error, nothing stored.
    let strict = env.write("strict.yaml", &gadget("g-strict", SPEC_WITH_UNKNOWN));
    let out = env
        .kubectl(&["create", "--validate=strict", "-f", &strict])
        .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            r#"Gadget in version "v1" cannot be handled as a Gadget: strict decoding error: unknown field "spec.foo""#
        ),
        "{err}"
    );
    assert!(
        !env.kubectl(&["get", "gadget", "g-strict"])
            .await
            .status
            .success()
    );

    // Warn: created without the field, kubectl prints the server's warning.
    let warn = env.write("warn.yaml", &gadget("g-warn", SPEC_WITH_UNKNOWN));
    let out = env
        .kubectl(&["create", "--validate=warn", "-f", &warn])
        .await;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(r#"Warning: unknown field "spec.foo""#),
        "{err}"
    );
    let obj = get_json(&env, "g-warn").await;
    assert!(obj["spec"].get("foo").is_none(), "{obj}");
    assert_eq!(obj["spec"]["extra"], json!({"anything": {"goes": true}}));
    assert_eq!(obj["spec"]["mode"], "fast");

    // Ignore: created without the field, silently.
    let ignore = env.write("ignore.yaml", &gadget("g-ignore", SPEC_WITH_UNKNOWN));
    let out = env
        .kubectl(&["create", "--validate=false", "-f", &ignore])
        .await;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("Warning"), "{err}");
    let obj = get_json(&env, "g-ignore").await;
    assert!(obj["spec"].get("foo").is_none(), "{obj}");

    // Schema violations: 422 with one cause each, also on a server dry run.
    let invalid = env.write(
        "invalid.yaml",
        &gadget("g-bad", "  size: \"two\"\n  mode: medium\n"),
    );
    for extra in [None, Some("--dry-run=server")] {
        let mut args = vec!["create", "-f", &invalid];
        args.extend(extra);
        let out = env.kubectl(&args).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(r#"The Gadget "g-bad" is invalid"#), "{err}");
        assert!(
            err.contains(
                r#"spec.size: Invalid value: "string": spec.size in body must be of type integer: "string""#
            ),
            "{err}"
        );
        assert!(
            err.contains(
                r#"spec.mode: Unsupported value: "medium": supported values: "fast", "slow""#
            ),
            "{err}"
        );
    }
    let missing = env.write("missing.yaml", &gadget("g-missing", "  mode: slow\n"));
    let out = env.kubectl(&["create", "-f", &missing]).await;
    assert!(
        stderr(&out).contains("spec.size: Required value"),
        "{}",
        stderr(&out)
    );
    for name in ["g-bad", "g-missing"] {
        assert!(!env.kubectl(&["get", "gadget", name]).await.status.success());
    }

    // The status subresource validates status.
    let out = env
        .kubectl(&[
            "patch",
            "gadget",
            "g-warn",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Lost"}}"#,
        ])
        .await;
    assert!(
        stderr(&out).contains(
            r#"status.phase: Unsupported value: "Lost": supported values: "Pending", "Ready""#
        ),
        "{}",
        stderr(&out)
    );
    env.kubectl_ok(&[
        "patch",
        "gadget",
        "g-warn",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Ready"}}"#,
    ])
    .await;
    assert_eq!(get_json(&env, "g-warn").await["status"]["phase"], "Ready");
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_patches_of_a_custom_resource_are_pruned_and_validated() {
    let env = env_with_crd().await;
    let client = env.client().await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Gadget"));
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    let created = api
        .patch(
            "k1",
            &PatchParams::apply("engine"),
            &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Gadget",
                "metadata": {"name": "k1"}, "spec": {"size": 3}})),
        )
        .await
        .expect("create by apply");
    assert_eq!(created.data["spec"], json!({"size": 3, "mode": "fast"}));

    let with = |v: ValidationDirective| PatchParams {
        field_validation: Some(v),
        ..PatchParams::default()
    };
    let unknown = Patch::Merge(json!({"spec": {"bogus": 1, "size": 4}}));
    let err = api
        .patch("k1", &with(ValidationDirective::Strict), &unknown)
        .await
        .expect_err("strict refuses the unknown field");
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err:?}");
    };
    assert_eq!(status.code, 400);
    assert_eq!(status.reason, "BadRequest");
    assert_eq!(
        status.message,
        r#"strict decoding error: unknown field "spec.bogus""#
    );
    assert_eq!(api.get("k1").await.expect("get").data["spec"]["size"], 3);

    let patched = api
        .patch("k1", &with(ValidationDirective::Warn), &unknown)
        .await
        .expect("warn prunes");
    assert_eq!(patched.data["spec"], json!({"size": 4, "mode": "fast"}));

    let err = api
        .patch(
            "k1",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(
                    json!([{"op": "replace", "path": "/spec/size", "value": 0}]),
                )
                .expect("json patch"),
            ),
        )
        .await
        .expect_err("minimum enforced");
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err:?}");
    };
    assert_eq!(status.code, 422);
    assert_eq!(status.reason, "Invalid");
    assert_eq!(
        status.message,
        r#"Gadget.example.com "k1" is invalid: spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"#
    );
    let causes = status.details.map(|d| d.causes).unwrap_or_default();
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].reason, "FieldValueInvalid");
    assert_eq!(causes[0].field, "spec.size");

    // Apply of an undeclared field: kube-apiserver's 500 from the typed conversion.
    let err = api
        .patch(
            "k1",
            &PatchParams::apply("engine"),
            &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Gadget",
                "metadata": {"name": "k1"}, "spec": {"size": 3, "foo": 1, "bar": 2}})),
        )
        .await
        .expect_err("undeclared fields");
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err:?}");
    };
    assert_eq!(status.code, 500);
    assert_eq!(
        status.message,
        "failed to create typed patch object (default/k1; example.com/v1, Kind=Gadget): errors:\n  .spec.foo: field not declared in schema\n  .spec.bar: field not declared in schema"
    );
    env.cluster.shutdown().await;
}
