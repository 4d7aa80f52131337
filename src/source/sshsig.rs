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

/// An allowed SSH signer: its public key blob (wire format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSigner {
    pub key_blob: Vec<u8>,
}

impl SshSigner {
    /// Reads an `authorized_keys`/`allowed_signers`-style line: the first field that is
    /// a key type followed by the base64 key; anything around it (principals, options,
    /// comment) is ignored.
    pub fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        for w in fields.windows(2) {
            if is_key_type(w[0]) {
                let blob = STANDARD.decode(w[1]).ok()?;
                let mut r = Reader::new(&blob);
                if r.string().ok()? != w[0].as_bytes() {
                    return None;
                }
                return Some(SshSigner { key_blob: blob });
            }
        }
        None
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key_blob)
    }
}

pub(crate) fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-sha2-") || s.starts_with("sk-")
}

/// The outcome of a failed check, with the signer's fingerprint when it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshSigError {
    Malformed(String),
    NotAllowed { fingerprint: String },
    Bad { fingerprint: String, reason: String },
    Unsupported(String),
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
        }
    }
}

/// Verifies an armored SSH signature over `payload`; on success returns the
/// fingerprint of the signing key, which is one of `allowed`.
pub fn verify(
    armored: &[u8],
    payload: &[u8],
    allowed: &[SshSigner],
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
    if !allowed.iter().any(|a| a.key_blob == public_key) {
        return Err(SshSigError::NotAllowed { fingerprint: fpr });
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
            verify(b"nothing", b"x", &allowed),
            Err(SshSigError::Malformed(_))
        ));
        let armored =
            "-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQ==\n-----END SSH SIGNATURE-----\n";
        assert!(matches!(
            verify(armored.as_bytes(), b"x", &allowed),
            Err(SshSigError::Malformed(_))
        ));
        assert!(SshSigner::parse("not a key").is_none());
        assert!(SshSigner::parse("ssh-ed25519 !!!").is_none());
    }
}
