//! From a checkout to a desired set of objects: load every manifest under an app's
//! path, decrypt SOPS documents, unseal SealedSecrets (checking their scope against the
//! namespace they will land in), leave a place for Vault references, and default
//! namespaces. Any error stops the whole render: no partial result leaves this module.

use std::path::{Path, PathBuf};

use crate::crypto::age_keys::Identities;
use crate::sealed::{self, Scope};
use crate::sops::tree::{MapItem, Node, Scalar, Text};
use crate::sops::{self, DecryptOptions};

mod kustomize_render;
pub use kustomize_render::work_tree_of;

/// Bounds on untrusted input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_objects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 5 * 1024 * 1024,
            max_objects: 10_000,
        }
    }
}

/// Resolves `ref+vault://` references (the Vault stage plugs in here).
pub trait VaultResolver {
    /// Returns the value at `path#key`.
    fn resolve(&self, path: &str, key: &str) -> Result<sealed::SecretValue, String>;

    /// Every key at `path`, sorted by key (the whole-Secret form).
    fn resolve_all(&self, path: &str) -> Result<Vec<(String, sealed::SecretValue)>, String> {
        self.resolve(path, "").map(|_| Vec::new())
    }
}

/// On a Secret, fills `data` with every key of one Vault path (`secret/team-a/db`); keys
/// written in `data` or `stringData` win.
pub const VAULT_PATH_ANNOTATION: &str = "lockstep.dev/vault-path";

/// The resolver used when no Vault is configured: every reference is an error.
pub struct NoVault;

impl VaultResolver for NoVault {
    fn resolve(&self, path: &str, _key: &str) -> Result<sealed::SecretValue, String> {
        Err(format!(
            "Vault reference to {path:?} but no Vault is configured for this application"
        ))
    }
}

/// What a render needs.
pub struct RenderOptions<'a> {
    /// Identities for SOPS documents (the app's decryption keys).
    pub sops_identities: &'a Identities,
    /// The cluster's sealing identities, for SealedSecrets.
    pub sealing_identities: &'a Identities,
    /// Where namespaced objects without a namespace land.
    pub destination_namespace: Option<&'a str>,
    pub vault: &'a dyn VaultResolver,
    pub limits: Limits,
    /// The policies binding the app. Render asks them one thing only: whether Vault
    /// references outside a Secret's data may be resolved (the full check runs after
    /// render). `None` refuses such references, like a set with no grant.
    pub policies: Option<&'a crate::policy::PolicySet>,
}

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Path relative to the rendered directory.
    pub file: PathBuf,
    /// 1-based document index in the file.
    pub document: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.document)
    }
}

/// One object ready for apply.
#[derive(Debug, Clone)]
pub struct RenderedObject {
    pub doc: Node,
    pub origin: Origin,
    /// For Secrets made from a SealedSecret: its scope.
    pub sealed_scope: Option<Scope>,
    /// Vault paths its references read.
    pub vault_paths: Vec<String>,
    /// True when the object holds secret values (a Secret from SOPS, sealed or Vault).
    pub holds_secrets: bool,
}

impl RenderedObject {
    pub fn api_version(&self) -> &str {
        self.doc
            .get("apiVersion")
            .and_then(Node::as_str)
            .unwrap_or("")
    }
    pub fn kind(&self) -> &str {
        self.doc.get("kind").and_then(Node::as_str).unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.doc
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            .unwrap_or("")
    }
    pub fn namespace(&self) -> Option<&str> {
        self.doc
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Node::as_str)
    }
    /// The policy's view of this object.
    pub fn subject(&self) -> crate::policy::Subject<'_> {
        crate::policy::Subject {
            api_version: self.api_version(),
            kind: self.kind(),
            name: self.name(),
            namespace: self.namespace(),
            file: &self.origin.file,
            sealed_scope: self.sealed_scope,
            vault_paths: self.vault_paths.clone(),
        }
    }
}

