//! Server-side apply of a rendered set of objects, in dependency order, one by one.
//!
//! Order: Namespaces, then CustomResourceDefinitions (waiting until each is Established),
//! then other cluster-scoped objects, then namespaced ones; input order is kept within each
//! group. The first failure stops the run and is returned with what was applied before it.
//!
//! Every kind is resolved through [`Discovery`] before anything is written, so an unknown
//! kind fails the set without a write (kinds defined by a CRD of the same set are resolved
//! after that CRD is served).
//!
//! Secrets: the request body is written straight from the [`Node`] into a zeroizing
//! buffer ([`json_body`]); responses are read into zeroizing buffers and only their
//! metadata is parsed; an error about an object that holds secrets carries the status
//! code, reason and field paths the server gave (and for a 403 the denied user), never
//! its message (kube-apiserver can echo the request body there).
//!
//! Created / configured / unchanged: `Created` is the server's 201. In `Apply` mode the
//! object's `resourceVersion` is read first with a GET that asks for metadata only
//! (`PartialObjectMetadata`, so a Secret's data is not sent back) and compared with the one the apply returns: equal means the apply
//! was a no-op, `Unchanged`. A GET that fails (no `get` right, say) only costs that
//! distinction (the result is then `Configured`). `DryRun` makes no GET and reports
//! `Created` or `Configured`. The GET is one more request per object; the reconciler keeps
//! a digest of what it applied and calls this only for sets that changed, so an unchanged
//! round costs nothing here.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use http::header::{ACCEPT, CONTENT_TYPE};
use kube::client::Body;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::discovery::{Discovery, DiscoveryError, Resolved, split_api_version};
use crate::controller::application::InventoryEntry;
use crate::render::RenderedObject;
use crate::sops::tree::{MapItem, Node, Scalar};

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "lockstep";

/// Whether to write or only ask the server whether it would accept the writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyMode {
    /// `?dryRun=All`: admission, RBAC, validation and conflicts, no write. Objects whose
    /// kind comes from a CRD of the same set (not served yet), and namespaced objects whose
    /// Namespace is in the set but does not exist yet, are skipped (not in the result).
    DryRun,
    Apply,
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub mode: ApplyMode,
    /// How long to wait for a CRD of the set to become Established (Apply mode).
    pub crd_established_timeout: Duration,
    /// Take fields another manager owns. Off by default: a conflict is reported instead.
    pub force: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            mode: ApplyMode::Apply,
            crd_established_timeout: Duration::from_secs(30),
            force: false,
        }
    }
}

/// What an apply did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
        })
    }
}

/// One object applied (or accepted by a dry run).
#[derive(Clone, Debug)]
pub struct Applied {
    pub entry: InventoryEntry,
    pub action: Action,
    /// Empty for an object a dry run would create.
    pub uid: String,
    pub resource_version: String,
    /// Where the object came from: "file (document n)".
    pub origin: String,
}

/// Why a set was not (fully) applied.
#[derive(Debug, thiserror::Error)]
#[error("{object} ({origin}): {kind}")]
pub struct ApplyError {
    /// What was applied before the failure, in order.
    pub applied: Vec<Applied>,
    /// The failed object: "Kind namespace/name" or "Kind name".
    pub object: String,
    /// "file (document n)".
    pub origin: String,
    pub kind: ApplyErrorKind,
}

impl ApplyError {
    /// Worth retrying with backoff: the server was unreachable, overloaded or failing, or
    /// a CRD took too long to be Established.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ApplyErrorKind::Transient { .. } | ApplyErrorKind::Timeout { .. }
        )
    }
}

/// The cause of an [`ApplyError`]; every message is safe to log and to put in status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyErrorKind {
    /// The cluster serves no such kind (also after refreshing discovery).
    #[error("{message}")]
    UnknownKind { message: String },
    /// RBAC (or an admission policy) refused the identity in use.
    #[error("{message}")]
    Forbidden { message: String },
    /// The object is invalid; `fields` are the paths the server named.
    #[error("{message}")]
    Invalid {
        fields: Vec<String>,
        message: String,
    },
    /// Fields of the object are owned by other managers (no `force`).
    #[error("{message}")]
    Conflict {
        managers: Vec<String>,
        fields: Vec<String>,
        message: String,
    },
    /// A CRD was not Established in time.
    #[error("{message}")]
    Timeout { message: String },
    /// Network failure, 429 or a 5xx: try again later.
    #[error("{message}")]
    Transient { message: String },
    #[error("{message}")]
    Other { message: String },
}

