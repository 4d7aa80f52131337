//! Authentication, impersonation, RBAC and the review APIs with the real kubectl and kube-rs.

mod common;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const SA: &str = "system:serviceaccount:team-a:deployer";
const SA_GROUPS: [&str; 3] = [
    "system:serviceaccounts",
    "system:serviceaccounts:team-a",
    "system:authenticated",
];

/// Namespace team-a with service account deployer.
async fn team_a(env: &common::Env) {
    env.kubectl_ok(&["create", "ns", "team-a"]).await;
    env.kubectl_ok(&["create", "serviceaccount", "deployer", "-n", "team-a"])
        .await;
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// kubectl's wording for a 401, on discovery or on the request itself.
fn unauthorized(stderr: &str) -> bool {
    stderr.contains("Unauthorized") || stderr.contains("provide credentials")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_can_i_whoami_and_bootstrap_roles() {
    let env = common::start().await;
    team_a(&env).await;
    let as_sa = format!("--as={SA}");
    let can_i = ["auth", "can-i", "create", "configmaps", "-n", "team-a"];

    let out = env.kubectl(&[&can_i[..], &[as_sa.as_str()]].concat()).await;
    assert_eq!(stdout(&out).trim(), "no", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1));

    env.kubectl_ok(&[
        "create",
        "role",
        "deployer",
        "-n",
        "team-a",
        "--verb=create,get,list",
        "--resource=configmaps",
    ])
    .await;
    env.kubectl_ok(&[
        "create",
        "rolebinding",
        "deployer",
        "-n",
        "team-a",
        "--role=deployer",
        "--serviceaccount=team-a:deployer",
    ])
    .await;
    let out = env.kubectl(&[&can_i[..], &[as_sa.as_str()]].concat()).await;
    assert_eq!(stdout(&out).trim(), "yes", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    // Other namespaces and verbs stay closed.
    let out = env
        .kubectl(&[
            "auth",
            "can-i",
            "delete",
            "configmaps",
            "-n",
            "team-a",
            &as_sa,
        ])
        .await;
    assert_eq!(stdout(&out).trim(), "no");
    let out = env
        .kubectl(&[
            "auth",
            "can-i",
            "create",
            "configmaps",
            "-n",
            "default",
            &as_sa,
        ])
        .await;
    assert_eq!(stdout(&out).trim(), "no");

    let list = env
        .kubectl_ok(&["auth", "can-i", "--list", "-n", "team-a", &as_sa])
        .await;
    let line = list
        .lines()
        .find(|l| l.starts_with("configmaps "))
        .unwrap_or("");
    assert!(line.contains("[create get list]"), "{list}");
    assert!(
        list.lines().any(|l| l.contains("selfsubjectaccessreviews")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("  ") || l.contains("[/api/*]")),
        "{list}"
    );

    let who: Value = serde_json::from_str(
        &env.kubectl_ok(&["auth", "whoami", "-o", "json", &as_sa])
            .await,
    )
    .expect("json");
    assert_eq!(who["kind"], "SelfSubjectReview");
    assert_eq!(who["status"]["userInfo"]["username"], SA);
    assert_eq!(who["status"]["userInfo"]["groups"], json!(SA_GROUPS));
    let me = env.kubectl_ok(&["auth", "whoami"]).await;
    assert!(
        me.contains("admin") && me.contains("system:masters"),
        "{me}"
    );

    // The bootstrap policy is visible like on a real cluster, aggregated rules filled in.
    let roles = env.kubectl_ok(&["get", "clusterroles", "-o", "name"]).await;
    for r in ["cluster-admin", "admin", "edit", "view", "system:discovery"] {
        assert!(
            roles
                .lines()
                .any(|l| l == format!("clusterrole.rbac.authorization.k8s.io/{r}")),
            "{r}: {roles}"
        );
    }
    let view: Value = serde_json::from_str(
        &env.kubectl_ok(&["get", "clusterrole", "view", "-o", "json"])
            .await,
    )
    .expect("json");
    assert!(
        view["rules"].as_array().is_some_and(|r| !r.is_empty()),
        "{view}"
    );
    let bindings = env
        .kubectl_ok(&["get", "clusterrolebindings", "-o", "name"])
        .await;
    assert!(bindings.contains("clusterrolebinding.rbac.authorization.k8s.io/system:discovery"));
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_service_account_token_review_and_bearer() {
    let env = common::start().await;
    team_a(&env).await;
    let token = env
        .kubectl_ok(&["create", "token", "deployer", "-n", "team-a"])
        .await
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");

    let review = env.write(
        "tokenreview.json",
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token}})
        .to_string(),
    );
    let out: Value = serde_json::from_str(
        &env.kubectl_ok(&["create", "-f", &review, "-o", "json"])
            .await,
    )
    .expect("json");
    assert_eq!(out["status"]["authenticated"], true, "{out}");
    assert_eq!(out["status"]["user"]["username"], SA);
    assert_eq!(out["status"]["user"]["groups"], json!(SA_GROUPS));
    let sa: Value = serde_json::from_str(
        &env.kubectl_ok(&["get", "sa", "deployer", "-n", "team-a", "-o", "json"])
            .await,
    )
    .expect("json");
    assert_eq!(out["status"]["user"]["uid"], sa["metadata"]["uid"]);

    // The token as bearer: authenticated, but RBAC forbids until a binding exists.
    let as_token = |args: &[&str]| -> Vec<String> {
        let mut v = vec![format!("--token={token}")];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>| {
        let env = &env;
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            env.kubectl(&refs).await
        }
    };
    let out = run(as_token(&["get", "configmaps", "-n", "team-a"])).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "Error from server (Forbidden): configmaps is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team-a\""
        ),
        "{}",
        stderr(&out)
    );
    let out = run(as_token(&["delete", "configmap", "x", "-n", "team-a"])).await;
    assert!(
        stderr(&out).contains(
            "Error from server (Forbidden): configmaps \"x\" is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"team-a\""
        ),
        "{}",
        stderr(&out)
    );
    env.kubectl_ok(&[
        "create",
        "rolebinding",
        "deployer-view",
        "-n",
        "team-a",
        "--clusterrole=view",
        "--serviceaccount=team-a:deployer",
    ])
    .await;
    let out = run(as_token(&["get", "configmaps", "-n", "team-a"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(as_token(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]))
    .await;
    assert_eq!(stdout(&out), SA, "{}", stderr(&out));

    // Deleting the service account invalidates its tokens.
    env.kubectl_ok(&["delete", "sa", "deployer", "-n", "team-a"])
        .await;
    let out = run(as_token(&["get", "configmaps", "-n", "team-a"])).await;
    assert!(!out.status.success());
    assert!(unauthorized(&stderr(&out)), "{}", stderr(&out));
    let out: Value = serde_json::from_str(
        &env.kubectl_ok(&["create", "-f", &review, "-o", "json"])
            .await,
    )
    .expect("json");
    assert_ne!(out["status"]["authenticated"], true, "{out}");
    assert!(out["status"]["error"].is_string(), "{out}");

    // Garbage tokens are 401 too.
    let out = env
        .kubectl(&["--token=not-a-token", "get", "configmaps", "-n", "team-a"])
        .await;
    assert!(unauthorized(&stderr(&out)), "{}", stderr(&out));
    env.cluster.shutdown().await;
}

const BOUND_POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"runner","namespace":"team-a"},
"spec":{"serviceAccountName":"deployer","containers":[{"name":"c","image":"busybox"}]}}"#;