/// A render failure, naming the file, the object and the key path where they apply.
#[derive(Debug, thiserror::Error)]
#[error("{}{}{}: {message}", file.display(), object.as_ref().map(|o| format!(": {o}")).unwrap_or_default(), key.as_ref().map(|k| format!(": {k}")).unwrap_or_default())]
pub struct RenderError {
    pub file: PathBuf,
    pub object: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

fn err(file: &Path, message: impl Into<String>) -> RenderError {
    RenderError {
        file: file.to_path_buf(),
        object: None,
        key: None,
        message: message.into(),
    }
}

/// Parser messages may quote the offending scalar between backticks (``cannot decode !!str
/// `VALUE` as a !!int``); that scalar can be a Secret value, so it is cut out of every
/// message that leaves the renderer or `check`.
pub fn scrub_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find('`') {
        let Some(len) = rest[start + 1..].find('`') else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str("`<redacted>`");
        rest = &rest[start + 1 + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The manifest files under `root`, sorted, refusing anything that leaves it.
pub fn manifest_files(root: &Path, limits: Limits) -> Result<Vec<PathBuf>, RenderError> {
    let canon_root = root.canonicalize().map_err(|e| err(root, e.to_string()))?;
    let mut files = Vec::new();
    walk(root, &canon_root, &mut files, limits)?;
    files.sort();
    Ok(files)
}

fn walk(
    dir: &Path,
    root: &Path,
    out: &mut Vec<PathBuf>,
    limits: Limits,
) -> Result<(), RenderError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(dir, e.to_string()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Resolve links and refuse anything that points outside the checkout.
        let real = path
            .canonicalize()
            .map_err(|e| err(&path, format!("cannot resolve: {e}")))?;
        if !real.starts_with(root) {
            return Err(err(
                &path,
                "is a link that leaves the checkout; refusing to read it",
            ));
        }
        let meta = std::fs::metadata(&real).map_err(|e| err(&path, e.to_string()))?;
        if meta.is_dir() {
            walk(&path, root, out, limits)?;
        } else if meta.is_file() && crate::manifest::is_manifest_file(&path) {
            if meta.len() > limits.max_file_bytes {
                return Err(err(
                    &path,
                    format!(
                        "is {} bytes, over the {} byte limit",
                        meta.len(),
                        limits.max_file_bytes
                    ),
                ));
            }
            out.push(path);
        }
    }
    Ok(())
}

/// Renders an application directory inside `checkout`: a directory holding a
/// kustomization is built as kustomize builds it (bases anywhere inside `checkout`);
/// anything else is rendered file by file.
pub fn render_app(
    checkout: &Path,
    dir: &Path,
    opts: &RenderOptions<'_>,
) -> Result<Vec<RenderedObject>, RenderError> {
    if crate::kustomize::kustomization_file(dir).is_some() {
        return kustomize_render::render(checkout, dir, opts);
    }
    render_dir(dir, opts)
}

/// Renders every manifest under `root` (or, when `root` holds a kustomization, its build,
/// with the enclosing Git work tree as the limit for bases).
pub fn render_dir(
    root: &Path,
    opts: &RenderOptions<'_>,
) -> Result<Vec<RenderedObject>, RenderError> {
    if crate::kustomize::kustomization_file(root).is_some() {
        let checkout = kustomize_render::work_tree_of(root);
        return kustomize_render::render(&checkout, root, opts);
    }
    let mut out = Vec::new();
    let files = manifest_files(root, opts.limits).map_err(|mut e| {
        // Name files relative to the rendered directory, like every other error here.
        if let Ok(rel) = e.file.strip_prefix(root)
            && !rel.as_os_str().is_empty()
        {
            e.file = rel.to_path_buf();
        }
        e
    })?;
    for file in files {
        let rel = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
        let bytes = std::fs::read(&file).map_err(|e| err(&rel, e.to_string()))?;
        render_file(&rel, &bytes, opts, &mut out)?;
        if out.len() > opts.limits.max_objects {
            return Err(err(
                &rel,
                format!(
                    "the application renders more than {} objects",
                    opts.limits.max_objects
                ),
            ));
        }
    }
    Ok(out)
}

/// Renders one file's documents into `out`; on an error `out` is unchanged.
pub fn render_file(
    rel: &Path,
    bytes: &[u8],
    opts: &RenderOptions<'_>,
    out: &mut Vec<RenderedObject>,
) -> Result<(), RenderError> {
    let manifest_err = |e: crate::manifest::ManifestError| RenderError {
        file: rel.to_path_buf(),
        object: e.document.map(|d| format!("document {d}")),
        key: e.key.map(|k| format!("key path {k}")),
        message: scrub_quoted(&e.message),
    };
    // A SOPS file: decrypt it whole (one data key and MAC for all its documents).
    let (docs, from_sops) = match crate::manifest::read_file(rel, bytes).map_err(manifest_err)? {
        crate::manifest::ManifestFile::Sops(enc) => {
            let f = sops::decrypt(
                bytes,
                enc.format,
                opts.sops_identities,
                &[],
                DecryptOptions::default(),
            )
            .map_err(|e| err(rel, scrub_quoted(&e.to_string())))?;
            (f.docs, true)
        }
        crate::manifest::ManifestFile::Plain(docs) => (docs, false),
    };
    let objects = crate::manifest::objects(docs).map_err(manifest_err)?;
    // Render into a local list: on an error `out` is left as it was (no partial file).
    let mut rendered = Vec::with_capacity(objects.len());
    for (document, doc) in objects {
        let origin = Origin {
            file: rel.to_path_buf(),
            document,
        };
        rendered.push(render_doc(doc, origin, from_sops, opts)?);
    }
    out.append(&mut rendered);
    Ok(())
}

fn set_namespace(doc: &mut Node, ns: &str) {
    let Some(items) = doc.as_map_mut() else {
        return;
    };
    for item in items.iter_mut() {
        if let MapItem::Entry(k, Node::Map(meta)) = item
            && k == "metadata"
        {
            if !meta
                .iter()
                .any(|m| matches!(m, MapItem::Entry(k, _) if k == "namespace"))
            {
                meta.push(MapItem::Entry("namespace".into(), Node::str(ns)));
            }
            return;
        }
    }
}

pub(crate) fn render_doc(
    mut doc: Node,
    origin: Origin,
    from_sops: bool,
    opts: &RenderOptions<'_>,
) -> Result<RenderedObject, RenderError> {
    let position = format!("document {}", origin.document);
    let kind = doc
        .get("kind")
        .and_then(Node::as_str)
        .unwrap_or("")
        .to_owned();
    let api = doc
        .get("apiVersion")
        .and_then(Node::as_str)
        .unwrap_or("")
        .to_owned();
    if kind.is_empty() || api.is_empty() {
        return Err(RenderError {
            file: origin.file,
            object: Some(position),
            key: None,
            message: "not a Kubernetes object (apiVersion and kind are required)".into(),
        });
    }
    let cluster_scoped = crate::policy::Subject {
        api_version: &api,
        kind: &kind,
        name: "",
        namespace: doc
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Node::as_str),
        file: &origin.file,
        sealed_scope: None,
        vault_paths: vec![],
    }
    .is_cluster_scoped();
    if let (false, Some(ns)) = (cluster_scoped, opts.destination_namespace) {
        set_namespace(&mut doc, ns);
    }
    if sealed::is_sealed_secret(&doc) {
        let s = sealed::sealed_from_node(&doc, &position).map_err(|e| RenderError {
            file: origin.file.clone(),
            object: Some(e.object.clone()),
            key: e.key.as_ref().map(|k| format!("key {k:?}")),
            message: e.cause.clone(),
        })?;
        let plain = sealed::unseal(&s, opts.sealing_identities).map_err(|e| RenderError {
            file: origin.file.clone(),
            object: Some(e.object.clone()),
            key: e.key.as_ref().map(|k| format!("key {k:?}")),
            message: e.cause.clone(),
        })?;
        return Ok(RenderedObject {
            doc: plain.to_node(),
            origin,
            sealed_scope: Some(s.scope),
            vault_paths: vec![],
            holds_secrets: true,
        });
    }
    let mut vault_paths = Vec::new();
    let is_secret = kind == "Secret" && api == "v1";
    // References are resolved only in a Secret's data and stringData; anywhere else one
    // would reach the cluster as literal text, or a tenant could route a value into a
    // ConfigMap. Refused, before any Vault call, unless the binding policies grant it.
    let outside = stray_vault_refs(&doc, &origin, is_secret, opts.policies)?;
    if !is_secret
        && doc
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(VAULT_PATH_ANNOTATION))
            .is_some()
    {
        return Err(RenderError {
            file: origin.file.clone(),
            object: Some(describe_doc(&doc, &origin)),
            key: Some(format!(
                "key path metadata.annotations.{VAULT_PATH_ANNOTATION}"
            )),
            message: "only a v1 Secret may take its data from Vault".into(),
        });
    }
    if is_secret {
        resolve_whole_secret(&mut doc, &origin, opts.vault, &mut vault_paths)?;
        resolve_vault_refs(&mut doc, &origin, opts.vault, &mut vault_paths)?;
    }
    if outside {
        resolve_refs_outside_secret_data(
            &mut doc,
            &origin,
            is_secret,
            opts.vault,
            &mut vault_paths,
        )?;
    }
    // Anything that came out of a SOPS file held encrypted values, whatever its kind; a
    // value read from Vault makes the object secret wherever it was written.
    let holds_secrets = from_sops || (kind == "Secret" && !vault_paths.is_empty()) || outside;
    Ok(RenderedObject {
        doc,
        origin,
        sealed_scope: None,
        vault_paths,
        holds_secrets,
    })
}

