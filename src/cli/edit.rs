//! `lockstep edit`: decrypt into a private temporary file, run the editor, re-encrypt.
//! Unchanged values keep their ciphertext; plaintext never outlives the command.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep::sops::{self, DecryptOptions, Format};

use super::common::{self, CliError, CliResult, Context};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  EDITOR=nano lockstep edit secrets/db.enc.yaml\n  SOPS_EDITOR='code --wait' lockstep edit app.enc.env\n\nExit status 200 means the file was not changed."
)]
pub struct Args {
    /// The encrypted file to edit.
    file: PathBuf,
    #[arg(long, value_enum)]
    input_type: Option<Format>,
    /// Do not verify the MAC before editing.
    #[arg(long)]
    ignore_mac: bool,
}

/// A private directory (0700) holding the plaintext file (0600). Dropping it
/// overwrites the file with zeros and removes everything, on success and on error.
struct PrivateTemp {
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl PrivateTemp {
    fn new(name: &str, contents: &[u8]) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("lockstep-edit-")
            .tempdir()?;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let file = dir.path().join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)?;
        f.write_all(contents)?;
        f.sync_all()?;
        Ok(PrivateTemp { dir, file })
    }
}

impl Drop for PrivateTemp {
    fn drop(&mut self) {
        // Best effort: overwrite before unlinking so the plaintext is not left in
        // freed blocks of a tmpfs page or file system journal any longer than needed.
        if let Ok(meta) = std::fs::metadata(&self.file)
            && let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&self.file)
        {
            let zeros = vec![0u8; meta.len() as usize];
            let _ = f.write_all(&zeros);
            let _ = f.sync_all();
        }
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

fn editor() -> String {
    std::env::var("SOPS_EDITOR")
        .or_else(|_| std::env::var("EDITOR"))
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into())
}

/// Runs the editor with SIGINT/SIGQUIT ignored in lockstep itself, so Ctrl-C reaches the
/// editor but cannot kill lockstep before it removes the plaintext.
fn run_editor(path: &Path) -> Result<std::process::ExitStatus, std::io::Error> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{} \"$1\"", editor()))
        .arg("lockstep-editor")
        .arg(path)
        .spawn()?;
    // SAFETY: setting a signal disposition to SIG_IGN has no memory-safety conditions.
    let (old_int, old_quit) = unsafe {
        (
            libc::signal(libc::SIGINT, libc::SIG_IGN),
            libc::signal(libc::SIGQUIT, libc::SIG_IGN),
        )
    };
    let status = child.wait();
    // SAFETY: restoring the previous dispositions returned above.
    unsafe {
        libc::signal(libc::SIGINT, old_int);
        libc::signal(libc::SIGQUIT, old_quit);
    }
    status
}

pub fn run(ctx: &Context, a: Args) -> CliResult {
    let name = common::display_name(&a.file);
    let fmt = a.input_type.unwrap_or_else(|| Format::for_path(&a.file));
    let config = common::load_config(ctx).ok().flatten();
    let layout = common::layout(config.as_ref(), None);
    let input = common::read_input(&a.file)?;
    let (ids, searched) = common::identities(ctx);
    let decrypted = sops::decrypt(
        &input,
        fmt,
        &ids,
        &searched,
        DecryptOptions {
            ignore_mac: a.ignore_mac,
            keep_ivs: true,
        },
    )
    .map_err(|e| CliError::sops(&name, e))?;
    let plain = decrypted
        .emit_plain(fmt, layout)
        .map_err(|e| CliError::sops(&name, e))?;

    let base = a
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let temp = PrivateTemp::new(&base, &plain).map_err(|e| {
        CliError::new(
            3,
            format!("{name}: cannot create a private temporary file: {e}"),
        )
    })?;
    let status = run_editor(&temp.file).map_err(|e| {
        CliError::new(
            201,
            format!("{name}: cannot run editor {:?}: {e}", editor()),
        )
    })?;
    if !status.success() {
        return Err(CliError::new(
            201,
            format!("{name}: editor exited with {status}; the file was not changed"),
        ));
    }
    let edited = zeroize::Zeroizing::new(
        std::fs::read(&temp.file)
            .map_err(|e| CliError::new(2, format!("{name}: cannot read the edited file: {e}")))?,
    );
    drop(temp);
    if edited.as_slice() == plain.as_slice() {
        return Err(CliError::new(
            200,
            format!("{name}: file has not changed, exiting"),
        ));
    }
    let docs = sops::parse_plain(&edited, fmt).map_err(|e| {
        CliError::new(
            e.exit_code(),
            format!("{name}: the edited text is invalid, nothing was written: {e}"),
        )
    })?;
    let out = decrypted
        .reencrypt(docs, fmt, layout)
        .map_err(|e| CliError::sops(&name, e))?;
    common::write_atomic(&a.file, &out)
}
