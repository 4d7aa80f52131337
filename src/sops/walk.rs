//! Walking a document tree to encrypt or decrypt its values and compute the MAC
//! (sops.go `Tree.Encrypt`, `Tree.Decrypt`, `walkBranch`, `shouldBeEncrypted`).

use std::collections::HashMap;

use regex::Regex;
use zeroize::Zeroizing;

use crate::sops::cipher::{self, CipherError, DataType, Decrypted};
use crate::sops::metadata::Selection;
use crate::sops::tree::{MapItem, Node, Scalar, Text};

/// SHA-256 of "sops": what `mac_only_encrypted` feeds the MAC first.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// A selection rule compiled for use.
pub struct Selector {
    sel: Selection,
    re: Option<Regex>,
}

impl Selector {
    pub fn new(sel: &Selection) -> Result<Self, regex::Error> {
        let re = match sel {
            Selection::UnencryptedRegex(r)
            | Selection::EncryptedRegex(r)
            | Selection::UnencryptedCommentRegex(r)
            | Selection::EncryptedCommentRegex(r) => Some(Regex::new(r)?),
            _ => None,
        };
        Ok(Selector {
            sel: sel.clone(),
            re,
        })
    }

    fn matches(&self, s: &str) -> bool {
        self.re.as_ref().is_some_and(|r| r.is_match(s))
    }

    /// Whether a leaf under `path` is encrypted. `context` holds, per enclosing level,
    /// the comments seen since the last entry at that level (for the comment regexes).
    fn should_encrypt(&self, path: &[String], context: &[Vec<Zeroizing<String>>]) -> bool {
        let any_comment = || context.iter().flatten().any(|c| self.matches(c));
        match &self.sel {
            Selection::UnencryptedSuffix(s) => !path.iter().any(|k| k.ends_with(s.as_str())),
            Selection::EncryptedSuffix(s) => path.iter().any(|k| k.ends_with(s.as_str())),
            Selection::UnencryptedRegex(_) => !path.iter().any(|k| self.matches(k)),
            Selection::EncryptedRegex(_) => path.iter().any(|k| self.matches(k)),
            Selection::UnencryptedCommentRegex(_) => !any_comment(),
            Selection::EncryptedCommentRegex(_) => any_comment(),
        }
    }
}

/// IVs of values as they were decrypted, keyed by a digest of (AAD, type, plaintext), so
/// that re-encrypting an unchanged value reproduces its ciphertext (sops' IV stash).
///
/// List items share their list's AAD, so equal values in one list share a key. Each key
/// therefore holds every IV seen for it, and each IV is handed out once per encryption:
/// equal values keep their own (distinct) ciphertexts instead of all taking one, which
/// would show in Git that they are equal. sops keeps one IV per key and does leak this.
#[derive(Default)]
pub struct IvStash {
    map: HashMap<[u8; 32], Vec<[u8; 32]>>,
}

