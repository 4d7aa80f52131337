//! A known_hosts check that fails closed: the server's host key must be listed for the
//! host (plain or hashed `|1|salt|hash` names, `[host]:port` for other ports); keys
//! marked `@revoked` are refused; anything unknown or mismatching is an error.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ring::{digest, hmac};

/// One usable known_hosts line.
#[derive(Debug, Clone)]
struct Entry {
    revoked: bool,
    patterns: Vec<String>,
    key_blob: Vec<u8>,
}

/// Parsed known_hosts data.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

/// Why a host key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyRejection {
    /// known_hosts lists no key at all for the host.
    UnknownHost,
    /// known_hosts lists other keys for the host.
    Mismatch,
    /// The key is marked `@revoked`.
    Revoked,
}

impl std::fmt::Display for HostKeyRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostKeyRejection::UnknownHost => "the host is not in known_hosts",
            HostKeyRejection::Mismatch => {
                "the host key does not match the key(s) known_hosts lists for the host"
            }
            HostKeyRejection::Revoked => "the host key is marked @revoked in known_hosts",
        })
    }
}

impl KnownHosts {
    /// Parses known_hosts text. Comments, blank lines, `@cert-authority` lines and lines
    /// that cannot be read are skipped (they can only make fewer keys trusted).
    pub fn parse(text: &str) -> Self {
        let mut entries = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let Some(mut first) = fields.next() else {
                continue;
            };
            let mut revoked = false;
            if first.starts_with('@') {
                match first {
                    "@revoked" => revoked = true,
                    _ => continue, // @cert-authority: certificates are not supported.
                }
                let Some(next) = fields.next() else { continue };
                first = next;
            }
            let (Some(_key_type), Some(b64)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(key_blob) = STANDARD.decode(b64) else {
                continue;
            };
            entries.push(Entry {
                revoked,
                patterns: first.split(',').map(str::to_owned).collect(),
                key_blob,
            });
        }
        KnownHosts { entries }
    }

    /// True when no usable line was found.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks a host key: `names` are the known_hosts names of the host (e.g. `host`
    /// and `[host]:2222`), `key_blob` the key in SSH wire format.
    pub fn check(&self, names: &[String], key_blob: &[u8]) -> Result<(), HostKeyRejection> {
        self.check_with(names, |k| k == key_blob)
    }

    /// Like [`check`](Self::check) with only the SHA-256 of the key blob known.
    pub fn check_sha256(&self, names: &[String], sha256: &[u8]) -> Result<(), HostKeyRejection> {
        self.check_with(names, |k| {
            digest::digest(&digest::SHA256, k).as_ref() == sha256
        })
    }

    fn check_with(
        &self,
        names: &[String],
        same_key: impl Fn(&[u8]) -> bool,
    ) -> Result<(), HostKeyRejection> {
        let mut known = false;
        let mut matched = false;
        for e in &self.entries {
            if !host_matches(&e.patterns, names) {
                continue;
            }
            if same_key(&e.key_blob) {
                if e.revoked {
                    return Err(HostKeyRejection::Revoked);
                }
                matched = true;
            }
            if !e.revoked {
                known = true;
            }
        }
        if matched {
            Ok(())
        } else if known {
            Err(HostKeyRejection::Mismatch)
        } else {
            Err(HostKeyRejection::UnknownHost)
        }
    }
}

/// `SHA256:<base64>` of an SSH key blob, as `ssh-keygen -l` prints it.
pub fn fingerprint(key_blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(digest::digest(&digest::SHA256, key_blob))
    )
}

/// The key type named inside an SSH wire-format key blob (`ssh-ed25519`, …).
pub fn key_type(key_blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(key_blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(key_blob.get(4..4usize.checked_add(len)?)?).ok()
}

fn host_matches(patterns: &[String], names: &[String]) -> bool {
    let mut positive = false;
    for p in patterns {
        let (negated, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        let hit = names.iter().any(|n| pattern_matches(p, n));
        if hit && negated {
            return false;
        }
        positive |= hit && !negated;
    }
    positive
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    if let Some(hashed) = pattern.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
            return false;
        };
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
        return hmac::verify(&key, name.as_bytes(), &hash).is_ok();
    }
    glob_matches(&pattern.to_ascii_lowercase(), &name.to_ascii_lowercase())
}

/// `*` and `?` wildcards as OpenSSH understands them in known_hosts.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn blob(b64: &str) -> Vec<u8> {
        STANDARD.decode(b64).unwrap()
    }

    #[test]
    fn plain_port_and_mismatch() {
        let kh = KnownHosts::parse(&format!("[127.0.0.1]:2222 ssh-ed25519 {KEY_A}\n"));
        let names = vec!["[127.0.0.1]:2222".to_owned()];
        assert_eq!(kh.check(&names, &blob(KEY_A)), Ok(()));
        assert_eq!(kh.check(&names, b"other"), Err(HostKeyRejection::Mismatch));
        assert_eq!(
            kh.check(&["127.0.0.1".to_owned()], &blob(KEY_A)),
            Err(HostKeyRejection::UnknownHost)
        );
        assert_eq!(key_type(&blob(KEY_A)), Some("ssh-ed25519"));
        assert!(fingerprint(&blob(KEY_A)).starts_with("SHA256:"));
    }

    #[test]
    fn hashed_revoked_and_wildcards() {
        // |1|salt|HMAC-SHA1(salt, "example.com")
        let salt = b"0123456789abcdef0123";
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
        let tag = hmac::sign(&key, b"example.com");
        let line = format!(
            "|1|{}|{} ssh-ed25519 {KEY_A}",
            STANDARD.encode(salt),
            STANDARD.encode(tag.as_ref())
        );
        let kh = KnownHosts::parse(&line);
        assert_eq!(kh.check(&["example.com".into()], &blob(KEY_A)), Ok(()));
        let kh = KnownHosts::parse(&format!(
            "*.example.com ssh-ed25519 {KEY_A}\n@revoked bad.example.com ssh-ed25519 {KEY_A}"
        ));
        assert_eq!(kh.check(&["a.example.com".into()], &blob(KEY_A)), Ok(()));
        assert_eq!(
            kh.check(&["bad.example.com".into()], &blob(KEY_A)),
            Err(HostKeyRejection::Revoked)
        );
    }
}
