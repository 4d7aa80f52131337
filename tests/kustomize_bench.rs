//! The kustomize benchmark (run by hand; see README "Kustomize: 1,000 apps"):
//! `cargo nextest run --test kustomize_bench --run-ignored only --no-capture`.
//! 1,000 apps, each a base and an overlay with a secretGenerator and a SOPS-encrypted
//! Secret: lockstep's in-process render against `kubectl kustomize` (one process per app)
//! plus `sops decrypt` per encrypted file, with every object compared.

mod support;

use std::process::Command;
use std::time::Instant;

use lockstep::crypto::age_keys::Identities;
use lockstep::render::{self, Limits, NoVault, RenderOptions};
use support::{Sandbox, sops_bin, sops_encrypt_yaml};

#[test]
#[ignore = "benchmark: run by hand"]
fn kustomize_thousand_apps() {
    let apps: usize = std::env::var("APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let sb = Sandbox::new();
    let (key, recipient) = sb.keygen("sops.agekey");
    let plain = sb.write(
        "plain.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: bench-pw\n",
    );
    let enc = sops_encrypt_yaml(&sb, &plain, &recipient, "^(data|stringData)$");
    sb.write(".git/HEAD", "ref: refs/heads/main\n");
    for i in 0..apps {
        sb.write(&format!("apps/a{i}/base/deploy.yaml"), format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web{i}}}\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: nginx:1.0\n        envFrom: [{{configMapRef: {{name: cfg}}}}, {{secretRef: {{name: db}}}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}}}\nspec: {{ports: [{{port: 80}}]}}\n"));
        sb.write(&format!("apps/a{i}/base/secret.sops.yaml"), &enc);
        sb.write(
            &format!("apps/a{i}/base/kustomization.yaml"),
            "resources: [deploy.yaml, secret.sops.yaml]\ncommonLabels: {app: demo}\n",
        );
        sb.write(&format!("apps/a{i}/prod/kustomization.yaml"), format!("resources: [../base]\nnamespace: team{i}\nnamePrefix: prod-\nimages: [{{name: nginx, newTag: \"1.25\"}}]\nconfigMapGenerator:\n- name: cfg\n  literals: [APP=a{i}, MODE=prod]\n"));
    }
    let mut ids = Identities::default();
    ids.add_key_file_text(&std::fs::read_to_string(&key).expect("key"), "sops.agekey")
        .expect("key");
    let sealing = Identities::default();
    let opts = RenderOptions {
        sops_identities: &ids,
        sealing_identities: &sealing,
        destination_namespace: None,
        vault: &NoVault,
        limits: Limits::default(),
        policies: None,
    };
    let root = sb.dir();
    let t = Instant::now();
    let mut ours = Vec::with_capacity(apps);
    for i in 0..apps {
        let dir = sb.path(&format!("apps/a{i}/prod"));
        ours.push(render::render_app(&root, &dir, &opts).expect("render"));
    }
    let ours_time = t.elapsed();

    let kubectl =
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bin/kubectl"));
    let sops = sops_bin();
    let t = Instant::now();
    let mut theirs = Vec::with_capacity(apps);
    for i in 0..apps {
        let out = Command::new(&kubectl)
            .arg("kustomize")
            .arg(sb.path(&format!("apps/a{i}/prod")))
            .output()
            .expect("kubectl");
        assert!(out.status.success());
        let dec = Command::new(&sops)
            .env("SOPS_AGE_KEY_FILE", &key)
            .env("SOPS_DISABLE_VERSION_CHECK", "1")
            .args(["decrypt"])
            .arg(sb.path(&format!("apps/a{i}/base/secret.sops.yaml")))
            .output()
            .expect("sops");
        assert!(dec.status.success());
        theirs.push((out.stdout, dec.stdout));
    }
    let theirs_time = t.elapsed();

    // Identical objects: every object but the encrypted Secret compares as parsed values;
    // the Secret's decrypted value equals what `sops decrypt` prints.
    for (o, (k, d)) in ours.iter().zip(&theirs) {
        let want: Vec<serde_json::Value> = lockstep::manifest::parse_strict(k)
            .expect("parse")
            .iter()
            .map(lockstep::kustomize::node_to_value)
            .collect();
        assert_eq!(o.len(), want.len());
        for (g, w) in o.iter().zip(&want) {
            let g = lockstep::kustomize::node_to_value(&g.doc);
            if w.get("sops").is_some() {
                assert!(String::from_utf8_lossy(d).contains("bench-pw"));
                assert_eq!(g["stringData"]["password"], "bench-pw");
                continue;
            }
            assert_eq!(&g, w);
        }
    }
    let speedup = theirs_time.as_secs_f64() / ours_time.as_secs_f64();
    println!("| | total | per app |");
    println!("|---|---|---|");
    println!(
        "| lockstep (in process, debug test build) | {:.2} s | {:.1} ms |",
        ours_time.as_secs_f64(),
        ours_time.as_secs_f64() * 1000.0 / apps as f64,
    );
    println!(
        "| `kubectl kustomize` + `sops decrypt` | {:.1} s | {:.0} ms |",
        theirs_time.as_secs_f64(),
        theirs_time.as_secs_f64() * 1000.0 / apps as f64,
    );
    println!("\n{apps} apps: {speedup:.0} times faster, identical objects");
}