/// Checks strings that are `ref+vault://` references outside a Secret's data/stringData
/// (and its vault-path annotation). Returns whether there are any, once the policies
/// grant them for this kind; otherwise the first one is an error naming the key path (the
/// text itself is not repeated). In `metadata` (and `apiVersion`, `kind`) they are always
/// refused: names, labels and annotations are printed, logged and listed everywhere, and
/// redaction keeps them readable.
fn stray_vault_refs(
    doc: &Node,
    origin: &Origin,
    is_secret: bool,
    policies: Option<&crate::policy::PolicySet>,
) -> Result<bool, RenderError> {
    fn walk(node: &Node, path: &mut Vec<String>, found: &mut Option<String>) {
        if found.is_some() {
            return;
        }
        match node {
            Node::Map(items) => {
                for item in items {
                    if let MapItem::Entry(k, v) = item {
                        path.push(k.clone());
                        walk(v, path, found);
                        path.pop();
                    }
                }
            }
            Node::List(items) => {
                for (i, v) in items.iter().enumerate() {
                    if let Some(last) = path.last_mut() {
                        let saved = last.clone();
                        *last = format!("{saved}[{i}]");
                        walk(v, path, found);
                        if let Some(last) = path.last_mut() {
                            *last = saved;
                        }
                    } else {
                        path.push(format!("[{i}]"));
                        walk(v, path, found);
                        path.pop();
                    }
                }
            }
            // A whole value, as vals writes them; prose that mentions the syntax (a CRD's
            // description, say) is not a reference.
            Node::Scalar(Scalar::Str(t)) if t.as_str().trim_start().starts_with("ref+vault://") => {
                *found = Some(path.join("."));
            }
            _ => {}
        }
    }
    let Node::Map(items) = doc else {
        return Ok(false);
    };
    let refuse = |p: String, message: String| RenderError {
        file: origin.file.clone(),
        object: Some(describe_doc(doc, origin)),
        key: Some(format!("key path {p}")),
        message: format!("a Vault reference here is not allowed: {message}"),
    };
    let mut any = false;
    for item in items {
        let MapItem::Entry(k, v) = item else {
            continue;
        };
        if is_secret && (k == "data" || k == "stringData") {
            continue;
        }
        let mut found = None;
        let mut path = vec![k.clone()];
        walk(v, &mut path, &mut found);
        let Some(p) = found else {
            continue;
        };
        if matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
            return Err(refuse(
                p,
                "references are never resolved in metadata, apiVersion or kind".into(),
            ));
        }
        if !any {
            let api = doc.get("apiVersion").and_then(Node::as_str).unwrap_or("");
            let kind = doc.get("kind").and_then(Node::as_str).unwrap_or("");
            let group = api.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            policies
                .map(|ps| ps.vault_refs_outside_secrets(group, kind))
                .unwrap_or_else(|| {
                    crate::policy::PolicySet::default().vault_refs_outside_secrets(group, kind)
                })
                .map_err(|m| refuse(p, m))?;
        }
        any = true;
    }
    Ok(any)
}

/// For `lockstep check`: whether `doc`'s references outside a Secret's data are refused
/// (the render error), and else the Vault paths they read, for the `vaultPaths` check.
/// No Vault is called.
pub fn vault_refs_outside_secret_data(
    doc: &Node,
    origin: &Origin,
    policies: &crate::policy::PolicySet,
) -> Result<Vec<String>, RenderError> {
    struct Placeholder;
    impl VaultResolver for Placeholder {
        fn resolve(&self, _: &str, _: &str) -> Result<sealed::SecretValue, String> {
            Ok(sealed::SecretValue::new(Vec::new()))
        }
    }
    let is_secret = doc.get("kind").and_then(Node::as_str) == Some("Secret")
        && doc.get("apiVersion").and_then(Node::as_str) == Some("v1");
    let mut paths = Vec::new();
    if stray_vault_refs(doc, origin, is_secret, Some(policies))? {
        let mut copy = doc.clone();
        resolve_refs_outside_secret_data(&mut copy, origin, is_secret, &Placeholder, &mut paths)?;
    }
    Ok(paths)
}

