//! The encrypted value `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` (sops `aes/cipher.go`).
//!
//! AES-256-GCM with a 32-byte IV, which is why `aes-gcm` is used with a `U32` nonce type:
//! ring's AEAD only takes 96-bit nonces.

use aes_gcm::AesGcm;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::generic_array::typenum::{U12, U32};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::crypto::random_bytes;
use crate::sops::tree::{Blob, Scalar, Text};

const PREFIX: &str = "ENC[AES256_GCM,";
const TAG_LEN: usize = 16;

type Gcm32 = AesGcm<Aes256, U32>;
type Gcm12 = AesGcm<Aes256, U12>;

/// The `type:` field of an encrypted value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Str,
    Int,
    Float,
    Bool,
    Time,
    Comment,
    Bytes,
}

impl DataType {
    fn name(self) -> &'static str {
        match self {
            DataType::Str => "str",
            DataType::Int => "int",
            DataType::Float => "float",
            DataType::Bool => "bool",
            DataType::Time => "time",
            DataType::Comment => "comment",
            DataType::Bytes => "bytes",
        }
    }
}

/// Why a value could not be decrypted. Messages never contain the value itself: a
/// malformed value in an encrypted position may be a plaintext secret typed by hand.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error(
        "value does not match sops' data format (expected ENC[AES256_GCM,data:…,iv:…,tag:…,type:…])"
    )]
    Malformed,
    #[error("invalid base64 in the {0} field of an encrypted value")]
    BadBase64(&'static str),
    #[error("unsupported IV length {0} in an encrypted value")]
    BadIvLength(usize),
    #[error("GCM tag must be 16 bytes, found {0}")]
    BadTagLength(usize),
    #[error("Unknown datatype: {0}")]
    UnknownType(String),
    #[error("Could not decrypt with AES_GCM: cipher: message authentication failed")]
    Authentication,
    #[error("decrypted value is not a valid {0}")]
    BadPlaintext(&'static str),
    #[error("data key must be 32 bytes")]
    BadKey,
}

/// True when a string looks like an encrypted value (used to tell encrypted files and
/// list-item comments apart).
pub fn is_encrypted(s: &str) -> bool {
    s.starts_with(PREFIX)
}

struct Parsed {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    ty: String,
}

fn parse(s: &str) -> Result<Parsed, CipherError> {
    let inner = s
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix(']'))
        .ok_or(CipherError::Malformed)?;
    let mut fields = inner.split(',');
    let mut field = |name: &'static str| -> Result<&str, CipherError> {
        let part = fields.next().ok_or(CipherError::Malformed)?;
        let v = part
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .ok_or(CipherError::Malformed)?;
        if v.is_empty() {
            return Err(CipherError::Malformed);
        }
        Ok(v)
    };
    let data = field("data")?;
    let iv = field("iv")?;
    let tag = field("tag")?;
    let ty = field("type")?;
    if fields.next().is_some() {
        return Err(CipherError::Malformed);
    }
    Ok(Parsed {
        data: STANDARD
            .decode(data)
            .map_err(|_| CipherError::BadBase64("data"))?,
        iv: STANDARD
            .decode(iv)
            .map_err(|_| CipherError::BadBase64("iv"))?,
        tag: STANDARD
            .decode(tag)
            .map_err(|_| CipherError::BadBase64("tag"))?,
        ty: ty.to_owned(),
    })
}

fn data_type(name: &str) -> Result<DataType, CipherError> {
    Ok(match name {
        "str" => DataType::Str,
        "int" => DataType::Int,
        "float" => DataType::Float,
        "bool" => DataType::Bool,
        "time" => DataType::Time,
        "comment" => DataType::Comment,
        "bytes" => DataType::Bytes,
        other => return Err(CipherError::UnknownType(other.chars().take(32).collect())),
    })
}

