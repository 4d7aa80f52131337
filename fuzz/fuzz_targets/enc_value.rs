//! The `ENC[AES256_GCM,...]` value parser and decryptor on arbitrary text.
//!
//! Input: UTF-8 `AAD \n VALUE` (no newline: empty AAD). The key is the data key of
//! vector `06-tampered/base.enc.yaml`, so seeds taken from that file really decrypt
//! and the typed-plaintext paths (int, float, bool, time, comment) are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep::sops::cipher;

const KEY: [u8; 32] = [
    0xf3, 0x63, 0x6a, 0xe2, 0xb0, 0xf6, 0xe4, 0x69, 0x74, 0xf4, 0xdd, 0xa2, 0xef, 0x97, 0x4a, 0x4b,
    0xed, 0x39, 0x2a, 0x48, 0xd8, 0x56, 0xec, 0x41, 0x66, 0x2a, 0xae, 0xc7, 0x71, 0x2f, 0xb8, 0x39,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (aad, value) = text.split_once('\n').unwrap_or(("", text));

    let raw = cipher::decrypt_raw(&KEY, value, aad);
    let typed = cipher::decrypt(&KEY, value, aad);
    // A value that authenticates raw must either decode or fail with BadPlaintext,
    // and one that does not authenticate must fail identically in both.
    match (&raw, &typed) {
        (Ok(_), Ok(_)) => {}
        (Ok(_), Err(e)) => assert!(matches!(e, cipher::CipherError::BadPlaintext(_)), "{e:?}"),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (Err(e), Ok(_)) => panic!("decrypt succeeded where decrypt_raw failed: {e:?}"),
    }

    // iv_of parses on its own; a 32-byte IV is returned for any well-formed value.
    let iv = cipher::iv_of(value);
    // Re-encrypting a decrypted value with its own IV must give a value that decrypts
    // to the same plaintext and type.
    if let (Ok((plain, ty)), Some(iv)) = (&raw, iv) {
        let again = cipher::encrypt_with_iv(&KEY, plain, *ty, aad, &iv).expect("encrypt");
        let back = cipher::decrypt_raw(&KEY, &again, aad).expect("re-decrypt");
        assert_eq!(back.0.as_slice(), plain.as_slice());
        assert_eq!(back.1, *ty);
    }
});
