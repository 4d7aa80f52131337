//! age recipients and identities, and wrapping a data key as an ASCII-armored age file
//! (what sops stores in `sops.age[].enc`).

use std::io::{BufReader, Read, Write};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

/// Errors about keys. Messages name the recipient or the key source, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid age recipient {0:?}: {1}")]
    BadRecipient(String, String),
    #[error(
        "unsupported recipient type {0:?}: lockstep supports age X25519 (age1…) and SSH (ssh-ed25519, ssh-rsa) recipients"
    )]
    UnsupportedRecipient(String),
    #[error("{source_name}: line {line}: unknown identity type (expected AGE-SECRET-KEY-1…)")]
    BadIdentityLine { source_name: String, line: usize },
    #[error(
        "{0}: passphrase-protected identity files are not supported; decrypt it with `age -d` into a 0600 file first"
    )]
    EncryptedIdentityFile(String),
    #[error("{0}: not a usable SSH private key ({1})")]
    BadSshKey(String, String),
    #[error("{0}: passphrase-protected SSH keys are not supported")]
    EncryptedSshKey(String),
    #[error("could not wrap the data key for {0}: {1}")]
    Wrap(String, String),
    #[error("{0}")]
    Unwrap(String),
}

/// A recipient as written in `--age`, `.sops.yaml` and `sops.age[].recipient`.
#[derive(Clone)]
pub struct AgeRecipient {
    /// Verbatim (trimmed) text: sops stores SSH keys with their comment.
    pub text: String,
    kind: RecipientKind,
}

#[derive(Clone)]
enum RecipientKind {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

impl std::fmt::Debug for AgeRecipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl AgeRecipient {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let kind = if text.starts_with("age1pq1")
            || (text.starts_with("age1")
                && text.matches('1').count() > 1
                && age::x25519::Recipient::from_str(text).is_err())
        {
            return Err(KeyError::UnsupportedRecipient(text.to_owned()));
        } else if text.starts_with("age1") {
            RecipientKind::X25519(
                age::x25519::Recipient::from_str(text)
                    .map_err(|e| KeyError::BadRecipient(text.to_owned(), e.to_string()))?,
            )
        } else if text.starts_with("ssh-") {
            RecipientKind::Ssh(
                age::ssh::Recipient::from_str(text)
                    .map_err(|e| KeyError::BadRecipient(text.to_owned(), format!("{e:?}")))?,
            )
        } else {
            return Err(KeyError::UnsupportedRecipient(text.to_owned()));
        };
        Ok(AgeRecipient {
            text: text.to_owned(),
            kind,
        })
    }

    fn as_dyn(&self) -> &dyn age::Recipient {
        match &self.kind {
            RecipientKind::X25519(r) => r,
            RecipientKind::Ssh(r) => r,
        }
    }

    /// Wraps `key` (the data key or a Shamir share) in an armored age file with this
    /// single recipient, as sops does.
    pub fn wrap(&self, key: &[u8]) -> Result<String, KeyError> {
        let err = |e: &dyn std::fmt::Display| KeyError::Wrap(self.text.clone(), e.to_string());
        let enc =
            age::Encryptor::with_recipients(std::iter::once(self.as_dyn())).map_err(|e| err(&e))?;
        let mut out = Vec::new();
        let armor =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| err(&e))?;
        let mut w = enc.wrap_output(armor).map_err(|e| err(&e))?;
        w.write_all(key).map_err(|e| err(&e))?;
        w.finish().and_then(|a| a.finish()).map_err(|e| err(&e))?;
        String::from_utf8(out).map_err(|e| err(&e))
    }
}

/// Encrypts `plain` into one binary age file readable by every recipient given.
pub fn encrypt_to(recipients: &[AgeRecipient], plain: &[u8]) -> Result<Vec<u8>, KeyError> {
    let names = || {
        recipients
            .iter()
            .map(|r| r.text.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let err = |e: &dyn std::fmt::Display| KeyError::Wrap(names(), e.to_string());
    let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_dyn()))
        .map_err(|e| err(&e))?;
    let mut out = Vec::with_capacity(plain.len() + 256);
    let mut w = enc.wrap_output(&mut out).map_err(|e| err(&e))?;
    w.write_all(plain).map_err(|e| err(&e))?;
    w.finish().map_err(|e| err(&e))?;
    Ok(out)
}

/// Reads a recipients file (one recipient per line; blank lines and `#` comments
/// ignored), as `age -R` does.
pub fn parse_recipients_file(text: &str, source_name: &str) -> Result<Vec<AgeRecipient>, KeyError> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            AgeRecipient::parse(l).map_err(|e| {
                KeyError::BadRecipient(format!("{source_name}:{}", i + 1), e.to_string())
            })
        })
        .collect()
}

/// A set of identities that can open age files.
#[derive(Default)]
pub struct Identities {
    ids: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// The recipient of each identity in `ids` where lockstep can derive it (X25519).
    publics: Vec<Option<String>>,
    /// Where the identities came from, for error messages.
    pub sources: Vec<String>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} from {:?})", self.ids.len(), self.sources)
    }
}

