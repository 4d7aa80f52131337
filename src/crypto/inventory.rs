//! `keys inventory`: which recipients each SealedSecret and SOPS file is encrypted to,
//! so a team can find what still uses an old key.

use std::path::Path;

use serde::Serialize;

use crate::sealed;
use crate::sops::{self, Format};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub file: String,
    /// `SealedSecret` or `SOPS`.
    pub kind: String,
    /// `SealedSecret ns/name`, or the file's format for SOPS files.
    pub object: String,
    pub recipients: Vec<String>,
    /// For SOPS files: how many key groups (Shamir) there are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_groups: Option<usize>,
}

/// Inventory of one file. Files that are neither are skipped (empty result); files that
/// cannot be read as either give an error message.
pub fn inventory_file(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let file = path.display().to_string();
    let format = Format::for_path(path);
    if let Ok(enc) = sops::load_encrypted(bytes, format) {
        return Ok(vec![Entry {
            file,
            kind: "SOPS".into(),
            object: format!("{format:?}").to_lowercase(),
            recipients: enc.metadata.age_recipients().map(str::to_owned).collect(),
            key_groups: Some(enc.metadata.key_groups.len()),
        }]);
    }
    let docs = crate::manifest::load_documents(bytes)?;
    let mut out = Vec::new();
    // `kind: List` items too: `seal -o json` writes several SealedSecrets as a List.
    for (i, doc) in crate::manifest::expand_lists(docs).iter().enumerate() {
        if sealed::is_sealed_secret(doc) {
            let s = sealed::sealed_from_node(doc, &format!("document {}", i + 1))
                .map_err(|e| e.to_string())?;
            out.push(Entry {
                file: file.clone(),
                kind: sealed::KIND.into(),
                object: s.object(),
                recipients: s.recipients.clone(),
                key_groups: None,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::age_keys::{self, AgeRecipient};
    use crate::sops::tree::{MapItem, Node};

    #[test]
    fn list_items_are_inventoried() {
        let k = age_keys::generate();
        let r = AgeRecipient::parse(&k.recipient).unwrap();
        let mut items = Vec::new();
        for name in ["a", "b"] {
            let plain = sealed::PlainSecret {
                name: name.into(),
                namespace: Some("ns".into()),
                template: sealed::Template::default(),
                data: vec![("k".into(), sealed::SecretValue::new(b"v".to_vec()))],
            };
            let s = sealed::seal(&plain, std::slice::from_ref(&r), sealed::Scope::Strict).unwrap();
            items.push(s.to_node());
        }
        let list = Node::Map(vec![
            MapItem::Entry("apiVersion".into(), Node::str("v1")),
            MapItem::Entry("kind".into(), Node::str("List")),
            MapItem::Entry("items".into(), Node::List(items)),
        ]);
        let json = crate::sops::stores::json::emit(&list, Some(2));
        let found = inventory_file(Path::new("list.json"), json.as_bytes()).unwrap();
        let objects: Vec<_> = found.iter().map(|e| e.object.as_str()).collect();
        assert_eq!(objects, ["SealedSecret ns/a", "SealedSecret ns/b"]);
        assert!(found.iter().all(|e| e.recipients == [k.recipient.clone()]));
    }
}