/// Resolves every string that is a `ref+vault://` reference outside `metadata` (and outside
/// a Secret's data and stringData, done already), once the policies granted it. The value
/// goes from its zeroizing buffer straight into the object; the object is then marked as
/// holding secrets by the caller.
fn resolve_refs_outside_secret_data(
    doc: &mut Node,
    origin: &Origin,
    is_secret: bool,
    vault: &dyn VaultResolver,
    paths: &mut Vec<String>,
) -> Result<(), RenderError> {
    fn walk(
        node: &mut Node,
        key_path: &str,
        resolve: &mut dyn FnMut(&str, &mut Text) -> Result<(), RenderError>,
    ) -> Result<(), RenderError> {
        match node {
            Node::Map(items) => {
                for item in items.iter_mut() {
                    if let MapItem::Entry(k, v) = item {
                        walk(v, &format!("{key_path}.{k}"), resolve)?;
                    }
                }
            }
            Node::List(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(v, &format!("{key_path}[{i}]"), resolve)?;
                }
            }
            Node::Scalar(Scalar::Str(t)) if t.as_str().trim_start().starts_with("ref+vault://") => {
                resolve(key_path, t)?;
            }
            _ => {}
        }
        Ok(())
    }
    let object = describe_doc(doc, origin);
    let mut resolve = |key_path: &str, text: &mut Text| -> Result<(), RenderError> {
        let err = |m: String| RenderError {
            file: origin.file.clone(),
            object: Some(object.clone()),
            key: Some(format!("key path {key_path}")),
            message: m,
        };
        // Leading blanks would make the text a literal to Vault-unaware readers and a
        // reference to the detector: refuse rather than guess.
        let r = crate::vault::parse_reference(text.as_str())
            .unwrap_or_else(|| Err("a reference must start with ref+vault://".into()))
            .map_err(err)?;
        paths.push(r.path.clone());
        let value = vault.resolve(&r.path, &r.key).map_err(err)?;
        let plain = std::str::from_utf8(value.expose()).map_err(|_| {
            err(
                "the value read from Vault is not UTF-8 text; only a Secret's data takes bytes"
                    .into(),
            )
        })?;
        // Text zeroizes on drop: the value never sits in a plain String.
        *text = Text::from(plain);
        Ok(())
    };
    let Some(items) = doc.as_map_mut() else {
        return Ok(());
    };
    for item in items.iter_mut() {
        let MapItem::Entry(k, v) = item else {
            continue;
        };
        if matches!(k.as_str(), "metadata" | "apiVersion" | "kind")
            || (is_secret && (k == "data" || k == "stringData"))
        {
            continue;
        }
        walk(v, k, &mut resolve)?;
    }
    Ok(())
}

fn describe_doc(doc: &Node, origin: &Origin) -> String {
    let kind = doc.get("kind").and_then(Node::as_str).unwrap_or("object");
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or("");
    format!("{kind} {name:?} (document {})", origin.document)
}

/// The whole-Secret form: every key at the annotation's path into `data`.
fn resolve_whole_secret(
    doc: &mut Node,
    origin: &Origin,
    vault: &dyn VaultResolver,
    paths: &mut Vec<String>,
) -> Result<(), RenderError> {
    use base64::Engine;
    let Some(written) = doc
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(VAULT_PATH_ANNOTATION))
        .and_then(Node::as_str)
        .map(str::to_owned)
    else {
        return Ok(());
    };
    let err = |m: String| RenderError {
        file: origin.file.clone(),
        object: Some(describe_doc(doc, origin)),
        key: Some(format!(
            "key path metadata.annotations.{VAULT_PATH_ANNOTATION}"
        )),
        message: m,
    };
    if written.contains('#') {
        return Err(err("takes a Vault path without #KEY".into()));
    }
    let reference = crate::vault::parse_reference(&format!("ref+vault://{written}#*"))
        .unwrap_or_else(|| Err("not a Vault path".into()))
        .map_err(err)?;
    paths.push(reference.path.clone());
    let values = vault.resolve_all(&reference.path).map_err(err)?;
    let written_keys: Vec<String> = ["data", "stringData"]
        .iter()
        .filter_map(|f| doc.get(f))
        .filter_map(|n| match n {
            Node::Map(items) => Some(items),
            _ => None,
        })
        .flatten()
        .filter_map(|i| match i {
            MapItem::Entry(k, _) => Some(k.clone()),
            MapItem::Comment(_) => None,
        })
        .collect();
    let Some(items) = doc.as_map_mut() else {
        return Ok(());
    };
    if !items
        .iter()
        .any(|i| matches!(i, MapItem::Entry(k, Node::Map(_)) if k == "data"))
    {
        items.retain(|i| !matches!(i, MapItem::Entry(k, _) if k == "data"));
        items.push(MapItem::Entry("data".into(), Node::Map(Vec::new())));
    }
    for item in items.iter_mut() {
        if let MapItem::Entry(k, Node::Map(data)) = item
            && k == "data"
        {
            for (key, value) in values.iter() {
                if written_keys.contains(key) {
                    continue;
                }
                data.push(MapItem::Entry(
                    key.clone(),
                    Node::str(base64::engine::general_purpose::STANDARD.encode(value.expose())),
                ));
            }
        }
    }
    Ok(())
}

/// Parses `ref+vault://PATH#KEY` (vals syntax).
pub fn parse_vault_ref(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix("ref+vault://")?;
    let (path, key) = rest.split_once('#')?;
    (!path.is_empty() && !key.is_empty()).then_some((path, key))
}

