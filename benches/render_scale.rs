//! Render at scale: a generated repository of APPS applications with ten objects each,
//! one SOPS Secret (age, `encrypted_regex: ^(data|stringData)$`) and one SealedSecret
//! (strict scope) per application, rendered in-process with `render::render_dir` and
//! checked against the example tenant policy, the way the reconciler does it.
//!
//!   render_scale generate DIR [APPS]    write the repository (not timed)
//!   render_scale render DIR             render every app under DIR/apps, print timings
//!
//! The encrypted files are made with lockstep's own `sops::encrypt` and `sealed::seal`
//! to the example keys in keys-example/. `scripts/bench-render` drives both steps and
//! measures peak memory of the render step from outside.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lockstep::crypto::age_keys::{AgeRecipient, Identities};
use lockstep::policy::PolicySet;
use lockstep::render::{self, Limits, NoVault, RenderOptions};
use lockstep::sealed::{self, Scope};
use lockstep::sops::{self, Format};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn key_text(name: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join("keys-example").join(name))
        .unwrap_or_else(|e| panic!("keys-example/{name}: {e}"))
}

fn write(path: &Path, data: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn generate(dir: &Path, apps: usize) {
    let sops_r = AgeRecipient::parse(key_text("sops.recipient").trim()).unwrap();
    let seal_r = AgeRecipient::parse(key_text("sealing.recipient").trim()).unwrap();
    let settings = sops::EncryptSettings {
        groups: vec![vec![sops_r]],
        selection: Some(sops::metadata::Selection::EncryptedRegex(
            "^(data|stringData)$".into(),
        )),
        ..Default::default()
    };
    for i in 0..apps {
        let app = dir.join(format!("apps/app-{i:04}"));
        let ns = format!("team-app-{i:04}");
        write(
            &app.join("deployment.yaml"),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\n  labels: {{app: web}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      serviceAccountName: web\n      containers:\n        - name: web\n          image: ghcr.io/example/web:1.{i}\n          ports:\n            - containerPort: 8080\n          envFrom:\n            - secretRef: {{name: db}}\n            - secretRef: {{name: api-token}}\n            - configMapRef: {{name: settings-0}}\n          resources:\n            requests: {{cpu: 100m, memory: 128Mi}}\n            limits: {{memory: 256Mi}}\n"
            ),
        );
        write(
            &app.join("service.yaml"),
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  selector: {{app: web}}\n  ports:\n    - port: 80\n      targetPort: 8080\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n  namespace: {ns}\n"
            ),
        );
        let configs: String = (0..5)
            .map(|c| {
                format!(
                    "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{c}\n  namespace: {ns}\ndata:\n  LOG_LEVEL: info\n  FEATURE_{c}: \"on\"\n  ENDPOINT: https://svc-{i}-{c}.example.internal\n"
                )
            })
            .collect();
        write(&app.join("config.yaml"), configs);
        let secret = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {ns}\ntype: Opaque\nstringData:\n  DB_USER: app{i}\n  DB_PASSWORD: pw-{i:04}-bench\ndata:\n  TLS_KEY: {}\n",
            "QUJDREVGR0hJSktMTU5PUA=="
        );
        let enc = sops::encrypt(
            secret.as_bytes(),
            Format::Yaml,
            Format::Yaml,
            &settings,
            sops::Layout::default(),
        )
        .expect("sops encrypt");
        write(&app.join("secret.enc.yaml"), enc);
        let plain_doc = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api-token\n  namespace: {ns}\ntype: Opaque\nstringData:\n  API_TOKEN: tok-{i:04}-bench\n  WEBHOOK_SECRET: wh-{i:04}-bench\n"
        );
        let node = &lockstep::manifest::load_documents(plain_doc.as_bytes()).unwrap()[0];
        let plain = sealed::secret_from_node(node, "document 1").expect("secret");
        let s = sealed::seal(&plain, std::slice::from_ref(&seal_r), Scope::Strict).expect("seal");
        write(
            &app.join("token.sealed.yaml"),
            lockstep::manifest::emit_documents(&[s.to_node()]),
        );
    }
}

fn render_all(dir: &Path) {
    let mut sops_ids = Identities::default();
    sops_ids
        .add_key_file_text(&key_text("sops.agekey"), "sops.agekey")
        .unwrap();
    let mut sealing_ids = Identities::default();
    sealing_ids
        .add_key_file_text(&key_text("sealing.agekey"), "sealing.agekey")
        .unwrap();
    let policies =
        PolicySet::load(&[Path::new(ROOT).join("policies/tenant-baseline.yaml")]).unwrap();
    let mut apps: Vec<PathBuf> = std::fs::read_dir(dir.join("apps"))
        .expect("DIR/apps")
        .map(|e| e.unwrap().path())
        .collect();
    apps.sort();
    let opts = RenderOptions {
        sops_identities: &sops_ids,
        sealing_identities: &sealing_ids,
        destination_namespace: None,
        vault: &NoVault,
        limits: Limits::default(),
        policies: None,
    };
    let start = Instant::now();
    let (mut objects, mut secrets) = (0usize, 0usize);
    for app in &apps {
        let objs =
            render::render_dir(app, &opts).unwrap_or_else(|e| panic!("{}: {e}", app.display()));
        for o in &objs {
            let v = policies.check(&o.subject());
            assert!(v.is_empty(), "{}: {}", app.display(), v[0]);
            secrets += usize::from(o.holds_secrets);
        }
        objects += objs.len();
    }
    let elapsed = start.elapsed();
    println!(
        "rendered {} apps, {objects} objects ({secrets} decrypted or unsealed Secrets) in {:.3} s",
        apps.len(),
        elapsed.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["generate", dir] => generate(Path::new(dir), 1000),
        ["generate", dir, n] => generate(Path::new(dir), n.parse().expect("APPS")),
        ["render", dir] => render_all(Path::new(dir)),
        _ => {
            eprintln!("usage: render_scale generate DIR [APPS] | render_scale render DIR");
            std::process::exit(2);
        }
    }
}
