//! `lockstep unseal`: SealedSecrets back to Secrets, for recovery and debugging.

use std::path::PathBuf;

use lockstep::sealed;

use super::common::{self, CliError, CliResult, Context};
use super::seal::{OutputFormat, write_docs};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  lockstep unseal --identity keys-example/sealing.agekey \
    examples/apps/billing/api-token.sealed.yaml
  # several cluster keys (during a rotation), the file on stdin:
  lockstep unseal --identity keys-example/sops.agekey \
    --identity keys-example/sealing.agekey \
    - < examples/apps/billing/api-token.sealed.yaml"#)]
pub struct Args {
    /// SealedSecret manifest(s), or - for stdin.
    #[arg(default_value = "-")]
    file: PathBuf,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
}

pub fn run(ctx: &Context, a: Args) -> CliResult {
    let name = common::display_name(&a.file);
    let ids = common::explicit_identities(ctx)?;
    let input = common::read_input(&a.file)?;
    let docs = lockstep::manifest::expand_lists(
        lockstep::manifest::load_documents(&input)
            .map_err(|e| CliError::new(2, format!("{name}: {e}")))?,
    );
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let position = format!("document {}", i + 1);
        let s = sealed::sealed_from_node(doc, &position)
            .map_err(|e| CliError::new(1, format!("{name}: {e}")))?;
        let plain =
            sealed::unseal(&s, &ids).map_err(|e| CliError::new(1, format!("{name}: {e}")))?;
        out.push(plain.to_node());
    }
    if out.is_empty() {
        return Err(CliError::new(2, format!("{name}: no SealedSecret found")));
    }
    write_docs(&out, a.output)
}
