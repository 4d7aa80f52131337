//! Scale benchmark of the reconciler (run by `scripts/bench-reconcile`).
//!
//! devcluster runs in this process; `lockstep controller` runs as a separate process under
//! its own service account, so that its peak resident memory can be read from /proc. One
//! Git repository (file://) holds `apps/appNNNN/` for every Application: 8 ConfigMaps, one
//! Secret encrypted with SOPS (age) and one SealedSecret, all made with the lockstep binary.
//!
//! Measured: the cold sync (controller start until every Application is Ready at the
//! commit), the controller's peak RSS (VmHWM), and the API requests of one full reconcile
//! round with nothing changed, from devcluster's request counters, split by verb, resource
//! and identity (the controller itself, or an Application's impersonated service account).
//! Side by side: the same apps rendered by `lockstep render --reveal` and piped to
//! `kubectl apply --server-side`, one call per app, sequentially, as a script would.
//!
//! Prints Markdown on stdout and progress on stderr. Numbers are reported, never asserted.
//! No secret value is printed or written to disk: plaintext Secrets reach `lockstep
//! encrypt` / `lockstep seal` on stdin, and rendered Secrets reach kubectl through memory.
//!
//! Environment: BENCH_APPS (1000), BENCH_CONCURRENCY (controller --concurrency, 8),
//! NO_KUBECTL=1 (skip the kubectl column), BENCH_KUBECTL_APPS (apps timed for the kubectl
//! column, default min(BENCH_APPS, 200), extrapolated to BENCH_APPS), BENCH_TIMEOUT (seconds
//! to wait for each phase, 900), LOCKSTEP_BIN (target/release/lockstep).

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use lockstep::cluster::discovery::Discovery;
use lockstep::controller::application::{Application, RECONCILE_REQUESTED_AT};
use lockstep::controller::conditions;
use lockstep::quickstart;
use serde_json::json;

const CONTROLLER_USER: &str = "system:serviceaccount:lockstep-system:lockstep";
const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("[reconcile_scale] {}", msg.as_ref());
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

struct Bench {
    apps: usize,
    concurrency: usize,
    kubectl_apps: usize,
    timeout: Duration,
    bin: PathBuf,
    tmp: tempfile::TempDir,
}

impl Bench {
    fn ns(&self, i: usize) -> String {
        format!("b-{i:04}")
    }
}

/// Random printable value, never shown.
fn random_value() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 18];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs the lockstep binary with `input` on stdin; returns stdout. Neither the input nor
/// the output is printed on failure (the input holds plaintext).
async fn lockstep_stdin(bin: &Path, cwd: &Path, args: &[&str], input: String) -> String {
    let mut child = tokio::process::Command::new(bin)
        .current_dir(cwd)
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("lockstep runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let out = child.wait_with_output().await.expect("lockstep output");
    let _ = writer.await;
    assert!(
        out.status.success(),
        "lockstep {} failed ({})",
        args[0],
        out.status
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Writes apps/appNNNN/ for every app and commits; returns the commit.
async fn make_repo(b: &Bench, repo: &Path) -> String {
    let sops_recipient = std::fs::read_to_string(root().join("keys-example/sops.recipient"))
        .expect("sops recipient")
        .trim()
        .to_owned();
    let sealing_recipient = std::fs::read_to_string(root().join("keys-example/sealing.recipient"))
        .expect("sealing recipient")
        .trim()
        .to_owned();
    std::fs::create_dir_all(repo).expect("repo dir");
    git(repo, &["init", "-q"]);
    let cwd = b.tmp.path().to_path_buf();
    let started = Instant::now();
    let jobs = (0..b.apps).map(|i| {
        let ns = b.ns(i);
        let dir = repo.join(format!("apps/app{i:04}"));
        let (bin, cwd) = (b.bin.clone(), cwd.clone());
        let (sr, sl) = (sops_recipient.clone(), sealing_recipient.clone());
        async move {
            std::fs::create_dir_all(&dir).expect("app dir");
            for k in 0..8 {
                std::fs::write(
                    dir.join(format!("cm{k}.yaml")),
                    format!(
                        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm{k}\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/part-of: bench\ndata:\n  index: \"{k}\"\n  app: \"{ns}\"\n  settings.yaml: |\n    replicas: 2\n    logLevel: info\n    feature: {k}\n"
                    ),
                )
                .expect("write cm");
            }
            let plain = format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {ns}\ntype: Opaque\nstringData:\n  username: app\n  password: {}\n",
                random_value()
            );
            let enc = lockstep_stdin(
                &bin,
                &cwd,
                &[
                    "encrypt",
                    "--age",
                    &sr,
                    "--encrypted-regex",
                    "^(data|stringData)$",
                    "--input-type",
                    "yaml",
                    "--output-type",
                    "yaml",
                    "-",
                ],
                plain,
            )
            .await;
            std::fs::write(dir.join("db.enc.yaml"), enc).expect("write sops");
            let plain = format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n  namespace: {ns}\ntype: Opaque\ndata:\n  token: {}\n",
                STANDARD.encode(random_value())
            );
            let sealed =
                lockstep_stdin(&bin, &cwd, &["seal", "--recipient", &sl, "-"], plain).await;
            std::fs::write(dir.join("api.sealed.yaml"), sealed).expect("write sealed");
        }
    });
    futures::stream::iter(jobs)
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "bench apps"]);
    progress(format!(
        "repository: {} apps, {} files, generated in {:.1}s",
        b.apps,
        b.apps * 10,
        started.elapsed().as_secs_f64()
    ));
    git(repo, &["rev-parse", "HEAD"])
}

