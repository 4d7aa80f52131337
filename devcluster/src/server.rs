//! The HTTP front: routing, verb mapping, query parameters, bodies, and the write pipeline
//! (decode, checks, admission, lifecycle, storage) for every resource.

use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde_json::{Value, json};

use crate::access::{Attributes, Authenticator, UserInfo};
use crate::lifecycle::{self, DeleteOptions, meta_mut, meta_str};
use crate::resources::{Registry, ResourceDef};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError, FieldError};
use crate::store::{Change, Key, Store, random_bytes, resource_version};
use crate::table::{self, Rendering};
use crate::watch::{self, Render, Scope, WatchParams};
use crate::{
    alloc, defaults, discovery, events, fieldcheck, openapi, openapi_v2, patch as patch_ops,
    schema, ssa,
};

/// kube-apiserver's request body limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

type Labels = Vec<(String, String)>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Everything a request handler needs.
pub struct Shared {
    pub store: Arc<Store>,
    pub registry: Arc<Registry>,
    pub authn: Arc<Authenticator>,
    pub requests: Family<Labels, Counter>,
    /// Request duration in seconds by verb and resource.
    pub latency: Family<Labels, Histogram, fn() -> Histogram>,
    /// Injected faults (tests and benchmarks).
    pub faults: crate::faults::Faults,
    pub metrics: std::sync::Mutex<prometheus_client::registry::Registry>,
    pub server_address: String,
    /// `https`, or `http` when serving plain HTTP (for URLs the server hands out).
    pub scheme: &'static str,
    pub max_watch_seconds: Option<u64>,
}

impl Shared {
    pub fn new(
        store: Arc<Store>,
        registry: Arc<Registry>,
        authn: Arc<Authenticator>,
        server_address: String,
        max_watch_seconds: Option<u64>,
    ) -> Shared {
        let requests = Family::<Labels, Counter>::default();
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register(
            "apiserver_request",
            "Requests by verb, resource, user and code",
            requests.clone(),
        );
        let latency: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        reg.register(
            "apiserver_request_duration_seconds",
            "Request latency by verb and resource",
            latency.clone(),
        );
        Shared {
            store,
            registry,
            authn,
            requests,
            latency,
            faults: crate::faults::Faults::new(None),
            metrics: std::sync::Mutex::new(reg),
            server_address,
            scheme: "https",
            max_watch_seconds,
        }
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let started = std::time::Instant::now();
    let mut rec = Recorded::default();
    let resp = match dispatch(&s, &parts, body, &mut rec).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    s.latency
        .get_or_create(&vec![
            ("verb".into(), rec.verb.clone()),
            ("resource".into(), rec.resource.clone()),
        ])
        .observe(started.elapsed().as_secs_f64());
    s.requests
        .get_or_create(&vec![
            ("verb".into(), rec.verb),
            ("resource".into(), rec.resource),
            ("user".into(), rec.user),
            ("code".into(), resp.status().as_u16().to_string()),
        ])
        .inc();
    resp
}

#[derive(Default)]
struct Recorded {
    verb: String,
    resource: String,
    user: String,
}

pub fn json_response(code: u16, v: &Value) -> Response {
    json_bytes_response(code, v.to_string().into_bytes())
}

/// Serialize `v` straight into the response body.
fn serialized_response(code: u16, v: &impl serde::Serialize) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(v).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json_bytes_response(code, body))
}

fn json_bytes_response(code: u16, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

pub fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

/// Decoded query parameters (repeated keys keep the last value, as Go's Get does for ours).
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        let mut out = Vec::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.push((pct_decode(k), pct_decode(v)));
        }
        Query(out)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
    fn opt_bool(&self, k: &str) -> Option<bool> {
        self.get(k).map(|v| v == "true" || v == "1")
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > MAX_BODY
    {
        drain(body).await;
        return Err(ApiError::too_large(MAX_BODY));
    }
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(e.to_string()))?;
        if buf.len() + chunk.len() > MAX_BODY {
            drain_stream(stream).await;
            return Err(ApiError::too_large(MAX_BODY));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Read and discard the rest of an oversized body (up to a bound), so the client, still
/// writing, gets the 413 instead of a broken pipe.
async fn drain(body: Body) {
    drain_stream(body.into_data_stream()).await;
}

async fn drain_stream(mut stream: axum::body::BodyDataStream) {
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            break;
        }
    }
}

fn authenticate(s: &Shared, headers: &HeaderMap, rec: &mut Recorded) -> Result<UserInfo, ApiError> {
    let u = s.authn.authenticate(headers)?;
    rec.user = u.name.clone();
    Ok(u)
}

/// The authorization seam: allow, or kube-apiserver's exact 403 for these attributes
/// (`attrs.user` is the authenticated, possibly impersonated, user).
fn check(s: &Shared, attrs: &Attributes) -> Result<(), ApiError> {
    s.authn.authorize(attrs)
}

/// The resource attributes of a request on `t` with `verb`, as the request-info filter
/// derives them (a namespace is its own namespace).
fn resource_attrs(user: &UserInfo, t: &Target, verb: &str, name: &str) -> Attributes {
    let mut namespace = t.namespace.clone().unwrap_or_default();
    if t.def.group.is_empty() && t.def.plural == "namespaces" && t.name.is_some() {
        namespace = name.to_string();
    }
    Attributes::resource(
        user,
        verb,
        &t.def.group,
        &t.def.plural,
        t.sub.as_deref().unwrap_or(""),
        &namespace,
        name,
    )
}

/// The checks kube-apiserver runs behind /healthz and /livez (a subset of its post-start hooks;
/// all pass once the devcluster serves).
const HEALTH_CHECKS: &[&str] = &[
    "ping",
    "log",
    "etcd",
    "poststarthook/start-apiserver-admission-initializer",
    "poststarthook/generic-apiserver-start-informers",
    "poststarthook/start-service-ip-repair-controllers",
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/bootstrap-controller",
    "autoregister-completion",
];

fn health_checks(endpoint: &str) -> Vec<&'static str> {
    let mut checks = HEALTH_CHECKS.to_vec();
    if endpoint == "readyz" {
        // Readiness also waits for etcd readiness, informer sync, and not shutting down.
        checks.splice(3..3, ["etcd-readiness", "informer-sync"]);
        checks.push("shutdown");
    }
    checks
}

/// /healthz, /livez, /readyz (`?verbose`, `?exclude=check`) and their single checks, worded as
/// kube-apiserver's healthz handlers answer.
fn health(endpoint: &str, check: &str, q: &Query) -> Result<Response, ApiError> {
    let checks = health_checks(endpoint);
    let text = |body: String, nosniff: bool| {
        let mut r = Response::new(Body::from(body));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if nosniff {
            h.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
        }
        r
    };
    if !check.is_empty() {
        if !checks.contains(&check) {
            return Err(ApiError::path_not_found());
        }
        return Ok(text("ok".into(), false));
    }
    if q.get("verbose").is_none() {
        return Ok(text("ok".into(), true));
    }
    let mut excluded: Vec<&str> =
        q.0.iter()
            .filter(|(k, _)| k == "exclude")
            .map(|(_, v)| v.as_str())
            .collect();
    let mut out = String::new();
    for c in &checks {
        if excluded.contains(c) {
            excluded.retain(|e| e != c);
            out.push_str(&format!("[+]{c} excluded: ok\n"));
        } else {
            out.push_str(&format!("[+]{c} ok\n"));
        }
    }
    if !excluded.is_empty() {
        excluded.sort_unstable();
        excluded.dedup();
        let quoted: Vec<String> = excluded.iter().map(|e| format!("{e:?}")).collect();
        out.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            quoted.join(",")
        ));
    }
    out.push_str(&format!("{endpoint} check passed\n"));
    Ok(text(out, true))
}

