//! `lockstep quickstart`: the whole engine on one machine. It starts devcluster, makes a
//! Git repository of `examples/`, installs `deploy/` and the example sealing key, creates
//! the example tenants (`examples/cluster/`), runs the controller as its own least-
//! privileged service account until every Application settles, then pushes one commit and
//! makes one out-of-band edit and shows both reconciled.
//!
//! Nothing here is special to the quickstart that the controller would not also do: the
//! controller is [`crate::controller::run::run`] with the identity `deploy/` gives it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, ResourceExt};

use crate::cluster::apply::{self, ApplyMode, ApplyOptions};
use crate::cluster::client::Clients;
use crate::cluster::discovery::Discovery;
use crate::controller::application::{Application, InventoryEntry, RECONCILE_REQUESTED_AT};
use crate::controller::conditions;
use crate::controller::reconcile::{Settings, describe};
use crate::controller::run::{self, Handle, Options};
use crate::crypto::age_keys::Identities;
use crate::render::{self, NoVault, RenderOptions, RenderedObject};
use crate::server::Metrics;

/// The placeholder the example files use for the example repository's URL.
pub const EXAMPLE_REPO_PLACEHOLDER: &str = "file:///tmp/lockstep-quickstart/examples.git";
/// The controller's namespace and account, as `deploy/` creates them.
pub const CONTROLLER_NAMESPACE: &str = "lockstep-system";
pub const CONTROLLER_ACCOUNT: &str = "lockstep";
pub const SEALING_SECRET: &str = "lockstep-sealing";

/// Where the project's files are, and how long to wait.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The directory holding `examples/`, `deploy/` and `keys-example/`.
    pub project: PathBuf,
    /// How long the Applications may take to settle.
    pub settle_timeout: Duration,
    /// OpenBao's `bao`: when set, a dev server is started and the Vault example tenant
    /// (examples/vault/) added.
    pub bao: Option<PathBuf>,
}

/// The address the Vault example's Application names until the quickstart replaces it.
pub const VAULT_ADDR_PLACEHOLDER: &str = "http://vault.quickstart.invalid:8200";

/// A `bao server -dev` the quickstart started; killed (by its PID) when dropped.
struct DevVault(std::process::Child);

impl Drop for DevVault {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Progress and results, reported as they happen.
pub trait Report: Send + Sync {
    /// A step started or finished (one line).
    fn step(&self, text: &str);
    /// Work under way, e.g. "3/4 applications settled".
    fn progress(&self, text: &str);
}

/// Why the quickstart failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QuickstartError(pub String);

fn fail(e: impl std::fmt::Display) -> QuickstartError {
    QuickstartError(e.to_string())
}

/// One Application as it settled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppSummary {
    pub namespace: String,
    pub name: String,
    pub ready: bool,
    /// Ready's reason and message when not ready.
    pub reason: String,
    pub message: String,
    pub revision: Option<String>,
    pub objects: Vec<String>,
    /// Whether this app is expected to settle Ready (the rogue one is not).
    pub expected_ready: bool,
}

/// A Secret the apps produced: its keys, values never shown.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecretSummary {
    pub namespace: String,
    pub name: String,
    pub keys: Vec<String>,
}

/// What the quickstart saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub apps: Vec<AppSummary>,
    /// The commit pushed after the first sync, and how long until it was applied.
    pub push: Option<(String, f64)>,
    /// The object edited out of band, and how long until it was corrected.
    pub drift: Option<(String, f64)>,
    pub secrets: Vec<SecretSummary>,
    /// Whether every app that should settle did.
    pub ok: bool,
}

/// A running quickstart environment (devcluster + repo + controller).
pub struct Environment {
    pub cluster: devcluster::DevCluster,
    pub workdir: tempfile::TempDir,
    pub repo: PathBuf,
    pub handle: Handle,
    controller: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    vault: Option<DevVault>,
}

impl Environment {
    /// Stops the controller and devcluster; the work directory goes with `self`.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.controller).await;
        drop(self.vault);
        self.cluster.shutdown().await;
    }

    /// The kubeconfig (admin) of the running devcluster.
    pub fn kubeconfig(&self) -> String {
        self.cluster.kubeconfig()
    }
}

