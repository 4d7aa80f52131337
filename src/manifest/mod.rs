//! Manifest files: finding them under paths in a deterministic order, reading them as
//! documents (YAML multi-document or JSON) and writing documents back.

use std::path::{Path, PathBuf};

use crate::sops::tree::{MapItem, Node, Scalar};

/// Whether bytes are a JSON object (rather than YAML).
pub fn is_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Reads a manifest file: YAML (multi-document) or JSON (a single object).
pub fn load_documents(bytes: &[u8]) -> Result<Vec<Node>, String> {
    if is_json(bytes) {
        return crate::sops::stores::json::parse(bytes)
            .map(|d| vec![d])
            .map_err(|e| e.to_string());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    crate::sops::stores::yaml::parse(text).map_err(|e| e.to_string().replace('\n', " "))
}

/// Whether a document is a `kind: List` (or `…List`) with `items`, as kubectl prints
/// several objects.
pub fn is_list(doc: &Node) -> bool {
    doc.get("kind")
        .and_then(Node::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && matches!(doc.get("items"), Some(Node::List(_)))
}

/// Expands `kind: List` documents into their items, Lists inside Lists too (kubectl
/// flattens them the same way). Items that are not maps are dropped; [`objects`] refuses them.
pub fn expand_lists(docs: Vec<Node>) -> Vec<Node> {
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        let _ = flatten(doc, &mut |item| {
            if matches!(item, Node::Map(_)) {
                out.push(item);
            }
            Ok(())
        });
    }
    out
}

/// Calls `each` with every item of `doc` if it is a List (recursively), else with `doc`.
fn flatten(doc: Node, each: &mut dyn FnMut(Node) -> Result<(), String>) -> Result<(), String> {
    if !is_list(&doc) {
        return each(doc);
    }
    let Node::Map(items) = doc else {
        return Ok(());
    };
    for item in items {
        if let MapItem::Entry(k, Node::List(objs)) = item
            && k == "items"
        {
            for (i, obj) in objs.into_iter().enumerate() {
                match obj {
                    Node::Comment(_) => {}
                    Node::Map(_) => flatten(obj, each).map_err(|e| format!("items[{i}].{e}"))?,
                    _ => return Err(format!("items[{i}]: a List item must be an object")),
                }
            }
        }
    }
    Ok(())
}

/// Why a manifest file cannot be read as Kubernetes objects. Messages never quote a value.
#[derive(Debug, thiserror::Error)]
#[error("{}{}{message}", document.map(|d| format!("document {d}: ")).unwrap_or_default(), key.as_ref().map(|k| format!("key path {k}: ")).unwrap_or_default())]
pub struct ManifestError {
    /// 1-based line the parser points at, when it knows one.
    pub line: Option<usize>,
    /// 1-based document of the file the error is about (object errors).
    pub document: Option<usize>,
    /// Key path inside the document (`metadata.namespace`, `items[2]`).
    pub key: Option<String>,
    pub message: String,
}

impl ManifestError {
    fn parse(line: usize, message: String) -> Self {
        ManifestError {
            line: Some(line),
            document: None,
            key: None,
            message,
        }
    }
}

/// Parses a manifest file the one way `render`, `check` and the reconciler read it:
/// like [`load_documents`], but a duplicate key in any mapping of any document, a YAML
/// merge key, an alias into another document or an undecodable scalar is an error
/// naming the line (and the key). kubectl and the API server would read such a file
/// differently from lockstep (Go keeps the last of duplicate keys, lockstep the first),
/// so policy could pass one object while another is applied.
pub fn parse_strict(bytes: &[u8]) -> Result<Vec<Node>, ManifestError> {
    parse_strict_as(bytes, is_json(bytes))
}

/// [`parse_strict`] with the syntax given: SOPS files are read by their extension.
pub fn parse_strict_as(bytes: &[u8], json: bool) -> Result<Vec<Node>, ManifestError> {
    use crate::sops::stores::json::{self, JsonError};
    if json {
        return json::parse_manifest(bytes)
            .map(|d| vec![d])
            .map_err(|e| match e {
                // sops' message quotes the value, which may be a pasted token.
                JsonError::NotAnObject { line, .. } => ManifestError::parse(
                    line,
                    format!("line {line}: the top-level value is not a JSON object"),
                ),
                JsonError::DuplicateKey { line, .. }
                | JsonError::Syntax { line, .. }
                | JsonError::TooDeep { line, .. } => ManifestError::parse(line, e.to_string()),
                other => ManifestError::parse(1, other.to_string()),
            });
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ManifestError::parse(1, format!("not UTF-8: {e}")))?;
    crate::sops::stores::yaml::parse_manifest(text)
        .map_err(|e| ManifestError::parse(e.line(), e.to_string().replace('\n', " ")))
}

/// A manifest file as read: SOPS-encrypted (documents still encrypted) or plain.
pub enum ManifestFile {
    Sops(crate::sops::EncryptedFile),
    Plain(Vec<Node>),
}

/// Reads a manifest file the way `render`, `check` and the reconciler all do: a file with
/// SOPS metadata is a SOPS file (format by extension); its text is held to
/// [`parse_strict`]'s rules too, since SOPS leaves keys in clear and its parser checks
/// only the first document. Anything else is read with [`parse_strict`].
pub fn read_file(path: &Path, bytes: &[u8]) -> Result<ManifestFile, ManifestError> {
    use crate::sops::{self, Format, SopsError};
    let json = Format::for_path(path) == Format::Json;
    let format = if json { Format::Json } else { Format::Yaml };
    match sops::load_encrypted(bytes, format) {
        Ok(enc) => {
            parse_strict_as(bytes, json)?;
            Ok(ManifestFile::Sops(enc))
        }
        // Not a SOPS file (or not one that parses as such): the plain reading decides,
        // with its own, value-free errors.
        Err(
            SopsError::NoMetadata
            | SopsError::Parse { .. }
            | SopsError::Empty
            | SopsError::NonStringKey(_),
        ) => parse_strict(bytes).map(ManifestFile::Plain),
        Err(e) => Err(ManifestError::parse(1, format!("bad SOPS metadata: {e}"))),
    }
}

/// A document that holds nothing (empty, or only comments).
pub fn is_empty_doc(doc: &Node) -> bool {
    match doc {
        Node::Map(items) => items.iter().all(|i| matches!(i, MapItem::Comment(_))),
        Node::Scalar(Scalar::Null) => true,
        _ => false,
    }
}

/// The objects of a file's documents, as they go to policy and to the API server: empty
/// documents left out, Lists expanded (recursively), each paired with its 1-based
/// document number. A List item that is not an object, a `metadata` that is not a map
/// and a `metadata.namespace` that is not a non-empty string (`namespace: ~` would
/// otherwise slip past defaulting and the namespace rules) are errors.
pub fn objects(docs: Vec<Node>) -> Result<Vec<(usize, Node)>, ManifestError> {
    let mut out = Vec::with_capacity(docs.len());
    for (i, doc) in docs.into_iter().enumerate() {
        if is_empty_doc(&doc) {
            continue;
        }
        let document = i + 1;
        let obj_err = |key: String, message: &str| ManifestError {
            line: None,
            document: Some(document),
            key: Some(key),
            message: message.to_owned(),
        };
        let mut problem = None;
        let r = flatten(doc, &mut |obj| {
            if problem.is_none()
                && let Some((key, message)) = object_problem(&obj)
            {
                problem = Some((key, message));
                return Err(String::new());
            }
            out.push((document, obj));
            Ok(())
        });
        match (problem, r) {
            (Some((key, message)), Err(prefix)) => {
                let key = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}{key}")
                };
                return Err(obj_err(key, message));
            }
            (None, Err(e)) => {
                let (key, message) = e.split_once(": ").unwrap_or(("items", e.as_str()));
                return Err(obj_err(key.to_owned(), message));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// What is wrong with one object's metadata, as (key path, message).
fn object_problem(obj: &Node) -> Option<(&'static str, &'static str)> {
    let meta = obj.get("metadata")?;
    let Node::Map(_) = meta else {
        return Some(("metadata", "must be a map"));
    };
    match meta.get("namespace") {
        None => None,
        Some(ns) if ns.as_str().is_some_and(|s| !s.is_empty()) => None,
        Some(_) => Some((
            "metadata.namespace",
            "must be a non-empty string (to use the destination namespace, leave the key out)",
        )),
    }
}

/// Writes manifests as multi-document YAML with Kubernetes' usual 2-space indent.
pub fn emit_documents(docs: &[Node]) -> String {
    crate::sops::stores::yaml::emit(docs, 2)
}

/// Extensions of manifest files.
pub fn is_manifest_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Every manifest file under the given paths (files are taken as given; directories
/// are walked recursively, hidden entries skipped), sorted, without duplicates.
/// Symbolic links are not followed into directories, so a walk cannot loop or leave
/// the tree it was given.
pub fn manifest_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let ty = e.file_type()?;
        let path = e.path();
        if ty.is_dir() {
            walk(&path, out)?;
        } else if ty.is_file() && is_manifest_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict_err(text: &str) -> ManifestError {
        match parse_strict(text.as_bytes()) {
            Ok(docs) => panic!("{text:?} parsed strictly into {} documents", docs.len()),
            Err(e) => e,
        }
    }

    #[test]
    fn strict_parse_refuses_duplicate_keys_in_any_document_at_any_depth() {
        // sops' reading (kept for encrypt/decrypt) checks the first document only.
        let second_doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nmetadata: {name: y, namespace: team-a}\nmetadata: {name: y, namespace: kube-system}\n";
        assert_eq!(load_documents(second_doc.as_bytes()).unwrap().len(), 2);
        let e = strict_err(second_doc);
        assert_eq!(e.line, Some(6));
        assert!(
            e.message
                .contains("mapping key \"metadata\" already defined at line 5"),
            "{e}"
        );
        // Deep in a later document, and with differently quoted spellings of one key.
        let e = strict_err("a: 1\n---\nspec:\n  template:\n    x: 1\n    'x': 2\n");
        assert_eq!(e.line, Some(6));
        assert!(e.message.contains("\"x\""), "{e}");
        // A key written through an alias is a key like any other.
        let e = strict_err("k: &k name\nm:\n  name: a\n  *k : b\n");
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("\"name\""), "{e}");
        // JSON: Go's decoder keeps the last of two keys, sops' reading keeps both.
        let json = "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\",\n \"metadata\": {\"name\": \"x\",\n  \"na\\u006despace\": \"a\", \"namespace\": \"b\"}}";
        assert_eq!(load_documents(json.as_bytes()).unwrap().len(), 1);
        let e = strict_err(json);
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("duplicate key \"namespace\""), "{e}");
        // Distinct keys and the same key in different maps are fine.
        assert_eq!(
            parse_strict(b"a: {x: 1}\nb: {x: 1}\n---\na: 2\n")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn strict_parse_refuses_merge_keys_and_aliases_into_other_documents() {
        let e = strict_err("b: &b {namespace: team-a}\nmetadata:\n  <<: *b\n  name: x\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("merge key"), "{e}");
        let e = strict_err("metadata:\n  !!merge x: {a: 1}\n");
        assert!(e.message.contains("merge key"), "{e}");
        // A quoted "<<" is an ordinary key for kubectl too.
        assert!(parse_strict(b"'<<': 1\n").is_ok());
        let e = strict_err("a: &m {name: x}\n---\nmetadata: *m\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("unknown anchor"), "{e}");
        // Within one document aliases expand as before.
        let docs = parse_strict(b"a: &m {name: x}\nmetadata: *m\n").unwrap();
        assert_eq!(
            docs[0]
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Node::as_str),
            Some("x")
        );
        // A value that does not decode as its tag is an error in later documents too.
        assert!(load_documents(b"a: 1\n---\nb: !!int x\n").is_ok());
        assert!(
            strict_err("a: 1\n---\nb: !!int x\n")
                .message
                .contains("!!int")
        );
    }

    #[test]
    fn strict_parse_never_quotes_a_top_level_scalar() {
        for text in [
            "\"canary-top-1\"\n",
            "canary-top-1\n",
            "a: 1\n---\ncanary-top-1\n",
            "'canary-top-1'",
        ] {
            let e = strict_err(text);
            assert!(!e.to_string().contains("canary"), "{text:?}: {e}");
            assert!(!format!("{e:?}").contains("canary"), "{text:?}: {e:?}");
        }
        let e = parse_strict_as(b"\"canary-top-1\"", true).unwrap_err();
        assert!(!e.to_string().contains("canary"), "{e}");
        assert!(e.message.contains("not a JSON object"), "{e}");
    }

    #[test]
    fn objects_expand_nested_lists_and_refuse_bad_namespaces() {
        let docs = parse_strict(b"---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- apiVersion: v1\n  kind: List\n  items:\n  - {apiVersion: v1, kind: Secret, metadata: {name: b}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n").unwrap();
        let objs = objects(docs).unwrap();
        let got: Vec<_> = objs
            .iter()
            .map(|(d, o)| {
                (
                    *d,
                    o.get("kind").and_then(Node::as_str).unwrap_or(""),
                    o.get("metadata")
                        .and_then(|m| m.get("name"))
                        .and_then(Node::as_str)
                        .unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (2, "ConfigMap", "a"),
                (2, "Secret", "b"),
                (3, "ConfigMap", "c")
            ]
        );

        for (text, key) in [
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ~}\n",
                "metadata.namespace",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ''}\n",
                "metadata.namespace",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: 7}\n",
                "metadata.namespace",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: [a]\n",
                "metadata",
            ),
            (
                "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: [{kind: X, metadata: {namespace: ~}}]}\n",
                "items[0].items[0].metadata.namespace",
            ),
            (
                "apiVersion: v1\nkind: List\nitems:\n- {kind: X}\n- just-text\n",
                "items[1]",
            ),
        ] {
            let e = objects(parse_strict(text.as_bytes()).unwrap()).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text:?}: {e}");
            assert_eq!(e.document, Some(1), "{text:?}: {e}");
        }
    }

    #[test]
    fn walks_sorted_and_skips_hidden_and_other_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("b/c")).unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        for f in [
            "b/c/z.yaml",
            "b/a.json",
            "a.yml",
            "notes.txt",
            ".git/x.yaml",
        ] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        let got = manifest_files(&[d.path().to_path_buf()]).unwrap();
        let rel: Vec<_> = got
            .iter()
            .map(|p| {
                p.strip_prefix(d.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(rel, ["a.yml", "b/a.json", "b/c/z.yaml"]);
    }
}