/// Escalation prevention for writes of RBAC objects: run on the object about to be stored,
/// with the stored one on updates (a no-op for every other kind, and for updates that touch
/// only garbage-collection fields). Safe inside `Store::mutate` closures.
fn rbac_guard(
    s: &Shared,
    t: &Target,
    user: &UserInfo,
) -> impl Fn(Option<&Value>, &Value) -> Result<(), ApiError> + use<> {
    let is_rbac = t.def.group == crate::rbac::RBAC_GROUP && t.sub.is_none();
    let guard = s
        .authn
        .escalation_guard(if is_rbac { &t.def.kind } else { "" }, user);
    let def = t.def.clone();
    move |old: Option<&Value>, new: &Value| {
        if !is_rbac || old.is_some_and(|old| only_gc_fields_changed(old, new)) {
            return Ok(());
        }
        guard(&stamped(&def, new))
    }
}

/// A binding's roleRef after defaulting, as kube-apiserver validates it on create and update.
fn check_role_ref(t: &Target, old: Option<&Value>, obj: &Value) -> Result<(), ApiError> {
    if t.def.group != crate::rbac::RBAC_GROUP || t.sub.is_some() {
        return Ok(());
    }
    crate::rbac::validate_role_ref(&t.def.kind, obj)?;
    match old {
        Some(old) => crate::rbac::validate_role_ref_unchanged(&t.def.kind, old, obj),
        None => Ok(()),
    }
}

/// Whether an update changes nothing but what the garbage collector writes (owner references
/// and finalizers): kube-apiserver lets those through without the RBAC escalation check.
fn only_gc_fields_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "ownerReferences",
                "finalizers",
                "managedFields",
                "resourceVersion",
            ] {
                m.remove(f);
            }
        }
        v
    };
    strip(old) == strip(new)
}

/// Decode the body of a review or TokenRequest: JSON, YAML or kubectl's protobuf envelope.
fn decode_review(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ApiError> {
    if media_type(headers) == "application/vnd.kubernetes.protobuf" {
        return crate::auth::decode_k8s_protobuf(bytes)
            .map_err(|e| ApiError::bad_request(format!("unable to decode protobuf body: {e}")));
    }
    decode_object(headers, bytes)
}

async fn dispatch(
    s: &Arc<Shared>,
    parts: &axum::http::request::Parts,
    body: Body,
    rec: &mut Recorded,
) -> Result<Response, ApiError> {
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|x| !x.is_empty()).collect();
    let q = Query::parse(parts.uri.query());
    let accept = header_str(&parts.headers, "accept").to_string();
    // kube-apiserver authenticates and authorizes before it routes: an unknown path is a 401
    // without credentials and a 403 without permission, and only then a 404 or 405.
    let non_resource_gate = |rec: &mut Recorded| -> Result<UserInfo, ApiError> {
        let verb = parts.method.as_str().to_ascii_lowercase();
        rec.verb = verb.clone();
        let u = authenticate(s, &parts.headers, rec)?;
        check(s, &Attributes::non_resource(&u, &verb, &path))?;
        Ok(u)
    };
    let get_only = |rec: &mut Recorded| -> Result<(), ApiError> {
        non_resource_gate(rec)?;
        if parts.method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        Ok(())
    };
    match segs.as_slice() {
        [endpoint @ ("healthz" | "livez" | "readyz"), rest @ ..] => {
            // Authenticated and authorized like any path: anonymous callers reach the roots
            // through system:public-info-viewer, the single checks need system:monitoring.
            non_resource_gate(rec)?;
            health(endpoint, &rest.join("/"), &q)
        }
        ["version"] => {
            get_only(rec)?;
            Ok(json_response(200, &discovery::version()))
        }
        ["metrics"] => {
            get_only(rec)?;
            let mut text = String::new();
            {
                let reg = match s.metrics.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                prometheus_client::encoding::text::encode(&mut text, &reg)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
            }
            let mut r = Response::new(Body::from(text));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(r)
        }
        ["api"] | ["apis"] => {
            get_only(rec)?;
            let core = segs[0] == "api";
            if let Some(v) = discovery::aggregated_version(&accept) {
                let mut r = json_response(200, &discovery::aggregated(&s.registry, core, v));
                if let Ok(ct) = HeaderValue::from_str(&discovery::aggregated_content_type(v)) {
                    r.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                return Ok(r);
            }
            if core {
                Ok(json_response(
                    200,
                    &discovery::api_versions(&s.server_address),
                ))
            } else {
                Ok(json_response(200, &discovery::api_group_list(&s.registry)))
            }
        }
        ["apis", g] => {
            get_only(rec)?;
            let doc = discovery::api_group(&s.registry, g).ok_or_else(ApiError::path_not_found)?;
            Ok(json_response(200, &doc))
        }
        ["openapi", "v2"] => {
            get_only(rec)?;
            if accept.contains("application/json") && !accept.contains("protobuf") {
                return Ok(json_response(200, &openapi_v2::json_document(&s.registry)));
            }
            let mut r = Response::new(Body::from(openapi_v2::protobuf_document(&s.registry)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(openapi_v2::PROTOBUF_MEDIA_TYPE),
            );
            Ok(r)
        }
        [".well-known", "openid-configuration"] => {
            get_only(rec)?;
            let mut doc = s.authn.openid_configuration();
            // The keys are fetched from this server, wherever it listens.
            doc["jwks_uri"] = Value::String(format!(
                "{}://{}/openid/v1/jwks",
                s.scheme, s.server_address
            ));
            Ok(json_response(200, &doc))
        }
        ["openid", "v1", "jwks"] => {
            get_only(rec)?;
            let mut r = json_response(200, &s.authn.jwks());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            );
            Ok(r)
        }
        ["openapi", "v3"] => {
            get_only(rec)?;
            Ok(json_response(200, &openapi::index(&s.registry)))
        }
        ["openapi", "v3", rest @ ..] => {
            get_only(rec)?;
            let (g, v) =
                openapi::parse_path(&rest.join("/")).ok_or_else(ApiError::path_not_found)?;
            let doc =
                openapi::document(&s.registry, &g, &v).ok_or_else(ApiError::path_not_found)?;
            Ok(json_response(200, &doc))
        }
        ["api", v, rest @ ..] => resource(s, parts, body, rec, &q, "", v, rest).await,
        ["apis", g, v, rest @ ..] => resource(s, parts, body, rec, &q, g, v, rest).await,
        _ => {
            non_resource_gate(rec)?;
            Err(ApiError::path_not_found())
        }
    }
}

/// The verb kube-apiserver's request-info filter derives from a resource request's method.
fn request_verb(method: &Method, named: bool, watch: bool) -> Option<&'static str> {
    Some(match (method.as_str(), named) {
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    })
}

/// The resource attributes kube-apiserver's request-info filter derives from a URL under
/// `/api/v1` or `/apis/<g>/<v>` (after the group and version), whether or not the resource
/// exists. None for a method that maps to no verb.
fn url_attributes(
    user: &UserInfo,
    method: &Method,
    q: &Query,
    group: &str,
    rest: &[&str],
) -> Option<Attributes> {
    // `namespaces/<ns>/<resource>...` is namespaced; `namespaces/<ns>[/status|/finalize]` is
    // the namespace itself, whose namespace attribute is its own name.
    let (namespace, parts): (&str, &[&str]) = match rest {
        ["namespaces", ns, sub, ..] if *sub != "status" && *sub != "finalize" => (ns, &rest[2..]),
        ["namespaces", ns, ..] => (ns, rest),
        _ => ("", rest),
    };
    let (resource, name, sub) = match parts {
        [] => return None,
        [r] => (*r, "", ""),
        [r, n] => (*r, *n, ""),
        [r, n, sb, ..] => (*r, *n, *sb),
    };
    let verb = request_verb(method, !name.is_empty(), q.flag("watch"))?;
    Some(Attributes::resource(
        user, verb, group, resource, sub, namespace, name,
    ))
}

