//! The checks behind `lockstep check`, usable from a pre-commit hook or CI without any
//! secret: plaintext Secrets, unparsable manifests, SOPS MAC failures (with an identity),
//! policy violations. Findings carry the line where the offending document starts.

use std::path::{Path, PathBuf};

use crate::crypto::age_keys::Identities;
use crate::manifest::ManifestFile;
use crate::policy::{PolicySet, Subject};
use crate::render::{parse_vault_ref, scrub_quoted};
use crate::sealed;
use crate::sops::tree::{MapItem, Node, Scalar};
use crate::sops::{self, DecryptOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// 1-based line where each YAML document starts: its first line of content, after the
/// `---` separator and any blank or comment lines.
fn document_lines(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    let mut first_content_seen = false;
    // The current document has no content yet: its first content line is its start.
    let mut awaiting = true;
    // The first document was opened by an explicit `---`.
    let mut opened = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let is_sep = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_content = !line.trim().is_empty() && !line.trim_start().starts_with('#');
        if is_sep {
            if first_content_seen || opened {
                starts.push(n + 1);
            } else {
                starts[0] = n + 1;
            }
            // A second separator before any content closes an empty first document.
            opened = true;
            awaiting = true;
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                // `--- {a: 1}`: the document starts on the separator's line.
                *starts.last_mut().expect("never empty") = n;
                awaiting = false;
                first_content_seen = true;
            }
        } else if is_content {
            if awaiting {
                *starts.last_mut().expect("never empty") = n;
                awaiting = false;
            }
            first_content_seen = true;
        }
    }
    starts
}

fn secret_values(doc: &Node) -> Vec<(String, &Node)> {
    let mut out = Vec::new();
    for field in ["data", "stringData"] {
        if let Some(Node::Map(items)) = doc.get(field) {
            for i in items {
                if let MapItem::Entry(k, v) = i {
                    out.push((format!("{field}.{k}"), v));
                }
            }
        }
    }
    out
}

fn is_secret(doc: &Node) -> bool {
    doc.get("apiVersion").and_then(Node::as_str) == Some("v1")
        && doc.get("kind").and_then(Node::as_str) == Some("Secret")
}

