//! Native kustomize v5 builds: a directory holding a `kustomization.yaml` (or `.yml`, or
//! `Kustomization`) becomes the list of objects `kustomize build` prints, in its order.
//!
//! Everything happens in memory on `serde_json::Value`s. Untrusted input is bounded: files are
//! read only inside the checkout root (and single files only inside the kustomization's own
//! directory, kustomize's load restrictor), the number of objects and bytes is capped, and
//! remote bases, Helm charts, plugins and cycles are refused with an error naming the
//! kustomization file and the field.
//!
//! Secret material never sits in a `Value`: SOPS resources stay encrypted through the build
//! and are decrypted afterwards by the caller (see [`crate::render`]); secretGenerator values
//! are held in a zeroizing side table and stand in the tree as opaque placeholders until
//! [`Built::into_nodes`] puts them back into zeroizing [`Node`]s.

mod crds;
mod generate;
mod nameref;
mod transform;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::sops::tree::{MapItem, Node, Scalar, Text};

/// The file names kustomize looks for, in its order.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The kustomization file in `dir`, if there is one.
pub fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// A build failure: the file (kustomization or resource), the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), field.as_ref().map(|f| format!(": {f}")).unwrap_or_default())]
pub struct KustomizeError {
    pub file: PathBuf,
    pub field: Option<String>,
    pub message: String,
}

fn kerr(file: &Path, field: Option<&str>, message: impl Into<String>) -> KustomizeError {
    KustomizeError {
        file: file.to_path_buf(),
        field: field.map(str::to_owned),
        message: message.into(),
    }
}

/// Bounds on one build.
#[derive(Debug, Clone, Copy)]
pub struct BuildLimits {
    pub max_file_bytes: u64,
    pub max_objects: usize,
    /// Bound on the compact JSON size of the whole output (and of any patch result).
    pub max_total_bytes: usize,
    /// Bound on the number of kustomizations one build may visit.
    pub max_kustomizations: usize,
}

impl Default for BuildLimits {
    fn default() -> Self {
        BuildLimits {
            max_file_bytes: 5 * 1024 * 1024,
            max_objects: 10_000,
            max_total_bytes: 64 * 1024 * 1024,
            max_kustomizations: 1_000,
        }
    }
}

/// Opens SOPS-encrypted generator inputs (env or data files): returns the plaintext bytes.
/// The renderer plugs in its identities here; `None` refuses encrypted inputs.
pub trait SopsOpener {
    fn open(&self, file: &Path, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, String>;
}

/// What a build needs.
pub struct BuildOptions<'a> {
    /// Nothing outside this directory is read (the checkout, or `--root`).
    pub root: &'a Path,
    pub limits: BuildLimits,
    pub sops: Option<&'a dyn SopsOpener>,
}

/// One object of the output.
#[derive(Debug, Clone)]
pub struct BuiltObject {
    pub value: Value,
    /// The file the object came from (relative to the build root), or the kustomization
    /// file of the generator that made it.
    pub origin: PathBuf,
    /// The object came from a SOPS file: its values are still encrypted; `sops` holds the
    /// index of that file in [`Built::sops_files`].
    pub sops: Option<usize>,
    /// Made by a secretGenerator: holds placeholders for secret values.
    pub generated_secret: bool,
    /// Set when a kustomization gave the object another name or namespace than its file.
    pub renamed: Option<Rename>,
}

/// An object's name and namespace as its file wrote them, and the last kustomization
/// that changed either (namespace, namePrefix, nameSuffix or a patch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub name: String,
    pub namespace: Option<String>,
    pub by: PathBuf,
}

/// A SOPS resource file met during the build (still encrypted).
pub struct SopsFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// The result of a build.
pub struct Built {
    pub objects: Vec<BuiltObject>,
    pub sops_files: Vec<SopsFile>,
    secrets: SecretTable,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Built({} objects, <redacted>)", self.objects.len())
    }
}

