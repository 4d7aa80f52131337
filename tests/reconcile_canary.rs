//! A canary secret value through every path of the reconciler, with the controller as
//! its own process logging at trace level: applied (SOPS and sealed), drifted and put
//! back, refused by the API server (which echoes request bodies in its errors), and
//! failing to decrypt. The value must appear in no log line, Event, status, metric or
//! error.

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::cluster::{Harness, ready_message};
use support::git::TestRepo;
use support::{Sandbox, repo, run, sops_encrypt_yaml};

const CANARY: &str = "canary-trace-5d1c7e09aa";
const NS: &str = "team-a";

fn commit(r: &TestRepo, files: &[(&str, String)]) -> String {
    for (p, c) in files {
        support::write(&r.work.join(p), c);
    }
    support::git::git(&r.work, &["add", "-A"]);
    support::git::git(&r.work, &["commit", "-q", "-m", "change"]);
    r.publish();
    r.head()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_value_never_reaches_logs_events_status_metrics_or_errors() {
    let mut h = Harness::start().await;
    h.stop_controller().await;
    let r = TestRepo::new(0);
    h.tenant(NS).await;
    h.policy("tenants", &r.srv_dir(), json!({})).await;
    lockstep::quickstart::create_secret_from_files(
        &h.admin,
        NS,
        "sops-age",
        &[("sops.agekey", &repo("keys-example/sops.agekey"))],
    )
    .await
    .unwrap();

    let sb = Sandbox::new();
    let plain = sb.write(
        "db.yaml",
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {NS}\nstringData:\n  password: {CANARY}\n"),
    );
    let recipient = support::read_string(&repo("keys-example/sops.recipient"));
    let enc = String::from_utf8(sops_encrypt_yaml(
        &sb,
        &plain,
        recipient.trim(),
        "^(data|stringData)$",
    ))
    .unwrap();
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
    let c1 = commit(
        &r,
        &[
            ("app/db.enc.yaml", enc.clone()),
            ("app/api.sealed.yaml", sealed),
        ],
    );

    // The controller as a process, logging everything.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = h.controller_kubeconfig(dir.path());
    let port = support::git::free_port();
    let log_path = dir.path().join("controller.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(support::lockstep_bin())
        .args(["controller", "--namespace", "lockstep-system", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env("KUBECONFIG", &kubeconfig)
        .env("LOCKSTEP_LOG", "trace")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("controller starts");

    let spec = json!({
        "source": {"url": r.file_url(), "path": "app"},
        "serviceAccountName": "deployer",
        "interval": "1m",
        "retryInterval": "1s",
        "timeout": "20s",
        "prune": true,
        "decryption": {"secretRef": {"name": "sops-age"}},
    });
    h.application(NS, "app", spec).await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    assert_eq!(
        h.secret(NS, "db").await.unwrap().data.unwrap()["password"].0,
        CANARY.as_bytes()
    );

    // Drift on the Secret: taken back.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(h.admin.clone(), NS);
    secrets
        .patch(
            "db",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"data": {"password": STANDARD.encode("changed-by-hand")}})),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while h.secret(NS, "db").await.unwrap().data.unwrap()["password"].0 != CANARY.as_bytes() {
        assert!(std::time::Instant::now() < deadline, "drift not corrected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A Secret the API server refuses (an invalid label value), holding the canary: the
    // server's error echoes what it was sent.
    let bad = sb.write(
        "bad.yaml",
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: bad\n  namespace: {NS}\n  labels: {{app: \"{CANARY}!!\"}}\nstringData:\n  password: {CANARY}\n"),
    );
    let bad_enc = String::from_utf8(sops_encrypt_yaml(
        &sb,
        &bad,
        recipient.trim(),
        "^(data|stringData)$",
    ))
    .unwrap();
    let c2 = commit(&r, &[("app/bad.enc.yaml", bad_enc)]);
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "ReconciliationFailed", "Secret team-a/bad")
        .await;
    assert!(
        app.status
            .unwrap()
            .last_attempted_revision
            .unwrap()
            .ends_with(&c2)
    );

    // A value that fails to decrypt.
    let _ = std::fs::remove_file(r.work.join("app/bad.enc.yaml"));
    let start = enc.find("ENC[AES256_GCM,data:").unwrap() + "ENC[AES256_GCM,data:".len();
    let mut tampered = enc.into_bytes();
    tampered[start] = if tampered[start] == b'A' { b'B' } else { b'A' };
    commit(
        &r,
        &[("app/db.enc.yaml", String::from_utf8(tampered).unwrap())],
    );
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "BuildFailed", "db.enc.yaml")
        .await;
    assert!(ready_message(&app).contains("password"));

    // Everything the outside world can see.
    let metrics = support::cluster::controller_metrics(port).await;
    assert!(metrics.contains("lockstep_reconciles_total"), "{metrics}");
    let _ = child.kill();
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.lines().count() > 20,
        "trace logging produced almost nothing:\n{logs}"
    );
    let status = serde_json::to_string(&h.get_app(NS, "app").await.status).unwrap();
    let events = format!("{:?}", h.events(NS).await);
    for form in support::leak_forms(CANARY.as_bytes()) {
        assert!(
            !logs.contains(&form),
            "a log line holds the canary ({form})"
        );
        assert!(!status.contains(&form), "status holds the canary ({form})");
        assert!(
            !events.contains(&form),
            "an Event holds the canary ({form})"
        );
        assert!(!metrics.contains(&form), "metrics hold the canary ({form})");
    }
}