impl ApplyErrorKind {
    pub fn message(&self) -> &str {
        match self {
            ApplyErrorKind::UnknownKind { message }
            | ApplyErrorKind::Forbidden { message }
            | ApplyErrorKind::Invalid { message, .. }
            | ApplyErrorKind::Conflict { message, .. }
            | ApplyErrorKind::Timeout { message }
            | ApplyErrorKind::Transient { message }
            | ApplyErrorKind::Other { message } => message,
        }
    }

    /// A short CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyErrorKind::UnknownKind { .. } => "UnknownKind",
            ApplyErrorKind::Forbidden { .. } => "Forbidden",
            ApplyErrorKind::Invalid { .. } => "Invalid",
            ApplyErrorKind::Conflict { .. } => "FieldConflict",
            ApplyErrorKind::Timeout { .. } => "Timeout",
            ApplyErrorKind::Transient { .. } => "TransientError",
            ApplyErrorKind::Other { .. } => "ApplyFailed",
        }
    }
}

/// Orders (Namespaces + CRDs first, waiting for Established; then cluster-scoped; then namespaced),
/// then applies one by one, stopping at the first failure.
pub async fn apply_all(
    client: &kube::Client,
    discovery: &Discovery,
    objects: &[RenderedObject],
    opts: &ApplyOptions,
) -> Result<Vec<Applied>, ApplyError> {
    let mut applied = Vec::new();
    let fail = |applied: &mut Vec<Applied>, obj: &RenderedObject, kind| ApplyError {
        applied: std::mem::take(applied),
        object: describe(obj),
        origin: obj.origin.to_string(),
        kind,
    };
    let dry = opts.mode == ApplyMode::DryRun;
    // Kinds the set itself defines: they may not be served before their CRD is applied.
    let defined: HashSet<(String, String)> = objects.iter().filter_map(crd_defines).collect();

    // Resolve everything that can be resolved now, before the first write.
    let mut resolved: Vec<Option<Resolved>> = Vec::with_capacity(objects.len());
    for obj in objects {
        match discovery
            .resolve(client, obj.api_version(), obj.kind())
            .await
        {
            Ok(r) => {
                check_identity(obj, &r).map_err(|k| fail(&mut applied, obj, k))?;
                resolved.push(Some(r));
            }
            Err(DiscoveryError::UnknownKind { .. }) if defined.contains(&group_kind(obj)) => {
                resolved.push(None)
            }
            Err(e) => return Err(fail(&mut applied, obj, discovery_error(obj, e))),
        }
    }

    // Namespaces and CRDs first.
    let first: Vec<usize> = (0..objects.len())
        .filter(|&i| is_namespace(&objects[i]))
        .chain((0..objects.len()).filter(|&i| is_crd(&objects[i])))
        .collect();
    let is_first: HashSet<usize> = first.iter().copied().collect();
    let mut new_namespaces: HashSet<String> = HashSet::new();
    let mut pending_crds: Vec<&RenderedObject> = Vec::new();
    for &i in &first {
        let obj = &objects[i];
        let Some(r) = &resolved[i] else { continue };
        let out = apply_one_retrying(client, r, obj, opts)
            .await
            .map_err(|k| fail(&mut applied, obj, k))?;
        if is_namespace(obj) && out.applied.action == Action::Created {
            new_namespaces.insert(obj.name().to_owned());
        }
        if is_crd(obj) && !dry && out.established != Some(true) {
            pending_crds.push(obj);
        }
        applied.push(out.applied);
    }
    for crd in pending_crds {
        wait_established(client, crd.name(), opts.crd_established_timeout)
            .await
            .map_err(|k| fail(&mut applied, crd, k))?;
    }

    // Kinds from the CRDs just applied are served now (a dry run skips them).
    let mut cluster_scoped = Vec::new();
    let mut namespaced = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        if is_first.contains(&i) {
            continue;
        }
        let r = match resolved[i].take() {
            Some(r) => r,
            None if dry => continue,
            None => {
                let r = discovery
                    .resolve(client, obj.api_version(), obj.kind())
                    .await
                    .map_err(|e| {
                        let k = discovery_error(obj, e);
                        fail(&mut applied, obj, k)
                    })?;
                check_identity(obj, &r).map_err(|k| fail(&mut applied, obj, k))?;
                r
            }
        };
        if r.namespaced {
            namespaced.push((obj, r));
        } else {
            cluster_scoped.push((obj, r));
        }
    }
    for (obj, r) in cluster_scoped.into_iter().chain(namespaced) {
        if dry
            && r.namespaced
            && obj
                .namespace()
                .is_some_and(|ns| new_namespaces.contains(ns))
        {
            // Its Namespace would be created by this set: the server cannot judge it yet.
            continue;
        }
        let out = apply_one_retrying(client, &r, obj, opts)
            .await
            .map_err(|k| fail(&mut applied, obj, k))?;
        applied.push(out.applied);
    }
    Ok(applied)
}