impl Built {
    /// The objects as plain values; generated secret values are put back (tests and
    /// comparisons only: the values are not zeroized).
    pub fn values_for_comparison(&self) -> Vec<Value> {
        self.objects
            .iter()
            .map(|o| {
                let mut v = o.value.clone();
                if o.generated_secret {
                    self.secrets.reveal_in_value(&mut v);
                }
                v
            })
            .collect()
    }

    /// Converts one object to a [`Node`], with generated secret values restored inside
    /// zeroizing strings.
    pub fn to_node(&self, obj: &BuiltObject) -> Node {
        value_to_node(&obj.value, &|s| {
            if obj.generated_secret {
                self.secrets.lookup(s).map(str::to_owned)
            } else {
                None
            }
        })
    }
}

/// Secret values of generated Secrets (base64 text), out of the JSON tree.
#[derive(Default)]
pub(crate) struct SecretTable {
    nonce: String,
    values: Vec<Zeroizing<String>>,
}

impl SecretTable {
    fn new() -> Self {
        let mut b = [0u8; 12];
        // A per-build nonce: a placeholder cannot be forged by a value in the checkout.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        SecretTable {
            nonce: b.iter().map(|x| format!("{x:02x}")).collect(),
            values: Vec::new(),
        }
    }
    pub(crate) fn put(&mut self, v: Zeroizing<String>) -> String {
        self.values.push(v);
        format!(
            "\u{0}lockstep-secret:{}:{}",
            self.nonce,
            self.values.len() - 1
        )
    }
    pub(crate) fn lookup(&self, s: &str) -> Option<&str> {
        let rest = s.strip_prefix("\u{0}lockstep-secret:")?;
        let (nonce, idx) = rest.split_once(':')?;
        if nonce != self.nonce {
            return None;
        }
        self.values
            .get(idx.parse::<usize>().ok()?)
            .map(|z| z.as_str())
    }
    fn reveal_in_value(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Some(r) = self.lookup(s) {
                    *s = r.to_owned();
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.reveal_in_value(x)),
            Value::Object(m) => m.values_mut().for_each(|x| self.reveal_in_value(x)),
            _ => {}
        }
    }
}

/// Builds the kustomization in `dir`.
pub fn build(dir: &Path, opts: &BuildOptions<'_>) -> Result<Built, KustomizeError> {
    let root = opts
        .root
        .canonicalize()
        .map_err(|e| kerr(opts.root, None, format!("cannot resolve the root: {e}")))?;
    let mut b = Builder {
        root,
        display_root: opts.root.to_path_buf(),
        opts,
        stack: Vec::new(),
        visited: 0,
        sops_files: Vec::new(),
        secrets: SecretTable::new(),
        spent: std::cell::Cell::new(0),
        crd_refs: Vec::new(),
    };
    let dir_real = b.resolve_dir(dir, dir, None)?;
    let mut rs = b.build_dir(&dir_real)?;
    // Last, and only at the top (as kustomize): hash suffixes, then every reference to a
    // renamed object follows it.
    generate::add_hashes(&mut rs, &b.secrets);
    nameref::fix_references(&mut rs, &b.crd_refs);
    transform::legacy_sort(&mut rs);
    let objects = rs
        .into_iter()
        .map(|r| {
            let mut value = r.obj;
            strip_internal(&mut value);
            BuiltObject {
                value,
                origin: r.origin,
                sops: r.sops,
                generated_secret: r.generated_secret,
                renamed: r
                    .written
                    .zip(r.renamed_by)
                    .map(|((name, namespace), by)| Rename {
                        name,
                        namespace,
                        by,
                    }),
            }
        })
        .collect::<Vec<_>>();
    let size: usize = objects.iter().map(|o| json_size(&o.value)).sum();
    if size > opts.limits.max_total_bytes {
        return Err(kerr(
            dir,
            None,
            format!(
                "the build output is over {} bytes",
                opts.limits.max_total_bytes
            ),
        ));
    }
    Ok(Built {
        objects,
        sops_files: b.sops_files,
        secrets: b.secrets,
    })
}

fn strip_internal(v: &mut Value) {
    let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for key in ["labels", "annotations"] {
        if let Some(Value::Object(m)) = meta.get(key)
            && m.is_empty()
        {
            meta.shift_remove(key);
        }
    }
}

