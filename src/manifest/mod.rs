//! Manifest files: finding them under paths in a deterministic order, reading them as
//! documents (YAML multi-document or JSON) and writing documents back.

use std::path::{Path, PathBuf};

use crate::sops::tree::{MapItem, Node};

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

/// Expands `kind: List` documents into their items.
pub fn expand_lists(docs: Vec<Node>) -> Vec<Node> {
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        match (is_list(&doc), doc) {
            (true, Node::Map(items)) => {
                for item in items {
                    if let MapItem::Entry(k, Node::List(objs)) = item
                        && k == "items"
                    {
                        out.extend(objs.into_iter().filter(|o| matches!(o, Node::Map(_))));
                    }
                }
            }
            (_, doc) => out.push(doc),
        }
    }
    out
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
