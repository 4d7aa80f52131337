//! The SealedSecret kind (`lockstep.dev/v1alpha1`): Secrets whose values are each an age
//! file that only the cluster's identities (and any break-glass recipients) can open, and
//! whose plaintext envelope binds the value to its namespace, name and key.
//!
//! `seal` turns a `v1/Secret` into a SealedSecret, `unseal` does the inverse with a set
//! of identities (a cluster may hold several during key rotation: the newest seals, all
//! open), and `reseal` re-encrypts to a new recipient set. Plaintext is only ever held
//! in zeroizing buffers.

pub mod envelope;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::crypto::age_keys::{self, AgeRecipient, Identities};
use crate::manifest::{self, emit_documents, load_documents};
use crate::sops::tree::{MapItem, Node, Scalar, Text};
use envelope::Binding;

pub const API_VERSION: &str = "lockstep.dev/v1alpha1";
pub const KIND: &str = "SealedSecret";

/// How far a sealed value may travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Scope {
    /// Bound to namespace, name and key.
    #[default]
    Strict,
    /// Bound to namespace and key: the Secret may be renamed.
    NamespaceWide,
    /// Bound to the key only.
    ClusterWide,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::NamespaceWide => "namespace-wide",
            Scope::ClusterWide => "cluster-wide",
        }
    }
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "strict" => Scope::Strict,
            "namespace-wide" => Scope::NamespaceWide,
            "cluster-wide" => Scope::ClusterWide,
            _ => return None,
        })
    }
}

/// A failure, naming the object and, where one applies, the key.
#[derive(Debug, thiserror::Error)]
#[error("{object}{}: {cause}", key.as_ref().map(|k| format!(": key {k:?}")).unwrap_or_default())]
pub struct SealError {
    /// `Secret payments/db`, `SealedSecret payments/db`, or `document 2`.
    pub object: String,
    pub key: Option<String>,
    pub cause: String,
}

fn fail(object: &str, key: Option<&str>, cause: impl Into<String>) -> SealError {
    SealError {
        object: object.to_owned(),
        key: key.map(str::to_owned),
        cause: cause.into(),
    }
}

/// A secret value in memory: zeroized on drop, redacted when printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(Zeroizing::new(bytes))
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}
impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}
impl std::fmt::Display for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the resulting Secret carries besides its data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    pub type_: String,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub immutable: Option<bool>,
}

/// A `v1/Secret` with its values decoded, keys sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainSecret {
    pub name: String,
    pub namespace: Option<String>,
    pub template: Template,
    pub data: Vec<(String, SecretValue)>,
}

/// A SealedSecret as stored in Git.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSecret {
    pub name: String,
    pub namespace: Option<String>,
    pub scope: Scope,
    /// Who the values are sealed to, as given at seal time (for `keys inventory`).
    pub recipients: Vec<String>,
    /// key -> base64 of a binary age file; sorted by key.
    pub encrypted_data: Vec<(String, String)>,
    pub template: Template,
}

impl PlainSecret {
    pub fn object(&self) -> String {
        object_name("Secret", self.namespace.as_deref(), &self.name)
    }
}

impl SealedSecret {
    pub fn object(&self) -> String {
        object_name(KIND, self.namespace.as_deref(), &self.name)
    }
    /// The recipient set, sorted and de-duplicated (for comparisons).
    pub fn recipient_set(&self) -> Vec<String> {
        normalized(self.recipients.iter().map(String::as_str))
    }
}

pub fn normalized<'a>(r: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = r.map(|s| s.trim().to_owned()).collect();
    v.sort();
    v.dedup();
    v
}