/// A resolved resource request.
struct Target {
    def: Arc<ResourceDef>,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

impl Target {
    fn key(&self, name: &str) -> Key {
        Key::new(
            &self.def.storage,
            self.namespace.as_deref().unwrap_or(""),
            name,
        )
    }
}

fn resolve(reg: &Registry, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let (namespace, rest) = if rest.len() >= 3
        && rest[0] == "namespaces"
        && reg
            .find(group, version, rest[2])
            .is_some_and(|d| d.namespaced)
    {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let plural = rest.first().ok_or_else(ApiError::path_not_found)?;
    let def = reg
        .find(group, version, plural)
        .ok_or_else(ApiError::path_not_found)?;
    if rest.len() > 3 || (!def.namespaced && namespace.is_some()) {
        return Err(ApiError::path_not_found());
    }
    let sub = rest.get(2).map(|x| x.to_string());
    if let Some(sb) = &sub
        && def.subresource(sb).is_none()
    {
        return Err(ApiError::path_not_found());
    }
    Ok(Target {
        def,
        namespace,
        name: rest.get(1).map(|x| x.to_string()),
        sub,
    })
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    s: &Arc<Shared>,
    parts: &axum::http::request::Parts,
    body: Body,
    rec: &mut Recorded,
    q: &Query,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response, ApiError> {
    if rest.is_empty() {
        let verb = parts.method.as_str().to_ascii_lowercase();
        rec.verb = verb.clone();
        let u = authenticate(s, &parts.headers, rec)?;
        check(s, &Attributes::non_resource(&u, &verb, parts.uri.path()))?;
        let doc = discovery::resource_list(&s.registry, group, version)
            .ok_or_else(ApiError::path_not_found)?;
        if parts.method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        return Ok(json_response(200, &doc));
    }
    let t = match resolve(&s.registry, group, version, rest) {
        Ok(t) => t,
        Err(not_found) => {
            // An unknown resource is still authorized first, from the URL alone, as the
            // request-info filter sees it.
            let user = authenticate(s, &parts.headers, rec)?;
            if let Some(attrs) = url_attributes(&user, &parts.method, q, group, rest) {
                rec.verb = attrs.verb.clone();
                check(s, &attrs)?;
            }
            return Err(not_found);
        }
    };
    let m = &parts.method;
    // Served here: no HEAD, and PUT/PATCH only on a named object.
    let verb = request_verb(m, t.name.is_some(), q.flag("watch"))
        .filter(|v| *m != Method::HEAD && (t.name.is_some() || !matches!(*v, "update" | "patch")))
        .ok_or_else(ApiError::method_not_allowed)?;
    rec.verb = verb.into();
    rec.resource = t.def.plural.clone();
    let user = authenticate(s, &parts.headers, rec)?;
    if let Some(r) = s.faults.inject(verb, &t.def.plural).await {
        return Ok(r);
    }
    let fields = FieldSelector::parse_for(
        q.get("fieldSelector").unwrap_or(""),
        &t.def.group,
        &t.def.kind,
    )?;
    // A list or watch pinned to one name by fieldSelector is authorized for that name.
    let attr_name = match &t.name {
        Some(n) => n.clone(),
        None if matches!(verb, "list" | "watch") => {
            fields.pinned_name().unwrap_or_default().to_string()
        }
        None => String::new(),
    };
    check(s, &resource_attrs(&user, &t, verb, &attr_name))?;
    let sub_ok = match (t.sub.as_deref(), verb) {
        (None, v) => t.def.has_verb(v),
        (Some(sb), v) => t.def.subresource(sb).is_some_and(|x| {
            x.verbs
                .iter()
                .any(|y| y == v || (v == "create" && y == "create"))
        }),
    };
    if !sub_ok {
        return Err(ApiError::method_not_allowed());
    }
    if t.def.namespaced && t.namespace.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::path_not_found());
    }
    let accept = header_str(&parts.headers, "accept").to_string();
    let dry_run = q.get("dryRun") == Some("All");
    match verb {
        "get" => get(s, &t, &accept),
        "list" => list(s, &t, q, &fields, &accept),
        "watch" => {
            let p = WatchParams {
                resource_version: q.get("resourceVersion").map(str::to_string),
                resource_version_match: q
                    .get("resourceVersionMatch")
                    .filter(|x| !x.is_empty())
                    .map(str::to_string),
                send_initial_events: q.opt_bool("sendInitialEvents"),
                allow_bookmarks: q.flag("allowWatchBookmarks"),
                timeout_seconds: q.get("timeoutSeconds").and_then(|x| x.parse().ok()),
                labels: LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?,
                fields,
            };
            let scope = Scope {
                def: t.def.clone(),
                namespace: t.namespace.clone(),
                render: render_fn(&t.def, &accept),
            };
            watch::serve(&s.store, scope, p, s.max_watch_seconds)
        }
        "create" => {
            let bytes = read_body(&parts.headers, body).await?;
            create(s, &t, q, &parts.headers, &bytes, dry_run, &user)
        }
        "update" => {
            let bytes = read_body(&parts.headers, body).await?;
            update(s, &t, q, &parts.headers, &bytes, dry_run, &user)
        }
        "patch" => {
            let bytes = read_body(&parts.headers, body).await?;
            patch(s, &t, q, &parts.headers, &bytes, dry_run, &user)
        }
        "delete" => {
            let bytes = read_body(&parts.headers, body).await?;
            delete(s, &t, q, &bytes)
        }
        "deletecollection" => {
            let bytes = read_body(&parts.headers, body).await?;
            delete_collection(s, &t, q, &fields, &bytes, &accept)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Stamp `kind` and `apiVersion` (stored objects may lack them; Events share storage).
fn stamped(def: &ResourceDef, obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        let mut out = serde_json::Map::new();
        out.insert("kind".into(), json!(def.kind));
        out.insert("apiVersion".into(), json!(def.api_version()));
        for (k, v) in m.iter() {
            if k != "kind" && k != "apiVersion" {
                out.insert(k.clone(), v.clone());
            }
        }
        *m = out;
    }
    o
}

/// A stored object stamped and in the URL's version (Events share storage across versions).
fn served_stamped(def: &ResourceDef, stored: &Value) -> Value {
    stamped(def, &events::served(def, stored))
}

/// A stored object as served, without copying it: `kind`/`apiVersion` first when `stamp` is
/// set (what [`stamped`] builds), or left out (built-in list items).
struct Served<'a> {
    obj: &'a Value,
    stamp: Option<(&'a str, &'a str)>,
}

impl serde::Serialize for Served<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(m) = self.obj.as_object() else {
            return self.obj.serialize(s);
        };
        let mut map = s.serialize_map(None)?;
        if let Some((kind, api_version)) = self.stamp {
            map.serialize_entry("kind", kind)?;
            map.serialize_entry("apiVersion", api_version)?;
        }
        for (k, v) in m {
            if k != "kind" && k != "apiVersion" {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ServedList<'a> {
    kind: &'a str,
    api_version: &'a str,
    metadata: &'a Value,
    items: Vec<Served<'a>>,
}

fn render_fn(def: &Arc<ResourceDef>, accept: &str) -> Render {
    match table::rendering(accept) {
        Rendering::Full => Arc::new(|v: &Value| v.clone()),
        Rendering::Metadata => Arc::new(|v: &Value| {
            if v.get("kind").and_then(Value::as_str) == Some("Status") {
                v.clone()
            } else {
                table::partial_metadata(v)
            }
        }),
        Rendering::Table => {
            let def = def.clone();
            let first = Arc::new(AtomicBool::new(true));
            Arc::new(move |v: &Value| {
                // Bookmarks carry only metadata; they stay objects.
                if v.get("kind").and_then(Value::as_str) == Some("Status")
                    || v.get("spec").is_none() && v.pointer("/metadata/name").is_none()
                {
                    return v.clone();
                }
                let cols = first.swap(false, Ordering::SeqCst);
                table::table(&def, std::slice::from_ref(v), json!({}), cols)
            })
        }
    }
}

fn respond_object(def: &ResourceDef, code: u16, obj: &Value, accept: &str) -> Response {
    let obj = &*events::served(def, obj);
    let rendering = table::rendering(accept);
    if let Rendering::Full = rendering {
        let api_version = def.api_version();
        let served = Served {
            obj,
            stamp: Some((&def.kind, &api_version)),
        };
        return serialized_response(code, &served).unwrap_or_else(|e| error_response(&e));
    }
    let o = stamped(def, obj);
    match rendering {
        Rendering::Full => json_response(code, &o),
        Rendering::Metadata => json_response(code, &table::partial_metadata(&o)),
        Rendering::Table => json_response(
            code,
            &table::table(
                def,
                &[o],
                json!({"resourceVersion": resource_version(obj).unwrap_or_default()}),
                true,
            ),
        ),
    }
}

fn get(s: &Shared, t: &Target, accept: &str) -> Result<Response, ApiError> {
    let name = t.name.as_deref().unwrap_or("");
    let obj = s
        .store
        .get(&t.key(name))
        .ok_or_else(|| ApiError::not_found(&t.def.group, &t.def.plural, name))?;
    match t.sub.as_deref() {
        Some("scale") => Ok(json_response(200, &scale_of(&t.def, &obj))),
        Some("status") | None => Ok(respond_object(&t.def, 200, &obj, accept)),
        _ => Err(ApiError::method_not_allowed()),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    start: String,
}

const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

fn list(
    s: &Shared,
    t: &Target,
    q: &Query,
    fields: &FieldSelector,
    accept: &str,
) -> Result<Response, ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?;
    let (items, now_rv) = s.store.list(&t.def.storage, t.namespace.as_deref());
    let mut list_rv = now_rv;
    let mut start_after: Option<String> = None;
    if let Some(c) = q.get("continue").filter(|c| !c.is_empty()) {
        let tok: ContinueToken = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                ApiError::bad_request("continue key is not valid: illegal base64 data")
            })?;
        if tok.rv < s.store.floor() {
            return Err(ApiError::expired(CONTINUE_EXPIRED));
        }
        list_rv = tok.rv;
        start_after = Some(tok.start);
    }
    let order = |o: &Value| format!("{}/{}", meta_str(o, "namespace"), meta_str(o, "name"));
    let mut selected: Vec<Arc<Value>> = items
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
        .filter(|o| start_after.as_ref().is_none_or(|st| order(o) > *st))
        .collect();
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut meta = serde_json::Map::new();
    meta.insert("resourceVersion".into(), json!(list_rv.to_string()));
    if limit > 0 && selected.len() > limit {
        let remaining = selected.len() - limit;
        selected.truncate(limit);
        if let Some(last) = selected.last() {
            let tok = ContinueToken {
                rv: list_rv,
                start: order(last),
            };
            let raw = serde_json::to_vec(&tok).map_err(|e| ApiError::internal(e.to_string()))?;
            meta.insert(
                "continue".into(),
                json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)),
            );
            meta.insert("remainingItemCount".into(), json!(remaining));
        }
    }
    let meta = Value::Object(meta);
    let out = match table::rendering(accept) {
        Rendering::Table => {
            let stamped_items: Vec<Value> = selected
                .iter()
                .map(|o| stamped(&t.def, &events::served(&t.def, o)))
                .collect();
            table::table(&t.def, &stamped_items, meta, true)
        }
        Rendering::Metadata => {
            let stamped_items: Vec<Value> = selected
                .iter()
                .map(|o| stamped(&t.def, &events::served(&t.def, o)))
                .collect();
            table::partial_metadata_list(meta, &stamped_items)
        }
        Rendering::Full => {
            let api_version = t.def.api_version();
            // Built-in list items carry no kind/apiVersion, like kube-apiserver.
            let stamp = t
                .def
                .is_custom()
                .then_some((t.def.kind.as_str(), api_version.as_str()));
            let served: Vec<_> = selected.iter().map(|o| events::served(&t.def, o)).collect();
            let out = ServedList {
                kind: &t.def.list_kind,
                api_version: &api_version,
                metadata: &meta,
                items: served.iter().map(|obj| Served { obj, stamp }).collect(),
            };
            return serialized_response(200, &out);
        }
    };
    Ok(json_response(200, &out))
}

