//! The reconciler on a kustomize app: an overlay over a base elsewhere in the repository,
//! a configMapGenerator with its hash suffix, a SOPS-encrypted Secret decrypted after the
//! build, a SealedSecret sealed for the name the overlay gives it, and kustomizations that
//! stop building (a refused field, a rename that breaks a sealing scope) keeping the last
//! good revision.

mod support;

use serde_json::json;
use support::cluster::{Harness, inventory_names};
use support::git::TestRepo;
use support::{Sandbox, repo, sops_encrypt_yaml};

const NS: &str = "team-a";
const CANARY: &str = "canary-kreconcile-3b7d";
const SEALED_CANARY: &str = "canary-ksealrec-91c0";

/// A strict SealedSecret sealed for `team-a/prod-api`, written under its base name `api`.
fn sealed_for_prod_api() -> String {
    use lockstep::crypto::age_keys::AgeRecipient;
    use lockstep::sealed::{self, Scope};
    let doc = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: prod-api, namespace: {NS}}}\nstringData: {{TOKEN: {SEALED_CANARY}}}\n"
    );
    let docs = lockstep::manifest::load_documents(doc.as_bytes()).unwrap();
    let plain = sealed::secret_from_node(&docs[0], "api").unwrap();
    let recipient = support::read_string(&repo("keys-example/sealing.recipient"));
    let s = sealed::seal(
        &plain,
        &[AgeRecipient::parse(recipient.trim()).unwrap()],
        Scope::Strict,
    )
    .unwrap();
    lockstep::manifest::emit_documents(&[s.to_node()]).replace("name: prod-api", "name: api")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlay_with_a_generator_and_a_sops_secret_is_applied() {
    let h = Harness::start().await;
    let r = TestRepo::new(0);
    h.tenant(NS).await;
    h.policy("tenants", &r.srv_dir(), json!({})).await;
    lockstep::quickstart::create_secret_from_files(
        &h.admin,
        NS,
        "sops-age",
        &[("sops.agekey", &repo("keys-example/sops.agekey"))],
    )
    .await
    .unwrap();
    let sb = Sandbox::new();
    let plain = sb.write(
        "plain.yaml",
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\nstringData:\n  password: {CANARY}\n"),
    );
    let recipient = support::read_string(&repo("keys-example/sops.recipient"));
    let enc = sops_encrypt_yaml(&sb, &plain, recipient.trim(), "^(data|stringData)$");
    let c1 = r.commit_files(&[
            (
                "bases/web/kustomization.yaml",
                "resources: [cm.yaml, secret.enc.yaml, api.sealed.yaml]\n".into(),
            ),
            (
                "bases/web/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: static}\ndata: {a: b}\n".into(),
            ),
            ("bases/web/secret.enc.yaml", String::from_utf8(enc).unwrap()),
            ("bases/web/api.sealed.yaml", sealed_for_prod_api()),
            (
                "apps/prod/kustomization.yaml",
                format!(
                    "resources: [../../bases/web]\nnamespace: {NS}\nnamePrefix: prod-\nconfigMapGenerator:\n- name: settings\n  literals: [MODE=prod]\n"
                ),
            ),
        ], &[]);
    let mut s = json!({
        "source": {"url": r.file_url(), "ref": {"branch": "main"}, "path": "apps/prod"},
        "serviceAccountName": "deployer",
        "interval": "1m",
        "retryInterval": "2s",
        "timeout": "20s",
        "prune": true,
    });
    s["decryption"] = json!({"secretRef": {"name": "sops-age"}});
    h.application(NS, "app", s).await;
    let app = h.wait_ready(NS, "app", Some(&c1)).await;
    let names = inventory_names(&app);
    assert!(
        names.contains(&"ConfigMap/prod-static".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"Secret/prod-db".to_owned()), "{names:?}");
    let generated = names
        .iter()
        .find(|n| n.starts_with("ConfigMap/prod-settings-"))
        .unwrap_or_else(|| panic!("no hashed generated ConfigMap in {names:?}"));
    assert_eq!(generated.len(), "ConfigMap/prod-settings-".len() + 10);
    let db = h.secret(NS, "prod-db").await.expect("secret applied");
    assert_eq!(db.data.unwrap()["password"].0, CANARY.as_bytes());
    let api = h
        .secret(NS, "prod-api")
        .await
        .expect("sealed secret applied");
    assert_eq!(api.data.unwrap()["TOKEN"].0, SEALED_CANARY.as_bytes());

    // A kustomization that stops building fails the reconcile naming file and field, and
    // the applied objects stay.
    let c2 = r.commit_files(
        &[(
            "apps/prod/kustomization.yaml",
            "resources: [../../bases/web]\nhelmCharts: [{name: x}]\n".into(),
        )],
        &[],
    );
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(NS, "app", "BuildFailed", "helmCharts")
        .await;
    let status = serde_json::to_string(&app.status).unwrap();
    assert!(status.contains("kustomization.yaml"), "{status}");
    assert!(!status.contains(CANARY));
    assert!(
        h.secret(NS, "prod-db").await.is_some(),
        "last good objects stay"
    );
    let _ = c2;

    // An overlay that renames the SealedSecret away from the name it was sealed for fails,
    // naming the kustomization; nothing of it is applied and the last good objects stay.
    let c3 = r.commit_files(
        &[(
            "apps/prod/kustomization.yaml",
            format!("resources: [../../bases/web]\nnamespace: {NS}\nnamePrefix: staging-\n"),
        )],
        &[],
    );
    h.request_reconcile(NS, "app").await;
    let app = h
        .wait_not_ready(
            NS,
            "app",
            "BuildFailed",
            "renamed or moved this SealedSecret",
        )
        .await;
    let status = serde_json::to_string(&app.status).unwrap();
    assert!(status.contains("apps/prod/kustomization.yaml"), "{status}");
    assert!(!status.contains(SEALED_CANARY), "{status}");
    assert!(h.secret(NS, "staging-api").await.is_none());
    assert!(h.secret(NS, "staging-db").await.is_none());
    assert!(
        h.secret(NS, "prod-api").await.is_some(),
        "last good objects stay"
    );
    let _ = c3;
}
