//! `lockstep edit`: decrypt into a private temporary file, run the editor, re-encrypt.
//! Unchanged values keep their ciphertext; plaintext never outlives the command.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep::sops::{self, DecryptOptions, Format};

use super::common::{self, CliError, CliResult, Context};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  export SOPS_AGE_KEY_FILE=keys-example/sops.agekey
  # [not run: an interactive editor]
  EDITOR=vim lockstep edit examples/apps/payments/secret.enc.yaml
  # [not run: opens VS Code]
  SOPS_EDITOR='code --wait' lockstep edit \
    examples/apps/payments/secret.enc.yaml
  # any command that edits the file in place:
  EDITOR='sed -i s/example-only/changed/' lockstep edit \
    examples/apps/payments/secret.enc.yaml

Exit status 200 means the file was not changed."#)]
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

/// The termination signal (SIGTERM or SIGHUP) received while the plaintext is on disk;
/// 0 when none.
static TERMINATION: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn note_termination(sig: libc::c_int) {
    // Only an atomic store: the one thing a signal handler may safely do here.
    TERMINATION.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// While alive, SIGTERM and SIGHUP (a `kill`, a closed terminal or SSH session) no longer
/// end lockstep at once: they are noted, so that the editor is stopped and the plaintext
/// file is wiped and removed before lockstep exits. Previous dispositions come back on drop.
struct TerminationGuard {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl TerminationGuard {
    fn install() -> Self {
        let mut old = Vec::new();
        for sig in [libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = note_termination as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut act.sa_mask);
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &act, &mut prev) == 0 {
                    old.push((sig, prev));
                }
            }
        }
        TerminationGuard { old }
    }

    fn received(&self) -> Option<i32> {
        match TERMINATION.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

impl Drop for TerminationGuard {
    fn drop(&mut self) {
        for (sig, prev) in &self.old {
            // SAFETY: restores a disposition returned by sigaction above.
            unsafe {
                libc::sigaction(*sig, prev, std::ptr::null_mut());
            }
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    if sig == libc::SIGHUP {
        "SIGHUP"
    } else {
        "SIGTERM"
    }
}

/// Runs the editor with SIGINT/SIGQUIT ignored in lockstep itself, so Ctrl-C reaches the
/// editor but cannot kill lockstep before it removes the plaintext. On SIGTERM/SIGHUP the
/// editor is asked to stop (SIGTERM, then SIGKILL after two seconds) and `Ok(Err(sig))`
/// comes back.
fn run_editor(
    path: &Path,
    guard: &TerminationGuard,
) -> Result<Result<std::process::ExitStatus, i32>, std::io::Error> {
    let mut child = Command::new("sh")
        .arg("-c")
        // `exec`: the editor itself is the child, so a SIGTERM forwarded to it stops it.
        .arg(format!("exec {} \"$1\"", editor()))
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
    let status = wait_or_stop(&mut child, guard);
    // SAFETY: restoring the previous dispositions returned above.
    unsafe {
        libc::signal(libc::SIGINT, old_int);
        libc::signal(libc::SIGQUIT, old_quit);
    }
    status
}

fn wait_or_stop(
    child: &mut std::process::Child,
    guard: &TerminationGuard,
) -> Result<Result<std::process::ExitStatus, i32>, std::io::Error> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(guard.received().map_or(Ok(status), Err));
        }
        if let Some(sig) = guard.received() {
            let pid = child.id() as libc::pid_t;
            // SAFETY: signals our own child, which has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while child.try_wait()?.is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            return Ok(Err(sig));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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
    // Installed before the plaintext reaches the disk, removed after it is gone.
    let guard = TerminationGuard::install();
    let temp = PrivateTemp::new(&base, &plain).map_err(|e| {
        CliError::new(
            3,
            format!("{name}: cannot create a private temporary file: {e}"),
        )
    })?;
    let status = run_editor(&temp.file, &guard).map_err(|e| {
        CliError::new(
            201,
            format!("{name}: cannot run editor {:?}: {e}", editor()),
        )
    })?;
    let status = match status {
        Ok(status) => status,
        Err(sig) => {
            drop(temp);
            return Err(CliError::new(
                128 + sig,
                format!(
                    "{name}: {} received: editor stopped, plaintext removed, the file was not changed",
                    signal_name(sig)
                ),
            ));
        }
    };
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
    if let Some(sig) = guard.received() {
        return Err(CliError::new(
            128 + sig,
            format!(
                "{name}: {} received: plaintext removed, the file was not changed",
                signal_name(sig)
            ),
        ));
    }
    drop(guard);
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