/// A token bound to a Pod or Secret authenticates only while that very object (same uid)
/// exists: deleting it, or replacing it with a namesake, ends the token, for bearer
/// authentication and for TokenReview alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_bound_token_dies_with_its_pod_or_secret() {
    let env = common::start().await;
    team_a(&env).await;
    let pod = env.write("pod.json", BOUND_POD);
    env.kubectl_ok(&["create", "-f", &pod]).await;
    env.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "bound",
        "-n",
        "team-a",
        "--from-literal=k=v",
    ])
    .await;
    let whoami = |token: String| {
        let env = &env;
        async move {
            env.kubectl(&[
                &format!("--token={token}"),
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ])
            .await
        }
    };
    let review = |token: &str| {
        let env = &env;
        let file = env.write(
            "review.json",
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": token}})
            .to_string(),
        );
        async move {
            let out = env.kubectl_ok(&["create", "-f", &file, "-o", "json"]).await;
            serde_json::from_str::<Value>(&out).expect("json")
        }
    };
    for (kind, name, delete, recreate) in [
        (
            "Pod",
            "runner",
            vec!["delete", "pod", "runner", "-n", "team-a"],
            vec!["create", "-f", pod.as_str()],
        ),
        (
            "Secret",
            "bound",
            vec!["delete", "secret", "bound", "-n", "team-a"],
            vec![
                "create",
                "secret",
                "generic",
                "bound",
                "-n",
                "team-a",
                "--from-literal=k=v",
            ],
        ),
    ] {
        let token = env
            .kubectl_ok(&[
                "create",
                "token",
                "deployer",
                "-n",
                "team-a",
                &format!("--bound-object-kind={kind}"),
                &format!("--bound-object-name={name}"),
            ])
            .await
            .trim()
            .to_string();
        let out = whoami(token.clone()).await;
        assert_eq!(stdout(&out), SA, "{kind}: {}", stderr(&out));
        assert_eq!(review(&token).await["status"]["authenticated"], true);

        env.kubectl_ok(&delete).await;
        let out = whoami(token.clone()).await;
        assert!(!out.status.success(), "{kind}: token outlived its object");
        assert!(unauthorized(&stderr(&out)), "{kind}: {}", stderr(&out));
        let r = review(&token).await;
        assert_ne!(r["status"]["authenticated"], true, "{kind}: {r}");
        assert_eq!(
            r["status"]["error"], "service account token has been invalidated",
            "{kind}: {r}"
        );

        // A new object of the same name is not the one the token was bound to.
        env.kubectl_ok(&recreate).await;
        let out = whoami(token.clone()).await;
        assert!(unauthorized(&stderr(&out)), "{kind}: {}", stderr(&out));
        let r = review(&token).await;
        assert_ne!(r["status"]["authenticated"], true, "{kind}: {r}");
        let claim = kind.to_ascii_lowercase();
        assert!(
            r["status"]["error"]
                .as_str()
                .is_some_and(|e| e.starts_with(&format!("{claim} UID ("))
                    && e.contains(&format!("service account {claim} ref claim"))),
            "{kind}: {r}"
        );
    }
    env.cluster.shutdown().await;
}

