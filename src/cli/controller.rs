//! `lockstep controller`: the reconciler, as it runs in a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lockstep::cluster::client::Clients;
use lockstep::controller::reconcile::Settings;
use lockstep::controller::run::{self, Options};
use lockstep::server::{self, Metrics};

use super::common::{CliError, CliResult};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  # in a cluster, as deploy/ runs it [not run: needs a pod's service account]
  lockstep controller
  # on a laptop: a devcluster with deploy/ applied, then the controller
  lockstep devcluster --kubeconfig dev.kubeconfig   # runs until Ctrl-C
  KUBECONFIG=dev.kubeconfig kubectl apply -k deploy/
  # runs until Ctrl-C:
  KUBECONFIG=dev.kubeconfig lockstep controller --namespace lockstep-system \
    --concurrency 8 --listen 127.0.0.1:0

The kube connection comes from the in-cluster service account, or KUBECONFIG / ~/.kube/config.
The controller reads only its own Secret (--sealing-secret, keys ending .agekey); everything an
Application reads or writes goes through that Application's impersonated service account.
Logs: LOCKSTEP_LOG=info (or debug, trace); they never hold a secret value."#)]
pub struct Args {
    /// The reconciler's own namespace (its sealing Secret lives there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "lockstep-system")]
    namespace: String,
    /// The Secret whose keys ending in .agekey hold the cluster's sealing identities.
    #[arg(long, value_name = "NAME", default_value = "lockstep-sealing")]
    sealing_secret: String,
    /// Applications reconciled in parallel.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// The Git cache directory.
    #[arg(
        long,
        env = "LOCKSTEP_CACHE_DIR",
        value_name = "DIR",
        default_value = "/var/cache/lockstep"
    )]
    cache_dir: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::new(1, format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let config = kube::Config::infer()
            .await
            .map_err(|e| CliError::new(1, format!("no Kubernetes connection: {e}")))?;
        let clients = Clients::new(config)
            .map_err(|e| CliError::new(1, format!("cannot build the Kubernetes client: {e}")))?;
        std::fs::create_dir_all(&args.cache_dir)
            .map_err(|e| CliError::new(1, format!("{}: {e}", args.cache_dir.display())))?;
        let metrics = Arc::new(Metrics::new());
        let server = tokio::spawn(server::serve(args.listen, metrics.clone()));
        let options = Options {
            concurrency: args.concurrency,
            settings: Settings::new(args.cache_dir, &args.namespace, &args.sealing_secret),
            reporter: "lockstep".into(),
        };
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        let result = run::run(clients, options, metrics, shutdown, |_| {}).await;
        server.abort();
        result.map_err(|e| CliError::new(1, e.to_string()))
    })
}