/// "Kind namespace/name" or "Kind name".
fn describe(obj: &RenderedObject) -> String {
    match obj.namespace() {
        Some(ns) => format!("{} {ns}/{}", obj.kind(), obj.name()),
        None => format!("{} {}", obj.kind(), obj.name()),
    }
}

fn is_namespace(obj: &RenderedObject) -> bool {
    obj.api_version() == "v1" && obj.kind() == "Namespace"
}

fn is_crd(obj: &RenderedObject) -> bool {
    split_api_version(obj.api_version()).0 == "apiextensions.k8s.io"
        && obj.kind() == "CustomResourceDefinition"
}

fn group_kind(obj: &RenderedObject) -> (String, String) {
    (
        split_api_version(obj.api_version()).0.to_owned(),
        obj.kind().to_owned(),
    )
}

/// The (group, kind) a CRD of the set defines.
fn crd_defines(obj: &RenderedObject) -> Option<(String, String)> {
    if !is_crd(obj) {
        return None;
    }
    let spec = obj.doc.get("spec")?;
    let group = spec.get("group").and_then(Node::as_str)?;
    let kind = spec
        .get("names")
        .and_then(|n| n.get("kind"))
        .and_then(Node::as_str)?;
    Some((group.to_owned(), kind.to_owned()))
}

/// A name, and a namespace exactly when the kind is namespaced.
fn check_identity(obj: &RenderedObject, r: &Resolved) -> Result<(), ApplyErrorKind> {
    if obj.name().is_empty() {
        return Err(ApplyErrorKind::Invalid {
            fields: vec!["metadata.name".into()],
            message: "metadata.name is required".into(),
        });
    }
    match (r.namespaced, obj.namespace()) {
        (true, None) | (true, Some("")) => Err(ApplyErrorKind::Invalid {
            fields: vec!["metadata.namespace".into()],
            message: format!(
                "{} is namespaced but the object names no namespace",
                r.resource.kind
            ),
        }),
        (false, Some(ns)) if !ns.is_empty() => Err(ApplyErrorKind::Invalid {
            fields: vec!["metadata.namespace".into()],
            message: format!(
                "{} is cluster-scoped but the object names namespace {ns:?}",
                r.resource.kind
            ),
        }),
        _ => Ok(()),
    }
}

fn discovery_error(obj: &RenderedObject, e: DiscoveryError) -> ApplyErrorKind {
    let transient = e.is_transient();
    match e {
        DiscoveryError::UnknownKind { api_version, kind } => ApplyErrorKind::UnknownKind {
            message: format!(
                "unknown kind: the cluster serves no {kind:?} in apiVersion {api_version:?} (is its CRD installed?)"
            ),
        },
        other if transient => ApplyErrorKind::Transient {
            message: other.to_string(),
        },
        other => ApplyErrorKind::Other {
            message: format!("{} {}: {other}", obj.api_version(), obj.kind()),
        },
    }
}

/// The result of one apply, and for a CRD whether the answer already showed it Established.
struct Outcome {
    applied: Applied,
    established: Option<bool>,
}

#[derive(Deserialize, Default)]
struct WireMeta {
    #[serde(default)]
    uid: String,
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
}

#[derive(Deserialize, Default)]
struct WireObject {
    #[serde(default)]
    metadata: WireMeta,
}

#[derive(Deserialize, Default)]
struct WireCondition {
    #[serde(default, rename = "type")]
    type_: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize, Default)]
struct WireCrdStatus {
    #[serde(default)]
    conditions: Vec<WireCondition>,
}

#[derive(Deserialize, Default)]
struct WireCrd {
    #[serde(default)]
    status: WireCrdStatus,
}

fn established(body: &[u8]) -> bool {
    serde_json::from_slice::<WireCrd>(body).is_ok_and(|c| {
        c.status
            .conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    })
}

/// The object's URL path (no query).
fn object_path(r: &Resolved, namespace: Option<&str>, name: &str) -> String {
    let mut p = if r.resource.group.is_empty() {
        format!("/api/{}", r.resource.version)
    } else {
        format!("/apis/{}/{}", r.resource.group, r.resource.version)
    };
    if let (true, Some(ns)) = (r.namespaced, namespace) {
        p.push_str("/namespaces/");
        p.push_str(&encode_segment(ns));
    }
    p.push('/');
    p.push_str(&encode_segment(&r.resource.plural));
    p.push('/');
    p.push_str(&encode_segment(name));
    p
}

/// Percent-encodes everything but unreserved characters and ':' (RBAC names use it).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Attempts per object when the server answers with a transient error (5xx, 429, a
/// timeout). An apply is idempotent, so retrying one object is safe and much cheaper than
/// failing the whole set and starting over after a backoff.
const APPLY_ATTEMPTS: u32 = 3;