fn resolve_vault_refs(
    doc: &mut Node,
    origin: &Origin,
    vault: &dyn VaultResolver,
    paths: &mut Vec<String>,
) -> Result<(), RenderError> {
    use base64::Engine;
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or("")
        .to_owned();
    let object = format!("Secret {name:?} (document {})", origin.document);
    let Some(items) = doc.as_map_mut() else {
        return Ok(());
    };
    for item in items.iter_mut() {
        let MapItem::Entry(field, Node::Map(values)) = item else {
            continue;
        };
        let is_data = field == "data";
        if !is_data && field != "stringData" {
            continue;
        }
        for v in values.iter_mut() {
            let MapItem::Entry(key, Node::Scalar(Scalar::Str(text))) = v else {
                continue;
            };
            let Some(parsed) = crate::vault::parse_reference(text.as_str()) else {
                continue;
            };
            let err = |m: String| RenderError {
                file: origin.file.clone(),
                object: Some(object.clone()),
                key: Some(format!("key path {field}.{key}")),
                message: m,
            };
            let r = parsed.map_err(err)?;
            paths.push(r.path.clone());
            let value = vault.resolve(&r.path, &r.key).map_err(err)?;
            let new = if is_data {
                base64::engine::general_purpose::STANDARD.encode(value.expose())
            } else {
                String::from_utf8_lossy(value.expose()).into_owned()
            };
            *text = new.into();
        }
    }
    Ok(())
}

/// Replaces every secret value with a redaction marker (what `render` prints without
/// `--reveal`): everything [`redact`] covers in a Secret, and for other objects that held
/// secrets (a SOPS-encrypted ConfigMap, say) every value outside `apiVersion`, `kind` and
/// `metadata`, plus the copy of the object kubectl keeps in an annotation.
pub fn redact_object(obj: &mut RenderedObject) {
    let is_secret = obj.doc.get("kind").and_then(Node::as_str) == Some("Secret");
    if is_secret || !obj.holds_secrets {
        redact(&mut obj.doc);
        return;
    }
    if let Some(items) = obj.doc.as_map_mut() {
        for item in items.iter_mut() {
            if let MapItem::Entry(k, v) = item {
                match k.as_str() {
                    "apiVersion" | "kind" => {}
                    "metadata" => redact_last_applied(v),
                    _ => redact_leaves(v),
                }
            }
        }
    }
}

fn redact_leaves(node: &mut Node) {
    match node {
        Node::Map(items) => {
            for item in items.iter_mut() {
                if let MapItem::Entry(_, v) = item {
                    redact_leaves(v);
                }
            }
        }
        Node::List(items) => items.iter_mut().for_each(redact_leaves),
        Node::Scalar(Scalar::Null) | Node::Comment(_) => {}
        Node::Scalar(_) => *node = Node::str("<redacted>"),
    }
}

/// `kubectl apply` keeps the whole object it applied, values included, as JSON in this
/// annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn redact_last_applied(metadata: &mut Node) {
    let Some(items) = metadata.as_map_mut() else {
        return;
    };
    for item in items.iter_mut() {
        if let MapItem::Entry(k, Node::Map(annotations)) = item
            && k == "annotations"
        {
            for a in annotations.iter_mut() {
                if let MapItem::Entry(name, v) = a
                    && name == LAST_APPLIED
                {
                    redact_leaves(v);
                }
            }
        }
    }
}

