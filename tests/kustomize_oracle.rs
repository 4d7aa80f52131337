//! lockstep's kustomize builds against the real kustomize (`kubectl kustomize`, v5.8.1 in
//! `.tools/`): the same objects, compared parsed, in the same order.

use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep::kustomize::{self, BuildOptions};
use serde_json::Value;

fn kubectl() -> PathBuf {
    let local = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bin/kubectl"));
    assert!(
        local.exists(),
        "kubectl 1.37 is required at {}; run scripts/install-test-tools",
        local.display()
    );
    local
}

fn corpus() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kustomize"))
}

/// `kubectl kustomize DIR` as parsed objects, or its error text.
pub fn oracle(dir: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let docs = lockstep::manifest::parse_strict(&out.stdout).expect("oracle output parses");
    Ok(docs
        .iter()
        .filter(|d| !lockstep::manifest::is_empty_doc(d))
        .map(kustomize::node_to_value)
        .collect())
}

pub fn ours(dir: &Path, root: &Path) -> Result<Vec<Value>, String> {
    let opts = BuildOptions {
        root,
        limits: Default::default(),
        sops: None,
    };
    kustomize::build(dir, &opts)
        .map(|b| b.values_for_comparison())
        .map_err(|e| e.to_string())
}

fn assert_same(dir: &Path) {
    let want = oracle(dir).unwrap_or_else(|e| panic!("oracle fails on {}: {e}", dir.display()));
    let got =
        ours(dir, &corpus()).unwrap_or_else(|e| panic!("lockstep fails on {}: {e}", dir.display()));
    let ids = |v: &[Value]| {
        v.iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&got),
        ids(&want),
        "{}: objects or order differ",
        dir.display()
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            g,
            w,
            "{}: {} differs:\nours:   {}\nkustomize: {}",
            dir.display(),
            ids(std::slice::from_ref(w))[0],
            serde_json::to_string(g).unwrap_or_default(),
            serde_json::to_string(w).unwrap_or_default()
        );
    }
}

#[test]
fn corpus_builds_like_kustomize() {
    let mut dirs = Vec::new();
    for case in [
        "basic",
        "overlays/base",
        "overlays/dev",
        "overlays/prod",
        "refs",
        "refs-namespace",
        "crds",
        "crds-overlay",
        "label-fields",
    ] {
        dirs.push(corpus().join(case));
    }
    for d in dirs {
        assert_same(&d);
    }
}

mod random {
    use super::*;
    use proptest::prelude::*;

    const BASE_RESOURCES: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {tier: fe}}
spec:
  replicas: 1
  template:
    spec:
      serviceAccountName: sa
      volumes: [{name: v, configMap: {name: cfg}}, {name: s, secret: {secretName: sec}}]
      containers:
      - name: c
        image: nginx:1.0
        envFrom: [{configMapRef: {name: cfg}}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa}