/// `bind` is granted per API group: holding it on some other group's "clusterroles" must not
/// let a user bind `cluster-admin`. kube-apiserver refuses any roleRef outside the RBAC group
/// (422), so such a binding is never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_bind_on_another_group_cannot_bind_cluster_admin() {
    let env = common::start().await;
    team_a(&env).await;
    env.cluster.add_user_token("mallory-token", "mallory", &[]);
    let binder = env.write(
        "binder.json",
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "foreign-binder"},
             "rules": [
                {"apiGroups": ["rbac.authorization.k8s.io"],
                 "resources": ["clusterrolebindings", "rolebindings"], "verbs": ["create", "get"]},
                {"apiGroups": ["foo.example.com"], "resources": ["clusterroles"], "verbs": ["bind"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "foreign-binder"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": "foreign-binder"},
             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}]}]})
        .to_string(),
    );
    env.kubectl_ok(&["create", "-f", &binder]).await;
    let binding = |kind: &str, group: &str| {
        let mut meta = json!({"name": "mallory-admin"});
        if kind == "RoleBinding" {
            meta["namespace"] = json!("team-a");
        }
        env.write(
            "grab.json",
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
                    "roleRef": {"apiGroup": group, "kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                  "name": "mallory"}]})
            .to_string(),
        )
    };
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let out = env
            .kubectl(&[
                "--token=mallory-token",
                "create",
                "-f",
                &binding(kind, "foo.example.com"),
            ])
            .await;
        assert!(!out.status.success(), "{kind} to cluster-admin was stored");
        assert!(
            stderr(&out).contains(&format!(
                "The {kind} \"mallory-admin\" is invalid: roleRef.apiGroup: Unsupported value: \"foo.example.com\": supported values: \"rbac.authorization.k8s.io\""
            )),
            "{}",
            stderr(&out)
        );
        // The real group: the bind grant on the other group does not count, so escalation is
        // refused.
        let out = env
            .kubectl(&[
                "--token=mallory-token",
                "create",
                "-f",
                &binding(kind, "rbac.authorization.k8s.io"),
            ])
            .await;
        assert!(
            stderr(&out).contains("is attempting to grant RBAC permissions not currently held"),
            "{}",
            stderr(&out)
        );
        let lower = kind.to_ascii_lowercase();
        let out = env
            .kubectl(&["get", &lower, "mallory-admin", "-n", "team-a"])
            .await;
        assert!(stderr(&out).contains("NotFound"), "{}", stderr(&out));
    }
    let out = env
        .kubectl(&[
            "--token=mallory-token",
            "auth",
            "can-i",
            "delete",
            "secrets",
            "-A",
        ])
        .await;
    assert_eq!(stdout(&out).trim(), "no");

    // roleRef is immutable: a binding to another role is a new binding.
    env.kubectl_ok(&[
        "create",
        "rolebinding",
        "viewers",
        "-n",
        "team-a",
        "--clusterrole=view",
        "--user=bob",
    ])
    .await;
    let out = env
        .kubectl(&[
            "patch",
            "rolebinding",
            "viewers",
            "-n",
            "team-a",
            "--type=merge",
            "-p",
            r#"{"roleRef":{"name":"cluster-admin"}}"#,
        ])
        .await;
    assert!(
        stderr(&out).contains(
            r#"roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"cluster-admin"}: cannot change roleRef"#
        ),
        "{}",
        stderr(&out)
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_impersonation_needs_permission() {
    // `--raw` skips discovery: a 403 on a discovery document shows kubectl's own message.
    let env = common::start().await;
    team_a(&env).await;
    env.cluster.add_user_token("alice-token", "alice", &[]);
    let out = env
        .kubectl(&[
            "--token=alice-token",
            "get",
            "--raw",
            "/api/v1/namespaces/team-a/configmaps",
            &format!("--as={SA}"),
        ])
        .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "serviceaccounts \"deployer\" is forbidden: User \"alice\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"team-a\""
        ),
        "{}",
        stderr(&out)
    );
    let out = env
        .kubectl(&["--token=alice-token", "get", "--raw", "/api", "--as=bob"])
        .await;
    assert!(
        stderr(&out).contains(
            "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        ),
        "{}",
        stderr(&out)
    );
    // Non-resource paths: alice may read /version (system:public-info-viewer) but not /metrics.
    let out = env
        .kubectl(&["--token=alice-token", "get", "--raw", "/version"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .kubectl(&["--token=alice-token", "get", "--raw", "/metrics"])
        .await;
    assert!(
        stderr(&out).contains(
            "Error from server (Forbidden): forbidden: User \"alice\" cannot get path \"/metrics\""
        ),
        "{}",
        stderr(&out)
    );
    env.cluster.shutdown().await;
}

/// A kube-rs client acting as `user` (and `groups`) through impersonation, as lockstep's
/// engine does per application.
async fn impersonating(env: &common::Env, user: &str, groups: Option<Vec<String>>) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&env.cluster.kubeconfig()).expect("kubeconfig");
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("client config");
    cfg.auth_info.impersonate = Some(user.to_string());
    cfg.auth_info.impersonate_groups = groups;
    kube::Client::try_from(cfg).expect("client")
}