fn media_type(headers: &HeaderMap) -> String {
    header_str(headers, "content-type")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decode a POST/PUT body (JSON or YAML) into an object.
fn decode_object(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ApiError> {
    let v: Value = match media_type(headers).as_str() {
        "application/json" | "" => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(bytes)?,
        "application/yaml" => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request("yaml: invalid UTF-8 in body"))?;
            serde_saphyr::from_str(text).map_err(|e| {
                ApiError::bad_request(format!("couldn't get version/kind; yaml parse error: {e}"))
            })?
        }
        other => {
            return Err(ApiError::unsupported_media(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml{}",
                if other.is_empty() {
                    ""
                } else {
                    ", application/vnd.kubernetes.protobuf"
                }
            )));
        }
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; json parse error: json: cannot unmarshal into Go value of type struct",
        ));
    }
    Ok(v)
}

/// The body's apiVersion/kind must name the URL's resource.
/// kube-apiserver decodes a body with the endpoint's group, version and kind as defaults:
/// a body without `kind` or `apiVersion` (what Vault's kubernetes auth posts as its
/// TokenReview, say) takes them from the URL; one that names others is refused.
fn check_type(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{obj}'"
        )));
    };
    if map
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        map.insert("kind".into(), json!(def.kind));
    }
    if map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        map.insert("apiVersion".into(), json!(def.api_version()));
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind != def.kind || (!api_version.is_empty() && api_version != def.api_version()) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) or kind ({kind}) does not match the expected API version ({}) and kind ({})",
            def.api_version(),
            def.kind
        )));
    }
    Ok(())
}

/// Name/namespace of a body against the URL, defaulting the namespace.
fn check_identity(t: &Target, obj: &mut Value, url_name: Option<&str>) -> Result<(), ApiError> {
    let body_ns = meta_str(obj, "namespace").to_string();
    if t.def.namespaced {
        let url_ns = t.namespace.clone().unwrap_or_default();
        if !body_ns.is_empty() && body_ns != url_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta_mut(obj).insert("namespace".into(), json!(url_ns));
    } else if !body_ns.is_empty() {
        meta_mut(obj).remove("namespace");
    }
    if let Some(n) = url_name {
        let body_name = meta_str(obj, "name").to_string();
        if body_name.is_empty() {
            meta_mut(obj).insert("name".into(), json!(n));
        } else if body_name != n {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({n})"
            )));
        }
    }
    Ok(())
}

