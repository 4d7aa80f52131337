//! Cluster access against devcluster: impersonated clients over one connection pool,
//! discovery, and ordered server-side apply (order, idempotence, denials, dry runs,
//! conflicts, and Secret values kept out of errors).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use devcluster::DevCluster;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use lockstep::cluster::apply::{
    Action, ApplyError, ApplyErrorKind, ApplyMode, ApplyOptions, apply_all,
};
use lockstep::cluster::client::Clients;
use lockstep::cluster::discovery::Discovery;
use lockstep::render::{Origin, RenderedObject};

struct Env {
    cluster: DevCluster,
    clients: Clients,
    config: kube::Config,
    discovery: Discovery,
}

impl Env {
    async fn start() -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cluster = DevCluster::start(devcluster::Config::default())
            .await
            .expect("devcluster starts");
        let kc = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig()).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("client config");
        let clients = Clients::new(cfg.clone()).expect("clients");
        Env {
            cluster,
            clients,
            config: cfg,
            discovery: Discovery::new(),
        }
    }

    fn admin(&self) -> kube::Client {
        self.clients.controller()
    }

    async fn apply(
        &self,
        client: &kube::Client,
        objects: &[RenderedObject],
        mode: ApplyMode,
    ) -> Result<Vec<lockstep::cluster::apply::Applied>, ApplyError> {
        let opts = ApplyOptions {
            mode,
            crd_established_timeout: Duration::from_secs(10),
            force: false,
        };
        apply_all(client, &self.discovery, objects, &opts).await
    }

    /// Applies as the controller and requires success.
    async fn setup(&self, file: &str, yaml: &str) {
        let objs = objects(file, yaml);
        if let Err(e) = self.apply(&self.admin(), &objs, ApplyMode::Apply).await {
            panic!("setup {file} failed: {e}");
        }
    }

    /// Whether the object exists, read as the controller.
    async fn exists(&self, path: &str) -> bool {
        let req = http::Request::get(path)
            .body(kube::client::Body::from(Vec::new()))
            .expect("request");
        let res = self.admin().send(req).await.expect("GET answered");
        match res.status().as_u16() {
            200 => true,
            404 => false,
            other => panic!("GET {path}: unexpected {other}"),
        }
    }

    fn writes(&self) -> u64 {
        ["create", "update", "delete", "deletecollection"]
            .iter()
            .map(|v| self.cluster.request_count_where(&[("verb", v)]))
            .sum()
    }

    fn patches(&self) -> u64 {
        self.cluster.request_count_where(&[("verb", "patch")])
    }
}

/// The documents of `yaml` as rendered objects from `file`.
fn objects(file: &str, yaml: &str) -> Vec<RenderedObject> {
    lockstep::sops::stores::yaml::parse_manifest(yaml)
        .expect("test YAML parses")
        .into_iter()
        .enumerate()
        .map(|(i, doc)| RenderedObject {
            doc,
            origin: Origin {
                file: PathBuf::from(file),
                document: i + 1,
            },
            sealed_scope: None,
            vault_paths: vec![],
            holds_secrets: false,
        })
        .collect()
}

const TENANT: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: team-a}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: nobody, namespace: team-a}
"#;

const GRANT: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deployer, namespace: team-a}
rules:
- apiGroups: [""]
  resources: [configmaps, secrets]
  verbs: [get, list, watch, create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deployer, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects:
- {kind: ServiceAccount, name: deployer, namespace: team-a}
"#;

/// Client-side sockets connected to `port` (ESTABLISHED), from /proc/net/tcp{,6}. The
/// server runs in this process too; its sockets have `port` as the local port instead.
fn client_connections(port: u16) -> usize {
    let mut n = 0;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || cols[3] != "01" {
                continue;
            }
            let remote_port = cols[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) {
                n += 1;
            }
        }
    }
    n
}

fn port_of(cluster: &DevCluster) -> u16 {
    cluster
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("url has a port")
}