/// Sets everything up and runs the controller; returns once the controller is watching.
pub async fn start(opts: &Setup, report: &dyn Report) -> Result<Environment, QuickstartError> {
    let project = &opts.project;
    for dir in ["examples", "deploy", "keys-example"] {
        if !project.join(dir).is_dir() {
            return Err(QuickstartError(format!(
                "{} has no {dir}/ directory: run the quickstart from the lockstep repository",
                project.display()
            )));
        }
    }
    let cluster = devcluster::DevCluster::start(devcluster::Config::default())
        .await
        .map_err(|e| fail(format!("devcluster: {e}")))?;
    report.step(&format!("devcluster serving at {}", cluster.url()));

    let workdir = tempfile::Builder::new()
        .prefix("lockstep-quickstart-")
        .tempdir()
        .map_err(fail)?;
    let repo = workdir.path().join("examples.git");
    let commit = make_repo(&project.join("examples"), &repo).map_err(fail)?;
    let repo_url = format!("file://{}", repo.display());
    report.step(&format!(
        "example repository {} at commit {}",
        repo.display(),
        &commit[..12.min(commit.len())]
    ));

    let admin = admin_client(&cluster).await?;
    let discovery = Discovery::new();
    let installed = install_kustomization(&admin, &discovery, &project.join("deploy")).await?;
    create_secret_from_files(
        &admin,
        CONTROLLER_NAMESPACE,
        SEALING_SECRET,
        &[(
            "sealing.agekey",
            &project.join("keys-example/sealing.agekey"),
        )],
    )
    .await?;
    report.step(&format!(
        "deploy/ installed ({installed} objects) and the example sealing key stored in Secret {CONTROLLER_NAMESPACE}/{SEALING_SECRET}"
    ));

    let tenants = install_dir(
        &admin,
        &discovery,
        &project.join("examples/cluster"),
        Some((EXAMPLE_REPO_PLACEHOLDER, &repo_url)),
    )
    .await?;
    report.step(&format!(
        "example tenants created from examples/cluster/ ({tenants} objects)"
    ));
    let vault = match &opts.bao {
        Some(bao) => Some(
            start_vault(
                bao,
                &cluster,
                &admin,
                &discovery,
                workdir.path(),
                &repo_url,
                project,
                report,
            )
            .await?,
        ),
        None => {
            report.step(
                "no OpenBao `bao` on PATH: the Vault example (examples/vault/) is skipped; \
                 put `bao` on PATH (scripts/install-test-tools puts it in .tools/bin) and run \
                 the quickstart again to see an app read its Secret from Vault",
            );
            None
        }
    };

    // The controller runs as the service account deploy/ made for it, not as admin.
    let token = cluster
        .service_account_token(CONTROLLER_NAMESPACE, CONTROLLER_ACCOUNT)
        .map_err(|e| fail(format!("token for the controller's account: {e:?}")))?;
    let config = config_with_token(&cluster, &token).await?;
    let clients = Clients::new(config).map_err(fail)?;
    let cache = workdir.path().join("cache");
    std::fs::create_dir_all(&cache).map_err(fail)?;
    let mut settings = Settings::new(cache, CONTROLLER_NAMESPACE, SEALING_SECRET);
    settings.health_poll = Duration::from_millis(200);
    let options = Options {
        concurrency: 4,
        settings,
        reporter: "lockstep".into(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Handle>();
    let controller = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = run::run(clients, options, Arc::new(Metrics::new()), shutdown, |h| {
            let _ = started_tx.send(h);
        })
        .await
        {
            tracing::error!(error = %e, "controller stopped");
        }
    });
    let handle = tokio::time::timeout(Duration::from_secs(30), started_rx)
        .await
        .map_err(|_| fail("the controller did not start within 30 s"))?
        .map_err(|_| fail("the controller stopped while starting"))?;
    report.step("controller running as system:serviceaccount:lockstep-system:lockstep");
    Ok(Environment {
        cluster,
        workdir,
        repo,
        handle,
        controller,
        stop,
        vault,
    })
}