async fn admin_client(cluster: &devcluster::DevCluster) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig()).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    Client::try_from(config).expect("client")
}

/// Retries a request a few times (the API server is busy during setup).
async fn retry<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut last = None;
    for _ in 0..20 {
        match f().await {
            Ok(v) => return v,
            Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => {
                last = Some(kube::Error::Api(e));
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: {last:?}");
}

async fn create<K>(api: Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).expect("object");
    retry("create", || {
        let (api, obj) = (api.clone(), obj.clone());
        async move { api.create(&PostParams::default(), &obj).await }
    })
    .await;
}

/// Tenant namespace, service account, RBAC, the SOPS key Secret and the Application.
async fn setup_app(admin: Client, ns: String, url: String, path: String, agekey: Arc<Vec<u8>>) {
    create(
        Api::<Namespace>::all(admin.clone()),
        json!({"metadata": {"name": ns}}),
    )
    .await;
    create(
        Api::<ServiceAccount>::namespaced(admin.clone(), &ns),
        json!({"metadata": {"name": "deployer"}}),
    )
    .await;
    create(
        Api::<Role>::namespaced(admin.clone(), &ns),
        json!({
            "metadata": {"name": "deployer"},
            "rules": [{"apiGroups": ["", "apps", "batch"], "resources": ["*"], "verbs": ["*"]}],
        }),
    )
    .await;
    let rbs = Api::<RoleBinding>::namespaced(admin.clone(), &ns);
    create(
        rbs.clone(),
        json!({
            "metadata": {"name": "deployer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}],
        }),
    )
    .await;
    create(
        rbs,
        json!({
            "metadata": {"name": "lockstep-impersonate"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "lockstep-impersonate"},
            "subjects": [{"kind": "ServiceAccount", "name": "lockstep", "namespace": "lockstep-system"}],
        }),
    )
    .await;
    let mut data = BTreeMap::new();
    data.insert(
        "sops.agekey".to_owned(),
        k8s_openapi::ByteString(agekey.as_ref().clone()),
    );
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("sops-age".into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let secrets = Api::<Secret>::namespaced(admin.clone(), &ns);
    retry("sops-age Secret", || {
        let (api, s) = (secrets.clone(), secret.clone());
        async move { api.create(&PostParams::default(), &s).await }
    })
    .await;
    let body = json!({
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {
            "source": {"url": url, "ref": {"branch": "main"}, "path": path},
            "serviceAccountName": "deployer",
            "interval": "10m",
            "prune": true,
            "decryption": {"secretRef": {"name": "sops-age"}},
        },
    });
    let apps = Api::<Application>::namespaced(admin.clone(), &ns);
    retry("Application", || {
        let (api, body) = (apps.clone(), body.clone());
        async move {
            api.patch(
                "app",
                &PatchParams::apply("bench").force(),
                &Patch::Apply(&body),
            )
            .await
        }
    })
    .await;
}

/// Request counts by (user, verb, resource) from devcluster's counters.
type Counts = BTreeMap<(String, String, String), u64>;

fn counts(cluster: &devcluster::DevCluster) -> Counts {
    let text = cluster.metrics_text();
    let mut out = Counts::new();
    for line in text.lines() {
        let Some((name, labels, v)) = devcluster::metrics::parse_sample(line) else {
            continue;
        };
        if name != "apiserver_request_total" {
            continue;
        }
        let get = |k: &str| {
            labels
                .iter()
                .find(|(lk, _)| lk == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        *out.entry((get("user"), get("verb"), get("resource")))
            .or_default() += v as u64;
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Who {
    Controller,
    Impersonated,
    Other,
}

fn who(user: &str) -> Who {
    if user == CONTROLLER_USER {
        Who::Controller
    } else if user.starts_with("system:serviceaccount:b-") {
        Who::Impersonated
    } else {
        Who::Other
    }
}

/// after - before, aggregated by (who, verb, resource), the admin (Other) kept separately.
fn diff(before: &Counts, after: &Counts) -> BTreeMap<(Who, String, String), u64> {
    let mut out = BTreeMap::new();
    for (k, v) in after {
        let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
        if d > 0 {
            *out.entry((who(&k.0), k.1.clone(), k.2.clone()))
                .or_default() += d;
        }
    }
    out
}

fn sum_where(d: &BTreeMap<(Who, String, String), u64>, f: impl Fn(Who, &str, &str) -> bool) -> u64 {
    d.iter()
        .filter(|((w, v, r), _)| f(*w, v, r))
        .map(|(_, n)| *n)
        .sum()
}

fn is_write(verb: &str) -> bool {
    WRITE_VERBS.contains(&verb)
}

fn ready_at(app: &Application, commit: &str) -> bool {
    app.status.as_ref().is_some_and(|s| {
        s.condition(conditions::READY)
            .is_some_and(|c| c.status == "True" && c.observed_generation == app.metadata.generation)
            && s.last_applied_revision
                .as_deref()
                .is_some_and(|r| r.ends_with(commit))
    })
}

/// Polls a LIST of Applications every 500 ms until `pred` holds for `n` of them.
async fn wait_all(
    admin: &Client,
    n: usize,
    timeout: Duration,
    what: &str,
    mut on_poll: impl FnMut(),
    pred: impl Fn(&Application) -> bool,
) -> Option<Duration> {
    let api = Api::<Application>::all(admin.clone());
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        on_poll();
        if let Ok(list) = api.list(&ListParams::default()).await {
            let done = list.items.iter().filter(|a| pred(a)).count();
            if done >= n {
                return Some(started.elapsed());
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                progress(format!(
                    "{what}: {done}/{n} after {:.0}s",
                    started.elapsed().as_secs_f64()
                ));
                last_report = Instant::now();
            }
        }
        if started.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

/// Open sockets of a process (each watch over HTTP/1.1 holds its own connection).
fn proc_sockets(pid: u32) -> Option<usize> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        dir.filter_map(Result::ok)
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
            .count(),
    )
}

fn scrape(port: u16) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// The controller process, killed if the bench stops early.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn controller_kubeconfig(cluster: &devcluster::DevCluster, dir: &Path) -> PathBuf {
    let token = cluster
        .service_account_token(
            quickstart::CONTROLLER_NAMESPACE,
            quickstart::CONTROLLER_ACCOUNT,
        )
        .expect("controller token");
    let mut kc: serde_json::Value =
        serde_saphyr::from_str(&cluster.kubeconfig()).expect("kubeconfig parses");
    if let Some(users) = kc["users"].as_array_mut() {
        for u in users {
            u["user"] = json!({"token": token});
        }
    }
    let p = dir.join("controller.kubeconfig");
    std::fs::write(&p, serde_json::to_string(&kc).expect("json")).expect("write kubeconfig");
    p
}

struct KubectlResult {
    timed: usize,
    total: Duration,
    render: Duration,
    requests: u64,
    writes: u64,
    failures: usize,
}

/// `lockstep render --reveal | kubectl apply --server-side -f -`, one app at a time. The
/// rendered objects go to namespace k-NNNN: the bench rewrites the namespace in memory, as
/// a script would with sed.
async fn kubectl_column(
    b: &Bench,
    cluster: &devcluster::DevCluster,
    admin: &Client,
    repo: &Path,
) -> KubectlResult {
    let n = b.kubectl_apps;
    let jobs = (0..n).map(|i| {
        let admin = admin.clone();
        let ns = format!("k-{i:04}");
        async move {
            create(
                Api::<Namespace>::all(admin),
                json!({"metadata": {"name": ns}}),
            )
            .await
        }
    });
    futures::stream::iter(jobs)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let kubeconfig = b.tmp.path().join("admin.kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig)
        .expect("admin kubeconfig");
    let kube_home = b.tmp.path().join("kube-home");
    std::fs::create_dir_all(&kube_home).expect("kubectl home");
    let sops_key = root().join("keys-example/sops.agekey");
    let sealing_key = root().join("keys-example/sealing.agekey");
    let before = counts(cluster);
    let started = Instant::now();
    let mut render = Duration::ZERO;
    let mut failures = 0;
    for i in 0..n {
        let t = Instant::now();
        let out = Command::new(&b.bin)
            .current_dir(b.tmp.path())
            .arg("render")
            .arg(repo.join(format!("apps/app{i:04}")))
            .arg("--identity")
            .arg(&sops_key)
            .arg("--sealing-identity")
            .arg(&sealing_key)
            .arg("--reveal")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .expect("render runs");
        render += t.elapsed();
        if !out.status.success() {
            failures += 1;
            progress(format!("render of app{i:04} failed ({})", out.status));
            continue;
        }
        let text = String::from_utf8(out.stdout).expect("utf-8").replace(
            &format!("namespace: b-{i:04}"),
            &format!("namespace: k-{i:04}"),
        );
        let mut child = Command::new("kubectl")
            .current_dir(b.tmp.path())
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", &kube_home)
            .args([
                "apply",
                "--server-side",
                "--field-manager",
                "bench-script",
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl runs");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("to kubectl");
        drop(stdin);
        drop(text);
        let status = child.wait().expect("kubectl waits");
        if !status.success() {
            failures += 1;
            progress(format!("kubectl apply of app{i:04} failed ({status})"));
        }
        if (i + 1) % 50 == 0 {
            progress(format!(
                "kubectl: {}/{n} in {:.0}s",
                i + 1,
                started.elapsed().as_secs_f64()
            ));
        }
    }
    let total = started.elapsed();
    let d = diff(&before, &counts(cluster));
    KubectlResult {
        timed: n,
        total,
        render,
        requests: sum_where(&d, |w, _, _| w == Who::Other),
        writes: sum_where(&d, |w, v, _| w == Who::Other && is_write(v)),
        failures,
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        format!("{}m{:02}s ({s:.1} s)", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1} s")
    }
}

async fn run() {
    let apps = env_usize("BENCH_APPS", 1000);
    let b = Bench {
        apps,
        concurrency: env_usize("BENCH_CONCURRENCY", 8),
        kubectl_apps: if std::env::var("NO_KUBECTL").is_ok_and(|v| v == "1") {
            0
        } else {
            env_usize("BENCH_KUBECTL_APPS", apps.min(200)).min(apps)
        },
        timeout: Duration::from_secs(env_usize("BENCH_TIMEOUT", 900) as u64),
        bin: std::env::var_os("LOCKSTEP_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target/release/lockstep")),
        tmp: tempfile::Builder::new()
            .prefix("lockstep-bench-")
            .tempdir()
            .expect("tmp"),
    };
    assert!(
        b.bin.exists(),
        "{} missing: cargo build --release",
        b.bin.display()
    );
    let repo = b.tmp.path().join("git/repo");
    let commit = make_repo(&b, &repo).await;
    let url = format!("file://{}", repo.display());

    let cluster = devcluster::DevCluster::start(devcluster::Config::default())
        .await
        .expect("devcluster starts");
    let admin = admin_client(&cluster).await;
    quickstart::install_kustomization(&admin, &Discovery::new(), &root().join("deploy"))
        .await
        .expect("deploy/ installs");
    quickstart::create_secret_from_files(
        &admin,
        quickstart::CONTROLLER_NAMESPACE,
        quickstart::SEALING_SECRET,
        &[(
            "sealing.agekey",
            &root().join("keys-example/sealing.agekey"),
        )],
    )
    .await
    .expect("sealing Secret");
    let policy = json!({
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": "bench"},
        "spec": {
            "applications": {"namespaces": ["b-*"]},
            "sources": {"allow": [format!("file://{}/**", b.tmp.path().join("git").display())]},
            "serviceAccounts": [{"namespaces": ["*"], "names": ["deployer"]}],
        },
    });
    let policies: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("lockstep.dev", "v1alpha1", "Policy"),
            "policies",
        ),
    );
    policies
        .patch(
            "bench",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&policy),
        )
        .await
        .expect("Policy applies");

    let started = Instant::now();
    let agekey = Arc::new(std::fs::read(root().join("keys-example/sops.agekey")).expect("agekey"));
    let jobs = (0..b.apps).map(|i| {
        setup_app(
            admin.clone(),
            b.ns(i),
            url.clone(),
            format!("apps/app{i:04}"),
            agekey.clone(),
        )
    });
    futures::stream::iter(jobs)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    progress(format!(
        "{} tenants and Applications created in {:.1}s",
        b.apps,
        started.elapsed().as_secs_f64()
    ));

    // The controller, as its own service account, in its own process.
    let kubeconfig = controller_kubeconfig(&cluster, b.tmp.path());
    let port = free_port();
    let log = std::fs::File::create(b.tmp.path().join("controller.log")).expect("log");
    let before_cold = counts(&cluster);
    let self_cpu_before = proc_cpu_seconds(std::process::id());
    let cold_started = Instant::now();
    let mut child = Reaped(
        Command::new(&b.bin)
            .args(["controller", "--namespace", "lockstep-system", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--concurrency")
            .arg(b.concurrency.to_string())
            .arg("--cache-dir")
            .arg(b.tmp.path().join("cache"))
            .env("KUBECONFIG", &kubeconfig)
            .env("LOCKSTEP_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("controller starts"),
    );
    let pid = child.0.id();
    let cold = wait_all(
        &admin,
        b.apps,
        b.timeout,
        "cold sync",
        || {},
        |a| ready_at(a, &commit),
    )
    .await;
    let cold_cpu = proc_cpu_seconds(pid);
    let server_cpu = match (self_cpu_before, proc_cpu_seconds(std::process::id())) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let rss_after_cold = proc_status_kib(pid, "VmRSS:");
    let cold = cold.map(|_| cold_started.elapsed());
    let Some(cold) = cold else {
        let _ = child.0.kill();
        let tail = std::fs::read_to_string(b.tmp.path().join("controller.log")).unwrap_or_default();
        let lines: Vec<&str> = tail.lines().collect();
        for l in &lines[lines.len().saturating_sub(20)..] {
            eprintln!("{l}");
        }
        panic!("cold sync did not finish within {:?}", b.timeout);
    };
    progress(format!("cold sync: {}", secs(cold)));
    // Let trailing status writes and events land before the window starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cold_diff = diff(&before_cold, &counts(&cluster));

    // One full round with nothing changed.
    let stamp = format!(
        "bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let before_round = counts(&cluster);
    let cpu_before_round = proc_cpu_seconds(pid);
    let round_started = Instant::now();
    let patch = json!({"metadata": {"annotations": {RECONCILE_REQUESTED_AT: stamp}}});
    let jobs = (0..b.apps).map(|i| {
        let api = Api::<Application>::namespaced(admin.clone(), &b.ns(i));
        let patch = patch.clone();
        async move {
            retry("annotate", || {
                let (api, patch) = (api.clone(), patch.clone());
                async move {
                    api.patch("app", &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                }
            })
            .await;
        }
    });
    futures::stream::iter(jobs)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let round = wait_all(
        &admin,
        b.apps,
        b.timeout,
        "unchanged round",
        || {},
        |a| {
            a.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_deref())
                == Some(stamp.as_str())
        },
    )
    .await
    .expect("the unchanged round finishes");
    let round_total = round_started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let round_diff = diff(&before_round, &counts(&cluster));
    let round_cpu = match (cpu_before_round, proc_cpu_seconds(pid)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let not_ready = Api::<Application>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items.iter().filter(|a| !ready_at(a, &commit)).count())
        .unwrap_or(usize::MAX);
    let metrics = scrape(port);
    let hwm = proc_status_kib(pid, "VmHWM:");
    let rss = proc_status_kib(pid, "VmRSS:");
    let threads = proc_status_kib(pid, "Threads:");
    let sockets = proc_sockets(pid);
    // SIGTERM, then wait.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = child.0.wait();
    progress(format!("unchanged round: {}", secs(round)));

    let kubectl = if b.kubectl_apps > 0 {
        progress(format!(
            "kubectl apply --server-side: {} apps, sequentially",
            b.kubectl_apps
        ));
        Some(kubectl_column(&b, &cluster, &admin, &repo).await)
    } else {
        None
    };

    // Report.
    let n = b.apps as f64;
    let mib = |k: Option<u64>| {
        k.map(|k| format!("{:.0} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "n/a".into())
    };
    let ours = |d: &BTreeMap<(Who, String, String), u64>, f: &dyn Fn(Who, &str, &str) -> bool| {
        sum_where(d, |w, v, r| w != Who::Other && f(w, v, r))
    };
    let cold_requests = ours(&cold_diff, &|_, _, _| true);
    let cold_writes = ours(&cold_diff, &|_, v, _| is_write(v));
    let r_all = ours(&round_diff, &|_, _, _| true);
    let r_obj_writes = ours(&round_diff, &|w, v, _| {
        w == Who::Impersonated && is_write(v)
    });
    let r_status = ours(&round_diff, &|w, v, r| {
        w == Who::Controller && is_write(v) && r == "applications"
    });
    let r_other_writes = ours(&round_diff, &|w, v, r| {
        w == Who::Controller && is_write(v) && r != "applications"
    });
    let r_ctrl = ours(&round_diff, &|w, _, _| w == Who::Controller);
    let r_imp = ours(&round_diff, &|w, _, _| w == Who::Impersonated);

    println!(
        "## Reconciler scale: {} Applications x 10 objects ({} objects)\n",
        b.apps,
        b.apps * 10
    );
    println!(
        "Each app: 8 ConfigMaps, 1 SOPS-encrypted Secret (age), 1 SealedSecret; one Git repo (file://), \
         one commit. devcluster in the bench process; `lockstep controller --concurrency {}` as a \
         separate process under its own service account. {} CPUs online.\n",
        b.concurrency,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let (k_time, k_note) = match &kubectl {
        Some(k) if k.timed == b.apps => (secs(k.total), String::new()),
        Some(k) => (
            format!(
                "{} (extrapolated)",
                secs(k.total.mul_f64(b.apps as f64 / k.timed as f64))
            ),
            format!(
                "kubectl column: {} apps timed in {}, extrapolated linearly to {}. ",
                k.timed,
                secs(k.total),
                b.apps
            ),
        ),
        None => ("skipped".into(), String::new()),
    };
    // The header is the README's (tests/readme.rs compares them).
    println!(
        "| {} apps, {} objects | lockstep controller | `render \\| kubectl apply --server-side`, one call per app | goal |",
        thousands(b.apps),
        thousands(b.apps * 10)
    );
    println!("|---|---|---|---|");
    println!(
        "| cold sync, {} apps until all Ready | {} | {} | < 60 s |",
        b.apps,
        secs(cold),
        k_time
    );
    println!(
        "| peak RSS (VmHWM) | {} | n/a (one process per app) | < 200 MiB |",
        mib(hwm)
    );
    match &kubectl {
        Some(k) => println!(
            "| API requests, cold | {} ({:.1}/app; {} writes) | {} for {} apps ({:.1}/app; {} writes) | |",
            cold_requests,
            cold_requests as f64 / n,
            cold_writes,
            k.requests,
            k.timed,
            k.requests as f64 / k.timed as f64,
            k.writes
        ),
        None => println!(
            "| API requests, cold | {} ({:.1}/app; {} writes) | | |",
            cold_requests,
            cold_requests as f64 / n,
            cold_writes
        ),
    }
    println!(
        "| controller CPU during cold sync | {} | | |",
        cold_cpu
            .map(|c| format!("{c:.1} s"))
            .unwrap_or_else(|| "n/a".into())
    );
    println!(
        "| devcluster CPU during cold sync (the bench process: API server and polling) | {} | | |",
        server_cpu
            .map(|c| format!("{c:.1} s"))
            .unwrap_or_else(|| "n/a".into())
    );
    println!(
        "| unchanged round: time until every app handled the request | {} | | |",
        secs(round)
    );
    println!(
        "| unchanged round: API requests | {} ({:.2}/app) | | does not grow with objects |",
        r_all,
        r_all as f64 / n
    );
    println!(
        "| unchanged round: object writes (create/update/patch/delete as the apps) | {} | | 0 |",
        r_obj_writes
    );
    println!(
        "| unchanged round: Application status writes | {} ({:.2}/app) | | |",
        r_status,
        r_status as f64 / n
    );
    println!(
        "| unchanged round: other controller writes (events, ...) | {} | | |",
        r_other_writes
    );
    println!(
        "| unchanged round: controller CPU | {} | | |",
        round_cpu
            .map(|c| format!("{c:.1} s"))
            .unwrap_or_else(|| "n/a".into())
    );
    println!();
    println!(
        "{k_note}The unchanged round: every Application annotated `{RECONCILE_REQUESTED_AT}` at once (admin \
         requests not counted), measured until every app recorded it in \
         `status.lastHandledReconcileAt` ({} wall time incl. the annotations), plus 3 s. \
         RSS after cold sync {}, at the end {}; {} threads, {} open sockets. Apps not Ready at the commit at \
         the end: {}.{}\n",
        secs(round_total),
        mib(rss_after_cold),
        mib(rss),
        threads.map(|t| t.to_string()).unwrap_or_default(),
        sockets.map(|t| t.to_string()).unwrap_or_default(),
        not_ready,
        kubectl
            .as_ref()
            .map(|k| format!(
                " kubectl column: render {:.1} s of {:.1} s; {} failed calls.",
                k.render.as_secs_f64(),
                k.total.as_secs_f64(),
                k.failures
            ))
            .unwrap_or_default()
    );
    println!(
        "### Unchanged round by identity, verb and resource ({} controller, {} impersonated)\n",
        r_ctrl, r_imp
    );
    println!("| identity | verb | resource | requests | per app |");
    println!("|---|---|---|---|---|");
    for ((w, v, r), c) in &round_diff {
        if *w == Who::Other {
            continue;
        }
        let w = match w {
            Who::Controller => "controller",
            Who::Impersonated => "impersonated (b-NNNN:deployer)",
            Who::Other => "",
        };
        println!("| {w} | {v} | {r} | {c} | {:.2} |", *c as f64 / n);
    }
    println!();
    println!("### Cold sync by identity, verb and resource\n");
    println!("| identity | verb | resource | requests | per app |");
    println!("|---|---|---|---|---|");
    for ((w, v, r), c) in &cold_diff {
        if *w == Who::Other {
            continue;
        }
        let w = match w {
            Who::Controller => "controller",
            Who::Impersonated => "impersonated",
            Who::Other => "",
        };
        println!("| {w} | {v} | {r} | {c} | {:.2} |", *c as f64 / n);
    }
    println!();
    println!("### Controller /metrics at the end\n");
    println!("```");
    let mut seen = HashSet::new();
    for line in metrics.lines() {
        if line.starts_with('#') || line.contains("_bucket{") || line.is_empty() {
            continue;
        }
        if seen.insert(line.to_owned()) {
            println!("{line}");
        }
    }
    println!("```");
    cluster.shutdown().await;
}

/// 1000 -> "1,000", as the README writes counts.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