#[tokio::test]
async fn impersonated_clients_share_one_pool_and_rbac_decides() {
    let env = Env::start().await;
    env.setup("tenant.yaml", TENANT).await;
    let deployer = env.clients.for_service_account("team-a", "deployer");
    let nobody = env.clients.for_service_account("team-a", "nobody");
    env.clients.for_service_account("team-a", "deployer");
    assert_eq!(env.clients.cached_accounts(), 2, "one client per account");

    // Without a binding the account is denied, and the denial names it.
    let cms: Api<ConfigMap> = Api::namespaced(deployer.clone(), "team-a");
    match cms.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(
                s.message.contains("system:serviceaccount:team-a:deployer"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }

    env.setup("grant.yaml", GRANT).await;
    cms.list(&ListParams::default())
        .await
        .expect("allowed once bound");

    // Both identities at once, through the same pool: each gets its own answer.
    let before_deployer = env.cluster.request_count_where(&[
        ("user", "system:serviceaccount:team-a:deployer"),
        ("code", "200"),
    ]);
    let before_nobody = env.cluster.request_count_where(&[
        ("user", "system:serviceaccount:team-a:nobody"),
        ("code", "403"),
    ]);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = if i % 2 == 0 {
            deployer.clone()
        } else {
            nobody.clone()
        };
        tasks.push(tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(client, "team-a");
            (i, api.list(&ListParams::default()).await)
        }));
    }
    for t in tasks {
        let (i, res) = t.await.expect("task");
        match (i % 2, res) {
            (0, Ok(_)) => {}
            (1, Err(kube::Error::Api(s))) if s.code == 403 => {
                assert!(s.message.contains("team-a:nobody"), "{}", s.message)
            }
            (_, other) => panic!("request {i}: wrong answer {other:?}"),
        }
    }
    assert_eq!(
        env.cluster.request_count_where(&[
            ("user", "system:serviceaccount:team-a:deployer"),
            ("code", "200"),
        ]) - before_deployer,
        10
    );
    assert_eq!(
        env.cluster.request_count_where(&[
            ("user", "system:serviceaccount:team-a:nobody"),
            ("code", "403"),
        ]) - before_nobody,
        10
    );

    // Fifty more identities, one after the other, open no connection: they reuse the
    // pool's idle ones. Separate clients (a pool each) open one each, which shows the count
    // below would see a pool per identity.
    let port = port_of(&env.cluster);
    let idle = client_connections(port);
    assert!(idle >= 1, "the pool keeps its connections");
    for i in 0..50 {
        let c = env
            .clients
            .for_service_account("team-a", &format!("sa-{i}"));
        let api: Api<ConfigMap> = Api::namespaced(c, "team-a");
        let _ = api.list(&ListParams::default()).await;
    }
    let shared = client_connections(port);
    assert_eq!(env.clients.cached_accounts(), 52);
    env.clients.forget("team-a", "sa-0");
    assert_eq!(env.clients.cached_accounts(), 51);
    assert!(
        shared <= idle,
        "{idle} connections before, {shared} after 50 new identities"
    );
    let mut separate = Vec::new();
    for _ in 0..5 {
        let c = kube::Client::try_from(env.config.clone()).expect("client");
        let api: Api<ConfigMap> = Api::namespaced(c.clone(), "team-a");
        api.list(&ListParams::default()).await.expect("admin lists");
        separate.push(c);
    }
    assert!(
        client_connections(port) >= shared + 5,
        "a client per identity opens a connection each"
    );
    env.cluster.shutdown().await;
}

const ORDERED_SET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, namespace: shop}
spec: {size: 3}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: shop}
stringData: {password: hunter2}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
"#;

fn summary(applied: &[lockstep::cluster::apply::Applied]) -> Vec<String> {
    applied
        .iter()
        .map(|a| {
            format!(
                "{} {}/{} {}",
                a.entry.kind,
                a.entry.namespace.as_deref().unwrap_or("-"),
                a.entry.name,
                a.action
            )
        })
        .collect()
}

