//! SOPS files, compatible with sops 3.x for age keys: read, decrypt, encrypt, re-key.
//!
//! The CLI and the renderer both go through [`decrypt`] / [`encrypt`] and friends; nothing
//! here prints or logs plaintext. Decrypted documents are [`tree::Node`]s whose strings
//! zeroize on drop and print redacted.

pub mod cipher;
pub mod config;
pub mod gotime;
pub mod metadata;
pub mod recipients;
pub mod shamir;
pub mod stores;
pub mod tree;
pub mod walk;

use std::path::Path;

use zeroize::Zeroizing;

use crate::crypto::age_keys::{AgeRecipient, Identities, KeyError};
use metadata::{AgeKey, KeyGroup, Metadata, MetadataError, Selection};
use tree::{MapItem, Node, Scalar};
use walk::{IvStash, Selector, WalkError};

/// The version written into new files: the sops release whose format is emulated.
pub const SOPS_VERSION: &str = "3.11.0";

/// File formats, chosen by extension as sops does unless overridden.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    Binary,
}

impl Format {
    /// sops' `FormatForPath`: `.yaml`/`.yml`, `.json`, `.env`; anything else is binary.
    pub fn for_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            Some("json") => Format::Json,
            Some("env") => Format::Dotenv,
            _ => Format::Binary,
        }
    }
}

/// Everything that can go wrong with a SOPS file. The caller prefixes the file name;
/// messages name the key path where one applies and never contain plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error("cannot parse {format:?} input: {message}")]
    Parse { format: Format, message: String },
    #[error("File cannot be completely empty, it must contain at least one document")]
    Empty,
    #[error(
        "the file already has a top-level 'sops' entry (or 'sops_' keys): it looks encrypted already; use `lockstep edit` or rename the entry"
    )]
    AlreadyEncrypted,
    #[error("{0}")]
    NonStringKey(String),
    #[error("sops metadata not found: this is not an encrypted file")]
    NoMetadata,
    #[error("{0}")]
    Metadata(#[from] MetadataError),
    #[error("could not get the data key: {0}")]
    DataKey(String),
    #[error("Error decrypting tree: {0}")]
    Decrypt(WalkError),
    #[error("Error encrypting tree: {0}")]
    Encrypt(WalkError),
    /// The hashes are kept for the CLI, which prints sops' exact message; everywhere else
    /// (render, check, the reconciler) the message leaves them out, since a MAC over weak
    /// values could be brute-forced offline.
    #[error(
        "MAC mismatch: the values do not match the file's MAC (the file was changed after it was encrypted)"
    )]
    MacMismatch { file_has: String, computed: String },
    #[error("MAC mismatch: the file has no MAC")]
    NoMac { computed: String },
    #[error("Cannot decrypt MAC: {0}")]
    MacDecrypt(cipher::CipherError),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("no encryption key found: give recipients with --age or a .sops.yaml creation rule")]
    NoRecipients,
    #[error("{0}")]
    Unsupported(String),
    #[error("invalid regular expression for {0}: {1}")]
    BadRegex(&'static str, String),
    #[error("Shamir secret sharing: {0}")]
    Shamir(String),
    #[error("{0}")]
    Output(String),
}

impl SopsError {
    /// The message the real sops prints for this error (the CLI uses it, for scripts that
    /// match on sops' wording).
    pub fn sops_message(&self) -> String {
        match self {
            SopsError::MacMismatch { file_has, computed } => {
                format!("MAC mismatch. File has {file_has}, computed {computed}")
            }
            SopsError::NoMac { computed } => {
                format!("MAC mismatch. File has no MAC, computed {computed}")
            }
            other => other.to_string(),
        }
    }

    /// Exit codes as sops uses them (`cmd/sops/codes`), so scripts can tell causes apart.
    pub fn exit_code(&self) -> i32 {
        match self {
            SopsError::Parse { .. } => 2,
            SopsError::Empty => 92,
            SopsError::AlreadyEncrypted => 203,
            SopsError::NonStringKey(_) => 23,
            SopsError::NoMetadata | SopsError::Metadata(_) => 1,
            SopsError::DataKey(_) => 128,
            SopsError::Decrypt(_) => 25,
            SopsError::Encrypt(_) => 23,
            SopsError::MacMismatch { .. } | SopsError::NoMac { .. } | SopsError::MacDecrypt(_) => {
                51
            }
            SopsError::Key(_) => 1,
            SopsError::NoRecipients => 111,
            SopsError::Unsupported(_) => 1,
            SopsError::BadRegex(..) => 1,
            SopsError::Shamir(_) => 128,
            SopsError::Output(_) => 4,
        }
    }
}

