//! The document model shared by every SOPS store: an ordered tree of maps, lists,
//! scalars and comments, as sops keeps it (sops.go `TreeBranch`/`TreeItem`).
//!
//! Key order and duplicate keys are preserved exactly because the MAC depends on
//! document order. String, byte, time and comment contents are wrapped in [`Text`] /
//! [`Blob`], which zeroize on drop and print as a redaction, because after decryption
//! they hold plaintext secrets.

use std::fmt;
use zeroize::Zeroize;

/// A value in a document. A document itself is always a `Node::Map`.
#[derive(Clone, PartialEq, Debug)]
pub enum Node {
    /// An ordered mapping. Entries keep file order; duplicates (JSON) are kept.
    Map(Vec<MapItem>),
    /// A sequence. Items may be `Node::Comment` (sops stores comments inside lists
    /// as list items).
    List(Vec<Node>),
    Scalar(Scalar),
    /// A comment stored as a list item. In maps comments are `MapItem::Comment`.
    Comment(Text),
}

/// One entry of a mapping: a key/value pair or a comment line placed between entries.
#[derive(Clone, PartialEq, Debug)]
pub enum MapItem {
    Entry(String, Node),
    /// Comment text without the leading `#` (the space after `#` is kept).
    Comment(Text),
}

/// A scalar, typed as sops types it after yaml.v3 (or JSON) resolution.
///
/// Numbers and booleans can be secrets too (a PIN, a port that must stay private), so
/// they are zeroized on drop and redacted in `Debug` like strings.
#[derive(Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Text),
    /// A timestamp, kept as its canonical RFC 3339 text (Go `time.Time.MarshalText`).
    Time(Text),
    /// Raw bytes: the single value of the binary store, or a decrypted `type:bytes`.
    Bytes(Blob),
}

impl Drop for Scalar {
    fn drop(&mut self) {
        match self {
            Scalar::Bool(b) => b.zeroize(),
            Scalar::Int(i) => i.zeroize(),
            Scalar::Float(f) => f.zeroize(),
            // Text and Blob zeroize themselves.
            Scalar::Null | Scalar::Str(_) | Scalar::Time(_) | Scalar::Bytes(_) => {}
        }
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Null => f.write_str("Null"),
            Scalar::Bool(_) => f.write_str("Bool(<redacted>)"),
            Scalar::Int(_) => f.write_str("Int(<redacted>)"),
            Scalar::Float(_) => f.write_str("Float(<redacted>)"),
            Scalar::Str(t) => write!(f, "Str({t:?})"),
            Scalar::Time(t) => write!(f, "Time({t:?})"),
            Scalar::Bytes(b) => write!(f, "Bytes({b:?})"),
        }
    }
}

impl Node {
    pub fn str(s: impl Into<String>) -> Node {
        Node::Scalar(Scalar::Str(Text::new(s.into())))
    }
    pub fn map() -> Node {
        Node::Map(Vec::new())
    }
    /// The entries of a map, or `None` for any other node.
    pub fn as_map(&self) -> Option<&Vec<MapItem>> {
        match self {
            Node::Map(items) => Some(items),
            _ => None,
        }
    }
    pub fn as_map_mut(&mut self) -> Option<&mut Vec<MapItem>> {
        match self {
            Node::Map(items) => Some(items),
            _ => None,
        }
    }
    /// First value under `key` in a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find_map(|item| match item {
            MapItem::Entry(k, v) if k == key => Some(v),
            _ => None,
        })
    }
    /// The string value of a scalar string node.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar(Scalar::Str(t)) => Some(t.as_str()),
            _ => None,
        }
    }
}

/// UTF-8 text that may be a secret: zeroized on drop, redacted in `Debug`/`Display`.
#[derive(Clone, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct Text(String);

impl Text {
    pub fn new(s: String) -> Self {
        Text(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Moves the string out, leaving an empty one (nothing left to zeroize).
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(s.to_owned())
    }
}
impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(s)
    }
}
impl Drop for Text {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}
impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}
impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Bytes that may be a secret: zeroized on drop, redacted in `Debug`/`Display`.
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct Blob(Vec<u8>);

impl Blob {
    pub fn new(b: Vec<u8>) -> Self {
        Blob(b)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}
impl From<Vec<u8>> for Blob {
    fn from(b: Vec<u8>) -> Self {
        Blob(b)
    }
}
impl Drop for Blob {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}
impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}
impl fmt::Display for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_text_is_redacted_in_debug_and_display() {
        let n = Node::str("canary-8c1f");
        let shown = format!("{n:?} {}", Text::from("canary-8c1f"));
        assert!(!shown.contains("canary"), "{shown}");
        assert_eq!(n.as_str(), Some("canary-8c1f"));
    }

    #[test]
    fn non_string_scalars_and_comments_are_redacted_in_debug() {
        let nodes = [
            Node::Scalar(Scalar::Int(918_273_645)),
            Node::Scalar(Scalar::Float(31_415.926_5)),
            Node::Scalar(Scalar::Bool(true)),
            Node::Comment(Text::from("canary-comment")),
            Node::Map(vec![MapItem::Comment(Text::from("canary-comment"))]),
        ];
        let shown = format!("{nodes:?}");
        for canary in ["918273645", "31415", "true", "canary"] {
            assert!(!shown.contains(canary), "{canary} in {shown}");
        }
        assert!(shown.contains("Int(<redacted>)"), "{shown}");
    }
}
