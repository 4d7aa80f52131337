//! In-process verification of SSH signatures (`gpg.format=ssh`, the SSHSIG format of
//! OpenSSH's PROTOCOL.sshsig) over Git commits and tags. Supported keys: ssh-ed25519,
//! ssh-rsa (with rsa-sha2-256/512 signatures), ecdsa-sha2-nistp256 and nistp384.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, signature};

use super::known_hosts::fingerprint;

const MAGIC: &[u8] = b"SSHSIG";
/// The namespace Git signs in.
const GIT_NAMESPACE: &[u8] = b"git";

/// An allowed SSH signer: its public key blob (wire format) and the restrictions of its
/// `allowed_signers` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSigner {
    pub key_blob: Vec<u8>,
    /// `namespaces="..."`: patterns of the namespaces this key may sign in (`None`: any).
    pub namespaces: Option<Vec<String>>,
    /// `valid-after=`: the earliest signing time accepted (Unix seconds, UTC).
    pub valid_after: Option<i64>,
    /// `valid-before=`: the latest signing time accepted (Unix seconds, UTC).
    pub valid_before: Option<i64>,
}

impl SshSigner {
    /// Reads a public key line or an `allowed_signers` line
    /// (`principals [options] keytype base64 [comment]`). `None` when the line holds no
    /// SSH public key; an error when its options cannot be honoured. Options:
    /// `namespaces="a,b"` (patterns with `*`, `?`, `!`), `valid-after=`/`valid-before=`
    /// (`YYYYMMDD[HHMM[SS]]`, read as UTC, optional `Z`). `cert-authority` and unknown
    /// options are refused rather than ignored, since ignoring one would widen trust.
    pub fn parse(line: &str) -> Option<Result<Self, String>> {
        let fields = split_fields(line);
        let k = fields.iter().position(|f| is_key_type(f))?;
        let b64 = fields.get(k + 1)?;
        let blob = STANDARD.decode(b64).ok()?;
        let mut r = Reader::new(&blob);
        if r.string().ok()? != fields[k].as_bytes() {
            return None;
        }
        let options = match k {
            0 => None,
            // One field before the key: principals, or options without principals.
            1 if fields[0].contains('=') || fields[0].eq_ignore_ascii_case("cert-authority") => {
                Some(fields[0].as_str())
            }
            1 => None,
            2 => Some(fields[1].as_str()),
            _ => {
                return Some(Err(
                    "the allowed_signers line has more than principals and options before the key"
                        .into(),
                ));
            }
        };
        let mut signer = SshSigner {
            key_blob: blob,
            namespaces: None,
            valid_after: None,
            valid_before: None,
        };
        if let Some(opts) = options
            && let Err(e) = signer.apply_options(opts)
        {
            return Some(Err(e));
        }
        Some(Ok(signer))
    }

