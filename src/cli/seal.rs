//! `lockstep seal`: Secrets in, SealedSecrets out.

use std::path::PathBuf;

use lockstep::crypto::age_keys::{self, AgeRecipient};
use lockstep::sealed::{self, Scope};

use super::common::{self, CliError, CliResult};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  # a Secret to start from: the example one, unsealed
  lockstep unseal --identity keys-example/sealing.agekey \
    examples/apps/billing/api-token.sealed.yaml > secret.yaml
  lockstep seal --recipient \
    age1dyw586cul4e4k03xj5u8ygv5w36frgly45zse76eggw9z4n39yas243ws7 \
    secret.yaml > sealed.yaml
  kubectl create secret generic db --from-literal=password=s3cret \
    -n payments --dry-run=client -o yaml \
    | lockstep seal --recipients-file keys-example/sealing.recipient - \
    > db.sealed.yaml
  lockstep seal --scope namespace-wide \
    --recipients-file keys-example/sealing.recipient \
    --recipient "$(lockstep keygen -o breakglass.txt)" secret.yaml"#)]
pub struct Args {
    /// Secret manifest(s) (YAML, multi-document, or JSON), or - for stdin.
    #[arg(default_value = "-")]
    file: PathBuf,
    /// A recipient to seal to (age1… or SSH public key); repeatable, comma-separated.
    #[arg(long = "recipient", short = 'r', value_name = "RECIPIENT")]
    recipients: Vec<String>,
    /// A file of recipients, one per line (`#` comments allowed); repeatable.
    #[arg(long = "recipients-file", short = 'R', value_name = "FILE")]
    recipients_files: Vec<PathBuf>,
    /// strict binds namespace+name+key; namespace-wide binds namespace+key; cluster-wide binds key.
    #[arg(long, value_enum, default_value_t = Scope::Strict)]
    scope: Scope,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// Recipients from `--recipient` and `--recipients-file`.
pub fn recipients(list: &[String], files: &[PathBuf]) -> Result<Vec<AgeRecipient>, CliError> {
    let mut out = common::parse_recipients(list)?;
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| CliError::new(2, format!("{}: {e}", f.display())))?;
        out.extend(
            age_keys::parse_recipients_file(&text, &f.display().to_string())
                .map_err(|e| CliError::new(1, e.to_string()))?,
        );
    }
    if out.is_empty() {
        return Err(CliError::new(
            1,
            "no recipients: give --recipient or --recipients-file",
        ));
    }
    Ok(out)
}

/// Writes manifests as YAML, or JSON (one object, or a `v1/List` for several).
pub fn write_docs(docs: &[lockstep::sops::tree::Node], format: OutputFormat) -> CliResult {
    common::write_stdout(docs_text(docs, format).as_bytes())
}

/// The text of `docs` in `format`. `unseal` and `render --reveal` print Secrets with it,
/// so the buffer is zeroized when dropped and prints redacted.
pub fn docs_text(
    docs: &[lockstep::sops::tree::Node],
    format: OutputFormat,
) -> lockstep::sops::tree::Blob {
    let text = match format {
        OutputFormat::Yaml => lockstep::manifest::emit_documents(docs),
        OutputFormat::Json => {
            use lockstep::sops::tree::{MapItem, Node};
            let doc = match docs {
                [one] => one.clone(),
                many => Node::Map(vec![
                    MapItem::Entry("apiVersion".into(), Node::str("v1")),
                    MapItem::Entry("kind".into(), Node::str("List")),
                    MapItem::Entry("items".into(), Node::List(many.to_vec())),
                ]),
            };
            lockstep::sops::stores::json::emit(&doc, Some(2))
        }
    };
    lockstep::sops::tree::Blob::new(text.into_bytes())
}

pub fn run(a: Args) -> CliResult {
    let name = common::display_name(&a.file);
    let recipients = recipients(&a.recipients, &a.recipients_files)?;
    let input = zeroize::Zeroizing::new(common::read_input(&a.file)?);
    let docs = lockstep::manifest::expand_lists(
        lockstep::manifest::load_documents(&input)
            .map_err(|e| CliError::new(2, format!("{name}: {e}")))?,
    );
    if docs.is_empty() {
        return Err(CliError::new(2, format!("{name}: no documents to seal")));
    }
    let mut out = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let position = format!("document {}", i + 1);
        let secret = sealed::secret_from_node(doc, &position)
            .map_err(|e| CliError::new(1, format!("{name}: {e}")))?;
        let s = sealed::seal(&secret, &recipients, a.scope)
            .map_err(|e| CliError::new(1, format!("{name}: {e}")))?;
        out.push(s.to_node());
    }
    write_docs(&out, a.output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep::sops::tree::{MapItem, Node};

    /// The buffer `unseal` and `render --reveal` print holds the Secret in plain text;
    /// its Debug must not show it.
    #[test]
    fn output_buffer_is_redacted_in_debug() {
        let doc = Node::Map(vec![MapItem::Entry(
            "stringData".into(),
            Node::Map(vec![MapItem::Entry(
                "password".into(),
                Node::str("canary-out-51"),
            )]),
        )]);
        for format in [OutputFormat::Yaml, OutputFormat::Json] {
            let text = docs_text(std::slice::from_ref(&doc), format);
            assert!(String::from_utf8_lossy(text.as_bytes()).contains("canary-out-51"));
            let shown = format!("{text:?}");
            assert!(!shown.contains("canary"), "{shown}");
        }
    }
}