fn object_name(kind: &str, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Kubernetes object names and namespaces: DNS-1123 subdomains (lower-case
/// alphanumerics, `-` and `.`, at most 253 characters).
fn valid_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && s.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Secret data keys: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn valid_data_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

fn str_of(n: Option<&Node>) -> Option<&str> {
    n.and_then(Node::as_str)
}

fn string_map(
    node: Option<&Node>,
    object: &str,
    field: &str,
) -> Result<Vec<(String, String)>, SealError> {
    let mut out = Vec::new();
    let Some(node) = node else { return Ok(out) };
    if matches!(node, Node::Scalar(Scalar::Null)) {
        return Ok(out);
    }
    let items = node
        .as_map()
        .ok_or_else(|| fail(object, None, format!("{field} must be a map of strings")))?;
    for item in items {
        if let MapItem::Entry(k, v) = item {
            let v = v
                .as_str()
                .ok_or_else(|| fail(object, Some(k), format!("{field} values must be strings")))?;
            out.push((k.clone(), v.to_owned()));
        }
    }
    out.sort();
    Ok(out)
}

fn metadata_of(doc: &Node, kind: &str) -> Result<(String, Option<String>), SealError> {
    let meta = doc.get("metadata");
    let name = str_of(meta.and_then(|m| m.get("name")))
        .unwrap_or("")
        .to_owned();
    let namespace = str_of(meta.and_then(|m| m.get("namespace"))).map(str::to_owned);
    let object = object_name(
        kind,
        namespace.as_deref(),
        if name.is_empty() { "<no name>" } else { &name },
    );
    if !valid_dns_subdomain(&name) {
        return Err(fail(
            &object,
            None,
            "metadata.name must be a DNS-1123 subdomain (lower-case letters, digits, '-', '.')",
        ));
    }
    if let Some(ns) = &namespace
        && (!valid_dns_subdomain(ns) || ns.len() > 63 || ns.contains('.'))
    {
        return Err(fail(
            &object,
            None,
            "metadata.namespace must be a DNS-1123 label",
        ));
    }
    Ok((name, namespace))
}

fn kind_of(doc: &Node) -> (Option<&str>, Option<&str>) {
    (str_of(doc.get("apiVersion")), str_of(doc.get("kind")))
}

/// Whether a document is a SealedSecret of ours.
pub fn is_sealed_secret(doc: &Node) -> bool {
    kind_of(doc) == (Some(API_VERSION), Some(KIND))
}

/// Reads a `v1/Secret` document. Anything else is refused.
pub fn secret_from_node(doc: &Node, position: &str) -> Result<PlainSecret, SealError> {
    match kind_of(doc) {
        (Some("v1"), Some("Secret")) => {}
        (api, kind) => {
            return Err(fail(
                position,
                None,
                format!(
                    "is {}/{}, not a v1/Secret; only Secrets can be sealed",
                    api.unwrap_or("<no apiVersion>"),
                    kind.unwrap_or("<no kind>")
                ),
            ));
        }
    }
    let (name, namespace) = metadata_of(doc, "Secret")?;
    let object = object_name("Secret", namespace.as_deref(), &name);
    let meta = doc.get("metadata");
    let template = Template {
        type_: str_of(doc.get("type")).unwrap_or("Opaque").to_owned(),
        labels: string_map(
            meta.and_then(|m| m.get("labels")),
            &object,
            "metadata.labels",
        )?,
        annotations: string_map(
            meta.and_then(|m| m.get("annotations")),
            &object,
            "metadata.annotations",
        )?,
        immutable: match doc.get("immutable") {
            Some(Node::Scalar(Scalar::Bool(b))) => Some(*b),
            _ => None,
        },
    };
    let mut data: Vec<(String, SecretValue)> = Vec::new();
    let mut put = |k: &str, v: SecretValue| {
        if !valid_data_key(k) {
            return Err(fail(
                &object,
                Some(k),
                "Secret keys must consist of alphanumerics, '-', '_' or '.'",
            ));
        }
        data.retain(|(existing, _)| existing != k);
        data.push((k.to_owned(), v));
        Ok(())
    };
    for (field, is_base64) in [("data", true), ("stringData", false)] {
        match doc.get(field) {
            None | Some(Node::Scalar(Scalar::Null)) => {}
            Some(Node::Map(items)) => {
                for item in items {
                    let MapItem::Entry(k, v) = item else { continue };
                    let text = match v {
                        Node::Scalar(Scalar::Str(t)) => t.as_str(),
                        Node::Scalar(Scalar::Null) => "",
                        _ => {
                            return Err(fail(
                                &object,
                                Some(k),
                                format!("{field} values must be strings"),
                            ));
                        }
                    };
                    let bytes = if is_base64 {
                        let compact: Zeroizing<String> =
                            Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
                        STANDARD
                            .decode(compact.as_bytes())
                            .map_err(|_| fail(&object, Some(k), "data value is not valid base64"))?
                    } else {
                        text.as_bytes().to_vec()
                    };
                    // stringData wins over data for the same key, as in Kubernetes.
                    put(k, SecretValue::new(bytes))?;
                }
            }
            Some(_) => return Err(fail(&object, None, format!("{field} must be a map"))),
        }
    }
    data.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(PlainSecret {
        name,
        namespace,
        template,
        data,
    })
}

/// Reads a SealedSecret document.
pub fn sealed_from_node(doc: &Node, position: &str) -> Result<SealedSecret, SealError> {
    if !is_sealed_secret(doc) {
        return Err(fail(
            position,
            None,
            format!("is not a {API_VERSION} {KIND}"),
        ));
    }
    let (name, namespace) = metadata_of(doc, KIND)?;
    let object = object_name(KIND, namespace.as_deref(), &name);
    let spec = doc
        .get("spec")
        .ok_or_else(|| fail(&object, None, "has no spec"))?;
    let scope = match spec.get("scope") {
        None => Scope::Strict,
        Some(n) => n.as_str().and_then(Scope::parse).ok_or_else(|| {
            fail(
                &object,
                None,
                "spec.scope must be strict, namespace-wide or cluster-wide",
            )
        })?,
    };
    if scope != Scope::ClusterWide && namespace.is_none() {
        return Err(fail(
            &object,
            None,
            format!("a {} SealedSecret needs metadata.namespace", scope.as_str()),
        ));
    }
    let recipients = match spec.get("recipients") {
        None | Some(Node::Scalar(Scalar::Null)) => Vec::new(),
        Some(Node::List(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| fail(&object, None, "spec.recipients must be a list of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(fail(
                &object,
                None,
                "spec.recipients must be a list of strings",
            ));
        }
    };
    let mut encrypted_data = Vec::new();
    match spec.get("encryptedData") {
        None | Some(Node::Scalar(Scalar::Null)) => {}
        Some(Node::Map(items)) => {
            for item in items {
                let MapItem::Entry(k, v) = item else { continue };
                if !valid_data_key(k) {
                    return Err(fail(&object, Some(k), "invalid Secret key"));
                }
                let v = v.as_str().ok_or_else(|| {
                    fail(
                        &object,
                        Some(k),
                        "encryptedData values must be base64 strings",
                    )
                })?;
                if encrypted_data
                    .iter()
                    .any(|(e, _): &(String, String)| e == k)
                {
                    return Err(fail(&object, Some(k), "duplicate key in encryptedData"));
                }
                encrypted_data.push((k.clone(), v.to_owned()));
            }
        }
        Some(_) => return Err(fail(&object, None, "spec.encryptedData must be a map")),
    }
    encrypted_data.sort();
    let t = spec.get("template");
    let tmeta = t.and_then(|t| t.get("metadata"));
    let template = Template {
        type_: str_of(t.and_then(|t| t.get("type")))
            .unwrap_or("Opaque")
            .to_owned(),
        labels: string_map(
            tmeta.and_then(|m| m.get("labels")),
            &object,
            "spec.template.metadata.labels",
        )?,
        annotations: string_map(
            tmeta.and_then(|m| m.get("annotations")),
            &object,
            "spec.template.metadata.annotations",
        )?,
        immutable: match t.and_then(|t| t.get("immutable")) {
            Some(Node::Scalar(Scalar::Bool(b))) => Some(*b),
            _ => None,
        },
    };
    Ok(SealedSecret {
        name,
        namespace,
        scope,
        recipients,
        encrypted_data,
        template,
    })
}

fn entry(k: &str, v: Node) -> MapItem {
    MapItem::Entry(k.to_owned(), v)
}

fn str_map_node(pairs: &[(String, String)]) -> Node {
    Node::Map(
        pairs
            .iter()
            .map(|(k, v)| entry(k, Node::str(v.clone())))
            .collect(),
    )
}

fn metadata_node(name: &str, namespace: Option<&str>, template: Option<&Template>) -> Node {
    let mut m = vec![entry("name", Node::str(name))];
    if let Some(ns) = namespace {
        m.push(entry("namespace", Node::str(ns)));
    }
    if let Some(t) = template {
        if !t.labels.is_empty() {
            m.push(entry("labels", str_map_node(&t.labels)));
        }
        if !t.annotations.is_empty() {
            m.push(entry("annotations", str_map_node(&t.annotations)));
        }
    }
    Node::Map(m)
}

impl SealedSecret {
    /// The manifest, in a fixed field order so that output is deterministic.
    pub fn to_node(&self) -> Node {
        let mut tmpl = vec![entry("type", Node::str(self.template.type_.clone()))];
        if let Some(i) = self.template.immutable {
            tmpl.push(entry("immutable", Node::Scalar(Scalar::Bool(i))));
        }
        let mut tmeta = Vec::new();
        if !self.template.labels.is_empty() {
            tmeta.push(entry("labels", str_map_node(&self.template.labels)));
        }
        if !self.template.annotations.is_empty() {
            tmeta.push(entry(
                "annotations",
                str_map_node(&self.template.annotations),
            ));
        }
        if !tmeta.is_empty() {
            tmpl.push(entry("metadata", Node::Map(tmeta)));
        }
        Node::Map(vec![
            entry("apiVersion", Node::str(API_VERSION)),
            entry("kind", Node::str(KIND)),
            entry(
                "metadata",
                metadata_node(&self.name, self.namespace.as_deref(), None),
            ),
            entry(
                "spec",
                Node::Map(vec![
                    entry("scope", Node::str(self.scope.as_str())),
                    entry(
                        "recipients",
                        Node::List(
                            self.recipients
                                .iter()
                                .map(|r| Node::str(r.clone()))
                                .collect(),
                        ),
                    ),
                    entry(
                        "encryptedData",
                        Node::Map(
                            self.encrypted_data
                                .iter()
                                .map(|(k, v)| entry(k, Node::str(v.clone())))
                                .collect(),
                        ),
                    ),
                    entry("template", Node::Map(tmpl)),
                ]),
            ),
        ])
    }
}

impl PlainSecret {
    /// The `v1/Secret` manifest, values base64-encoded under `data`.
    pub fn to_node(&self) -> Node {
        let mut m = vec![
            entry("apiVersion", Node::str("v1")),
            entry("kind", Node::str("Secret")),
            entry(
                "metadata",
                metadata_node(&self.name, self.namespace.as_deref(), Some(&self.template)),
            ),
            entry("type", Node::str(self.template.type_.clone())),
        ];
        if let Some(i) = self.template.immutable {
            m.push(entry("immutable", Node::Scalar(Scalar::Bool(i))));
        }
        m.push(entry(
            "data",
            Node::Map(
                self.data
                    .iter()
                    .map(|(k, v)| {
                        entry(
                            k,
                            Node::Scalar(Scalar::Str(Text::new(STANDARD.encode(v.expose())))),
                        )
                    })
                    .collect(),
            ),
        ));
        Node::Map(m)
    }
}

/// Seals every value of a Secret to the recipients under a scope.
pub fn seal(
    secret: &PlainSecret,
    recipients: &[AgeRecipient],
    scope: Scope,
) -> Result<SealedSecret, SealError> {
    let object = secret.object();
    if recipients.is_empty() {
        return Err(fail(&object, None, "no recipients to seal to"));
    }
    let namespace = secret.namespace.as_deref();
    if scope != Scope::ClusterWide && namespace.is_none() {
        return Err(fail(
            &object,
            None,
            format!(
                "{} scope needs metadata.namespace (or use --scope cluster-wide)",
                scope.as_str()
            ),
        ));
    }
    let mut encrypted_data = Vec::with_capacity(secret.data.len());
    for (k, v) in &secret.data {
        let b = Binding::new(scope, namespace.unwrap_or(""), &secret.name, k);
        let plain = envelope::encode(&b, v.expose());
        let file = age_keys::encrypt_to(recipients, &plain)
            .map_err(|e| fail(&object, Some(k), e.to_string()))?;
        encrypted_data.push((k.clone(), STANDARD.encode(file)));
    }
    Ok(SealedSecret {
        name: secret.name.clone(),
        namespace: secret.namespace.clone(),
        scope,
        recipients: recipients.iter().map(|r| r.text.clone()).collect(),
        encrypted_data,
        template: secret.template.clone(),
    })
}

/// Opens one value and checks that it was sealed for exactly this place.
pub fn unseal_value(
    sealed: &SealedSecret,
    key: &str,
    b64: &str,
    ids: &Identities,
) -> Result<SecretValue, SealError> {
    let object = sealed.object();
    let err = |cause: String| fail(&object, Some(key), cause);
    let file = Zeroizing::new(
        STANDARD
            .decode(b64.trim())
            .map_err(|_| err("encrypted value is not valid base64".into()))?,
    );
    let plain = ids
        .decrypt_bytes(&file)
        .map_err(|e| err(format!("cannot open: {e}")))?;
    let (binding, value) = envelope::decode(&plain).map_err(|e| err(e.to_string()))?;
    if binding.scope != sealed.scope {
        return Err(err(format!(
            "value was sealed with scope {} but the SealedSecret says {}",
            binding.scope.as_str(),
            sealed.scope.as_str()
        )));
    }
    let expected = Binding::new(
        sealed.scope,
        sealed.namespace.as_deref().unwrap_or(""),
        &sealed.name,
        key,
    );
    if binding != expected {
        let mut moved = Vec::new();
        if binding.namespace != expected.namespace {
            moved.push(format!("namespace {:?}", binding.namespace));
        }
        if binding.name != expected.name {
            moved.push(format!("name {:?}", binding.name));
        }
        if binding.key != expected.key {
            moved.push(format!("key {:?}", binding.key));
        }
        return Err(err(format!(
            "value was sealed for {} and cannot be used here ({} scope)",
            moved.join(", "),
            sealed.scope.as_str()
        )));
    }
    Ok(SecretValue(value))
}

/// Opens every value of a SealedSecret with a set of identities.
pub fn unseal(sealed: &SealedSecret, ids: &Identities) -> Result<PlainSecret, SealError> {
    let data = sealed
        .encrypted_data
        .iter()
        .map(|(k, v)| Ok((k.clone(), unseal_value(sealed, k, v, ids)?)))
        .collect::<Result<Vec<_>, SealError>>()?;
    Ok(PlainSecret {
        name: sealed.name.clone(),
        namespace: sealed.namespace.clone(),
        template: sealed.template.clone(),
        data,
    })
}

/// Re-encrypts every value to a new recipient set, keeping scope and binding.
pub fn reseal(
    sealed: &SealedSecret,
    ids: &Identities,
    recipients: &[AgeRecipient],
) -> Result<SealedSecret, SealError> {
    let plain = unseal(sealed, ids)?;
    seal(&plain, recipients, sealed.scope)
}

/// Whether every value of `sealed` really is sealed to `recipients`, judged from the age
/// headers rather than from `spec.recipients` (which nothing authenticates): the stanzas
/// must be the ones sealing to `recipients` writes (count, types, SSH key tags), and no
/// identity at hand whose recipient is outside the set may open the value. X25519
/// stanzas do not name their key, so a value sealed to as many other X25519 keys, none
/// of whose identities is given, passes; giving the old identity closes that gap.
pub fn sealed_exactly_to(
    sealed: &SealedSecret,
    ids: &Identities,
    recipients: &[AgeRecipient],
) -> Result<bool, SealError> {
    let wanted: Vec<String> = recipients.iter().map(|r| r.text.clone()).collect();
    for (key, b64) in &sealed.encrypted_data {
        let file = STANDARD.decode(b64.trim()).map_err(|_| {
            fail(
                &sealed.object(),
                Some(key),
                "encrypted value is not valid base64",
            )
        })?;
        let stanzas = crate::crypto::stanzas::header_stanzas(&file)
            .map_err(|e| fail(&sealed.object(), Some(key), e))?;
        if !crate::crypto::stanzas::stanzas_match(&stanzas, recipients)
            || ids.outside_opener(&file, &wanted).is_some()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The outcome of resealing one file.
#[derive(Debug, PartialEq, Eq)]
pub enum ResealOutcome {
    /// Every SealedSecret was already sealed to exactly this recipient set.
    Unchanged,
    /// The new file content.
    Changed { text: String, objects: usize },
    /// No SealedSecret in the file.
    NoSealedSecrets,
}

/// Re-encrypts every SealedSecret in a manifest file to `recipients`. A file whose
/// SealedSecrets already carry exactly that set is left alone; any failure leaves the
/// whole file unchanged.
pub fn reseal_file(
    bytes: &[u8],
    ids: &Identities,
    recipients: &[AgeRecipient],
) -> Result<ResealOutcome, SealError> {
    let mut docs = load_documents(bytes).map_err(|e| fail("file", None, e))?;
    let wanted = normalized(recipients.iter().map(|r| r.text.as_str()));
    let mut found = 0;
    let mut changed = 0;
    for (i, doc) in docs.iter_mut().enumerate() {
        for doc in objects_mut(doc) {
            if !is_sealed_secret(doc) {
                continue;
            }
            found += 1;
            let sealed = sealed_from_node(doc, &format!("document {}", i + 1))?;
            if sealed.recipient_set() == wanted && sealed_exactly_to(&sealed, ids, recipients)? {
                continue;
            }
            *doc = reseal(&sealed, ids, recipients)?.to_node();
            changed += 1;
        }
    }
    Ok(match (found, changed) {
        (0, _) => ResealOutcome::NoSealedSecrets,
        (_, 0) => ResealOutcome::Unchanged,
        _ => ResealOutcome::Changed {
            // A JSON file stays JSON (load_documents reads JSON as exactly one object).
            text: match docs.as_slice() {
                [doc] if manifest::is_json(bytes) => crate::sops::stores::json::emit(doc, Some(2)),
                _ => emit_documents(&docs),
            },
            objects: changed,
        },
    })
}

/// Whether `load_documents` reads these bytes as JSON.
/// The objects of a document: the items of a `kind: List` (as `expand_lists` takes
/// them), else the document itself.
fn objects_mut(doc: &mut Node) -> Vec<&mut Node> {
    let is_list = manifest::is_list(doc);
    if !is_list {
        return vec![doc];
    }
    let Node::Map(items) = doc else {
        return Vec::new();
    };
    items
        .iter_mut()
        .filter_map(|item| match item {
            MapItem::Entry(k, Node::List(objs)) if k == "items" => Some(objs),
            _ => None,
        })
        .flatten()
        .filter(|o| matches!(o, Node::Map(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (Identities, AgeRecipient) {
        let k = age_keys::generate();
        let mut ids = Identities::default();
        ids.add_key_file_text(&age_keys::key_file_text(&k, "t"), "test")
            .unwrap();
        (ids, AgeRecipient::parse(&k.recipient).unwrap())
    }

    fn secret(ns: Option<&str>) -> PlainSecret {
        PlainSecret {
            name: "db".into(),
            namespace: ns.map(str::to_owned),
            template: Template {
                type_: "Opaque".into(),
                ..Default::default()
            },
            data: vec![
                ("password".into(), SecretValue::new(b"canary-4242".to_vec())),
                ("user".into(), SecretValue::new(b"app".to_vec())),
            ],
        }
    }

    #[test]
    fn every_scope_round_trips() {
        let (ids, r) = key();
        for scope in [Scope::Strict, Scope::NamespaceWide, Scope::ClusterWide] {
            let s = seal(&secret(Some("payments")), std::slice::from_ref(&r), scope).unwrap();
            assert!(!format!("{s:?}").contains("canary"));
            let back = unseal(&s, &ids).unwrap();
            assert_eq!(back, secret(Some("payments")), "{scope:?}");
        }
    }

    #[test]
    fn moving_a_value_is_detected_per_scope() {
        let (ids, r) = key();
        let strict = seal(
            &secret(Some("payments")),
            std::slice::from_ref(&r),
            Scope::Strict,
        )
        .unwrap();
        let mut renamed = strict.clone();
        renamed.name = "other".into();
        let e = unseal(&renamed, &ids).unwrap_err().to_string();
        assert!(e.contains("name \"db\""), "{e}");
        let mut moved_ns = strict.clone();
        moved_ns.namespace = Some("evil".into());
        assert!(unseal(&moved_ns, &ids).is_err());
        let mut swapped = strict.clone();
        let v0 = swapped.encrypted_data[0].1.clone();
        swapped.encrypted_data[1].1 = v0;
        let e = unseal(&swapped, &ids).unwrap_err().to_string();
        assert!(
            e.contains("key \"user\"") && e.contains("key \"password\""),
            "{e}"
        );

        let nsw = seal(
            &secret(Some("payments")),
            std::slice::from_ref(&r),
            Scope::NamespaceWide,
        )
        .unwrap();
        let mut renamed = nsw.clone();
        renamed.name = "other".into();
        assert!(
            unseal(&renamed, &ids).is_ok(),
            "namespace-wide allows renaming"
        );
        let mut moved_ns = nsw;
        moved_ns.namespace = Some("evil".into());
        assert!(unseal(&moved_ns, &ids).is_err());

        let cw = seal(
            &secret(Some("payments")),
            std::slice::from_ref(&r),
            Scope::ClusterWide,
        )
        .unwrap();
        let mut anywhere = cw.clone();
        anywhere.namespace = Some("elsewhere".into());
        anywhere.name = "x".into();
        assert!(unseal(&anywhere, &ids).is_ok());
        let mut scope_changed = cw;
        scope_changed.scope = Scope::Strict;
        assert!(unseal(&scope_changed, &ids).is_err());
    }

    #[test]
    fn strict_without_namespace_is_refused() {
        let (_, r) = key();
        let e = seal(&secret(None), &[r], Scope::Strict)
            .unwrap_err()
            .to_string();
        assert!(e.contains("namespace"), "{e}");
    }

    #[test]
    fn wrong_identity_fails_without_leaking() {
        let (_, r) = key();
        let (other, _) = key();
        let s = seal(&secret(Some("p")), &[r], Scope::Strict).unwrap();
        let e = unseal(&s, &other).unwrap_err().to_string();
        assert!(e.contains("cannot open") && !e.contains("canary"), "{e}");
    }

    #[test]
    fn manifest_round_trip_is_deterministic() {
        let (ids, r) = key();
        let s = seal(&secret(Some("payments")), &[r], Scope::Strict).unwrap();
        let text = emit_documents(&[s.to_node()]);
        let docs = load_documents(text.as_bytes()).unwrap();
        let parsed = sealed_from_node(&docs[0], "document 1").unwrap();
        assert_eq!(parsed, s);
        assert_eq!(emit_documents(&[parsed.to_node()]), text);
        assert!(unseal(&parsed, &ids).is_ok());
    }

    /// `spec.recipients` claims the new set, but the values are still sealed to the old
    /// key (or to one key too many): reseal decides from the age headers and the old
    /// identity, not from the claim.
    #[test]
    fn reseal_does_not_trust_spec_recipients() {
        let (old_ids, old) = key();
        let (new_ids, new) = key();
        let (_, extra) = key();
        let new_set = std::slice::from_ref(&new);
        for sealed_to in [vec![old.clone()], vec![new.clone(), extra.clone()]] {
            let mut s = seal(&secret(Some("p")), &sealed_to, Scope::Strict).unwrap();
            s.recipients = vec![new.text.clone()];
            let text = emit_documents(&[s.to_node()]);
            let ids = if sealed_to.len() == 1 {
                &old_ids
            } else {
                &new_ids
            };
            let ResealOutcome::Changed { text: out, .. } =
                reseal_file(text.as_bytes(), ids, new_set).unwrap()
            else {
                panic!("a value sealed to {sealed_to:?} was left as it was");
            };
            let docs = load_documents(out.as_bytes()).unwrap();
            let back = sealed_from_node(&docs[0], "document 1").unwrap();
            assert!(unseal(&back, &new_ids).is_ok());
            assert!(unseal(&back, &old_ids).is_err());
            assert!(sealed_exactly_to(&back, &old_ids, new_set).unwrap());
            // Already right: left byte-identical, even with the old identity at hand.
            assert_eq!(
                reseal_file(out.as_bytes(), &old_ids, new_set).unwrap(),
                ResealOutcome::Unchanged
            );
        }
    }

    #[test]
    fn reseal_keeps_json_files_json_and_reseals_list_items() {
        let (ids, r) = key();
        let (ids2, r2) = key();
        let one = seal(
            &secret(Some("payments")),
            std::slice::from_ref(&r),
            Scope::Strict,
        )
        .unwrap();
        let mut other = secret(Some("payments"));
        other.name = "cache".into();
        let two = seal(&other, std::slice::from_ref(&r), Scope::Strict).unwrap();

        // One object in a JSON file: the resealed file is JSON again.
        let json = crate::sops::stores::json::emit(&one.to_node(), Some(2));
        let ResealOutcome::Changed { text, objects } =
            reseal_file(json.as_bytes(), &ids, std::slice::from_ref(&r2)).unwrap()
        else {
            panic!("a JSON SealedSecret sealed to another set was not resealed");
        };
        assert_eq!(objects, 1);
        assert!(
            text.starts_with('{'),
            "JSON file rewritten as YAML:\n{text}"
        );
        let back = sealed_from_node(&load_documents(text.as_bytes()).unwrap()[0], "d").unwrap();
        assert_eq!(back.recipients, vec![r2.text.clone()]);
        assert!(unseal(&back, &ids2).is_ok() && unseal(&back, &ids).is_err());

        // A v1/List (what `seal -o json` writes for several Secrets): every item.
        let list = Node::Map(vec![
            entry("apiVersion", Node::str("v1")),
            entry("kind", Node::str("List")),
            entry("items", Node::List(vec![one.to_node(), two.to_node()])),
        ]);
        for text in [
            crate::sops::stores::json::emit(&list, Some(2)),
            emit_documents(std::slice::from_ref(&list)),
        ] {
            let ResealOutcome::Changed { text: out, objects } =
                reseal_file(text.as_bytes(), &ids, std::slice::from_ref(&r2)).unwrap()
            else {
                panic!("the SealedSecrets of a List were not resealed:\n{text}");
            };
            assert_eq!(objects, 2);
            assert_eq!(out.starts_with('{'), text.starts_with('{'));
            let items = manifest::expand_lists(load_documents(out.as_bytes()).unwrap());
            assert_eq!(items.len(), 2);
            for item in &items {
                let s = sealed_from_node(item, "item").unwrap();
                assert_eq!(s.recipients, vec![r2.text.clone()]);
                assert!(unseal(&s, &ids2).is_ok());
            }
            assert_eq!(
                reseal_file(out.as_bytes(), &ids2, std::slice::from_ref(&r2)).unwrap(),
                ResealOutcome::Unchanged
            );
        }
    }

    #[test]
    fn secrets_are_read_from_data_and_string_data() {
        let doc = &load_documents(
            b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: p\n  labels: {b: '2', a: '1'}\ntype: kubernetes.io/basic-auth\ndata:\n  password: aHVudGVyMg==\n  user: b2xk\nstringData:\n  user: new\n",
        )
        .unwrap()[0];
        let s = secret_from_node(doc, "document 1").unwrap();
        assert_eq!(s.template.type_, "kubernetes.io/basic-auth");
        assert_eq!(
            s.template.labels,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(s.data[0].1.expose(), b"hunter2");
        assert_eq!(s.data[1].1.expose(), b"new");
        let cm =
            &load_documents(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap()[0];
        assert!(
            secret_from_node(cm, "document 1")
                .unwrap_err()
                .to_string()
                .contains("not a v1/Secret")
        );
        let bad = &load_documents(
            b"apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata: {k: '!!'}\n",
        )
        .unwrap()[0];
        let e = secret_from_node(bad, "document 1").unwrap_err().to_string();
        assert!(e.contains("key \"k\"") && e.contains("base64"), "{e}");
    }
}
