//! The `sops` metadata block (sops `stores/stores.go` `Metadata`), read from and written
//! to the document tree in the order sops 3.11 writes it.

use crate::sops::tree::{MapItem, Node, Scalar};

/// Which values are encrypted (only one option per file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(String),
    EncryptedRegex(String),
    UnencryptedCommentRegex(String),
    EncryptedCommentRegex(String),
}

impl Selection {
    pub const DEFAULT_UNENCRYPTED_SUFFIX: &'static str = "_unencrypted";

    pub fn key(&self) -> &'static str {
        match self {
            Selection::UnencryptedSuffix(_) => "unencrypted_suffix",
            Selection::EncryptedSuffix(_) => "encrypted_suffix",
            Selection::UnencryptedRegex(_) => "unencrypted_regex",
            Selection::EncryptedRegex(_) => "encrypted_regex",
            Selection::UnencryptedCommentRegex(_) => "unencrypted_comment_regex",
            Selection::EncryptedCommentRegex(_) => "encrypted_comment_regex",
        }
    }
    pub fn value(&self) -> &str {
        match self {
            Selection::UnencryptedSuffix(s)
            | Selection::EncryptedSuffix(s)
            | Selection::UnencryptedRegex(s)
            | Selection::EncryptedRegex(s)
            | Selection::UnencryptedCommentRegex(s)
            | Selection::EncryptedCommentRegex(s) => s,
        }
    }
    /// Regex options (as opposed to suffixes).
    pub fn is_regex(&self) -> bool {
        !matches!(
            self,
            Selection::UnencryptedSuffix(_) | Selection::EncryptedSuffix(_)
        )
    }

    fn from_key(key: &str, v: String) -> Option<Self> {
        Some(match key {
            "unencrypted_suffix" => Selection::UnencryptedSuffix(v),
            "encrypted_suffix" => Selection::EncryptedSuffix(v),
            "unencrypted_regex" => Selection::UnencryptedRegex(v),
            "encrypted_regex" => Selection::EncryptedRegex(v),
            "unencrypted_comment_regex" => Selection::UnencryptedCommentRegex(v),
            "encrypted_comment_regex" => Selection::EncryptedCommentRegex(v),
            _ => return None,
        })
    }
}

const SELECTION_KEYS: [&str; 6] = [
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
];

