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
        (
            "label-fields",
            "labels: [{pairs: {a: b}, fields: [{kind: Foo}]}]\n",
            "labels[0].fields[0].path",
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

const CANARY_SEALED: &str = "canary-ksealed-7b21";
const CANARY_NSWIDE: &str = "canary-knswide-40fa";

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `lockstep seal` of one Secret, to the example cluster's sealing key.
fn seal(sb: &Sandbox, name: &str, ns: &str, key: &str, value: &str, scope: &str) -> String {
    let plain = sb.write(
        &format!("plain-{name}.yaml"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData:\n  {key}: {value}\n"
        ),
    );
    let recipients = repo("keys-example/sealing.recipient");
    run(&mut sb.lockstep([
        "seal",
        "--recipients-file",
        s(&recipients),
        "--scope",
        scope,
        s(&plain),
    ]))
    .ok()
    .stdout_str()
}

#[test]
fn sealed_secrets_in_kustomize_apps_are_checked_against_their_final_name_and_namespace() {
    let sb = Sandbox::new();
    let (key, recipient) = sb.keygen("sops.agekey");
    sb.write(".git/HEAD", "ref: refs/heads/main\n");
    // Sealed for the name and namespace the prod overlay gives it (prod/prod-api), but
    // written in the base under its short name, as teams keep them.
    let strict = seal(&sb, "prod-api", "prod", "TOKEN", CANARY_SEALED, "strict")
        .replace("name: prod-api", "name: api")
        .replace("namespace: prod\n", "namespace: base\n");
    assert!(strict.contains("name: api"), "{strict}");
    sb.write("apps/base/api.sealed.yaml", strict);
    // Namespace-wide: a prefix does not matter, the namespace does.
    let wide = seal(
        &sb,
        "cache",
        "prod",
        "PASS",
        CANARY_NSWIDE,
        "namespace-wide",
    )
    .replace("namespace: prod\n", "namespace: base\n");
    sb.write("apps/base/cache.sealed.yaml", wide);
    let plain = sb.write(
        "plain-secret.yaml",
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\nstringData:\n  password: {CANARY_FILE}\n"),
    );
    let enc = sops_encrypt_yaml(&sb, &plain, &recipient, "^(data|stringData)$");
    sb.write("apps/base/db.sops.yaml", enc);
    sb.write(
        "apps/base/kustomization.yaml",
        "resources: [api.sealed.yaml, cache.sealed.yaml, db.sops.yaml]\n",
    );
    sb.write(
        "apps/prod/kustomization.yaml",
        "resources: [../base]\nnamespace: prod\nnamePrefix: prod-\n",
    );
    let sealing = repo("keys-example/sealing.agekey");
    let render = |dir: &str, reveal: bool| {
        let dir = sb.path(dir);
        let mut args = vec![
            "render".to_owned(),
            s(&dir).to_owned(),
            "--identity".into(),
            s(&key).to_owned(),
            "--sealing-identity".into(),
            s(&sealing).to_owned(),
        ];
        if reveal {
            args.push("--reveal".into());
        }
        run(&mut sb.lockstep(args))
    };

    // The overlay gives the SealedSecret the name and namespace it was sealed for: it
    // opens into a Secret of that name, next to the SOPS Secret, both renamed.
    let shown = render("apps/prod", true).ok();
    let text = shown.stdout_str();
    let b64 = |v: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v);
    for want in [
        "name: prod-api".to_owned(),
        "name: prod-cache".to_owned(),
        "name: prod-db".to_owned(),
        b64(CANARY_SEALED),
        b64(CANARY_NSWIDE),
        CANARY_FILE.to_owned(),
    ] {
        assert!(text.contains(&want), "missing {want}:\n{text}");
    }
    assert!(
        !text.contains("SealedSecret"),
        "a SealedSecret was not opened:\n{text}"
    );
    let hidden = render("apps/prod", false).ok();
    for canary in [CANARY_SEALED, CANARY_NSWIDE, CANARY_FILE] {
        assert_no_leak(&hidden, canary.as_bytes());
    }

    // Another overlay renames it (a different prefix): the strict scope no longer holds,
    // and the render fails naming the file, the object, the key, and the kustomization
    // that renamed it, with nothing printed.
    sb.write(
        "apps/renamed/kustomization.yaml",
        "resources: [../base]\nnamespace: prod\nnamePrefix: staging-\n",
    );
    let out = render("apps/renamed", false).fails_with(1);
    let err = out.all_text();
    for want in [
        "api.sealed.yaml",
        "SealedSecret prod/staging-api",
        "TOKEN",
        "sealed for name \"prod-api\"",
        "apps/renamed/kustomization.yaml renamed or moved this SealedSecret from base/api",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert!(out.stdout.is_empty(), "printed a partial result");
    assert_no_leak(&out, CANARY_SEALED.as_bytes());

    // Moved to another namespace: both sealed values fail (the first one met is named).
    sb.write(
        "apps/moved/kustomization.yaml",
        "resources: [../base]\nnamespace: qa\nnamePrefix: prod-\n",
    );
    let out = render("apps/moved", false).fails_with(1);
    let err = out.all_text();
    assert!(
        err.contains("sealed for namespace \"prod\"")
            && err.contains("apps/moved/kustomization.yaml renamed or moved"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "printed a partial result");
}