    fn apply_options(&mut self, opts: &str) -> Result<(), String> {
        for opt in split_outside_quotes(opts, ',') {
            let (name, value) = match opt.split_once('=') {
                Some((n, v)) => (n.to_ascii_lowercase(), Some(unquote(v))),
                None => (opt.to_ascii_lowercase(), None),
            };
            match (name.as_str(), value) {
                ("cert-authority", None) => {
                    return Err("allowed_signers option cert-authority (trusting keys certified by a CA) is not supported; list the signing keys themselves".into());
                }
                ("namespaces", Some(v)) => {
                    self.namespaces = Some(v.split(',').map(|p| p.trim().to_owned()).collect());
                }
                ("valid-after", Some(v)) => self.valid_after = Some(parse_time(&v)?),
                ("valid-before", Some(v)) => self.valid_before = Some(parse_time(&v)?),
                _ => {
                    return Err(format!(
                        "allowed_signers option {name:?} is not supported (supported: namespaces=, valid-after=, valid-before=)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether this entry allows a signature in `namespace` made at `time`.
    fn permits(&self, namespace: &str, time: Option<i64>) -> Result<(), String> {
        if let Some(patterns) = &self.namespaces
            && !pattern_list_matches(patterns, namespace)
        {
            return Err(format!(
                "the key may sign only in namespaces {:?}, not {namespace:?}",
                patterns.join(",")
            ));
        }
        if self.valid_after.is_some() || self.valid_before.is_some() {
            let Some(t) = time else {
                return Err(
                    "the key has a validity period but the signed object carries no time".into(),
                );
            };
            if let Some(after) = self.valid_after
                && t < after
            {
                return Err(
                    "the key was not yet valid when the object was signed (valid-after)".into(),
                );
            }
            if let Some(before) = self.valid_before
                && t > before
            {
                return Err(
                    "the key was no longer valid when the object was signed (valid-before)".into(),
                );
            }
        }
        Ok(())
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key_blob)
    }
}

/// Splits on whitespace outside double quotes.
fn split_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        if c == '"' {
            quoted = !quoted;
            cur.push(c);
        } else if c.is_whitespace() && !quoted {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
            cur.push(c);
        } else if c == sep && !quoted {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn unquote(v: &str) -> String {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
        .to_owned()
}

/// `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, optionally ending in `Z`, as UTC.
fn parse_time(v: &str) -> Result<i64, String> {
    let bad = || format!("{v:?} is not a time of the form YYYYMMDD[HHMM[SS]][Z]");
    let digits = v.strip_suffix(['Z', 'z']).unwrap_or(v);
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |a: usize, b: usize| digits.get(a..b).and_then(|s| s.parse::<i64>().ok());
    let (y, mo, d) = (
        num(0, 4).ok_or_else(bad)?,
        num(4, 6).ok_or_else(bad)?,
        num(6, 8).ok_or_else(bad)?,
    );
    let (h, mi) = (num(8, 10).unwrap_or(0), num(10, 12).unwrap_or(0));
    let sec = num(12, 14).unwrap_or(0);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + h * 3_600 + mi * 60 + sec)
}

/// OpenSSH pattern-list matching: any non-negated pattern matches and no negated one.
fn pattern_list_matches(patterns: &[String], s: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg.as_bytes(), s.as_bytes()) {
                return false;
            }
        } else if glob(p.as_bytes(), s.as_bytes()) {
            matched = true;
        }
    }
    matched
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

pub(crate) fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-sha2-") || s.starts_with("sk-")
}

/// The outcome of a failed check, with the signer's fingerprint when it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshSigError {
    Malformed(String),
    NotAllowed {
        fingerprint: String,
    },
    Bad {
        fingerprint: String,
        reason: String,
    },
    Unsupported(String),
    /// An allowed key, but its `allowed_signers` options exclude this signature.
    Restricted {
        fingerprint: String,
        reason: String,
    },
}

impl std::fmt::Display for SshSigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshSigError::Malformed(m) => write!(f, "malformed SSH signature: {m}"),
            SshSigError::NotAllowed { fingerprint } => write!(
                f,
                "signed with SSH key {fingerprint}, which is not an allowed signer"
            ),
            SshSigError::Bad {
                fingerprint,
                reason,
            } => write!(
                f,
                "bad SSH signature by key {fingerprint} (the signed content was altered or the signature is forged): {reason}"
            ),
            SshSigError::Unsupported(m) => write!(f, "unsupported SSH signature: {m}"),
            SshSigError::Restricted {
                fingerprint,
                reason,
            } => write!(
                f,
                "signed with SSH key {fingerprint}, which is an allowed signer, but not for this signature: {reason}"
            ),
        }
    }
}