---
apiVersion: v1
kind: Service
metadata: {name: svc, labels: {tier: be}}
spec: {ports: [{port: 80}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rb}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: sa}]
";

    #[derive(Debug, Clone)]
    struct Layer {
        namespace: Option<&'static str>,
        prefix: Option<&'static str>,
        suffix: Option<&'static str>,
        common_labels: bool,
        labels_selectors: Option<bool>,
        annotations: bool,
        image: Option<u8>,
        replicas: Option<u8>,
        cm: Option<(bool, bool)>,
        secret: bool,
        patch: Option<u8>,
    }

    fn layer() -> impl Strategy<Value = Layer> {
        (
            prop::option::of(prop::sample::select(vec!["ns-a", "ns-b"])),
            prop::option::of(prop::sample::select(vec!["p1-", "x-"])),
            prop::option::of(prop::sample::select(vec!["-s1", "-z"])),
            any::<bool>(),
            prop::option::of(any::<bool>()),
            any::<bool>(),
            prop::option::of(0u8..3),
            prop::option::of(0u8..9),
            prop::option::of((any::<bool>(), any::<bool>())),
            any::<bool>(),
            prop::option::of(0u8..3),
        )
            .prop_map(
                |(
                    namespace,
                    prefix,
                    suffix,
                    common_labels,
                    labels_selectors,
                    annotations,
                    image,
                    replicas,
                    cm,
                    secret,
                    patch,
                )| Layer {
                    namespace,
                    prefix,
                    suffix,
                    common_labels,
                    labels_selectors,
                    annotations,
                    image,
                    replicas,
                    cm,
                    secret,
                    patch,
                },
            )
    }

    /// A kustomization for one layer; `base_has` tells which generated names exist below.
    fn render_layer(l: &Layer, resources: &str, below: bool) -> String {
        let mut k = format!("resources: [{resources}]\n");
        if let Some(ns) = l.namespace {
            k += &format!("namespace: {ns}\n");
        }
        if let Some(p) = l.prefix {
            k += &format!("namePrefix: {p}\n");
        }
        if let Some(s) = l.suffix {
            k += &format!("nameSuffix: {s}\n");
        }
        if l.common_labels {
            k += "commonLabels: {app: demo}\n";
        }
        if let Some(sel) = l.labels_selectors {
            k += &format!("labels:\n- pairs: {{team: t1}}\n  includeSelectors: {sel}\n");
        }
        if l.annotations {
            k += "commonAnnotations: {note: \"a <b> & c\"}\n";
        }
        if let Some(i) = l.image {
            k += match i {
                0 => "images: [{name: nginx, newTag: \"2.0\"}]\n",
                1 => "images: [{name: nginx, newName: reg.example/nginx}]\n",
                _ => {
                    "images: [{name: nginx, digest: \"sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\"}]\n"
                }
            };
        }
        if let Some(r) = l.replicas {
            k += &format!("replicas: [{{name: web, count: {r}}}]\n");
        }
        if let Some((merge, nohash)) = l.cm {
            let behavior = if merge && below { "merge" } else { "create" };
            let name = if behavior == "create" && below {
                "cfg2"
            } else {
                "cfg"
            };
            k += &format!(
                "configMapGenerator:\n- name: {name}\n  behavior: {behavior}\n  literals: [K{}=v, \"Q=<&>\"]\n  options: {{disableNameSuffixHash: {nohash}}}\n",
                resources.len()
            );
        }
        if l.secret {
            let behavior = if below { "replace" } else { "create" };
            k += &format!(
                "secretGenerator:\n- name: sec\n  behavior: {behavior}\n  literals: [PW=pw{}]\n",
                resources.len()
            );
        }
        if let Some(p) = l.patch {
            k += match p {
                0 => {
                    "patches:\n- target: {labelSelector: \"tier=fe\"}\n  patch: |-\n    - op: add\n      path: /metadata/annotations\n      value: {patched: \"yes\"}\n"
                }
                1 => {
                    "patches:\n- target: {kind: Deploy.*}\n  patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: any}\n    spec:\n      template:\n        spec:\n          containers:\n          - name: c\n            args: [run]\n"
                }
                _ => {
                    "patches:\n- patch: |-\n    apiVersion: v1\n    kind: Service\n    metadata: {name: svc}\n    spec:\n      ports:\n      - port: 80\n        targetPort: 8080\n"
                }
            };
        }
        k
    }

    fn base_layer(l: &Layer) -> String {
        let mut k = render_layer(l, "r.yaml", false);
        if l.cm.is_none() {
            k += "configMapGenerator:\n- name: cfg\n  literals: [A=1]\n";
        }
        if !l.secret {
            k += "secretGenerator:\n- name: sec\n  literals: [PW=base]\n";
        }
        k
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn random_feature_combinations_build_like_kustomize(base in layer(), overlay in layer()) {
            let tmp = tempfile::tempdir().expect("tempdir");
            let root = tmp.path();
            std::fs::create_dir_all(root.join("base")).expect("mkdir");
            std::fs::create_dir_all(root.join("overlay")).expect("mkdir");
            std::fs::write(root.join("base/r.yaml"), BASE_RESOURCES).expect("write");
            std::fs::write(root.join("base/kustomization.yaml"), base_layer(&base)).expect("write");
            std::fs::write(root.join("overlay/kustomization.yaml"), render_layer(&overlay, "../base", true)).expect("write");
            let dir = root.join("overlay");
            let want = oracle(&dir);
            let got = ours(&dir, root);
            match (want, got) {
                (Ok(w), Ok(g)) => prop_assert_eq!(g, w),
                (Err(_), Err(_)) => {}
                (Ok(_), Err(e)) => prop_assert!(false, "kustomize builds it, lockstep fails: {e}"),
                (Err(e), Ok(_)) => prop_assert!(false, "lockstep builds it, kustomize fails: {e}"),
            }
        }
    }
}