#[tokio::test]
async fn a_set_is_applied_in_order_and_a_reapply_changes_nothing() {
    let env = Env::start().await;
    let admin = env.admin();
    let set = objects("apps/shop.yaml", ORDERED_SET);

    let first = env
        .apply(&admin, &set, ApplyMode::Apply)
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    // Namespace and CRD first (the CR had to wait for the CRD), then the namespaced
    // objects in file order.
    assert_eq!(
        summary(&first),
        vec![
            "Namespace -/shop created",
            "CustomResourceDefinition -/widgets.example.com created",
            "Widget shop/w1 created",
            "ConfigMap shop/settings created",
            "Secret shop/db created",
        ]
    );
    assert_eq!(first[2].entry.group, "example.com");
    assert_eq!(first[2].entry.version, "v1");
    assert_eq!(first[4].origin, "apps/shop.yaml (document 3)");
    assert!(
        first
            .iter()
            .all(|a| !a.uid.is_empty() && !a.resource_version.is_empty())
    );
    assert!(
        env.exists("/apis/example.com/v1/namespaces/shop/widgets/w1")
            .await
    );
    // The real kubectl finds the new kind, and sees lockstep as the object's apply manager.
    let sb = support::Sandbox::new();
    let kubeconfig = sb.path("kubeconfig");
    env.cluster
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");
    // tokio's Command: the server runs on this test's runtime and must keep serving.
    let out = tokio::process::Command::from(sb.command(support::tool("kubectl")))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "get",
            "widgets",
            "w1",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.size} {.metadata.managedFields[*].manager} {.metadata.managedFields[*].operation}",
        ])
        .output()
        .await
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3 lockstep Apply");

    // The same set again: every object unchanged, same resourceVersions, no writes.
    let (writes, patches) = (env.writes(), env.patches());
    let again = env
        .apply(&admin, &set, ApplyMode::Apply)
        .await
        .unwrap_or_else(|e| panic!("re-apply failed: {e}"));
    assert!(
        again.iter().all(|a| a.action == Action::Unchanged),
        "{:?}",
        summary(&again)
    );
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a.resource_version, b.resource_version, "{}", a.entry.name);
        assert_eq!(a.uid, b.uid);
    }
    assert_eq!(
        env.writes(),
        writes,
        "a re-apply made create/update/delete requests"
    );
    assert_eq!(env.patches() - patches, 5, "one apply request per object");

    // One changed value: only that object is configured.
    let changed = ORDERED_SET.replace("mode: fast", "mode: safe");
    let third = env
        .apply(
            &admin,
            &objects("apps/shop.yaml", &changed),
            ApplyMode::Apply,
        )
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    let actions: Vec<Action> = third.iter().map(|a| a.action).collect();
    assert_eq!(
        actions,
        vec![
            Action::Unchanged,
            Action::Unchanged,
            Action::Unchanged,
            Action::Configured,
            Action::Unchanged
        ]
    );
    assert_ne!(third[3].resource_version, first[3].resource_version);
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn a_denied_object_stops_the_set_and_a_dry_run_writes_nothing() {
    let env = Env::start().await;
    env.setup("tenant.yaml", TENANT).await;
    env.setup("grant.yaml", GRANT).await;
    let deployer = env.clients.for_service_account("team-a", "deployer");
    let set = objects(
        "apps/team-a/config.yaml",
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: one, namespace: team-a}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: intruder, namespace: team-b}
data: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: two, namespace: team-a}
stringData: {k: v}
"#,
    );

    // Dry run: the forbidden object is named, and nothing at all is written.
    let writes = env.writes();
    let err = env
        .apply(&deployer, &set, ApplyMode::DryRun)
        .await
        .expect_err("team-b is not the deployer's");
    assert!(
        matches!(err.kind, ApplyErrorKind::Forbidden { .. }),
        "{err:?}"
    );
    assert_eq!(err.object, "ConfigMap team-b/intruder");
    assert_eq!(err.origin, "apps/team-a/config.yaml (document 2)");
    assert!(!err.is_transient());
    let shown = err.to_string();
    assert!(shown.contains("ConfigMap team-b/intruder"), "{shown}");
    assert!(
        shown.contains("system:serviceaccount:team-a:deployer"),
        "{shown}"
    );
    assert_eq!(summary(&err.applied), vec!["ConfigMap team-a/one created"]);
    assert!(!env.exists("/api/v1/namespaces/team-a/configmaps/one").await);
    assert_eq!(env.writes(), writes);

    // The real apply stops at the same object: what came before is applied, nothing after.
    let err = env
        .apply(&deployer, &set, ApplyMode::Apply)
        .await
        .expect_err("still forbidden");
    assert_eq!(err.object, "ConfigMap team-b/intruder");
    assert_eq!(summary(&err.applied), vec!["ConfigMap team-a/one created"]);
    assert!(env.exists("/api/v1/namespaces/team-a/configmaps/one").await);
    assert!(
        !env.exists("/api/v1/namespaces/team-b/configmaps/intruder")
            .await
    );
    assert!(!env.exists("/api/v1/namespaces/team-a/secrets/two").await);

    // A denied Secret: the server's words are withheld, the account is still named.
    let secret = objects(
        "apps/team-a/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: team-b}\nstringData: {k: v-9d1e}\n",
    );
    let err = env
        .apply(&deployer, &secret, ApplyMode::Apply)
        .await
        .expect_err("forbidden");
    assert!(
        matches!(err.kind, ApplyErrorKind::Forbidden { .. }),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(shown.contains("Secret team-b/s"), "{shown}");
    assert!(
        shown.contains("system:serviceaccount:team-a:deployer"),
        "{shown}"
    );
    assert!(!shown.contains("v-9d1e"), "{shown}");
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn a_dry_run_skips_what_waits_for_its_crd_or_namespace() {
    let env = Env::start().await;
    let admin = env.admin();
    let set = objects("apps/shop.yaml", ORDERED_SET);
    let writes = env.writes();
    let dry = env
        .apply(&admin, &set, ApplyMode::DryRun)
        .await
        .unwrap_or_else(|e| panic!("dry run failed: {e}"));
    assert_eq!(
        summary(&dry),
        vec![
            "Namespace -/shop created",
            "CustomResourceDefinition -/widgets.example.com created",
        ]
    );
    assert_eq!(env.writes(), writes);
    assert!(!env.exists("/api/v1/namespaces/shop").await);
    assert!(
        !env.exists("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
            .await
    );

    // Once they exist, a dry run checks everything.
    env.apply(&admin, &set, ApplyMode::Apply)
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    let dry = env
        .apply(&admin, &set, ApplyMode::DryRun)
        .await
        .unwrap_or_else(|e| panic!("dry run failed: {e}"));
    assert_eq!(dry.len(), 5, "{:?}", summary(&dry));
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn an_unknown_kind_fails_before_any_write_and_names_its_file() {
    let env = Env::start().await;
    let set = objects(
        "apps/odd.yaml",
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: odd}
---
apiVersion: example.com/v1
kind: Gadget
metadata: {name: g, namespace: odd}
"#,
    );
    let err = env
        .apply(&env.admin(), &set, ApplyMode::Apply)
        .await
        .expect_err("no such kind");
    assert!(
        matches!(err.kind, ApplyErrorKind::UnknownKind { .. }),
        "{err:?}"
    );
    assert_eq!(err.object, "Gadget odd/g");
    let shown = err.to_string();
    assert!(shown.contains("apps/odd.yaml (document 2)"), "{shown}");
    assert!(shown.contains("Gadget"), "{shown}");
    assert!(err.applied.is_empty());
    assert!(!env.exists("/api/v1/namespaces/odd").await);
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn a_field_owned_by_another_manager_is_a_typed_conflict() {
    let env = Env::start().await;
    env.setup("tenant.yaml", TENANT).await;
    // Another manager owns data.mode.
    let req = http::Request::patch(
        "/api/v1/namespaces/team-a/configmaps/tuned?fieldManager=autoscaler",
    )
    .header("content-type", "application/apply-patch+yaml")
    .body(kube::client::Body::from(
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"tuned","namespace":"team-a"},"data":{"mode":"auto"}}"#.to_vec(),
    ))
    .expect("request");
    let res = env.admin().send(req).await.expect("sent");
    assert_eq!(res.status().as_u16(), 201);

    let set = objects(
        "apps/tuned.yaml",
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: tuned, namespace: team-a}
data: {mode: manual}
"#,
    );
    let err = env
        .apply(&env.admin(), &set, ApplyMode::Apply)
        .await
        .expect_err("conflict");
    match &err.kind {
        ApplyErrorKind::Conflict {
            managers, fields, ..
        } => {
            assert_eq!(managers, &vec!["autoscaler".to_owned()]);
            assert_eq!(fields, &vec![".data.mode".to_owned()]);
        }
        other => panic!("not a conflict: {other:?}"),
    }
    assert_eq!(err.object, "ConfigMap team-a/tuned");

    // With force the field is taken over.
    let applied = apply_all(
        &env.admin(),
        &env.discovery,
        &set,
        &ApplyOptions {
            force: true,
            ..ApplyOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("forced apply failed: {e}"));
    assert_eq!(applied[0].action, Action::Configured);
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn errors_about_secrets_never_carry_their_values() {
    let env = Env::start().await;
    env.setup("tenant.yaml", TENANT).await;
    let canary = "canary-7f3a9c2e41";
    // Invalid: a label value with characters labels do not allow. The server's answer
    // quotes the offending value, as kube-apiserver's does.
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"leaky","namespace":"team-a","labels":{{"app":"{canary}!!"}}}},"stringData":{{"password":"{canary}"}}}}"#
    );
    let req = http::Request::patch("/api/v1/namespaces/team-a/secrets/leaky?fieldManager=probe")
        .header("content-type", "application/apply-patch+yaml")
        .body(kube::client::Body::from(body.into_bytes()))
        .expect("request");
    let res = env.admin().send(req).await.expect("sent");
    assert_eq!(res.status().as_u16(), 422);
    let raw = res.into_body().collect_bytes().await.expect("body");
    assert!(
        String::from_utf8_lossy(&raw).contains(canary),
        "the server echoes the value, which is what must not get through"
    );

    let set = objects(
        "apps/team-a/secret.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Secret
metadata:
  name: leaky
  namespace: team-a
  labels: {{app: "{canary}!!"}}
stringData: {{password: "{canary}"}}
"#
        ),
    );
    let err = env
        .apply(&env.admin(), &set, ApplyMode::Apply)
        .await
        .expect_err("invalid");
    let shown = format!("{err}\n{err:?}");
    assert!(!shown.contains(canary), "{shown}");
    match &err.kind {
        ApplyErrorKind::Invalid { fields, message } => {
            assert_eq!(fields, &vec!["metadata.labels".to_owned()]);
            assert!(message.contains("422"), "{message}");
        }
        other => panic!("not invalid: {other:?}"),
    }
    assert_eq!(err.object, "Secret team-a/leaky");

    // The same mistake in a ConfigMap keeps the server's words.
    let set = objects(
        "apps/team-a/cm.yaml",
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: chatty
  namespace: team-a
  labels: {{app: "{canary}!!"}}
"#
        ),
    );
    let err = env
        .apply(&env.admin(), &set, ApplyMode::Apply)
        .await
        .expect_err("invalid");
    assert!(err.to_string().contains(canary), "{err}");
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn discovery_maps_kinds_from_the_cluster_and_refreshes_on_a_miss() {
    let env = Env::start().await;
    let admin = env.admin();
    let d = &env.discovery;
    let cm = d
        .resolve(&admin, "v1", "ConfigMap")
        .await
        .expect("ConfigMap");
    assert_eq!(cm.resource.plural, "configmaps");
    assert!(cm.namespaced);
    let crb = d
        .resolve(&admin, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding")
        .await
        .expect("ClusterRoleBinding");
    assert_eq!(crb.resource.plural, "clusterrolebindings");
    assert_eq!(crb.resource.group, "rbac.authorization.k8s.io");
    assert!(!crb.namespaced);

    // Cached: asking again costs no request.
    let discovery_gets = env.cluster.request_count("get", "");
    for _ in 0..5 {
        d.resolve(&admin, "v1", "Namespace")
            .await
            .expect("Namespace");
        d.resolve(&admin, "rbac.authorization.k8s.io/v1", "Role")
            .await
            .expect("Role");
    }
    assert_eq!(env.cluster.request_count("get", ""), discovery_gets);
    // (and the counter does see discovery requests: a new group/version is one)
    d.resolve(&admin, "apps/v1", "Deployment")
        .await
        .expect("Deployment");
    assert_eq!(env.cluster.request_count("get", ""), discovery_gets + 1);

    // A kind nobody defined yet is unknown; once its CRD exists, the miss refreshes.
    let err = d
        .resolve(&admin, "example.com/v1", "Widget")
        .await
        .expect_err("no CRD yet");
    assert!(err.to_string().contains("Widget"), "{err}");
    assert!(!err.is_transient());
    let crd_only: String = ORDERED_SET
        .split("---")
        .filter(|d| d.contains("kind: CustomResourceDefinition"))
        .collect();
    env.setup("crd.yaml", &crd_only).await;
    let w = d
        .resolve(&admin, "example.com/v1", "Widget")
        .await
        .expect("served now");
    assert_eq!(w.resource.plural, "widgets");
    assert!(w.namespaced);

    assert_eq!(
        d.preferred_version(&admin, "apps").await.expect("apps"),
        "v1"
    );
    assert_eq!(
        d.preferred_version(&admin, "example.com")
            .await
            .expect("example.com"),
        "v1"
    );
    assert!(d.preferred_version(&admin, "nope.example").await.is_err());
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn server_failures_are_transient_and_stop_the_set() {
    let env = Env::start().await;
    env.setup("tenant.yaml", TENANT).await;
    let set = objects(
        "apps/team-a/mixed.yaml",
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: before, namespace: team-a}
---
apiVersion: v1
kind: Secret
metadata: {name: flaky, namespace: team-a}
stringData: {k: v-5be0}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: after, namespace: team-a}
"#,
    );
    for rule in [
        devcluster::faults::FaultRule::new(Some("patch"), Some("secrets")).internal_errors(1.0),
        // (kube's own retry of 429 is off in this client's config, see below)
        devcluster::faults::FaultRule::new(Some("patch"), Some("secrets"))
            .too_many_requests(1.0, 1),
    ] {
        env.cluster.set_faults(vec![rule]);
        let mut cfg = env.config.clone();
        cfg.default_retry = false;
        let clients = Clients::new(cfg).expect("clients");
        let err = apply_all(
            &clients.controller(),
            &env.discovery,
            &set,
            &ApplyOptions::default(),
        )
        .await
        .expect_err("the Secret's apply fails");
        assert!(err.is_transient(), "{err:?}");
        assert!(
            matches!(err.kind, ApplyErrorKind::Transient { .. }),
            "{err:?}"
        );
        assert_eq!(err.object, "Secret team-a/flaky");
        assert!(!format!("{err} {err:?}").contains("v-5be0"));
        assert_eq!(
            summary(&err.applied).len(),
            1,
            "{:?}",
            summary(&err.applied)
        );
        assert!(
            !env.exists("/api/v1/namespaces/team-a/configmaps/after")
                .await
        );
    }
    env.cluster.set_faults(vec![]);
    env.cluster.shutdown().await;
}
