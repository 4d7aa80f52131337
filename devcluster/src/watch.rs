//! Watch streams: newline-delimited JSON events with resourceVersion start semantics,
//! bookmarks, watch-list (`sendInitialEvents`), in-stream 410 and selector transitions.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::resources::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, FieldError};
use crate::store::{Event, EventType, Notice, Store};

/// Turns a stored object into what the client asked for (full object or metadata only).
pub type Render = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

#[derive(Debug, Clone, Default)]
pub struct WatchParams {
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub send_initial_events: Option<bool>,
    pub allow_bookmarks: bool,
    pub timeout_seconds: Option<u64>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

/// Where a watch is scoped.
#[derive(Clone)]
pub struct Scope {
    pub def: Arc<ResourceDef>,
    pub namespace: Option<String>,
    pub render: Render,
}

impl Scope {
    fn in_scope(&self, ev: &Event) -> bool {
        ev.key.storage == self.def.storage
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| *n == ev.key.namespace)
    }

    fn selected(&self, p: &WatchParams, obj: &Value) -> bool {
        p.labels.matches(obj) && p.fields.matches(obj)
    }

    fn stamp(&self, obj: &Value) -> Value {
        let mut o = crate::events::served(&self.def, obj).into_owned();
        if let Some(m) = o.as_object_mut() {
            m.insert("kind".into(), json!(self.def.kind));
            m.insert("apiVersion".into(), json!(self.def.api_version()));
        }
        (self.render)(&o)
    }

    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        let mut s = json!({"type": kind, "object": self.stamp(obj)}).to_string();
        s.push('\n');
        Bytes::from(s)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta});
        let mut s = json!({"type":"BOOKMARK","object":(self.render)(&obj)}).to_string();
        s.push('\n');
        Bytes::from(s)
    }

    /// The line for a committed event, after selector transitions, if this watch sees it.
    fn event_line(&self, p: &WatchParams, ev: &Event) -> Option<Bytes> {
        if !self.in_scope(ev) {
            return None;
        }
        let now = self.selected(p, &ev.object);
        let before = ev.old.as_ref().is_some_and(|o| self.selected(p, o));
        match ev.kind {
            EventType::Added => now.then(|| self.line("ADDED", &ev.object)),
            EventType::Deleted => now.then(|| self.line("DELETED", &ev.object)),
            EventType::Modified => match (before, now) {
                (true, true) => Some(self.line("MODIFIED", &ev.object)),
                (false, true) => Some(self.line("ADDED", &ev.object)),
                (true, false) => Some(self.line("DELETED", &ev.object)),
                (false, false) => None,
            },
        }
    }
}

fn expired_line(message: &str) -> Bytes {
    let st = ApiError::expired(message).to_status();
    let mut s = json!({"type":"ERROR","object":st}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// How often an idle watch with bookmarks enabled reports progress.
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: u64 = 1800;

/// Start a watch. Errors before the stream begins are ordinary Status responses.
pub fn serve(
    store: &Store,
    scope: Scope,
    p: WatchParams,
    max_seconds: Option<u64>,
) -> Result<Response, ApiError> {
    if p.send_initial_events == Some(true) {
        let mut errs = Vec::new();
        if p.resource_version_match.as_deref() != Some("NotOlderThan") {
            errs.push(FieldError::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !p.allow_bookmarks {
            errs.push(FieldError::forbidden(
                "allowWatchBookmarks",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", errs));
        }
    } else if p.resource_version_match.is_some() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )],
        ));
    }
    let rv_param = p.resource_version.clone().filter(|s| !s.is_empty());
    let mut initial: Vec<Bytes> = Vec::new();
    let (rx, start_rv) = match (&rv_param, p.send_initial_events) {
        (Some(rv), None) | (Some(rv), Some(false)) if rv != "0" => {
            let n: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{rv}\"")))?;
            match store.watch_from(n) {
                Ok((past, rx)) => {
                    let mut last = n;
                    for ev in past {
                        last = ev.rv;
                        if let Some(l) = scope.event_line(&p, &ev) {
                            initial.push(l);
                        }
                    }
                    (rx, last.max(n))
                }
                Err(too_old) => {
                    // A 200 stream whose only event is the 410, as kube-apiserver does.
                    let line = expired_line(&format!(
                        "too old resource version: {n} ({})",
                        too_old.floor
                    ));
                    return Ok(stream_response(futures::stream::iter(vec![Ok::<
                        _,
                        std::convert::Infallible,
                    >(
                        line
                    )])));
                }
            }
        }
        _ => {
            let (items, rv, rx) =
                store.watch_snapshot(&scope.def.storage, scope.namespace.as_deref());
            if p.send_initial_events != Some(false) {
                for obj in items.iter().filter(|o| {
                    scope
                        .namespace
                        .as_ref()
                        .is_none_or(|n| crate::lifecycle::meta_str(o, "namespace") == n)
                        && scope.selected(&p, o)
                }) {
                    initial.push(scope.line("ADDED", obj));
                }
            }
            if p.send_initial_events == Some(true) {
                initial.push(scope.bookmark(rv, true));
            }
            (rx, rv)
        }
    };
    let mut timeout = p.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT);
    if let Some(m) = max_seconds {
        timeout = timeout.min(m);
    }
    let (tx, out) = mpsc::channel::<Bytes>(64);
    tokio::spawn(pump(
        scope,
        p,
        rx,
        initial,
        start_rv,
        Instant::now() + Duration::from_secs(timeout),
        tx,
    ));
    let body = futures::stream::unfold(out, |mut out| async move {
        out.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), out))
    });
    Ok(stream_response(body))
}

fn stream_response<S>(s: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
{
    let mut r = Response::new(Body::from_stream(s));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache, private"),
    );
    r
}

async fn pump(
    scope: Scope,
    p: WatchParams,
    mut rx: broadcast::Receiver<Notice>,
    initial: Vec<Bytes>,
    start_rv: u64,
    deadline: Instant,
    tx: mpsc::Sender<Bytes>,
) {
    for l in initial {
        if tx.send(l).await.is_err() {
            return;
        }
    }
    let mut last_rv = start_rv;
    let mut sent_rv = start_rv;
    let mut tick = tokio::time::interval_at(Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
    loop {
        tokio::select! {
            n = rx.recv() => match n {
                Ok(Notice::Event(ev)) => {
                    if ev.rv <= last_rv {
                        continue;
                    }
                    last_rv = ev.rv;
                    if let Some(l) = scope.event_line(&p, &ev) {
                        sent_rv = last_rv;
                        if tx.send(l).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(Notice::Compacted) => {
                    let _ = tx.send(expired_line("The resourceVersion for the provided watch is too old.")).await;
                    return;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = tx.send(expired_line("The resourceVersion for the provided watch is too old.")).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if p.allow_bookmarks && last_rv != sent_rv {
                    sent_rv = last_rv;
                    if tx.send(scope.bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                // A last bookmark lets the client resume from a fresh RV.
                if p.allow_bookmarks {
                    let _ = tx.send(scope.bookmark(last_rv, false)).await;
                }
                return;
            }
            _ = tx.closed() => return,
        }
    }
}
