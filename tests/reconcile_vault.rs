//! Vault references through the reconciler: devcluster, the controller as its own service
//! account, a real OpenBao dev server; the token is read from a Secret as the app.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::cluster::{Harness, ready_message};
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
    store_vault_token(&h, &token).await;
    support::write(
        &r.work.join("app/db.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/team-a/db#password\n  api: ref+vault://kv/team-a/api#key\n",
    );
    // The whole-Secret form: every key of one path.
    support::write(
        &r.work.join("app/all.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: all\n  annotations: {lockstep.dev/vault-path: secret/team-a/db}\n",
    );
    support::git::git(&r.work, &["add", "-A"]);
    support::git::git(&r.work, &["commit", "-q", "-m", "vault refs"]);
    r.publish();
    let c1 = r.head();
    token_app(&h, &r, &bao, json!({"prune": true})).await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    let s = h.secret(NS, "db").await.expect("db applied");
    assert_eq!(secret_value(&s, "password"), format!("{CANARY}-1"));
    assert_eq!(secret_value(&s, "api"), "v1-value");
    let all = h.secret(NS, "all").await.expect("all applied");
    assert_eq!(secret_value(&all, "password"), format!("{CANARY}-1"));

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

/// Asks for a reconcile and waits until the controller has handled that request.
async fn reconcile_round(h: &Harness, ns: &str, name: &str) {
    h.request_reconcile(ns, name).await;
    let want = h
        .get_app(ns, name)
        .await
        .metadata
        .annotations
        .unwrap_or_default()[lockstep::controller::application::RECONCILE_REQUESTED_AT]
        .clone();
    h.wait_app(ns, name, Duration::from_secs(30), "handled", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref())
            == Some(want.as_str())
    })
    .await;
}

/// A JWT of `ns/sa` for `audiences`, requested as admin (what `kubectl create token` does).
async fn jwt_of(h: &Harness, ns: &str, sa: &str, audiences: &[&str]) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let api: Api<ServiceAccount> = Api::namespaced(h.admin.clone(), ns);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
            expiration_seconds: Some(600),
            ..Default::default()
        }),
        ..Default::default()
    };
    api.create_token_request(sa, &Default::default(), &req)
        .await
        .expect("TokenRequest")
        .status
        .and_then(|s| s.token)
        .expect("token")
}

async fn create_json<K>(api: &Api<K>, v: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
}

/// Stores a Vault token in Secret `vault-token` of the tenant namespace (the app reads it).
async fn store_vault_token(h: &Harness, token: &str) {
    create_json::<Secret>(
        &Api::namespaced(h.admin.clone(), NS),
        json!({"metadata": {"name": "vault-token"}, "stringData": {"token": token}}),
    )
    .await;
}

