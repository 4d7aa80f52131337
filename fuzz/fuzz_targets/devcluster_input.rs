//! The devcluster's parsers of request input: protobuf bodies, label and field selectors,
//! JSON/merge/strategic patches, server-side apply, custom resource schemas (pruning,
//! defaulting, validation) and built-in defaulting. The first byte picks the parser (modulo 9)
//! and the kind (its high bits); the rest is the input (two JSON documents are split at the
//! first 0xFF byte). Beyond "no panic" it checks properties: re-applying the same body as the
//! same manager is a no-op, FieldsV1 round-trips, pruning and defaulting are idempotent, a JSON
//! patch grows a document by at most its own size plus the copy limit, and a binding that
//! passes roleRef validation names a role of the RBAC group.
#![no_main]

use devcluster::resources::Registry;
use devcluster::selector::{FieldSelector, LabelSelector};
use devcluster::{auth, defaults, patch, protobuf, rbac, schema, ssa};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn two_docs(data: &[u8]) -> Option<(Value, Value)> {
    let cut = data.iter().position(|&b| b == 0xFF)?;
    let a = serde_json::from_slice(&data[..cut]).ok()?;
    let b = serde_json::from_slice(&data[cut + 1..]).ok()?;
    Some((a, b))
}

const KINDS: [(&str, &str, &str); 5] = [
    ("", "v1", "ConfigMap"),
    ("apps", "apps/v1", "Deployment"),
    ("", "v1", "Service"),
    (
        "rbac.authorization.k8s.io",
        "rbac.authorization.k8s.io/v1",
        "Role",
    ),
    (
        "rbac.authorization.k8s.io",
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
    ),
];

fn request<'a>(
    live: Option<&'a Value>,
    applied: &'a Value,
    api_version: &'a str,
    kind: &'a str,
    schema: &'a dyn ssa::Schema,
) -> ssa::ApplyRequest<'a> {
    ssa::ApplyRequest {
        live,
        applied,
        manager: "fuzz",
        api_version,
        kind,
        force: false,
        subresource: None,
        status_subresource: !matches!(kind, "ConfigMap" | "Role" | "RoleBinding"),
        now: "2026-11-26T06:32:38Z",
        schema,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (group, api_version, kind) = KINDS[usize::from(mode >> 4) % KINDS.len()];
    match mode % 9 {
        0 => {
            let _ = protobuf::decode(rest);
        }
        1 => {
            let _ = auth::decode_k8s_protobuf(rest);
        }
        2 => {
            if let Ok(sel) = LabelSelector::parse(&text) {
                let _ = sel.matches(&serde_json::json!({"metadata": {"labels": {"a": "b"}}}));
            }
        }
        3 => {
            let g = if mode & 0x80 != 0 {
                "events.k8s.io"
            } else {
                ""
            };
            let _ = FieldSelector::parse_for(&text, g, "Event");
            let _ = FieldSelector::parse(&text, kind);
        }
        4 => {
            if let Some((doc, p)) = two_docs(rest) {
                let schema = ssa::builtin_schema(group, kind);
                if let Ok(out) = patch::json_patch_limited(&doc, &p, 4096) {
                    let (before, after) = (patch::json_size(&doc), patch::json_size(&out));
                    assert!(
                        after <= before + patch::json_size(&p) + 4096,
                        "a JSON patch grew {before} bytes to {after}"
                    );
                }
                let _ = patch::merge_patch(&doc, &p);
                let _ = patch::strategic_merge_patch(&doc, &p, schema.as_ref());
            }
        }
        5 => {
            let Some((live, applied)) = two_docs(rest) else {
                return;
            };
            let schema = ssa::builtin_schema(group, kind);
            let req = |live| request(live, &applied, api_version, kind, schema.as_ref());
            let live = live.is_object().then_some(&live);
            if let Ok(once) = ssa::apply(req(live)) {
                // The same body again by the same manager: no conflict, same object.
                match ssa::apply(req(Some(&once))) {
                    Ok(twice) => assert!(
                        ssa::managed_fields_equal_ignoring_time(&once, &twice),
                        "re-applying changed the object:\n{once}\n{twice}"
                    ),
                    Err(e) => panic!("re-applying failed: {:?}", e.status()),
                }
            }
        }
        6 => {
            // A CRD schema and an object: prune, default, validate; pruning is idempotent.
            let Some((sch, mut obj)) = two_docs(rest) else {
                return;
            };
            schema::prune(&mut obj, &sch);
            assert!(
                schema::prune(&mut obj.clone(), &sch).is_empty(),
                "pruning twice removed more: {obj}"
            );
            schema::apply_defaults(&mut obj, &sch);
            let _ = schema::validate(&obj, &sch);
            let _ = schema::undeclared_for_apply(&obj, &sch);
        }
        7 => {
            // Built-in defaulting is idempotent.
            let plural = match kind {
                "ConfigMap" => "configmaps",
                "Deployment" => "deployments",
                "Service" => "services",
                "RoleBinding" => "rolebindings",
                _ => "roles",
            };
            let version = api_version.rsplit('/').next().unwrap_or("v1");
            let (Some(def), Ok(mut obj)) = (
                Registry::new().find(group, version, plural),
                serde_json::from_slice::<Value>(rest),
            ) else {
                return;
            };
            defaults::apply_defaults(&def, &mut obj);
            let once = obj.clone();
            defaults::apply_defaults(&def, &mut obj);
            assert!(once == obj, "defaulting twice changed the object: {once}");
            for binding in ["RoleBinding", "ClusterRoleBinding"] {
                if rbac::validate_role_ref(binding, &obj).is_ok() {
                    assert!(
                        obj["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
                            && matches!(
                                obj["roleRef"]["kind"].as_str(),
                                Some("Role" | "ClusterRole")
                            ),
                        "{binding} roleRef passed validation: {obj}"
                    );
                }
            }
        }
        _ => {
            if let Ok(v) = serde_json::from_slice::<Value>(rest) {
                let set = ssa::parse_fields_v1(&v);
                let again = ssa::parse_fields_v1(&ssa::fields_v1(&set));
                assert!(set == again, "FieldsV1 does not round-trip: {v}");
            }
        }
    }
});
