//! devcluster: an in-process Kubernetes API server emulator that kubectl and kube-rs talk to
//! as if it were kube-apiserver. Start one with [`DevCluster::start`], point clients at
//! [`DevCluster::kubeconfig`], and stop it with [`DevCluster::shutdown`].

pub mod access;
pub mod alloc;
pub mod auth;
pub mod controllers;
pub mod defaults;
pub mod discovery;
pub mod events;
pub mod faults;
pub mod fieldcheck;
pub mod lifecycle;
pub mod metrics;
pub mod namespace_defaults;
pub mod openapi;
pub mod openapi_v2;
pub mod patch;
pub mod protobuf;
pub mod rbac;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod server;
pub mod ssa;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;
pub mod watch;
pub mod workloads;

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
use crate::status::ApiError;
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
    /// Fault injection rules active from the start (see [`DevCluster::set_faults`]).
    pub faults: Vec<faults::FaultRule>,
    /// Seed for fault injection's random choices, for reproducible runs; random when unset.
    pub fault_seed: Option<u64>,
    /// Requests without credentials run as `system:anonymous` (groups
    /// `[system:unauthenticated]`), whom RBAC allows only the public-info paths, instead of
    /// getting 401. On by default, as kube-apiserver's `--anonymous-auth`.
    pub anonymous: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            admin_token: None,
            max_watch_seconds: None,
            event_retention: 100_000,
            faults: Vec::new(),
            fault_seed: None,
            anonymous: true,
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
    controllers: Arc<controllers::Controllers>,
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
        let mut shared = Shared::new(
            store.clone(),
            registry.clone(),
            Arc::new(Authenticator::new(
                &admin_token,
                store.clone(),
                registry.clone(),
                config.anonymous,
            )),
            addr.to_string(),
            config.max_watch_seconds,
        );
        if !config.tls {
            shared.scheme = "http";
        }
        let shared = Arc::new(shared);
        if let Some(seed) = config.fault_seed {
            shared.faults.reseed(seed);
        }
        shared.faults.set(config.faults.clone());
        let workloads = Arc::new(controllers::Controllers::new());
        let (stop, stopped) = tokio_watch::channel(false);
        let workload_task = tokio::spawn(controllers::run(
            store.clone(),
            registry.clone(),
            workloads.clone(),
        ));
        let namespace_defaults = tokio::spawn(namespace_defaults::run(
            store.clone(),
            registry.clone(),
            ca_pem.clone(),
        ));
        let controllers = tokio::spawn(lifecycle::run_controllers(store, registry));
        let app = server::router(shared.clone());
        let accept = tokio::spawn(accept_loop(listener, acceptor, app, stopped));
        Ok(DevCluster {
            addr,
            tls: config.tls,
            ca_pem,
            admin_token,
            shared,
            controllers: workloads,
            stop,
            tasks: vec![controllers, workload_task, namespace_defaults, accept],
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

    /// Mint a one-hour token for an existing service account (what `kubectl create token`
    /// gets); 404 when the service account does not exist.
    pub fn service_account_token(&self, ns: &str, name: &str) -> Result<String, ApiError> {
        self.shared.authn.service_account_token(ns, name)
    }

    /// Let `token` authenticate as `user` in `groups` (plus `system:authenticated`), so tests
    /// can act as arbitrary users; RBAC decides what they may do.
    pub fn add_user_token(&self, token: &str, user: &str, groups: &[&str]) {
        self.shared.authn.add_user_token(token, user, groups);
    }

    pub fn kubeconfig(&self) -> String {
        let ca = (!self.ca_pem.is_empty()).then_some(self.ca_pem.as_str());
        tls::kubeconfig(&self.url(), ca, &self.admin_token)
    }

    /// Write the kubeconfig (it holds the admin token) to `path`: readable by the owner only
    /// (0600) whatever was there before, and atomically, by renaming a fresh file over `path`,
    /// so a symlink planted at `path` is replaced, never written through.
    pub fn write_kubeconfig(&self, path: &Path) -> io::Result<()> {
        write_private_file(path, self.kubeconfig().as_bytes())
    }

    /// Drop the watch event log: the next watch from an older RV gets 410 Gone, and open
    /// watches end with an in-stream 410 so clients re-list.
    pub fn compact(&self) {
        self.shared.store.compact();
    }

    /// Keep a Deployment, StatefulSet, DaemonSet or Job unhealthy (unready replicas, or a Job
    /// that never completes) until switched back. `kind` may be the kind, plural or short name.
    pub fn set_unhealthy(&self, kind: &str, namespace: &str, name: &str, unhealthy: bool) {
        self.controllers
            .set_unhealthy(kind, namespace, name, unhealthy);
    }

    /// Replace the fault injection rules (an empty list turns injection off).
    pub fn set_faults(&self, rules: Vec<faults::FaultRule>) {
        self.shared.faults.set(rules);
    }

    /// Restart fault injection's random sequence from `seed`.
    pub fn set_fault_seed(&self, seed: u64) {
        self.shared.faults.reseed(seed);
    }

    /// Requests served so far for a verb and resource (plural; "" for non-resource paths),
    /// over all users and status codes.
    pub fn request_count(&self, verb: &str, resource: &str) -> u64 {
        metrics::count(&self.shared, &[("verb", verb), ("resource", resource)])
    }

    /// Requests served so far matching every given label (`verb`, `resource`, `user`, `code`).
    pub fn request_count_where(&self, labels: &[(&str, &str)]) -> u64 {
        metrics::count(&self.shared, labels)
    }

    /// The Prometheus text `/metrics` serves.
    pub fn metrics_text(&self) -> String {
        metrics::encode(&self.shared)
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

/// Replace `path` with a new owner-only file holding `bytes`: a temporary file made with
/// O_EXCL (which does not follow links) next to `path`, synced, then renamed over `path`.
fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use ring::rand::SecureRandom;
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the kubeconfig path names no file",
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let rng = ring::rand::SystemRandom::new();
    for _ in 0..16 {
        let mut nonce = [0u8; 8];
        rng.fill(&mut nonce)
            .map_err(|_| io::Error::other("no randomness for a temporary file name"))?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            u64::from_le_bytes(nonce)
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut f = match opts.open(&tmp) {
            Ok(f) => f,
            // Someone else's file (or link) by that name: pick another name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let written = f
            .write_all(bytes)
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        return written;
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary file name next to the kubeconfig",
    ))
}