/// NamespaceLifecycle admission for creates.
fn admit_create(s: &Shared, t: &Target, name: &str) -> Result<(), ApiError> {
    let Some(ns) = t.namespace.as_deref().filter(|_| t.def.namespaced) else {
        return Ok(());
    };
    match s.store.get(&Key::new("/namespaces", "", ns)) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if lifecycle::is_deleting(&n) => {
            let mut e = ApiError::forbidden(
                &t.def.group,
                &t.def.plural,
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            );
            if let Some(d) = e.details.as_deref_mut().and_then(Value::as_object_mut) {
                d.insert(
                    "causes".into(),
                    json!([{"reason":"NamespaceTerminating","message":format!("namespace {ns} is being terminated"),"field":"metadata.namespace"}]),
                );
            }
            Err(e)
        }
        Some(_) => Ok(()),
    }
}

fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    random_bytes(&mut b);
    let suffix: String = b
        .iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Validation, defaulting and storage of a new object. Shared by POST and create-by-apply.
fn create_object(s: &Shared, t: &Target, mut obj: Value, dry_run: bool) -> Result<Value, ApiError> {
    let mut name = meta_str(&obj, "name").to_string();
    if name.is_empty() {
        let prefix = meta_str(&obj, "generateName").to_string();
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                &t.def.group,
                &t.def.kind,
                "",
                vec![FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        name = generated_name(&prefix);
        meta_mut(&mut obj).insert("name".into(), json!(name));
    }
    lifecycle::validate_name(&t.def, &name)?;
    lifecycle::validate_labels(&t.def, &obj)?;
    lifecycle::validate_micro_times(&t.def, &obj)?;
    admit_create(s, t, &name)?;
    let is_crd = t.def.storage == "apiextensions.k8s.io/customresourcedefinitions";
    if is_crd {
        lifecycle::prepare_crd(&mut obj)?;
    }
    let status_after_prepare = obj.get("status").cloned();
    lifecycle::prepare_create(&t.def, &mut obj);
    if is_crd && let (Some(st), Some(o)) = (status_after_prepare, obj.as_object_mut()) {
        o.insert("status".into(), st);
    }
    schema::check(&t.def, &mut obj)?;
    check_role_ref(t, None, &obj)?;
    let obj = stamped(&t.def, &obj);
    let obj = events::stored(&t.def, obj);
    events::validate(&t.def, &obj, None)?;
    let key = t.key(&name);
    let out = s
        .store
        .mutate_seeing(&key, dry_run, |old, view| match old {
            Some(_) => Err(ApiError::already_exists(&t.def.group, &t.def.plural, &name)),
            None => {
                let mut obj = obj;
                allocate(t, None, &mut obj, view, &key)?;
                Ok(Change::Put(obj))
            }
        })?;
    if is_crd && out.changed {
        s.registry
            .set_custom(&name, lifecycle::crd_defs(&out.object));
    }
    Ok(out.object)
}

fn create(
    s: &Shared,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    bytes: &[u8],
    dry_run: bool,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    if t.sub.as_deref() == Some("token") {
        let req = decode_review(headers, bytes)?;
        let name = t.name.as_deref().unwrap_or("");
        let ns = t.namespace.as_deref().unwrap_or("");
        return Ok(json_response(201, &s.authn.token_request(ns, name, &req)?));
    }
    if t.name.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    if t.def.is_virtual() {
        let mut obj = decode_review(headers, bytes)?;
        check_type(&t.def, &mut obj)?;
        let out = s
            .authn
            .review(&t.def.kind, t.namespace.as_deref(), &obj, user)?;
        return Ok(json_response(201, &out));
    }
    let mut obj = decode_object(headers, bytes)?;
    check_type(&t.def, &mut obj)?;
    check_identity(t, &mut obj, None)?;
    rbac_guard(s, t, user)(None, &obj)?;
    let warnings = field_validation(q, &t.def, decoded_unknown(&t.def, &mut obj), false)?;
    let manager = update_manager(q, headers);
    let schema = schema_for(&t.def);
    // kube-apiserver defaults while decoding, before it computes managedFields, so the
    // creator owns the defaulted fields. What create itself sets later (uid, status, a Job's
    // selector, a Service's addresses) is owned by nobody.
    let mut decoded = obj.clone();
    defaults::apply_defaults(&t.def, &mut decoded);
    ssa::record_update(
        None,
        &mut decoded,
        &manager,
        &t.def.api_version(),
        None,
        &crate::store::now_rfc3339(),
        schema.as_ref(),
    );
    match decoded.pointer("/metadata/managedFields") {
        Some(mf) => {
            meta_mut(&mut obj).insert("managedFields".into(), mf.clone());
        }
        None => {
            meta_mut(&mut obj).remove("managedFields");
        }
    }
    let out = create_object(s, t, obj, dry_run)?;
    Ok(with_warnings(
        json_response(201, &served_stamped(&t.def, &out)),
        &warnings,
    ))
}

/// How a write keeps `metadata.managedFields` (spec §3.2).
enum Book<'a> {
    /// A non-apply write by this manager (operation Update).
    Record {
        manager: &'a str,
        subresource: Option<&'a str>,
    },
    /// `ssa::apply` already computed managedFields on the new object; keep them.
    Applied,
}

/// The SSA topology of a kind: built-in table, or the served version's CRD schema.
fn schema_for(def: &ResourceDef) -> Box<dyn ssa::Schema> {
    if def.is_custom() {
        let empty = json!({});
        let schema = def
            .custom
            .as_ref()
            .and_then(|c| c.schema.as_ref())
            .unwrap_or(&empty);
        ssa::crd_schema(schema)
    } else {
        ssa::builtin_schema(&def.group, &def.kind)
    }
}

/// The manager of a non-apply write: `?fieldManager=`, else the User-Agent's product token
/// (`kubectl/v1.37.0 (linux/amd64) ...` gives `kubectl`), as kube-apiserver derives it.
fn update_manager(q: &Query, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let ua = header_str(headers, "user-agent");
    let prefix = ua.split('/').next().unwrap_or("");
    prefix.chars().take(128).collect()
}

/// Unknown fields of a decoded object: a custom resource is pruned to its schema and the
/// dropped paths returned; built-ins are only flagged (see `fieldcheck`).
fn decoded_unknown(def: &ResourceDef, obj: &mut Value) -> Vec<String> {
    match schema::schema_of(def) {
        Some(sch) => schema::prune(obj, sch),
        None => {
            // Typed decoding drops what the type does not declare.
            let unknown = fieldcheck::unknown_fields(def, obj);
            fieldcheck::drop_unknown(obj, &unknown);
            unknown
        }
    }
}

/// `fieldValidation` for POST/PUT/non-apply PATCH: `Strict` rejects unknown fields with
/// kube-apiserver's strict decoding error, `Warn` (the default) returns them as warnings,
/// `Ignore` drops the check. A body that fails to decode is named in the error; a patched
/// object is not (kube-apiserver's patch handler reports the bare strict decoding error).
fn field_validation(
    q: &Query,
    def: &ResourceDef,
    unknown: Vec<String>,
    patched: bool,
) -> Result<Vec<String>, ApiError> {
    if unknown.is_empty() {
        return Ok(unknown);
    }
    match q.get("fieldValidation").unwrap_or("") {
        "Ignore" => Ok(Vec::new()),
        "Strict" => {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field {f:?}"))
                .collect();
            let strict = format!("strict decoding error: {}", list.join(", "));
            Err(ApiError::bad_request(if patched {
                strict
            } else {
                format!(
                    "{kind} in version {version:?} cannot be handled as a {kind}: {strict}",
                    kind = def.kind,
                    version = def.version,
                )
            }))
        }
        _ => Ok(unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect()),
    }
}

