//! Rendering a kustomization: the native build, then SOPS decryption of the encrypted
//! resources, then the same per-object stage as plain apps (SealedSecrets, Vault refs,
//! namespaces, limits).

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{Origin, RenderError, RenderOptions, RenderedObject, render_doc, scrub_quoted};
use crate::crypto::age_keys::Identities;
use crate::kustomize::{self, BuildLimits, BuildOptions, SopsOpener};
use crate::sops::{self, DecryptOptions, EncryptedFile, Format};

/// The Git work tree holding `dir` (the nearest ancestor with `.git`), else `dir` itself.
pub fn work_tree_of(dir: &Path) -> PathBuf {
    let start = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    start
        .ancestors()
        .find(|a| a.join(".git").exists())
        .map(Path::to_path_buf)
        .unwrap_or(start)
}

/// Opens SOPS-encrypted generator inputs in memory with the app's identities.
struct Inputs<'a> {
    ids: &'a Identities,
}

impl SopsOpener for Inputs<'_> {
    fn open(&self, file: &Path, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        let format = Format::for_path(file);
        let f = sops::decrypt(bytes, format, self.ids, &[], DecryptOptions::default())
            .map_err(|e| scrub_quoted(&e.to_string()))?;
        f.emit_plain(format, sops::Layout::default())
            .map_err(|e| scrub_quoted(&e.to_string()))
    }
}

pub fn render(
    checkout: &Path,
    dir: &Path,
    opts: &RenderOptions<'_>,
) -> Result<Vec<RenderedObject>, RenderError> {
    let inputs = Inputs {
        ids: opts.sops_identities,
    };
    let bopts = BuildOptions {
        root: checkout,
        limits: BuildLimits {
            max_file_bytes: opts.limits.max_file_bytes,
            max_objects: opts.limits.max_objects,
            ..BuildLimits::default()
        },
        sops: Some(&inputs),
    };
    let built = kustomize::build(dir, &bopts).map_err(|e| RenderError {
        file: e.file,
        object: None,
        key: e.field.map(|f| format!("field {f}")),
        message: e.message,
    })?;
    // Every SOPS resource file: recover its data key and verify its MAC over the file as
    // written, once; its objects are decrypted after the build with that key.
    let mut keys = Vec::with_capacity(built.sops_files.len());
    for f in &built.sops_files {
        let format = if Format::for_path(&f.path) == Format::Json {
            Format::Json
        } else {
            Format::Yaml
        };
        let fail = |e: sops::SopsError| RenderError {
            file: f.path.clone(),
            object: None,
            key: None,
            message: scrub_quoted(&e.to_string()),
        };
        let enc = sops::load_encrypted(&f.bytes, format).map_err(fail)?;
        let key = sops::data_key(&enc.metadata, opts.sops_identities, &[]).map_err(fail)?;
        let metadata = enc.metadata.clone();
        drop(sops::decrypt_with_key(enc, key.clone(), DecryptOptions::default()).map_err(fail)?);
        keys.push((metadata, key, format));
    }
    let mut out = Vec::with_capacity(built.objects.len());
    for (i, obj) in built.objects.iter().enumerate() {
        let mut node = built.to_node(obj);
        let origin = Origin {
            file: obj.origin.clone(),
            document: i + 1,
        };
        if let Some(k) = obj.sops
            && let Some((metadata, key, format)) = keys.get(k)
        {
            let file = EncryptedFile {
                docs: vec![node],
                metadata: metadata.clone(),
                format: *format,
            };
            // The MAC was checked on the file above; kustomize's changes (namespace,
            // labels) are outside it by design.
            let mut d = sops::decrypt_with_key(
                file,
                key.clone(),
                DecryptOptions {
                    ignore_mac: true,
                    keep_ivs: false,
                },
            )
            .map_err(|e| RenderError {
                file: obj.origin.clone(),
                object: None,
                key: None,
                message: format!(
                    "cannot decrypt after the build (was an encrypted value patched or moved?): {}",
                    scrub_quoted(&e.to_string())
                ),
            })?;
            node = d.docs.pop().unwrap_or_else(crate::sops::tree::Node::map);
        }
        let from_secret = obj.sops.is_some() || obj.generated_secret;
        let sealed = crate::sealed::is_sealed_secret(&node);
        out.push(
            render_doc(node, origin, from_secret, opts)
                .map_err(|e| explain_sealed_rename(e, sealed, obj))?,
        );
    }
    Ok(out)
}

/// A SealedSecret's scope is checked against the name and namespace the build gives it
/// (the ones the cluster sees). When a kustomization changed them and opening fails, say
/// which kustomization did, from what: a rename must not pass silently, nor puzzle.
fn explain_sealed_rename(
    mut e: RenderError,
    sealed: bool,
    obj: &kustomize::BuiltObject,
) -> RenderError {
    if let (true, Some(r)) = (sealed, &obj.renamed) {
        let from = match &r.namespace {
            Some(ns) => format!("{ns}/{}", r.name),
            None => r.name.clone(),
        };
        e.message = format!(
            "{} (the kustomization {} renamed or moved this SealedSecret from {from}; its scope is checked against the final name and namespace: seal it for those, or use a wider scope)",
            e.message,
            r.by.display()
        );
    }
    e
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::render::{Limits, VaultResolver};
    use crate::sealed::SecretValue;

    /// Records each lookup; answers a canary built from the path.
    struct Recorder(RefCell<Vec<String>>);

    impl VaultResolver for Recorder {
        fn resolve(&self, path: &str, key: &str) -> Result<SecretValue, String> {
            self.0.borrow_mut().push(format!("{path}#{key}"));
            Ok(SecretValue::new(
                format!("canary-vault-{}", path.replace('/', "-")).into_bytes(),
            ))
        }
    }

    #[test]
    fn vault_references_are_resolved_after_the_build() {
        let d = tempfile::tempdir().expect("tempdir");
        let w = |p: &str, t: &str| {
            let f = d.path().join(p);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            std::fs::write(f, t).expect("write");
        };
        w("base/kustomization.yaml", "resources: [secret.yaml]\n");
        w(
            "base/secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ref+vault://secret/app/base#password\n  user: plain\n",
        );
        // The overlay renames, moves and patches the reference: the resolver must see the
        // patched path, and the Secret its final name.
        w(
            "prod/kustomization.yaml",
            "resources: [../base]\nnamespace: prod\nnamePrefix: prod-\npatches:\n- patch: |-\n    apiVersion: v1\n    kind: Secret\n    metadata: {name: db}\n    stringData:\n      password: ref+vault://secret/app/prod#password\n",
        );
        let ids = Identities::default();
        let vault = Recorder(RefCell::new(Vec::new()));
        let opts = RenderOptions {
            sops_identities: &ids,
            sealing_identities: &ids,
            destination_namespace: None,
            vault: &vault,
            limits: Limits::default(),
            policies: None,
        };
        let objs = render(d.path(), &d.path().join("prod"), &opts).expect("renders");
        assert_eq!(
            vault.0.borrow().as_slice(),
            ["secret/app/prod#password".to_owned()]
        );
        assert_eq!(objs.len(), 1);
        let o = &objs[0];
        assert_eq!((o.name(), o.namespace()), ("prod-db", Some("prod")));
        assert_eq!(o.vault_paths, vec!["secret/app/prod".to_owned()]);
        assert!(o.holds_secrets);
        let text = crate::manifest::emit_documents(std::slice::from_ref(&o.doc));
        assert!(text.contains("canary-vault-secret-app-prod"), "{text}");
        assert!(!text.contains("ref+vault"), "{text}");
    }
}
