//! lockstep's kustomize builds against the real kustomize (`kubectl kustomize`, v5.8.1 in
//! `.tools/`): the same objects, compared parsed, in the same order.

use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep::kustomize::{self, BuildOptions};
use serde_json::Value;

fn kubectl() -> PathBuf {
    let local = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bin/kubectl"));
    assert!(
        local.exists(),
        "kubectl 1.37 is required at {}; run scripts/install-test-tools",
        local.display()
    );
    local
}

fn corpus() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kustomize"))
}

/// `kubectl kustomize DIR` as parsed objects, or its error text.
pub fn oracle(dir: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let docs = lockstep::manifest::parse_strict(&out.stdout).expect("oracle output parses");
    Ok(docs
        .iter()
        .filter(|d| !lockstep::manifest::is_empty_doc(d))
        .map(kustomize::node_to_value)
        .collect())
}

pub fn ours(dir: &Path, root: &Path) -> Result<Vec<Value>, String> {
    let opts = BuildOptions {
        root,
        limits: Default::default(),
        sops: None,
    };
    kustomize::build(dir, &opts)
        .map(|b| b.values_for_comparison())
        .map_err(|e| e.to_string())
}

fn assert_same(dir: &Path) {
    let want = oracle(dir).unwrap_or_else(|e| panic!("oracle fails on {}: {e}", dir.display()));
    let got =
        ours(dir, &corpus()).unwrap_or_else(|e| panic!("lockstep fails on {}: {e}", dir.display()));
    let ids = |v: &[Value]| {
        v.iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&got),
        ids(&want),
        "{}: objects or order differ",
        dir.display()
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            g,
            w,
            "{}: {} differs:\nours:   {}\nkustomize: {}",
            dir.display(),
            ids(std::slice::from_ref(w))[0],
            serde_json::to_string(g).unwrap_or_default(),
            serde_json::to_string(w).unwrap_or_default()
        );
    }
}

#[test]
fn corpus_builds_like_kustomize() {
    let mut dirs = Vec::new();
    for case in ["basic", "overlays/base", "overlays/dev", "overlays/prod"] {
        dirs.push(corpus().join(case));
    }
    for d in dirs {
        assert_same(&d);
    }
}
