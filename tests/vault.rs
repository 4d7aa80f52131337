//! Vault references against a real OpenBao dev server: `lockstep render --vault-addr`,
//! and the library resolver's logins, token cache and renewal, counted in OpenBao's
//! audit log.

mod support;

use std::time::Duration;

use lockstep::render::VaultResolver;
use lockstep::vault::{self, Auth, Endpoint, Secret, Vault};
use support::Sandbox;
use support::openbao::OpenBao;

const CANARY_V2: &str = "canary-v2-7f3a9c";
const CANARY_V1: &str = "canary-v1-51be02";

fn seed(bao: &OpenBao) {
    bao.run(&[
        "kv",
        "put",
        "-mount=secret",
        "team-a/db",
        &format!("password={CANARY_V2}"),
        "user=app",
    ]);
    bao.run(&[
        "kv",
        "put",
        "-mount=kv",
        "team-a/api",
        &format!("key={CANARY_V1}"),
    ]);
    bao.run(&[
        "kv",
        "put",
        "-mount=secret",
        "team-b/db",
        "password=other-tenant",
    ]);
    bao.policy(
        "team-a",
        "path \"secret/data/team-a/*\" { capabilities = [\"read\"] }\n\
         path \"kv/team-a/*\" { capabilities = [\"read\"] }\n",
    );
}

const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/data/team-a/db#password\n  again: ref+vault://secret/team-a/db#password\n  user: ref+vault://secret/team-a/db#user\n  api: ref+vault://kv/team-a/api#key\n";

