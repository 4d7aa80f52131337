//! The binary store (sops `stores/json/store.go` `BinaryStore`).
//!
//! A plain file of any bytes becomes one leaf, `data`, kept as raw bytes (not necessarily
//! UTF-8). Encrypted binary files are JSON envelopes `{"data": "ENC[…]", "sops": {…}}`
//! and are read and written with the JSON store. Decrypting writes the bytes back exactly,
//! with no newline added.

use crate::sops::tree::{Blob, MapItem, Node, Scalar};

/// Why a document cannot be written as a plain binary file. Messages are sops'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    #[error("error emitting binary store: 'data' key in tree does not have a string value")]
    NotAString,
    #[error("error emitting binary store: no binary data found in tree")]
    NoData,
}

/// The whole input as `Map{ "data": Bytes(input) }`.
pub fn parse(input: &[u8]) -> Node {
    Node::Map(vec![MapItem::Entry(
        "data".to_owned(),
        Node::Scalar(Scalar::Bytes(Blob::new(input.to_vec()))),
    )])
}

/// The raw bytes of the first `data` entry (`Bytes` or `Str`), as sops writes them.
pub fn emit_plain(doc: &Node) -> Result<Vec<u8>, BinaryError> {
    let value = doc.get("data").ok_or(BinaryError::NoData)?;
    match value {
        Node::Scalar(Scalar::Bytes(b)) => Ok(b.as_bytes().to_vec()),
        Node::Scalar(Scalar::Str(s)) => Ok(s.as_str().as_bytes().to_vec()),
        _ => Err(BinaryError::NotAString),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sops::stores::json;
    use std::path::PathBuf;

    fn read(rel: &str) -> Vec<u8> {
        let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/sops"));
        let p = p.join(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn blob_roundtrips_non_utf8() {
        let plain = read("08-binary/blob.plain.bin");
        assert!(
            std::str::from_utf8(&plain).is_err(),
            "vector should not be UTF-8"
        );
        let out = emit_plain(&parse(&plain)).unwrap();
        assert_eq!(out, plain);
        assert_eq!(out, read("08-binary/blob.decrypted.bin"));
    }

    #[test]
    fn text_and_empty_roundtrip() {
        for (p, d) in [
            ("08-binary/notes.plain.txt", "08-binary/notes.decrypted.txt"),
            ("14-misc/empty.plain.bin", "14-misc/empty.decrypted.bin"),
        ] {
            assert_eq!(emit_plain(&parse(&read(p))).unwrap(), read(d), "{p}");
        }
        assert_eq!(emit_plain(&parse(b"")).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn str_data_and_errors() {
        let doc = Node::Map(vec![
            MapItem::Entry("other".into(), Node::str("x")),
            MapItem::Entry("data".into(), Node::str("hé\n")),
        ]);
        assert_eq!(emit_plain(&doc).unwrap(), "hé\n".as_bytes());
        let doc = Node::Map(vec![MapItem::Entry("data".into(), Node::map())]);
        assert_eq!(emit_plain(&doc), Err(BinaryError::NotAString));
        assert_eq!(emit_plain(&Node::map()), Err(BinaryError::NoData));
        assert_eq!(
            BinaryError::NoData.to_string(),
            "error emitting binary store: no binary data found in tree"
        );
    }

    #[test]
    fn encrypted_envelope_is_json() {
        let enc = read("08-binary/blob.enc.bin");
        let doc = json::parse(&enc).unwrap();
        assert!(
            doc.get("data")
                .and_then(Node::as_str)
                .is_some_and(|s| s.starts_with("ENC["))
        );
        assert!(
            doc.get("sops")
                .and_then(|m| m.get("unencrypted_suffix"))
                .is_none()
        );
        assert_eq!(json::emit(&doc, None).as_bytes(), &enc[..]);
    }
}
