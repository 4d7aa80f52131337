//! `lockstep decrypt`: like `sops decrypt`.

use std::path::PathBuf;

use lockstep::sops::{self, DecryptOptions};

use super::common::{self, CliError, CliResult, Context};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  SOPS_AGE_KEY_FILE=keys-example/sops.agekey lockstep decrypt \
    examples/apps/payments/secret.enc.yaml
  lockstep decrypt --identity keys-example/sops.agekey \
    --extract '["stringData"]["DB_USER"]' \
    examples/apps/payments/secret.enc.yaml
  # replace the file with its plaintext:
  lockstep decrypt -i --identity keys-example/sops.agekey \
    examples/apps/payments/secret.enc.yaml"#)]
pub struct Args {
    /// File to decrypt, or - for stdin.
    file: PathBuf,
    /// Print only this value, e.g. '["data"]["password"]'.
    #[arg(long, value_name = "PATH")]
    extract: Option<String>,
    /// Do not verify the MAC (recovering a damaged file).
    #[arg(long)]
    ignore_mac: bool,
    #[command(flatten)]
    io: common::Io,
}

pub fn run(ctx: &Context, a: Args) -> CliResult {
    let name = common::display_name(&a.file);
    let (in_fmt, out_fmt) = common::formats(
        &a.file,
        a.io.input_type,
        a.io.output_type,
        a.io.filename_override.as_deref(),
    );
    let config = common::load_config(ctx).ok().flatten();
    let layout = common::layout(config.as_ref(), a.io.indent);
    let input = common::read_input(&a.file)?;
    let (ids, searched) = common::identities(ctx);
    let file = sops::decrypt(
        &input,
        in_fmt,
        &ids,
        &searched,
        DecryptOptions {
            ignore_mac: a.ignore_mac,
            ..Default::default()
        },
    )
    .map_err(|e| CliError::sops(&name, e))?;
    let out = match &a.extract {
        Some(path) => {
            let node = sops::extract(&file.docs, path).map_err(|e| {
                // sops: a malformed path is 91, a path that is not in the file is 1.
                let code = if e.starts_with("invalid") { 91 } else { 1 };
                CliError::new(code, format!("{name}: {e}"))
            })?;
            sops::extract_output(node, out_fmt, layout).map_err(|e| CliError::sops(&name, e))?
        }
        None => file
            .emit_plain(out_fmt, layout)
            .map_err(|e| CliError::sops(&name, e))?,
    };
    common::emit(&a.file, a.io.in_place, a.io.output.as_deref(), &out)
}