fn render(sb: &Sandbox, bao: &OpenBao, token: &str, extra: &[&str]) -> support::Output {
    sb.write("token", token);
    let mut args = vec![
        "render".to_owned(),
        "app".into(),
        "--reveal".into(),
        "--vault-addr".into(),
        bao.addr.clone(),
        "--vault-token-file".into(),
        sb.path("token").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut c = sb.lockstep(&args);
    c.env("LOCKSTEP_LOG", "trace");
    support::run(&mut c)
}

#[test]
fn render_resolves_kv_v1_and_v2_once_per_path_and_logs_no_value() {
    let bao = OpenBao::start();
    seed(&bao);
    let token = bao.token(&["team-a"], "1h");
    let sb = Sandbox::new();
    sb.write("app/secret.yaml", SECRET);
    let before = bao.audited(|p| p.starts_with("secret/data/team-a/db"));
    let out = render(&sb, &bao, &token, &[]).ok();
    let text = out.stdout_str();
    assert!(
        text.contains(CANARY_V2) && text.contains(CANARY_V1),
        "{text}"
    );
    assert!(text.contains("user: app"), "{text}");
    assert!(!text.contains("ref+vault"), "{text}");
    // Three references to one KV v2 path (API and logical forms): one read.
    let reads = bao.audited(|p| p == "secret/data/team-a/db") - before;
    assert_eq!(reads, 1, "one read per distinct path");
    // Trace-level logs carry no value.
    assert!(!out.stderr.contains(CANARY_V2) && !out.stderr.contains(CANARY_V1));
    // Without --reveal the values are redacted.
    sb.write("token", &token);
    let mut c = sb.lockstep([
        "render",
        "app",
        "--vault-addr",
        &bao.addr,
        "--vault-token-file",
        &sb.path("token").display().to_string(),
    ]);
    let out = support::run(&mut c).ok();
    assert!(!out.all_text().contains(CANARY_V2));
}

#[test]
fn render_failures_name_the_reference_and_cause_without_values() {
    let mut bao = OpenBao::start();
    seed(&bao);
    let token = bao.token(&["team-a"], "1h");
    let sb = Sandbox::new();

    // Vault's own policy denies the path.
    sb.write(
        "app/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData:\n  p: ref+vault://secret/data/team-b/db#password\n",
    );
    let out = render(&sb, &bao, &token, &[]).fails_with(1);
    let err = out.all_text();
    assert!(
        err.contains("secret.yaml") && err.contains("stringData.p"),
        "{err}"
    );
    assert!(err.contains("denied"), "{err}");
    assert!(!err.contains("other-tenant"));

    // A lockstep policy refuses the path before any call.
    sb.write(
        "policies/p.yaml",
        "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: team-a-only}\nspec:\n  vaultPaths: ['secret/data/team-a/']\n",
    );
    let before = bao.audited(|p| p.contains("team-b"));
    let out = render(&sb, &bao, &token, &["--policy", "policies"]).fails_with(1);
    let err = out.all_text();
    assert!(
        err.contains("refused by policy") && err.contains("team-a-only"),
        "{err}"
    );
    assert_eq!(
        bao.audited(|p| p.contains("team-b")),
        before,
        "no call for a refused path"
    );

    // A key missing at the path.
    sb.write(
        "app/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData:\n  p: ref+vault://secret/team-a/db#nope\n",
    );
    let err = render(&sb, &bao, &token, &[]).fails_with(1).all_text();
    assert!(err.contains("key \"nope\" missing"), "{err}");
    assert!(!err.contains(CANARY_V2), "{err}");

    // A path that does not exist.
    sb.write(
        "app/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData:\n  p: ref+vault://secret/team-a/none#k\n",
    );
    let err = render(&sb, &bao, &token, &[]).fails_with(1).all_text();
    assert!(err.contains("not found"), "{err}");

    // Vault stopped: the render fails and says so; nothing printed.
    sb.write("app/secret.yaml", SECRET);
    bao.stop();
    let out = render(&sb, &bao, &token, &[]).fails_with(1);
    assert!(out.stdout.is_empty());
    assert!(out.all_text().contains("unreachable"), "{}", out.all_text());
}

#[test]
fn a_policy_lets_render_resolve_a_reference_in_a_configmap() {
    let bao = OpenBao::start();
    seed(&bao);
    let token = bao.token(&["team-a"], "1h");
    let sb = Sandbox::new();
    sb.write(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  mode: fast\n  password: ref+vault://secret/team-a/db#password\n",
    );
    let reads = || bao.audited(|p| p.starts_with("secret/data/team-a/db"));

    // Without a policy that grants it: refused, naming the field that would, no call.
    let before = reads();
    let err = render(&sb, &bao, &token, &[]).fails_with(1).all_text();
    assert!(
        err.contains("cm.yaml")
            && err.contains("ConfigMap \"settings\"")
            && err.contains("key path data.password")
            && err.contains("spec.vaultReferences.outsideSecrets: true"),
        "{err}"
    );
    assert_eq!(reads(), before, "refused before any Vault call");

    // The grant, but vaultPaths of the same policies refuse the path: still no call.
    sb.write(
        "policies/p.yaml",
        "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: team-a}\nspec:\n  vaultPaths: ['secret/data/team-b/']\n  vaultReferences: {outsideSecrets: true}\n",
    );
    let err = render(&sb, &bao, &token, &["--policy", "policies"])
        .fails_with(1)
        .all_text();
    assert!(
        err.contains("refused by policy") && err.contains("team-a"),
        "{err}"
    );
    assert_eq!(reads(), before, "vaultPaths checked before any call");

    // Granted with the right prefix: resolved, printed only with --reveal.
    sb.write(
        "policies/p.yaml",
        "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: team-a}\nspec:\n  vaultPaths: ['secret/data/team-a/']\n  vaultReferences: {outsideSecrets: true}\n",
    );
    let out = render(&sb, &bao, &token, &["--policy", "policies"]).ok();
    let text = out.stdout_str();
    assert!(
        text.contains(&format!("password: {CANARY_V2}")) && text.contains("mode: fast"),
        "{text}"
    );
    assert!(!out.stderr.contains(CANARY_V2), "trace logs carry no value");
    assert_eq!(reads(), before + 1);
    sb.write("token", &token);
    let mut c = sb.lockstep([
        "render",
        "app",
        "--policy",
        "policies",
        "--vault-addr",
        &bao.addr,
        "--vault-token-file",
        &sb.path("token").display().to_string(),
    ]);
    let out = support::run(&mut c).ok();
    let text = out.all_text();
    assert!(!text.contains(CANARY_V2), "{text}");
    assert!(text.contains("settings"), "{text}");

    // A second policy forbidding it wins.
    sb.write(
        "policies/q.yaml",
        "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: platform}\nspec:\n  vaultReferences: {outsideSecrets: false}\n",
    );
    let before = reads();
    let err = render(&sb, &bao, &token, &["--policy", "policies"])
        .fails_with(1)
        .all_text();
    assert!(err.contains("policy \"platform\" forbids"), "{err}");
    assert!(!err.contains(CANARY_V2));
    assert_eq!(reads(), before);
}

/// AppRole credentials of `role` as lockstep holds them: its role id and a new secret id.
fn approle_auth(bao: &OpenBao, role: &str) -> Auth {
    let role_id = bao.run(&[
        "read",
        "-field=role_id",
        &format!("auth/approle/role/{role}/role-id"),
    ]);
    let secret_id = bao.run(&[
        "write",
        "-f",
        "-field=secret_id",
        &format!("auth/approle/role/{role}/secret-id"),
    ]);
    Auth::AppRole {
        mount: "approle".into(),
        role_id: Secret::new(role_id.trim().into()),
        secret_id: Secret::new(secret_id.trim().into()),
    }
}

fn endpoint(bao: &OpenBao) -> Endpoint {
    Endpoint {
        address: bao.addr.clone(),
        namespace: None,
        ca_pem: None,
        timeout: Duration::from_secs(5),
    }
}

/// Runs `f` on a blocking thread of a runtime, as the reconciler's render does.
fn blocking<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    f: impl FnOnce(tokio::runtime::Handle) -> T + Send + 'static,
) -> T {
    let h = rt.handle().clone();
    rt.block_on(async move { tokio::task::spawn_blocking(move || f(h)).await.unwrap() })
}

