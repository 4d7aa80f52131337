//! `lockstep devcluster`: run the embedded Kubernetes API server until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::common::{CliError, CliResult};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  # runs until Ctrl-C; writes devcluster.kubeconfig here:
  lockstep devcluster
  # runs until Ctrl-C:
  lockstep devcluster --listen 127.0.0.1:6443 --kubeconfig dev.kubeconfig"#)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the kubeconfig (default: devcluster.kubeconfig in the current directory).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    insecure_http: bool,
    /// Let requests without credentials in as system:anonymous (RBAC then allows them only
    /// the health and version paths), as kube-apiserver does; false answers them 401.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    anonymous_auth: bool,
}

pub fn run(args: Args) -> CliResult {
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::new(1, format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let config = devcluster::Config {
            listen: args.listen,
            tls: !args.insecure_http,
            anonymous: args.anonymous_auth,
            ..Default::default()
        };
        let cluster = devcluster::DevCluster::start(config)
            .await
            .map_err(|e| CliError::new(1, format!("devcluster: {e}")))?;
        let path = args
            .kubeconfig
            .unwrap_or_else(|| PathBuf::from("devcluster.kubeconfig"));
        cluster
            .write_kubeconfig(&path)
            .map_err(|e| CliError::new(3, format!("{}: {e}", path.display())))?;
        let shown = std::fs::canonicalize(&path).unwrap_or(path);
        eprintln!("devcluster serving at {}", cluster.url());
        eprintln!(
            "Point kubectl at it with:\n  export KUBECONFIG={}",
            shown.display()
        );
        eprintln!("Press Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
        cluster.shutdown().await;
        Ok(())
    })
}
