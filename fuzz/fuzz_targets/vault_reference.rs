//! `ref+vault://PATH#KEY` references, which come from Secrets in Git (untrusted).
//!
//! Input: arbitrary UTF-8, parsed as a reference. Panics are findings, and so is an
//! accepted reference whose path could climb out of a policy prefix (an empty, `.`, `..`
//! or escaped segment), names a mount only, or does not round-trip through its own form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep::vault::{parse_reference, path_allowed};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(parsed) = parse_reference(text) else {
        assert!(
            !text.starts_with("ref+vault://"),
            "prefix not recognised: {text:?}"
        );
        return;
    };
    let Ok(r) = parsed else {
        return;
    };
    assert!(!r.key.is_empty(), "empty key accepted: {text:?}");
    assert!(r.path.contains('/'), "mount-only path accepted: {text:?}");
    for seg in r.path.split('/') {
        assert!(
            !seg.is_empty() && seg != "." && seg != ".." && !seg.contains(['?', '%']),
            "segment {seg:?} accepted in {text:?}"
        );
    }
    // The accepted form parses back to itself.
    let again = format!("ref+vault://{}#{}", r.path, r.key);
    assert_eq!(
        parse_reference(&again),
        Some(Ok(r.clone())),
        "no round trip: {text:?}"
    );
    // A policy prefix of the path's own mount allows it; a mount that merely shares its
    // name as a prefix does not.
    let mount = r.path.split('/').next().unwrap_or_default();
    assert!(path_allowed(&r.path, &[format!("{mount}/")]), "{text:?}");
    assert!(!path_allowed(&r.path, &[format!("{mount}x/")]), "{text:?}");
});
