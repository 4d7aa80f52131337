//! Vault references through the reconciler: devcluster, the controller as its own service
//! account, a real OpenBao dev server; the token is read from a Secret as the app.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::cluster::Harness;
use support::git::TestRepo;
use support::openbao::OpenBao;

const NS: &str = "team-a";
const CANARY: &str = "canary-reconcile-9d41e7";

fn secret_value(s: &Secret, key: &str) -> String {
    let data = s.data.clone().unwrap_or_default();
    String::from_utf8_lossy(&data[key].0).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_resolves_into_a_secret_follows_changes_and_fails_safe() {
    let mut bao = tokio::task::spawn_blocking(|| {
        let bao = OpenBao::start();
        bao.run(&[
            "kv",
            "put",
            "-mount=secret",
            "team-a/db",
            &format!("password={CANARY}-1"),
        ]);
        bao.run(&["kv", "put", "-mount=kv", "team-a/api", "key=v1-value"]);
        bao.policy(
            "team-a",
            "path \"secret/data/team-a/*\" { capabilities = [\"read\"] }\n\
             path \"kv/team-a/*\" { capabilities = [\"read\"] }\n",
        );
        bao
    })
    .await
    .unwrap();
    let token = bao.token(&["team-a"], "1h");

    let h = Harness::start().await;
    let r = TestRepo::new(0);
    h.tenant(NS).await;
    h.policy(
        "tenants",
        &r.srv_dir(),
        json!({"vaultPaths": ["secret/data/team-a/", "kv/team-a/"]}),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(h.admin.clone(), NS);
    let tok: Secret = serde_json::from_value(json!({
        "metadata": {"name": "vault-token"},
        "stringData": {"token": token},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &tok).await.unwrap();
    support::write(
        &r.work.join("app/db.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/team-a/db#password\n  api: ref+vault://kv/team-a/api#key\n",
    );
    support::git::git(&r.work, &["add", "-A"]);
    support::git::git(&r.work, &["commit", "-q", "-m", "vault refs"]);
    r.publish();
    let c1 = r.head();
    h.application(
        NS,
        "app",
        json!({
            "source": {"url": r.file_url(), "ref": {"branch": "main"}, "path": "app"},
            "serviceAccountName": "deployer",
            "interval": "1m",
            "retryInterval": "2s",
            "timeout": "20s",
            "prune": true,
            "vault": {"address": bao.addr, "auth": {"tokenSecretRef": {"name": "vault-token"}}},
        }),
    )
    .await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    let s = h.secret(NS, "db").await.expect("db applied");
    assert_eq!(secret_value(&s, "password"), format!("{CANARY}-1"));
    assert_eq!(secret_value(&s, "api"), "v1-value");

    // A value changed in Vault reaches the Secret on the next reconcile.
    bao.run(&[
        "kv",
        "put",
        "-mount=secret",
        "team-a/db",
        &format!("password={CANARY}-2"),
    ]);
    h.request_reconcile(NS, "app").await;
    let mut changed = false;
    for _ in 0..200 {
        let s = h.secret(NS, "db").await.expect("db");
        if secret_value(&s, "password") == format!("{CANARY}-2") {
            changed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(changed, "the value changed in Vault reached the Secret");

    // A key missing: not applied, status names the reference and cause, no value.
    support::write(
        &r.work.join("app/db.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/team-a/db#nope\n",
    );
    support::git::git(&r.work, &["commit", "-q", "-am", "missing key"]);
    r.publish();
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "BuildFailed", "key \"nope\" missing")
        .await;
    let status = serde_json::to_string(&app.status).unwrap();
    assert!(status.contains("stringData.password"), "{status}");
    assert!(!status.contains(CANARY), "{status}");
    let s = h.secret(NS, "db").await.expect("db kept");
    assert_eq!(
        secret_value(&s, "password"),
        format!("{CANARY}-2"),
        "last applied stays"
    );

    // Vault stopped: still not applied, nothing pruned, the cause named.
    support::git::git(&r.work, &["revert", "--no-edit", "HEAD"]);
    r.publish();
    bao.stop();
    h.request_reconcile(NS, "app").await;
    h.wait_not_ready(NS, "app", "BuildFailed", "unreachable")
        .await;
    assert!(h.secret(NS, "db").await.is_some(), "nothing pruned");
    let events = h.events(NS).await;
    assert!(!format!("{events:?}").contains(CANARY));
}
