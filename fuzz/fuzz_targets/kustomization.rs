//! kustomization files: arbitrary bytes become the `kustomization.yaml` of an overlay over
//! a fixed base (a Deployment, a Service, a ServiceAccount, a RoleBinding, a ConfigMap
//! generator) inside a temporary root, and are built natively. The input may also carry a
//! patch file, an env file and a `crds` definitions file (`crds.json`) after
//! `\n#--patch\n`, `\n#--env\n` and `\n#--crds\n` markers. Errors are
//! fine; panics, hangs and memory blow-ups are findings, and so is an output over the
//! object limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep::kustomize::{self, BuildLimits, BuildOptions};

const BASE: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  template:
    spec:
      serviceAccountName: sa
      containers: [{name: c, image: nginx:1, envFrom: [{configMapRef: {name: cfg}}]}]
---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rb}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
subjects: [{kind: ServiceAccount, name: sa}]
";

thread_local! {
    static ROOT: tempfile::TempDir = {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("base")).expect("mkdir");
        std::fs::create_dir_all(t.path().join("overlay")).expect("mkdir");
        std::fs::write(t.path().join("base/r.yaml"), BASE).expect("write");
        std::fs::write(
            t.path().join("base/kustomization.yaml"),
            "resources: [r.yaml]\nconfigMapGenerator:\n- name: cfg\n  literals: [A=1]\n",
        )
        .expect("write");
        t
    };
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (text, crds) = text.split_once("\n#--crds\n").unwrap_or((&text, ""));
    let (rest, env) = text.split_once("\n#--env\n").unwrap_or((text, ""));
    let (k, patch) = rest.split_once("\n#--patch\n").unwrap_or((rest, ""));
    ROOT.with(|root| {
        let dir = root.path().join("overlay");
        std::fs::write(dir.join("kustomization.yaml"), k).expect("write");
        std::fs::write(dir.join("patch.yaml"), patch).expect("write");
        std::fs::write(dir.join("vars.env"), env).expect("write");
        std::fs::write(dir.join("crds.json"), crds).expect("write");
        let limits = BuildLimits {
            max_objects: 200,
            max_total_bytes: 4 * 1024 * 1024,
            ..BuildLimits::default()
        };
        let opts = BuildOptions {
            root: root.path(),
            limits,
            sops: None,
        };
        if let Ok(b) = kustomize::build(&dir, &opts) {
            assert!(b.objects.len() <= 200, "object limit exceeded");
        }
    });
});