pub(crate) fn json_size(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| json_size(x) + 1).sum::<usize>(),
        Value::Object(m) => {
            2 + m
                .iter()
                .map(|(k, x)| k.len() + 4 + json_size(x))
                .sum::<usize>()
        }
    }
}

/// One resource during the build.
#[derive(Debug, Clone)]
pub(crate) struct Res {
    pub obj: Value,
    /// Every name the object had before its current one (oldest first).
    pub prev_names: Vec<String>,
    /// Namespaces it had before its current one.
    pub prev_namespaces: Vec<Option<String>>,
    pub origin: PathBuf,
    pub sops: Option<usize>,
    pub generated_secret: bool,
    /// Generated and due a hash suffix at the end.
    pub needs_hash: bool,
    pub generated: bool,
    /// Name and namespace as written, once a kustomization changed them.
    pub written: Option<(String, Option<String>)>,
    /// The last kustomization file that changed them.
    pub renamed_by: Option<PathBuf>,
}

impl Res {
    pub fn kind(&self) -> &str {
        self.obj.get("kind").and_then(Value::as_str).unwrap_or("")
    }
    pub fn api_version(&self) -> &str {
        self.obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn group(&self) -> &str {
        match self.api_version().rsplit_once('/') {
            Some((g, _)) => g,
            None => "",
        }
    }
    pub fn version(&self) -> &str {
        match self.api_version().rsplit_once('/') {
            Some((_, v)) => v,
            None => self.api_version(),
        }
    }
    pub fn name(&self) -> &str {
        self.obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn namespace(&self) -> Option<&str> {
        self.obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }
    /// kustomize's "any id" match: the current or any earlier name.
    pub fn has_name(&self, n: &str) -> bool {
        self.name() == n || self.prev_names.iter().any(|p| p == n)
    }
    pub fn set_name(&mut self, n: String) {
        let old = self.name().to_owned();
        if old == n {
            return;
        }
        self.prev_names.push(old);
        if let Some(m) = meta_mut(&mut self.obj) {
            m.insert("name".into(), Value::String(n));
        }
    }
    pub fn set_namespace(&mut self, ns: &str) {
        let old = self.namespace().map(str::to_owned);
        if old.as_deref() == Some(ns) {
            return;
        }
        self.prev_namespaces.push(old);
        if let Some(m) = meta_mut(&mut self.obj) {
            m.insert("namespace".into(), Value::String(ns.to_owned()));
        }
    }
}

pub(crate) fn meta_mut(v: &mut Value) -> Option<&mut Map<String, Value>> {
    let o = v.as_object_mut()?;
    if !o.get("metadata").is_some_and(Value::is_object) {
        o.insert("metadata".into(), Value::Object(Map::new()));
    }
    o.get_mut("metadata").and_then(Value::as_object_mut)
}

/// Kinds that live outside namespaces (kustomize's built-in knowledge).
pub(crate) fn is_cluster_scoped(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        (
            "",
            "Namespace" | "Node" | "PersistentVolume" | "ComponentStatus"
        ) | (
            "rbac.authorization.k8s.io",
            "ClusterRole" | "ClusterRoleBinding"
        ) | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | ("apiregistration.k8s.io", "APIService")
            | (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration"
                    | "ValidatingWebhookConfiguration"
                    | "ValidatingAdmissionPolicy"
                    | "ValidatingAdmissionPolicyBinding"
            )
            | (
                "storage.k8s.io",
                "StorageClass" | "CSIDriver" | "CSINode" | "VolumeAttachment"
            )
            | ("scheduling.k8s.io", "PriorityClass")
            | ("networking.k8s.io", "IngressClass")
            | ("node.k8s.io", "RuntimeClass")
            | ("policy", "PodSecurityPolicy")
            | ("certificates.k8s.io", "CertificateSigningRequest")
    )
}

struct Builder<'a> {
    root: PathBuf,
    display_root: PathBuf,
    opts: &'a BuildOptions<'a>,
    /// Directories being built, for cycle detection.
    stack: Vec<PathBuf>,
    visited: usize,
    sops_files: Vec<SopsFile>,
    secrets: SecretTable,
    /// Bytes produced by patches and generators so far: bounded (four times the output
    /// limit), so many targets or many generator files cannot exhaust memory before the
    /// final size check.
    spent: std::cell::Cell<usize>,
    /// Name-reference entries from every kustomization's `crds`.
    crd_refs: Vec<nameref::RefSpec>,
}

