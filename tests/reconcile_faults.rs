//! The reconciler under stress: devcluster injecting 500s, 429s and timeouts while 50
//! Applications reconcile, and a controller process killed with SIGKILL mid-reconcile.
//! Both must converge with correct inventories and nothing wrongly pruned.

mod support;

use std::time::{Duration, Instant};

use devcluster::faults::{ErrorKind, FaultRule, Timeout};
use serde_json::json;
use support::cluster::{Harness, inventory_names, ready_for_generation};
use support::git::TestRepo;

fn cm(name: &str, ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n  v: \"1\"\n"
    )
}

fn spec(repo: &TestRepo, path: &str) -> serde_json::Value {
    json!({
        "source": {"url": repo.file_url(), "path": path},
        "serviceAccountName": "deployer",
        "interval": "30s",
        "retryInterval": "1s",
        "timeout": "20s",
        "prune": true,
    })
}

/// `apps` namespaces t-NN, each with an app of `per_app` ConfigMaps under appNN/.
async fn many_apps(h: &Harness, r: &TestRepo, apps: usize, per_app: usize) -> String {
    for a in 0..apps {
        let ns = format!("t-{a:02}");
        for i in 0..per_app {
            support::write(
                &r.work.join(format!("app{a:02}/cm{i}.yaml")),
                cm(&format!("cm{i}"), &ns),
            );
        }
    }
    support::git::git(&r.work, &["add", "-A"]);
    support::git::git(&r.work, &["commit", "-q", "-m", "apps"]);
    r.publish();
    h.policy("tenants", &r.srv_dir(), json!({})).await;
    for a in 0..apps {
        let ns = format!("t-{a:02}");
        h.tenant(&ns).await;
    }
    r.head()
}

async fn all_ready(h: &Harness, apps: usize, commit: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for a in 0..apps {
        let ns = format!("t-{a:02}");
        let left = deadline.saturating_duration_since(Instant::now());
        h.wait_app(
            &ns,
            "app",
            left.max(Duration::from_secs(1)),
            "Ready at the commit",
            |app| {
                ready_for_generation(app)
                    && app
                        .status
                        .as_ref()
                        .and_then(|s| s.last_applied_revision.as_deref())
                        .is_some_and(|r| r.ends_with(commit))
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_apps_converge_through_injected_faults_and_prune_only_what_left_git() {
    const APPS: usize = 50;
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    let c1 = many_apps(&h, &r, APPS, 3).await;
    for a in 0..APPS {
        h.application(&format!("t-{a:02}"), "app", spec(&r, &format!("app{a:02}")))
            .await;
    }
    h.cluster.set_fault_seed(7);
    h.cluster.set_faults(vec![
        FaultRule::new(None, Some("configmaps")).internal_errors(0.10),
        FaultRule {
            error: ErrorKind::TooManyRequests {
                retry_after_seconds: 1,
            },
            error_rate: 0.05,
            timeout_rate: 0.03,
            timeout: Timeout::After(Duration::from_millis(500)),
            ..FaultRule::new(Some("patch"), None)
        },
    ]);
    all_ready(&h, APPS, &c1, Duration::from_secs(240)).await;

    // Remove one ConfigMap of every app; faults still on.
    for a in 0..APPS {
        let _ = std::fs::remove_file(r.work.join(format!("app{a:02}/cm2.yaml")));
    }
    support::git::git(&r.work, &["add", "-A"]);
    support::git::git(&r.work, &["commit", "-q", "-m", "drop cm2"]);
    r.publish();
    let c2 = r.head();
    for a in 0..APPS {
        h.request_reconcile(&format!("t-{a:02}"), "app").await;
    }
    all_ready(&h, APPS, &c2, Duration::from_secs(240)).await;
    h.cluster.set_faults(Vec::new());
    for a in 0..APPS {
        let ns = format!("t-{a:02}");
        let app = h.get_app(&ns, "app").await;
        assert_eq!(
            inventory_names(&app),
            vec!["ConfigMap/cm0", "ConfigMap/cm1"],
            "{ns}"
        );
        assert!(
            h.configmap(&ns, "cm0").await.is_some(),
            "{ns}/cm0 wrongly pruned"
        );
        assert!(
            h.configmap(&ns, "cm1").await.is_some(),
            "{ns}/cm1 wrongly pruned"
        );
        assert!(
            h.configmap(&ns, "cm2").await.is_none(),
            "{ns}/cm2 not pruned"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_reconcile_converges_after_restart() {
    const APPS: usize = 10;
    let mut h = Harness::start().await;
    // This test runs the controller as a separate process, to kill it.
    h.stop_controller().await;
    let r = TestRepo::new(0);
    let c1 = many_apps(&h, &r, APPS, 5).await;
    // Slow writes down so that the kill lands in the middle of applies.
    h.cluster.set_faults(vec![FaultRule {
        latency: Duration::from_millis(40),
        ..FaultRule::new(Some("patch"), Some("configmaps"))
    }]);
    for a in 0..APPS {
        h.application(&format!("t-{a:02}"), "app", spec(&r, &format!("app{a:02}")))
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = h.controller_kubeconfig(dir.path());
    let start = |cache: &std::path::Path| {
        std::process::Command::new(support::lockstep_bin())
            .args([
                "controller",
                "--namespace",
                "lockstep-system",
                "--listen",
                "127.0.0.1:0",
            ])
            .arg("--cache-dir")
            .arg(cache)
            .env("KUBECONFIG", &kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("controller starts")
    };
    let mut child = start(&dir.path().join("cache1"));
    // Wait until some but not all ConfigMaps exist, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut n = 0;
        for a in 0..APPS {
            for i in 0..5 {
                if h.configmap(&format!("t-{a:02}"), &format!("cm{i}"))
                    .await
                    .is_some()
                {
                    n += 1;
                }
            }
        }
        if n > 0 {
            assert!(n < APPS * 5, "everything applied before the kill");
            break;
        }
        assert!(Instant::now() < deadline, "nothing applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let mut child = start(&dir.path().join("cache2"));
    all_ready(&h, APPS, &c1, Duration::from_secs(120)).await;
    // Prune still works from the inventory recorded across the restart.
    for a in 0..APPS {
        let _ = std::fs::remove_file(r.work.join(format!("app{a:02}/cm4.yaml")));
    }
    support::git::git(&r.work, &["add", "-A"]);
    support::git::git(&r.work, &["commit", "-q", "-m", "drop cm4"]);
    r.publish();
    let c2 = r.head();
    for a in 0..APPS {
        h.request_reconcile(&format!("t-{a:02}"), "app").await;
    }
    all_ready(&h, APPS, &c2, Duration::from_secs(120)).await;
    let _ = child.kill();
    let _ = child.wait();
    for a in 0..APPS {
        let ns = format!("t-{a:02}");
        let app = h.get_app(&ns, "app").await;
        assert_eq!(inventory_names(&app).len(), 4, "{ns}");
        assert!(
            h.configmap(&ns, "cm4").await.is_none(),
            "{ns}/cm4 not pruned"
        );
        assert!(
            h.configmap(&ns, "cm3").await.is_some(),
            "{ns}/cm3 wrongly pruned"
        );
    }
}
