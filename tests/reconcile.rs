//! The reconciler end to end: devcluster with `deploy/` installed, the controller running
//! as its own service account, Applications in tenant namespaces fetching real Git
//! repositories (`file://`, made with the git CLI), SOPS files made by the real `sops`,
//! SealedSecrets made by `lockstep seal`, and `kubectl` for the hand edits.

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::cluster::{Harness, inventory_names, ready_message};
use support::git::TestRepo;
use support::{Sandbox, repo, run, sops_encrypt_yaml, tool};

const NS: &str = "team-a";

fn cm(name: &str, ns: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n  value: \"{value}\"\n"
    )
}

fn spec(repo: &TestRepo, path: &str) -> serde_json::Value {
    json!({
        "source": {"url": repo.file_url(), "ref": {"branch": "main"}, "path": path},
        "serviceAccountName": "deployer",
        "interval": "1m",
        "retryInterval": "2s",
        "timeout": "20s",
        "prune": true,
    })
}

async fn setup(h: &Harness, repo: &TestRepo) {
    h.tenant(NS).await;
    h.policy("tenants", &repo.srv_dir(), json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_and_prune_across_commits() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    let c1 = r.commit_files(
        &[
            ("app/a.yaml", cm("a", NS, "1")),
            ("app/b.yaml", cm("b", NS, "1")),
        ],
        &[],
    );
    h.application(NS, "app", spec(&r, "app")).await;
    let app = h.wait_ready(NS, "app", Some(&c1)).await;
    assert_eq!(inventory_names(&app), vec!["ConfigMap/a", "ConfigMap/b"]);
    let a = h.configmap(NS, "a").await.expect("a applied");
    assert_eq!(a.data.unwrap()["value"], "1");
    // Managed objects name their Application.
    assert_eq!(
        a.metadata.annotations.unwrap()["lockstep.dev/application"],
        "team-a/app"
    );

    let c2 = r.commit_files(
        &[
            ("app/a.yaml", cm("a", NS, "2")),
            ("app/c.yaml", cm("c", NS, "1")),
        ],
        &["app/b.yaml"],
    );
    h.request_reconcile(NS, "app").await;
    let app = h.wait_ready(NS, "app", Some(&c2)).await;
    assert_eq!(inventory_names(&app), vec!["ConfigMap/a", "ConfigMap/c"]);
    assert_eq!(
        h.configmap(NS, "a").await.unwrap().data.unwrap()["value"],
        "2"
    );
    assert!(h.configmap(NS, "b").await.is_none(), "b was pruned");
    let status = app.status.unwrap();
    assert!(status.history.len() >= 2, "{:?}", status.history);
    assert!(status.last_handled_reconcile_at.is_some());
    let events = h.events(NS).await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "Pruned" && n.contains("ConfigMap team-a/b")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "Applied" && n.contains("ConfigMap team-a/c")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_round_makes_no_writes_and_no_per_object_requests() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    let files: Vec<(String, String)> = (0..12)
        .map(|i| (format!("app/cm{i}.yaml"), cm(&format!("cm{i}"), NS, "x")))
        .collect();
    let refs: Vec<(&str, String)> = files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    let c1 = r.commit_files(&refs, &[]);
    h.application(NS, "app", spec(&r, "app")).await;
    h.wait_ready(NS, "app", Some(&c1)).await;

    let user = "system:serviceaccount:team-a:deployer";
    let count = |verb: &str| {
        h.cluster
            .request_count_where(&[("user", user), ("verb", verb)])
    };
    let writes = |h: &Harness| {
        ["create", "update", "patch", "delete"]
            .iter()
            .map(|v| {
                h.cluster
                    .request_count_where(&[("user", user), ("verb", v)])
            })
            .sum::<u64>()
    };
    let before_writes = writes(&h);
    let before_gets = count("get");
    let before_reconciles = h.controller.as_ref().unwrap().metrics.reconciles("success");
    for _ in 0..3 {
        h.request_reconcile(NS, "app").await;
        let want = h.get_app(NS, "app").await.metadata.annotations.unwrap()
            [lockstep::controller::application::RECONCILE_REQUESTED_AT]
            .clone();
        h.wait_app(NS, "app", Duration::from_secs(20), "handled", |a| {
            a.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_deref())
                == Some(want.as_str())
        })
        .await;
    }
    // The counter moves just after the status write the loop above waited for.
    let metrics = &h.controller.as_ref().unwrap().metrics;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metrics.reconciles("success") < before_reconciles + 3 {
        assert!(std::time::Instant::now() < deadline, "{}", metrics.render());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        writes(&h),
        before_writes,
        "an unchanged round wrote as the app"
    );
    // No per-object reads either: at most the app's own Secrets (none here).
    assert_eq!(count("get"), before_gets, "an unchanged round read objects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubectl_edit_is_corrected_with_one_event() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    let c1 = r.commit_files(&[("app/a.yaml", cm("a", NS, "from-git"))], &[]);
    h.application(NS, "app", spec(&r, "app")).await;
    h.wait_ready(NS, "app", Some(&c1)).await;

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = h.kubeconfig_file(dir.path());
    let editor = dir.path().join("editor.sh");
    support::write(
        &editor,
        "#!/bin/sh\nsed -i 's/from-git/edited-by-hand/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = run(std::process::Command::new(tool("kubectl"))
        .args(["edit", "configmap", "a", "-n", NS])
        .env("KUBECONFIG", &kubeconfig)
        .env("KUBE_EDITOR", &editor));
    assert_eq!(out.code, 0, "kubectl edit: {}", out.all_text());

    h.wait_configmap_value(NS, "a", "from-git", "the edit was not corrected")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = h.events(NS).await;
    let drift: Vec<_> = events
        .iter()
        .filter(|(r, _)| r == "DriftCorrected")
        .collect();
    assert_eq!(drift.len(), 1, "{events:?}");
    assert!(drift[0].1.contains("ConfigMap team-a/a"), "{drift:?}");
    assert!(drift[0].1.contains("kubectl-edit"), "{drift:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_that_keeps_taking_a_field_is_reported_not_fought() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    let c1 = r.commit_files(&[("app/a.yaml", cm("a", NS, "3"))], &[]);
    h.application(NS, "app", spec(&r, "app")).await;
    h.wait_ready(NS, "app", Some(&c1)).await;

    // An autoscaler-like controller writes the field with its own manager, twice.
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(h.admin.clone(), NS);
    let take = |v: &'static str| {
        let api = api.clone();
        async move {
            api.patch(
                "a",
                &PatchParams {
                    field_manager: Some("autoscaler".into()),
                    ..Default::default()
                },
                &Patch::Merge(json!({"data": {"value": v}})),
            )
            .await
            .expect("autoscaler writes");
        }
    };
    take("5").await;
    // Taken back once.
    h.wait_configmap_value(NS, "a", "3", "not taken back").await;
    take("7").await;
    let app = h
        .wait_app(
            NS,
            "app",
            Duration::from_secs(20),
            "field conflict reported",
            |a| {
                a.status
                    .as_ref()
                    .is_some_and(|s| !s.field_conflicts.is_empty())
            },
        )
        .await;
    let fc = &app.status.unwrap().field_conflicts[0];
    assert_eq!(fc.object, "ConfigMap team-a/a");
    assert_eq!(fc.manager, "autoscaler");
    assert!(fc.fields.iter().any(|f| f == ".data.value"), "{fc:?}");
    // Not fought: the autoscaler's value stays, and no more drift events come.
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.request_reconcile(NS, "app").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.configmap(NS, "a").await.unwrap().data.unwrap()["value"],
        "7"
    );
    let events = h.events(NS).await;
    assert_eq!(
        events.iter().filter(|(r, _)| r == "DriftCorrected").count(),
        1,
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_whole_app_path_prunes_nothing_and_says_why() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    let c1 = r.commit_files(
        &[
            ("app/a.yaml", cm("a", NS, "1")),
            ("app/b.yaml", cm("b", NS, "1")),
        ],
        &[],
    );
    h.application(NS, "app", spec(&r, "app")).await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    // The directory is gone entirely.
    r.commit_files(&[], &["app/a.yaml", "app/b.yaml"]);
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "BuildFailed", "not a directory")
        .await;
    assert!(h.configmap(NS, "a").await.is_some() && h.configmap(NS, "b").await.is_some());
    assert_eq!(inventory_names(&app), vec!["ConfigMap/a", "ConfigMap/b"]);
    // An empty directory: an empty render, which never prunes without allowEmpty.
    r.commit_files(&[("app/README.md", "nothing here".into())], &[]);
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "PruneBlocked", "spec.allowEmpty")
        .await;
    assert!(h.configmap(NS, "a").await.is_some() && h.configmap(NS, "b").await.is_some());
    assert_eq!(inventory_names(&app), vec!["ConfigMap/a", "ConfigMap/b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_over_the_budget_waits_for_approval_of_that_exact_prune() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    let files: Vec<(String, String)> = (0..10)
        .map(|i| (format!("app/cm{i}.yaml"), cm(&format!("cm{i}"), NS, "x")))
        .collect();
    let refs: Vec<(&str, String)> = files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    let c1 = r.commit_files(&refs, &[]);
    h.application(NS, "app", spec(&r, "app")).await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    // Remove 6 of 10: over 25% of an inventory over 5.
    let gone: Vec<String> = (0..6).map(|i| format!("app/cm{i}.yaml")).collect();
    let gone_refs: Vec<&str> = gone.iter().map(String::as_str).collect();
    r.commit_files(&[], &gone_refs);
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "PruneBlocked", "lockstep.dev/approve-prune")
        .await;
    for i in 0..10 {
        assert!(
            h.configmap(NS, &format!("cm{i}")).await.is_some(),
            "cm{i} kept"
        );
    }
    let message = ready_message(&app);
    let digest = message
        .rsplit("lockstep.dev/approve-prune=")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    // A wrong approval does nothing.
    h.annotate_app(NS, "app", "lockstep.dev/approve-prune", "not-the-digest")
        .await;
    h.request_reconcile(NS, "app").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.configmap(NS, "cm0").await.is_some());
    h.annotate_app(NS, "app", "lockstep.dev/approve-prune", &digest)
        .await;
    h.request_reconcile(NS, "app").await;
    let app = h.wait_ready(NS, "app", None).await;
    assert_eq!(inventory_names(&app).len(), 4);
    for i in 0..6 {
        assert!(
            h.configmap(NS, &format!("cm{i}")).await.is_none(),
            "cm{i} pruned"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_writing_another_namespace_is_denied_and_nothing_is_half_applied() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    h.tenant("team-b").await;
    // Sorted by file name, the own-namespace object comes first: it must not be written.
    let c1 = r.commit_files(
        &[
            ("app/a-own.yaml", cm("own", NS, "1")),
            ("app/b-other.yaml", cm("intruder", "team-b", "1")),
        ],
        &[],
    );
    h.application(NS, "app", spec(&r, "app")).await;
    let app = h
        .wait_not_ready(NS, "app", "ReconciliationFailed", "team-b")
        .await;
    let msg = ready_message(&app);
    assert!(msg.contains("ConfigMap team-b/intruder"), "{msg}");
    assert!(msg.to_lowercase().contains("forbidden"), "{msg}");
    assert!(h.configmap(NS, "own").await.is_none(), "half-applied");
    assert!(h.configmap("team-b", "intruder").await.is_none());
    assert!(
        app.status
            .unwrap()
            .last_attempted_revision
            .unwrap_or_default()
            .ends_with(&c1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_to_another_namespace_and_missing_accounts_are_refused() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    r.commit_files(&[("app/a.yaml", cm("a", NS, "1"))], &[]);
    let mut s = spec(&r, "app");
    s["decryption"] = json!({"secretRef": {"name": "keys", "namespace": "lockstep-system"}});
    h.application(NS, "cross", s).await;
    let app = h
        .wait_app(NS, "cross", Duration::from_secs(20), "stalled", |a| {
            a.status
                .as_ref()
                .and_then(|s| s.condition("Stalled"))
                .is_some_and(|c| c.reason == "CrossNamespaceReference")
        })
        .await;
    assert!(
        ready_message(&app).contains("lockstep-system"),
        "{}",
        ready_message(&app)
    );
    let mut s = spec(&r, "app");
    s.as_object_mut().unwrap().remove("serviceAccountName");
    h.application(NS, "noaccount", s).await;
    h.wait_app(NS, "noaccount", Duration::from_secs(20), "stalled", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.condition("Stalled"))
            .is_some_and(|c| c.reason == "ServiceAccountNameMissing")
    })
    .await;
    assert!(h.configmap(NS, "a").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_sops_file_and_a_moved_sealed_secret_keep_the_last_good_revision() {
    const CANARY: &str = "canary-reconcile-7f3e9b21";
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    let sb = Sandbox::new();
    // The app's SOPS key, in its namespace, read as its service account.
    lockstep::quickstart::create_secret_from_files(
        &h.admin,
        NS,
        "sops-age",
        &[("sops.agekey", &repo("keys-example/sops.agekey"))],
    )
    .await
    .unwrap();
    let plain = sb.write(
        "plain.yaml",
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {NS}\nstringData:\n  password: {CANARY}\n"
        ),
    );
    let recipient = support::read_string(&repo("keys-example/sops.recipient"));
    let enc = sops_encrypt_yaml(&sb, &plain, recipient.trim(), "^(data|stringData)$");
    let plain_sealed = sb.write(
        "api.yaml",
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n  namespace: {NS}\ndata:\n  token: {}\n",
            STANDARD.encode(CANARY)
        ),
    );
    let sealing = support::read_string(&repo("keys-example/sealing.recipient"));
    let sealed = run(sb
        .lockstep(["seal", "--recipient", sealing.trim()])
        .arg(&plain_sealed))
    .ok()
    .stdout_str();
    let c1 = r.commit_files(
        &[
            (
                "app/secret.enc.yaml",
                String::from_utf8(enc.clone()).unwrap(),
            ),
            ("app/api.sealed.yaml", sealed.clone()),
        ],
        &[],
    );
    let mut s = spec(&r, "app");
    s["decryption"] = json!({"secretRef": {"name": "sops-age"}});
    h.application(NS, "app", s).await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    let db = h.secret(NS, "db").await.expect("db applied");
    assert_eq!(db.data.unwrap()["password"].0, CANARY.as_bytes());
    let api = h.secret(NS, "api").await.expect("api applied");
    assert_eq!(api.data.unwrap()["token"].0, CANARY.as_bytes());

    // Tamper with one ciphertext of the SOPS file.
    let text = String::from_utf8(enc).unwrap();
    let start = text.find("ENC[AES256_GCM,data:").unwrap() + "ENC[AES256_GCM,data:".len();
    let mut tampered = text.clone().into_bytes();
    tampered[start] = if tampered[start] == b'A' { b'B' } else { b'A' };
    let c2 = r.commit_files(
        &[("app/secret.enc.yaml", String::from_utf8(tampered).unwrap())],
        &[],
    );
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "BuildFailed", "secret.enc.yaml")
        .await;
    let msg = ready_message(&app);
    assert!(msg.contains("password"), "names the key path: {msg}");
    let status = app.status.clone().unwrap();
    assert!(status.last_applied_revision.unwrap().ends_with(&c1));
    assert!(status.last_attempted_revision.unwrap().ends_with(&c2));
    assert_eq!(
        h.secret(NS, "db").await.unwrap().data.unwrap()["password"].0,
        CANARY.as_bytes()
    );

    // Restore the SOPS file; move the SealedSecret to another name (strict scope).
    let moved = sealed.replace("name: api", "name: api-copy");
    let c3 = r.commit_files(
        &[
            ("app/secret.enc.yaml", text.clone()),
            ("app/api.sealed.yaml", moved),
        ],
        &[],
    );
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "BuildFailed", "api.sealed.yaml")
        .await;
    assert!(
        app.status
            .clone()
            .unwrap()
            .last_attempted_revision
            .unwrap()
            .ends_with(&c3)
    );
    assert!(h.secret(NS, "api-copy").await.is_none());
    assert!(
        h.secret(NS, "api").await.is_some(),
        "the last good Secret stays"
    );

    // The canary is nowhere in status or events.
    let status_text = serde_json::to_string(&h.get_app(NS, "app").await.status).unwrap();
    let events = format!("{:?}", h.events(NS).await);
    for form in support::leak_forms(CANARY.as_bytes()) {
        assert!(!status_text.contains(&form), "status leaks {form}");
        assert!(!events.contains(&form), "events leak {form}");
    }
    let metrics = h.controller.as_ref().unwrap().metrics.render();
    assert!(!metrics.contains(CANARY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_held_unhealthy_turns_ready_false_with_the_reason() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    let deploy = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {NS}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n"
    );
    h.cluster.set_unhealthy("Deployment", NS, "web", true);
    let c1 = r.commit_files(&[("app/web.yaml", deploy)], &[]);
    let mut s = spec(&r, "app");
    s["timeout"] = json!("3s");
    h.application(NS, "app", s).await;
    let app = h
        .wait_not_ready(NS, "app", "HealthCheckFailed", "Deployment team-a/web")
        .await;
    assert!(
        app.status
            .unwrap()
            .last_applied_revision
            .unwrap()
            .ends_with(&c1)
    );
    h.cluster.set_unhealthy("Deployment", NS, "web", false);
    h.request_reconcile(NS, "app").await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    // The Deployment's controller writing its status (and its own annotations) is not drift.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = h.events(NS).await;
    assert!(
        !events
            .iter()
            .any(|(r, _)| r == "DriftCorrected" || r == "FieldConflict"),
        "{events:?}"
    );
    assert!(
        h.get_app(NS, "app")
            .await
            .status
            .unwrap()
            .field_conflicts
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_commit_is_refused_when_signatures_are_required() {
    use support::git::{Signer, SshKey};
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    let key = SshKey::generate("ed25519");
    let signer = Signer::Ssh(key.clone());
    let c1 = r.commit("app/a.yaml", &cm("a", NS, "signed"), Some(&signer));
    let sdir = tempfile::tempdir().unwrap();
    let allowed = sdir.path().join("allowed_signers");
    support::write(&allowed, format!("{}\n", signer.allowed_entry()));
    lockstep::quickstart::create_secret_from_files(
        &h.admin,
        NS,
        "signers",
        &[("allowed_signers", &allowed)],
    )
    .await
    .unwrap();
    let mut s = spec(&r, "app");
    s["source"]["verify"] = json!({"mode": "HEAD", "secretRef": {"name": "signers"}});
    h.application(NS, "app", s).await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    assert_eq!(
        h.configmap(NS, "a").await.unwrap().data.unwrap()["value"],
        "signed"
    );

    // An unsigned commit on top: refused, nothing of it applied, the last good revision stays.
    let c2 = r.commit("app/a.yaml", &cm("a", NS, "unsigned"), None);
    h.request_reconcile(NS, "app").await;
    let app = h.wait_not_ready(NS, "app", "ArtifactFailed", &c2).await;
    assert!(
        ready_message(&app).contains("verification"),
        "{}",
        ready_message(&app)
    );
    assert!(
        app.status
            .unwrap()
            .last_applied_revision
            .unwrap()
            .ends_with(&c1)
    );
    assert_eq!(
        h.configmap(NS, "a").await.unwrap().data.unwrap()["value"],
        "signed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_stops_applies_and_depends_on_waits_for_ready() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    let c1 = r.commit_files(
        &[
            ("base/a.yaml", cm("base", NS, "1")),
            ("top/b.yaml", cm("top", NS, "1")),
        ],
        &[],
    );
    // `top` depends on `base`, which is suspended from the start: top waits.
    let mut base = spec(&r, "base");
    base["suspend"] = json!(true);
    h.application(NS, "base", base).await;
    let mut top = spec(&r, "top");
    top["dependsOn"] = json!([{"name": "base"}]);
    h.application(NS, "top", top).await;
    h.wait_not_ready(NS, "top", "DependencyNotReady", "team-a/base")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        h.configmap(NS, "base").await.is_none(),
        "a suspended app applied"
    );
    assert!(
        h.configmap(NS, "top").await.is_none(),
        "a dependant went first"
    );

    // Resume base: it applies, and top follows without being asked.
    h.application(NS, "base", spec(&r, "base")).await;
    h.wait_ready(NS, "base", Some(&c1)).await;
    h.wait_ready(NS, "top", Some(&c1)).await;
    assert!(h.configmap(NS, "top").await.is_some());

    // Suspended again, a hand edit stays and a new commit is not applied.
    let mut base = spec(&r, "base");
    base["suspend"] = json!(true);
    h.application(NS, "base", base).await;
    h.wait_app(NS, "base", Duration::from_secs(20), "suspended", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.condition("Reconciling"))
            .is_some_and(|c| c.reason == "Suspended")
    })
    .await;
    r.commit_files(&[("base/a.yaml", cm("base", NS, "2"))], &[]);
    h.request_reconcile(NS, "base").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.configmap(NS, "base").await.unwrap().data.unwrap()["value"],
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_annotated_reconcile_disabled_is_left_alone_until_unpaused() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    let c1 = r.commit_files(
        &[
            ("app/a.yaml", cm("a", NS, "1")),
            ("app/b.yaml", cm("b", NS, "1")),
        ],
        &[],
    );
    h.application(NS, "app", spec(&r, "app")).await;
    h.wait_ready(NS, "app", Some(&c1)).await;

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = h.kubeconfig_file(dir.path());
    let kubectl = |args: &[&str]| {
        let out = run(std::process::Command::new(tool("kubectl"))
            .args(args)
            .env("KUBECONFIG", &kubeconfig));
        assert_eq!(out.code, 0, "kubectl {args:?}: {}", out.all_text());
    };
    kubectl(&[
        "annotate",
        "configmap",
        "a",
        "-n",
        NS,
        "lockstep.dev/reconcile=disabled",
    ]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    kubectl(&[
        "patch",
        "configmap",
        "a",
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"data":{"value":"by-hand"}}"#,
    ]);
    // Paused: neither the hand edit is corrected nor a new commit applied to it.
    let c2 = r.commit_files(
        &[
            ("app/a.yaml", cm("a", NS, "2")),
            ("app/b.yaml", cm("b", NS, "2")),
        ],
        &[],
    );
    h.request_reconcile(NS, "app").await;
    h.wait_ready(NS, "app", Some(&c2)).await;
    assert_eq!(
        h.configmap(NS, "b").await.unwrap().data.unwrap()["value"],
        "2"
    );
    assert_eq!(
        h.configmap(NS, "a").await.unwrap().data.unwrap()["value"],
        "by-hand"
    );
    // Unpaused: lockstep takes it back.
    kubectl(&[
        "annotate",
        "configmap",
        "a",
        "-n",
        NS,
        "lockstep.dev/reconcile-",
    ]);
    h.wait_configmap_value(NS, "a", "2", "not taken back after unpausing")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_that_did_not_opt_in_says_which_binding_is_missing() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    setup(&h, &r).await;
    // Without its RoleBinding to lockstep-impersonate, the reconciler cannot act there.
    let rbs: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(h.admin.clone(), NS);
    rbs.delete("lockstep-impersonate", &Default::default())
        .await
        .unwrap();
    r.commit_files(&[("app/a.yaml", cm("a", NS, "1"))], &[]);
    h.application(NS, "app", spec(&r, "app")).await;
    let app = h
        .wait_not_ready(NS, "app", "ImpersonationForbidden", "lockstep-impersonate")
        .await;
    assert!(ready_message(&app).contains("system:serviceaccount:team-a:deployer"));
    assert!(h.configmap(NS, "a").await.is_none());
}
