//! Where age identities come from, as sops 3.11 looks for them: every source that
//! exists is used and their identities are merged. lockstep adds `--identity FILE`.

use std::path::{Path, PathBuf};

use super::age_keys::{Identities, KeyError};

/// The identities found, plus the problems met on the way (a source that exists but
/// cannot be used does not stop the others, as in sops).
pub struct Loaded {
    pub identities: Identities,
    pub problems: Vec<String>,
    /// Every location that was looked at, for the "no key found" message.
    pub searched: Vec<String>,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// `<UserConfigDir>/sops/age/keys.txt` (Linux: `$XDG_CONFIG_HOME` or `~/.config`).
pub fn default_keys_file() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => {
            let h = home()?;
            if cfg!(target_os = "macos") {
                h.join("Library/Application Support")
            } else {
                h.join(".config")
            }
        }
    };
    Some(base.join("sops").join("age").join("keys.txt"))
}

fn read(path: &Path) -> Result<zeroize::Zeroizing<String>, String> {
    std::fs::read_to_string(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Loads identities from the given files only (age key files or OpenSSH keys).
pub fn load_explicit(files: &[PathBuf]) -> Loaded {
    let mut ids = Identities::default();
    let mut problems = Vec::new();
    add_explicit(files, &mut ids, &mut problems);
    Loaded {
        identities: ids,
        problems,
        searched: files
            .iter()
            .map(|p| format!("--identity {}", p.display()))
            .collect(),
    }
}

fn add_explicit(files: &[PathBuf], ids: &mut Identities, problems: &mut Vec<String>) {
    for path in files {
        match read(path) {
            Ok(text) => {
                let name = path.display().to_string();
                // An OpenSSH private key can be an identity too.
                let t = text.trim_start();
                let r = if t.starts_with("-----BEGIN OPENSSH PRIVATE KEY")
                    || t.starts_with("-----BEGIN RSA PRIVATE KEY")
                {
                    ids.add_ssh_key_text(&text, &name)
                } else {
                    ids.add_key_file_text(&text, &name).map(|_| ())
                };
                if let Err(e) = r {
                    problems.push(e.to_string());
                }
            }
            Err(e) => problems.push(e),
        }
    }
}

/// Loads identities from `--identity` files and every sops source.
pub fn load(explicit: &[PathBuf]) -> Loaded {
    let mut ids = Identities::default();
    let mut problems = Vec::new();
    let mut searched = Vec::new();
    let note = |r: Result<(), KeyError>, problems: &mut Vec<String>| {
        if let Err(e) = r {
            problems.push(e.to_string());
        }
    };

    for path in explicit {
        searched.push(format!("--identity {}", path.display()));
    }
    add_explicit(explicit, &mut ids, &mut problems);

    searched.push("SOPS_AGE_SSH_PRIVATE_KEY_FILE".into());
    if let Some(p) = std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE") {
        let p = PathBuf::from(p);
        match read(&p) {
            Ok(text) => note(
                ids.add_ssh_key_text(&text, &p.display().to_string()),
                &mut problems,
            ),
            Err(e) => problems.push(e),
        }
    }
    if let Some(h) = home() {
        for name in ["id_ed25519", "id_rsa"] {
            let p = h.join(".ssh").join(name);
            searched.push(format!("$HOME/.ssh/{name}"));
            if p.is_file()
                && let Ok(text) = read(&p)
            {
                // A passphrase-protected default key is skipped quietly, as it may
                // simply not be meant for sops.
                let _ = ids.add_ssh_key_text(&text, &p.display().to_string());
            }
        }
    }
    searched.push("SOPS_AGE_KEY".into());
    if let Ok(text) = std::env::var("SOPS_AGE_KEY") {
        let text = zeroize::Zeroizing::new(text);
        note(
            ids.add_key_file_text(&text, "SOPS_AGE_KEY").map(|_| ()),
            &mut problems,
        );
    }
    searched.push("SOPS_AGE_KEY_FILE".into());
    if let Some(p) = std::env::var_os("SOPS_AGE_KEY_FILE") {
        let p = PathBuf::from(p);
        match read(&p) {
            Ok(text) => note(
                ids.add_key_file_text(&text, &p.display().to_string())
                    .map(|_| ()),
                &mut problems,
            ),
            Err(e) => problems.push(e),
        }
    }
    searched.push("SOPS_AGE_KEY_CMD".into());
    if let Ok(cmd) = std::env::var("SOPS_AGE_KEY_CMD") {
        match std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
        {
            Ok(out) if out.status.success() => {
                let text =
                    zeroize::Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
                note(
                    ids.add_key_file_text(&text, "SOPS_AGE_KEY_CMD").map(|_| ()),
                    &mut problems,
                );
            }
            Ok(out) => problems.push(format!("SOPS_AGE_KEY_CMD exited with {}", out.status)),
            Err(e) => problems.push(format!("SOPS_AGE_KEY_CMD: {e}")),
        }
    }
    if let Some(p) = default_keys_file() {
        searched.push(p.display().to_string());
        if p.is_file() {
            match read(&p) {
                Ok(text) => note(
                    ids.add_key_file_text(&text, &p.display().to_string())
                        .map(|_| ()),
                    &mut problems,
                ),
                Err(e) => problems.push(e),
            }
        }
    }
    Loaded {
        identities: ids,
        problems,
        searched,
    }
}