impl Builder<'_> {
    pub(crate) fn charge(
        &self,
        bytes: usize,
        kfile: &Path,
        field: &str,
    ) -> Result<(), KustomizeError> {
        let total = self.spent.get().saturating_add(bytes);
        self.spent.set(total);
        if total > self.opts.limits.max_total_bytes.saturating_mul(4) {
            return Err(kerr(
                kfile,
                Some(field),
                format!(
                    "the build produces more than {} bytes in patches and generators",
                    self.opts.limits.max_total_bytes.saturating_mul(4)
                ),
            ));
        }
        Ok(())
    }
}

/// The fields of a kustomization that lockstep builds.
const KNOWN_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "bases",
    "components",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "labels",
    "commonLabels",
    "commonAnnotations",
    "images",
    "replicas",
    "patches",
    "patchesStrategicMerge",
    "patchesJson6902",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "sortOptions",
    "crds",
];

/// Fields refused outright, with the reason.
const REFUSED_FIELDS: &[(&str, &str)] = &[
    (
        "helmCharts",
        "Helm charts are not built by lockstep (they would run helm); render the chart into the repository instead",
    ),
    ("helmGlobals", "Helm charts are not built by lockstep"),
    (
        "helmChartInflationGenerator",
        "Helm charts are not built by lockstep",
    ),
    (
        "generators",
        "generator plugins (exec and KRM functions) are refused: they would run code from the repository",
    ),
    (
        "transformers",
        "transformer plugins (exec and KRM functions) are refused: they would run code from the repository",
    ),
    (
        "validators",
        "validator plugins (exec and KRM functions) are refused: they would run code from the repository",
    ),
    (
        "vars",
        "vars are not supported (deprecated in kustomize v5); use replacements outside lockstep",
    ),
    ("replacements", "replacements are not supported yet"),
    ("openapi", "custom OpenAPI schemas are not supported"),
    ("buildMetadata", "buildMetadata is not supported yet"),
    (
        "configurations",
        "custom transformer configurations are not supported",
    ),
];

impl<'a> Builder<'a> {
    fn rel(&self, p: &Path) -> PathBuf {
        match p.strip_prefix(&self.root) {
            Ok(r) if !r.as_os_str().is_empty() => r.to_path_buf(),
            Ok(_) => PathBuf::from("."),
            Err(_) => p.to_path_buf(),
        }
    }

    /// Resolves a directory reference and holds it inside the root.
    fn resolve_dir(
        &self,
        p: &Path,
        kfile: &Path,
        field: Option<&str>,
    ) -> Result<PathBuf, KustomizeError> {
        let real = p
            .canonicalize()
            .map_err(|e| kerr(kfile, field, format!("cannot resolve {}: {e}", p.display())))?;
        if !real.starts_with(&self.root) {
            return Err(kerr(
                kfile,
                field,
                format!(
                    "{} is outside the root {}; refusing to read it",
                    p.display(),
                    self.display_root.display()
                ),
            ));
        }
        Ok(real)
    }

