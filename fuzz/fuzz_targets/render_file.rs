//! The render stage and the pre-commit checks on one manifest file: arbitrary bytes go
//! to `render::render_file` (SOPS decryption with the example SOPS identity, SealedSecret
//! unsealing with the example sealing identity, Vault references refused) and to
//! `check::check_file` with and without an identity, against the example tenant policy.
//! Errors are fine; panics, hangs, memory blow-ups and a failed render that still hands
//! out objects are findings.
//!
//! Seeds (fuzz/seeds/render_file) are the files of examples/, so mutations start from a
//! SOPS file and a SealedSecret that open with the example keys, and the hostile-* corpus
//! of tests/render_check.rs (duplicate keys, Lists, merge keys, null namespaces, anchors).
//! `check` and `render` read a file the same way: a file `check` cannot read is one
//! `render` refuses.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lockstep::check;
use lockstep::crypto::age_keys::Identities;
use lockstep::policy::{Policy, PolicySet};
use lockstep::render::{self, Limits, NoVault, RenderOptions};

const SOPS_KEY: &str = include_str!("../../keys-example/sops.agekey");
const SEALING_KEY: &str = include_str!("../../keys-example/sealing.agekey");
const POLICY: &str = include_str!("../../policies/tenant-baseline.yaml");

struct Fixed {
    sops: Identities,
    sealing: Identities,
    policies: PolicySet,
}

// Built once (libFuzzer runs the target on one thread).
thread_local! {
    static FIXED: Fixed = {
        let mut sops = Identities::default();
        sops.add_key_file_text(SOPS_KEY, "sops.agekey").expect("sops.agekey");
        let mut sealing = Identities::default();
        sealing.add_key_file_text(SEALING_KEY, "sealing.agekey").expect("sealing.agekey");
        let docs = lockstep::manifest::load_documents(POLICY.as_bytes()).expect("policy parses");
        let policy = Policy::from_node(&docs[0], Path::new("policies/tenant-baseline.yaml"))
            .expect("policy loads");
        Fixed { sops, sealing, policies: PolicySet { policies: vec![policy] } }
    };
}

fuzz_target!(|data: &[u8]| {
    // The file name decides the format (as in a checkout); `{` first reads as JSON.
    let rel = if data.first() == Some(&b'{') {
        Path::new("app/x.json")
    } else {
        Path::new("app/x.yaml")
    };
    FIXED.with(|f| {
        let opts = RenderOptions {
            sops_identities: &f.sops,
            sealing_identities: &f.sealing,
            destination_namespace: (data.len() % 2 == 0).then_some("team-billing"),
            vault: &NoVault,
            limits: Limits::default(),
        };
        let mut out = Vec::new();
        match render::render_file(rel, data, &opts, &mut out) {
            Ok(()) => {
                for o in &mut out {
                    assert!(!o.kind().is_empty() && !o.api_version().is_empty());
                    let _ = f.policies.check(&o.subject());
                    render::redact(&mut o.doc);
                }
                let docs: Vec<_> = out.into_iter().map(|o| o.doc).collect();
                let _ = lockstep::manifest::emit_documents(&docs);
            }
            Err(e) => {
                assert!(out.is_empty(), "a failed render left objects behind: {e}");
                assert_eq!(e.file, rel);
                let _ = e.to_string();
            }
        }
        let render_failed = render::render_file(rel, data, &opts, &mut Vec::new()).is_err();
        for ids in [None, Some(&f.sops)] {
            for finding in check::check_file(rel, data, ids, &f.policies) {
                assert!(finding.line >= 1, "{finding}");
                let m = &finding.message;
                // Policy findings quote the object's kind and name, which can be any text:
                // only a finding that cannot be one counts as a reading failure.
                let reading_failure = (m.starts_with("does not parse: ")
                    || m.starts_with("is not a valid object: ")
                    || m == "not a Kubernetes object (apiVersion and kind are required)")
                    && !m.contains(": denied by policy ");
                if reading_failure {
                    assert!(
                        render_failed,
                        "check cannot read what render renders: {finding}"
                    );
                }
            }
        }
    });
});