/// Decrypts one value to its raw plaintext bytes and type.
pub fn decrypt_raw(
    key: &[u8],
    value: &str,
    aad: &str,
) -> Result<(Zeroizing<Vec<u8>>, DataType), CipherError> {
    if key.len() != 32 {
        return Err(CipherError::BadKey);
    }
    let p = parse(value)?;
    let ty = data_type(&p.ty)?;
    if p.tag.len() != TAG_LEN {
        return Err(CipherError::BadTagLength(p.tag.len()));
    }
    let mut msg = p.data;
    msg.extend_from_slice(&p.tag);
    let payload = Payload {
        msg: &msg,
        aad: aad.as_bytes(),
    };
    let key = GenericArray::from_slice(key);
    let plain = match p.iv.len() {
        32 => Gcm32::new(key).decrypt(GenericArray::from_slice(&p.iv), payload),
        12 => Gcm12::new(key).decrypt(GenericArray::from_slice(&p.iv), payload),
        n => return Err(CipherError::BadIvLength(n)),
    }
    .map_err(|_| CipherError::Authentication)?;
    Ok((Zeroizing::new(plain), ty))
}

/// Decrypts one value into a typed scalar (or, for `type:comment`, a comment text).
pub fn decrypt(key: &[u8], value: &str, aad: &str) -> Result<Decrypted, CipherError> {
    let (plain, ty) = decrypt_raw(key, value, aad)?;
    let text = || String::from_utf8(plain.to_vec());
    Ok(match ty {
        DataType::Str => match text() {
            Ok(s) => Decrypted::Scalar(Scalar::Str(Text::new(s))),
            Err(e) => Decrypted::Scalar(Scalar::Bytes(Blob::new(e.into_bytes()))),
        },
        DataType::Bytes => Decrypted::Scalar(Scalar::Bytes(Blob::new(plain.to_vec()))),
        DataType::Comment => Decrypted::Comment(Text::new(
            text().map_err(|_| CipherError::BadPlaintext("comment"))?,
        )),
        DataType::Int => {
            let s = std::str::from_utf8(&plain).map_err(|_| CipherError::BadPlaintext("int"))?;
            Decrypted::Scalar(Scalar::Int(
                s.parse::<i64>()
                    .map_err(|_| CipherError::BadPlaintext("int"))?,
            ))
        }
        DataType::Float => {
            let s = std::str::from_utf8(&plain).map_err(|_| CipherError::BadPlaintext("float"))?;
            Decrypted::Scalar(Scalar::Float(
                parse_go_float(s).ok_or(CipherError::BadPlaintext("float"))?,
            ))
        }
        DataType::Bool => {
            let s = std::str::from_utf8(&plain).map_err(|_| CipherError::BadPlaintext("bool"))?;
            Decrypted::Scalar(Scalar::Bool(
                parse_go_bool(s).ok_or(CipherError::BadPlaintext("bool"))?,
            ))
        }
        DataType::Time => {
            let s = std::str::from_utf8(&plain).map_err(|_| CipherError::BadPlaintext("time"))?;
            Decrypted::Scalar(Scalar::Time(Text::new(
                crate::sops::gotime::canonical_rfc3339(s)
                    .ok_or(CipherError::BadPlaintext("time"))?,
            )))
        }
    })
}

/// The result of decrypting one value.
pub enum Decrypted {
    Scalar(Scalar),
    Comment(Text),
}

/// Encrypts raw plaintext with a fresh random 32-byte IV.
pub fn encrypt_raw(
    key: &[u8],
    plain: &[u8],
    ty: DataType,
    aad: &str,
) -> Result<String, CipherError> {
    let iv: [u8; 32] = random_bytes();
    encrypt_with_iv(key, plain, ty, aad, &iv)
}

/// Encrypts with a given IV. Only for re-encrypting an unchanged value (same key,
/// plaintext and AAD), which reproduces the previous ciphertext exactly.
pub fn encrypt_with_iv(
    key: &[u8],
    plain: &[u8],
    ty: DataType,
    aad: &str,
    iv: &[u8; 32],
) -> Result<String, CipherError> {
    if key.len() != 32 {
        return Err(CipherError::BadKey);
    }
    let cipher = Gcm32::new(GenericArray::from_slice(key));
    let mut out = cipher
        .encrypt(
            GenericArray::from_slice(iv),
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| CipherError::Authentication)?;
    let tag = out.split_off(out.len() - TAG_LEN);
    Ok(format!(
        "{PREFIX}data:{},iv:{},tag:{},type:{}]",
        STANDARD.encode(&out),
        STANDARD.encode(iv),
        STANDARD.encode(&tag),
        ty.name()
    ))
}