fn forbidden(r: Result<impl std::fmt::Debug, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(s)) if s.is_forbidden() && s.code == 403 => s.message.clone(),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_impersonation_follows_rbac() {
    let env = common::start().await;
    team_a(&env).await;
    let sa = impersonating(&env, SA, None).await;
    let cms: Api<ConfigMap> = Api::namespaced(sa.clone(), "team-a");
    let msg = forbidden(cms.list(&ListParams::default()).await);
    assert_eq!(
        msg,
        "configmaps is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team-a\""
    );
    env.kubectl_ok(&[
        "create",
        "rolebinding",
        "deployer-view",
        "-n",
        "team-a",
        "--clusterrole=view",
        "--serviceaccount=team-a:deployer",
    ])
    .await;
    cms.list(&ListParams::default()).await.expect("allowed now");
    // view does not include writes.
    let cm: ConfigMap = serde_json::from_value(
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1"}}),
    )
    .expect("configmap");
    forbidden(cms.create(&Default::default(), &cm).await);

    // With explicit groups the SA groups are gone: only bindings for the user or those
    // groups count.
    let carol = impersonating(&env, "carol", Some(vec!["team-a-devs".into()])).await;
    let carol_cms: Api<ConfigMap> = Api::namespaced(carol, "team-a");
    let msg = forbidden(carol_cms.create(&Default::default(), &cm).await);
    assert!(
        msg.contains("User \"carol\" cannot create resource \"configmaps\""),
        "{msg}"
    );
    env.kubectl_ok(&[
        "create",
        "rolebinding",
        "devs-edit",
        "-n",
        "team-a",
        "--clusterrole=edit",
        "--group=team-a-devs",
    ])
    .await;
    carol_cms
        .create(&Default::default(), &cm)
        .await
        .expect("edit allows create");
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_prevention_for_bindings() {
    let env = common::start().await;
    env.kubectl_ok(&["create", "ns", "team-a"]).await;
    env.kubectl_ok(&["create", "serviceaccount", "reconciler", "-n", "team-a"])
        .await;
    env.kubectl_ok(&[
        "create",
        "role",
        "rbac-writer",
        "-n",
        "team-a",
        "--verb=create,get,list",
        "--resource=rolebindings,configmaps",
    ])
    .await;
    env.kubectl_ok(&[
        "create",
        "rolebinding",
        "reconciler",
        "-n",
        "team-a",
        "--role=rbac-writer",
        "--serviceaccount=team-a:reconciler",
    ])
    .await;
    let token = env
        .cluster
        .service_account_token("team-a", "reconciler")
        .expect("token");
    let tok = format!("--token={token}");
    let out = env
        .kubectl(&[
            &tok,
            "create",
            "rolebinding",
            "grab-admin",
            "-n",
            "team-a",
            "--clusterrole=cluster-admin",
            "--serviceaccount=team-a:reconciler",
        ])
        .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "rolebindings.rbac.authorization.k8s.io \"grab-admin\" is forbidden: user \"system:serviceaccount:team-a:reconciler\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:team-a\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}\n{NonResourceURLs:[\"*\"], Verbs:[\"*\"]}"
        ),
        "{}",
        stderr(&out)
    );
    // Binding a role whose permissions the requester holds is fine.
    env.kubectl_ok(&[
        &tok,
        "create",
        "rolebinding",
        "share",
        "-n",
        "team-a",
        "--role=rbac-writer",
        "--user=dave",
    ])
    .await;
    // Cluster-wide bindings need cluster-wide permission in the first place.
    let out = env
        .kubectl(&[
            &tok,
            "create",
            "clusterrolebinding",
            "grab",
            "--clusterrole=cluster-admin",
            "--user=dave",
        ])
        .await;
    assert!(
        stderr(&out).contains(
            "clusterrolebindings.rbac.authorization.k8s.io is forbidden: User \"system:serviceaccount:team-a:reconciler\" cannot create resource \"clusterrolebindings\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"
        ),
        "{}",
        stderr(&out)
    );
    // Reviews: SubjectAccessReview by the admin, LocalSubjectAccessReview in the namespace.
    let sar = env.write(
        "sar.json",
        &json!({"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
            "spec":{"user":"dave","resourceAttributes":{"namespace":"team-a","verb":"create","resource":"rolebindings","group":"rbac.authorization.k8s.io"}}})
        .to_string(),
    );
    let out: Value =
        serde_json::from_str(&env.kubectl_ok(&["create", "-f", &sar, "-o", "json"]).await)
            .expect("json");
    assert_eq!(out["status"]["allowed"], true, "{out}");
    assert_eq!(
        out["status"]["reason"],
        "RBAC: allowed by RoleBinding \"share/team-a\" of Role \"rbac-writer\" to User \"dave\""
    );
    let lsar = env.write(
        "lsar.json",
        &json!({"apiVersion":"authorization.k8s.io/v1","kind":"LocalSubjectAccessReview",
            "metadata":{"namespace":"team-a"},
            "spec":{"user":"dave","resourceAttributes":{"namespace":"team-a","verb":"delete","resource":"configmaps"}}})
        .to_string(),
    );
    let out: Value =
        serde_json::from_str(&env.kubectl_ok(&["create", "-f", &lsar, "-o", "json"]).await)
            .expect("json");
    assert_eq!(out["status"]["allowed"], false, "{out}");
    env.cluster.shutdown().await;
}