#[test]
fn approle_logs_in_once_per_key_renews_and_never_shares_across_tenants() {
    let bao = OpenBao::start();
    seed(&bao);
    bao.run(&["auth", "enable", "approle"]);
    bao.run(&[
        "write",
        "auth/approle/role/team-a",
        "token_policies=team-a",
        "token_ttl=6s",
        "token_max_ttl=1h",
    ]);
    let auth = approle_auth(&bao, "team-a");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v = Vault::default();
    let logins = || bao.audited(|p| p == "auth/approle/login");
    let reads = || support::openbao::audited_reads(&bao.audit_path(), "secret/data/team-a/db");
    let reconcile = |tenant: &str| {
        let (v, ep, auth, tenant) = (v.clone(), endpoint(&bao), auth.clone(), tenant.to_owned());
        blocking(&rt, move |h| {
            let r = v.resolver(h, ep, auth, "ns/app".into(), tenant, vec![]);
            for _ in 0..5 {
                let got = r.resolve("secret/team-a/db", "password").unwrap();
                assert_eq!(got.expose(), CANARY_V2.as_bytes());
            }
        })
    };
    for _ in 0..3 {
        reconcile("team-a/deployer");
    }
    assert_eq!(logins(), 1, "one login for three reconciles");
    assert_eq!(reads(), 3, "one read per path per reconcile");
    // Another tenant with the same role gets its own login.
    reconcile("team-b/deployer");
    assert_eq!(logins(), 2);
    // Past two thirds of the 6s TTL the token is renewed, not replaced.
    std::thread::sleep(Duration::from_millis(4500));
    reconcile("team-a/deployer");
    assert_eq!(logins(), 2, "renewed, no new login");
    assert_eq!(bao.audited(|p| p == "auth/token/renew-self"), 1);
    assert_eq!(v.counters().renewals, 1);
}