/// Adds one `Warning: 299 - "<text>"` header per warning, like kube-apiserver.
fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// The `Status` of a failed apply, as an `ApiError` with the same code, reason and details.
fn apply_error(e: &ssa::ApplyError) -> ApiError {
    let st = e.status();
    let reason: &'static str = match st.get("reason").and_then(Value::as_str).unwrap_or("") {
        "Conflict" => "Conflict",
        "BadRequest" => "BadRequest",
        "Invalid" => "Invalid",
        "InternalError" => "InternalError",
        _ => "",
    };
    let message = st
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("apply failed");
    let mut err = ApiError::new(e.code(), reason, message);
    if let Some(d) = st.get("details") {
        err = err.with_details(d.clone());
    }
    err
}

fn patch_error(e: patch_ops::PatchError) -> ApiError {
    let reason = match e.code() {
        422 => "Invalid",
        413 => "RequestEntityTooLarge",
        _ => "BadRequest",
    };
    ApiError::new(e.code(), reason, e.message())
}

/// A Service's cluster IP and node ports, from what the other stored Services leave free.
fn allocate(
    t: &Target,
    old: Option<&Value>,
    obj: &mut Value,
    view: &crate::store::View<'_>,
    key: &Key,
) -> Result<(), ApiError> {
    if !(t.def.group.is_empty() && t.def.kind == "Service") || t.sub.is_some() {
        return Ok(());
    }
    let others = view
        .list(&t.def.storage)
        .filter(|(k, _)| *k != key)
        .map(|(_, v)| v);
    alloc::prepare_service(old, obj, &alloc::Used::from_services(others))
}

/// Commit a new version of an existing object computed from the stored one.
fn update_with<F>(
    s: &Shared,
    t: &Target,
    name: &str,
    dry_run: bool,
    book: Book,
    compute: F,
) -> Result<Value, ApiError>
where
    F: FnOnce(&Value) -> Result<Value, ApiError>,
{
    let key = t.key(name);
    let schema = schema_for(&t.def);
    let is_crd = t.def.storage == "apiextensions.k8s.io/customresourcedefinitions";
    let out = s.store.mutate_seeing(&key, dry_run, |old, view| {
        let Some(old) = old else {
            return Err(ApiError::not_found(&t.def.group, &t.def.plural, name));
        };
        let stored_old = old;
        let old = &*events::served(&t.def, stored_old);
        let mut new = compute(old)?;
        if let Some(o) = new.as_object_mut() {
            o.insert("kind".into(), json!(t.def.kind));
            o.insert("apiVersion".into(), json!(t.def.api_version()));
        }
        let want_rv = meta_str(&new, "resourceVersion");
        if !want_rv.is_empty() && want_rv != meta_str(old, "resourceVersion") {
            return Err(ApiError::stale(&t.def.group, &t.def.plural, name));
        }
        lifecycle::validate_labels(&t.def, &new)?;
        lifecycle::validate_micro_times(&t.def, &new)?;
        if is_crd && t.sub.is_none() {
            lifecycle::prepare_crd(&mut new)?;
        }
        let applied_fields = new.pointer("/metadata/managedFields").cloned();
        let mut change = lifecycle::prepare_update(&t.def, old, new, t.sub.as_deref())?;
        if let Change::Put(v) = &mut change {
            schema::check(&t.def, v)?;
            check_role_ref(t, Some(old), v)?;
        }
        Ok(match change {
            Change::Put(mut v) => {
                match &book {
                    Book::Record {
                        manager,
                        subresource,
                    } => ssa::record_update(
                        Some(old),
                        &mut v,
                        manager,
                        &t.def.api_version(),
                        *subresource,
                        &crate::store::now_rfc3339(),
                        schema.as_ref(),
                    ),
                    Book::Applied => {
                        // prepare_update keeps the stored metadata for /status writes.
                        if let Some(mf) = applied_fields {
                            meta_mut(&mut v).insert("managedFields".into(), mf);
                        }
                    }
                }
                // After the bookkeeping, as in kube-apiserver's Service storage.
                allocate(t, Some(old), &mut v, view, &key)?;
                meta_mut(&mut v).insert(
                    "resourceVersion".into(),
                    json!(meta_str(old, "resourceVersion")),
                );
                // No-op (spec §2.8): same object up to managedFields times keeps RV and times.
                if ssa::managed_fields_equal_ignoring_time(old, &v) {
                    Change::Keep(stored_old.clone())
                } else {
                    let v = events::stored(&t.def, v);
                    events::validate(&t.def, &v, Some(stored_old))?;
                    Change::Put(v)
                }
            }
            Change::Remove(v) => Change::Remove(events::stored(&t.def, v)),
            Change::Keep(v) => Change::Keep(events::stored(&t.def, v)),
        })
    })?;
    if is_crd && out.changed {
        if out.removed {
            s.registry.set_custom(name, vec![]);
        } else {
            s.registry
                .set_custom(name, lifecycle::crd_defs(&out.object));
        }
    }
    Ok(out.object)
}

#[allow(clippy::too_many_arguments)]
fn update(
    s: &Shared,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    bytes: &[u8],
    dry_run: bool,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let mut obj = decode_object(headers, bytes)?;
    let manager = update_manager(q, headers);
    if t.sub.as_deref() == Some("scale") {
        let replicas = scale_replicas(&t.def, &name, &obj)?;
        let out = update_with(
            s,
            &Target {
                sub: None,
                ..clone_target(t)
            },
            &name,
            dry_run,
            Book::Record {
                manager: &manager,
                subresource: Some("scale"),
            },
            |old| with_replicas(old, replicas),
        )?;
        return Ok(json_response(200, &scale_of(&t.def, &out)));
    }
    if t.sub.as_deref() == Some("finalize") {
        // Namespace finalize: only spec.finalizers changes.
        let fins = obj
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or(json!([]));
        let key = t.key(&name);
        let def = t.def.clone();
        let out = s.store.mutate(&key, dry_run, |old| {
            let Some(old) = old else {
                return Err(ApiError::not_found("", "namespaces", &name));
            };
            let mut n = old.clone();
            n["spec"]["finalizers"] = fins;
            let empty = n
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|a| a.is_empty());
            if lifecycle::is_deleting(&n) && empty && n.pointer("/metadata/finalizers").is_none() {
                return Ok(Change::Remove(n));
            }
            Ok(Change::Put(n))
        })?;
        return Ok(json_response(200, &served_stamped(&def, &out.object)));
    }
    check_type(&t.def, &mut obj)?;
    check_identity(t, &mut obj, Some(&name))?;
    if t.def.is_custom() && meta_str(&obj, "resourceVersion").is_empty() && t.sub.is_none() {
        return Err(ApiError::invalid(
            &t.def.group,
            &t.def.kind,
            &name,
            vec![FieldError::invalid(
                "metadata.resourceVersion",
                "0x0",
                "must be specified for an update",
            )],
        ));
    }
    let warnings = field_validation(q, &t.def, decoded_unknown(&t.def, &mut obj), false)?;
    let guard = rbac_guard(s, t, user);
    let out = update_with(
        s,
        t,
        &name,
        dry_run,
        Book::Record {
            manager: &manager,
            subresource: t.sub.as_deref(),
        },
        move |old| {
            guard(Some(old), &obj)?;
            Ok(obj)
        },
    )?;
    Ok(with_warnings(
        json_response(200, &served_stamped(&t.def, &out)),
        &warnings,
    ))
}

