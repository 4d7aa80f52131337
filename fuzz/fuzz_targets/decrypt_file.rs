//! Whole-file loading and decryption. The first byte picks the format (0 yaml, 1 json,
//! 2 dotenv, 3 binary; taken mod 4), the rest is the file. Errors are fine; panics,
//! hangs and memory blow-ups are findings.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lockstep::crypto::age_keys::Identities;
use lockstep::sops::{self, Format};

/// The identity the vectors are encrypted to (tests/vectors/sops/key1.txt).
const KEY1: &str = include_str!("../../tests/vectors/sops/key1.txt");

fn identities() -> &'static Identities {
    static IDS: OnceLock<Identities> = OnceLock::new();
    IDS.get_or_init(|| {
        let mut ids = Identities::default();
        ids.add_key_file_text(KEY1, "key1").expect("key1.txt");
        ids
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let format = match first % 4 {
        0 => Format::Yaml,
        1 => Format::Json,
        2 => Format::Dotenv,
        _ => Format::Binary,
    };
    let _ = sops::load_encrypted(rest, format);
    let _ = sops::parse_plain(rest, format);
    let _ = sops::decrypt(rest, format, identities(), &[], Default::default());
});
