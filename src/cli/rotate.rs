//! `lockstep rotate`: a new data key; every value is re-encrypted.

use std::path::PathBuf;

use lockstep::sops::{self, DecryptOptions, Format};

use super::common::{self, CliError, CliResult, Context};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  lockstep rotate -i secrets/db.enc.yaml\n  lockstep rotate -i --rm-age age1old... --add-age age1new... secrets/db.enc.yaml"
)]
pub struct Args {
    /// The encrypted file.
    file: PathBuf,
    /// Also encrypt to these age recipients (comma-separated; repeatable).
    #[arg(long, value_name = "RECIPIENTS")]
    add_age: Vec<String>,
    /// Stop encrypting to these age recipients.
    #[arg(long, value_name = "RECIPIENTS")]
    rm_age: Vec<String>,
    /// Rewrite the file instead of printing to stdout.
    #[arg(short, long)]
    in_place: bool,
    #[arg(long, value_enum)]
    input_type: Option<Format>,
}

pub fn run(ctx: &Context, a: Args) -> CliResult {
    let name = common::display_name(&a.file);
    let fmt = a.input_type.unwrap_or_else(|| Format::for_path(&a.file));
    let config = common::load_config(ctx).ok().flatten();
    let layout = common::layout(config.as_ref(), None);
    let input = common::read_input(&a.file)?;
    let (ids, searched) = common::identities(ctx);
    let file = sops::decrypt(&input, fmt, &ids, &searched, DecryptOptions::default())
        .map_err(|e| CliError::sops(&name, e))?;
    sops::require_age_only(&file.metadata).map_err(|e| CliError::sops(&name, e))?;
    let add = common::parse_recipients(&a.add_age)?;
    let rm = common::parse_recipients(&a.rm_age)?;
    let mut groups: Vec<Vec<lockstep::crypto::age_keys::AgeRecipient>> = file
        .metadata
        .key_groups
        .iter()
        .map(|g| {
            g.age
                .iter()
                .map(|k| lockstep::crypto::age_keys::AgeRecipient::parse(&k.recipient))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::new(1, format!("{name}: {e}")))?;
    for g in groups.iter_mut() {
        g.retain(|r| !rm.iter().any(|x| x.text == r.text));
    }
    if let Some(first) = groups.first_mut() {
        for r in add {
            if !first.iter().any(|x| x.text == r.text) {
                first.push(r);
            }
        }
    }
    let out = file
        .rotate(Some(&groups), fmt, layout)
        .map_err(|e| CliError::sops(&name, e))?;
    common::emit(&a.file, a.in_place, None, &out)
}