/// Application `app` in the tenant namespace: path `app/` of `r`, token auth against
/// `bao`, retrying every 2 s; `extra` adds or overrides spec fields.
async fn token_app(h: &Harness, r: &TestRepo, bao: &OpenBao, extra: serde_json::Value) {
    let mut spec = json!({
        "source": {"url": r.file_url(), "ref": {"branch": "main"}, "path": "app"},
        "serviceAccountName": "deployer",
        "interval": "1m",
        "retryInterval": "2s",
        "timeout": "20s",
        "vault": {"address": bao.addr, "auth": {"tokenSecretRef": {"name": "vault-token"}}},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    h.application(NS, "app", spec).await;
}

/// What a platform team sets up once for Vault's kubernetes auth: a reviewer service
/// account allowed to create TokenReviews (`system:auth-delegator`), whose token Vault
/// keeps as `token_reviewer_jwt`.
async fn reviewer_jwt(h: &Harness) -> String {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    create_json::<Namespace>(
        &Api::all(h.admin.clone()),
        json!({"metadata": {"name": "vault-auth"}}),
    )
    .await;
    create_json::<ServiceAccount>(
        &Api::namespaced(h.admin.clone(), "vault-auth"),
        json!({"metadata": {"name": "vault-reviewer"}}),
    )
    .await;
    create_json::<ClusterRoleBinding>(
        &Api::all(h.admin.clone()),
        json!({
            "metadata": {"name": "vault-reviewer-auth-delegator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": "vault-reviewer", "namespace": "vault-auth"}],
        }),
    )
    .await;
    h.cluster
        .service_account_token("vault-auth", "vault-reviewer")
        .expect("reviewer token")
}

fn count_logins(bao: &OpenBao, mount: &str) -> usize {
    let p = format!("auth/{mount}/login");
    bao.audited(|x| x == p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_auth_logs_in_as_the_app_and_openbao_checks_the_binding() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    const K8S_CANARY: &str = "canary-k8s-auth-5c20aa";
    let h = Harness::start().await;
    let bao = tokio::task::spawn_blocking(|| {
        let bao = OpenBao::start();
        bao.run(&[
            "kv",
            "put",
            "-mount=secret",
            "team-a/db",
            &format!("password={K8S_CANARY}"),
        ]);
        bao.policy(
            "team-a",
            "path \"secret/data/team-a/*\" { capabilities = [\"read\"] }\n",
        );
        bao
    })
    .await
    .unwrap();
    let reviewer = reviewer_jwt(&h).await;
    bao.kubernetes_auth(&h.cluster.url(), &h.cluster.ca_pem(), &reviewer);
    bao.kubernetes_role("team-a", NS, "deployer", "team-a", &bao.addr);

    h.tenant(NS).await;
    h.tenant("team-b").await;
    create_json::<ServiceAccount>(
        &Api::namespaced(h.admin.clone(), NS),
        json!({"metadata": {"name": "other"}}),
    )
    .await;

    // OpenBao's role binding, through devcluster's TokenReview.
    let own = jwt_of(&h, NS, "deployer", &[&bao.addr]).await;
    bao.kubernetes_login("team-a", &own)
        .expect("the bound account logs in");
    let other_sa = jwt_of(&h, NS, "other", &[&bao.addr]).await;
    let e = bao.kubernetes_login("team-a", &other_sa).unwrap_err();
    assert!(e.contains("not authorized"), "{e}");
    let other_ns = jwt_of(&h, "team-b", "deployer", &[&bao.addr]).await;
    let e = bao.kubernetes_login("team-a", &other_ns).unwrap_err();
    assert!(e.contains("not authorized"), "{e}");
    // A token for the API server's audience is not one for Vault.
    let api_aud = h.cluster.service_account_token(NS, "deployer").unwrap();
    let e = bao.kubernetes_login("team-a", &api_aud).unwrap_err();
    assert!(
        e.contains("audience") || e.contains("permission denied"),
        "{e}"
    );
    let logins_before = count_logins(&bao, "kubernetes");

    // Through the reconciler.
    let r = TestRepo::new(0);
    h.policy(
        "tenants",
        &r.srv_dir(),
        json!({"vaultPaths": ["secret/data/team-a/"]}),
    )
    .await;
    let c1 = r.commit("app/db.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/team-a/db#password\n", None);
    let spec = |role: &str| {
        json!({
            "source": {"url": r.file_url(), "ref": {"branch": "main"}, "path": "app"},
            "serviceAccountName": "deployer",
            "interval": "1m",
            "retryInterval": "2s",
            "timeout": "20s",
            "prune": true,
            "vault": {"address": bao.addr, "auth": {"kubernetes": {"role": role}}},
        })
    };
    h.application(NS, "app", spec("team-a")).await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    let s = h.secret(NS, "db").await.expect("db applied");
    assert_eq!(secret_value(&s, "password"), K8S_CANARY);

    // One login (and one TokenRequest) across rounds.
    for _ in 0..3 {
        reconcile_round(&h, NS, "app").await;
    }
    assert_eq!(
        count_logins(&bao, "kubernetes") - logins_before,
        1,
        "one login per (address, method, mount, role, tenant)"
    );
    let token_requests = h.cluster.request_count_where(&[
        ("verb", "create"),
        ("resource", "serviceaccounts"),
        ("user", "system:serviceaccount:team-a:deployer"),
    ]);
    assert_eq!(token_requests, 1, "one TokenRequest, for the one login");

    // team-b's app asks for team-a's role: OpenBao refuses its account.
    h.application("team-b", "app", spec("team-a")).await;
    let app = h
        .wait_not_ready("team-b", "app", "BuildFailed", "login failed")
        .await;
    let msg = ready_message(&app);
    assert!(msg.contains("permission denied"), "{msg}");
    assert!(h.secret("team-b", "db").await.is_none());
    let status = serde_json::to_string(&app.status).unwrap();
    assert!(
        status.contains("Stalled"),
        "a refusal waits for a change: {status}"
    );

    // A tenant whose account may not request its own token: the status names the RBAC.
    tenant_without_token_request(&h, "team-c").await;
    bao.kubernetes_role("team-c", "team-c", "deployer", "team-a", &bao.addr);
    h.application("team-c", "app", spec("team-c")).await;
    let app = h
        .wait_not_ready("team-c", "app", "BuildFailed", "serviceaccounts/token")
        .await;
    let msg = ready_message(&app);
    assert!(
        msg.contains("system:serviceaccount:team-c:deployer may not request its own token")
            && msg.contains("create on serviceaccounts/token (resourceNames [deployer])"),
        "{msg}"
    );
    assert!(
        msg.contains("app/db.yaml") && msg.contains("stringData.password"),
        "{msg}"
    );
    let logins = count_logins(&bao, "kubernetes");
    assert_eq!(
        logins - logins_before,
        2,
        "team-b tried once, team-c never reached Vault"
    );
}

/// Like Harness::tenant, but the Role lacks `create` on `serviceaccounts/token`.
async fn tenant_without_token_request(h: &Harness, ns: &str) {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    create_json::<Namespace>(
        &Api::all(h.admin.clone()),
        json!({"metadata": {"name": ns}}),
    )
    .await;
    create_json::<ServiceAccount>(
        &Api::namespaced(h.admin.clone(), ns),
        json!({"metadata": {"name": "deployer"}}),
    )
    .await;
    create_json::<Role>(
        &Api::namespaced(h.admin.clone(), ns),
        json!({
            "metadata": {"name": "deployer"},
            "rules": [{"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["*"]}],
        }),
    )
    .await;
    let rbs: Api<RoleBinding> = Api::namespaced(h.admin.clone(), ns);
    create_json(
        &rbs,
        json!({
            "metadata": {"name": "deployer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}],
        }),
    )
    .await;
    create_json(
        &rbs,
        json!({
            "metadata": {"name": "lockstep-impersonate"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "lockstep-impersonate"},
            "subjects": [{"kind": "ServiceAccount", "name": "lockstep", "namespace": "lockstep-system"}],
        }),
    )
    .await;
}

/// Seeds (or, after a dev server restart, re-seeds) what the AppRole test needs: the
/// values, an ACL that reads team-a's paths but denies one, and an AppRole with fixed ids
/// so that the app's Secret stays valid across a restart.
fn seed_approle(bao: &OpenBao, password: &str) {
    bao.run(&[
        "kv",
        "put",
        "-mount=secret",
        "team-a/db",
        &format!("password={password}"),
    ]);
    bao.run(&[
        "kv",
        "put",
        "-mount=secret",
        "team-a/forbidden",
        "password=x",
    ]);
    bao.run(&["kv", "put", "-mount=secret", "team-b/db", "password=y"]);
    bao.policy(
        "team-a",
        "path \"secret/data/team-a/*\" { capabilities = [\"read\"] }\n\
         path \"secret/data/team-a/forbidden\" { capabilities = [\"deny\"] }\n",
    );
    bao.run(&["auth", "enable", "approle"]);
    bao.run(&[
        "write",
        "auth/approle/role/team-a",
        "token_policies=team-a",
        "token_ttl=1h",
    ]);
    bao.run(&[
        "write",
        "auth/approle/role/team-a/role-id",
        "role_id=team-a-role",
    ]);
    bao.run(&[
        "write",
        "auth/approle/role/team-a/custom-secret-id",
        "secret_id=team-a-secret-id-3f9",
    ]);
}

fn audited_containing(bao: &OpenBao, needle: &str) -> usize {
    bao.audited(|p| p.contains(needle))
}

/// AppRole through the reconciler (ids from a Secret read as the app), with the controller
/// as its own process logging at trace level: a path the Policy forbids (refused before
/// any Vault call), a path Vault's ACL denies, a missing key, Vault stopped and started
/// again. The value read from Vault never shows in a log line, Event, status or metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_policy_acl_restart_and_no_value_anywhere() {
    const CANARY_A: &str = "canary-approle-71b3c2";
    let mut h = Harness::start().await;
    h.stop_controller().await;
    let mut bao = tokio::task::spawn_blocking(|| {
        let bao = OpenBao::start();
        seed_approle(&bao, &format!("{CANARY_A}-1"));
        bao
    })
    .await
    .unwrap();
    let r = TestRepo::new(0);
    h.tenant(NS).await;
    h.policy(
        "tenants",
        &r.srv_dir(),
        json!({"vaultPaths": ["secret/data/team-a/"]}),
    )
    .await;
    create_json::<Secret>(
        &Api::namespaced(h.admin.clone(), NS),
        json!({"metadata": {"name": "vault-approle"},
               "stringData": {"roleId": "team-a-role", "secretId": "team-a-secret-id-3f9"}}),
    )
    .await;
    let c1 = r.commit("app/db.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/team-a/db#password\n", None);

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = h.controller_kubeconfig(dir.path());
    let port = support::git::free_port();
    let log_path = dir.path().join("controller.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = KillOnDrop(
        std::process::Command::new(support::lockstep_bin())
            .args(["controller", "--namespace", "lockstep-system", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .env("KUBECONFIG", &kubeconfig)
            .env("LOCKSTEP_LOG", "trace")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("controller starts"),
    );

    h.application(
        NS,
        "app",
        json!({
            "source": {"url": r.file_url(), "ref": {"branch": "main"}, "path": "app"},
            "serviceAccountName": "deployer",
            "interval": "1m",
            "retryInterval": "1s",
            "timeout": "20s",
            "prune": true,
            "vault": {"address": bao.addr, "auth": {"appRole": {"secretRef": {"name": "vault-approle"}}}},
        }),
    )
    .await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    assert_eq!(
        secret_value(&h.secret(NS, "db").await.unwrap(), "password"),
        format!("{CANARY_A}-1")
    );
    assert_eq!(count_logins(&bao, "approle"), 1);

    // A path outside the Policy's vaultPaths: refused before any Vault call.
    let other = |reference: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: other}}\nstringData:\n  password: {reference}\n"
        )
    };
    // (db.yaml's allowed path is read in the same render; nothing else is.)
    let before = bao.audited(|p| !p.contains("team-a/db"));
    let team_b_before = audited_containing(&bao, "team-b");
    r.commit(
        "app/other.yaml",
        &other("ref+vault://secret/team-b/db#password"),
        None,
    );
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "BuildFailed", "refused by policy \"tenants\"")
        .await;
    let msg = ready_message(&app);
    for part in [
        "app/other.yaml",
        "Secret \"other\"",
        "stringData.password",
        "secret/team-b/db",
    ] {
        assert!(msg.contains(part), "{part} missing from {msg}");
    }
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .condition("Stalled")
            .is_some_and(|c| c.status == "True")
    );
    assert_eq!(
        audited_containing(&bao, "team-b"),
        team_b_before,
        "no Vault call for team-b"
    );
    assert_eq!(
        bao.audited(|p| !p.contains("team-a/db")),
        before,
        "no other Vault call"
    );

    // A path Vault's ACL denies.
    r.commit(
        "app/other.yaml",
        &other("ref+vault://secret/team-a/forbidden#password"),
        None,
    );
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "BuildFailed", "permission denied")
        .await;
    let msg = ready_message(&app);
    assert!(
        msg.contains("Vault denied \"secret/team-a/forbidden\""),
        "{msg}"
    );
    assert!(
        msg.contains("app/other.yaml") && msg.contains("stringData.password"),
        "{msg}"
    );
    assert_eq!(
        count_logins(&bao, "approle"),
        1,
        "a denial does not log in again"
    );
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .condition("Stalled")
            .is_some_and(|c| c.status == "True"),
        "a denial waits for a change, no backoff loop"
    );

    // A key missing at the path.
    r.commit(
        "app/other.yaml",
        &other("ref+vault://secret/team-a/db#nope"),
        None,
    );
    h.request_reconcile(NS, "app").await;
    h.wait_not_ready(
        NS,
        "app",
        "BuildFailed",
        "key \"nope\" missing at Vault path \"secret/team-a/db\"",
    )
    .await;

    // Back to good, then Vault stops: not applied, nothing pruned, last revision kept.
    std::fs::remove_file(r.work.join("app/other.yaml")).unwrap();
    let c2 = r.commit("app/db.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/team-a/db#password\n  again: ref+vault://secret/team-a/db#password\n", None);
    h.request_reconcile(NS, "app").await;
    h.wait_ready(NS, "app", Some(&c2)).await;
    bao.stop();
    let c3 = r.commit("app/db.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/team-a/db#password\n", None);
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "BuildFailed", "unreachable")
        .await;
    let st = app.status.as_ref().unwrap();
    assert!(st.last_applied_revision.as_deref().unwrap().ends_with(&c2));
    assert!(
        st.last_attempted_revision
            .as_deref()
            .unwrap()
            .ends_with(&c3)
    );
    let s = h.secret(NS, "db").await.expect("nothing pruned");
    assert_eq!(
        secret_value(&s, "again"),
        format!("{CANARY_A}-1"),
        "c2 stays applied"
    );
    // Vault down is transient: retried (with backoff), never Stalled.
    assert!(
        st.condition("Stalled").is_none_or(|c| c.status != "True"),
        "{st:?}"
    );
    let failures = |m: &str| -> u64 {
        m.lines()
            .filter(|l| l.starts_with("lockstep_reconciles_total{") && !l.contains("success"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let f0 = failures(&support::cluster::controller_metrics(port).await);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while failures(&support::cluster::controller_metrics(port).await) < f0 + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no retry while Vault is down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Started again (a dev server forgets everything: seeded anew, with a new value). The
    // transient failure is retried with backoff; the cached login is gone on the new
    // server and is replaced once.
    let bao = tokio::task::spawn_blocking(move || {
        bao.restart();
        seed_approle(&bao, &format!("{CANARY_A}-2"));
        bao
    })
    .await
    .unwrap();
    // A retry may have hit the empty server before it was seeded (a denied login stalls
    // until something changes); a real Vault keeps its roles across a restart. Ask once.
    h.request_reconcile(NS, "app").await;
    h.wait_ready(NS, "app", Some(&c3)).await;
    let s = h.secret(NS, "db").await.unwrap();
    assert_eq!(secret_value(&s, "password"), format!("{CANARY_A}-2"));
    assert!(
        bao.audited(|p| p == "auth/token/lookup-self") >= 1,
        "the cached login was checked, found gone and replaced"
    );

    // Nothing outside saw a value.
    let metrics = support::cluster::controller_metrics(port).await;
    assert!(metrics.contains("lockstep_reconciles_total"), "{metrics}");
    child.stop();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.lines().count() > 20,
        "trace logging produced almost nothing"
    );
    let status = serde_json::to_string(&h.get_app(NS, "app").await.status).unwrap();
    let events = format!("{:?}", h.events(NS).await);
    for form in support::leak_forms(CANARY_A.as_bytes())
        .into_iter()
        .chain(support::leak_forms(b"team-a-secret-id-3f9"))
    {
        assert!(!logs.contains(&form), "a log line holds {form}");
        assert!(!status.contains(&form), "status holds {form}");
        assert!(!events.contains(&form), "an Event holds {form}");
        assert!(!metrics.contains(&form), "metrics hold {form}");
    }
}

/// Vault sealed, then hung: not applied, status names the cause, retried with backoff
/// (never Stalled), and the app recovers on its own once Vault answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_and_hung_vault_are_transient_and_named() {
    let bao = tokio::task::spawn_blocking(|| {
        let bao = OpenBao::start();
        bao.run(&["kv", "put", "-mount=secret", "team-a/db", "password=p1"]);
        bao.policy(
            "team-a",
            "path \"secret/data/team-a/*\" { capabilities = [\"read\"] }\n",
        );
        bao
    })
    .await
    .unwrap();
    let token = bao.token(&["team-a"], "1h");
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    h.tenant(NS).await;
    h.policy("tenants", &r.srv_dir(), json!({})).await;
    store_vault_token(&h, &token).await;
    let c1 = r.commit("app/db.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/team-a/db#password\n", None);
    token_app(
        &h,
        &r,
        &bao,
        json!({"retryInterval": "1m", "timeout": "30s", "prune": true}),
    )
    .await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    let not_stalled = |a: &lockstep::controller::application::Application| {
        a.status
            .as_ref()
            .and_then(|s| s.condition("Stalled"))
            .is_none_or(|c| c.status != "True")
    };

    // Sealed.
    bao.seal();
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(
            NS,
            "app",
            "BuildFailed",
            "Vault is sealed (\"secret/team-a/db\")",
        )
        .await;
    assert!(
        ready_message(&app).contains("app/db.yaml"),
        "{}",
        ready_message(&app)
    );
    assert!(not_stalled(&app));
    // Unsealed: the backoff retry (well before the one-minute retryInterval) recovers.
    bao.unseal();
    h.wait_ready(NS, "app", Some(&c1)).await;

    // Hung: every call is cut at the timeout and named.
    bao.pause();
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(
            NS,
            "app",
            "BuildFailed",
            "Vault timed out on \"secret/team-a/db\"",
        )
        .await;
    assert!(not_stalled(&app));
    assert!(h.secret(NS, "db").await.is_some(), "nothing pruned");
    bao.resume();
    h.wait_ready(NS, "app", Some(&c1)).await;
}

