//! `lockstep render` on kustomize apps: SOPS resources decrypted after the build, SOPS env
//! files decrypted for a secretGenerator, values redacted unless revealed, refusals named.

mod support;

use std::path::Path;

use support::{Sandbox, assert_no_leak, run, sops_encrypt_yaml};

const CANARY_FILE: &str = "canary-kfile-51c3";
const CANARY_ENV: &str = "canary-kenv-9d0e";

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn app(sb: &Sandbox, recipient: &str) -> std::path::PathBuf {
    sb.write(".git/HEAD", "ref: refs/heads/main\n");
    sb.write(
        "apps/base/kustomization.yaml",
        "resources: [deploy.yaml, secret.sops.yaml]\n",
    );
    sb.write(
        "apps/base/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: nginx\n        envFrom: [{secretRef: {name: creds}}, {secretRef: {name: db}}]\n",
    );
    let plain = sb.write(
        "plain-secret.yaml",
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\nstringData:\n  password: {CANARY_FILE}\n"),
    );
    let enc = sops_encrypt_yaml(sb, &plain, recipient, "^(data|stringData)$");
    sb.write("apps/base/secret.sops.yaml", enc);
    let env = sb.write("plain.env", format!("TOKEN={CANARY_ENV}\n"));
    let out = run(&mut sb.sops([
        "encrypt",
        "--age",
        recipient,
        "--input-type",
        "dotenv",
        "--output-type",
        "dotenv",
        s(&env),
    ]))
    .ok();
    sb.write("apps/prod/creds.env", out.stdout);
    sb.write(
        "apps/prod/kustomization.yaml",
        "resources: [../base]\nnamespace: prod\nnamePrefix: prod-\nsecretGenerator:\n- name: creds\n  envs: [creds.env]\n",
    );
    sb.path("apps/prod")
}

#[test]
fn sops_resources_and_generator_inputs_are_decrypted_and_redacted() {
    let sb = Sandbox::new();
    let (key, recipient) = sb.keygen("sops.agekey");
    let dir = app(&sb, &recipient);
    let shown = run(&mut sb.lockstep(["render", s(&dir), "--identity", s(&key), "--reveal"])).ok();
    let text = shown.stdout_str();
    assert!(
        text.contains(CANARY_FILE),
        "the SOPS resource is not decrypted:\n{text}"
    );
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, CANARY_ENV);
    assert!(
        text.contains(&b64),
        "the generated Secret lacks the decrypted env value:\n{text}"
    );
    assert!(
        text.contains("name: prod-db"),
        "prefix not applied:\n{text}"
    );
    assert!(
        text.contains("namespace: prod"),
        "namespace not applied:\n{text}"
    );
    assert!(
        !text.contains("ENC["),
        "ciphertext left in the output:\n{text}"
    );
    // The Deployment follows the generated Secret's hashed name.
    let hash = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("name: prod-creds-"))
        .expect("a hashed generated Secret name");
    assert_eq!(hash.len(), 10, "hash suffix: {hash}");
    assert!(
        text.matches(&format!("prod-creds-{hash}")).count() >= 2,
        "reference not rewritten:\n{text}"
    );

    let hidden = run(&mut sb.lockstep(["render", s(&dir), "--identity", s(&key)])).ok();
    assert_no_leak(&hidden, CANARY_FILE.as_bytes());
    assert_no_leak(&hidden, CANARY_ENV.as_bytes());
}

#[test]
fn refused_features_name_the_kustomization_and_field() {
    let sb = Sandbox::new();
    let (key, _) = sb.keygen("sops.agekey");
    sb.write(".git/HEAD", "ref: refs/heads/main\n");
    sb.write(
        "outside.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "remote",
            "resources: [github.com/org/repo//base?ref=v1]\n",
            "resources",
        ),
        (
            "url",
            "resources: [https://example.com/x.yaml]\n",
            "resources",
        ),
        ("helm", "helmCharts: [{name: x}]\n", "helmCharts"),
        ("exec", "generators: [plugin.yaml]\n", "generators"),
        ("krm", "transformers: [fn.yaml]\n", "transformers"),
        ("validators", "validators: [v.yaml]\n", "validators"),
        (
            "component-remote",
            "components: [https://example.com/c]\n",
            "components",
        ),
        // A crds file outside the kustomization's directory (load restrictor), and one
        // asking for custom label fields (not built).
        ("crds", "crds: [../outside.yaml]\n", "crds"),
        (
            "crds-label",
            "crds: [schema.yaml]\n",
            "x-kubernetes-label-selector",
        ),
        ("escape", "resources: [../outside.yaml]\n", "resources"),
        ("cycle", "resources: [../cycle2]\n", "resources"),
        ("cycle2", "resources: [../cycle]\n", "resources"),
        (
            "loadrestrict",
            "configMapGenerator: [{name: c, files: [../outside.yaml]}]\n",
            "configMapGenerator[0].files[0]",
        ),
    ];
    sb.write(
        "apps/crds-label/schema.yaml",
        "a.example.com.v1.K:\n  Schema:\n    properties:\n      apiVersion: {}\n      kind: {}\n      metadata: {}\n      sel: {x-kubernetes-label-selector: \"\"}\n",
    );
    for (name, k, _) in cases {
        sb.write(&format!("apps/{name}/kustomization.yaml"), k);
    }
    for (name, _, field) in cases {
        if *name == "cycle2" {
            continue;
        }
        let dir = sb.path(&format!("apps/{name}"));
        let out = run(&mut sb.lockstep(["render", s(&dir), "--identity", s(&key)])).fails_with(1);
        let err = out.all_text();
        assert!(
            err.contains("kustomization.yaml"),
            "{name}: the error names no kustomization file: {err}"
        );
        assert!(
            err.contains(field),
            "{name}: the error names no field {field}: {err}"
        );
        assert!(out.stdout.is_empty(), "{name}: printed a partial result");
    }
}

#[test]
fn check_reports_a_kustomization_that_does_not_build_and_accepts_one_that_does() {
    let sb = Sandbox::new();
    sb.write(".git/HEAD", "ref: refs/heads/main\n");
    sb.write(
        "good/kustomization.yaml",
        "resources: [cm.yaml]\npatches:\n- path: p.yaml\n  target: {kind: ConfigMap}\n",
    );
    sb.write(
        "good/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n",
    );
    sb.write("good/p.yaml", "- op: add\n  path: /data/x\n  value: y\n");
    run(&mut sb.lockstep(["check", s(&sb.path("good"))])).ok();
    sb.write(
        "bad/kustomization.yaml",
        "resources: [cm.yaml]\npatches:\n- path: p.yaml\n",
    );
    sb.write(
        "bad/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    sb.write("bad/p.yaml", "- op: remove\n  path: /data/nothing\n");
    let out = run(&mut sb.lockstep(["check", s(&sb.path("bad"))])).fails_with(1);
    let text = out.all_text();
    assert!(
        text.contains("kustomization.yaml:1: does not build"),
        "{text}"
    );
    assert!(
        text.contains("patches[0]"),
        "the finding names no field: {text}"
    );
}
