//! OpenPGP signature verification with the real `gpg`, isolated: every check runs in a
//! fresh temporary GNUPGHOME that holds only the allowed public keys, with an empty
//! environment, and the verdict is read from gpg's machine-readable status output
//! (`--status-fd`). Only a `VALIDSIG` by an allowed key with exit status 0 and no
//! `BADSIG`, `ERRSIG`, `EXPSIG`, `EXPKEYSIG`, `REVKEYSIG` or `NO_PUBKEY` passes; anything
//! else (gpg missing, unreadable output, several signatures of which one is bad) fails.
//!
//! Why gpg and not a pure-Rust OpenPGP crate: gpg is the implementation that made these
//! signatures (`git commit -S`), it handles every key and packet version users have,
//! and it keeps a large cryptographic dependency tree out of the reconciler. The keyring
//! is never the user's: trust comes only from the keys given in the verification
//! settings.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where gpg is looked for, in order, before PATH.
const GPG_CANDIDATES: &[&str] = &["/usr/bin/gpg", "/usr/local/bin/gpg", "/bin/gpg"];

/// The gpg binary, or an error saying it is missing.
pub fn gpg_program() -> Result<PathBuf, String> {
    for c in GPG_CANDIDATES {
        let p = Path::new(c);
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("gpg");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err("OpenPGP signatures need gpg, which was not found (install gnupg)".into())
}

/// An isolated keyring with the allowed keys.
pub struct Keyring {
    home: tempfile::TempDir,
    gpg: PathBuf,
    /// Fingerprints (upper-case hex) of the imported keys plus those listed explicitly.
    allowed: Vec<String>,
}

impl Keyring {
    /// Imports the armored keys; `fingerprints` are further allowed fingerprints (of keys
    /// that must also be given in armored form to be usable).
    pub fn new(armored_keys: &[&str], fingerprints: &[String]) -> Result<Self, String> {
        let gpg = gpg_program()?;
        let home = tempfile::Builder::new()
            .prefix("lockstep-gpg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary GNUPGHOME: {e}"))?;
        let mut kr = Keyring {
            home,
            gpg,
            allowed: fingerprints.iter().map(|f| normalize_fpr(f)).collect(),
        };
        for (i, key) in armored_keys.iter().enumerate() {
            let out = kr.run(&["--import"], Some(key.as_bytes()))?;
            let mut imported = 0;
            for line in status_lines(&out.0) {
                if let ["IMPORT_OK", _reason, fpr, ..] = line.as_slice() {
                    kr.allowed.push(normalize_fpr(fpr));
                    imported += 1;
                }
            }
            if imported == 0 {
                return Err(format!(
                    "OpenPGP signer key #{} could not be imported by gpg",
                    i + 1
                ));
            }
        }
        Ok(kr)
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<(String, i32), String> {
        let mut cmd = Command::new(&self.gpg);
        cmd.env_clear()
            .env("LC_ALL", "C")
            .env("GNUPGHOME", self.home.path())
            .arg("--homedir")
            .arg(self.home.path())
            .args([
                "--batch",
                "--no-tty",
                "--no-autostart",
                "--no-auto-key-locate",
                "--no-auto-key-retrieve",
                "--trust-model",
                "always",
                "--status-fd",
                "1",
            ])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.gpg.display()))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input)
                .map_err(|e| format!("cannot write to gpg: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for gpg failed: {e}"))?;
        Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code().unwrap_or(-1),
        ))
    }

    /// Verifies a detached armored signature over `payload`. On success returns the
    /// fingerprint of the signing (sub)key.
    pub fn verify(&self, signature: &[u8], payload: &[u8]) -> Result<String, String> {
        let sig_path = self.home.path().join("payload.sig");
        let data_path = self.home.path().join("payload");
        std::fs::write(&sig_path, signature)
            .and_then(|()| std::fs::write(&data_path, payload))
            .map_err(|e| format!("cannot write the signature for gpg: {e}"))?;
        let (sig_s, data_s) = (
            sig_path.to_string_lossy().into_owned(),
            data_path.to_string_lossy().into_owned(),
        );
        let (status, code) = self.run(&["--verify", &sig_s, &data_s], None)?;
        let _ = std::fs::remove_file(&sig_path);
        let _ = std::fs::remove_file(&data_path);
        judge(&status, code, &self.allowed)
    }
}