fn name_of(doc: &Node) -> String {
    let m = doc.get("metadata");
    let name = m
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or("<no name>");
    match m.and_then(|m| m.get("namespace")).and_then(Node::as_str) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// Checks one file.
pub fn check_file(
    path: &Path,
    bytes: &[u8],
    ids: Option<&Identities>,
    policies: &PolicySet,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let text = String::from_utf8_lossy(bytes);
    let starts = document_lines(&text);
    let line_of = |doc: usize| starts.get(doc).copied().unwrap_or(1);
    let mut add = |line: usize, message: String| {
        findings.push(Finding {
            file: path.to_path_buf(),
            line,
            message,
        })
    };
    // The same reading as `render` (and the reconciler): one strict parse, Lists expanded.
    let (docs, is_sops) = match crate::manifest::read_file(path, bytes) {
        Ok(ManifestFile::Sops(enc)) => {
            if let Some(ids) = ids
                && let Err(e) =
                    sops::decrypt(bytes, enc.format, ids, &[], DecryptOptions::default())
            {
                add(
                    1,
                    format!(
                        "SOPS file does not decrypt: {}",
                        scrub_quoted(&e.to_string())
                    ),
                );
            }
            (enc.docs, true)
        }
        Ok(ManifestFile::Plain(d)) => (d, false),
        Err(e) => {
            add(
                e.line.unwrap_or(1),
                format!("does not parse: {}", scrub_quoted(&e.to_string())),
            );
            return findings;
        }
    };
    let objects = match crate::manifest::objects(docs) {
        Ok(o) => o,
        Err(e) => {
            add(
                line_of(e.document.unwrap_or(1) - 1),
                format!("is not a valid object: {}", scrub_quoted(&e.to_string())),
            );
            return findings;
        }
    };
    for (document, doc) in &objects {
        if !matches!(doc, Node::Map(items) if !items.is_empty()) {
            continue;
        }
        let line = line_of(document - 1);
        if is_secret(doc) {
            for (key, v) in secret_values(doc) {
                let plain = match v {
                    Node::Scalar(Scalar::Str(t)) => {
                        !t.is_empty()
                            && parse_vault_ref(t.as_str()).is_none()
                            && !(is_sops && sops::cipher::is_encrypted(t.as_str()))
                    }
                    Node::Scalar(Scalar::Null) => false,
                    _ => true,
                };
                if plain {
                    add(
                        line,
                        format!(
                            "Secret {}: {key} is not encrypted{}; encrypt the file with `lockstep encrypt` or seal it with `lockstep seal`",
                            name_of(doc),
                            if is_sops {
                                " (the file's selection rule leaves it in plain text)"
                            } else {
                                ""
                            }
                        ),
                    );
                }
            }
        }
        let api = doc.get("apiVersion").and_then(Node::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Node::as_str).unwrap_or("");
        // A document with neither is not a manifest (values files and the like); one with
        // only one, or a non-string one, is a broken object `render` would refuse.
        let names_a_type = doc.get("apiVersion").is_some() || doc.get("kind").is_some();
        if names_a_type && (api.is_empty() || kind.is_empty()) {
            add(
                line,
                "not a Kubernetes object (apiVersion and kind are required)".to_owned(),
            );
            continue;
        }
        // References outside a Secret's data: refused as render refuses them, unless a
        // policy grants them; then their paths are held to vaultPaths like a Secret's.
        let mut outside_paths = Vec::new();
        if !api.is_empty() && !kind.is_empty() {
            let origin = crate::render::Origin {
                file: path.to_path_buf(),
                document: *document,
            };
            match crate::render::vault_refs_outside_secret_data(doc, &origin, policies) {
                Ok(p) => outside_paths = p,
                Err(e) => {
                    add(
                        line,
                        [e.object, e.key, Some(e.message)]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(": "),
                    );
                    continue;
                }
            }
        }
        if policies.policies.is_empty() {
            continue;
        }
        if api.is_empty() || kind.is_empty() || crate::policy::is_policy(doc) {
            continue;
        }
        let meta = doc.get("metadata");
        let sealed_scope = sealed::is_sealed_secret(doc)
            .then(|| {
                doc.get("spec")
                    .and_then(|s| s.get("scope"))
                    .and_then(Node::as_str)
                    .and_then(sealed::Scope::parse)
            })
            .flatten()
            .or(sealed::is_sealed_secret(doc).then_some(sealed::Scope::Strict));
        let vault_paths = if is_secret(doc) {
            secret_values(doc)
                .into_iter()
                .filter_map(|(_, v)| {
                    v.as_str()
                        .and_then(parse_vault_ref)
                        .map(|(p, _)| p.to_owned())
                })
                .collect()
        } else {
            Vec::new()
        };
        let vault_paths = [vault_paths, outside_paths].concat();
        let subject = Subject {
            api_version: api,
            kind,
            name: meta
                .and_then(|m| m.get("name"))
                .and_then(Node::as_str)
                .unwrap_or(""),
            namespace: meta.and_then(|m| m.get("namespace")).and_then(Node::as_str),
            file: path,
            sealed_scope,
            vault_paths,
        };
        for v in policies.check(&subject) {
            add(
                line,
                format!(
                    "{}: denied by policy {:?} ({}): {}",
                    v.object, v.policy, v.rule, v.message
                ),
            );
        }
    }
    findings
}

/// Checks that the kustomization in `dir` builds (bases within the enclosing Git work
/// tree); returns the findings and the patch files it reads, which are not manifests of
/// their own and so are not checked file by file.
pub fn check_kustomization(dir: &Path) -> (Vec<Finding>, Vec<std::path::PathBuf>) {
    use crate::kustomize;
    let Some(kfile) = kustomize::kustomization_file(dir) else {
        return (vec![], vec![]);
    };
    let mut patch_files = Vec::new();
    if let Ok(bytes) = std::fs::read(&kfile)
        && let Ok(k) = kustomize::parse_kustomization(&bytes)
    {
        for field in ["patches", "patchesJson6902"] {
            if let Some(serde_json::Value::Array(list)) = k.get(field) {
                for p in list {
                    if let Some(path) = p.get("path").and_then(serde_json::Value::as_str) {
                        patch_files.push(dir.join(path));
                    }
                }
            }
        }
        if let Some(serde_json::Value::Array(list)) = k.get("patchesStrategicMerge") {
            for p in list.iter().filter_map(serde_json::Value::as_str) {
                if !p.contains('\n') {
                    patch_files.push(dir.join(p));
                }
            }
        }
    }
    /// Encrypted generator inputs are passed through: `check` tests the build, not keys.
    struct PassThrough;
    impl kustomize::SopsOpener for PassThrough {
        fn open(&self, _: &Path, bytes: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
            Ok(zeroize::Zeroizing::new(bytes.to_vec()))
        }
    }
    let root = crate::render::work_tree_of(dir);
    let opts = kustomize::BuildOptions {
        root: &root,
        limits: kustomize::BuildLimits::default(),
        sops: Some(&PassThrough),
    };
    let findings = match kustomize::build(dir, &opts) {
        Ok(_) => vec![],
        Err(e) => vec![Finding {
            file: kfile.clone(),
            line: 1,
            message: format!("does not build: {e}"),
        }],
    };
    (findings, patch_files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_start_lines() {
        assert_eq!(
            document_lines("a: 1\n---\nb: 2\n---\nc: 3\n"),
            vec![1, 3, 5]
        );
        assert_eq!(document_lines("---\na: 1\n"), vec![2]);
        assert_eq!(document_lines("# c\n---\na: 1\n---\nb: 1\n"), vec![3, 5]);
        assert_eq!(document_lines("# c\n# d\na: 1\n---\nb: 1\n"), vec![3, 5]);
        // Blank and comment lines after a separator are not the document's start.
        assert_eq!(
            document_lines("a: 1\n---\n\n# c\nb: 2\n---\n---\nc: 3\n"),
            vec![1, 5, 7, 8]
        );
        assert_eq!(document_lines("a: 1\n--- {b: 2}\n"), vec![1, 2]);
        assert_eq!(document_lines("---\n---\na: 1\n"), vec![2, 3]);
        // One start per document the parser yields, so findings name the right line.
        for text in [
            "---\n---\na: 1\n",
            "---\n---\n---\na: 1\n---\nb: 2\n",
            "# c\n---\n---\na: 1\n",
            "a: 1\n---\n\n# c\nb: 2\n---\n---\nc: 3\n",
            "---\na: 1\n",
            "a: 1\n",
        ] {
            let docs = crate::manifest::load_documents(text.as_bytes()).unwrap_or_default();
            assert_eq!(document_lines(text).len(), docs.len(), "{text:?}");
        }
    }

    #[test]
    fn vault_references_outside_secrets_follow_the_policy_grant() {
        let policy = |spec: &str| {
            let y = format!(
                "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {{name: p}}\nspec:\n{spec}"
            );
            let docs = crate::manifest::load_documents(y.as_bytes()).unwrap();
            PolicySet {
                policies: vec![
                    crate::policy::Policy::from_node(&docs[0], Path::new("p.yaml")).unwrap(),
                ],
            }
        };
        let cm = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata: {x: 'ref+vault://secret/data/team-b/db#pw'}\n";
        let f = check_file(Path::new("c.yaml"), cm, None, &PolicySet::default());
        assert_eq!(f.len(), 1, "{f:?}");
        let m = f[0].to_string();
        assert!(
            m.starts_with("c.yaml:5: ConfigMap \"d\"")
                && m.contains("key path data.x")
                && m.contains("spec.vaultReferences.outsideSecrets"),
            "{m}"
        );
        // Granted: only the vaultPaths rule of the same policies is left to break.
        let granted = policy(
            "  vaultReferences: {outsideSecrets: true}\n  vaultPaths: [secret/data/team-a/]\n",
        );
        let f = check_file(Path::new("c.yaml"), cm, None, &granted);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("(vaultPaths)"), "{f:?}");
        let open = policy(
            "  vaultReferences: {outsideSecrets: true}\n  vaultPaths: [secret/data/team-b/]\n",
        );
        assert!(check_file(Path::new("c.yaml"), cm, None, &open).is_empty());
    }

    #[test]
    fn plaintext_secrets_and_parse_errors_are_found_with_lines() {
        let none = PolicySet::default();
        let f = check_file(
            Path::new("s.yaml"),
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData:\n  a: canary-x\n  b: 'ref+vault://secret/data/x#y'\n  c: ''\n",
            None,
            &none,
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].line, 5);
        assert!(
            f[0].to_string()
                .starts_with("s.yaml:5: Secret s: stringData.a is not encrypted"),
            "{}",
            f[0]
        );
        assert!(!f[0].to_string().contains("canary"));
        let bad = check_file(Path::new("b.yaml"), b"a: 1\nb: [\n", None, &none);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].to_string().starts_with("b.yaml:"), "{}", bad[0]);
        let tagged = check_file(
            Path::new("t.yaml"),
            b"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData:\n  p: !!int canary-q7\n",
            None,
            &none,
        );
        assert_eq!(tagged.len(), 1);
        assert!(
            tagged[0].to_string().starts_with("t.yaml:5: "),
            "{}",
            tagged[0]
        );
        assert!(!tagged[0].to_string().contains("canary"), "{}", tagged[0]);
    }
}