#[test]
fn a_revoked_or_unknown_token_is_denied_and_budget_stops_a_storm() {
    let bao = OpenBao::start();
    seed(&bao);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v = Vault::new(3);
    let ep = endpoint(&bao);
    let err = blocking(&rt, move |h| {
        let r = v.resolver(
            h,
            ep,
            Auth::Token(Secret::new("not-a-token".into())),
            "ns/app".into(),
            "ns/sa".into(),
            vec![],
        );
        let paths = [
            "secret/team-a/a",
            "secret/team-a/b",
            "secret/team-a/c",
            "secret/team-a/d",
        ];
        paths
            .iter()
            .map(|p| r.resolve(p, "k").unwrap_err())
            .collect::<Vec<_>>()
    });
    assert!(err[0].contains("denied"), "{err:?}");
    assert!(err[3].contains("budget"), "{err:?}");
    let _ = vault::DEFAULT_TIMEOUT;
}

/// The scale goal, counted in OpenBao's audit log: 100 apps (10 tenants of 10 apps) with
/// 10 references each over 5 distinct paths, AppRole auth, two rounds (cold, warm).
#[test]
fn hundred_apps_ten_refs_one_login_per_tenant_one_read_per_path() {
    let bao = OpenBao::start();
    bao.run(&["auth", "enable", "approle"]);
    bao.policy(
        "apps",
        "path \"secret/data/apps/*\" { capabilities = [\"read\"] }\n",
    );
    bao.run(&[
        "write",
        "auth/approle/role/apps",
        "token_policies=apps",
        "token_ttl=1h",
    ]);
    for p in 0..5 {
        bao.run(&[
            "kv",
            "put",
            "-mount=secret",
            &format!("apps/p{p}"),
            "a=1",
            "b=2",
        ]);
    }
    let auth = approle_auth(&bao, "apps");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v = Vault::default();
    let count = |op_path: &str| bao.audited(|p| p == op_path);
    let reads = || {
        (0..5)
            .map(|p| {
                support::openbao::audited_reads(
                    &bao.audit_path(),
                    &format!("secret/data/apps/p{p}"),
                )
            })
            .sum::<usize>()
    };
    let mut rows = Vec::new();
    eprintln!("| round | logins | KV reads | mount lookups | wall time (debug build, 2 cores) |");
    eprintln!("|---|---|---|---|---|");
    for round in ["cold", "warm"] {
        let (l0, r0, m0) = (
            count("auth/approle/login"),
            reads(),
            v.counters().mount_lookups,
        );
        let started = std::time::Instant::now();
        for app in 0..100 {
            let (v, ep, auth) = (v.clone(), endpoint(&bao), auth.clone());
            blocking(&rt, move |h| {
                let r = v.resolver(
                    h,
                    ep,
                    auth,
                    format!("t{}/app{app}", app / 10),
                    format!("t{}/deployer", app / 10),
                    vec![],
                );
                for i in 0..10 {
                    let key = if i % 2 == 0 { "a" } else { "b" };
                    r.resolve(&format!("secret/apps/p{}", i / 2), key).unwrap();
                }
            });
        }
        let (logins, rds) = (count("auth/approle/login") - l0, reads() - r0);
        let lookups = v.counters().mount_lookups - m0;
        eprintln!(
            "| {round} | {logins} | {rds} | {lookups} | {:.2} s |",
            started.elapsed().as_secs_f64()
        );
        rows.push((logins, rds, lookups));
    }
    assert_eq!(
        rows[0],
        (10, 500, 1),
        "cold: one login per tenant, one read per path per app"
    );
    assert_eq!(rows[1], (0, 500, 0), "warm: cached tokens and mounts");
}