fn parse_err(format: Format, e: impl std::fmt::Display) -> SopsError {
    SopsError::Parse {
        format,
        message: e.to_string(),
    }
}

/// Output layout settings (`stores:` in `.sops.yaml`).
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub yaml_indent: usize,
    /// `None`: tabs, as sops writes JSON by default.
    pub json_indent: Option<usize>,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            yaml_indent: 4,
            json_indent: None,
        }
    }
}

/// Parses a plaintext file into documents.
pub fn parse_plain(input: &[u8], format: Format) -> Result<Vec<Node>, SopsError> {
    let docs = match format {
        Format::Yaml => {
            let text = std::str::from_utf8(input).map_err(|e| parse_err(format, e))?;
            stores::yaml::parse(text).map_err(|e| match e {
                stores::yaml::YamlError::NonStringKey { .. } => {
                    SopsError::NonStringKey(e.to_string())
                }
                // sops reads such an integer but cannot walk it when encrypting (exit 23).
                stores::yaml::YamlError::Uint64 { .. } => SopsError::NonStringKey(format!(
                    "Error encrypting tree: Error walking tree: {e}"
                )),
                e => parse_err(format, e),
            })?
        }
        Format::Json => vec![stores::json::parse(input).map_err(|e| parse_err(format, e))?],
        Format::Dotenv => vec![stores::dotenv::parse(input).map_err(|e| parse_err(format, e))?],
        Format::Binary => vec![stores::binary::parse(input)],
    };
    if docs.is_empty()
        || (format == Format::Dotenv && input.iter().all(|b| b.is_ascii_whitespace()))
    {
        return Err(SopsError::Empty);
    }
    Ok(docs)
}

/// Writes plaintext documents in a format.
pub fn emit_plain(
    docs: &[Node],
    format: Format,
    layout: Layout,
) -> Result<Zeroizing<Vec<u8>>, SopsError> {
    let single = |docs: &[Node]| -> Result<Node, SopsError> {
        match docs {
            [one] => Ok(one.clone()),
            _ => Err(SopsError::Output(format!(
                "{} documents cannot be written as {format:?}",
                docs.len()
            ))),
        }
    };
    Ok(Zeroizing::new(match format {
        Format::Yaml => stores::yaml::emit(docs, layout.yaml_indent).into_bytes(),
        Format::Json => stores::json::emit(&single(docs)?, layout.json_indent).into_bytes(),
        Format::Dotenv => stores::dotenv::emit(&single(docs)?)
            .map_err(|e| SopsError::Output(e.to_string()))?
            .into_bytes(),
        Format::Binary => stores::binary::emit_plain(&single(docs)?)
            .map_err(|e| SopsError::Output(e.to_string()))?,
    }))
}

fn take_sops_entry(doc: &mut Node) -> Option<Node> {
    let items = doc.as_map_mut()?;
    let mut found = None;
    items.retain_mut(|item| match item {
        MapItem::Entry(k, v) if k == "sops" => {
            if found.is_none() {
                found = Some(std::mem::replace(v, Node::map()));
            }
            false
        }
        _ => true,
    });
    found
}

fn has_sops_entry(doc: &Node, format: Format) -> bool {
    doc.as_map().is_some_and(|items| {
        items.iter().any(|i| match i {
            MapItem::Entry(k, _) => {
                k == "sops" || (format == Format::Dotenv && k.starts_with("sops_"))
            }
            MapItem::Comment(_) => false,
        })
    })
}

/// An encrypted file split into its (still encrypted) documents and its metadata.
pub struct EncryptedFile {
    pub docs: Vec<Node>,
    pub metadata: Metadata,
    pub format: Format,
}

