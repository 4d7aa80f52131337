//! devcluster: an in-process Kubernetes API server emulator that kubectl and kube-rs talk to
//! as if it were kube-apiserver. Start one with [`DevCluster::start`], point clients at
//! [`DevCluster::kubeconfig`], and stop it with [`DevCluster::shutdown`].

pub mod access;
pub mod auth;
pub mod discovery;
pub mod jsonpatch;
pub mod lifecycle;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod rbac;
pub mod resources;
pub mod selector;
pub mod server;
pub mod ssa;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;
pub mod watch;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinHandle;

use crate::access::Authenticator;
use crate::resources::Registry;
use crate::server::Shared;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listener: {0}")]
    Io(#[from] io::Error),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Serve HTTPS with a generated CA (the default); HTTP only when false.
    pub tls: bool,
    /// The admin bearer token; random when unset.
    pub admin_token: Option<String>,
    /// Cap on any watch's duration, so tests can exercise re-watching.
    pub max_watch_seconds: Option<u64>,
    /// How many change events the watch log keeps before older RVs expire.
    pub event_retention: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            admin_token: None,
            max_watch_seconds: None,
            event_retention: 100_000,
        }
    }
}

/// A running server.
pub struct DevCluster {
    addr: SocketAddr,
    tls: bool,
    ca_pem: String,
    admin_token: String,
    shared: Arc<Shared>,
    stop: tokio_watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl DevCluster {
    pub async fn start(config: Config) -> Result<DevCluster, Error> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let admin_token = config.admin_token.clone().unwrap_or_else(|| {
            let mut b = [0u8; 24];
            store::random_bytes(&mut b);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        });
        let (acceptor, ca_pem) = if config.tls {
            let certs = tls::generate(&[addr.ip().to_string()])?;
            let cfg = tls::server_config(&certs)?;
            (Some(tokio_rustls::TlsAcceptor::from(cfg)), certs.ca_pem)
        } else {
            (None, String::new())
        };
        let store = Arc::new(Store::new(config.event_retention));
        let registry = Arc::new(Registry::new());
        lifecycle::seed(&store, &registry);
        let shared = Arc::new(Shared::new(
            store.clone(),
            registry.clone(),
            Arc::new(Authenticator::new(&admin_token)),
            addr.to_string(),
            config.max_watch_seconds,
        ));
        let (stop, stopped) = tokio_watch::channel(false);
        let controllers = tokio::spawn(lifecycle::run_controllers(store, registry));
        let app = server::router(shared.clone());
        let accept = tokio::spawn(accept_loop(listener, acceptor, app, stopped));
        Ok(DevCluster {
            addr,
            tls: config.tls,
            ca_pem,
            admin_token,
            shared,
            stop,
            tasks: vec![controllers, accept],
        })
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA certificate (PEM) clients must trust; empty without TLS.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    pub fn admin_token(&self) -> String {
        self.admin_token.clone()
    }

    pub fn kubeconfig(&self) -> String {
        let ca = (!self.ca_pem.is_empty()).then_some(self.ca_pem.as_str());
        tls::kubeconfig(&self.url(), ca, &self.admin_token)
    }

    pub fn write_kubeconfig(&self, path: &Path) -> io::Result<()> {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut f = opts.open(path)?;
        f.write_all(self.kubeconfig().as_bytes())
    }

    /// Drop the watch event log: the next watch from an older RV gets 410 Gone, and open
    /// watches end with an in-stream 410 so clients re-list.
    pub fn compact(&self) {
        self.shared.store.compact();
    }

    /// Access to the shared state for in-process test hooks.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: axum::Router,
    mut stopped: tokio_watch::Receiver<bool>,
) {
    // Connections live in the set so that stopping the loop closes them all.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            _ = stopped.changed() => return,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let acceptor = acceptor.clone();
        conns.spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let res = match acceptor {
                Some(a) => match a.accept(tcp).await {
                    Ok(s) => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(s), svc)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!("TLS handshake failed: {e}");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                        .await
                }
            };
            if let Err(e) = res {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}