/// The same 100 apps with Kubernetes auth against devcluster: each of the 10 tenants'
/// `deployer` logs in to its own role with a TokenRequest token bound to the Vault
/// audience. Logins counted in OpenBao's audit log, TokenRequests in devcluster's metrics.
#[test]
fn hundred_apps_kubernetes_auth_one_login_and_one_token_request_per_tenant() {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    use kube::Api;
    use kube::api::PostParams;
    use serde_json::json;

    let bao = OpenBao::start();
    for p in 0..5 {
        bao.run(&[
            "kv",
            "put",
            "-mount=secret",
            &format!("apps/p{p}"),
            "a=1",
            "b=2",
        ]);
    }
    bao.policy(
        "apps",
        "path \"secret/data/apps/*\" { capabilities = [\"read\"] }\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (cluster, admin) = rt.block_on(async {
        let cluster = devcluster::DevCluster::start(devcluster::Config::default())
            .await
            .unwrap();
        let admin = support::cluster::client_with_token(&cluster, &cluster.admin_token()).await;
        async fn create<K>(api: Api<K>, v: serde_json::Value)
        where
            K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
        {
            api.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                .await
                .unwrap();
        }
        for ns in (0..10).map(|t| format!("t{t}")).chain(["vault-auth".into()]) {
            create::<Namespace>(Api::all(admin.clone()), json!({"metadata": {"name": ns}})).await;
            let sa = if ns == "vault-auth" { "vault-reviewer" } else { "deployer" };
            create::<ServiceAccount>(
                Api::namespaced(admin.clone(), &ns),
                json!({"metadata": {"name": sa}}),
            )
            .await;
        }
        create::<ClusterRoleBinding>(
            Api::all(admin.clone()),
            json!({
                "metadata": {"name": "vault-reviewer"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
                "subjects": [{"kind": "ServiceAccount", "name": "vault-reviewer", "namespace": "vault-auth"}],
            }),
        )
        .await;
        (cluster, admin)
    });
    let reviewer = cluster
        .service_account_token("vault-auth", "vault-reviewer")
        .unwrap();
    bao.kubernetes_auth(&cluster.url(), &cluster.ca_pem(), &reviewer);
    for t in 0..10 {
        bao.kubernetes_role(
            &format!("t{t}"),
            &format!("t{t}"),
            "deployer",
            "apps",
            &bao.addr,
        );
    }
    // The reconciler's own JWT source (here as admin: this test has no impersonation).
    let jwt_for = |ns: String| {
        lockstep::controller::reconcile::token_request_jwt(
            admin.clone(),
            ns,
            "deployer".into(),
            bao.addr.clone(),
        )
    };
    let v = Vault::default();
    let token_requests = || {
        cluster.request_count_where(&[
            ("verb", "create"),
            ("resource", "serviceaccounts"),
            ("user", "admin"),
        ])
    };
    let mut rows = Vec::new();
    eprintln!("| round | logins | TokenRequests | KV reads | wall time (debug build, 2 cores) |");
    eprintln!("|---|---|---|---|---|");
    for round in ["cold", "warm"] {
        let (l0, t0) = (
            bao.audited(|p| p == "auth/kubernetes/login"),
            token_requests(),
        );
        let audited_reads = || {
            (0..5)
                .map(|p| {
                    support::openbao::audited_reads(
                        &bao.audit_path(),
                        &format!("secret/data/apps/p{p}"),
                    )
                })
                .sum::<usize>()
        };
        let r0 = audited_reads();
        let started = std::time::Instant::now();
        for app in 0..100 {
            let tenant = format!("t{}", app / 10);
            let auth = Auth::Kubernetes {
                mount: "kubernetes".into(),
                role: tenant.clone(),
                jwt: jwt_for(tenant.clone()),
            };
            let (v, ep) = (v.clone(), endpoint(&bao));
            blocking(&rt, move |h| {
                let r = v.resolver(
                    h,
                    ep,
                    auth,
                    format!("{tenant}/app{app}"),
                    format!("system:serviceaccount:{tenant}:deployer"),
                    vec![],
                );
                for i in 0..10 {
                    let key = if i % 2 == 0 { "a" } else { "b" };
                    r.resolve(&format!("secret/apps/p{}", i / 2), key).unwrap();
                }
            });
        }
        let logins = bao.audited(|p| p == "auth/kubernetes/login") - l0;
        let trs = token_requests() - t0;
        let reads = audited_reads() - r0;
        eprintln!(
            "| {round} | {logins} | {trs} | {reads} | {:.2} s |",
            started.elapsed().as_secs_f64()
        );
        rows.push((logins, trs, reads));
    }
    assert_eq!(
        rows[0],
        (10, 10, 500),
        "cold: one login and one TokenRequest per tenant"
    );
    assert_eq!(rows[1], (0, 0, 500), "warm: cached tokens, no TokenRequest");
    rt.block_on(cluster.shutdown());
}