/// Replaces every value a Secret can hold with a redaction marker: `data` and
/// `stringData` (whatever their shape), the last-applied-configuration annotation, and
/// any other field but `apiVersion`, `kind`, `metadata`, `type` and `immutable` (the
/// API server drops unknown fields, but the printed copy would still show them).
pub fn redact(doc: &mut Node) {
    if doc.get("kind").and_then(Node::as_str) != Some("Secret") {
        return;
    }
    let Some(items) = doc.as_map_mut() else {
        return;
    };
    for item in items.iter_mut() {
        if let MapItem::Entry(field, v) = item {
            match field.as_str() {
                "apiVersion" | "kind" | "type" | "immutable" => {}
                "metadata" => redact_last_applied(v),
                _ => redact_leaves(v),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::age_keys::{self, AgeRecipient};
    use crate::sops::Format;

    fn ids() -> (Identities, String) {
        let k = age_keys::generate();
        let mut ids = Identities::default();
        ids.add_key_file_text(&age_keys::key_file_text(&k, "t"), "t")
            .unwrap();
        (ids, k.recipient)
    }

    #[test]
    fn renders_plain_sops_and_sealed_documents_in_order() {
        let (sops_ids, sops_r) = ids();
        let (seal_ids, seal_r) = ids();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(
            d.path().join("a.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n---\n",
        )
        .unwrap();
        let secret = b"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: canary-r3nd}\n";
        let settings = sops::EncryptSettings {
            groups: vec![vec![AgeRecipient::parse(&sops_r).unwrap()]],
            selection: Some(sops::metadata::Selection::EncryptedRegex(
                "^(data|stringData)$".into(),
            )),
            ..Default::default()
        };
        let enc = sops::encrypt(
            secret,
            Format::Yaml,
            Format::Yaml,
            &settings,
            sops::Layout::default(),
        )
        .unwrap();
        std::fs::write(d.path().join("sub/secret.yaml"), enc).unwrap();
        let plain = sealed::secret_from_node(
            &crate::manifest::load_documents(b"apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: team-a}\nstringData: {p: x}\n").unwrap()[0],
            "d",
        )
        .unwrap();
        let s = sealed::seal(
            &plain,
            &[AgeRecipient::parse(&seal_r).unwrap()],
            Scope::Strict,
        )
        .unwrap();
        std::fs::write(
            d.path().join("sub/sealed.yaml"),
            crate::manifest::emit_documents(&[s.to_node()]),
        )
        .unwrap();
        std::fs::write(d.path().join("notes.txt"), "ignored").unwrap();

        let opts = RenderOptions {
            sops_identities: &sops_ids,
            sealing_identities: &seal_ids,
            destination_namespace: Some("team-a"),
            vault: &NoVault,
            limits: Limits::default(),
            policies: None,
        };
        let objs = render_dir(d.path(), &opts).unwrap();
        let names: Vec<_> = objs
            .iter()
            .map(|o| {
                (
                    o.kind().to_owned(),
                    o.name().to_owned(),
                    o.namespace().map(str::to_owned),
                )
            })
            .collect();
        let team_a = Some("team-a".to_string());
        assert_eq!(
            names,
            vec![
                ("ConfigMap".to_string(), "c".to_string(), team_a.clone()),
                ("Secret".to_string(), "db".to_string(), team_a.clone()),
                ("Secret".to_string(), "s".to_string(), team_a),
            ]
        );
        assert_eq!(objs[1].sealed_scope, Some(Scope::Strict));
        assert!(objs[2].holds_secrets);
        assert!(!format!("{objs:?}").contains("canary"));
    }

    #[test]
    fn a_failed_file_leaves_no_partial_result_and_no_quoted_value() {
        let none = Identities::default();
        let opts = RenderOptions {
            sops_identities: &none,
            sealing_identities: &none,
            destination_namespace: None,
            vault: &NoVault,
            limits: Limits::default(),
            policies: None,
        };
        let mut out = Vec::new();
        render_file(
            Path::new("ok.yaml"),
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
            &opts,
            &mut out,
        )
        .unwrap();
        // The first document renders, the second is not an object: nothing is added.
        let e = render_file(
            Path::new("bad.yaml"),
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\nx: 1\n",
            &opts,
            &mut out,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("bad.yaml: document 2: "), "{e}");
        assert_eq!(out.len(), 1);
        // A parser message quoting a Secret value does not carry it out.
        let e = render_file(
            Path::new("tag.yaml"),
            b"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData:\n  p: !!int canary-q7\n",
            &opts,
            &mut out,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tag.yaml") && e.contains("as a !!int"), "{e}");
        assert!(!e.contains("canary"), "{e}");
        assert_eq!(scrub_quoted("a `b` c `d"), "a `<redacted>` c `d");
    }

    #[test]
    fn sops_encrypted_objects_of_any_kind_are_redacted() {
        let mut o = RenderedObject {
            doc: crate::manifest::load_documents(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: canary-cm, n: [1, {x: y}]}\n").unwrap().remove(0),
            origin: Origin { file: "c.yaml".into(), document: 1 },
            sealed_scope: None,
            vault_paths: vec![],
            holds_secrets: true,
        };
        redact_object(&mut o);
        let text = crate::manifest::emit_documents(&[o.doc.clone()]);
        assert!(
            !text.contains("canary") && text.contains("name: c"),
            "{text}"
        );
        assert!(!text.contains("x: y"), "{text}");
    }

    #[test]
    fn a_sops_file_is_held_to_the_manifest_rules_when_rendered() {
        let (ids, r) = ids();
        let settings = sops::EncryptSettings {
            groups: vec![vec![AgeRecipient::parse(&r).unwrap()]],
            selection: Some(sops::metadata::Selection::EncryptedRegex(
                "^(data|stringData)$".into(),
            )),
            ..Default::default()
        };
        // sops' reading checks duplicate keys in the first document only, so this
        // encrypts and decrypts as sops would; rendering it must still fail.
        let plain = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: team-a\n  namespace: kube-system\nstringData: {p: canary-sd2}\n";
        let enc = sops::encrypt(
            plain,
            Format::Yaml,
            Format::Yaml,
            &settings,
            sops::Layout::default(),
        )
        .unwrap();
        assert!(sops::decrypt(&enc, Format::Yaml, &ids, &[], DecryptOptions::default()).is_ok());
        let opts = RenderOptions {
            sops_identities: &ids,
            sealing_identities: &ids,
            destination_namespace: None,
            vault: &NoVault,
            limits: Limits::default(),
            policies: None,
        };
        let mut out = Vec::new();
        let e = render_file(Path::new("s.enc.yaml"), &enc, &opts, &mut out)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("s.enc.yaml: ")
                && e.contains("mapping key \"namespace\" already defined at line"),
            "{e}"
        );
        assert!(out.is_empty() && !e.contains("canary"), "{e}");
    }

    #[test]
    fn every_place_a_secret_value_can_hide_is_redacted() {
        let none = Identities::default();
        let opts = RenderOptions {
            sops_identities: &none,
            sealing_identities: &none,
            destination_namespace: Some("team-a"),
            vault: &NoVault,
            limits: Limits::default(),
            policies: None,
        };
        let last_applied = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"stringData":{"p":"canary-la1"}}"#;
        let text = format!(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: s\n    annotations:\n      kubectl.kubernetes.io/last-applied-configuration: '{last_applied}'\n      team: payments\n  type: Opaque\n  data: {{a: Y2FuYXJ5LWQ=}}\n  stringData: canary-sd1\n  strigData: {{p: canary-typo1}}\n- apiVersion: v1\n  kind: List\n  items:\n  - {{apiVersion: v1, kind: Secret, metadata: {{name: t}}, stringData: {{p: canary-nested1}}}}\n"
        );
        let mut out = Vec::new();
        render_file(Path::new("l.yaml"), text.as_bytes(), &opts, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        for o in &mut out {
            redact_object(o);
        }
        let docs: Vec<_> = out.iter().map(|o| o.doc.clone()).collect();
        let printed = crate::manifest::emit_documents(&docs);
        assert!(
            !printed.contains("canary") && !printed.contains("Y2FuYXJ5"),
            "{printed}"
        );
        // What is not a value stays readable.
        for kept in [
            "team: payments",
            "type: Opaque",
            "name: t",
            "namespace: team-a",
        ] {
            assert!(printed.contains(kept), "{kept}: {printed}");
        }
    }

    #[test]
    fn a_sealed_secret_landing_in_another_namespace_fails_the_render() {
        let (seal_ids, seal_r) = ids();
        let d = tempfile::tempdir().unwrap();
        let plain = sealed::secret_from_node(
            &crate::manifest::load_documents(b"apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: team-a}\nstringData: {p: x}\n").unwrap()[0],
            "d",
        )
        .unwrap();
        let mut s = sealed::seal(
            &plain,
            &[AgeRecipient::parse(&seal_r).unwrap()],
            Scope::Strict,
        )
        .unwrap();
        s.namespace = None; // will be defaulted to the destination
        std::fs::write(
            d.path().join("sealed.yaml"),
            crate::manifest::emit_documents(&[s.to_node()]),
        )
        .unwrap();
        let none = Identities::default();
        let opts = RenderOptions {
            sops_identities: &none,
            sealing_identities: &seal_ids,
            destination_namespace: Some("team-b"),
            vault: &NoVault,
            limits: Limits::default(),
            policies: None,
        };
        let e = render_dir(d.path(), &opts).unwrap_err().to_string();
        assert!(
            e.contains("sealed.yaml: SealedSecret team-b/db: key \"p\": value was sealed for namespace \"team-a\""),
            "{e}"
        );
    }

    #[test]
    fn vault_references_outside_secret_data_are_refused_before_any_call() {
        struct Counting(std::cell::Cell<u32>);
        impl VaultResolver for Counting {
            fn resolve(&self, _: &str, _: &str) -> Result<sealed::SecretValue, String> {
                self.0.set(self.0.get() + 1);
                Ok(sealed::SecretValue::new(b"v".to_vec()))
            }
        }
        let none = Identities::default();
        let vault = Counting(std::cell::Cell::new(0));
        let opts = RenderOptions {
            sops_identities: &none,
            sealing_identities: &none,
            destination_namespace: None,
            vault: &vault,
            limits: Limits::default(),
            policies: None,
        };
        for (doc, object, path) in [
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {x: 'ref+vault://secret/a#k'}\n",
                "ConfigMap \"cm\"",
                "key path data.x",
            ),
            (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        env:\n        - {name: A, value: a}\n        - {name: B, value: ' ref+vault://secret/a#k'}\n",
                "Deployment \"web\"",
                "key path spec.template.spec.containers[0].env[1].value",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: s, annotations: {note: 'ref+vault://secret/a#k'}}\nstringData: {p: 'ref+vault://secret/a#k'}\n",
                "Secret \"s\"",
                "key path metadata.annotations.note",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm2, annotations: {lockstep.dev/vault-path: secret/a}}\n",
                "ConfigMap \"cm2\"",
                "lockstep.dev/vault-path",
            ),
        ] {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("o.yaml"), doc).unwrap();
            let e = render_dir(d.path(), &opts).unwrap_err().to_string();
            assert!(
                e.contains("o.yaml") && e.contains(object) && e.contains(path),
                "{e}"
            );
            assert!(
                !e.contains("secret/a#k"),
                "the reference is not repeated: {e}"
            );
        }
        assert_eq!(vault.0.get(), 0, "refused before any Vault call");
    }

    #[test]
    fn a_policy_grants_vault_references_outside_secret_data() {
        struct Canary(std::cell::RefCell<Vec<String>>);
        impl VaultResolver for Canary {
            fn resolve(&self, path: &str, key: &str) -> Result<sealed::SecretValue, String> {
                self.0.borrow_mut().push(format!("{path}#{key}"));
                Ok(sealed::SecretValue::new(
                    format!("canary-{key}-7f3a").into_bytes(),
                ))
            }
        }
        let policies = |yamls: &[&str]| crate::policy::PolicySet {
            policies: yamls
                .iter()
                .map(|y| {
                    let docs = crate::manifest::load_documents(y.as_bytes()).unwrap();
                    crate::policy::Policy::from_node(&docs[0], Path::new("policies/p.yaml"))
                        .unwrap()
                })
                .collect(),
        };
        let grant = "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: grant}\nspec:\n  vaultReferences: {outsideSecrets: true}\n";
        let grant_cm_only = "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: cm-only}\nspec:\n  kinds: {allow: [/ConfigMap]}\n  vaultReferences: {outsideSecrets: true}\n";
        let forbid = "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: strict}\nspec:\n  vaultReferences: {outsideSecrets: false}\n";
        let silent = "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: silent}\nspec:\n  vaultPaths: [secret/]\n";
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata:\n  plain: text\n  dsn: 'ref+vault://secret/team-a/db#dsn'\n";
        let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        env:\n        - {name: B, value: 'ref+vault://secret/team-a/api#token'}\n";
        let in_meta = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, labels: {x: 'ref+vault://secret/team-a/db#dsn'}}\ndata: {a: 'ref+vault://secret/team-a/db#dsn'}\n";
        let none = Identities::default();
        let run = |set: Option<&crate::policy::PolicySet>, doc: &str| {
            let vault = Canary(Default::default());
            let opts = RenderOptions {
                sops_identities: &none,
                sealing_identities: &none,
                destination_namespace: Some("team-a"),
                vault: &vault,
                limits: Limits::default(),
                policies: set,
            };
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("o.yaml"), doc).unwrap();
            let out = render_dir(d.path(), &opts).map_err(|e| e.to_string());
            (out, vault.0.into_inner())
        };

        // Refused by default: no policies, or policies without an opinion.
        for set in [None, Some(&policies(&[silent]))] {
            let (out, calls) = run(set, cm);
            let e = out.unwrap_err();
            assert!(
                e.contains("o.yaml")
                    && e.contains("ConfigMap \"cm\"")
                    && e.contains("key path data.dsn")
                    && e.contains("spec.vaultReferences.outsideSecrets: true"),
                "{e}"
            );
            assert!(calls.is_empty(), "refused before any Vault call");
        }

        // Granted: every reference outside metadata is resolved, the object holds secrets.
        let (out, calls) = run(Some(&policies(&[silent, grant])), cm);
        let mut objs = out.unwrap();
        assert_eq!(calls, ["secret/team-a/db#dsn"]);
        assert!(objs[0].holds_secrets);
        assert_eq!(objs[0].vault_paths, ["secret/team-a/db"]);
        let data = objs[0].doc.get("data").unwrap();
        assert_eq!(
            data.get("dsn").and_then(Node::as_str),
            Some("canary-dsn-7f3a")
        );
        assert_eq!(data.get("plain").and_then(Node::as_str), Some("text"));
        redact_object(&mut objs[0]);
        let shown = crate::manifest::emit_documents(&[objs[0].doc.clone()]);
        assert!(!shown.contains("canary"), "{shown}");
        let (out, _) = run(Some(&policies(&[grant])), deploy);
        let objs = out.unwrap();
        let text = crate::manifest::emit_documents(&[objs[0].doc.clone()]);
        assert!(
            text.contains("canary-token-7f3a") && objs[0].holds_secrets,
            "{text}"
        );

        // A second binding policy that forbids it wins, whatever the order.
        for set in [policies(&[grant, forbid]), policies(&[forbid, grant])] {
            let (out, calls) = run(Some(&set), cm);
            let e = out.unwrap_err();
            assert!(
                e.contains("policy \"strict\" forbids") && e.contains("key path data.dsn"),
                "{e}"
            );
            assert!(calls.is_empty());
        }

        // The grant covers only kinds the granting policy lets through.
        let (out, calls) = run(Some(&policies(&[grant_cm_only])), deploy);
        let e = out.unwrap_err();
        assert!(
            e.contains("Deployment \"web\"")
                && e.contains("key path spec.template.spec.containers[0].env[0].value")
                && e.contains("apps/Deployment"),
            "{e}"
        );
        assert!(calls.is_empty());
        assert!(run(Some(&policies(&[grant_cm_only])), cm).0.is_ok());

        // Never in metadata, where redaction keeps values readable.
        let (out, calls) = run(Some(&policies(&[grant])), in_meta);
        let e = out.unwrap_err();
        assert!(
            e.contains("key path metadata.labels.x") && e.contains("never"),
            "{e}"
        );
        assert!(calls.is_empty());
        assert!(!e.contains("canary"));
    }

    #[test]
    fn a_vault_path_annotation_fills_a_secret_with_every_key() {
        struct Fixed;
        impl VaultResolver for Fixed {
            fn resolve(&self, _: &str, _: &str) -> Result<sealed::SecretValue, String> {
                Err("not used".into())
            }
            fn resolve_all(
                &self,
                path: &str,
            ) -> Result<Vec<(String, sealed::SecretValue)>, String> {
                assert_eq!(path, "secret/team-a/db");
                Ok(vec![
                    ("password".into(), sealed::SecretValue::new(b"pw".to_vec())),
                    ("user".into(), sealed::SecretValue::new(b"app".to_vec())),
                ])
            }
        }
        let none = Identities::default();
        let opts = RenderOptions {
            sops_identities: &none,
            sealing_identities: &none,
            destination_namespace: None,
            vault: &Fixed,
            limits: Limits::default(),
            policies: None,
        };
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("s.yaml"),
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  annotations: {lockstep.dev/vault-path: /secret/team-a/db/}\nstringData: {user: mine}\n",
        )
        .unwrap();
        let out = render_dir(d.path(), &opts).unwrap();
        assert_eq!(out[0].vault_paths, vec!["secret/team-a/db".to_owned()]);
        assert!(out[0].holds_secrets);
        let data = out[0].doc.get("data").unwrap();
        assert_eq!(data.get("password").and_then(Node::as_str), Some("cHc="));
        assert!(data.get("user").is_none(), "a written key wins");
        for bad in ["secret", "secret/../x", "secret/a#k"] {
            std::fs::write(
                d.path().join("s.yaml"),
                format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  annotations: {{lockstep.dev/vault-path: '{bad}'}}\n"),
            )
            .unwrap();
            let e = render_dir(d.path(), &opts).unwrap_err().to_string();
            assert!(
                e.contains("metadata.annotations.lockstep.dev/vault-path"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn links_leaving_the_checkout_oversized_files_and_vault_refs_are_errors() {
        let none = Identities::default();
        let opts = |limits| RenderOptions {
            sops_identities: &none,
            sealing_identities: &none,
            destination_namespace: None,
            vault: &NoVault,
            limits,
            policies: None,
        };
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(
            outside.path().join("x.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        )
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("x.yaml"), d.path().join("link.yaml"))
            .unwrap();
        let e = render_dir(d.path(), &opts(Limits::default()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("leaves the checkout"), "{e}");

        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("big.yaml"), "a: b\n".repeat(100)).unwrap();
        let e = render_dir(
            d.path(),
            &opts(Limits {
                max_file_bytes: 10,
                max_objects: 5,
            }),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("over the 10 byte limit"), "{e}");

        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("s.yaml"), "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {p: 'ref+vault://secret/data/a#pw'}\n").unwrap();
        let e = render_dir(d.path(), &opts(Limits::default()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s.yaml") && e.contains("stringData.p") && e.contains("no Vault"),
            "{e}"
        );

        let d = tempfile::tempdir().unwrap();
        let many: String = (0..7)
            .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n"))
            .collect();
        std::fs::write(d.path().join("m.yaml"), many).unwrap();
        let e = render_dir(
            d.path(),
            &opts(Limits {
                max_file_bytes: 1 << 20,
                max_objects: 5,
            }),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("more than 5 objects"), "{e}");
    }
}