impl Identities {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Adds the identities of an age key file (`AGE-SECRET-KEY-1…` lines; `#` comments
    /// and blank lines ignored). A bad line fails the whole source, as in sops.
    pub fn add_key_file_text(&mut self, text: &str, source_name: &str) -> Result<usize, KeyError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with("age-encryption.org/") || trimmed.starts_with("-----BEGIN AGE") {
            return Err(KeyError::EncryptedIdentityFile(source_name.to_owned()));
        }
        let mut found: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        let mut publics = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id =
                age::x25519::Identity::from_str(line).map_err(|_| KeyError::BadIdentityLine {
                    source_name: source_name.to_owned(),
                    line: i + 1,
                })?;
            publics.push(Some(id.to_public().to_string()));
            found.push(Box::new(id));
        }
        let n = found.len();
        self.ids.extend(found);
        self.publics.extend(publics);
        self.sources.push(source_name.to_owned());
        Ok(n)
    }

    /// Adds an OpenSSH private key (ed25519 or rsa) as an age identity.
    pub fn add_ssh_key_text(&mut self, text: &str, source_name: &str) -> Result<(), KeyError> {
        let id = age::ssh::Identity::from_buffer(
            BufReader::new(text.as_bytes()),
            Some(source_name.to_owned()),
        )
        .map_err(|e| KeyError::BadSshKey(source_name.to_owned(), e.to_string()))?;
        match id {
            age::ssh::Identity::Unencrypted(_) => {}
            age::ssh::Identity::Encrypted(_) => {
                return Err(KeyError::EncryptedSshKey(source_name.to_owned()));
            }
            age::ssh::Identity::Unsupported(_) => {
                return Err(KeyError::BadSshKey(
                    source_name.to_owned(),
                    "unsupported key type".into(),
                ));
            }
        }
        self.ids.push(Box::new(id));
        self.publics.push(None);
        self.sources.push(source_name.to_owned());
        Ok(())
    }

    /// The recipient of an identity here, not among `wanted`, that opens `file`, if any.
    /// This is how a value still sealed to an old key is found even when the recipient
    /// list stored next to it claims otherwise. Identities whose recipient lockstep cannot
    /// derive (SSH keys) are not tried.
    pub fn outside_opener(&self, file: &[u8], wanted: &[String]) -> Option<String> {
        self.ids.iter().zip(&self.publics).find_map(|(id, public)| {
            let public = public.as_ref()?;
            if wanted.iter().any(|w| w.trim() == public) {
                return None;
            }
            let reader = age::armor::ArmoredReader::new(file);
            let dec = age::Decryptor::new(reader).ok()?;
            dec.decrypt(std::iter::once(id.as_ref() as &dyn age::Identity))
                .ok()
                .map(|_| public.clone())
        })
    }

    /// Opens an armored (or binary) age file holding a data key or share.
    pub fn unwrap(&self, enc: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.decrypt_bytes(enc.as_bytes())
    }

    /// Opens an age file (armored or binary) with these identities.
    pub fn decrypt_bytes(&self, file: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if self.ids.is_empty() {
            return Err(KeyError::Unwrap("no age identities were found".into()));
        }
        let reader = age::armor::ArmoredReader::new(file);
        let dec = age::Decryptor::new(reader)
            .map_err(|e| KeyError::Unwrap(format!("not a valid age file: {e}")))?;
        let mut r = dec
            .decrypt(self.ids.iter().map(|b| b.as_ref() as &dyn age::Identity))
            .map_err(|e| KeyError::Unwrap(e.to_string()))?;
        let mut out = Zeroizing::new(Vec::new());
        r.read_to_end(&mut out)
            .map_err(|e| KeyError::Unwrap(format!("age payload: {e}")))?;
        Ok(out)
    }
}

/// A freshly generated X25519 identity.
pub struct GeneratedKey {
    /// The `AGE-SECRET-KEY-1…` line.
    pub secret: Zeroizing<String>,
    pub recipient: String,
}

pub fn generate() -> GeneratedKey {
    let id = age::x25519::Identity::generate();
    GeneratedKey {
        secret: Zeroizing::new(id.to_string().expose_secret().to_owned()),
        recipient: id.to_public().to_string(),
    }
}

/// The key file text in the age-keygen format.
pub fn key_file_text(key: &GeneratedKey, created: &str) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "# created: {created}\n# public key: {}\n{}\n",
        key.recipient,
        key.secret.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_then_unwrap_round_trips() {
        let k = generate();
        let r = AgeRecipient::parse(&k.recipient).unwrap();
        let enc = r.wrap(&[7u8; 32]).unwrap();
        assert!(enc.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
        assert!(enc.ends_with("-----END AGE ENCRYPTED FILE-----\n"));
        let mut ids = Identities::default();
        ids.add_key_file_text(&key_file_text(&k, "now"), "test")
            .unwrap();
        assert_eq!(&ids.unwrap(&enc).unwrap()[..], &[7u8; 32]);
    }

    #[test]
    fn bad_recipients_are_named() {
        let e = AgeRecipient::parse("age1notakey").unwrap_err().to_string();
        assert!(e.contains("age1notakey"), "{e}");
        assert!(AgeRecipient::parse("pgp:ABCDEF").is_err());
    }

    #[test]
    fn bad_identity_line_fails_the_source() {
        let mut ids = Identities::default();
        let e = ids
            .add_key_file_text("# c\nnot-a-key\n", "keys.txt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("keys.txt: line 2"), "{e}");
    }
}

#[cfg(test)]
mod thread_safety {
    /// The reconciler shares identities across async tasks.
    #[test]
    fn identities_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Identities>();
    }
}
