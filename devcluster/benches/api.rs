//! Throughput and memory of the emulator: GET of one object, LIST of 100, server-side apply
//! (unchanged and changed), concurrent kube-rs clients over HTTPS on loopback; then the
//! resident memory after storing many ~1 KB ConfigMaps. Prints a Markdown table.
//!
//! Run with `scripts/bench-devcluster` (pins the process to 2 cores). Environment:
//! `BENCH_SECONDS` per measurement (default 5), `BENCH_OBJECTS` for the memory step
//! (default 100000), `BENCH_CONCURRENCY` in-flight requests (default 16), `BENCH_RETENTION`
//! watch events kept (default 100000, the server default).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use devcluster::{Config, DevCluster};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

async fn client(cluster: &DevCluster) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig()).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(cfg).expect("client")
}

fn configmap(name: &str, payload: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "bench", "labels": {"app": "bench"}},
        "data": {"payload": payload}
    }))
    .expect("configmap")
}

struct Row {
    name: String,
    ops: u64,
    errors: u64,
    secs: f64,
}

/// Run `op` from `concurrency` tasks for `secs`, counting successes and failures.
async fn measure<F, Fut>(
    name: &str,
    secs: u64,
    concurrency: u64,
    clients: &[kube::Client],
    op: F,
) -> Row
where
    F: Fn(kube::Client, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    // Warm up connections.
    for (i, c) in clients.iter().enumerate() {
        op(c.clone(), i as u64).await;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let c = clients[(t as usize) % clients.len()].clone();
        let (op, stop, ok, bad) = (op.clone(), stop.clone(), ok.clone(), bad.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = t * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                if op(c.clone(), i).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Row {
        name: name.into(),
        ops: ok.load(Ordering::Relaxed),
        errors: bad.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
    }
}

fn main() {
    // Test runners list every target's tests with `--list`; this harness-less benchmark has
    // none, and must not start a full run when asked.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let secs = env_num("BENCH_SECONDS", 5);
    let objects = env_num("BENCH_OBJECTS", 100_000);
    let concurrency = env_num("BENCH_CONCURRENCY", 16).max(1);
    let rss_empty = rss_bytes();
    let config = Config {
        event_retention: env_num("BENCH_RETENTION", 100_000) as usize,
        ..Config::default()
    };
    let cluster = DevCluster::start(config).await.expect("server starts");
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(client(&cluster).await);
    }
    let ns: Api<Namespace> = Api::all(clients[0].clone());
    let nsobj: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "bench"}})).expect("namespace");
    ns.create(&PostParams::default(), &nsobj)
        .await
        .expect("namespace created");
    let payload = "x".repeat(900);
    let cms: Api<ConfigMap> = Api::namespaced(clients[0].clone(), "bench");
    for i in 0..100 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("cm-{i}"), &payload),
        )
        .await
        .expect("preload");
    }
    let mut rows = Vec::new();

    rows.push(
        measure(
            "GET one ConfigMap",
            secs,
            concurrency,
            &clients,
            |c, i| async move {
                let api: Api<ConfigMap> = Api::namespaced(c, "bench");
                api.get(&format!("cm-{}", i % 100)).await.is_ok()
            },
        )
        .await,
    );
    rows.push(
        measure(
            "LIST 100 ConfigMaps",
            secs,
            concurrency,
            &clients,
            |c, _| async move {
                let api: Api<ConfigMap> = Api::namespaced(c, "bench");
                api.list(&ListParams::default())
                    .await
                    // The 100 benchmark objects, plus the namespace's kube-root-ca.crt.
                    .is_ok_and(|l| {
                        l.items
                            .iter()
                            .filter(|c| {
                                c.metadata
                                    .name
                                    .as_deref()
                                    .is_some_and(|n| n.starts_with("cm-"))
                            })
                            .count()
                            == 100
                    })
            },
        )
        .await,
    );
    let p = payload.clone();
    rows.push(
        measure(
            "APPLY unchanged ConfigMap",
            secs,
            concurrency,
            &clients,
            move |c, i| {
                let p = p.clone();
                async move {
                    let api: Api<ConfigMap> = Api::namespaced(c, "bench");
                    let name = format!("cm-{}", i % 100);
                    let pp = PatchParams::apply("bench").force();
                    api.patch(&name, &pp, &Patch::Apply(configmap(&name, &p)))
                        .await
                        .is_ok()
                }
            },
        )
        .await,
    );
    let p = payload.clone();
    rows.push(
        measure(
            "APPLY changed ConfigMap",
            secs,
            concurrency,
            &clients,
            move |c, i| {
                let p = p.clone();
                async move {
                    let api: Api<ConfigMap> = Api::namespaced(c, "bench");
                    let name = format!("cm-{}", i % 100);
                    let pp = PatchParams::apply("bench").force();
                    let mut obj = configmap(&name, &p);
                    if let Some(d) = obj.data.as_mut() {
                        d.insert("rev".into(), i.to_string());
                    }
                    api.patch(&name, &pp, &Patch::Apply(obj)).await.is_ok()
                }
            },
        )
        .await,
    );

    // Memory: fill the store through the API.
    let rss_before = rss_bytes();
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let fill_start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let c = clients[(t as usize) % clients.len()].clone();
        let (next, failed, payload) = (next.clone(), failed.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(c, "bench");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= objects {
                    break;
                }
                let obj = configmap(&format!("obj-{i:06}"), &payload);
                if api.create(&PostParams::default(), &obj).await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let fill_secs = fill_start.elapsed().as_secs_f64();
    let rss_full = rss_bytes();
    let stored = objects - failed.load(Ordering::Relaxed);
    let object_size = serde_json::to_vec(
        &cms.get("obj-000000")
            .await
            .map(|o| serde_json::to_value(o).unwrap_or_default())
            .unwrap_or_default(),
    )
    .map(|v| v.len())
    .unwrap_or(0);
    rows.push(Row {
        name: format!("CREATE ConfigMap (filling {objects})"),
        ops: stored,
        errors: failed.load(Ordering::Relaxed),
        secs: fill_secs,
    });
    cluster.shutdown().await;

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "\n{} in-flight requests from 4 kube-rs clients over HTTPS on loopback, one process on a 2-worker tokio runtime, {secs} s per row\n",
        concurrency
    );
    println!("| Operation | Requests/s | Requests | Errors |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {} | {} |",
            r.name,
            r.ops as f64 / r.secs,
            r.ops,
            r.errors
        );
    }
    println!();
    println!("| Memory (RSS) | MiB |");
    println!("|---|---:|");
    println!(
        "| process before the server started | {:.0} |",
        mib(rss_empty)
    );
    println!(
        "| server with 100 ConfigMaps, after the throughput runs | {:.0} |",
        mib(rss_before)
    );
    println!(
        "| server with {stored} more ConfigMaps of {object_size} bytes (JSON, as served) | {:.0} |",
        mib(rss_full)
    );
}