/// Reads an encrypted file without decrypting anything.
pub fn load_encrypted(input: &[u8], format: Format) -> Result<EncryptedFile, SopsError> {
    let mut docs = match format {
        Format::Yaml => {
            let text = std::str::from_utf8(input).map_err(|e| parse_err(format, e))?;
            stores::yaml::parse(text).map_err(|e| parse_err(format, e))?
        }
        Format::Json | Format::Binary => {
            vec![stores::json::parse(input).map_err(|e| parse_err(format, e))?]
        }
        Format::Dotenv => {
            let doc = stores::dotenv::parse(input).map_err(|e| parse_err(format, e))?;
            let (mut doc, meta) = stores::dotenv::split_metadata(doc);
            if let (Some(meta), Some(items)) = (meta, doc.as_map_mut()) {
                items.push(MapItem::Entry("sops".into(), meta));
            }
            vec![doc]
        }
    };
    if docs.is_empty() {
        return Err(SopsError::Empty);
    }
    // Only the first document's metadata is read; the copies in the others are dropped.
    let mut first = None;
    for doc in docs.iter_mut() {
        let m = take_sops_entry(doc);
        if first.is_none() {
            first = Some(m);
        }
    }
    let meta_node = first.flatten().ok_or(SopsError::NoMetadata)?;
    let metadata = Metadata::from_node(&meta_node)?;
    Ok(EncryptedFile {
        docs,
        metadata,
        format,
    })
}

/// A decrypted file: plaintext documents plus what is needed to write it back
/// encrypted with minimal changes (the same data key and the IVs of unchanged values).
pub struct DecryptedFile {
    pub docs: Vec<Node>,
    pub metadata: Metadata,
    pub format: Format,
    data_key: Zeroizing<Vec<u8>>,
    stash: IvStash,
}

impl std::fmt::Debug for DecryptedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DecryptedFile({:?}, {} documents, <redacted>)",
            self.format,
            self.docs.len()
        )
    }
}

/// Options for decryption.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecryptOptions {
    /// Skip the MAC check (sops `--ignore-mac`), for recovering damaged files.
    pub ignore_mac: bool,
    /// Remember every value's IV so that [`DecryptedFile::reencrypt`] reproduces the
    /// ciphertext of unchanged values (what `edit` needs). Costs a table of one entry per
    /// value, so plain decryption leaves it off.
    pub keep_ivs: bool,
}

/// Recovers the data key with the identities at hand.
pub fn data_key(
    meta: &Metadata,
    ids: &Identities,
    searched: &[String],
) -> Result<Zeroizing<Vec<u8>>, SopsError> {
    let mut parts: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    let mut failures = Vec::new();
    for (gi, group) in meta.key_groups.iter().enumerate() {
        let mut got = None;
        for k in &group.age {
            match ids.unwrap(&k.enc) {
                Ok(v) => {
                    got = Some(v);
                    break;
                }
                Err(e) => failures.push(format!("group {gi} {}: {e}", k.recipient)),
            }
        }
        if let Some(v) = got {
            parts.push(v);
        }
    }
    let searched = if searched.is_empty() {
        String::new()
    } else {
        format!("; identities searched in: {}", searched.join(", "))
    };
    let recipients: Vec<&str> = meta.age_recipients().collect();
    let no_key = || {
        SopsError::DataKey(format!(
            "no identity opens any of the file's recipients ({}){}",
            if recipients.is_empty() {
                "no age recipients".to_string()
            } else {
                recipients.join(", ")
            },
            searched
        ))
    };
    if meta.key_groups.len() <= 1 {
        let key = parts.pop().ok_or_else(no_key)?;
        if key.len() != 32 {
            return Err(SopsError::DataKey(format!(
                "the wrapped data key has {} bytes, expected 32",
                key.len()
            )));
        }
        return Ok(key);
    }
    let threshold = if meta.shamir_threshold == 0 {
        meta.key_groups.len()
    } else {
        meta.shamir_threshold
    };
    if parts.len() < threshold {
        return Err(SopsError::DataKey(format!(
            "only {} of the {threshold} key groups needed could be opened ({}){}",
            parts.len(),
            recipients.join(", "),
            searched
        )));
    }
    let shares: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
    let key = shamir::combine(&shares).map_err(|e| SopsError::Shamir(e.to_string()));
    let mut shares = shares;
    for s in shares.iter_mut() {
        zeroize::Zeroize::zeroize(s);
    }
    let key = Zeroizing::new(key?);
    if key.len() != 32 {
        return Err(SopsError::Shamir(format!(
            "combined key has {} bytes, expected 32",
            key.len()
        )));
    }
    Ok(key)
}