/// Verifies an armored SSH signature over `payload`; on success returns the
/// fingerprint of the signing key, which is one of `allowed`.
///
/// `signed_at` is the time of the signed object (committer or tagger date), checked
/// against `valid-after`/`valid-before` as `git` does with `ssh-keygen -Y verify`.
pub fn verify(
    armored: &[u8],
    payload: &[u8],
    allowed: &[SshSigner],
    signed_at: Option<i64>,
) -> Result<String, SshSigError> {
    let blob = dearmor(armored)?;
    let mut r = Reader::new(&blob);
    let magic = r.bytes(MAGIC.len()).map_err(SshSigError::Malformed)?;
    if magic != MAGIC {
        return Err(SshSigError::Malformed("no SSHSIG magic".into()));
    }
    let version = r.u32().map_err(SshSigError::Malformed)?;
    if version != 1 {
        return Err(SshSigError::Unsupported(format!(
            "SSHSIG version {version}"
        )));
    }
    let public_key = r.string().map_err(SshSigError::Malformed)?;
    let namespace = r.string().map_err(SshSigError::Malformed)?;
    let reserved = r.string().map_err(SshSigError::Malformed)?;
    let hash_alg = r.string().map_err(SshSigError::Malformed)?;
    let sig = r.string().map_err(SshSigError::Malformed)?;
    if !r.is_empty() {
        return Err(SshSigError::Malformed("trailing bytes".into()));
    }
    let fpr = fingerprint(public_key);
    if namespace != GIT_NAMESPACE {
        return Err(SshSigError::Bad {
            fingerprint: fpr,
            reason: format!(
                "signature namespace is {:?}, not \"git\"",
                String::from_utf8_lossy(namespace)
            ),
        });
    }
    let entries: Vec<&SshSigner> = allowed
        .iter()
        .filter(|a| a.key_blob == public_key)
        .collect();
    if entries.is_empty() {
        return Err(SshSigError::NotAllowed { fingerprint: fpr });
    }
    let ns = String::from_utf8_lossy(namespace);
    let mut refusal = None;
    if !entries.iter().any(|a| match a.permits(&ns, signed_at) {
        Ok(()) => true,
        Err(why) => {
            refusal = Some(why);
            false
        }
    }) {
        return Err(SshSigError::Restricted {
            fingerprint: fpr,
            reason: refusal.unwrap_or_default(),
        });
    }
    let digest_alg = match hash_alg {
        b"sha256" => &digest::SHA256,
        b"sha512" => &digest::SHA512,
        other => {
            return Err(SshSigError::Unsupported(format!(
                "hash algorithm {:?}",
                String::from_utf8_lossy(other)
            )));
        }
    };
    let h = digest::digest(digest_alg, payload);
    let mut signed = Vec::with_capacity(64 + h.as_ref().len());
    signed.extend_from_slice(MAGIC);
    put_string(&mut signed, namespace);
    put_string(&mut signed, reserved);
    put_string(&mut signed, hash_alg);
    put_string(&mut signed, h.as_ref());

    let bad = |reason: &str| SshSigError::Bad {
        fingerprint: fpr.clone(),
        reason: reason.to_owned(),
    };
    let mut sr = Reader::new(sig);
    let sig_type = sr.string().map_err(SshSigError::Malformed)?;
    let sig_bytes = sr.string().map_err(SshSigError::Malformed)?;
    let mut kr = Reader::new(public_key);
    let key_type = kr.string().map_err(SshSigError::Malformed)?;
    match key_type {
        b"ssh-ed25519" => {
            if sig_type != b"ssh-ed25519" {
                return Err(bad("signature type does not match the key type"));
            }
            let pk = kr.string().map_err(SshSigError::Malformed)?;
            signature::UnparsedPublicKey::new(&signature::ED25519, pk)
                .verify(&signed, sig_bytes)
                .map_err(|_| bad("ed25519 verification failed"))?;
        }
        b"ssh-rsa" => {
            let e = kr.string().map_err(SshSigError::Malformed)?;
            let n = kr.string().map_err(SshSigError::Malformed)?;
            let params = match sig_type {
                b"rsa-sha2-256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                b"rsa-sha2-512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                other => {
                    return Err(SshSigError::Unsupported(format!(
                        "RSA signature type {:?} (SHA-1 signatures are refused)",
                        String::from_utf8_lossy(other)
                    )));
                }
            };
            signature::RsaPublicKeyComponents {
                n: strip_zeros(n),
                e: strip_zeros(e),
            }
            .verify(params, &signed, sig_bytes)
            .map_err(|_| bad("RSA verification failed"))?;
        }
        b"ecdsa-sha2-nistp256" | b"ecdsa-sha2-nistp384" => {
            let (alg, width): (&signature::EcdsaVerificationAlgorithm, usize) =
                if key_type == b"ecdsa-sha2-nistp256" {
                    (&signature::ECDSA_P256_SHA256_FIXED, 32)
                } else {
                    (&signature::ECDSA_P384_SHA384_FIXED, 48)
                };
            if sig_type != key_type {
                return Err(bad("signature type does not match the key type"));
            }
            let _curve = kr.string().map_err(SshSigError::Malformed)?;
            let q = kr.string().map_err(SshSigError::Malformed)?;
            let mut rs = Reader::new(sig_bytes);
            let r_int = rs.string().map_err(SshSigError::Malformed)?;
            let s_int = rs.string().map_err(SshSigError::Malformed)?;
            let mut fixed = vec![0u8; 2 * width];
            fixed_width(r_int, &mut fixed[..width]).map_err(|m| bad(&m))?;
            fixed_width(s_int, &mut fixed[width..]).map_err(|m| bad(&m))?;
            // ring hashes the signed data with the curve's hash, as SSH does.
            signature::UnparsedPublicKey::new(alg, q)
                .verify(&signed, &fixed)
                .map_err(|_| bad("ECDSA verification failed"))?;
        }
        other => {
            return Err(SshSigError::Unsupported(format!(
                "key type {:?}",
                String::from_utf8_lossy(other)
            )));
        }
    }
    Ok(fpr)
}