/// kube-apiserver takes a body's missing `apiVersion` and `kind` from the URL: Vault's
/// kubernetes auth posts its TokenReview as a bare `{"spec": {...}, "status": {...}}`
/// (Go's zero TypeMeta), with an audience, and reads `status.user` back. A body naming
/// another kind is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_without_type_take_it_from_the_url() {
    let env = common::start().await;
    team_a(&env).await;
    let token = env
        .kubectl_ok(&[
            "create",
            "token",
            "deployer",
            "-n",
            "team-a",
            "--audience=https://vault.example",
        ])
        .await
        .trim()
        .to_string();
    let bare = env.write(
        "bare-review.json",
        &json!({"metadata": {"creationTimestamp": null},
                "spec": {"token": token, "audiences": ["https://vault.example"]},
                "status": {"user": {}}})
        .to_string(),
    );
    let out: Value = serde_json::from_str(
        &env.kubectl_ok(&[
            "create",
            "--raw",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "-f",
            &bare,
        ])
        .await,
    )
    .expect("json");
    assert_eq!(out["kind"], "TokenReview", "{out}");
    assert_eq!(out["apiVersion"], "authentication.k8s.io/v1", "{out}");
    assert_eq!(out["status"]["authenticated"], true, "{out}");
    assert_eq!(out["status"]["user"]["username"], SA);
    assert_eq!(out["status"]["audiences"], json!(["https://vault.example"]));

    // An ordinary create too: the stored object has its kind.
    let cm = env.write(
        "bare-cm.json",
        &json!({"metadata": {"name": "bare"}, "data": {"a": "1"}}).to_string(),
    );
    env.kubectl_ok(&[
        "create",
        "--raw",
        "/api/v1/namespaces/team-a/configmaps",
        "-f",
        &cm,
    ])
    .await;
    let got: Value = serde_json::from_str(
        &env.kubectl_ok(&["get", "cm", "bare", "-n", "team-a", "-o", "json"])
            .await,
    )
    .expect("json");
    assert_eq!(got["kind"], "ConfigMap");
    assert_eq!(got["data"]["a"], "1");

    // Another kind in the body is a 400, as before.
    let wrong = env.write(
        "wrong-kind.json",
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "w"}}).to_string(),
    );
    let out = env
        .kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/team-a/configmaps",
            "-f",
            &wrong,
        ])
        .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not match the expected API version (v1) and kind (ConfigMap)"),
        "{}",
        stderr(&out)
    );
    env.cluster.shutdown().await;
}