    /// Reads a file that must lie inside `dir` (kustomize's load restrictor).
    fn read_restricted(
        &self,
        dir: &Path,
        name: &str,
        kfile: &Path,
        field: &str,
    ) -> Result<(PathBuf, Vec<u8>), KustomizeError> {
        if is_remote(name) {
            return Err(kerr(
                kfile,
                Some(field),
                format!("{name:?} is remote; lockstep builds only from the checkout"),
            ));
        }
        let p = dir.join(name);
        let real = p
            .canonicalize()
            .map_err(|e| kerr(kfile, Some(field), format!("cannot read {name:?}: {e}")))?;
        if !real.starts_with(dir) || !real.starts_with(&self.root) {
            return Err(kerr(
                kfile,
                Some(field),
                format!(
                    "{name:?} is outside the kustomization's directory (load restrictor); refusing to read it"
                ),
            ));
        }
        let meta = std::fs::metadata(&real)
            .map_err(|e| kerr(kfile, Some(field), format!("cannot read {name:?}: {e}")))?;
        if !meta.is_file() {
            return Err(kerr(kfile, Some(field), format!("{name:?} is not a file")));
        }
        if meta.len() > self.opts.limits.max_file_bytes {
            return Err(kerr(
                kfile,
                Some(field),
                format!(
                    "{name:?} is {} bytes, over the {} byte limit",
                    meta.len(),
                    self.opts.limits.max_file_bytes
                ),
            ));
        }
        let bytes = std::fs::read(&real)
            .map_err(|e| kerr(kfile, Some(field), format!("cannot read {name:?}: {e}")))?;
        Ok((real, bytes))
    }

    fn load_kustomization(
        &self,
        dir: &Path,
    ) -> Result<(PathBuf, Map<String, Value>), KustomizeError> {
        let Some(kfile) = kustomization_file(dir) else {
            return Err(kerr(
                &self.rel(dir),
                None,
                "holds no kustomization.yaml, kustomization.yml or Kustomization",
            ));
        };
        let name = kfile
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("kustomization.yaml")
            .to_owned();
        let rel = self.rel(&kfile);
        let (_, bytes) = self.read_restricted(dir, &name, &rel, "")?;
        let k = parse_kustomization(&bytes).map_err(|m| kerr(&rel, None, m))?;
        Ok((rel, k))
    }

    fn enter(&mut self, dir: &Path, kfile: &Path, field: &str) -> Result<(), KustomizeError> {
        if self.stack.iter().any(|d| d == dir) {
            return Err(kerr(
                kfile,
                Some(field),
                format!("cycle: {} includes itself", self.rel(dir).display()),
            ));
        }
        self.visited += 1;
        if self.visited > self.opts.limits.max_kustomizations {
            return Err(kerr(
                kfile,
                Some(field),
                format!(
                    "the build visits more than {} kustomizations",
                    self.opts.limits.max_kustomizations
                ),
            ));
        }
        self.stack.push(dir.to_path_buf());
        Ok(())
    }

    /// kustomize's AccumulateTarget for one directory.
    fn build_dir(&mut self, dir: &Path) -> Result<Vec<Res>, KustomizeError> {
        let (kfile, k) = self.load_kustomization(dir)?;
        let kind = k
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("Kustomization");
        if kind == "Component" {
            return Err(kerr(
                &kfile,
                Some("kind"),
                "a Component can only be used under components",
            ));
        }
        self.enter(dir, &kfile, "resources")?;
        let mut rs = Vec::new();
        self.accumulate(dir, &kfile, &k, &mut rs)?;
        self.stack.pop();
        Ok(rs)
    }

