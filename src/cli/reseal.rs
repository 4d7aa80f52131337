//! `lockstep reseal`: re-encrypt SealedSecrets to a new recipient set, in place.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use lockstep::sealed::{self, ResealOutcome};

use super::common::{self, CliError, CliResult, Context};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  # cluster key rotation: open with the old key, seal to the new one and the
  # break-glass key
  lockstep reseal --identity keys-example/sealing.agekey \
    --recipient "$(lockstep keygen -o new-cluster.txt)" \
    --recipient "$(lockstep keygen -o breakglass.txt)" examples/apps/

Files already sealed to exactly the given set are left byte-identical; that is decided
from each value's age header (stanza count and types, SSH key tags) and by checking that
no --identity outside the set opens it, never from spec.recipients alone. A file that fails
is left untouched and reported; the others go on. Exit status 1 if any file failed."#)]
pub struct Args {
    /// Files or directories (walked recursively for .yaml/.yml/.json).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The new recipient set; repeatable, comma-separated.
    #[arg(long = "recipient", short = 'r', value_name = "RECIPIENT")]
    recipients: Vec<String>,
    /// A file of recipients, one per line; repeatable.
    #[arg(long = "recipients-file", short = 'R', value_name = "FILE")]
    recipients_files: Vec<PathBuf>,
}

pub fn run(ctx: &Context, a: Args) -> CliResult {
    let recipients = super::seal::recipients(&a.recipients, &a.recipients_files)?;
    let ids = common::explicit_identities(ctx)?;
    let files = lockstep::manifest::manifest_files(&a.paths)
        .map_err(|e| CliError::new(2, e.to_string()))?;
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut changed, mut unchanged, mut failed, mut objects) = (0usize, 0usize, 0usize, 0usize);
    for f in &files {
        bar.set_message(f.display().to_string());
        let result = std::fs::read(f)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                sealed::reseal_file(&bytes, &ids, &recipients).map_err(|e| e.to_string())
            });
        match result {
            Ok(ResealOutcome::Changed { text, objects: n }) => {
                match common::write_atomic(f, text.as_bytes()) {
                    Ok(()) => {
                        changed += 1;
                        objects += n;
                    }
                    Err(e) => {
                        failed += 1;
                        bar.suspend(|| eprintln!("lockstep: {}", e.message));
                    }
                }
            }
            Ok(ResealOutcome::Unchanged) => unchanged += 1,
            Ok(ResealOutcome::NoSealedSecrets) => {}
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("lockstep: {}: {e}", f.display()));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "reseal: {changed} file(s) resealed ({objects} SealedSecrets), {unchanged} already sealed to this set, {failed} failed, {} scanned",
        files.len()
    );
    if unchanged > 0 {
        eprintln!(
            "reseal: \"already sealed\" is judged from the age headers and the given identities; X25519 stanzas do not name their key, so give the old identity with --identity to prove it no longer opens them"
        );
    }
    if failed > 0 {
        return Err(CliError::new(
            1,
            format!("{failed} file(s) could not be resealed; they were left unchanged"),
        ));
    }
    Ok(())
}
