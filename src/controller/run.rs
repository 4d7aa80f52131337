//! The controller process: watches Applications and Policies, feeds the queue, and runs
//! [`reconcile`](super::reconcile::reconcile) with bounded concurrency.
//!
//! The controller watches only its own kinds (Applications, Policies) as itself; what an
//! Application applies is read and written as that Application's service account.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::application::Application;
use super::events::Events;
use super::queue::{Backoff, Key, Outcome, Queue};
use super::reconcile::{self, Context, Next, Settings};
use crate::cluster::client::Clients;
use crate::cluster::watch::DriftWatches;
use crate::policy::cluster::ClusterPolicy;
use crate::server::Metrics;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Applications reconciled at the same time.
    pub concurrency: usize,
    pub settings: Settings,
    /// The name events are reported under.
    pub reporter: String,
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot set up the reconciler: {0}")]
    Setup(String),
}

/// A running controller's view for callers that embed it (the quickstart, tests).
#[derive(Clone)]
pub struct Handle {
    pub applications: Store<Application>,
    pub metrics: Arc<Metrics>,
    queue: Queue,
}

impl Handle {
    /// Asks for a reconcile of one Application now.
    pub fn trigger(&self, namespace: &str, name: &str) {
        self.queue.add((namespace.to_owned(), name.to_owned()));
    }
}

/// What the watch last saw of an Application, to tell its own status writes (no new
/// work) from a spec change, a reconcile request or readiness that dependants wait for.
#[derive(Clone, PartialEq)]
struct Seen {
    generation: Option<i64>,
    request: Option<String>,
    ready: bool,
}

/// Starts the controller and runs until `shutdown` completes.
pub async fn run(
    clients: Clients,
    options: Options,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
    on_start: impl FnOnce(Handle) + Send,
) -> Result<(), RunError> {
    let client = clients.controller();

    let (policies, policy_writer) = reflector::store::<ClusterPolicy>();
    let (applications, app_writer) = reflector::store::<Application>();
    let queue = Queue::new(options.concurrency.max(1), Backoff::default());

    let events = Events::new(client.clone(), &options.reporter);
    let policy_store = policies.clone();
    let app_store = applications.clone();
    let ctx = Context::new(
        clients.clone(),
        options.settings.clone(),
        events,
        Box::new(move || {
            policy_store
                .state()
                .iter()
                .map(|p| ClusterPolicy::clone(p))
                .collect()
        }),
        Box::new(move |ns, name| app_store.get(&ObjectRef::new(name).within(ns))),
    )
    .map_err(|_| RunError::Setup("no random source for the digest key".into()))?;
    let ctx = Arc::new(ctx);
    let (drift_watches, mut drifts) = DriftWatches::new(clients.clone(), ctx.discovery.clone());
    ctx.set_drift_watches(drift_watches.clone());
    let q = queue.clone();
    let ctx_d = ctx.clone();
    let drift_task = tokio::spawn(async move {
        while let Some(drift) = drifts.recv().await {
            let app = drift.app.clone();
            if ctx_d.note_drift(drift) {
                q.add(app);
            }
        }
    });

    // Policies: a change may unblock or block any Application, so all are queued.
    let policy_stream = reflector::reflector(
        policy_writer,
        watcher(
            Api::<ClusterPolicy>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let q = queue.clone();
    let apps_for_policies = applications.clone();
    let policy_task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(policy_stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(_))
                | Ok(watcher::Event::Delete(_))
                | Ok(watcher::Event::InitDone) => {
                    for app in apps_for_policies.state() {
                        q.add(key_of(&app));
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "watch of Policies interrupted"),
            }
        }
    });

    // Applications: queue on creation, spec change, a reconcile request, deletion; and
    // queue the dependants of an Application that became Ready.
    let app_stream = reflector::reflector(
        app_writer,
        watcher(
            Api::<Application>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let q = queue.clone();
    let seen: Arc<Mutex<HashMap<Key, Seen>>> = Arc::default();
    let ctx_w = ctx.clone();
    let apps_for_deps = applications.clone();
    let app_task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(app_stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(app)) | Ok(watcher::Event::InitApply(app)) => {
                    let key = key_of(&app);
                    let now = Seen {
                        generation: app.metadata.generation,
                        request: app.pending_reconcile_request().map(str::to_owned),
                        ready: app.status.as_ref().is_some_and(|s| s.is_ready()),
                    };
                    let before = seen
                        .lock()
                        .ok()
                        .and_then(|mut m| m.insert(key.clone(), now.clone()));
                    let changed_spec = before.as_ref().is_none_or(|b| {
                        b.generation != now.generation
                            || (now.request.is_some() && b.request != now.request)
                    });
                    if changed_spec {
                        q.add(key.clone());
                    }
                    if now.ready && before.as_ref().is_some_and(|b| !b.ready) {
                        for other in apps_for_deps.state() {
                            if other.namespace() == app.namespace()
                                && other
                                    .spec
                                    .depends_on
                                    .iter()
                                    .any(|d| d.name == app.name_any())
                            {
                                q.add(key_of(&other));
                            }
                        }
                    }
                }
                Ok(watcher::Event::Delete(app)) => {
                    let key = key_of(&app);
                    if let Ok(mut m) = seen.lock() {
                        m.remove(&key);
                    }
                    ctx_w.forget_app(&key);
                    q.forget(&key);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "watch of Applications interrupted"),
            }
        }
    });

    applications
        .wait_until_ready()
        .await
        .map_err(|e| RunError::Setup(format!("the Application watch did not start: {e}")))?;
    policies
        .wait_until_ready()
        .await
        .map_err(|e| RunError::Setup(format!("the Policy watch did not start: {e}")))?;
    metrics.set_ready(true);
    on_start(Handle {
        applications: applications.clone(),
        metrics: metrics.clone(),
        queue: queue.clone(),
    });

    let store = applications.clone();
    let work_metrics = metrics.clone();
    let worker = queue.run(move |key: Key| {
        let ctx = ctx.clone();
        let store = store.clone();
        let metrics = work_metrics.clone();
        async move {
            let Some(app) = store.get(&ObjectRef::new(&key.1).within(&key.0)) else {
                return Outcome::Stop;
            };
            let started = Instant::now();
            let next = reconcile::reconcile(app, &ctx).await;
            let ok = matches!(next, Next::After(_));
            metrics.observe_reconcile(ok, started.elapsed());
            match next {
                Next::After(d) => Outcome::Success { requeue_after: d },
                Next::Retry(r) => Outcome::Failure { retry_after: r },
            }
        }
    });
    tokio::select! {
        _ = worker => {}
        _ = shutdown => {}
    }
    metrics.set_ready(false);
    policy_task.abort();
    drift_task.abort();
    drop(drift_watches);
    app_task.abort();
    Ok(())
}

fn key_of(app: &Application) -> Key {
    (app.namespace().unwrap_or_default(), app.name_any())
}

/// Waits until `pred` holds for the Application or `timeout` passes.
pub async fn wait_for(
    store: &Store<Application>,
    namespace: &str,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&Application) -> bool,
) -> Option<Arc<Application>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(app) = store.get(&ObjectRef::new(name).within(namespace))
            && pred(&app)
        {
            return Some(app);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