    fn accumulate(
        &mut self,
        dir: &Path,
        kfile: &Path,
        k: &Map<String, Value>,
        rs: &mut Vec<Res>,
    ) -> Result<(), KustomizeError> {
        for field in ["resources", "bases"] {
            for entry in str_list(k, field, kfile)? {
                self.add_resource(dir, kfile, field, &entry, rs)?;
            }
        }
        for entry in str_list(k, "components", kfile)? {
            if is_remote(&entry) {
                return Err(kerr(
                    kfile,
                    Some("components"),
                    format!("{entry:?} is remote; lockstep builds only from the checkout"),
                ));
            }
            let cdir = self.resolve_dir(&dir.join(&entry), kfile, Some("components"))?;
            let (ckfile, ck) = self.load_kustomization(&cdir)?;
            if ck.get("kind").and_then(Value::as_str) != Some("Component") {
                return Err(kerr(
                    kfile,
                    Some("components"),
                    format!("{entry:?} is not a Component (kind: Component)"),
                ));
            }
            self.enter(&cdir, kfile, "components")?;
            self.accumulate(&cdir, &ckfile, &ck, rs)?;
            self.stack.pop();
        }
        for entry in str_list(k, "crds", kfile)? {
            let (_, bytes) = self.read_restricted(dir, &entry, kfile, "crds")?;
            let field = format!("crds ({entry})");
            let doc = crate::manifest::parse_strict(&bytes)
                .map_err(|e| kerr(kfile, Some(&field), e.to_string()))?;
            let Some(doc) = doc.first() else {
                continue;
            };
            let specs =
                crds::ref_specs(&node_to_value(doc)).map_err(|m| kerr(kfile, Some(&field), m))?;
            self.crd_refs.extend(specs);
            if self.crd_refs.len() > crds::MAX_REFS {
                return Err(kerr(
                    kfile,
                    Some(&field),
                    format!(
                        "the build's crds declare more than {} name references",
                        crds::MAX_REFS
                    ),
                ));
            }
        }
        generate::run(self, dir, kfile, k, rs)?;
        let before: Vec<(String, Option<String>)> = rs
            .iter()
            .map(|r| (r.name().to_owned(), r.namespace().map(str::to_owned)))
            .collect();
        transform::run(self, dir, kfile, k, rs)?;
        if before.len() == rs.len() {
            for (r, id) in rs.iter_mut().zip(before) {
                if (r.name(), r.namespace()) != (id.0.as_str(), id.1.as_deref()) {
                    r.written.get_or_insert(id);
                    r.renamed_by = Some(kfile.to_path_buf());
                }
            }
        }
        if rs.len() > self.opts.limits.max_objects {
            return Err(kerr(
                kfile,
                None,
                format!(
                    "the build makes more than {} objects",
                    self.opts.limits.max_objects
                ),
            ));
        }
        Ok(())
    }

    fn add_resource(
        &mut self,
        dir: &Path,
        kfile: &Path,
        field: &str,
        entry: &str,
        rs: &mut Vec<Res>,
    ) -> Result<(), KustomizeError> {
        if is_remote(entry) {
            return Err(kerr(
                kfile,
                Some(field),
                format!("{entry:?} is a remote base; lockstep builds only from the checkout"),
            ));
        }
        let p = dir.join(entry);
        if p.is_dir() {
            let sub = self.resolve_dir(&p, kfile, Some(field))?;
            let mut more = self.build_dir(&sub)?;
            rs.append(&mut more);
            return Ok(());
        }
        let (real, bytes) = self.read_restricted(dir, entry, kfile, field)?;
        let rel = self.rel(&real);
        let objs = match crate::manifest::read_file(&real, &bytes) {
            Ok(crate::manifest::ManifestFile::Sops(enc)) => {
                let idx = self.sops_files.len();
                self.sops_files.push(SopsFile {
                    path: rel.clone(),
                    bytes: bytes.clone(),
                });
                enc.docs
                    .iter()
                    .filter(|d| !crate::manifest::is_empty_doc(d))
                    .map(|d| (node_to_value(d), Some(idx)))
                    .collect::<Vec<_>>()
            }
            Ok(crate::manifest::ManifestFile::Plain(docs)) => {
                let objs = crate::manifest::objects(docs).map_err(|e| {
                    kerr(
                        &rel,
                        e.key.as_deref(),
                        crate::render::scrub_quoted(&e.message),
                    )
                })?;
                objs.iter().map(|(_, d)| (node_to_value(d), None)).collect()
            }
            Err(e) => {
                return Err(kerr(
                    &rel,
                    e.key.as_deref(),
                    crate::render::scrub_quoted(&e.message),
                ));
            }
        };
        for (obj, sops) in objs {
            if obj
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
                || obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
            {
                return Err(kerr(
                    &rel,
                    None,
                    "every resource needs kind and metadata.name",
                ));
            }
            if obj.get("kind").and_then(Value::as_str) == Some("Kustomization")
                && obj
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .starts_with("kustomize.config.k8s.io")
            {
                return Err(kerr(
                    kfile,
                    Some(field),
                    format!(
                        "{entry:?} is a kustomization file, not a resource; list its directory"
                    ),
                ));
            }
            let r = Res {
                obj,
                prev_names: vec![],
                prev_namespaces: vec![],
                origin: rel.clone(),
                sops,
                generated_secret: false,
                needs_hash: false,
                generated: false,
                written: None,
                renamed_by: None,
            };
            check_unique(rs, &r, kfile, field)?;
            rs.push(r);
        }
        Ok(())
    }
}