/// Starts `bao server -dev` on a free loopback port, stores one value, configures
/// Kubernetes auth against devcluster (reviewer account from examples/vault/) and adds the
/// Vault example tenant, whose Application reads that value as its own service account.
#[allow(clippy::too_many_arguments)]
async fn start_vault(
    bao: &Path,
    cluster: &devcluster::DevCluster,
    admin: &kube::Client,
    discovery: &Discovery,
    workdir: &Path,
    repo_url: &str,
    project: &Path,
    report: &dyn Report,
) -> Result<DevVault, QuickstartError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| fail(format!("a free port for OpenBao: {e}")))?
        .port();
    let addr = format!("http://127.0.0.1:{port}");
    let random = |n: usize| -> Result<String, QuickstartError> {
        let mut b = vec![0u8; n];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .map_err(|_| fail("no randomness"))?;
        Ok(b.iter().map(|x| format!("{x:02x}")).collect())
    };
    // A throwaway dev server on loopback, gone with the quickstart: its random root token
    // on the command line (visible to local users in `ps`) guards nothing that outlives it.
    let root = random(16)?;
    let home = workdir.join("bao");
    std::fs::create_dir_all(&home).map_err(fail)?;
    let log = std::fs::File::create(home.join("server.log")).map_err(fail)?;
    let child = std::process::Command::new(bao)
        .args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={root}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ])
        .env("HOME", &home)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(fail)?)
        .stderr(log)
        .spawn()
        .map_err(|e| fail(format!("{}: {e}", bao.display())))?;
    let server = DevVault(child);
    let run = |args: &[&str], stdin: Option<&str>| -> Result<String, QuickstartError> {
        use std::io::Write;
        let mut c = std::process::Command::new(bao)
            .args(args)
            .env("BAO_ADDR", &addr)
            .env("BAO_TOKEN", &root)
            .env("HOME", &home)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("{}: {e}", bao.display())))?;
        if let (Some(text), Some(mut w)) = (stdin, c.stdin.take()) {
            w.write_all(text.as_bytes()).map_err(fail)?;
        }
        let out = c.wait_with_output().map_err(fail)?;
        if !out.status.success() {
            // `bao` errors name the request, never the secret arguments.
            return Err(fail(format!(
                "bao {}: {}",
                args.first().copied().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while run(&["status"], None).is_err() {
        if Instant::now() > deadline {
            return Err(fail("OpenBao dev server did not come up within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let value = random(12)?;
    run(
        &[
            "kv",
            "put",
            "-mount=secret",
            "tenants/team-vault/db",
            &format!("password={value}"),
        ],
        None,
    )?;
    drop(value);
    run(
        &["policy", "write", "team-vault", "-"],
        Some("path \"secret/data/tenants/team-vault/*\" { capabilities = [\"read\"] }\n"),
    )?;
    let objects = read_objects(
        &project.join("examples/vault/cluster.yaml"),
        &[
            (EXAMPLE_REPO_PLACEHOLDER, repo_url),
            (VAULT_ADDR_PLACEHOLDER, &addr),
        ],
    )?;
    // The Application last, once Vault can log it in: a denied first login would stall it.
    let (apps, rest): (Vec<RenderedObject>, Vec<RenderedObject>) = objects
        .into_iter()
        .partition(|o| o.doc.get("kind").and_then(|k| k.as_str()) == Some("Application"));
    apply_objects(admin, discovery, &rest).await?;
    let reviewer = cluster
        .service_account_token("vault-auth", "vault-reviewer")
        .map_err(|e| fail(format!("token for vault-auth/vault-reviewer: {e:?}")))?;
    let ca = home.join("kubernetes-ca.pem");
    std::fs::write(&ca, cluster.ca_pem()).map_err(fail)?;
    run(&["auth", "enable", "kubernetes"], None)?;
    run(
        &[
            "write",
            "auth/kubernetes/config",
            &format!("kubernetes_host={}", cluster.url()),
            &format!("kubernetes_ca_cert=@{}", ca.display()),
            &format!("token_reviewer_jwt={reviewer}"),
            "disable_local_ca_jwt=true",
        ],
        None,
    )?;
    run(
        &[
            "write",
            "auth/kubernetes/role/team-vault",
            "bound_service_account_names=deployer",
            "bound_service_account_namespaces=team-vault",
            &format!("audience={addr}"),
            "policies=team-vault",
            "ttl=1h",
        ],
        None,
    )?;
    apply_objects(admin, discovery, &apps).await?;
    report.step(&format!(
        "OpenBao dev server at {addr} (Kubernetes auth against devcluster); tenant team-vault \
         reads Secret db from secret/tenants/team-vault/db ({} objects from examples/vault/)",
        rest.len() + apps.len()
    ));
    Ok(server)
}

/// Waits until every Application has a verdict for its generation (Ready true, or a
/// failure that is not progress) or `timeout` passes.
pub async fn settle(
    env: &Environment,
    timeout: Duration,
    report: &dyn Report,
) -> Vec<Arc<Application>> {
    let deadline = Instant::now() + timeout;
    loop {
        let apps = env.handle.applications.state();
        let settled = apps.iter().filter(|a| settled(a)).count();
        report.progress(&format!("{settled}/{} applications settled", apps.len()));
        if (!apps.is_empty() && settled == apps.len()) || Instant::now() >= deadline {
            let mut apps = apps;
            apps.sort_by_key(|a| (a.namespace(), a.name_any()));
            return apps;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn settled(app: &Application) -> bool {
    let Some(status) = &app.status else {
        return false;
    };
    let Some(ready) = status.condition(conditions::READY) else {
        return false;
    };
    if ready.observed_generation != app.metadata.generation {
        return false;
    }
    ready.status == "True"
        || status
            .condition(conditions::STALLED)
            .is_some_and(|s| s.status == "True")
        || (ready.status == "False"
            && ready.reason != conditions::reason::PROGRESSING
            && ready.reason != conditions::reason::DEPENDENCY_NOT_READY
            && status.history.len() >= 2)
}

/// An app is expected to settle Ready unless the example marks it as refused.
fn expected_ready(app: &Application) -> bool {
    app.labels()
        .get("lockstep.dev/example-expect")
        .is_none_or(|v| v != "denied")
        && app.name_any() != "rogue"
}

pub fn summarize(apps: &[Arc<Application>]) -> Vec<AppSummary> {
    apps.iter()
        .map(|a| {
            let status = a.status.clone().unwrap_or_default();
            let ready = status.condition(conditions::READY);
            AppSummary {
                namespace: a.namespace().unwrap_or_default(),
                name: a.name_any(),
                ready: status.is_ready(),
                reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
                message: ready.map(|c| c.message.clone()).unwrap_or_default(),
                revision: status.last_applied_revision.clone(),
                objects: status
                    .inventory
                    .as_ref()
                    .map(|i| i.entries.iter().map(describe).collect())
                    .unwrap_or_default(),
                expected_ready: expected_ready(a),
            }
        })
        .collect()
}

/// Runs the whole quickstart and shuts everything down (unless `keep` gets the
/// environment, for `--keep-running`).
pub async fn run_all(
    opts: &Setup,
    report: &dyn Report,
) -> Result<(Summary, Environment), QuickstartError> {
    let env = start(opts, report).await?;
    let apps = settle(&env, opts.settle_timeout, report).await;
    let mut summary = Summary {
        apps: summarize(&apps),
        push: None,
        drift: None,
        secrets: Vec::new(),
        ok: false,
    };
    summary.ok =
        !summary.apps.is_empty() && summary.apps.iter().all(|a| a.ready == a.expected_ready);
    if !summary.ok {
        return Ok((summary, env));
    }
    let admin = admin_client(&env.cluster).await?;

    // One commit pushed and applied.
    let started = Instant::now();
    let commit = commit_change(
        &env.repo,
        "apps/frontend/service.yaml",
        "GREETING: hello from lockstep",
        "GREETING: hello again, from a new commit",
        "frontend: new greeting",
    )
    .map_err(fail)?;
    request_reconcile(&admin, "team-frontend", "frontend").await?;
    let short = &commit[..12.min(commit.len())];
    let applied = run::wait_for(
        &env.handle.applications,
        "team-frontend",
        "frontend",
        Duration::from_secs(30),
        |a| {
            a.status
                .as_ref()
                .and_then(|s| s.last_applied_revision.as_deref())
                .is_some_and(|r| r.ends_with(&commit))
        },
    )
    .await;
    if applied.is_some() {
        summary.push = Some((short.to_owned(), started.elapsed().as_secs_f64()));
        report.step(&format!(
            "pushed commit {short} (frontend: new greeting): applied in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    } else {
        summary.ok = false;
        report.step(&format!("pushed commit {short}: NOT applied within 30 s"));
    }

    // One out-of-band edit (what `kubectl edit` sends) corrected.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(admin.clone(), "team-frontend");
    let edit = serde_json::json!({"data": {"GREETING": "edited by hand"}});
    let started = Instant::now();
    cms.patch(
        "frontend-config",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(&edit),
    )
    .await
    .map_err(|e| {
        fail(format!(
            "editing ConfigMap team-frontend/frontend-config: {e}"
        ))
    })?;
    let mut corrected = false;
    while started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(cm) = cms.get("frontend-config").await
            && cm
                .data
                .as_ref()
                .and_then(|d| d.get("GREETING"))
                .is_some_and(|g| g != "edited by hand")
        {
            corrected = true;
            break;
        }
    }
    if corrected {
        summary.drift = Some((
            "ConfigMap team-frontend/frontend-config".into(),
            started.elapsed().as_secs_f64(),
        ));
        report.step(&format!(
            "edited ConfigMap team-frontend/frontend-config by hand: corrected in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    } else {
        summary.ok = false;
        report.step(
            "edited ConfigMap team-frontend/frontend-config by hand: NOT corrected within 30 s",
        );
    }

    summary.apps = summarize(&env.handle.applications.state().to_vec());
    summary
        .apps
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    summary.secrets = managed_secrets(&admin, &summary.apps).await;
    Ok((summary, env))
}

/// The Secrets the apps applied, with their keys (never values).
async fn managed_secrets(admin: &kube::Client, apps: &[AppSummary]) -> Vec<SecretSummary> {
    let mut out = Vec::new();
    for app in apps {
        for obj in &app.objects {
            let Some(rest) = obj.strip_prefix("Secret ") else {
                continue;
            };
            let Some((ns, name)) = rest.split_once('/') else {
                continue;
            };
            let api: Api<Secret> = Api::namespaced(admin.clone(), ns);
            if let Ok(s) = api.get(name).await {
                out.push(SecretSummary {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                    keys: s.data.unwrap_or_default().into_keys().collect(),
                });
            }
        }
    }
    out
}

async fn request_reconcile(
    admin: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<(), QuickstartError> {
    let api: Api<Application> = Api::namespaced(admin.clone(), ns);
    let patch = serde_json::json!({"metadata": {"annotations": {RECONCILE_REQUESTED_AT: conditions::now_rfc3339()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| fail(format!("annotating Application {ns}/{name}: {e}")))?;
    Ok(())
}

async fn admin_client(cluster: &devcluster::DevCluster) -> Result<kube::Client, QuickstartError> {
    let config = config_with_token(cluster, &cluster.admin_token()).await?;
    kube::Client::try_from(config).map_err(fail)
}

/// A kube config for `cluster` that authenticates with `token` (admin or a service
/// account's), trusting the cluster's CA.
pub async fn config_with_token(
    cluster: &devcluster::DevCluster,
    token: &str,
) -> Result<kube::Config, QuickstartError> {
    let mut kc = Kubeconfig::from_yaml(&cluster.kubeconfig()).map_err(fail)?;
    for auth in &mut kc.auth_infos {
        if let Some(info) = auth.auth_info.as_mut() {
            info.token = Some(token.to_owned().into());
        }
    }
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(fail)
}

/// A Git repository holding a copy of `src`, committed once. Returns the commit id.
pub fn make_repo(src: &Path, repo: &Path) -> Result<String, String> {
    copy_tree(src, repo).map_err(|e| format!("copying {}: {e}", src.display()))?;
    let r = git2::Repository::init(repo).map_err(|e| e.to_string())?;
    commit_all(&r, "examples: the example GitOps tree")
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if ty.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

fn commit_all(r: &git2::Repository, message: &str) -> Result<String, String> {
    let e = |e: git2::Error| e.to_string();
    let mut index = r.index().map_err(e)?;
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .map_err(e)?;
    index.write().map_err(e)?;
    let tree_id = index.write_tree().map_err(e)?;
    let tree = r.find_tree(tree_id).map_err(e)?;
    let sig =
        git2::Signature::now("lockstep quickstart", "quickstart@lockstep.invalid").map_err(e)?;
    let parent = r.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let id = r
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .map_err(e)?;
    // The examples' Applications follow branch main.
    let on_main = r
        .head()
        .ok()
        .and_then(|h| h.name().ok().map(|n| n == "refs/heads/main"))
        .unwrap_or(false);
    if !on_main {
        let commit = r.find_commit(id).map_err(e)?;
        r.branch("main", &commit, true).map_err(e)?;
        r.set_head("refs/heads/main").map_err(e)?;
    }
    Ok(id.to_string())
}

/// Replaces `old` by `new` in one file of the repository and commits.
pub fn commit_change(
    repo: &Path,
    file: &str,
    old: &str,
    new: &str,
    message: &str,
) -> Result<String, String> {
    let path = repo.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{file}: {e}"))?;
    if !text.contains(old) {
        return Err(format!("{file} does not contain {old:?}"));
    }
    std::fs::write(&path, text.replace(old, new)).map_err(|e| format!("{file}: {e}"))?;
    let r = git2::Repository::open(repo).map_err(|e| e.to_string())?;
    commit_all(&r, message)
}

/// Applies every file a `kustomization.yaml` lists under `resources` (files or
/// directories; no patches or generators), as `client`. Returns the object count.
pub async fn install_kustomization(
    client: &kube::Client,
    discovery: &Discovery,
    dir: &Path,
) -> Result<usize, QuickstartError> {
    #[derive(serde::Deserialize)]
    struct Kustomization {
        #[serde(default)]
        resources: Vec<String>,
    }
    let file = dir.join("kustomization.yaml");
    let text =
        std::fs::read_to_string(&file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
    let k: Kustomization =
        serde_saphyr::from_str(&text).map_err(|e| fail(format!("{}: {e}", file.display())))?;
    let mut objects = Vec::new();
    for res in &k.resources {
        let path = dir.join(res);
        objects.extend(read_objects(&path, &[])?);
    }
    apply_objects(client, discovery, &objects).await?;
    Ok(objects.len())
}

/// Applies every manifest under `dir` as `client`, replacing `subst.0` by `subst.1` in
/// their text first. Returns the object count.
pub async fn install_dir(
    client: &kube::Client,
    discovery: &Discovery,
    dir: &Path,
    subst: Option<(&str, &str)>,
) -> Result<usize, QuickstartError> {
    let substs: Vec<(&str, &str)> = subst.into_iter().collect();
    let objects = read_objects(dir, &substs)?;
    apply_objects(client, discovery, &objects).await?;
    Ok(objects.len())
}

fn read_objects(
    path: &Path,
    substs: &[(&str, &str)],
) -> Result<Vec<RenderedObject>, QuickstartError> {
    let files: Vec<PathBuf> = if path.is_dir() {
        render::manifest_files(path, render::Limits::default())
            .map_err(fail)?
            .into_iter()
            .filter(|f| f.file_name().is_some_and(|n| n != "kustomization.yaml"))
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    let none = Identities::default();
    let opts = RenderOptions {
        sops_identities: &none,
        sealing_identities: &none,
        destination_namespace: None,
        vault: &NoVault,
        limits: render::Limits::default(),
        policies: None,
    };
    let mut out = Vec::new();
    for f in files {
        let mut text =
            std::fs::read_to_string(&f).map_err(|e| fail(format!("{}: {e}", f.display())))?;
        for (from, to) in substs {
            text = text.replace(from, to);
        }
        render::render_file(&f, text.as_bytes(), &opts, &mut out).map_err(fail)?;
    }
    Ok(out)
}

async fn apply_objects(
    client: &kube::Client,
    discovery: &Discovery,
    objects: &[RenderedObject],
) -> Result<(), QuickstartError> {
    let opts = ApplyOptions {
        mode: ApplyMode::Apply,
        crd_established_timeout: Duration::from_secs(30),
        force: true,
    };
    apply::apply_all(client, discovery, objects, &opts)
        .await
        .map_err(fail)?;
    Ok(())
}

/// Creates (or replaces) a Secret from files, as `client`.
pub async fn create_secret_from_files(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    files: &[(&str, &Path)],
) -> Result<(), QuickstartError> {
    let mut data = BTreeMap::new();
    for (key, path) in files {
        let bytes = std::fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        data.insert((*key).to_owned(), k8s_openapi::ByteString(bytes));
    }
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let mut secret = secret;
            secret.metadata.resource_version = api
                .get(name)
                .await
                .ok()
                .and_then(|s| s.metadata.resource_version);
            api.replace(name, &PostParams::default(), &secret)
                .await
                .map(|_| ())
                .map_err(|e| {
                    fail(format!(
                        "Secret {namespace}/{name}: {}",
                        crate::controller::reconcile::api_error_text(&e)
                    ))
                })
        }
        Err(e) => Err(fail(format!(
            "Secret {namespace}/{name}: {}",
            crate::controller::reconcile::api_error_text(&e)
        ))),
    }
}

/// For tests: the entries of an inventory as `Kind ns/name`.
pub fn describe_all(entries: &[InventoryEntry]) -> Vec<String> {
    entries.iter().map(describe).collect()
}