fn clone_target(t: &Target) -> Target {
    Target {
        def: t.def.clone(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        sub: t.sub.clone(),
    }
}

/// `spec.replicas` of a Scale body: a non-negative integer (0 when absent, as Go decodes it).
fn scale_replicas(def: &ResourceDef, name: &str, scale: &Value) -> Result<i64, ApiError> {
    let v = scale.pointer("/spec/replicas").unwrap_or(&Value::Null);
    match v {
        Value::Null => Ok(0),
        Value::Number(n)
            if n.as_i64()
                .is_some_and(|r| r >= 0 && r <= i64::from(i32::MAX)) =>
        {
            Ok(n.as_i64().unwrap_or(0))
        }
        Value::Number(n) if n.as_i64().is_some_and(|r| r < 0) => Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![FieldError::invalid(
                "spec.replicas",
                &n.to_string(),
                "must be greater than or equal to 0",
            )],
        )),
        _ => Err(ApiError::bad_request(format!(
            "Scale in version \"v1\" cannot be handled as a Scale: spec.replicas of {} {name} must be an integer",
            def.kind
        ))),
    }
}

/// The object with `spec.replicas` set (a missing or malformed spec becomes an object).
fn with_replicas(old: &Value, replicas: i64) -> Result<Value, ApiError> {
    let mut n = old.clone();
    let Some(o) = n.as_object_mut() else {
        return Err(ApiError::internal("stored object is not a JSON object"));
    };
    let spec = o.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    if let Some(spec) = spec.as_object_mut() {
        spec.insert("replicas".into(), json!(replicas));
    }
    Ok(n)
}

/// PATCH of the scale subresource: the patch applies to the Scale view of the object and
/// only its `spec.replicas` is written back (what `kubectl scale` sends).
#[allow(clippy::too_many_arguments)]
fn patch_scale(
    s: &Shared,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    name: &str,
    ct: &str,
    patch_body: &Value,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let manager = update_manager(q, headers);
    let def = t.def.clone();
    let out = update_with(
        s,
        &Target {
            sub: None,
            ..clone_target(t)
        },
        name,
        dry_run,
        Book::Record {
            manager: &manager,
            subresource: Some("scale"),
        },
        |old| {
            let scale = scale_of(&def, old);
            let patched = if ct == "application/json-patch+json" {
                patch_ops::json_patch(&scale, patch_body).map_err(patch_error)?
            } else if patch_body.is_object() {
                patch_ops::merge_patch(&scale, patch_body)
            } else {
                return Err(ApiError::bad_request(
                    "error decoding patch: patch must be an object",
                ));
            };
            let want = meta_str(&patched, "resourceVersion");
            if !want.is_empty() && want != meta_str(old, "resourceVersion") {
                return Err(ApiError::conflict(
                    &def.group,
                    &def.plural,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            with_replicas(old, scale_replicas(&def, name, &patched)?)
        },
    )?;
    Ok(json_response(200, &scale_of(&t.def, &out)))
}

fn scale_of(def: &ResourceDef, obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let _ = def;
    json!({
        "kind":"Scale","apiVersion":"autoscaling/v1",
        "metadata":{
            "name": meta_str(obj, "name"), "namespace": meta_str(obj, "namespace"),
            "uid": meta_str(obj, "uid"), "resourceVersion": meta_str(obj, "resourceVersion"),
            "creationTimestamp": meta_str(obj, "creationTimestamp")
        },
        "spec":{"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status":{"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector}
    })
}

#[allow(clippy::too_many_arguments)]
fn patch(
    s: &Shared,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    bytes: &[u8],
    dry_run: bool,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let ct = media_type(headers);
    let is_apply = ct == "application/apply-patch+yaml";
    if q.flag("force") && !is_apply {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    let parse_json = |b: &[u8]| -> Result<Value, ApiError> {
        serde_json::from_slice(b)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    };
    let patch_body: Value = match ct.as_str() {
        "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request("yaml: invalid UTF-8 in apply patch"))?;
            let v: Value = serde_saphyr::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            if !v.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding YAML: apply patch must be an object",
                ));
            }
            v
        }
        "application/merge-patch+json" => parse_json(bytes)?,
        "application/json-patch+json" => parse_json(bytes)?,
        "application/strategic-merge-patch+json" => {
            if t.def.is_custom() {
                return Err(ApiError::unsupported_media(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            parse_json(bytes)?
        }
        _ => {
            return Err(ApiError::unsupported_media(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
                if t.def.is_custom() {
                    ""
                } else {
                    ", application/strategic-merge-patch+json"
                }
            )));
        }
    };
    if t.sub.as_deref() == Some("scale") {
        if is_apply {
            return Err(ApiError::unsupported_media(
                "applying to the scale subresource is not supported here",
            ));
        }
        return patch_scale(s, t, q, headers, &name, &ct, &patch_body, dry_run);
    }
    if is_apply {
        return apply(s, t, q, &name, &patch_body, dry_run, user);
    }
    let manager = update_manager(q, headers);
    let schema = schema_for(&t.def);
    let mut warnings = Vec::new();
    let guard = rbac_guard(s, t, user);
    let out = update_with(
        s,
        t,
        &name,
        dry_run,
        Book::Record {
            manager: &manager,
            subresource: t.sub.as_deref(),
        },
        |old| {
            let mut new = match ct.as_str() {
                "application/json-patch+json" => {
                    patch_ops::json_patch(old, &patch_body).map_err(patch_error)?
                }
                _ => {
                    if !patch_body.is_object() {
                        return Err(ApiError::bad_request(
                            "error decoding patch: patch must be an object",
                        ));
                    }
                    if ct == "application/strategic-merge-patch+json" {
                        patch_ops::strategic_merge_patch(old, &patch_body, schema.as_ref())
                            .map_err(patch_error)?
                    } else {
                        patch_ops::merge_patch(old, &patch_body)
                    }
                }
            };
            if !new.is_object() {
                return Err(ApiError::bad_request(
                    "the patched object is not a JSON object",
                ));
            }
            // What a patch makes is held to what a request could have sent.
            if patch_ops::json_size(&new) > MAX_BODY {
                return Err(ApiError::too_large(MAX_BODY));
            }
            let introduced: Vec<String> = match schema::schema_of(&t.def) {
                // The stored object is already pruned: whatever is dropped came with the patch.
                Some(sch) => schema::prune(&mut new, sch),
                None => {
                    // Only fields the patch introduced count; the stored object is not re-judged.
                    let before = fieldcheck::unknown_fields(&t.def, old);
                    let introduced: Vec<String> = fieldcheck::unknown_fields(&t.def, &new)
                        .into_iter()
                        .filter(|f| !before.contains(f))
                        .collect();
                    fieldcheck::drop_unknown(&mut new, &introduced);
                    introduced
                }
            };
            warnings = field_validation(q, &t.def, introduced, true)?;
            // The RV is a precondition only when the patch itself sets it.
            let patched_rv = patch_rv(&ct, &patch_body);
            let m = meta_mut(&mut new);
            match patched_rv {
                Some(rv) => {
                    m.insert("resourceVersion".into(), json!(rv));
                }
                None => {
                    m.remove("resourceVersion");
                }
            }
            if meta_str(&new, "name") != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_str(&new, "name")
                )));
            }
            guard(Some(old), &new)?;
            Ok(new)
        },
    )?;
    Ok(with_warnings(
        json_response(200, &served_stamped(&t.def, &out)),
        &warnings,
    ))
}

