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
        out.push(render_doc(node, origin, from_secret, opts)?);
    }
    Ok(out)
}