pub(crate) fn same_id(a: &Res, b: &Res) -> bool {
    a.group() == b.group()
        && a.kind() == b.kind()
        && a.name() == b.name()
        && a.namespace() == b.namespace()
}

fn check_unique(rs: &[Res], r: &Res, kfile: &Path, field: &str) -> Result<(), KustomizeError> {
    if rs.iter().any(|x| same_id(x, r)) {
        return Err(kerr(
            kfile,
            Some(field),
            format!(
                "may not add resource with an already registered id: {}/{} {}",
                r.api_version(),
                r.kind(),
                r.name()
            ),
        ));
    }
    Ok(())
}

fn is_remote(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.contains("://")
        || l.starts_with("github.com/")
        || l.starts_with("gitlab.com/")
        || l.starts_with("bitbucket.org/")
        || l.starts_with("git@")
        || l.starts_with("git::")
        || l.contains("?ref=")
}

/// Parses a kustomization file: a YAML map with known fields only.
pub fn parse_kustomization(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let docs = crate::manifest::parse_strict(bytes)
        .map_err(|e| crate::render::scrub_quoted(&e.message))?;
    let docs: Vec<_> = docs
        .into_iter()
        .filter(|d| !crate::manifest::is_empty_doc(d))
        .collect();
    let [doc] = docs.as_slice() else {
        return Err("a kustomization file holds exactly one YAML document".into());
    };
    let Value::Object(k) = node_to_value(doc) else {
        return Err("a kustomization file is a YAML map".into());
    };
    for key in k.keys() {
        if let Some((_, why)) = REFUSED_FIELDS.iter().find(|(f, _)| f == key) {
            return Err(format!("{key}: {why}"));
        }
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            return Err(format!("{key}: unknown field"));
        }
    }
    if let Some(kind) = k.get("kind")
        && !matches!(kind.as_str(), Some("Kustomization" | "Component"))
    {
        return Err("kind: must be Kustomization or Component".into());
    }
    if let Some(so) = k.get("sortOptions")
        && so.get("order").and_then(Value::as_str).unwrap_or("legacy") != "legacy"
    {
        return Err("sortOptions: only the legacy order is supported".into());
    }
    Ok(k)
}

pub(crate) fn str_list(
    k: &Map<String, Value>,
    field: &str,
    kfile: &Path,
) -> Result<Vec<String>, KustomizeError> {
    match k.get(field) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| kerr(kfile, Some(&format!("{field}[{i}]")), "must be a string"))
            })
            .collect(),
        Some(_) => Err(kerr(kfile, Some(field), "must be a list of strings")),
    }
}

pub(crate) fn opt_str<'v>(
    k: &'v Map<String, Value>,
    field: &str,
    kfile: &Path,
) -> Result<Option<&'v str>, KustomizeError> {
    match k.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(kerr(kfile, Some(field), "must be a string")),
    }
}

/// A YAML tree to JSON. Timestamps become strings, as kustomize prints them.
pub fn node_to_value(n: &Node) -> Value {
    match n {
        Node::Map(items) => {
            let mut m = Map::new();
            for it in items {
                if let MapItem::Entry(k, v) = it {
                    m.insert(k.clone(), node_to_value(v));
                }
            }
            Value::Object(m)
        }
        Node::List(l) => Value::Array(
            l.iter()
                .filter(|x| !matches!(x, Node::Comment(_)))
                .map(node_to_value)
                .collect(),
        ),
        Node::Comment(_) => Value::Null,
        Node::Scalar(s) => match s {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Int(i) => Value::from(*i),
            Scalar::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Scalar::Str(t) | Scalar::Time(t) => Value::String(t.as_str().to_owned()),
            Scalar::Bytes(b) => Value::String(String::from_utf8_lossy(b.as_bytes()).into_owned()),
        },
    }
}