fn dearmor(armored: &[u8]) -> Result<Vec<u8>, SshSigError> {
    let text = std::str::from_utf8(armored)
        .map_err(|_| SshSigError::Malformed("armor is not text".into()))?;
    let mut inside = false;
    let mut b64 = String::new();
    let mut ended = false;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN SSH SIGNATURE-----" {
            inside = true;
            continue;
        }
        if line == "-----END SSH SIGNATURE-----" {
            ended = inside;
            break;
        }
        if inside {
            b64.push_str(line);
        }
    }
    if !ended {
        return Err(SshSigError::Malformed(
            "no BEGIN/END SSH SIGNATURE armor".into(),
        ));
    }
    STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| SshSigError::Malformed(format!("bad base64: {e}")))
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

fn fixed_width(mpint: &[u8], out: &mut [u8]) -> Result<(), String> {
    let v = strip_zeros(mpint);
    if v.len() > out.len() {
        return Err("ECDSA signature component too long".into());
    }
    let start = out.len() - v.len();
    out[start..].copy_from_slice(v);
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A reader of SSH wire-format data.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.data.len() < n {
            return Err("truncated data".into());
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_without_panicking() {
        let allowed = [];
        assert!(matches!(
            verify(b"nothing", b"x", &allowed, None),
            Err(SshSigError::Malformed(_))
        ));
        let armored =
            "-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQ==\n-----END SSH SIGNATURE-----\n";
        assert!(matches!(
            verify(armored.as_bytes(), b"x", &allowed, None),
            Err(SshSigError::Malformed(_))
        ));
        assert!(SshSigner::parse("not a key").is_none());
        assert!(SshSigner::parse("ssh-ed25519 !!!").is_none());
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRqJNSq9ShUCk1Nzv2rAQDLP3Ohx0o8bsgGXlTD2x8x";

    #[test]
    fn allowed_signers_options() {
        let s = SshSigner::parse(&format!(
            "dev@example.com namespaces=\"file,git\",valid-after=\"20240101\",valid-before=\"20250101120000Z\" {KEY} laptop"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(s.valid_after, Some(1_704_067_200));
        assert_eq!(s.valid_before, Some(1_735_732_800));
        assert_eq!(s.permits("git", Some(1_720_000_000)), Ok(()));
        assert!(
            s.permits("git", Some(1_704_067_199))
                .unwrap_err()
                .contains("not yet valid")
        );
        assert!(
            s.permits("git", Some(1_735_732_801))
                .unwrap_err()
                .contains("no longer valid")
        );
        assert!(s.permits("git", None).is_err());
        let file_only = SshSigner::parse(&format!("* namespaces=\"file\" {KEY}"))
            .unwrap()
            .unwrap();
        assert!(
            file_only
                .permits("git", None)
                .unwrap_err()
                .contains("namespaces")
        );
        let negated = SshSigner::parse(&format!("* namespaces=\"*,!git\" {KEY}"))
            .unwrap()
            .unwrap();
        assert!(negated.permits("git", None).is_err());
        assert!(negated.permits("file", None).is_ok());
        let plain = SshSigner::parse(&format!("dev@example.com {KEY}"))
            .unwrap()
            .unwrap();
        assert_eq!(plain.permits("git", None), Ok(()));
        let ca = SshSigner::parse(&format!("*.example.com cert-authority {KEY}")).unwrap();
        assert!(ca.unwrap_err().contains("cert-authority"));
        let unknown = SshSigner::parse(&format!("* no-touch-required {KEY}")).unwrap();
        assert!(unknown.unwrap_err().contains("not supported"));
        let bad_time = SshSigner::parse(&format!("* valid-after=\"2024\" {KEY}")).unwrap();
        assert!(bad_time.unwrap_err().contains("YYYYMMDD"));
    }
}