/// Server-side apply (spec §3): create-by-apply (201, also authorized as `create`) or an
/// update computed by `ssa::apply`, then the usual checks, no-op detection and storage.
#[allow(clippy::too_many_arguments)]
fn apply(
    s: &Shared,
    t: &Target,
    q: &Query,
    name: &str,
    patch_body: &Value,
    dry_run: bool,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    let manager = q.get("fieldManager").unwrap_or("");
    if manager.is_empty() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )],
        ));
    }
    let av = patch_body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if av != t.def.api_version() {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {av}, expected: {}",
            t.def.api_version()
        )));
    }
    let kind = patch_body.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != t.def.kind {
        return Err(ApiError::bad_request(format!(
            "Incorrect kind specified in apply patch. Specified patch kind: {kind}, expected: {}",
            t.def.kind
        )));
    }
    if patch_body.pointer("/metadata/managedFields").is_some() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let mut applied = patch_body.clone();
    check_identity(t, &mut applied, Some(name))?;
    // Apply converts the configuration to its typed form first, which refuses undeclared
    // fields whatever fieldValidation says, for built-ins and custom resources (spec §3.6).
    let undeclared: Vec<String> = match schema::schema_of(&t.def) {
        Some(sch) => schema::undeclared_for_apply(&applied, sch),
        None => fieldcheck::unknown_fields(&t.def, &applied)
            .iter()
            .map(|f| format!(".{f}: field not declared in schema"))
            .collect(),
    };
    if !undeclared.is_empty() {
        // structured-merge-diff's wording: one error inline, several as an indented list.
        let errors = if undeclared.len() == 1 {
            undeclared.join("")
        } else {
            format!("errors:\n  {}", undeclared.join("\n  "))
        };
        let (g, v) = (&t.def.group, &t.def.version);
        return Err(ApiError::new(
            500,
            "",
            format!(
                "failed to create typed patch object ({}/{name}; {g}/{v}, Kind={}): {errors}",
                t.namespace.as_deref().unwrap_or(""),
                t.def.kind,
            ),
        ));
    }
    let schema = schema_for(&t.def);
    let api_version = t.def.api_version();
    let force = q.flag("force");
    let now = crate::store::now_rfc3339();
    let run = |live: Option<&Value>| {
        ssa::apply(ssa::ApplyRequest {
            live,
            applied: &applied,
            manager,
            api_version: &api_version,
            kind: &t.def.kind,
            force,
            subresource: t.sub.as_deref(),
            status_subresource: t.def.has_status_subresource,
            now: &now,
            schema: schema.as_ref(),
        })
        .map(|mut merged| {
            // Free-form parts of a custom resource pass the typed check and are pruned
            // silently on the way to storage.
            if let Some(sch) = schema::schema_of(&t.def) {
                schema::prune(&mut merged, sch);
            }
            merged
        })
        .map_err(|e| apply_error(&e))
    };
    if t.sub.is_none() && s.store.get(&t.key(name)).is_none() {
        // Create-by-apply is also a create (spec §3.1).
        check(s, &resource_attrs(user, t, "create", name))?;
        if !meta_str(&applied, "uid").is_empty() {
            return Err(ApiError::conflict(
                &t.def.group,
                &t.def.plural,
                name,
                "uid mismatch",
            ));
        }
        let created = run(None)?;
        rbac_guard(s, t, user)(None, &created)?;
        let out = create_object(s, t, created, dry_run)?;
        return Ok(json_response(201, &served_stamped(&t.def, &out)));
    }
    let want_rv = meta_str(&applied, "resourceVersion").to_string();
    let want_uid = meta_str(&applied, "uid").to_string();
    let guard = rbac_guard(s, t, user);
    let out = update_with(s, t, name, dry_run, Book::Applied, |old| {
        if !want_rv.is_empty() && want_rv != meta_str(old, "resourceVersion") {
            return Err(ApiError::stale(&t.def.group, &t.def.plural, name));
        }
        if !want_uid.is_empty() && want_uid != meta_str(old, "uid") {
            return Err(ApiError::conflict(
                &t.def.group,
                &t.def.plural,
                name,
                "uid mismatch",
            ));
        }
        let new = run(Some(old))?;
        guard(Some(old), &new)?;
        Ok(new)
    })?;
    Ok(json_response(200, &served_stamped(&t.def, &out)))
}

fn patch_rv(ct: &str, patch: &Value) -> Option<String> {
    if ct == "application/json-patch+json" {
        patch.as_array()?.iter().find_map(|op| {
            (op.get("path")?.as_str()? == "/metadata/resourceVersion")
                .then(|| op.get("value")?.as_str().map(str::to_string))?
        })
    } else {
        patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

fn delete_options(q: &Query, bytes: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions::default();
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?;
        o.propagation = v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string);
        o.dry_run = v
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"));
        o.precondition_uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        o.precondition_rv = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if v.get("orphanDependents") == Some(&json!(true)) && o.propagation.is_none() {
            o.propagation = Some("Orphan".into());
        }
    }
    if let Some(p) = q.get("propagationPolicy") {
        o.propagation = Some(p.to_string());
    }
    if q.get("dryRun") == Some("All") {
        o.dry_run = true;
    }
    if q.get("orphanDependents") == Some("true") && o.propagation.is_none() {
        o.propagation = Some("Orphan".into());
    }
    if let Some(p) = &o.propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            vec![FieldError {
                reason: "FieldValueNotSupported",
                field: "propagationPolicy".into(),
                message: format!(
                    "Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                ),
            }],
        ));
    }
    Ok(o)
}

fn delete(s: &Shared, t: &Target, q: &Query, bytes: &[u8]) -> Result<Response, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let opts = delete_options(q, bytes)?;
    let out = lifecycle::delete(&s.store, &s.registry, &t.def, &t.key(&name), &opts)?;
    if out.removed && !t.def.returns_deleted_object {
        return Ok(json_response(
            200,
            &status::delete_success(
                &t.def.group,
                &t.def.plural,
                &name,
                meta_str(&out.object, "uid"),
            ),
        ));
    }
    Ok(json_response(200, &served_stamped(&t.def, &out.object)))
}

fn delete_collection(
    s: &Shared,
    t: &Target,
    q: &Query,
    fields: &FieldSelector,
    bytes: &[u8],
    accept: &str,
) -> Result<Response, ApiError> {
    let _ = accept;
    let opts = delete_options(q, bytes)?;
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?;
    let (items, _) = s.store.list(&t.def.storage, t.namespace.as_deref());
    let mut deleted = Vec::new();
    for o in items
        .iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
    {
        let key = Key::new(
            &t.def.storage,
            meta_str(o, "namespace"),
            meta_str(o, "name"),
        );
        match lifecycle::delete(&s.store, &s.registry, &t.def, &key, &opts) {
            Ok(out) => deleted.push(stamped(&t.def, &events::served(&t.def, &out.object))),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        200,
        &json!({"kind": t.def.list_kind, "apiVersion": t.def.api_version(),
            "metadata": {"resourceVersion": s.store.current_rv().to_string()}, "items": deleted}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb&limit=500&&fieldSelector=metadata.name%3Dx+y&watch=1",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert_eq!(q.get("fieldSelector"), Some("metadata.name=x y"));
        assert!(q.flag("watch"));
        assert_eq!(pct_decode("%zz%2"), "%zz%2");
    }

    #[test]
    fn resolve_paths() {
        let r = Registry::new();
        let t = resolve(&r, "", "v1", &["namespaces", "a", "configmaps", "b"]).ok();
        assert!(
            t.as_ref().is_some_and(
                |t| t.namespace.as_deref() == Some("a") && t.name.as_deref() == Some("b")
            )
        );
        let ns = resolve(&r, "", "v1", &["namespaces", "a", "status"]).ok();
        assert!(
            ns.is_some_and(|t| t.def.plural == "namespaces" && t.sub.as_deref() == Some("status"))
        );
        assert!(resolve(&r, "", "v1", &["widgets"]).is_err());
        assert!(resolve(&r, "", "v1", &["namespaces", "a", "nodes", "x"]).is_err());
    }
}