/// JSON to a YAML tree; `secret` maps a placeholder to its value.
pub fn value_to_node(v: &Value, secret: &dyn Fn(&str) -> Option<String>) -> Node {
    match v {
        Value::Null => Node::Scalar(Scalar::Null),
        Value::Bool(b) => Node::Scalar(Scalar::Bool(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Node::Scalar(Scalar::Int(i)),
            None => Node::Scalar(Scalar::Float(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => match secret(s) {
            Some(real) => Node::Scalar(Scalar::Str(Text::new(real))),
            None => Node::str(s.clone()),
        },
        Value::Array(a) => Node::List(a.iter().map(|x| value_to_node(x, secret)).collect()),
        Value::Object(m) => Node::Map(
            m.iter()
                .map(|(k, x)| MapItem::Entry(k.clone(), value_to_node(x, secret)))
                .collect(),
        ),
    }
}

/// Used by tests and the fuzz target: the set of directories a kustomization refers to.
pub fn referenced_dirs(k: &Map<String, Value>) -> HashSet<String> {
    let mut out = HashSet::new();
    for f in ["resources", "bases", "components"] {
        if let Some(Value::Array(a)) = k.get(f) {
            out.extend(a.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_hash_matches_kustomize() {
        // Values printed by kustomize v5.8.1 for these objects (any name: it is not hashed).
        let t = SecretTable::new();
        let cm = json!({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"A": "1", "B": "<x&y>"}});
        assert_eq!(generate::content_hash(&cm, &t), "kh7f5d858d");
        let sec = json!({"kind": "Secret", "type": "Opaque", "data": {"P": "cHc="}});
        assert_eq!(generate::content_hash(&sec, &t), "9bf7ght95b");
    }

    #[test]
    fn placeholders_only_resolve_with_this_builds_nonce() {
        let mut t = SecretTable::new();
        let p = t.put(Zeroizing::new("c2VjcmV0".into()));
        assert_eq!(t.lookup(&p), Some("c2VjcmV0"));
        let other = SecretTable::new();
        assert_eq!(other.lookup(&p), None);
        assert_eq!(t.lookup("\u{0}lockstep-secret:00:0"), None);
    }

    #[test]
    fn object_and_kustomization_limits_hold() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        let build_with = |limits| {
            build(
                d,
                &BuildOptions {
                    root: d,
                    limits,
                    sops: None,
                },
            )
        };
        let mut many = String::new();
        for i in 0..30 {
            many += &format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n");
        }
        std::fs::write(d.join("r.yaml"), many).expect("write");
        std::fs::write(d.join("kustomization.yaml"), "resources: [r.yaml]\n").expect("write");
        let e = build_with(BuildLimits {
            max_objects: 10,
            ..BuildLimits::default()
        })
        .expect_err("over the limit");
        assert!(e.message.contains("more than 10 objects"), "{e}");
        let e = build_with(BuildLimits {
            max_total_bytes: 500,
            ..BuildLimits::default()
        })
        .expect_err("over the bytes");
        assert!(e.message.contains("500 bytes"), "{e}");
        // One patch over many targets is charged per target.
        std::fs::write(
            d.join("kustomization.yaml"),
            format!(
                "resources: [r.yaml]\npatches:\n- target: {{kind: ConfigMap}}\n  patch: |-\n    - op: add\n      path: /data\n      value: {{big: \"{}\"}}\n",
                "x".repeat(2000)
            ),
        )
        .expect("write");
        let e = build_with(BuildLimits {
            max_total_bytes: 10_000,
            ..BuildLimits::default()
        })
        .expect_err("over the budget");
        assert!(e.message.contains("in patches and generators"), "{e}");
        assert_eq!(e.field.as_deref(), Some("patches[0]"));
    }
}