/// Key types sops knows besides age. lockstep keeps their entries verbatim so that a
/// file shared with PGP or KMS users does not lose them, but cannot use them.
const OTHER_KEY_TYPES_BEFORE_AGE: [&str; 5] = ["kms", "gcp_kms", "hckms", "azure_kv", "hc_vault"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgeKey {
    pub recipient: String,
    /// The armored age file wrapping the data key (or this group's Shamir share).
    pub enc: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyGroup {
    pub age: Vec<AgeKey>,
    /// Non-age key lists (`pgp`, `kms`, …) kept as they were read.
    pub other: Vec<(String, Node)>,
}

impl KeyGroup {
    /// Keys of other types that hold entries (lockstep cannot use them).
    pub fn other_key_count(&self) -> usize {
        self.other
            .iter()
            .map(|(_, n)| match n {
                Node::List(l) => l.len(),
                _ => 0,
            })
            .sum()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    /// 0 when not set.
    pub shamir_threshold: usize,
    pub key_groups: Vec<KeyGroup>,
    pub lastmodified: String,
    pub mac: String,
    /// `None` only for the binary store, which writes no option; readers then use the
    /// default `_unencrypted` suffix.
    pub selection: Option<Selection>,
    pub mac_only_encrypted: bool,
    pub version: String,
}

/// Errors in the metadata block. The caller adds the file name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("sops metadata not found")]
    NotFound,
    #[error("sops metadata is not a mapping")]
    NotAMap,
    #[error("sops metadata: {0} must be {1}")]
    BadField(String, &'static str),
    #[error(
        "Cannot use more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, or unencrypted_comment_regex in the same file"
    )]
    SeveralSelections,
    #[error("No keys found in file")]
    NoKeys,
    #[error("Version string empty")]
    VersionEmpty,
    #[error("invalid sops version {0:?}: No Major.Minor.Patch elements found")]
    BadVersion(String),
    #[error("invalid lastmodified {0:?}: not an RFC 3339 time")]
    BadLastModified(String),
}

fn scalar_text(n: &Node) -> Option<String> {
    match n {
        Node::Scalar(Scalar::Str(t)) | Node::Scalar(Scalar::Time(t)) => Some(t.as_str().to_owned()),
        Node::Scalar(Scalar::Int(i)) => Some(i.to_string()),
        Node::Scalar(Scalar::Float(f)) => Some(crate::sops::cipher::format_go_float(*f)),
        Node::Scalar(Scalar::Bool(b)) => Some(b.to_string()),
        _ => None,
    }
}

fn entries(n: &Node) -> impl Iterator<Item = (&str, &Node)> {
    n.as_map().into_iter().flatten().filter_map(|i| match i {
        MapItem::Entry(k, v) => Some((k.as_str(), v)),
        MapItem::Comment(_) => None,
    })
}

fn list_len(n: &Node) -> usize {
    match n {
        Node::List(l) => l.len(),
        _ => 0,
    }
}

fn read_group(n: &Node, prefix: &str) -> Result<KeyGroup, MetadataError> {
    let mut g = KeyGroup::default();
    for (k, v) in entries(n) {
        if k == "age" {
            let Node::List(items) = v else {
                if matches!(v, Node::Scalar(Scalar::Null)) {
                    continue;
                }
                return Err(MetadataError::BadField(format!("{prefix}age"), "a list"));
            };
            for item in items {
                let recipient = item.get("recipient").and_then(scalar_text).ok_or_else(|| {
                    MetadataError::BadField(format!("{prefix}age[].recipient"), "a string")
                })?;
                let enc = item.get("enc").and_then(scalar_text).ok_or_else(|| {
                    MetadataError::BadField(format!("{prefix}age[].enc"), "a string")
                })?;
                g.age.push(AgeKey { recipient, enc });
            }
        } else if OTHER_KEY_TYPES_BEFORE_AGE.contains(&k) || k == "pgp" {
            g.other.push((k.to_owned(), v.clone()));
        }
    }
    Ok(g)
}

/// A version sops accepts: semver (optional leading `v`) or starting with `1.`.
fn version_ok(v: &str) -> bool {
    if v.starts_with("1.") {
        return true;
    }
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

impl Metadata {
    pub fn from_node(node: &Node) -> Result<Metadata, MetadataError> {
        if node.as_map().is_none() {
            return Err(MetadataError::NotAMap);
        }
        let get_text = |k: &str| node.get(k).and_then(scalar_text);

        let mut selections = Vec::new();
        for key in SELECTION_KEYS {
            if let Some(v) = get_text(key)
                && !v.is_empty()
            {
                selections.extend(Selection::from_key(key, v));
            }
        }
        if selections.len() > 1 {
            return Err(MetadataError::SeveralSelections);
        }
        let selection = selections.pop();

        let top = read_group(node, "")?;
        let key_groups = if !top.age.is_empty() || top.other_key_count() > 0 {
            vec![top]
        } else if let Some(Node::List(groups)) = node.get("key_groups") {
            groups
                .iter()
                .enumerate()
                .map(|(i, g)| read_group(g, &format!("key_groups[{i}].")))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        if key_groups
            .iter()
            .all(|g| g.age.is_empty() && g.other_key_count() == 0)
        {
            return Err(MetadataError::NoKeys);
        }

        let lastmodified = get_text("lastmodified").unwrap_or_default();
        if crate::sops::gotime::lastmodified_aad(&lastmodified).is_none() {
            return Err(MetadataError::BadLastModified(lastmodified));
        }
        let version = match node.get("version") {
            None | Some(Node::Scalar(Scalar::Null)) => return Err(MetadataError::VersionEmpty),
            Some(Node::Scalar(Scalar::Str(t))) => t.as_str().to_owned(),
            Some(other) => scalar_text(other).unwrap_or_default(),
        };
        if version.is_empty() {
            return Err(MetadataError::VersionEmpty);
        }
        if !version_ok(&version) {
            return Err(MetadataError::BadVersion(version));
        }
        let shamir_threshold = match node.get("shamir_threshold") {
            None | Some(Node::Scalar(Scalar::Null)) => 0,
            Some(n) => scalar_text(n)
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| MetadataError::BadField("shamir_threshold".into(), "an integer"))?,
        };
        let mac_only_encrypted = match node.get("mac_only_encrypted") {
            None | Some(Node::Scalar(Scalar::Null)) => false,
            Some(Node::Scalar(Scalar::Bool(b))) => *b,
            Some(n) => crate::sops::cipher::parse_go_bool(&scalar_text(n).unwrap_or_default())
                .ok_or_else(|| MetadataError::BadField("mac_only_encrypted".into(), "a boolean"))?,
        };
        Ok(Metadata {
            shamir_threshold,
            key_groups,
            lastmodified,
            mac: get_text("mac").unwrap_or_default(),
            selection,
            mac_only_encrypted,
            version,
        })
    }

    /// The selection rule to apply when reading (the default suffix when none is set).
    pub fn effective_selection(&self) -> Selection {
        self.selection.clone().unwrap_or_else(|| {
            Selection::UnencryptedSuffix(Selection::DEFAULT_UNENCRYPTED_SUFFIX.into())
        })
    }

    /// Every age recipient in the file, in group order.
    pub fn age_recipients(&self) -> impl Iterator<Item = &str> {
        self.key_groups
            .iter()
            .flat_map(|g| g.age.iter().map(|k| k.recipient.as_str()))
    }

    /// The metadata as sops 3.11 writes it. `json` selects `"hc_vault": null` in groups
    /// (JSON) instead of `hc_vault: []` (YAML).
    pub fn to_node(&self, json: bool) -> Node {
        let mut m = Vec::new();
        let entry = |k: &str, v: Node| MapItem::Entry(k.to_owned(), v);
        if self.shamir_threshold != 0 {
            m.push(entry(
                "shamir_threshold",
                Node::Scalar(Scalar::Int(self.shamir_threshold as i64)),
            ));
        }
        let single = self.key_groups.len() <= 1;
        if !single {
            let groups = self
                .key_groups
                .iter()
                .map(|g| {
                    let mut gm = Vec::new();
                    for t in OTHER_KEY_TYPES_BEFORE_AGE {
                        let found = g.other.iter().find(|(k, _)| k == t);
                        if t == "hc_vault" {
                            let v = match found {
                                Some((_, v)) if list_len(v) > 0 => v.clone(),
                                _ if json => Node::Scalar(Scalar::Null),
                                _ => Node::List(Vec::new()),
                            };
                            gm.push(entry(t, v));
                        } else if let Some((_, v)) = found.filter(|(_, v)| list_len(v) > 0) {
                            gm.push(entry(t, v.clone()));
                        }
                    }
                    gm.push(entry("age", age_list(&g.age)));
                    if let Some((_, v)) =
                        g.other.iter().find(|(k, v)| k == "pgp" && list_len(v) > 0)
                    {
                        gm.push(entry("pgp", v.clone()));
                    }
                    Node::Map(gm)
                })
                .collect();
            m.push(entry("key_groups", Node::List(groups)));
        }
        let group = if single {
            self.key_groups.first()
        } else {
            None
        };
        if let Some(g) = group {
            for t in OTHER_KEY_TYPES_BEFORE_AGE {
                if let Some((_, v)) = g.other.iter().find(|(k, v)| k == t && list_len(v) > 0) {
                    m.push(entry(t, v.clone()));
                }
            }
            if !g.age.is_empty() {
                m.push(entry("age", age_list(&g.age)));
            }
        }
        m.push(entry("lastmodified", Node::str(self.lastmodified.clone())));
        m.push(entry("mac", Node::str(self.mac.clone())));
        if let Some(g) = group
            && let Some((_, v)) = g.other.iter().find(|(k, v)| k == "pgp" && list_len(v) > 0)
        {
            m.push(entry("pgp", v.clone()));
        }
        if let Some(sel) = &self.selection {
            m.push(entry(sel.key(), Node::str(sel.value().to_owned())));
        }
        if self.mac_only_encrypted {
            m.push(entry(
                "mac_only_encrypted",
                Node::Scalar(Scalar::Bool(true)),
            ));
        }
        m.push(entry("version", Node::str(self.version.clone())));
        Node::Map(m)
    }
}

fn age_list(keys: &[AgeKey]) -> Node {
    Node::List(
        keys.iter()
            .map(|k| {
                Node::Map(vec![
                    MapItem::Entry("recipient".into(), Node::str(k.recipient.clone())),
                    MapItem::Entry("enc".into(), Node::str(k.enc.clone())),
                ])
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_sops_accepts_them() {
        for ok in ["3.11.0", "1.0", "0.1.0-rust", "4.0.0", "v3.7.1"] {
            assert!(version_ok(ok), "{ok}");
        }
        for bad in ["3.9", "rustsops-0.1", "mytool-0.1", ""] {
            assert!(!version_ok(bad), "{bad}");
        }
    }
}
