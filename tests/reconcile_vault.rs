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

fn vault_secret_app(r: &TestRepo, file: &str, body: &str) -> String {
    support::write(&r.work.join(file), body);
    support::git::git(&r.work, &["add", "-A"]);
    support::git::git(&r.work, &["commit", "-q", "-m", "vault refs"]);
    r.publish();
    r.head()
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
    let c1 = vault_secret_app(
        &r,
        "app/db.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/team-a/db#password\n",
    );
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
    let msg = support::cluster::ready_message(&app);
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
    let msg = support::cluster::ready_message(&app);
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