fn selector(sel: &Selection) -> Result<Selector, SopsError> {
    Selector::new(sel).map_err(|e| SopsError::BadRegex(sel.key(), e.to_string()))
}

/// Decrypts a file completely in memory and verifies its MAC.
pub fn decrypt(
    input: &[u8],
    format: Format,
    ids: &Identities,
    searched: &[String],
    opts: DecryptOptions,
) -> Result<DecryptedFile, SopsError> {
    let file = load_encrypted(input, format)?;
    let key = data_key(&file.metadata, ids, searched)?;
    decrypt_with_key(file, key, opts)
}

/// Decrypts a loaded file with a known data key.
pub fn decrypt_with_key(
    file: EncryptedFile,
    key: Zeroizing<Vec<u8>>,
    opts: DecryptOptions,
) -> Result<DecryptedFile, SopsError> {
    let EncryptedFile {
        mut docs,
        metadata,
        format,
    } = file;
    let sel = selector(&metadata.effective_selection())?;
    let mut stash = IvStash::default();
    let result = walk::decrypt_docs(
        &mut docs,
        &key,
        &sel,
        metadata.mac_only_encrypted,
        opts.keep_ivs.then_some(&mut stash),
    )
    .map_err(SopsError::Decrypt)?;
    if !opts.ignore_mac {
        verify_mac(&metadata, &key, &result.mac)?;
    }
    Ok(DecryptedFile {
        docs,
        metadata,
        format,
        data_key: key,
        stash,
    })
}

fn verify_mac(meta: &Metadata, key: &[u8], computed: &str) -> Result<(), SopsError> {
    if meta.mac.is_empty() {
        return Err(SopsError::NoMac {
            computed: computed.to_owned(),
        });
    }
    let aad = gotime::lastmodified_aad(&meta.lastmodified)
        .ok_or_else(|| MetadataError::BadLastModified(meta.lastmodified.clone()))?;
    let (stored, _) = cipher::decrypt_raw(key, &meta.mac, &aad).map_err(SopsError::MacDecrypt)?;
    if stored.as_slice() != computed.as_bytes() {
        return Err(SopsError::MacMismatch {
            file_has: String::from_utf8_lossy(&stored).into_owned(),
            computed: computed.to_owned(),
        });
    }
    Ok(())
}

/// What to encrypt to and how: built from `--age` flags or a `.sops.yaml` rule.
#[derive(Clone, Debug, Default)]
pub struct EncryptSettings {
    /// One entry per key group; a single group is the normal case.
    pub groups: Vec<Vec<AgeRecipient>>,
    /// 0 = the number of groups.
    pub shamir_threshold: usize,
    pub selection: Option<Selection>,
    pub mac_only_encrypted: bool,
}

fn wrap_for_groups(
    key: &[u8],
    groups: &[Vec<AgeRecipient>],
    shamir_threshold: usize,
) -> Result<(Vec<KeyGroup>, usize), SopsError> {
    if groups.iter().all(|g| g.is_empty()) {
        return Err(SopsError::NoRecipients);
    }
    if groups.len() == 1 {
        let age = groups[0]
            .iter()
            .map(|r| {
                Ok(AgeKey {
                    recipient: r.text.clone(),
                    enc: r.wrap(key)?,
                })
            })
            .collect::<Result<Vec<_>, KeyError>>()?;
        return Ok((
            vec![KeyGroup {
                age,
                other: Vec::new(),
            }],
            0,
        ));
    }
    let threshold = if shamir_threshold == 0 {
        groups.len()
    } else {
        shamir_threshold
    };
    let mut shares = shamir::split(key, groups.len(), threshold)
        .map_err(|e| SopsError::Shamir(e.to_string()))?;
    let mut out = Vec::new();
    for (g, share) in groups.iter().zip(shares.iter()) {
        let age = g
            .iter()
            .map(|r| {
                Ok(AgeKey {
                    recipient: r.text.clone(),
                    enc: r.wrap(share)?,
                })
            })
            .collect::<Result<Vec<_>, KeyError>>()?;
        out.push(KeyGroup {
            age,
            other: Vec::new(),
        });
    }
    for s in shares.iter_mut() {
        zeroize::Zeroize::zeroize(s);
    }
    Ok((out, threshold))
}

