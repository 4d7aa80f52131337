//! The plaintext inside each sealed value: a small versioned envelope that binds the
//! value to its place (scope, namespace, name, key). The outer layer is a plain age
//! file, so `age -d -i KEY` opens it; the envelope is what stops a value from being
//! moved to another Secret, namespace or key and still opening.
//!
//! ```text
//! lockstep.dev/sealed/v1
//! scope: strict
//! namespace: payments
//! name: db
//! key: password
//!
//! <value bytes>
//! ```
//! Names and keys cannot contain newlines (they are validated), so the header ends
//! at the first empty line and everything after it is the value, byte for byte.

use zeroize::Zeroizing;

use super::Scope;

pub const MAGIC_V1: &str = "lockstep.dev/sealed/v1";
const MAGIC_PREFIX: &str = "lockstep.dev/sealed/";

/// Where a value is bound. Fields that the scope does not bind are empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub scope: Scope,
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl Binding {
    /// The binding a value gets in a given place under a scope.
    pub fn new(scope: Scope, namespace: &str, name: &str, key: &str) -> Binding {
        let (namespace, name) = match scope {
            Scope::Strict => (namespace, name),
            Scope::NamespaceWide => (namespace, ""),
            Scope::ClusterWide => ("", ""),
        };
        Binding {
            scope,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("not a lockstep sealed value (no envelope header)")]
    NotAnEnvelope,
    #[error("unsupported sealed envelope version {0:?} (this lockstep reads v1)")]
    UnknownVersion(String),
    #[error("malformed sealed envelope: {0}")]
    Malformed(&'static str),
}

pub fn encode(b: &Binding, value: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(96 + value.len()));
    out.extend_from_slice(
        format!(
            "{MAGIC_V1}\nscope: {}\nnamespace: {}\nname: {}\nkey: {}\n\n",
            b.scope.as_str(),
            b.namespace,
            b.name,
            b.key
        )
        .as_bytes(),
    );
    out.extend_from_slice(value);
    out
}

/// Splits an envelope into its binding and value.
pub fn decode(plain: &[u8]) -> Result<(Binding, Zeroizing<Vec<u8>>), EnvelopeError> {
    let line_end = plain
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(EnvelopeError::NotAnEnvelope)?;
    let magic =
        std::str::from_utf8(&plain[..line_end]).map_err(|_| EnvelopeError::NotAnEnvelope)?;
    if magic != MAGIC_V1 {
        return Err(match magic.strip_prefix(MAGIC_PREFIX) {
            Some(v) => EnvelopeError::UnknownVersion(v.chars().take(16).collect()),
            None => EnvelopeError::NotAnEnvelope,
        });
    }
    let mut rest = &plain[line_end + 1..];
    let mut field = |name: &'static str| -> Result<String, EnvelopeError> {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(EnvelopeError::Malformed("truncated header"))?;
        let line = std::str::from_utf8(&rest[..end])
            .map_err(|_| EnvelopeError::Malformed("header is not UTF-8"))?;
        let v = line
            .strip_prefix(name)
            .and_then(|l| l.strip_prefix(": "))
            .ok_or(EnvelopeError::Malformed("unexpected header field"))?;
        let v = v.to_owned();
        rest = &rest[end + 1..];
        Ok(v)
    };
    let scope = Scope::parse(&field("scope")?).ok_or(EnvelopeError::Malformed("unknown scope"))?;
    let namespace = field("namespace")?;
    let name = field("name")?;
    let key = field("key")?;
    let value = rest.strip_prefix(b"\n").ok_or(EnvelopeError::Malformed(
        "header not terminated by an empty line",
    ))?;
    Ok((
        Binding {
            scope,
            namespace,
            name,
            key,
        },
        Zeroizing::new(value.to_vec()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_value_bytes_exactly() {
        let b = Binding::new(Scope::Strict, "payments", "db", "password");
        let value = b"\n\nline1\r\n\x00\xff";
        let env = encode(&b, value);
        let (b2, v2) = decode(&env).unwrap();
        assert_eq!(b, b2);
        assert_eq!(v2.as_slice(), value);
    }

    #[test]
    fn scopes_drop_unbound_fields() {
        assert_eq!(Binding::new(Scope::NamespaceWide, "ns", "n", "k").name, "");
        let c = Binding::new(Scope::ClusterWide, "ns", "n", "k");
        assert_eq!((c.namespace.as_str(), c.name.as_str()), ("", ""));
    }

    #[test]
    fn unknown_version_and_garbage_are_rejected() {
        assert_eq!(
            decode(b"lockstep.dev/sealed/v9\nscope: strict\n").unwrap_err(),
            EnvelopeError::UnknownVersion("v9".into())
        );
        assert_eq!(decode(b"hello").unwrap_err(), EnvelopeError::NotAnEnvelope);
        assert!(decode(b"lockstep.dev/sealed/v1\nscope: strict\nnamespace: a\n").is_err());
        assert!(
            decode(b"lockstep.dev/sealed/v1\nscope: other\nnamespace: \nname: \nkey: k\n\nv")
                .is_err()
        );
    }
}
