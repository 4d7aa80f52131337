//! `lockstep keys inventory`: which recipients each SealedSecret and SOPS file uses.

use std::path::PathBuf;

use lockstep::crypto::inventory;

use super::common::{self, CliError, CliResult};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(clap::Subcommand, Debug)]
enum KeysCommand {
    /// List the recipients of every SealedSecret and SOPS file under the paths.
    #[command(after_help = r#"Examples:
  lockstep keys inventory examples/
  # what still uses this key:
  lockstep keys inventory --recipient \
    age1dyw586cul4e4k03xj5u8ygv5w36frgly45zse76eggw9z4n39yas243ws7 examples/
  lockstep keys inventory -o json examples/ \
    | jq '.[] | select(.recipients | length < 2)'"#)]
    Inventory(InventoryArgs),
}

#[derive(clap::Args, Debug)]
struct InventoryArgs {
    /// Files or directories (walked recursively for .yaml/.yml/.json; SOPS files of other
    /// formats can be named directly).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Only list entries whose (unverified) recipient list names this recipient.
    #[arg(long, value_name = "RECIPIENT")]
    recipient: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

pub fn run(a: Args) -> CliResult {
    match a.command {
        KeysCommand::Inventory(a) => inventory_cmd(a),
    }
}

fn inventory_cmd(a: InventoryArgs) -> CliResult {
    let files = lockstep::manifest::manifest_files(&a.paths)
        .map_err(|e| CliError::new(2, e.to_string()))?;
    let mut entries = Vec::new();
    let mut failed = 0;
    for f in &files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("lockstep: {}: {e}", f.display());
                failed += 1;
                continue;
            }
        };
        match inventory::inventory_file(f, &bytes) {
            Ok(found) => entries.extend(found),
            Err(e) => {
                eprintln!("lockstep: {}: {e}", f.display());
                failed += 1;
            }
        }
    }
    if let Some(r) = &a.recipient {
        entries.retain(|e| e.recipients.iter().any(|x| x.trim() == r.trim()));
    }
    let text = match a.output {
        Output::Json => {
            serde_json::to_string_pretty(&entries).map_err(|e| CliError::new(4, e.to_string()))?
                + "\n"
        }
        Output::Table => {
            let mut s = String::from("FILE\tKIND\tOBJECT\tRECIPIENTS\tSTANZAS\n");
            for e in &entries {
                s.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    e.file,
                    e.kind,
                    e.object,
                    e.recipients.join(","),
                    e.stanzas.join("; ")
                ));
            }
            s
        }
    };
    common::write_stdout(text.as_bytes())?;
    for e in &entries {
        for m in &e.mismatches {
            eprintln!(
                "lockstep: {}: {}: recipients do not match the age headers: {m}",
                e.file, e.object
            );
        }
    }
    if !entries.is_empty() {
        eprintln!(
            "note: recipient lists are what the files say, and nothing authenticates them; the stanzas are what the age headers show (X25519 stanzas do not name their key, SSH stanzas carry a key tag)"
        );
    }
    if failed > 0 {
        return Err(CliError::new(
            1,
            format!("{failed} file(s) could not be read"),
        ));
    }
    Ok(())
}
