//! What an age file's header says about its recipients, read without any key.
//!
//! Each recipient gets one stanza. An X25519 stanza carries only an ephemeral share, so
//! it does not say whom it is for; an SSH stanza carries a 4-byte tag of the recipient's
//! public key. Recipient lists stored next to age files (a SealedSecret's
//! `spec.recipients`, a SOPS `recipient` field) are not authenticated; the header is
//! what the file really is.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use crate::crypto::age_keys::AgeRecipient;

/// One recipient stanza: its type and, for SSH stanzas, the key tag.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StanzaInfo {
    pub kind: String,
    pub tag: Option<String>,
}

impl std::fmt::Display for StanzaInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tag {
            Some(t) => write!(f, "{} (key tag {t})", self.kind),
            None => f.write_str(&self.kind),
        }
    }
}

const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
/// age wraps stanza bodies at 64 base64 characters; a shorter line ends the body.
const BODY_LINE: usize = 64;
/// Headers longer than this are refused rather than walked.
const MAX_HEADER: usize = 64 * 1024;

/// The recipient stanzas of an age file (binary or ASCII-armored), without the random
/// "grease" stanzas age adds to every header.
pub fn header_stanzas(file: &[u8]) -> Result<Vec<StanzaInfo>, String> {
    let text = String::from_utf8_lossy(file);
    let trimmed = text.trim_start();
    let binary;
    let bytes: &[u8] = if let Some(rest) = trimmed.strip_prefix(ARMOR_BEGIN) {
        let body = rest
            .split(ARMOR_END)
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect::<String>();
        binary = STANDARD
            .decode(body.as_bytes())
            .map_err(|_| "armored age file is not valid base64".to_string())?;
        &binary
    } else {
        file
    };
    let header = &bytes[..bytes.len().min(MAX_HEADER)];
    let mut lines = header.split(|b| *b == b'\n');
    if lines.next() != Some(b"age-encryption.org/v1".as_slice()) {
        return Err("not an age v1 file".into());
    }
    let mut out = Vec::new();
    loop {
        let line = lines.next().ok_or("age header has no end")?;
        if line.starts_with(b"--- ") {
            return Ok(out);
        }
        let Some(args) = line.strip_prefix(b"-> ") else {
            return Err("malformed age header".into());
        };
        let args = String::from_utf8_lossy(args);
        let mut parts = args.split(' ');
        let kind = parts.next().unwrap_or("").to_owned();
        let first_arg = parts.next().map(str::to_owned);
        // The body: full lines, then one shorter (possibly empty) line.
        loop {
            let body = lines.next().ok_or("age header has no end")?;
            if body.len() < BODY_LINE {
                break;
            }
        }
        if kind.ends_with("-grease") {
            continue;
        }
        let tag = matches!(kind.as_str(), "ssh-ed25519" | "ssh-rsa")
            .then_some(first_arg)
            .flatten();
        out.push(StanzaInfo { kind, tag });
    }
}

/// The stanza that sealing to `r` writes (up to the random parts).
pub fn expected_stanza(r: &AgeRecipient) -> StanzaInfo {
    let mut fields = r.text.split_whitespace();
    let kind = fields.next().unwrap_or("");
    if kind == "ssh-ed25519" || kind == "ssh-rsa" {
        let tag = fields
            .next()
            .and_then(|b64| STANDARD.decode(b64).ok())
            .map(|wire| {
                let digest = ring::digest::digest(&ring::digest::SHA256, &wire);
                STANDARD_NO_PAD.encode(&digest.as_ref()[..4])
            });
        StanzaInfo {
            kind: kind.to_owned(),
            tag,
        }
    } else {
        StanzaInfo {
            kind: "X25519".into(),
            tag: None,
        }
    }
}

/// Whether a header's stanzas are, as a multiset, those that sealing to `recipients`
/// writes: same count, same types, same SSH key tags. X25519 stanzas cannot be told
/// apart, so this does not prove which X25519 keys they are for.
pub fn stanzas_match(found: &[StanzaInfo], recipients: &[AgeRecipient]) -> bool {
    let mut want: Vec<StanzaInfo> = recipients.iter().map(expected_stanza).collect();
    let mut got = found.to_vec();
    want.sort();
    got.sort();
    want == got
}

/// A short description of a header, for `keys inventory`: `2: X25519, ssh-ed25519 (key tag …)`.
pub fn describe(found: &[StanzaInfo]) -> String {
    let parts: Vec<String> = found.iter().map(ToString::to_string).collect();
    format!("{}: {}", found.len(), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::age_keys::{self, AgeRecipient};

    const SSH_ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@host";

    #[test]
    fn headers_show_stanza_count_types_and_ssh_tags() {
        let x1 = AgeRecipient::parse(&age_keys::generate().recipient).unwrap();
        let x2 = AgeRecipient::parse(&age_keys::generate().recipient).unwrap();
        let ssh = AgeRecipient::parse(SSH_ED25519).unwrap();
        let file = age_keys::encrypt_to(&[x1.clone(), ssh.clone()], b"canary-stanza").unwrap();
        let found = header_stanzas(&file).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(stanzas_match(&found, &[x2.clone(), ssh.clone()]));
        assert!(!stanzas_match(&found, std::slice::from_ref(&x1)));
        assert!(!stanzas_match(&found, &[x1.clone(), x2.clone()]));
        let ssh_stanza = found.iter().find(|s| s.kind == "ssh-ed25519").unwrap();
        assert_eq!(Some(ssh_stanza), Some(&expected_stanza(&ssh)));
        assert!(describe(&found).starts_with("2: "));

        // The armored form (SOPS `enc`) reads the same.
        let armored = x1.wrap(b"0123456789abcdef0123456789abcdef").unwrap();
        let found = header_stanzas(armored.as_bytes()).unwrap();
        assert_eq!(found, vec![expected_stanza(&x1)]);
        assert!(header_stanzas(b"not age").is_err());
    }
}
