//! A reconciler under test: devcluster in-process with `deploy/` installed, the example
//! sealing key in the controller's Secret, and the controller running as its own
//! service account (not admin), plus helpers to make tenants, Policies and Applications
//! and to wait on their status.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use lockstep::cluster::client::Clients;
use lockstep::cluster::discovery::Discovery;
use lockstep::controller::application::Application;
use lockstep::controller::conditions;
use lockstep::controller::reconcile::Settings;
use lockstep::controller::run::{self, Handle, Options};
use lockstep::quickstart;
use lockstep::server::Metrics;
use serde_json::json;

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Controller {
    pub handle: Handle,
    pub metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub cache: tempfile::TempDir,
}

impl Controller {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

pub struct Harness {
    pub cluster: devcluster::DevCluster,
    pub admin: Client,
    pub controller: Option<Controller>,
}

impl Harness {
    /// devcluster with `deploy/` and the sealing key installed, controller running.
    pub async fn start() -> Harness {
        Self::start_with(devcluster::Config::default()).await
    }

    pub async fn start_with(config: devcluster::Config) -> Harness {
        let cluster = devcluster::DevCluster::start(config)
            .await
            .expect("devcluster starts");
        let admin = client_with_token(&cluster, &cluster.admin_token()).await;
        let discovery = Discovery::new();
        quickstart::install_kustomization(&admin, &discovery, &project_root().join("deploy"))
            .await
            .expect("deploy/ installs");
        quickstart::create_secret_from_files(
            &admin,
            quickstart::CONTROLLER_NAMESPACE,
            quickstart::SEALING_SECRET,
            &[(
                "sealing.agekey",
                &project_root().join("keys-example/sealing.agekey"),
            )],
        )
        .await
        .expect("sealing Secret");
        let mut h = Harness {
            cluster,
            admin,
            controller: None,
        };
        h.start_controller().await;
        h
    }

    /// Starts (or restarts) the controller as `lockstep-system:lockstep`.
    pub async fn start_controller(&mut self) {
        let token = self
            .cluster
            .service_account_token(
                quickstart::CONTROLLER_NAMESPACE,
                quickstart::CONTROLLER_ACCOUNT,
            )
            .expect("controller token");
        let config = config_with_token(&self.cluster, &token).await;
        let clients = Clients::new(config).expect("clients");
        let cache = tempfile::tempdir().expect("cache dir");
        let mut settings = Settings::new(
            cache.path().to_path_buf(),
            quickstart::CONTROLLER_NAMESPACE,
            quickstart::SEALING_SECRET,
        );
        settings.health_poll = Duration::from_millis(100);
        let options = Options {
            concurrency: 4,
            settings,
            reporter: "lockstep".into(),
        };
        let metrics = Arc::new(Metrics::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel::<Handle>();
        let m = metrics.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            run::run(clients, options, m, shutdown, |h| {
                let _ = tx.send(h);
            })
            .await
            .expect("controller runs");
        });
        let handle = tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .expect("controller starts in time")
            .expect("controller starts");
        self.controller = Some(Controller {
            handle,
            metrics,
            task,
            stop: Some(stop),
            cache,
        });
    }

    pub async fn stop_controller(&mut self) {
        if let Some(c) = self.controller.take() {
            c.stop().await;
        }
    }

    pub fn handle(&self) -> &Handle {
        &self.controller.as_ref().expect("controller running").handle
    }

