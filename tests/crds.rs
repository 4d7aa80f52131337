//! The CRDs of lockstep's kinds: `deploy/crds/` matches the Rust types, and the real
//! kubectl can install them on devcluster, create Applications and Policies, see the
//! printer columns, write status through the status subresource, and is refused an
//! object the schema forbids.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use kube::Api;
use kube::api::{Patch, PatchParams};
use lockstep::controller::application::Application;
use lockstep::controller::conditions::{READY, Status, now_rfc3339, reason};
use lockstep::controller::{crds, validate};
use lockstep::policy::{ClusterPolicy, PolicySet};

fn crd_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crds"))
}

#[test]
fn deploy_crds_match_the_rust_types() {
    let update = std::env::var_os("LOCKSTEP_UPDATE_CRDS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (file, crd) in crds::all() {
        let want = crds::to_yaml(&crd).expect("CRD serialises");
        let path = crd_dir().join(file);
        if update {
            support::write(&path, &want);
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale CRD files (the types in src/ changed): {stale:?}\nregenerate them with:\n    LOCKSTEP_UPDATE_CRDS=1 cargo test --test crds deploy_crds"
    );
}

struct Env {
    cluster: devcluster::DevCluster,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Env {
    async fn start() -> Env {
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
        let cluster = devcluster::DevCluster::start(devcluster::Config::default())
            .await
            .expect("devcluster starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        cluster
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        Env {
            cluster,
            dir,
            kubeconfig,
        }
    }

    async fn kubectl(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(support::tool("kubectl"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            // A private HOME keeps kubectl's discovery cache per server.
            .env("HOME", self.dir.path())
            .kill_on_drop(true)
            .output()
            .await
            .expect("kubectl runs")
    }

    async fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        support::write(&p, text);
        p.to_string_lossy().into_owned()
    }

    async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::from_yaml(&self.cluster.kubeconfig())
            .expect("kubeconfig parses");
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("client config");
        kube::Client::try_from(cfg).expect("client")
    }

    async fn install_crds(&self) {
        let dir = crd_dir();
        self.kubectl_ok(&["apply", "--server-side", "-f", path_str(&dir)])
            .await;
        for name in ["applications.lockstep.dev", "policies.lockstep.dev"] {
            self.kubectl_ok(&[
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                &format!("crd/{name}"),
            ])
            .await;
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

const APP: &str = "apiVersion: lockstep.dev/v1alpha1
kind: Application
metadata:
  name: payments
  namespace: payments
spec:
  source:
    url: https://git.example.com/org/platform.git
    ref: {branch: main}
    path: apps/payments
    secretRef: {name: git-credentials}
  serviceAccountName: payments-deployer
  interval: 1m
  retryInterval: 30s
  dependsOn: [{name: shared-config}]
  decryption: {secretRef: {name: sops-age}}
  vault:
    address: https://vault.example.com
    auth: {kubernetes: {role: payments}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_installs_the_crds_and_works_with_applications() {
    let env = Env::start().await;
    env.install_crds().await;
    env.kubectl_ok(&["create", "namespace", "payments"]).await;
    let file = env.write("app.yaml", APP);
    env.kubectl_ok(&["apply", "--server-side", "-f", &file])
        .await;

    // Printer columns: READY, REVISION, AGE by default; SUSPENDED only with -o wide.
    // (devcluster appends its own AGE after a CRD's columns, which kube-apiserver does
    // not do when the CRD lists columns, so only the leading columns are compared.)
    let table = env
        .kubectl_ok(&["get", "applications", "-n", "payments"])
        .await;
    let cols = header(&table);
    assert_eq!(cols[..4], ["NAME", "READY", "REVISION", "AGE"], "{table}");
    assert!(!cols.iter().any(|c| c == "SUSPENDED"), "{table}");
    let wide = env
        .kubectl_ok(&["get", "applications", "-n", "payments", "-o", "wide"])
        .await;
    assert_eq!(
        header(&wide)[..5],
        ["NAME", "READY", "REVISION", "AGE", "SUSPENDED"],
        "{wide}"
    );
    // The schema's defaults fill in suspend=false.
    assert_eq!(row(&wide, "payments")[4], "false", "{wide}");

    // What the API server stored reads back as the Rust type and validates.
    let client = env.client().await;
    let apps: Api<Application> = Api::namespaced(client.clone(), "payments");
    let app = apps.get("payments").await.expect("typed get");
    assert!(!app.spec.suspend && !app.spec.prune && !app.spec.allow_empty);
    let valid = validate(&app).expect("the example is valid");
    assert_eq!(valid.destination_namespace, "payments");
    assert_eq!(valid.decryption_secret.as_deref(), Some("sops-age"));

    // Status goes through the status subresource, built with the status helpers.
    let mut status = app.status.clone().unwrap_or_default();
    let now = now_rfc3339();
    status.mark_ready(
        "Applied revision main@sha1:0123456789abcdef",
        app.metadata.generation,
        &now,
    );
    status.last_applied_revision = Some("main@sha1:0123456789abcdef".into());
    status.push_history(
        "main@sha1:0123456789abcdef",
        reason::SUCCEEDED,
        std::time::Duration::from_millis(1200),
        &now,
    );
    let patch = serde_json::json!({ "status": status });
    let patch_text = patch.to_string();
    env.kubectl_ok(&[
        "patch",
        "application",
        "payments",
        "-n",
        "payments",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch_text,
    ])
    .await;
    let table = env
        .kubectl_ok(&["get", "applications", "-n", "payments"])
        .await;
    assert_eq!(
        row(&table, "payments")[2],
        "main@sha1:0123456789abcdef",
        "{table}"
    );
    // The READY column's JSONPath (a filter on the condition type) picks the Ready
    // condition; kubectl evaluates it client-side here.
    let crd = crds::all()
        .into_iter()
        .find(|(f, _)| f.starts_with("applications"))
        .expect("application CRD")
        .1;
    let ready_path = crd.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.name == "Ready"))
        .expect("Ready column")
        .json_path
        .clone();
    let ready = env
        .kubectl_ok(&[
            "get",
            "application",
            "payments",
            "-n",
            "payments",
            "-o",
            &format!("custom-columns=READY:{ready_path}"),
            "--no-headers",
        ])
        .await;
    assert_eq!(ready.trim(), "True");
    // `kubectl wait --for=condition=Ready` works on the status the helpers write.
    env.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=10s",
        "application/payments",
        "-n",
        "payments",
    ])
    .await;
    let back = apps.get_status("payments").await.expect("status get");
    let st = back.status.expect("status stored");
    assert_eq!(
        st.condition(READY).map(|c| c.status.as_str()),
        Some(Status::True.as_str())
    );
    assert_eq!(st.history.len(), 1);
    assert_eq!(st.observed_generation, app.metadata.generation);

    // The reconciler's way: server-side apply of the status with its own field manager.
    // Conditions are a list-map keyed by type, so a changed Ready replaces the old one.
    let mut failed = st.clone();
    failed.mark_failed(
        reason::BUILD_FAILED,
        "apps/payments/deploy.yaml: unknown kind",
        app.metadata.generation,
        &now_rfc3339(),
    );
    let body = serde_json::json!({
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "Application",
        "status": failed,
    });
    apps.patch_status(
        "payments",
        &PatchParams::apply("lockstep-status").force(),
        &Patch::Apply(&body),
    )
    .await
    .expect("status apply");
    let st = apps
        .get_status("payments")
        .await
        .expect("status get")
        .status
        .expect("status");
    let ready: Vec<_> = st.conditions.iter().filter(|c| c.type_ == READY).collect();
    assert_eq!(ready.len(), 1, "{:?}", st.conditions);
    assert_eq!(
        (ready[0].status.as_str(), ready[0].reason.as_str()),
        ("False", "BuildFailed")
    );
    assert!(st.condition("Reconciling").is_some());
    assert_eq!(
        st.last_applied_revision.as_deref(),
        Some("main@sha1:0123456789abcdef")
    );

    // A status written through the main resource is ignored (status subresource).
    env.kubectl_ok(&[
        "patch",
        "application",
        "payments",
        "-n",
        "payments",
        "--type=merge",
        "-p",
        r#"{"status":{"lastAppliedRevision":"forged"}}"#,
    ])
    .await;
    let after = apps.get("payments").await.expect("get");
    assert_eq!(
        after
            .status
            .and_then(|s| s.last_applied_revision)
            .as_deref(),
        Some("main@sha1:0123456789abcdef")
    );

    // Suspension shows in the wide view.
    env.kubectl_ok(&[
        "patch",
        "application",
        "payments",
        "-n",
        "payments",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ])
    .await;
    let wide = env
        .kubectl_ok(&["get", "applications", "-n", "payments", "-o", "wide"])
        .await;
    assert_eq!(row(&wide, "payments")[4], "true", "{wide}");
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_invalid_applications() {
    let env = Env::start().await;
    env.install_crds().await;
    env.kubectl_ok(&["create", "namespace", "payments"]).await;
    let cases = [
        (
            "no-url",
            APP.replace("    url: https://git.example.com/org/platform.git\n", ""),
            "spec.source.url",
        ),
        (
            "bad-interval",
            APP.replace("interval: 1m", "interval: soon"),
            "spec.interval",
        ),
        (
            "bad-retry",
            APP.replace("retryInterval: 30s", "retryInterval: 30"),
            "spec.retryInterval",
        ),
        (
            "no-interval",
            APP.replace("  interval: 1m\n", ""),
            "spec.interval",
        ),
        (
            "bad-mode",
            APP.replace(
                "    secretRef: {name: git-credentials}\n",
                "    verify: {mode: Always}\n",
            ),
            "spec.source.verify.mode",
        ),
        (
            "no-vault-auth",
            APP.replace("    auth: {kubernetes: {role: payments}}\n", ""),
            "spec.vault.auth",
        ),
    ];
    for (name, yaml, field) in cases {
        let yaml = yaml.replace(
            "name: payments\n  namespace",
            &format!("name: {name}\n  namespace"),
        );
        let file = env.write(&format!("{name}.yaml"), &yaml);
        let out = env.kubectl(&["create", "-f", &file]).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(
            err.contains(field),
            "{name}: expected an error about {field}: {err}"
        );
        let got = env
            .kubectl(&["get", "application", name, "-n", "payments"])
            .await;
        assert!(!got.status.success(), "{name} was stored");
    }
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_policies_install_as_cluster_policies_and_mean_the_same() {
    let env = Env::start().await;
    env.install_crds().await;
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"));
    env.kubectl_ok(&["apply", "--server-side", "-f", path_str(&dir)])
        .await;
    // Cluster-scoped: listed without a namespace.
    let table = env.kubectl_ok(&["get", "policies"]).await;
    assert!(row(&table, "platform").len() >= 2, "{table}");
    assert!(row(&table, "tenant-baseline").len() >= 2, "{table}");

    let client = env.client().await;
    let api: Api<ClusterPolicy> = Api::all(client);
    let mut from_cluster: Vec<_> = api
        .list(&Default::default())
        .await
        .expect("list policies")
        .items
        .iter()
        .map(|p| p.to_policy().expect("valid policy"))
        .collect();
    from_cluster.sort_by(|a, b| a.name.cmp(&b.name));
    let mut from_files = PolicySet::load(&[dir]).expect("policy files load").policies;
    from_files.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(from_cluster.len(), from_files.len());
    for (c, f) in from_cluster.iter_mut().zip(&from_files) {
        c.file = f.file.clone();
        assert_eq!(
            c, f,
            "policy {} differs between its file and the cluster",
            f.name
        );
    }

    // The schema refuses an unknown sealed-secret scope.
    let bad = env.write(
        "bad-policy.yaml",
        "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {sealedSecretScopes: [loose]}\n",
    );
    let out = env.kubectl(&["create", "-f", &bad]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sealedSecretScopes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.cluster.shutdown().await;
}