impl IvStash {
    fn key(aad: &str, ty: DataType, plain: &[u8]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(aad.as_bytes());
        ctx.update(&[0, ty as u8, 0]);
        ctx.update(plain);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// A failure at one value, with the path of that value (`["a"]["b"][0]`).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {cause}")]
pub struct WalkError {
    pub path: String,
    pub cause: WalkCause,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkCause {
    #[error("Could not decrypt value: {0}")]
    Decrypt(CipherError),
    #[error("Could not encrypt value: {0}")]
    Encrypt(CipherError),
    #[error("value is not encrypted (a {0} where sops' ENC[AES256_GCM,…] data is expected)")]
    NotEncrypted(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Encrypt,
    Decrypt,
}

struct Walker<'a> {
    key: &'a [u8],
    sel: &'a Selector,
    mac_only: bool,
    mode: Mode,
    hasher: ring::digest::Context,
    stash_in: Option<&'a IvStash>,
    stash_out: Option<&'a mut IvStash>,
    /// How many IVs of each stash entry this encryption has used.
    used_ivs: HashMap<[u8; 32], usize>,
    /// Map keys from the root: the AAD and the selection rules use these.
    path: Vec<String>,
    /// List indices on the way, as (number of keys before it, index); only read to name
    /// the value in an error, so keys are not copied a second time.
    indices: Vec<(usize, usize)>,
    /// Comments (decrypted ones included, so zeroized when dropped).
    context: Vec<Vec<Zeroizing<String>>>,
    /// Comments in encrypted positions that did not decrypt (kept verbatim, as sops does).
    warnings: usize,
}

/// The result of a walk: the MAC over the plaintext values (uppercase hex).
pub struct WalkResult {
    pub mac: String,
    pub undecryptable_comments: usize,
}

/// Encrypts every selected value of `docs` in place and returns the MAC of the plaintext.
pub fn encrypt_docs(
    docs: &mut [Node],
    key: &[u8],
    sel: &Selector,
    mac_only: bool,
    stash: Option<&IvStash>,
) -> Result<WalkResult, WalkError> {
    run(docs, key, sel, mac_only, Mode::Encrypt, stash, None)
}

/// Decrypts every encrypted value of `docs` in place and returns the MAC it computes.
pub fn decrypt_docs(
    docs: &mut [Node],
    key: &[u8],
    sel: &Selector,
    mac_only: bool,
    stash: Option<&mut IvStash>,
) -> Result<WalkResult, WalkError> {
    run(docs, key, sel, mac_only, Mode::Decrypt, None, stash)
}

fn run(
    docs: &mut [Node],
    key: &[u8],
    sel: &Selector,
    mac_only: bool,
    mode: Mode,
    stash_in: Option<&IvStash>,
    stash_out: Option<&mut IvStash>,
) -> Result<WalkResult, WalkError> {
    let mut w = Walker {
        key,
        sel,
        mac_only,
        mode,
        hasher: ring::digest::Context::new(&ring::digest::SHA512),
        stash_in,
        stash_out,
        used_ivs: HashMap::new(),
        path: Vec::new(),
        indices: Vec::new(),
        context: Vec::new(),
        warnings: 0,
    };
    if mac_only {
        w.hasher.update(&MAC_ONLY_ENCRYPTED_INIT);
    }
    for doc in docs.iter_mut() {
        w.node(doc)?;
    }
    let digest = w.hasher.finish();
    let mac = digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<String>();
    Ok(WalkResult {
        mac,
        undecryptable_comments: w.warnings,
    })
}

impl Walker<'_> {
    fn aad(&self) -> String {
        let mut s = self.path.join(":");
        s.push(':');
        s
    }

    fn display_path(&self) -> String {
        let mut s = String::new();
        let mut indices = self.indices.iter().peekable();
        for depth in 0..=self.path.len() {
            while let Some((_, i)) = indices.next_if(|(d, _)| *d == depth) {
                s.push_str(&format!("[{i}]"));
            }
            if let Some(k) = self.path.get(depth) {
                s.push_str("[\"");
                s.push_str(&k.replace('"', "\\\""));
                s.push_str("\"]");
            }
        }
        if s.is_empty() {
            s.push_str("(top level)");
        }
        s
    }

    fn err(&self, cause: WalkCause) -> WalkError {
        WalkError {
            path: self.display_path(),
            cause,
        }
    }

    fn encrypted_here(&self) -> bool {
        self.sel.should_encrypt(&self.path, &self.context)
    }

    fn node(&mut self, node: &mut Node) -> Result<(), WalkError> {
        match node {
            Node::Map(items) => {
                self.context.push(Vec::new());
                for item in items.iter_mut() {
                    match item {
                        MapItem::Entry(k, v) => {
                            self.path.push(k.clone());
                            let r = self.node(v);
                            self.path.pop();
                            r?;
                            if let Some(run) = self.context.last_mut() {
                                run.clear();
                            }
                        }
                        MapItem::Comment(text) => {
                            if let Some(new) = self.comment(text)? {
                                *text = new;
                            }
                        }
                    }
                }
                self.context.pop();
            }
            Node::List(items) => {
                self.context.push(Vec::new());
                for (i, item) in items.iter_mut().enumerate() {
                    self.indices.push((self.path.len(), i));
                    let r = self.list_item(item);
                    self.indices.pop();
                    r?;
                }
                self.context.pop();
            }
            Node::Scalar(_) | Node::Comment(_) => {
                if let Some(new) = self.leaf(node)? {
                    *node = new;
                }
            }
        }
        Ok(())
    }

    fn list_item(&mut self, item: &mut Node) -> Result<(), WalkError> {
        match item {
            Node::Comment(text) => {
                let was_plain = !cipher::is_encrypted(text.as_str());
                if let Some(new) = self.comment(text)? {
                    // sops 3.11 stores an encrypted comment inside a list as a list item.
                    *item = if self.mode == Mode::Encrypt && was_plain {
                        Node::Scalar(Scalar::Str(new))
                    } else {
                        Node::Comment(new)
                    };
                }
            }
            Node::Map(_) | Node::List(_) => {
                self.node(item)?;
                if let Some(run) = self.context.last_mut() {
                    run.clear();
                }
            }
            Node::Scalar(_) => {
                if let Some(new) = self.leaf(item)? {
                    let is_comment = matches!(new, Node::Comment(_));
                    if let Node::Comment(t) = &new
                        && let Some(run) = self.context.last_mut()
                    {
                        run.push(Zeroizing::new(t.as_str().to_owned()));
                    }
                    *item = new;
                    if is_comment {
                        return Ok(());
                    }
                }
                if let Some(run) = self.context.last_mut() {
                    run.clear();
                }
            }
        }
        Ok(())
    }

    /// Encrypts or decrypts a comment. Returns the replacement text, if any.
    fn comment(&mut self, text: &Text) -> Result<Option<Text>, WalkError> {
        let encrypted = self.encrypted_here();
        let result = match self.mode {
            Mode::Encrypt => {
                if encrypted && !text.is_empty() && !cipher::is_encrypted(text.as_str()) {
                    let aad = self.aad();
                    let enc =
                        self.encrypt_bytes(text.as_str().as_bytes(), DataType::Comment, &aad)?;
                    Some(Text::new(enc))
                } else {
                    None
                }
            }
            Mode::Decrypt => {
                if cipher::is_encrypted(text.as_str()) {
                    let aad = self.aad();
                    match cipher::decrypt(self.key, text.as_str(), &aad) {
                        Ok(Decrypted::Comment(c)) => {
                            self.remember(
                                &aad,
                                DataType::Comment,
                                c.as_str().as_bytes(),
                                text.as_str(),
                            );
                            Some(c)
                        }
                        // A comment that does not decrypt is kept verbatim (sops warns).
                        _ => {
                            self.warnings += 1;
                            None
                        }
                    }
                } else {
                    None
                }
            }
        };
        let plain = result
            .as_ref()
            .filter(|_| self.mode == Mode::Decrypt)
            .map(|t| Zeroizing::new(t.as_str().to_owned()))
            .unwrap_or_else(|| Zeroizing::new(text.as_str().to_owned()));
        if let Some(run) = self.context.last_mut() {
            run.push(plain);
        }
        Ok(result)
    }

    fn encrypt_bytes(
        &mut self,
        plain: &[u8],
        ty: DataType,
        aad: &str,
    ) -> Result<String, WalkError> {
        let iv = self.stash_in.and_then(|s| {
            let ivs = s.map.get(&IvStash::key(aad, ty, plain))?;
            let k = self
                .used_ivs
                .entry(IvStash::key(aad, ty, plain))
                .or_insert(0);
            let iv = ivs.get(*k).copied();
            *k += 1;
            iv
        });
        let r = match iv {
            Some(iv) => cipher::encrypt_with_iv(self.key, plain, ty, aad, &iv),
            None => cipher::encrypt_raw(self.key, plain, ty, aad),
        };
        r.map_err(|e| self.err(WalkCause::Encrypt(e)))
    }

    fn remember(&mut self, aad: &str, ty: DataType, plain: &[u8], enc: &str) {
        if let (Some(stash), Some(iv)) = (self.stash_out.as_deref_mut(), cipher::iv_of(enc)) {
            let ivs = stash.map.entry(IvStash::key(aad, ty, plain)).or_default();
            // A file written by sops may repeat one ciphertext; keep one copy per IV.
            if !ivs.contains(&iv) {
                ivs.push(iv);
            }
        }
    }

    fn hash(&mut self, bytes: &[u8], encrypted: bool) {
        if !self.mac_only || encrypted {
            self.hasher.update(bytes);
        }
    }

    /// Handles one scalar. Returns its replacement, if it changes.
    fn leaf(&mut self, node: &Node) -> Result<Option<Node>, WalkError> {
        let Node::Scalar(scalar) = node else {
            return Ok(None);
        };
        if matches!(scalar, Scalar::Null) {
            return Ok(None);
        }
        let encrypted = self.encrypted_here();
        match self.mode {
            Mode::Encrypt => {
                let Some((plain, ty)) = cipher::scalar_plaintext(scalar) else {
                    return Ok(None);
                };
                self.hash(&plain, encrypted);
                let empty = matches!(scalar, Scalar::Str(t) if t.is_empty())
                    || matches!(scalar, Scalar::Bytes(b) if b.is_empty());
                if !encrypted || empty {
                    return Ok(None);
                }
                let aad = self.aad();
                let enc = self.encrypt_bytes(&plain, ty, &aad)?;
                Ok(Some(Node::str(enc)))
            }
            Mode::Decrypt => {
                if !encrypted {
                    if let Some((plain, _)) = cipher::scalar_plaintext(scalar) {
                        self.hash(&plain, false);
                    }
                    return Ok(None);
                }
                let text = match scalar {
                    Scalar::Str(t) => t,
                    Scalar::Int(_) => return Err(self.err(WalkCause::NotEncrypted("number"))),
                    Scalar::Float(_) => return Err(self.err(WalkCause::NotEncrypted("number"))),
                    Scalar::Bool(_) => return Err(self.err(WalkCause::NotEncrypted("boolean"))),
                    Scalar::Time(_) => return Err(self.err(WalkCause::NotEncrypted("timestamp"))),
                    Scalar::Bytes(_) | Scalar::Null => {
                        return Err(self.err(WalkCause::NotEncrypted("value")));
                    }
                };
                if text.is_empty() {
                    return Ok(None);
                }
                let aad = self.aad();
                let decrypted = cipher::decrypt(self.key, text.as_str(), &aad)
                    .map_err(|e| self.err(WalkCause::Decrypt(e)))?;
                match decrypted {
                    Decrypted::Comment(c) => {
                        self.remember(
                            &aad,
                            DataType::Comment,
                            c.as_str().as_bytes(),
                            text.as_str(),
                        );
                        Ok(Some(Node::Comment(c)))
                    }
                    Decrypted::Scalar(s) => {
                        let (plain, ty): (Zeroizing<Vec<u8>>, DataType) =
                            match cipher::scalar_plaintext(&s) {
                                Some(p) => p,
                                None => return Ok(Some(Node::Scalar(s))),
                            };
                        self.hash(&plain, true);
                        self.remember(&aad, ty, &plain, text.as_str());
                        Ok(Some(Node::Scalar(s)))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors name the value by keys and list indices in document order.
    #[test]
    fn error_paths_interleave_keys_and_indices() {
        let mut docs = crate::sops::stores::yaml::parse(
            "a:\n  - x: ok\n  - - 1\n    - b: {c: [7, not-encrypted]}\n",
        )
        .unwrap();
        let sel = Selector::new(&Selection::UnencryptedSuffix("_unencrypted".into())).unwrap();
        let key = [1u8; 32];
        let e = decrypt_docs(&mut docs, &key, &sel, false, None)
            .err()
            .unwrap();
        assert_eq!(e.path, "[\"a\"][0][\"x\"]");
        let mut docs =
            crate::sops::stores::yaml::parse("a:\n  - \"\"\n  - - \"\"\n    - b: {c: [\"\", 7]}\n")
                .unwrap();
        let e = decrypt_docs(&mut docs, &key, &sel, false, None)
            .err()
            .unwrap();
        assert_eq!(e.path, "[\"a\"][1][1][\"b\"][\"c\"][1]");
    }

    fn list_ciphertexts(doc: &Node) -> Vec<String> {
        match doc.get("l") {
            Some(Node::List(items)) => items
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Equal values at different positions of one list share the AAD; re-encrypting after an
    /// edit must not give them one ciphertext, and unchanged values keep their own.
    #[test]
    fn equal_list_items_keep_distinct_ciphertexts_after_reencryption() {
        let sel = Selector::new(&Selection::UnencryptedSuffix("_unencrypted".into())).unwrap();
        let key = [7u8; 32];
        let mut docs =
            crate::sops::stores::yaml::parse("l:\n  - canary-same\n  - canary-same\n").unwrap();
        encrypt_docs(&mut docs, &key, &sel, false, None).unwrap();
        let before = list_ciphertexts(&docs[0]);
        assert_eq!(before.len(), 2);
        assert_ne!(before[0], before[1]);

        let mut stash = IvStash::default();
        decrypt_docs(&mut docs, &key, &sel, false, Some(&mut stash)).unwrap();
        encrypt_docs(&mut docs, &key, &sel, false, Some(&stash)).unwrap();
        let after = list_ciphertexts(&docs[0]);
        assert_ne!(after[0], after[1], "equal values got one ciphertext");
        assert_eq!(after, before, "unchanged values must keep their ciphertext");

        // A copied ciphertext (same list, so same AAD) decrypts; the next write splits it.
        let copied = format!("l:\n  - {}\n  - {}\n", before[0], before[0]);
        let mut docs = crate::sops::stores::yaml::parse(&copied).unwrap();
        let mut stash = IvStash::default();
        decrypt_docs(&mut docs, &key, &sel, false, Some(&mut stash)).unwrap();
        assert_eq!(
            docs[0].get("l").and_then(|l| match l {
                Node::List(i) => i[1].as_str(),
                _ => None,
            }),
            Some("canary-same")
        );
        encrypt_docs(&mut docs, &key, &sel, false, Some(&stash)).unwrap();
        let split = list_ciphertexts(&docs[0]);
        assert_eq!(split[0], before[0]);
        assert_ne!(split[0], split[1]);
    }
}
