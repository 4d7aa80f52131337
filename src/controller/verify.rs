//! Which signatures a fetch must check, decided from the Application's
//! `spec.source.verify` and the Policies that bind it.
//!
//! - Neither asks for signatures: none are checked.
//! - A binding Policy requires signatures: the revision must be signed by one of the
//!   Policies' signers. The Application cannot widen that list (its Secret's signers are
//!   not added); `verify.mode` still chooses commit or tag.
//! - Only the Application asks: its verify Secret lists the signers; a `verify` without
//!   a Secret and without a Policy that lists signers cannot reconcile.

use std::collections::BTreeMap;

use super::application::VerifyMode;
use super::validate::VerifySettings;
use crate::source::Verification;

/// Why no verification could be set up. Messages name the Secret and key, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "spec.source.verify names no secretRef and no Policy binding this Application lists signers"
    )]
    NoSigners,
    #[error("the verify Secret {secret:?} holds no allowed signers")]
    EmptySecret { secret: String },
    #[error("the verify Secret {secret:?}: the value of key {key:?} is not UTF-8 text")]
    NotText { secret: String, key: String },
}

/// The allowed signers held by a verify Secret's data: every armored OpenPGP public key
/// block is one signer, and every other non-empty line that is not a `#` comment is one
/// (an SSH public key or allowed_signers line, or an OpenPGP fingerprint). Keys are read
/// in name order.
pub fn signers_from_secret(
    secret: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<String>, VerifyError> {
    const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
    const END: &str = "-----END PGP PUBLIC KEY BLOCK-----";
    let mut out = Vec::new();
    for (key, value) in data {
        let text = std::str::from_utf8(value).map_err(|_| VerifyError::NotText {
            secret: secret.to_owned(),
            key: key.clone(),
        })?;
        let mut rest = text;
        while let Some(start) = rest.find(BEGIN) {
            plain_lines(&rest[..start], &mut out);
            match rest[start..].find(END) {
                Some(end) => {
                    let stop = start + end + END.len();
                    out.push(rest[start..stop].to_owned());
                    rest = &rest[stop..];
                }
                None => {
                    // An unterminated block is passed on whole; the verifier says why it
                    // cannot be used.
                    out.push(rest[start..].to_owned());
                    rest = "";
                }
            }
        }
        plain_lines(rest, &mut out);
    }
    if out.is_empty() {
        return Err(VerifyError::EmptySecret {
            secret: secret.to_owned(),
        });
    }
    Ok(out)
}

fn plain_lines(text: &str, out: &mut Vec<String>) {
    out.extend(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned),
    );
}

/// The verification a fetch must do. `secret_signers` are the signers read from the
/// Application's verify Secret (see [`signers_from_secret`]); `policy_signers` is
/// [`crate::policy::PolicySet::required_signers`] of the binding Policies.
pub fn verification(
    app: Option<&VerifySettings>,
    secret_signers: Option<Vec<String>>,
    policy_signers: Option<Vec<String>>,
) -> Result<Verification, VerifyError> {
    let mode = app.map_or(VerifyMode::Head, |v| v.mode);
    let signers = match (app, policy_signers) {
        (_, Some(p)) if !p.is_empty() => p,
        (None, _) => return Ok(Verification::None),
        (Some(_), _) => match secret_signers {
            Some(s) if !s.is_empty() => s,
            _ => return Err(VerifyError::NoSigners),
        },
    };
    Ok(match mode {
        VerifyMode::Head => Verification::HeadCommit { signers },
        VerifyMode::Tag => Verification::Tag { signers },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZ alice@example.com";

    #[test]
    fn signers_are_read_from_every_key_of_the_secret() {
        let armored = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n=abc\n-----END PGP PUBLIC KEY BLOCK-----\n";
        let data = BTreeMap::from([
            (
                "allowed_signers".to_owned(),
                format!("# team\n{SSH}\n\n").into_bytes(),
            ),
            (
                "bob.asc".to_owned(),
                format!("{armored}ABCD 1234 ABCD 1234 ABCD  1234 ABCD 1234 ABCD 1234\n")
                    .into_bytes(),
            ),
        ]);
        let s = signers_from_secret("signers", &data).unwrap();
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0], SSH);
        assert!(
            s[1].starts_with("-----BEGIN PGP")
                && s[1].ends_with("BLOCK-----")
                && s[1].contains("=abc")
        );
        assert!(s[2].starts_with("ABCD 1234"));
        let empty = BTreeMap::from([("a".to_owned(), b"# nothing\n".to_vec())]);
        assert_eq!(
            signers_from_secret("s", &empty),
            Err(VerifyError::EmptySecret { secret: "s".into() })
        );
        let binary = BTreeMap::from([("k".to_owned(), vec![0xff, 0xfe])]);
        let e = signers_from_secret("s", &binary).unwrap_err().to_string();
        assert!(e.contains("key \"k\"") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn who_decides_the_signers() {
        let head = VerifySettings {
            mode: VerifyMode::Head,
            secret: Some("s".into()),
        };
        let tag = VerifySettings {
            mode: VerifyMode::Tag,
            secret: None,
        };
        let app_list = Some(vec![SSH.to_owned()]);
        let platform = vec!["ssh-ed25519 AAAAPLATFORM".to_owned()];
        let policy_list = Some(platform.clone());
        assert_eq!(verification(None, None, None), Ok(Verification::None));
        assert_eq!(
            verification(Some(&head), app_list.clone(), None),
            Ok(Verification::HeadCommit {
                signers: vec![SSH.to_owned()]
            })
        );
        // A Policy's list wins and cannot be widened by the Application.
        assert_eq!(
            verification(Some(&head), app_list, policy_list.clone()),
            Ok(Verification::HeadCommit {
                signers: platform.clone()
            })
        );
        // A Policy alone requires signed commits; the Application's mode picks tags.
        assert_eq!(
            verification(None, None, policy_list.clone()),
            Ok(Verification::HeadCommit {
                signers: platform.clone()
            })
        );
        assert_eq!(
            verification(Some(&tag), None, policy_list.clone()),
            Ok(Verification::Tag { signers: platform })
        );
        assert_eq!(
            verification(Some(&tag), None, None),
            Err(VerifyError::NoSigners)
        );
        assert_eq!(
            verification(Some(&head), Some(vec![]), Some(vec![])),
            Err(VerifyError::NoSigners)
        );
    }
}