/// Encrypts a plaintext file. `input_format` is how to read it, `output_format` how to
/// write it.
pub fn encrypt(
    input: &[u8],
    input_format: Format,
    output_format: Format,
    settings: &EncryptSettings,
    layout: Layout,
) -> Result<Vec<u8>, SopsError> {
    let docs = parse_plain(input, input_format)?;
    if docs.iter().any(|d| has_sops_entry(d, input_format)) {
        return Err(SopsError::AlreadyEncrypted);
    }
    let key = Zeroizing::new(crate::crypto::random_bytes::<32>().to_vec());
    let (key_groups, shamir_threshold) =
        wrap_for_groups(&key, &settings.groups, settings.shamir_threshold)?;
    // The binary store never writes a selection option; everything else defaults to
    // the `_unencrypted` suffix, written explicitly as sops does.
    let selection = if input_format == Format::Binary {
        None
    } else {
        Some(settings.selection.clone().unwrap_or_else(|| {
            Selection::UnencryptedSuffix(Selection::DEFAULT_UNENCRYPTED_SUFFIX.into())
        }))
    };
    let metadata = Metadata {
        shamir_threshold,
        key_groups,
        lastmodified: String::new(),
        mac: String::new(),
        selection,
        mac_only_encrypted: settings.mac_only_encrypted,
        version: SOPS_VERSION.into(),
    };
    seal_docs(docs, metadata, &key, None, output_format, layout)
}

/// Encrypts plaintext documents with `key`, stamps `lastmodified` and the MAC, and
/// writes the file.
fn seal_docs(
    mut docs: Vec<Node>,
    mut metadata: Metadata,
    key: &[u8],
    stash: Option<&IvStash>,
    format: Format,
    layout: Layout,
) -> Result<Vec<u8>, SopsError> {
    let sel = selector(&metadata.effective_selection())?;
    let result = walk::encrypt_docs(&mut docs, key, &sel, metadata.mac_only_encrypted, stash)
        .map_err(SopsError::Encrypt)?;
    metadata.lastmodified = gotime::now_lastmodified();
    metadata.mac = cipher::encrypt_raw(
        key,
        result.mac.as_bytes(),
        cipher::DataType::Str,
        &metadata.lastmodified,
    )
    .map_err(|e| SopsError::Output(e.to_string()))?;
    emit_encrypted(docs, &metadata, format, layout)
}

/// Writes encrypted documents with their metadata block.
pub fn emit_encrypted(
    mut docs: Vec<Node>,
    metadata: &Metadata,
    format: Format,
    layout: Layout,
) -> Result<Vec<u8>, SopsError> {
    let json_like = matches!(format, Format::Json | Format::Binary);
    let meta = metadata.to_node(json_like);
    match format {
        Format::Yaml => {
            for d in docs.iter_mut() {
                if let Some(items) = d.as_map_mut() {
                    items.push(MapItem::Entry("sops".into(), meta.clone()));
                }
            }
            Ok(stores::yaml::emit(&docs, layout.yaml_indent).into_bytes())
        }
        Format::Json | Format::Dotenv | Format::Binary => {
            let mut doc = match docs.len() {
                1 => docs.pop().unwrap_or_else(Node::map),
                n => {
                    return Err(SopsError::Output(format!(
                        "{n} documents cannot be written as {format:?}"
                    )));
                }
            };
            if format == Format::Binary {
                // The binary store's envelope: {"data": ENC[...], "sops": {...}}.
                let data = doc.get("data").cloned().unwrap_or_else(|| Node::str(""));
                doc = Node::Map(vec![MapItem::Entry("data".into(), data)]);
            }
            if let Some(items) = doc.as_map_mut() {
                items.push(MapItem::Entry("sops".into(), meta));
            }
            match format {
                Format::Dotenv => stores::dotenv::emit(&doc)
                    .map(String::into_bytes)
                    .map_err(|e| SopsError::Output(e.to_string())),
                _ => Ok(stores::json::emit(&doc, layout.json_indent).into_bytes()),
            }
        }
    }
}