async fn apply_one_retrying(
    client: &kube::Client,
    r: &Resolved,
    obj: &RenderedObject,
    opts: &ApplyOptions,
) -> Result<Outcome, ApplyErrorKind> {
    let mut attempt = 1;
    loop {
        match apply_one(client, r, obj, opts).await {
            Err(ApplyErrorKind::Transient { .. } | ApplyErrorKind::Timeout { .. })
                if attempt < APPLY_ATTEMPTS =>
            {
                // 100-200 ms, then 200-400 ms: spread retries of many apps apart.
                let base = 100u64 << (attempt - 1);
                let jitter = u64::from(crate::crypto::random_bytes::<1>()[0]) * base / 255;
                tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn apply_one(
    client: &kube::Client,
    r: &Resolved,
    obj: &RenderedObject,
    opts: &ApplyOptions,
) -> Result<Outcome, ApplyErrorKind> {
    let sensitive = obj.holds_secrets || (obj.api_version() == "v1" && obj.kind() == "Secret");
    let path = object_path(r, obj.namespace(), obj.name());
    let before = match opts.mode {
        ApplyMode::Apply => resource_version(client, &path).await,
        ApplyMode::DryRun => None,
    };
    let mut query = format!("{path}?fieldManager={FIELD_MANAGER}");
    if opts.force {
        query.push_str("&force=true");
    }
    if opts.mode == ApplyMode::DryRun {
        query.push_str("&dryRun=All");
    }
    let body = json_body(&obj.doc);
    let req = http::Request::patch(query)
        .header(CONTENT_TYPE, "application/apply-patch+yaml")
        .header(ACCEPT, "application/json")
        // The buffer itself goes on the wire (no copy), and is wiped when the request is done.
        .body(Body::from(bytes::Bytes::from_owner(body)))
        .map_err(|e| ApplyErrorKind::Other {
            message: format!("cannot build the request: {e}"),
        })?;
    let res = client
        .send(req)
        .await
        .map_err(|e| ApplyErrorKind::Transient {
            message: format!("request failed: {e}"),
        })?;
    let code = res.status().as_u16();
    let bytes = read_body(res).await?;
    if !(200..300).contains(&code) {
        return Err(classify(code, &bytes, sensitive));
    }
    let wire: WireObject = serde_json::from_slice(&bytes).map_err(|_| ApplyErrorKind::Other {
        message: format!("the server's answer ({code}) is not an object"),
    })?;
    let meta = wire.metadata;
    let action = if code == 201 {
        Action::Created
    } else if before.as_deref() == Some(meta.resource_version.as_str()) {
        Action::Unchanged
    } else {
        Action::Configured
    };
    let (group, version) = (r.resource.group.clone(), r.resource.version.clone());
    Ok(Outcome {
        established: is_crd(obj).then(|| established(&bytes)),
        applied: Applied {
            entry: InventoryEntry {
                group,
                kind: r.resource.kind.clone(),
                namespace: if r.namespaced {
                    obj.namespace().map(str::to_owned)
                } else {
                    None
                },
                name: obj.name().to_owned(),
                version,
            },
            action,
            uid: meta.uid,
            resource_version: meta.resource_version,
            origin: obj.origin.to_string(),
        },
    })
}

/// The body, in a buffer that is wiped when dropped (it may hold a Secret).
async fn read_body(res: http::Response<Body>) -> Result<Zeroizing<Vec<u8>>, ApplyErrorKind> {
    let bytes = res
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| ApplyErrorKind::Transient {
            message: format!("reading the answer failed: {e}"),
        })?;
    Ok(Zeroizing::new(bytes.to_vec()))
}

/// The object's current resourceVersion from a metadata-only GET; `None` when it does
/// not exist or cannot be read.
async fn resource_version(client: &kube::Client, path: &str) -> Option<String> {
    let req = http::Request::get(path)
        .header(
            ACCEPT,
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json",
        )
        .body(Body::from(Vec::new()))
        .ok()?;
    let res = client.send(req).await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    let bytes = read_body(res).await.ok()?;
    let wire: WireObject = serde_json::from_slice(&bytes).ok()?;
    Some(wire.metadata.resource_version).filter(|rv| !rv.is_empty())
}

async fn wait_established(
    client: &kube::Client,
    name: &str,
    timeout: Duration,
) -> Result<(), ApplyErrorKind> {
    let path = format!(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{}",
        encode_segment(name)
    );
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        let req = http::Request::get(path.as_str())
            .header(ACCEPT, "application/json")
            .body(Body::from(Vec::new()))
            .map_err(|e| ApplyErrorKind::Other {
                message: format!("cannot build the request: {e}"),
            })?;
        match client.send(req).await {
            Ok(res) => {
                let code = res.status().as_u16();
                let bytes = read_body(res).await?;
                if (200..300).contains(&code) {
                    if established(&bytes) {
                        return Ok(());
                    }
                } else if !matches!(code, 404 | 429 | 500..=599) {
                    return Err(classify(code, &bytes, false));
                }
            }
            Err(e) => tracing::debug!(crd = name, "waiting for Established: {e}"),
        }
        if Instant::now() + pause > deadline {
            return Err(ApplyErrorKind::Timeout {
                message: format!(
                    "CustomResourceDefinition {name} was not Established within {}s",
                    timeout.as_secs_f64()
                ),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

#[derive(Deserialize, Default)]
struct WireCause {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    field: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize, Default)]
struct WireDetails {
    #[serde(default)]
    causes: Vec<WireCause>,
}

/// A Status without its message: all that is read for an object holding secrets.
#[derive(Deserialize, Default)]
struct WireStatus {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    details: Option<WireDetails>,
}

#[derive(Deserialize, Default)]
struct WireMessage {
    #[serde(default)]
    message: String,
}

/// Longest server message kept (for objects without secrets).
const MAX_MESSAGE: usize = 1024;

/// Maps an error answer to a kind. For a `sensitive` object the server's message is not
/// read at all: the result names only the code, the reason and the field paths.
fn classify(code: u16, body: &[u8], sensitive: bool) -> ApplyErrorKind {
    let status: WireStatus = serde_json::from_slice(body).unwrap_or_default();
    let causes = status.details.map(|d| d.causes).unwrap_or_default();
    let fields: Vec<String> = dedup(
        causes
            .iter()
            .filter(|c| !c.field.is_empty())
            .map(|c| c.field.clone()),
    );
    let reason = if status.reason.is_empty() {
        http::StatusCode::from_u16(code)
            .ok()
            .and_then(|c| c.canonical_reason())
            .unwrap_or("error")
            .replace(' ', "")
    } else {
        status.reason.clone()
    };
    let message = if sensitive {
        let mut m = format!("the API server refused the object: {reason} ({code})");
        // Authorization refuses before the body is read, so a 403 cannot quote it; only
        // the user it names is taken from it.
        if code == 403
            && let Some(user) = serde_json::from_slice::<WireMessage>(body)
                .ok()
                .and_then(|w| quoted(&w.message[w.message.find("User \"")?..]))
        {
            m.push_str(&format!(" for user {user:?}"));
        }
        if !fields.is_empty() {
            m.push_str(&format!(", fields: {}", fields.join(", ")));
        }
        m.push_str("; the server's message is withheld because the object holds secrets");
        m
    } else {
        let text = serde_json::from_slice::<WireMessage>(body)
            .map(|w| w.message)
            .unwrap_or_default();
        let text = if text.is_empty() {
            format!("{reason} ({code})")
        } else {
            text
        };
        truncate(text, MAX_MESSAGE)
    };
    let conflict_managers = dedup(
        causes
            .iter()
            .filter(|c| c.reason == "FieldManagerConflict")
            .filter_map(|c| quoted(&c.message)),
    );
    let typed_patch_failure = contains(body, b"failed to create typed patch object");
    match code {
        403 => ApplyErrorKind::Forbidden { message },
        409 if !conflict_managers.is_empty() => ApplyErrorKind::Conflict {
            managers: conflict_managers,
            fields,
            message,
        },
        400 | 422 => ApplyErrorKind::Invalid { fields, message },
        500 if typed_patch_failure => ApplyErrorKind::Invalid { fields, message },
        408 | 429 | 500..=599 => ApplyErrorKind::Transient { message },
        _ => ApplyErrorKind::Other { message },
    }
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// The first double-quoted text: the manager in `conflict with "kubectl" using v1`.
fn quoted(s: &str) -> Option<String> {
    let start = s.find('"')? + 1;
    let len = s[start..].find('"')?;
    Some(s[start..start + len].to_owned())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// An object given as JSON (a built-in manifest, a test fixture) in the form
/// [`apply_all`] takes. `holds_secrets` is set for Secrets.
pub fn object_from_json(
    value: &serde_json::Value,
    file: impl Into<std::path::PathBuf>,
    document: usize,
) -> RenderedObject {
    let doc = node_from_json(value);
    let holds_secrets = value.get("kind").and_then(serde_json::Value::as_str) == Some("Secret");
    RenderedObject {
        doc,
        origin: crate::render::Origin {
            file: file.into(),
            document,
        },
        sealed_scope: None,
        vault_paths: vec![],
        holds_secrets,
    }
}

fn node_from_json(value: &serde_json::Value) -> Node {
    use serde_json::Value;
    match value {
        Value::Null => Node::Scalar(Scalar::Null),
        Value::Bool(b) => Node::Scalar(Scalar::Bool(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Node::Scalar(Scalar::Int(i)),
            None => Node::Scalar(Scalar::Float(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => Node::str(s.clone()),
        Value::Array(items) => Node::List(items.iter().map(node_from_json).collect()),
        Value::Object(map) => Node::Map(
            map.iter()
                .map(|(k, v)| MapItem::Entry(k.clone(), node_from_json(v)))
                .collect(),
        ),
    }
}

/// The body sent on the wire, built straight from the Node; zeroized on drop.
///
/// Maps become objects (comments dropped), strings and timestamps JSON strings, raw bytes
/// base64 strings, non-finite floats `null` (JSON has no such numbers).
pub fn json_body(doc: &crate::sops::tree::Node) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = Buf(Zeroizing::new(Vec::with_capacity(1024)));
    write_node(doc, &mut out);
    out.0
}

/// A byte buffer that never leaves an unwiped copy behind when it grows.
struct Buf(Zeroizing<Vec<u8>>);

impl Buf {
    fn push(&mut self, bytes: &[u8]) {
        if self.0.len() + bytes.len() > self.0.capacity() {
            let want = (self.0.capacity() * 2).max(self.0.len() + bytes.len());
            let mut bigger = Zeroizing::new(Vec::with_capacity(want));
            bigger.extend_from_slice(&self.0);
            // The old buffer is wiped as it drops here.
            self.0 = bigger;
        }
        self.0.extend_from_slice(bytes);
    }
}

fn write_node(node: &Node, out: &mut Buf) {
    match node {
        Node::Map(items) => {
            out.push(b"{");
            let mut first = true;
            for item in items {
                if let MapItem::Entry(k, v) = item {
                    if !first {
                        out.push(b",");
                    }
                    first = false;
                    write_str(k, out);
                    out.push(b":");
                    write_node(v, out);
                }
            }
            out.push(b"}");
        }
        Node::List(items) => {
            out.push(b"[");
            let mut first = true;
            for v in items {
                if matches!(v, Node::Comment(_)) {
                    continue;
                }
                if !first {
                    out.push(b",");
                }
                first = false;
                write_node(v, out);
            }
            out.push(b"]");
        }
        Node::Comment(_) => out.push(b"null"),
        Node::Scalar(s) => match s {
            Scalar::Null => out.push(b"null"),
            Scalar::Bool(true) => out.push(b"true"),
            Scalar::Bool(false) => out.push(b"false"),
            Scalar::Int(i) => write_int(*i, out),
            Scalar::Float(f) => write_float(*f, out),
            Scalar::Str(t) | Scalar::Time(t) => write_str(t.as_str(), out),
            Scalar::Bytes(b) => {
                use base64::Engine;
                let mut enc = Zeroizing::new(String::new());
                base64::engine::general_purpose::STANDARD.encode_string(b.as_bytes(), &mut enc);
                write_str(&enc, out);
            }
        },
    }
}

fn write_int(i: i64, out: &mut Buf) {
    // Digits into a stack buffer that is wiped after use (a number can be a secret).
    let mut digits = Zeroizing::new([0u8; 20]);
    let mut n = i.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        out.push(b"-");
    }
    out.push(&digits[at..]);
}

fn write_float(f: f64, out: &mut Buf) {
    use std::fmt::Write as _;
    if !f.is_finite() {
        out.push(b"null");
        return;
    }
    let mut text = Zeroizing::new(String::with_capacity(32));
    // f64's Display never uses an exponent, so the text is always a JSON number.
    let _ = write!(text, "{f}");
    out.push(text.as_bytes());
}

fn write_str(s: &str, out: &mut Buf) {
    out.push(b"\"");
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push(&bytes[start..i]);
        match escape {
            Some(e) => out.push(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
            }
        }
        start = i + 1;
    }
    out.push(&bytes[start..]);
    out.push(b"\"");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sops::tree::{Blob, Text};

    fn entry(k: &str, v: Node) -> MapItem {
        MapItem::Entry(k.into(), v)
    }

    #[test]
    fn json_body_is_valid_json_with_every_scalar() {
        let doc = Node::Map(vec![
            entry("s", Node::str("a \"quoted\" \\ line\nand\u{1}ctl é")),
            MapItem::Comment(Text::from(" a comment")),
            entry("i", Node::Scalar(Scalar::Int(-1234567890123))),
            entry("min", Node::Scalar(Scalar::Int(i64::MIN))),
            entry("zero", Node::Scalar(Scalar::Int(0))),
            entry("f", Node::Scalar(Scalar::Float(1.5))),
            entry("nan", Node::Scalar(Scalar::Float(f64::NAN))),
            entry("b", Node::Scalar(Scalar::Bool(true))),
            entry("n", Node::Scalar(Scalar::Null)),
            entry(
                "t",
                Node::Scalar(Scalar::Time(Text::from("2026-01-02T03:04:05Z"))),
            ),
            entry(
                "raw",
                Node::Scalar(Scalar::Bytes(Blob::new(b"hi\0".to_vec()))),
            ),
            entry(
                "l",
                Node::List(vec![
                    Node::str("x"),
                    Node::Comment(Text::from("c")),
                    Node::Map(vec![]),
                ]),
            ),
        ]);
        let body = json_body(&doc);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(v["s"], "a \"quoted\" \\ line\nand\u{1}ctl é");
        assert_eq!(v["i"], -1234567890123i64);
        assert_eq!(v["min"], i64::MIN);
        assert_eq!(v["zero"], 0);
        assert_eq!(v["f"], 1.5);
        assert!(v["nan"].is_null());
        assert_eq!(v["b"], true);
        assert!(v["n"].is_null());
        assert_eq!(v["t"], "2026-01-02T03:04:05Z");
        assert_eq!(v["raw"], "aGkA");
        assert_eq!(v["l"], serde_json::json!(["x", {}]));
        let keys: Vec<&String> = v
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 11, "comments are not keys: {keys:?}");
    }

    #[test]
    fn json_objects_round_trip_through_the_body() {
        let v = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "n", "labels": {"a": "b"}},
            "data": {"k": "dg=="}, "n": [1, -2, 2.5, true, null, u64::MAX]
        });
        let obj = object_from_json(&v, "deploy/secret.yaml", 2);
        assert!(obj.holds_secrets);
        assert_eq!(obj.kind(), "Secret");
        assert_eq!(obj.namespace(), Some("n"));
        assert_eq!(obj.origin.to_string(), "deploy/secret.yaml (document 2)");
        let back: serde_json::Value =
            serde_json::from_slice(&json_body(&obj.doc)).expect("valid JSON");
        assert_eq!(back["metadata"], v["metadata"]);
        assert_eq!(back["data"], v["data"]);
        assert_eq!(back["n"][0], 1);
        assert_eq!(back["n"][2], 2.5);
        assert_eq!(back["n"][5].as_f64(), Some(u64::MAX as f64));
    }

    #[test]
    fn a_large_body_survives_buffer_growth() {
        let items: Vec<MapItem> = (0..2000)
            .map(|i| entry(&format!("k{i}"), Node::str("v".repeat(i % 50))))
            .collect();
        let body = json_body(&Node::Map(items));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(v["k1999"], "v".repeat(1999 % 50));
    }

    #[test]
    fn secret_errors_keep_only_code_reason_and_fields() {
        let body = serde_json::json!({
            "kind": "Status", "code": 422, "reason": "Invalid",
            "message": "Secret \"db\" is invalid: data[password]: Invalid value: \"CANARY\"",
            "details": {"causes": [{"reason": "FieldValueInvalid", "field": "data[password]",
                "message": "Invalid value: \"CANARY\""}]}
        })
        .to_string();
        let k = classify(422, body.as_bytes(), true);
        let shown = format!("{k} {k:?}");
        assert!(!shown.contains("CANARY"), "{shown}");
        assert_eq!(
            k,
            ApplyErrorKind::Invalid {
                fields: vec!["data[password]".into()],
                message: k.message().to_owned()
            }
        );
        assert!(k.message().contains("Invalid (422)"), "{}", k.message());
        // The same answer about an object without secrets keeps the server's words.
        let k = classify(422, body.as_bytes(), false);
        assert!(k.message().contains("CANARY"));
    }

    #[test]
    fn a_secret_denial_still_names_the_user() {
        let body = serde_json::json!({
            "kind": "Status", "code": 403, "reason": "Forbidden",
            "message": "secrets \"db\" is forbidden: User \"system:serviceaccount:a:d\" cannot patch resource \"secrets\" in API group \"\" in the namespace \"b\""
        })
        .to_string();
        let k = classify(403, body.as_bytes(), true);
        assert!(matches!(k, ApplyErrorKind::Forbidden { .. }), "{k:?}");
        assert!(
            k.message().contains("system:serviceaccount:a:d"),
            "{}",
            k.message()
        );
        assert!(!k.message().contains("cannot patch"), "{}", k.message());
    }

    #[test]
    fn conflicts_name_the_manager_and_field() {
        let body = serde_json::json!({
            "kind": "Status", "code": 409, "reason": "Conflict",
            "message": "Apply failed with 1 conflict: conflict with \"hpa\" using apps/v1: .spec.replicas",
            "details": {"causes": [{"reason": "FieldManagerConflict",
                "message": "conflict with \"hpa\" using apps/v1", "field": ".spec.replicas"}]}
        })
        .to_string();
        match classify(409, body.as_bytes(), false) {
            ApplyErrorKind::Conflict {
                managers, fields, ..
            } => {
                assert_eq!(managers, vec!["hpa".to_owned()]);
                assert_eq!(fields, vec![".spec.replicas".to_owned()]);
            }
            other => panic!("not a conflict: {other:?}"),
        }
    }

    #[test]
    fn status_codes_map_to_kinds() {
        let b = br#"{"kind":"Status","message":"m"}"#;
        assert!(matches!(
            classify(403, b, false),
            ApplyErrorKind::Forbidden { .. }
        ));
        assert!(matches!(
            classify(503, b, false),
            ApplyErrorKind::Transient { .. }
        ));
        assert!(matches!(
            classify(429, b, true),
            ApplyErrorKind::Transient { .. }
        ));
        assert!(matches!(
            classify(409, b, false),
            ApplyErrorKind::Other { .. }
        ));
        assert!(matches!(
            classify(404, b"not json", false),
            ApplyErrorKind::Other { .. }
        ));
        let typed = br#"{"kind":"Status","code":500,"message":"failed to create typed patch object (x): .spec.bogus: field not declared in schema"}"#;
        assert!(matches!(
            classify(500, typed, true),
            ApplyErrorKind::Invalid { .. }
        ));
    }

    #[test]
    fn paths_follow_group_scope_and_escape_names() {
        let r = |group: &str, namespaced| Resolved {
            resource: kube::discovery::ApiResource {
                group: group.into(),
                version: "v1".into(),
                api_version: if group.is_empty() {
                    "v1".into()
                } else {
                    format!("{group}/v1")
                },
                kind: "K".into(),
                plural: "ks".into(),
            },
            namespaced,
        };
        assert_eq!(
            object_path(&r("", true), Some("team"), "a"),
            "/api/v1/namespaces/team/ks/a"
        );
        assert_eq!(
            object_path(&r("rbac.authorization.k8s.io", false), None, "system:x"),
            "/apis/rbac.authorization.k8s.io/v1/ks/system:x"
        );
        assert_eq!(
            object_path(&r("", true), Some("t"), "a/../b?c"),
            "/api/v1/namespaces/t/ks/a%2F..%2Fb%3Fc"
        );
    }

    /// A CRD whose Established condition is False until a controller flips it: the wait
    /// ends when it flips, and times out when it never does.
    #[tokio::test]
    async fn waits_for_established_and_times_out() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cluster = devcluster::DevCluster::start(devcluster::Config::default())
            .await
            .expect("devcluster");
        let kc = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig()).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let client = kube::Client::try_from(cfg).expect("client");
        let send = |method: http::Method, path: &str, ct: &str, body: serde_json::Value| {
            let client = client.clone();
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .header(CONTENT_TYPE, ct)
                .body(Body::from(body.to_string().into_bytes()))
                .expect("request");
            async move {
                let res = client.send(req).await.expect("sent");
                assert!(res.status().is_success(), "{}", res.status());
            }
        };
        let crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        send(
            http::Method::POST,
            crd,
            "application/json",
            serde_json::json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "gizmos.example.com"},
                "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "gizmos", "kind": "Gizmo"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object",
                            "x-kubernetes-preserve-unknown-fields": true}}}]}
            }),
        )
        .await;
        let status = |value: &str| {
            serde_json::json!({"status": {"conditions": [
                {"type": "Established", "status": value, "reason": "Test", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
        };
        let status_path = format!("{crd}/gizmos.example.com/status");
        send(
            http::Method::PATCH,
            &status_path,
            "application/merge-patch+json",
            status("False"),
        )
        .await;

        let err = wait_established(&client, "gizmos.example.com", Duration::from_millis(300))
            .await
            .expect_err("never established");
        assert!(matches!(err, ApplyErrorKind::Timeout { .. }), "{err:?}");
        assert!(err.message().contains("gizmos.example.com"), "{err}");

        let flip = tokio::spawn(send(
            http::Method::PATCH,
            &status_path,
            "application/merge-patch+json",
            status("True"),
        ));
        let started = Instant::now();
        wait_established(&client, "gizmos.example.com", Duration::from_secs(10))
            .await
            .expect("established once flipped");
        assert!(started.elapsed() < Duration::from_secs(5));
        flip.await.expect("flipped");
        cluster.shutdown().await;
    }
}
