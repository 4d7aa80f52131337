//! `lockstep keygen`: an age X25519 identity in the age-keygen file format.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use lockstep::crypto::age_keys;

use super::common::{CliError, CliResult, write_stdout};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  # where sops looks for keys (a missing directory is made, mode 0700):
  lockstep keygen -o ~/.config/sops/age/keys.txt
  R=$(lockstep keygen -o key.txt)    # the recipient goes to stdout
  lockstep keygen > key2.txt         # without -o, the key file goes to stdout"#)]
pub struct Args {
    /// Write the identity to FILE (created with mode 0600; never overwritten) and print
    /// the recipient on stdout. Without it, the key file is printed on stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    let key = age_keys::generate();
    let created = lockstep::sops::gotime::now_lastmodified();
    let text = age_keys::key_file_text(&key, &created);
    match args.output {
        Some(path) => {
            // sops' default key file (~/.config/sops/age/keys.txt) usually lives in a
            // directory that does not exist yet; create it private, as the key in it is.
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
                && !parent.exists()
            {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| CliError::new(1, format!("{}: {e}", parent.display())))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| {
                    let why = if e.kind() == std::io::ErrorKind::AlreadyExists {
                        "already exists; refusing to overwrite an identity".to_string()
                    } else {
                        e.to_string()
                    };
                    CliError::new(1, format!("{}: {why}", path.display()))
                })?;
            f.write_all(text.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| CliError::new(3, format!("{}: {e}", path.display())))?;
            write_stdout(format!("{}\n", key.recipient).as_bytes())
        }
        None => {
            eprintln!("Public key: {}", key.recipient);
            write_stdout(text.as_bytes())
        }
    }
}