impl DecryptedFile {
    pub fn data_key(&self) -> &[u8] {
        &self.data_key
    }

    /// Writes the file in plaintext (what `decrypt` prints).
    pub fn emit_plain(
        &self,
        format: Format,
        layout: Layout,
    ) -> Result<Zeroizing<Vec<u8>>, SopsError> {
        emit_plain(&self.docs, format, layout)
    }

    /// Re-encrypts (possibly edited) documents with the same data key and key groups.
    /// When decrypted with [`DecryptOptions::keep_ivs`], unchanged values keep their IV and
    /// therefore their exact ciphertext.
    pub fn reencrypt(
        &self,
        docs: Vec<Node>,
        format: Format,
        layout: Layout,
    ) -> Result<Vec<u8>, SopsError> {
        seal_docs(
            docs,
            self.metadata.clone(),
            &self.data_key,
            Some(&self.stash),
            format,
            layout,
        )
    }

    /// `updatekeys`: wraps the same data key for a new set of key groups. Values, `mac`
    /// and `lastmodified` stay byte-identical.
    pub fn with_key_groups(
        &self,
        encrypted: EncryptedFile,
        groups: &[Vec<AgeRecipient>],
        shamir_threshold: usize,
        layout: Layout,
    ) -> Result<Vec<u8>, SopsError> {
        let (key_groups, threshold) = wrap_for_groups(&self.data_key, groups, shamir_threshold)?;
        let mut meta = encrypted.metadata;
        meta.key_groups = key_groups;
        meta.shamir_threshold = threshold;
        emit_encrypted(encrypted.docs, &meta, encrypted.format, layout)
    }

    /// `rotate`: a new data key for every value, wrapped for the given groups (or the
    /// file's own recipients when `groups` is `None`).
    pub fn rotate(
        &self,
        groups: Option<&[Vec<AgeRecipient>]>,
        format: Format,
        layout: Layout,
    ) -> Result<Vec<u8>, SopsError> {
        let current: Vec<Vec<AgeRecipient>>;
        let groups = match groups {
            Some(g) => g,
            None => {
                current = self
                    .metadata
                    .key_groups
                    .iter()
                    .map(|g| {
                        g.age
                            .iter()
                            .map(|k| AgeRecipient::parse(&k.recipient))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                &current
            }
        };
        let key = Zeroizing::new(crate::crypto::random_bytes::<32>().to_vec());
        let (key_groups, threshold) =
            wrap_for_groups(&key, groups, self.metadata.shamir_threshold)?;
        let mut meta = self.metadata.clone();
        meta.key_groups = key_groups;
        meta.shamir_threshold = threshold;
        seal_docs(self.docs.clone(), meta, &key, None, format, layout)
    }
}

/// Ensures a file's key groups hold only age keys, which lockstep can re-wrap.
pub fn require_age_only(meta: &Metadata) -> Result<(), SopsError> {
    let other: usize = meta.key_groups.iter().map(|g| g.other_key_count()).sum();
    if other > 0 {
        return Err(SopsError::Unsupported(format!(
            "the file also has {other} non-age key(s) (PGP/KMS/Vault); lockstep can only re-wrap age keys, use sops for this file"
        )));
    }
    Ok(())
}

/// Looks up one value by a sops `--extract` path such as `["a"]["b"][0]`.
pub fn extract<'a>(docs: &'a [Node], path: &str) -> Result<&'a Node, String> {
    let mut node = docs.first().ok_or("empty document")?;
    let mut rest = path.trim();
    while !rest.is_empty() {
        let inner = rest
            .strip_prefix('[')
            .ok_or_else(|| format!("invalid --extract path {path:?}"))?;
        let end = if inner.starts_with('"') {
            let mut i = 1;
            let b = inner.as_bytes();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i + 1
        } else {
            inner
                .find(']')
                .ok_or_else(|| format!("invalid --extract path {path:?}"))?
        };
        let (token, after) = inner.split_at(end.min(inner.len()));
        rest = after
            .strip_prefix(']')
            .ok_or_else(|| format!("invalid --extract path {path:?}"))?;
        if let Some(key) = token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            let key = key.replace("\\\"", "\"");
            node = node
                .get(&key)
                .ok_or_else(|| format!("component [\"{key}\"] not found"))?;
        } else {
            let idx: usize = token
                .trim()
                .parse()
                .map_err(|_| format!("invalid index {token:?} in --extract path"))?;
            match node {
                Node::List(items) => {
                    node = items
                        .iter()
                        .filter(|n| !matches!(n, Node::Comment(_)))
                        .nth(idx)
                        .ok_or_else(|| format!("index {idx} out of range"))?;
                }
                _ => return Err(format!("component [{idx}] is not in a list")),
            }
        }
    }
    Ok(node)
}