    /// A tenant namespace with service account `deployer` allowed to manage the usual
    /// kinds in that namespace only.
    pub async fn tenant(&self, ns: &str) {
        let nss: Api<Namespace> = Api::all(self.admin.clone());
        let _ = nss
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
            )
            .await;
        let sas: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), ns);
        let _ = sas
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "deployer"}})).expect("sa"),
            )
            .await;
        let roles: Api<Role> = Api::namespaced(self.admin.clone(), ns);
        let role: Role = serde_json::from_value(json!({
            "metadata": {"name": "deployer"},
            "rules": [{
                "apiGroups": ["", "apps", "batch", "autoscaling", "policy", "networking.k8s.io"],
                "resources": ["*"],
                "verbs": ["*"],
            }],
        }))
        .expect("role");
        let _ = roles.create(&PostParams::default(), &role).await;
        let rbs: Api<RoleBinding> = Api::namespaced(self.admin.clone(), ns);
        let rb: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "deployer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}],
        }))
        .expect("rolebinding");
        let _ = rbs.create(&PostParams::default(), &rb).await;
        // The namespace lets the reconciler act as its service accounts (deploy/).
        let imp: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "lockstep-impersonate"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "lockstep-impersonate"},
            "subjects": [{"kind": "ServiceAccount", "name": "lockstep", "namespace": "lockstep-system"}],
        }))
        .expect("rolebinding");
        let _ = rbs.create(&PostParams::default(), &imp).await;
    }

    /// A cluster Policy binding `team-*` and `t-*` namespaces that allows `file://`
    /// sources under `root` and service accounts named `deployer`.
    pub async fn policy(&self, name: &str, root: &Path, extra: serde_json::Value) {
        let mut spec = json!({
            "applications": {"namespaces": ["team-*", "t-*"]},
            "sources": {"allow": [format!("file://{}/**", root.display())]},
            "serviceAccounts": [{"namespaces": ["*"], "names": ["deployer"]}],
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        let body = json!({
            "apiVersion": "lockstep.dev/v1alpha1",
            "kind": "Policy",
            "metadata": {"name": name},
            "spec": spec,
        });
        let api: Api<kube::api::DynamicObject> = Api::all_with(
            self.admin.clone(),
            &kube::discovery::ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk("lockstep.dev", "v1alpha1", "Policy"),
                "policies",
            ),
        );
        api.patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&body),
        )
        .await
        .expect("Policy applies");
    }

    /// Creates or updates an Application from a spec.
    pub async fn application(&self, ns: &str, name: &str, spec: serde_json::Value) {
        let body = json!({
            "apiVersion": "lockstep.dev/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        });
        let api: Api<Application> = Api::namespaced(self.admin.clone(), ns);
        retry("Application applies", || {
            let (api, body) = (api.clone(), body.clone());
            async move {
                api.patch(
                    name,
                    &PatchParams::apply("test").force(),
                    &Patch::Apply(&body),
                )
                .await
            }
        })
        .await;
    }

    pub async fn annotate_app(&self, ns: &str, name: &str, key: &str, value: &str) {
        let api: Api<Application> = Api::namespaced(self.admin.clone(), ns);
        let patch = json!({"metadata": {"annotations": {key: value}}});
        retry("annotate", || {
            let (api, patch) = (api.clone(), patch.clone());
            async move {
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
        })
        .await;
    }

    /// Asks for a reconcile now, as a user would.
    pub async fn request_reconcile(&self, ns: &str, name: &str) {
        let now = format!("{:?}", Instant::now());
        self.annotate_app(
            ns,
            name,
            lockstep::controller::application::RECONCILE_REQUESTED_AT,
            &now,
        )
        .await;
    }

    pub async fn get_app(&self, ns: &str, name: &str) -> Application {
        let api: Api<Application> = Api::namespaced(self.admin.clone(), ns);
        api.get(name).await.expect("Application exists")
    }

    /// Polls the API (not the controller's cache) until `pred` holds.
    pub async fn wait_app(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Application) -> bool,
    ) -> Application {
        let deadline = Instant::now() + timeout;
        let api: Api<Application> = Api::namespaced(self.admin.clone(), ns);
        loop {
            // Tolerates injected faults: only the verdict counts.
            let Ok(app) = api.get(name).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if pred(&app) {
                return app;
            }
            if Instant::now() > deadline {
                panic!(
                    "Application {ns}/{name}: {what} did not happen within {timeout:?}; status: {}",
                    serde_json::to_string_pretty(&app.status).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until Ready is True for the current generation and at `revision` if given.
    pub async fn wait_ready(&self, ns: &str, name: &str, commit: Option<&str>) -> Application {
        self.wait_app(ns, name, Duration::from_secs(30), "Ready", |a| {
            ready_for_generation(a)
                && commit.is_none_or(|c| {
                    a.status
                        .as_ref()
                        .and_then(|s| s.last_applied_revision.as_deref())
                        .is_some_and(|r| r.ends_with(c))
                })
        })
        .await
    }

    /// Waits until Ready is False with `reason` (and the message contains `needle`).
    pub async fn wait_not_ready(
        &self,
        ns: &str,
        name: &str,
        reason: &str,
        needle: &str,
    ) -> Application {
        self.wait_app(ns, name, Duration::from_secs(30), reason, |a| {
            a.status
                .as_ref()
                .and_then(|s| s.condition(conditions::READY))
                .is_some_and(|c| {
                    c.status == "False" && c.reason == reason && c.message.contains(needle)
                })
        })
        .await
    }

    pub async fn secret(&self, ns: &str, name: &str) -> Option<Secret> {
        let api: Api<Secret> = Api::namespaced(self.admin.clone(), ns);
        api.get_opt(name).await.expect("get secret")
    }

    pub async fn configmap(
        &self,
        ns: &str,
        name: &str,
    ) -> Option<k8s_openapi::api::core::v1::ConfigMap> {
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(self.admin.clone(), ns);
        api.get_opt(name).await.expect("get configmap")
    }

    /// Waits until ConfigMap `ns/name` has `data.value == want` (lockstep put it back).
    pub async fn wait_configmap_value(&self, ns: &str, name: &str, want: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self
                .configmap(ns, name)
                .await
                .and_then(|c| c.data)
                .and_then(|d| d.get("value").cloned());
            if v.as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: value is {v:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every Event's reason and note in a namespace, oldest first.
    pub async fn events(&self, ns: &str) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.admin.clone(), ns);
        let mut list = api
            .list(&ListParams::default())
            .await
            .expect("events")
            .items;
        list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        list.into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    pub async fn delete_app(&self, ns: &str, name: &str) {
        let api: Api<Application> = Api::namespaced(self.admin.clone(), ns);
        let _ = api.delete(name, &DeleteParams::default()).await;
    }

    /// A kubeconfig file for the controller's own service account.
    pub fn controller_kubeconfig(&self, dir: &Path) -> PathBuf {
        let token = self
            .cluster
            .service_account_token(
                quickstart::CONTROLLER_NAMESPACE,
                quickstart::CONTROLLER_ACCOUNT,
            )
            .expect("controller token");
        let mut kc: serde_json::Value =
            serde_saphyr::from_str(&self.cluster.kubeconfig()).expect("kubeconfig parses");
        if let Some(users) = kc["users"].as_array_mut() {
            for u in users {
                u["user"] = json!({"token": token});
            }
        }
        let p = dir.join("controller.kubeconfig");
        std::fs::write(&p, serde_json::to_string(&kc).expect("json")).expect("write kubeconfig");
        p
    }

    pub fn kubeconfig_file(&self, dir: &Path) -> PathBuf {
        let p = dir.join("admin.kubeconfig");
        self.cluster.write_kubeconfig(&p).expect("kubeconfig");
        p
    }
}

/// Retries a request that injected faults may fail (up to 50 times).
pub async fn retry<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut last = None;
    for _ in 0..50 {
        match f().await {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: {last:?}");
}

pub fn ready_for_generation(a: &Application) -> bool {
    a.status.as_ref().is_some_and(|s| {
        s.condition(conditions::READY)
            .is_some_and(|c| c.status == "True" && c.observed_generation == a.metadata.generation)
    })
}

pub fn inventory_names(a: &Application) -> Vec<String> {
    a.status
        .as_ref()
        .and_then(|s| s.inventory.as_ref())
        .map(|i| {
            i.entries
                .iter()
                .map(|e| format!("{}/{}", e.kind, e.name))
                .collect()
        })
        .unwrap_or_default()
}

pub fn ready_message(a: &Application) -> String {
    a.status
        .as_ref()
        .and_then(|s| s.condition(conditions::READY))
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_default()
}

pub async fn config_with_token(cluster: &devcluster::DevCluster, token: &str) -> kube::Config {
    quickstart::config_with_token(cluster, token)
        .await
        .expect("config")
}

pub async fn client_with_token(cluster: &devcluster::DevCluster, token: &str) -> Client {
    Client::try_from(config_with_token(cluster, token).await).expect("client")
}

pub fn name_of(a: &Application) -> String {
    format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any())
}

/// GET /metrics from the controller with a bare HTTP/1.1 request.
pub async fn controller_metrics(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for _ in 0..50 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            return out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the controller's metrics endpoint did not answer");
}