/// The controller process, stopped by its PID even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_grant_lets_the_reconciler_resolve_a_reference_in_a_configmap() {
    let bao = tokio::task::spawn_blocking(|| {
        let bao = OpenBao::start();
        bao.run(&[
            "kv",
            "put",
            "-mount=secret",
            "team-a/db",
            &format!("dsn={CANARY}-cm"),
        ]);
        bao.policy(
            "team-a",
            "path \"secret/data/team-a/*\" { capabilities = [\"read\"] }\n",
        );
        bao
    })
    .await
    .unwrap();
    let token = bao.token(&["team-a"], "1h");
    let reads = || support::openbao::audited_reads(&bao.audit_path(), "secret/data/team-a/db");
    let seeded = reads();
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    h.tenant(NS).await;
    h.policy(
        "tenants",
        &r.srv_dir(),
        json!({"vaultPaths": ["secret/data/team-a/"]}),
    )
    .await;
    store_vault_token(&h, &token).await;
    let c1 = r.commit("app/settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  mode: fast\n  dsn: ref+vault://secret/team-a/db#dsn\n", None);
    token_app(&h, &r, &bao, json!({"prune": true})).await;

    // No grant: refused before any read, naming the field that would allow it.
    h.wait_not_ready(
        NS,
        "app",
        "BuildFailed",
        "spec.vaultReferences.outsideSecrets",
    )
    .await;
    assert_eq!(reads(), seeded, "no Vault read without the grant");
    assert!(h.configmap(NS, "settings").await.is_none());

    // The cluster's Policy grants it: the ConfigMap is applied with the value.
    h.policy(
        "tenants",
        &r.srv_dir(),
        json!({"vaultPaths": ["secret/data/team-a/"], "vaultReferences": {"outsideSecrets": true}}),
    )
    .await;
    h.request_reconcile(NS, "app").await;
    let app = h.wait_ready(NS, "app", Some(&c1)).await;
    let cm = h.configmap(NS, "settings").await.expect("applied");
    let data = cm.data.unwrap_or_default();
    assert_eq!(data["dsn"], format!("{CANARY}-cm"));
    assert_eq!(data["mode"], "fast");
    assert!(reads() > seeded, "read from Vault once granted");
    assert!(!serde_json::to_string(&app.status).unwrap().contains(CANARY));

    // Another binding Policy forbids it: not applied again, the last applied stays.
    h.policy(
        "platform",
        &r.srv_dir(),
        json!({"vaultReferences": {"outsideSecrets": false}}),
    )
    .await;
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "BuildFailed", "policy \"platform\" forbids")
        .await;
    assert!(!serde_json::to_string(&app.status).unwrap().contains(CANARY));
    assert!(
        h.configmap(NS, "settings").await.is_some(),
        "nothing pruned"
    );
    assert!(!format!("{:?}", h.events(NS).await).contains(CANARY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_address_outside_the_policy_is_denied_before_any_call() {
    let bao = tokio::task::spawn_blocking(|| {
        let bao = OpenBao::start();
        bao.run(&[
            "kv",
            "put",
            "-mount=secret",
            "team-a/db",
            &format!("password={CANARY}-addr"),
        ]);
        bao
    })
    .await
    .unwrap();
    let token = bao.token(&["root"], "1h");
    let reads = || support::openbao::audited_reads(&bao.audit_path(), "secret/data/team-a/db");
    let seeded = reads();
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    h.tenant(NS).await;
    // The platform allows one Vault; the tenant names another (here: the real one, which
    // the Policy does not list, so no request may reach it).
    h.policy(
        "tenants",
        &r.srv_dir(),
        json!({"vaultAddresses": ["https://vault.example.com:8200"]}),
    )
    .await;
    store_vault_token(&h, &token).await;
    let c1 = r.commit("app/db.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/team-a/db#password\n", None);
    token_app(&h, &r, &bao, json!({})).await;
    let origin = bao.addr.trim_end_matches('/').to_owned();
    h.wait_not_ready(NS, "app", "PolicyDenied", "vaultAddresses")
        .await;
    assert_eq!(reads(), seeded, "no Vault call for a denied address");
    assert!(h.secret(NS, "db").await.is_none());

    // The platform lists this Vault: the same commit applies.
    h.policy(
        "tenants",
        &r.srv_dir(),
        json!({"vaultAddresses": ["https://vault.example.com:8200", origin]}),
    )
    .await;
    h.request_reconcile(NS, "app").await;
    h.wait_ready(NS, "app", Some(&c1)).await;
    let s = h.secret(NS, "db").await.expect("applied");
    assert_eq!(secret_value(&s, "password"), format!("{CANARY}-addr"));
    assert!(reads() > seeded);
}