/// The bytes `--extract` prints, as sops 3.11 prints them: a string as is; a map as a
/// document; any other value as the output store marshals a lone value (YAML: with a
/// trailing newline, lists as a top-level sequence; JSON: no newline, lists indented).
pub fn extract_output(
    node: &Node,
    format: Format,
    layout: Layout,
) -> Result<Zeroizing<Vec<u8>>, SopsError> {
    let wrapped = || Node::Map(vec![MapItem::Entry("x".into(), node.clone())]);
    match node {
        Node::Scalar(Scalar::Str(t)) => Ok(Zeroizing::new(t.as_str().as_bytes().to_vec())),
        Node::Scalar(Scalar::Bytes(b)) => Ok(Zeroizing::new(b.as_bytes().to_vec())),
        Node::Comment(t) => Ok(Zeroizing::new(t.as_str().as_bytes().to_vec())),
        Node::Map(_) => {
            let f = if format == Format::Json {
                Format::Json
            } else {
                Format::Yaml
            };
            emit_plain(std::slice::from_ref(node), f, layout)
        }
        Node::Scalar(s) if format == Format::Json => Ok(Zeroizing::new(
            cipher::scalar_plaintext(s)
                .map(|(p, _)| match s {
                    Scalar::Bool(b) => b.to_string().into_bytes(),
                    _ => p.to_vec(),
                })
                .unwrap_or_else(|| b"null".to_vec()),
        )),
        Node::List(_) if format == Format::Json => {
            // `{"x": [...]}` without its first and last line and one level of indent.
            let text = Zeroizing::new(stores::json::emit(&wrapped(), layout.json_indent));
            let unit = match layout.json_indent {
                None => "\t".to_string(),
                Some(n) => " ".repeat(n),
            };
            let first = format!("{unit}\"x\": ");
            let lines: Vec<&str> = text.trim_end_matches('\n').lines().collect();
            let inner = &lines[1.min(lines.len())..lines.len().saturating_sub(1).max(1)];
            let out: Vec<&str> = inner
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    if i == 0 {
                        l.strip_prefix(first.as_str()).unwrap_or(l)
                    } else {
                        l.strip_prefix(unit.as_str()).unwrap_or(l)
                    }
                })
                .collect();
            Ok(Zeroizing::new(out.join("\n").into_bytes()))
        }
        Node::List(_) => {
            // `x:` followed by the sequence indented one level: drop both.
            let indent = layout.yaml_indent;
            let text = Zeroizing::new(stores::yaml::emit(&[wrapped()], indent));
            let mut out = String::new();
            for l in text.lines().skip(1) {
                out.push_str(l.get(indent..).unwrap_or(""));
                out.push('\n');
            }
            Ok(Zeroizing::new(out.into_bytes()))
        }
        Node::Scalar(_) => {
            // `x: VALUE\n` without the key: the YAML emitter's own scalar formatting.
            let text = Zeroizing::new(stores::yaml::emit(&[wrapped()], layout.yaml_indent));
            Ok(Zeroizing::new(
                text.strip_prefix("x: ")
                    .unwrap_or(&text)
                    .as_bytes()
                    .to_vec(),
            ))
        }
    }
}
