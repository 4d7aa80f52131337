//! `keys inventory`: which recipients each SealedSecret and SOPS file is encrypted to,
//! so a team can find what still uses an old key.
//!
//! The recipient lists come from the files and are not authenticated; next to them the
//! inventory shows what the age headers themselves say (stanza count and types, SSH key
//! tags) and reports where the two disagree.

use std::path::Path;

use serde::Serialize;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::crypto::age_keys::AgeRecipient;
use crate::crypto::stanzas::{describe, header_stanzas, stanzas_match};
use crate::sealed;
use crate::sops::{self, Format};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub file: String,
    /// `SealedSecret` or `SOPS`.
    pub kind: String,
    /// `SealedSecret ns/name`, or the file's format for SOPS files.
    pub object: String,
    /// As listed in the file (`spec.recipients`, or SOPS `recipient` fields): unverified.
    pub recipients: Vec<String>,
    /// Always false: nothing authenticates the listed recipients.
    pub recipients_verified: bool,
    /// What the age headers show, one description per distinct header
    /// (`2: X25519, ssh-ed25519 (key tag …)`).
    pub stanzas: Vec<String>,
    /// Where the headers contradict the listed recipients.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<String>,
    /// For SOPS files: how many key groups (Shamir) there are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_groups: Option<usize>,
}

fn push_distinct(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// The header of one age file against the recipients listed for it: its description,
/// and a mismatch message when they disagree.
fn judge(file: &[u8], listed: &[String], what: &str) -> (String, Option<String>) {
    let stanzas = match header_stanzas(file) {
        Ok(s) => s,
        Err(e) => return (format!("unreadable: {e}"), Some(format!("{what}: {e}"))),
    };
    let desc = describe(&stanzas);
    let parsed: Result<Vec<AgeRecipient>, _> =
        listed.iter().map(|r| AgeRecipient::parse(r)).collect();
    let problem = match parsed {
        Err(e) => Some(format!("{what}: listed recipient cannot be checked: {e}")),
        Ok(rs) if !stanzas_match(&stanzas, &rs) => Some(format!(
            "{what}: the age header has {desc} stanza(s), which is not what sealing to the {} listed recipient(s) writes",
            rs.len()
        )),
        Ok(_) => None,
    };
    (desc, problem)
}

/// Inventory of one file. Files that are neither are skipped (empty result); files that
/// cannot be read as either give an error message.
pub fn inventory_file(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let file = path.display().to_string();
    let format = Format::for_path(path);
    if let Ok(enc) = sops::load_encrypted(bytes, format) {
        let (mut stanzas, mut mismatches) = (Vec::new(), Vec::new());
        for k in enc.metadata.key_groups.iter().flat_map(|g| &g.age) {
            let what = format!("recipient {}", k.recipient);
            let (desc, problem) =
                judge(k.enc.as_bytes(), std::slice::from_ref(&k.recipient), &what);
            push_distinct(&mut stanzas, desc);
            mismatches.extend(problem);
        }
        return Ok(vec![Entry {
            file,
            kind: "SOPS".into(),
            object: format!("{format:?}").to_lowercase(),
            recipients: enc.metadata.age_recipients().map(str::to_owned).collect(),
            recipients_verified: false,
            stanzas,
            mismatches,
            key_groups: Some(enc.metadata.key_groups.len()),
        }]);
    }
    let docs = match crate::manifest::load_documents(bytes) {
        Ok(docs) => docs,
        // A YAML file whose documents are not mappings (a kustomize JSON 6902 patch is a
        // list) is neither a SOPS file nor a manifest the reconciler would apply: nothing to
        // list, and no reason to fail a walk over a whole repository.
        Err(_) if not_mappings(bytes) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    // `kind: List` items too: `seal -o json` writes several SealedSecrets as a List.
    for (i, doc) in crate::manifest::expand_lists(docs).iter().enumerate() {
        if sealed::is_sealed_secret(doc) {
            let s = sealed::sealed_from_node(doc, &format!("document {}", i + 1))
                .map_err(|e| e.to_string())?;
            let (mut stanzas, mut mismatches) = (Vec::new(), Vec::new());
            for (key, b64) in &s.encrypted_data {
                let what = format!("value {key:?}");
                let (desc, problem) = match STANDARD.decode(b64.trim()) {
                    Ok(bin) => judge(&bin, &s.recipients, &what),
                    Err(_) => (
                        "unreadable: not base64".to_string(),
                        Some(format!("{what}: not valid base64")),
                    ),
                };
                push_distinct(&mut stanzas, desc);
                mismatches.extend(problem);
            }
            out.push(Entry {
                file: file.clone(),
                kind: sealed::KIND.into(),
                object: s.object(),
                recipients: s.recipients.clone(),
                recipients_verified: false,
                stanzas,
                mismatches,
                key_groups: None,
            });
        }
    }
    Ok(out)
}

/// Whether `bytes` is well-formed YAML (not JSON) whose documents are not all mappings.
fn not_mappings(bytes: &[u8]) -> bool {
    use crate::sops::stores::yaml::{YamlError, parse};
    !crate::manifest::is_json(bytes)
        && std::str::from_utf8(bytes).is_ok_and(|text| {
            matches!(
                parse(text),
                Err(YamlError::NotAMap { .. } | YamlError::DocumentNotAMap { .. })
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::age_keys::{self, AgeRecipient};

    #[test]
    fn a_yaml_list_is_nothing_to_list_and_broken_yaml_still_fails() {
        let patch = b"- op: replace\n  path: /spec/replicas\n  value: 3\n";
        let found = inventory_file(Path::new("hpa-patch.yaml"), patch).unwrap();
        assert!(found.is_empty());
        assert!(
            inventory_file(Path::new("x.yaml"), b"a: 1\n---\n- b\n")
                .unwrap()
                .is_empty()
        );
        let err = inventory_file(Path::new("bad.yaml"), b"a: [1\n").unwrap_err();
        assert!(err.contains("line"), "{err}");
    }
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
        assert!(
            found
                .iter()
                .all(|e| e.stanzas == ["1: X25519"] && e.mismatches.is_empty())
        );
    }

    /// A SealedSecret whose `spec.recipients` was edited (one key removed from the list)
    /// is reported: its headers still carry two stanzas.
    #[test]
    fn a_recipient_list_the_headers_contradict_is_reported() {
        let (a, b) = (age_keys::generate(), age_keys::generate());
        let rs = [
            AgeRecipient::parse(&a.recipient).unwrap(),
            AgeRecipient::parse(&b.recipient).unwrap(),
        ];
        let plain = sealed::PlainSecret {
            name: "db".into(),
            namespace: Some("ns".into()),
            template: sealed::Template::default(),
            data: vec![("k".into(), sealed::SecretValue::new(b"v".to_vec()))],
        };
        let mut s = sealed::seal(&plain, &rs, sealed::Scope::Strict).unwrap();
        s.recipients = vec![a.recipient.clone()];
        let yaml = crate::manifest::emit_documents(&[s.to_node()]);
        let found = inventory_file(Path::new("s.yaml"), yaml.as_bytes()).unwrap();
        assert_eq!(found[0].stanzas, ["2: X25519, X25519"]);
        assert!(!found[0].recipients_verified);
        assert_eq!(found[0].mismatches.len(), 1, "{:?}", found[0].mismatches);
        assert!(found[0].mismatches[0].contains("value \"k\""));
    }
}
