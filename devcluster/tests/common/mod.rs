//! Shared test setup: a running server, an isolated kubectl environment, a kube-rs client.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;

use devcluster::{Config, DevCluster};

pub struct Env {
    pub cluster: DevCluster,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

pub async fn start() -> Env {
    start_with(Config::default()).await
}

pub async fn start_with(config: Config) -> Env {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let cluster = DevCluster::start(config).await.expect("server starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");
    Env {
        cluster,
        dir,
        kubeconfig,
    }
}

/// The real kubectl: on PATH (scripts/test adds .tools/bin) or in the repository's .tools.
pub fn kubectl_path() -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for p in std::env::split_paths(&paths) {
            let c = p.join("kubectl");
            if c.is_file() {
                return c;
            }
        }
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/kubectl");
    assert!(
        local.is_file(),
        "kubectl not found on PATH or in .tools/bin (run scripts/install-test-tools)"
    );
    local
}

impl Env {
    pub fn kubectl_cmd(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(kubectl_path());
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            // A private HOME keeps kubectl's discovery cache per server.
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
        c
    }

    pub async fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().await.expect("kubectl runs")
    }

    /// Run kubectl and require success; returns stdout.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub async fn client(&self) -> kube::Client {
        let text = self.cluster.kubeconfig();
        let kc = kube::config::Kubeconfig::from_yaml(&text).expect("kubeconfig parses");
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("client config");
        kube::Client::try_from(cfg).expect("client")
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("manifest written");
        p.to_string_lossy().into_owned()
    }
}