/// Decides from gpg's status output and exit code. Public for unit tests.
pub fn judge(status: &str, code: i32, allowed: &[String]) -> Result<String, String> {
    let mut valid: Vec<(String, String)> = Vec::new();
    for line in status_lines(status) {
        match line.as_slice() {
            ["BADSIG", keyid, ..] => {
                return Err(format!(
                    "bad OpenPGP signature by key {keyid} (the signed content was altered or the signature is forged)"
                ));
            }
            ["ERRSIG", keyid, _, _, _, _, rc, ..] if *rc == "9" => {
                return Err(format!(
                    "signed with OpenPGP key {keyid}, which is not an allowed signer"
                ));
            }
            ["ERRSIG", keyid, ..] => {
                return Err(format!(
                    "the OpenPGP signature by key {keyid} could not be checked"
                ));
            }
            ["NO_PUBKEY", keyid, ..] => {
                return Err(format!(
                    "signed with OpenPGP key {keyid}, which is not an allowed signer"
                ));
            }
            ["EXPSIG", keyid, ..] => {
                return Err(format!("the OpenPGP signature by {keyid} has expired"));
            }
            ["EXPKEYSIG", keyid, ..] => {
                return Err(format!(
                    "the OpenPGP key {keyid} that made the signature has expired"
                ));
            }
            ["REVKEYSIG", keyid, ..] => {
                return Err(format!(
                    "the OpenPGP key {keyid} that made the signature is revoked"
                ));
            }
            ["VALIDSIG", fpr, rest @ ..] => {
                // Field 8 is the hash algorithm (RFC 4880 ids). Collisions can be made
                // for SHA-1 (and MD5, RIPEMD-160), so such signatures prove nothing, as
                // on the SSH path.
                match rest.get(6).map(|h| h.parse::<u8>()) {
                    Some(Ok(8..=12 | 14)) => {}
                    Some(Ok(1)) | Some(Ok(2)) | Some(Ok(3)) => {
                        return Err(format!(
                            "the OpenPGP signature by key {fpr} uses a weak hash algorithm ({}); SHA-1, MD5 and RIPEMD-160 signatures are refused",
                            weak_hash_name(rest.get(6).copied().unwrap_or_default())
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "the OpenPGP signature by key {fpr} uses an unknown hash algorithm"
                        ));
                    }
                }
                let primary = rest.get(8).map(|s| s.to_string()).unwrap_or_default();
                valid.push((normalize_fpr(fpr), normalize_fpr(&primary)));
            }
            _ => {}
        }
    }
    if code != 0 {
        return Err(format!(
            "gpg did not accept the signature (exit status {code})"
        ));
    }
    let Some(first) = valid.first() else {
        return Err("gpg reported no valid signature".into());
    };
    for (fpr, primary) in &valid {
        let ok = allowed
            .iter()
            .any(|a| a == fpr || (!primary.is_empty() && a == primary));
        if !ok {
            return Err(format!(
                "signed with OpenPGP key {fpr}, which is not an allowed signer"
            ));
        }
    }
    Ok(first.0.clone())
}

fn weak_hash_name(id: &str) -> &'static str {
    match id {
        "1" => "MD5",
        "2" => "SHA-1",
        _ => "RIPEMD-160",
    }
}

fn status_lines(out: &str) -> impl Iterator<Item = Vec<&str>> {
    out.lines().filter_map(|l| {
        l.strip_prefix("[GNUPG:] ")
            .map(|rest| rest.split_whitespace().collect())
    })
}

/// Upper-case hex without spaces or a `0x` prefix.
pub fn normalize_fpr(f: &str) -> String {
    let f = f.trim();
    let f = f
        .strip_prefix("0x")
        .or_else(|| f.strip_prefix("0X"))
        .unwrap_or(f);
    f.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// True for 40- or 64-hex-digit fingerprints (spaces allowed).
pub fn looks_like_fingerprint(s: &str) -> bool {
    let n = normalize_fpr(s);
    (n.len() == 40 || n.len() == 64) && n.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPR: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

    #[test]
    fn judge_requires_an_allowed_validsig() {
        let good = format!(
            "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 89ABCDEF01234567 T\n[GNUPG:] VALIDSIG {FPR} 2024-01-01 1 0 4 0 22 10 00 {FPR}\n"
        );
        assert_eq!(judge(&good, 0, &[FPR.into()]), Ok(FPR.into()));
        assert!(
            judge(&good, 0, &["AA".into()])
                .unwrap_err()
                .contains("not an allowed")
        );
        assert!(judge(&good, 1, &[FPR.into()]).is_err());
        assert!(judge("", 0, &[FPR.into()]).is_err());
        let bad = format!("{good}[GNUPG:] BADSIG 89ABCDEF01234567 T\n");
        assert!(
            judge(&bad, 0, &[FPR.into()])
                .unwrap_err()
                .contains("bad OpenPGP")
        );
        let sha1 = good.replace(" 22 10 00 ", " 1 2 00 ");
        assert!(
            judge(&sha1, 0, &[FPR.into()])
                .unwrap_err()
                .contains("SHA-1")
        );
        let sha256_rsa = good.replace(" 22 10 00 ", " 1 8 00 ");
        assert_eq!(judge(&sha256_rsa, 0, &[FPR.into()]), Ok(FPR.into()));
        assert!(looks_like_fingerprint(
            "0123 4567 89ab cdef 0123  4567 89AB CDEF 0123 4567"
        ));
        assert!(!looks_like_fingerprint("ssh-ed25519 AAAA"));
    }
}
