//! `deploy/` and the example tenants in `examples/cluster/`, as a platform engineer
//! installs them: the real kubectl applies them to devcluster, and `kubectl auth can-i`
//! plus real requests with the reconciler's own token prove what its account may and
//! may not do (above all: it cannot read a tenant's Secret). The files themselves are
//! checked too: the Deployment keeps its hardening and its contract with the
//! controller, every Application and Policy passes the reconciler's own validation,
//! and the example Policy lets the example apps through and refuses the rogue one.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use lockstep::controller::{Application, validate};
use lockstep::policy::{ClusterPolicy, check_service_account, check_source, policies_binding};
use serde_json::Value;
use support::{Sandbox, read_string, repo, run};

/// The reconciler's user.
const CONTROLLER: &str = "system:serviceaccount:lockstep-system:lockstep";
/// The repository URL in examples/cluster/, replaced by `lockstep quickstart`.
const EXAMPLE_REPO: &str = "file:///tmp/lockstep-quickstart/examples.git";
const TEAMS: [&str; 4] = ["frontend", "payments", "billing", "rogue"];

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Every YAML document of a file, as JSON values (empty documents dropped).
fn documents(path: &Path) -> Vec<Value> {
    let text = read_string(path);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The YAML files directly in `dir`, sorted (kubectl's order).
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

// ---------------------------------------------------------------- the files

#[test]
fn the_kustomization_lists_every_manifest_including_the_generated_crds() {
    let deploy = repo("deploy");
    let kustomization = documents(&deploy.join("kustomization.yaml"));
    let listed: BTreeSet<String> = kustomization[0]["resources"]
        .as_array()
        .expect("resources list")
        .iter()
        .map(|r| r.as_str().expect("resource path").to_owned())
        .collect();
    let mut present = BTreeSet::new();
    for (dir, prefix) in [(deploy.clone(), ""), (deploy.join("crds"), "crds/")] {
        for f in yaml_files(&dir) {
            let name = f.file_name().and_then(|n| n.to_str()).expect("file name");
            if name != "kustomization.yaml" {
                present.insert(format!("{prefix}{name}"));
            }
        }
    }
    assert_eq!(
        listed, present,
        "deploy/kustomization.yaml must list exactly the manifests in deploy/ and deploy/crds/"
    );
}

#[test]
fn the_deployment_is_hardened_and_keeps_the_controller_contract() {
    let docs = documents(&repo("deploy/deployment.yaml"));
    let d = &docs[0];
    assert_eq!(str_at(d, "/kind"), "Deployment");
    assert_eq!(str_at(d, "/metadata/namespace"), "lockstep-system");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(str_at(pod, "/serviceAccountName"), "lockstep");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    let c = &pod["containers"][0];
    assert_eq!(str_at(c, "/image"), "lockstep:dev");
    // The flags the controller parses: a contract with src/cli.
    assert_eq!(
        c["args"],
        serde_json::json!([
            "controller",
            "--sealing-secret=lockstep-sealing",
            "--concurrency=4",
            "--listen=0.0.0.0:8080"
        ])
    );
    let env: Vec<(&str, &Value)> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (str_at(e, "/name"), e))
        .collect();
    let pod_ns = env
        .iter()
        .find(|(n, _)| *n == "POD_NAMESPACE")
        .expect("POD_NAMESPACE");
    assert_eq!(
        str_at(pod_ns.1, "/valueFrom/fieldRef/fieldPath"),
        "metadata.namespace"
    );
    let cache = env
        .iter()
        .find(|(n, _)| *n == "LOCKSTEP_CACHE_DIR")
        .expect("LOCKSTEP_CACHE_DIR");
    let cache_dir = str_at(cache.1, "/value");

    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc.pointer("/capabilities/add").is_none());
    assert_eq!(str_at(sc, "/seccompProfile/type"), "RuntimeDefault");
    assert_eq!(str_at(c, "/resources/limits/memory"), "256Mi");
    assert!(c.pointer("/resources/requests/cpu").is_some());
    assert_eq!(str_at(c, "/livenessProbe/httpGet/path"), "/healthz");
    assert_eq!(str_at(c, "/readinessProbe/httpGet/path"), "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 8080);

    // With a read-only root, every path the controller writes is an emptyDir.
    let empty_dirs: BTreeSet<&str> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter(|v| v.get("emptyDir").is_some())
        .map(|v| str_at(v, "/name"))
        .collect();
    let mounted: BTreeSet<&str> = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .filter(|m| empty_dirs.contains(str_at(m, "/name")))
        .map(|m| str_at(m, "/mountPath"))
        .collect();
    assert_eq!(mounted, BTreeSet::from(["/tmp", cache_dir]));
}

#[test]
fn the_controller_role_holds_no_workload_or_secret_rights_cluster_wide() {
    let docs = documents(&repo("deploy/clusterrole.yaml"));
    let role = docs
        .iter()
        .find(|d| str_at(d, "/metadata/name") == "lockstep-controller")
        .expect("ClusterRole lockstep-controller");
    for rule in role["rules"].as_array().expect("rules") {
        let resources: Vec<&str> = rule["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .expect("verbs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            !resources.iter().any(|r| r.contains('*') || *r == "secrets"),
            "{rule}"
        );
        assert!(
            !verbs
                .iter()
                .any(|v| *v == "*" || *v == "escalate" || *v == "bind"),
            "{rule}"
        );
        // Impersonation is bound per tenant namespace, never cluster-wide.
        assert!(!verbs.contains(&"impersonate"), "{rule}");
    }
    let imp = docs
        .iter()
        .find(|d| str_at(d, "/metadata/name") == "lockstep-impersonate")
        .expect("ClusterRole lockstep-impersonate");
    assert_eq!(
        imp["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}])
    );
    // No ClusterRoleBinding hands out lockstep-impersonate.
    for d in documents(&repo("deploy/clusterrolebinding.yaml")) {
        assert_ne!(str_at(&d, "/roleRef/name"), "lockstep-impersonate");
    }
}

#[test]
fn the_image_is_static_non_root_and_tagged_as_the_deployment_expects() {
    let dockerfile = read_string(&repo("Dockerfile"));
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "a multi-stage build: {froms:?}");
    let last = froms.last().copied().unwrap_or_default();
    assert!(
        last == "FROM scratch" || last.contains("distroless/static"),
        "final stage: {last}"
    );
    // The final stage's user and entry point.
    let final_stage = &dockerfile[dockerfile.rfind("\nFROM ").unwrap_or(0)..];
    assert!(final_stage.contains("\nUSER 65532"), "{final_stage}");
    let entry = final_stage
        .lines()
        .find(|l| l.starts_with("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    assert!(entry.contains("lockstep"), "{entry}");
    // The documented build command produces the tag deploy/ runs.
    let deployment = documents(&repo("deploy/deployment.yaml"));
    let image = str_at(&deployment[0], "/spec/template/spec/containers/0/image");
    assert!(
        dockerfile.contains(&format!("docker build -t {image} .")),
        "the Dockerfile should say how to build {image}"
    );
    // Local identities never enter the build context.
    let ignore = read_string(&repo(".dockerignore"));
    for pattern in ["target/", ".git/", "*.agekey"] {
        assert!(ignore.lines().any(|l| l == pattern), "{pattern}");
    }
}

/// Every object in examples/cluster/, in kubectl's order.
fn example_objects() -> Vec<(PathBuf, Value)> {
    yaml_files(&repo("examples/cluster"))
        .into_iter()
        .flat_map(|f| documents(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

#[test]
fn example_applications_and_policies_pass_the_reconcilers_checks() {
    let objects = example_objects();
    let policies: Vec<_> = objects
        .iter()
        .filter(|(_, d)| d["kind"] == "Policy")
        .map(|(f, d)| {
            let p: ClusterPolicy = serde_json::from_value(d.clone())
                .unwrap_or_else(|e| panic!("{}: not a Policy: {e}", f.display()));
            p.to_policy()
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        })
        .collect();
    assert!(!policies.is_empty(), "examples/cluster/ holds no Policy");

    let mut seen = BTreeSet::new();
    for (file, doc) in objects.iter().filter(|(_, d)| d["kind"] == "Application") {
        let app: Application = serde_json::from_value(doc.clone())
            .unwrap_or_else(|e| panic!("{}: not an Application: {e}", file.display()));
        let v = validate(&app).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let team = v.name.clone();
        assert_eq!(v.namespace, format!("team-{team}"), "{}", file.display());
        assert_eq!(v.service_account, "deployer");
        assert_eq!(
            v.url, EXAMPLE_REPO,
            "the quickstart replaces exactly this URL"
        );
        assert_eq!(v.path, format!("apps/{team}"));
        assert!(
            repo("examples").join(&v.path).is_dir(),
            "{} has no app dir",
            v.path
        );
        assert_eq!(v.interval, std::time::Duration::from_secs(60));
        assert!(v.prune);
        assert_eq!(
            v.decryption_secret.as_deref(),
            (team == "payments").then_some("sops-age"),
            "{team}"
        );

        let bound = policies_binding(&v.namespace, &policies);
        assert!(!bound.is_empty(), "no Policy binds {team}");
        assert_eq!(check_source(&bound, &v.url), vec![], "{team}");
        assert_eq!(
            check_service_account(&bound, &v.namespace, &v.service_account),
            vec![],
            "{team}"
        );
        // The Policy is what stops borrowing another account of the namespace.
        assert!(!check_service_account(&bound, &v.namespace, "default").is_empty());
        assert!(!check_source(&bound, "file:///var/cache/lockstep").is_empty());
        seen.insert(team);
    }
    assert_eq!(seen, TEAMS.iter().map(|t| t.to_string()).collect());

    // The payments decryption Secret is the example SOPS identity, byte for byte.
    let (_, secret) = objects
        .iter()
        .find(|(_, d)| d["kind"] == "Secret" && d["metadata"]["name"] == "sops-age")
        .expect("Secret sops-age");
    assert_eq!(str_at(secret, "/metadata/namespace"), "team-payments");
    assert_eq!(
        str_at(secret, "/stringData/sops.agekey"),
        read_string(&repo("keys-example/sops.agekey"))
    );
    // Every file mentions the repository only in the form the quickstart replaces.
    for f in yaml_files(&repo("examples/cluster")) {
        let text = read_string(&f);
        for (i, _) in text.match_indices("lockstep-quickstart") {
            assert!(
                text[..i].ends_with("file:///tmp/"),
                "{}: unexpected repository reference",
                f.display()
            );
        }
    }
}

#[test]
fn the_example_policy_admits_the_example_apps_and_refuses_rogue() {
    let sb = Sandbox::new();
    let policy = repo("examples/cluster/policy-tenant-baseline.yaml");
    let (k, sk) = (
        repo("keys-example/sops.agekey"),
        repo("keys-example/sealing.agekey"),
    );
    for team in TEAMS {
        let dir = repo(&format!("examples/apps/{team}"));
        let out = run(&mut sb.lockstep([
            "render",
            s(&dir),
            "--identity",
            s(&k),
            "--sealing-identity",
            s(&sk),
            "--policy",
            s(&policy),
        ]));
        if team == "rogue" {
            assert_ne!(out.code, 0, "rogue rendered:\n{}", out.stdout_str());
            assert!(
                out.stderr.contains("ClusterRoleBinding rogue-admin"),
                "{}",
                out.stderr
            );
            assert!(
                out.stderr.contains("ConfigMap kube-system/rogue"),
                "{}",
                out.stderr
            );
            assert!(out.stdout.is_empty());
        } else {
            out.ok();
        }
    }
}

// ---------------------------------------------------------------- on devcluster

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
            .current_dir(repo("."))
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

    /// `kubectl auth can-i ARGS --as USER`: asserts both the answer and the exit code.
    async fn can_i(&self, user: &str, args: &[&str], expected: bool) {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--as", user]);
        let out = self.kubectl(&all).await;
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let want = if expected { "yes" } else { "no" };
        assert_eq!(
            (answer.as_str(), out.status.success()),
            (want, expected),
            "kubectl {all:?}: stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// How many objects a set of manifest files holds.
fn object_count(files: &[PathBuf]) -> usize {
    files.iter().map(|f| documents(f).len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_installs_and_the_reconciler_cannot_read_tenant_secrets() {
    let env = Env::start().await;

    // kubectl apply -k deploy/: every object created, then a second apply changes nothing.
    let deploy_files: Vec<PathBuf> = yaml_files(&repo("deploy"))
        .into_iter()
        .filter(|f| !f.ends_with("kustomization.yaml"))
        .chain(yaml_files(&repo("deploy/crds")))
        .collect();
    let first = env.kubectl_ok(&["apply", "-k", "deploy/"]).await;
    assert_eq!(lines(&first).len(), object_count(&deploy_files), "{first}");
    assert!(
        lines(&first).iter().all(|l| l.ends_with(" created")),
        "{first}"
    );
    let second = env.kubectl_ok(&["apply", "-k", "deploy/"]).await;
    assert_eq!(lines(&second).len(), lines(&first).len(), "{second}");
    assert!(
        lines(&second).iter().all(|l| l.ends_with(" unchanged")),
        "{second}"
    );
    // Moving to server-side apply (as `kubectl apply --server-side -k deploy/` or a Git
    // engine would) keeps every field, and then nothing differs.
    let ssa = env
        .kubectl(&["apply", "--server-side", "-k", "deploy/"])
        .await;
    let ssa_err = String::from_utf8_lossy(&ssa.stderr);
    assert!(
        ssa.status.success() && ssa_err.trim().is_empty(),
        "{ssa_err}"
    );
    let diff = env
        .kubectl(&["diff", "--server-side", "-k", "deploy/"])
        .await;
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    let sc = env
        .kubectl_ok(&[
            "get",
            "deployment/lockstep-controller",
            "-n",
            "lockstep-system",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem}",
        ])
        .await;
    assert_eq!(sc, "true");
    for crd in ["applications.lockstep.dev", "policies.lockstep.dev"] {
        env.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            &format!("crd/{crd}"),
        ])
        .await;
    }

    // The documented way to give the reconciler its sealing identities.
    env.kubectl_ok(&[
        "-n",
        "lockstep-system",
        "create",
        "secret",
        "generic",
        "lockstep-sealing",
        "--from-file=cluster.agekey=keys-example/sealing.agekey",
    ])
    .await;
    // Another Secret in the reconciler's namespace that it must not read.
    env.kubectl_ok(&[
        "-n",
        "lockstep-system",
        "create",
        "secret",
        "generic",
        "platform-other",
        "--from-literal=k=v",
    ])
    .await;

    // The example tenants, applied by hand as a user would.
    let tenants = env
        .kubectl_ok(&["apply", "-R", "-f", "examples/cluster/"])
        .await;
    assert_eq!(
        lines(&tenants).len(),
        object_count(&yaml_files(&repo("examples/cluster"))),
        "{tenants}"
    );
    let apps = env
        .kubectl_ok(&["get", "applications", "-A", "-o", "name"])
        .await;
    assert_eq!(lines(&apps).len(), TEAMS.len(), "{apps}");

    // The reconciler's account, by kubectl auth can-i.
    let c = CONTROLLER;
    let ns = |n: &'static str| ["-n", n];
    for (args, ok) in [
        (vec!["get", "secrets"], false),
        (vec!["list", "secrets"], false),
        (vec!["watch", "secrets"], false),
        (vec!["get", "secret/sops-age"], false),
        (vec!["create", "deployments"], false),
        (vec!["patch", "configmaps"], false),
        (vec!["impersonate", "serviceaccounts"], true),
        (vec!["impersonate", "serviceaccount/deployer"], true),
        (
            vec!["patch", "applications.lockstep.dev", "--subresource=status"],
            true,
        ),
        (
            vec![
                "update",
                "applications.lockstep.dev",
                "--subresource=status",
            ],
            true,
        ),
        (vec!["patch", "applications.lockstep.dev"], false),
        (vec!["watch", "applications.lockstep.dev"], true),
        (vec!["create", "events"], true),
        (vec!["create", "events.events.k8s.io"], true),
    ] {
        let mut a = args.clone();
        a.extend_from_slice(&ns("team-payments"));
        env.can_i(c, &a, ok).await;
    }
    for (args, ok) in [
        (vec!["create", "deployments", "-A"], false),
        (vec!["get", "secrets", "-A"], false),
        (vec!["create", "clusterrolebindings"], false),
        (vec!["impersonate", "users"], false),
        (vec!["impersonate", "groups"], false),
        (
            vec!["impersonate", "serviceaccounts", "-n", "kube-system"],
            false,
        ),
        (
            vec!["impersonate", "serviceaccounts", "-n", "lockstep-system"],
            false,
        ),
        (vec!["list", "policies.lockstep.dev"], true),
        (vec!["create", "policies.lockstep.dev"], false),
        (vec!["get", "/apis"], true),
        (
            vec!["get", "secret/lockstep-sealing", "-n", "lockstep-system"],
            true,
        ),
        (
            vec!["get", "secret/platform-other", "-n", "lockstep-system"],
            false,
        ),
        (vec!["list", "secrets", "-n", "lockstep-system"], false),
        (vec!["create", "leases", "-n", "lockstep-system"], true),
        (
            vec![
                "update",
                "lease/lockstep-controller",
                "-n",
                "lockstep-system",
            ],
            true,
        ),
        (
            vec!["update", "lease/other", "-n", "lockstep-system"],
            false,
        ),
        (vec!["create", "leases", "-n", "team-payments"], false),
    ] {
        env.can_i(c, &args, ok).await;
    }

    // Each tenant's deployer: its own namespace only, and no RBAC writes.
    for team in TEAMS {
        let user = format!("system:serviceaccount:team-{team}:deployer");
        let own = format!("team-{team}");
        let other = if team == "frontend" {
            "team-payments"
        } else {
            "team-frontend"
        };
        env.can_i(&user, &["create", "deployments", "-n", &own], true)
            .await;
        env.can_i(&user, &["create", "deployments", "-n", other], false)
            .await;
        env.can_i(&user, &["get", "secrets", "-n", other], false)
            .await;
        env.can_i(&user, &["create", "rolebindings", "-n", &own], false)
            .await;
        env.can_i(&user, &["create", "clusterrolebindings"], false)
            .await;
        // Creating an Application grants an account's rights: not part of `edit`.
        env.can_i(
            &user,
            &["create", "applications.lockstep.dev", "-n", &own],
            false,
        )
        .await;
        env.can_i(&user, &["create", "policies.lockstep.dev"], false)
            .await;
        env.can_i(&user, &["create", "configmaps", "-n", "kube-system"], false)
            .await;
    }

    // Vault Kubernetes auth: team-payments' deployer may request a token of itself (the
    // vault-login Role), of nobody else, and the reconciler may not request one at all.
    let payments = "system:serviceaccount:team-payments:deployer";
    let token_of =
        |sa: &'static str, ns: &'static str| vec!["create", sa, "--subresource=token", "-n", ns];
    env.can_i(
        payments,
        &token_of("serviceaccount/deployer", "team-payments"),
        true,
    )
    .await;
    env.can_i(
        payments,
        &token_of("serviceaccount/deployer", "team-frontend"),
        false,
    )
    .await;
    env.can_i(
        c,
        &token_of("serviceaccount/deployer", "team-payments"),
        false,
    )
    .await;
    env.can_i(
        "system:serviceaccount:team-frontend:deployer",
        &token_of("serviceaccount/deployer", "team-payments"),
        false,
    )
    .await;

    // The same, as real requests with the reconciler's own token: what the controller
    // will send. Reading the tenant's decryption Secret works only as the tenant.
    let token = env
        .kubectl_ok(&["-n", "lockstep-system", "create", "token", "lockstep"])
        .await;
    let token = token.trim();
    let as_controller = |args: &[&str]| {
        let mut a = vec!["--token", token];
        a.extend_from_slice(args);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run_as = |args: Vec<String>| {
        let env = &env;
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            env.kubectl(&refs).await
        }
    };
    let denied = run_as(as_controller(&[
        "get",
        "secret",
        "sops-age",
        "-n",
        "team-payments",
    ]))
    .await;
    assert!(!denied.status.success());
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(
        err.contains(&format!(
            "User \"{CONTROLLER}\" cannot get resource \"secrets\""
        )),
        "{err}"
    );
    let tenant = run_as(as_controller(&[
        "get",
        "secret",
        "sops-age",
        "-n",
        "team-payments",
        "--as",
        "system:serviceaccount:team-payments:deployer",
        "-o",
        "name",
    ]))
    .await;
    assert!(
        tenant.status.success(),
        "{}",
        String::from_utf8_lossy(&tenant.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&tenant.stdout).trim(),
        "secret/sops-age"
    );
    let escalate = run_as(as_controller(&[
        "get",
        "secrets",
        "-n",
        "kube-system",
        "--as",
        "system:serviceaccount:kube-system:default",
    ]))
    .await;
    assert!(!escalate.status.success());
    assert!(
        String::from_utf8_lossy(&escalate.stderr).contains("cannot impersonate"),
        "{}",
        String::from_utf8_lossy(&escalate.stderr)
    );
    // Its own sealing Secret: by name, and by a list narrowed to that name (a watcher's
    // list+watch); an unnarrowed list is refused.
    let sealing = run_as(as_controller(&[
        "get",
        "secrets",
        "-n",
        "lockstep-system",
        "--field-selector",
        "metadata.name=lockstep-sealing",
        "-o",
        "name",
    ]))
    .await;
    assert!(
        sealing.status.success(),
        "{}",
        String::from_utf8_lossy(&sealing.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&sealing.stdout).trim(),
        "secret/lockstep-sealing"
    );
    let all = run_as(as_controller(&["get", "secrets", "-n", "lockstep-system"])).await;
    assert!(!all.status.success());

    env.cluster.shutdown().await;
}