/// The IV of an encrypted value, if it is well-formed and 32 bytes long.
pub fn iv_of(value: &str) -> Option<[u8; 32]> {
    parse(value).ok()?.iv.try_into().ok()
}

/// sops' `ToBytes`: the canonical plaintext of a scalar, used both as the plaintext
/// to encrypt and as the MAC input. `None` for null (never encrypted, never hashed).
pub fn scalar_plaintext(s: &Scalar) -> Option<(Zeroizing<Vec<u8>>, DataType)> {
    let (bytes, ty) = match s {
        Scalar::Null => return None,
        Scalar::Str(t) => (t.as_str().as_bytes().to_vec(), DataType::Str),
        // The binary store's bytes are encrypted as `str`, as sops does.
        Scalar::Bytes(b) => (b.as_bytes().to_vec(), DataType::Str),
        Scalar::Int(i) => (i.to_string().into_bytes(), DataType::Int),
        Scalar::Float(f) => (format_go_float(*f).into_bytes(), DataType::Float),
        Scalar::Bool(b) => (
            if *b { "True" } else { "False" }.as_bytes().to_vec(),
            DataType::Bool,
        ),
        Scalar::Time(t) => (t.as_str().as_bytes().to_vec(), DataType::Time),
    };
    Some((Zeroizing::new(bytes), ty))
}

/// Go `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits, no exponent.
pub fn format_go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        // Rust's Display for f64 prints the shortest round-trip digits without exponent.
        format!("{f}")
    }
}

/// Go `strconv.ParseFloat(s, 64)` for the forms sops writes and reads.
pub fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => return Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "+inf" | "Infinity" | "+Infinity" => return Some(f64::INFINITY),
        "-Inf" | "-inf" | "-Infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    if s.is_empty() || s.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Go `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Vec<u8> {
        (0..64)
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(
                    &"f3636ae2b0f6e46974f4dda2ef974a4bed392a48d856ec41662aaec7712fb839"[i..i + 2],
                    16,
                )
                .unwrap()
            })
            .collect()
    }

    const USERNAME: &str = "ENC[AES256_GCM,data:F5m2oeY=,iv:ID7jQHPrL0eJM91hcABxaRbHDoACQFpGGjXDsA6pn3c=,tag:mmc+TMem8e/ZC2W0LZV/zw==,type:str]";

    #[test]
    fn decrypts_a_value_written_by_sops() {
        let (plain, ty) = decrypt_raw(&key(), USERNAME, "username:").unwrap();
        assert_eq!(&plain[..], b"admin");
        assert_eq!(ty, DataType::Str);
    }

    #[test]
    fn wrong_aad_fails_authentication() {
        assert_eq!(
            decrypt_raw(&key(), USERNAME, "password:").err(),
            Some(CipherError::Authentication)
        );
    }

    #[test]
    fn same_iv_reproduces_the_same_ciphertext() {
        let iv = iv_of(USERNAME).unwrap();
        let again = encrypt_with_iv(&key(), b"admin", DataType::Str, "username:", &iv).unwrap();
        assert_eq!(again, USERNAME);
    }

    #[test]
    fn malformed_values_are_rejected_without_echoing_them() {
        for bad in [
            "ENC[AES256_GCM,data:,iv:a,tag:b,type:str]",
            "ENC[AES256_GCM,data:!!,iv:AAAA,tag:AAAA,type:str]",
            "secret-canary",
            "ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA]",
        ] {
            let e = decrypt_raw(&key(), bad, "x:").unwrap_err();
            assert!(!e.to_string().contains("canary"));
        }
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(format_go_float(2.0), "2");
        assert_eq!(format_go_float(1e20), "100000000000000000000");
        assert_eq!(format_go_float(1.5e-7), "0.00000015");
        assert_eq!(format_go_float(-0.0), "-0");
        assert_eq!(format_go_float(f64::INFINITY), "+Inf");
        assert_eq!(format_go_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_go_float(f64::NAN), "NaN");
    }
}
