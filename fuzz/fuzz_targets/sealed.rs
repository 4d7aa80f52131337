//! The SealedSecret parser and unsealer: arbitrary bytes as a manifest file (YAML or
//! JSON), every document read as a SealedSecret and, where that succeeds, opened with
//! a fixed identity; the raw bytes also go to the envelope decoder, and every document
//! to the Secret reader. Errors are fine; panics, hangs and memory blow-ups are findings.
//!
//! The seeds in fuzz/seeds/sealed are real SealedSecrets sealed to
//! fuzz/seeds/sealed-key.txt (a key made for fuzzing only), so mutations start from
//! values that open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep::crypto::age_keys::Identities;
use lockstep::sealed::{self, envelope};

const KEY: &str = include_str!("../seeds/sealed-key.txt");

// Built once (libFuzzer runs the target on one thread).
thread_local! {
    static IDS: Identities = {
        let mut ids = Identities::default();
        ids.add_key_file_text(KEY, "sealed-key").expect("sealed-key.txt");
        ids
    };
}

fuzz_target!(|data: &[u8]| {
    if let Ok((binding, value)) = envelope::decode(data) {
        // Whatever decodes must encode back to the same bytes.
        assert_eq!(envelope::encode(&binding, &value).as_slice(), data);
    }
    let Ok(docs) = lockstep::manifest::load_documents(data) else {
        return;
    };
    for (i, doc) in lockstep::manifest::expand_lists(docs).iter().enumerate() {
        let position = format!("document {}", i + 1);
        if let Ok(s) = sealed::sealed_from_node(doc, &position) {
            let _ = IDS.with(|ids| sealed::unseal(&s, ids));
            // A parsed SealedSecret must survive emit + parse unchanged.
            let text = lockstep::manifest::emit_documents(&[s.to_node()]);
            let again = lockstep::manifest::load_documents(text.as_bytes()).expect("emitted YAML parses");
            assert_eq!(again.len(), 1);
            let back = sealed::sealed_from_node(&again[0], &position)
                .expect("an emitted SealedSecret reads back");
            assert_eq!(back, s, "emit + parse changed the SealedSecret:\n{text}");
        }
        let _ = sealed::secret_from_node(doc, &position);
    }
});
