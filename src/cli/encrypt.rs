//! `lockstep encrypt`: like `sops encrypt`.

use std::path::PathBuf;

use lockstep::sops::metadata::Selection;
use lockstep::sops::{self, EncryptSettings};

use super::common::{self, CliError, CliResult, Context};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  # a plaintext Secret to start from: the example one, decrypted
  lockstep decrypt --identity keys-example/sops.agekey \
    examples/apps/payments/secret.enc.yaml > secret.yaml
  lockstep encrypt --age "$(cat keys-example/sops.recipient)" \
    secret.yaml > secret.enc.yaml
  lockstep encrypt -i --encrypted-regex '^(data|stringData)$' \
    --age age1a5tvufunpj35lg70w0wm2ap2cynsw3jpatkms4s5j8stwa5u7fhqqxkp2m \
    --age age1dyw586cul4e4k03xj5u8ygv5w36frgly45zse76eggw9z4n39yas243ws7 \
    secret.yaml
  printf 'TOKEN=t0ken\n' | lockstep encrypt --input-type dotenv \
    --age "$(cat keys-example/sops.recipient)" -"#)]
pub struct Args {
    /// File to encrypt, or - for stdin.
    file: PathBuf,
    /// age recipients (age1… or SSH public keys), comma-separated; repeatable.
    #[arg(long, env = "SOPS_AGE_RECIPIENTS", value_name = "RECIPIENTS")]
    age: Vec<String>,
    /// Encrypt only values under keys matching this regex.
    #[arg(long)]
    encrypted_regex: Option<String>,
    /// Leave values under keys matching this regex in plain text.
    #[arg(long)]
    unencrypted_regex: Option<String>,
    /// Encrypt only values under keys ending with this suffix.
    #[arg(long)]
    encrypted_suffix: Option<String>,
    /// Leave values under keys ending with this suffix in plain text (default _unencrypted).
    #[arg(long)]
    unencrypted_suffix: Option<String>,
    /// Encrypt only values after a comment matching this regex.
    #[arg(long)]
    encrypted_comment_regex: Option<String>,
    /// Leave values after a comment matching this regex in plain text.
    #[arg(long)]
    unencrypted_comment_regex: Option<String>,
    /// Compute the MAC over encrypted values only.
    #[arg(long)]
    mac_only_encrypted: bool,
    /// Number of key groups needed to decrypt (Shamir).
    #[arg(long = "shamir-secret-sharing-threshold", value_name = "N")]
    shamir_threshold: Option<usize>,
    #[command(flatten)]
    io: common::Io,
}

fn cli_selection(a: &Args) -> Result<Option<Selection>, CliError> {
    let mut s = Vec::new();
    let mut add = |v: &Option<String>, f: fn(String) -> Selection| {
        if let Some(v) = v {
            s.push(f(v.clone()));
        }
    };
    add(&a.encrypted_regex, Selection::EncryptedRegex);
    add(&a.unencrypted_regex, Selection::UnencryptedRegex);
    add(&a.encrypted_suffix, Selection::EncryptedSuffix);
    add(&a.unencrypted_suffix, Selection::UnencryptedSuffix);
    add(&a.encrypted_comment_regex, Selection::EncryptedCommentRegex);
    add(
        &a.unencrypted_comment_regex,
        Selection::UnencryptedCommentRegex,
    );
    if s.len() > 1 {
        return Err(CliError::new(
            8,
            "cannot use more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, or unencrypted_comment_regex",
        ));
    }
    Ok(s.pop())
}

pub fn run(ctx: &Context, a: Args) -> CliResult {
    let name = common::display_name(&a.file);
    let (in_fmt, out_fmt) = common::formats(
        &a.file,
        a.io.input_type,
        a.io.output_type,
        a.io.filename_override.as_deref(),
    );
    let config = common::load_config(ctx)?;
    let layout = common::layout(config.as_ref(), a.io.indent);
    let cli_sel = cli_selection(&a)?;
    let recipients = common::parse_recipients(&a.age)?;

    let mut settings = EncryptSettings::default();
    // A key flag replaces the rule's keys entirely; other options apply one by one.
    let rule = match &config {
        Some(c) => {
            let path = common::rule_path(&a.file, a.io.filename_override.as_deref());
            match c.rule_for(&path) {
                Ok(r) => Some((r, c.path.clone())),
                Err(e) if recipients.is_empty() => {
                    return Err(CliError::new(
                        1,
                        format!("{name}: error loading config: {e}"),
                    ));
                }
                Err(_) => None,
            }
        }
        None => None,
    };
    if let Some((rule, path)) = &rule {
        settings = common::settings_from_rule(rule, path)?;
        if let (Some(cli), Some(from_rule)) = (&cli_sel, &settings.selection)
            && cli.key() != from_rule.key()
        {
            return Err(CliError::new(
                8,
                format!(
                    "{name}: cannot use more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, or unencrypted_comment_regex (--{} and the .sops.yaml rule's {})",
                    cli.key().replace('_', "-"),
                    from_rule.key()
                ),
            ));
        }
    }
    if !recipients.is_empty() {
        settings.groups = vec![recipients];
    }
    if cli_sel.is_some() {
        settings.selection = cli_sel;
    }
    if a.mac_only_encrypted {
        settings.mac_only_encrypted = true;
    }
    if let Some(t) = a.shamir_threshold {
        settings.shamir_threshold = t;
    }
    if settings.groups.iter().all(|g| g.is_empty()) {
        return Err(CliError::new(
            if config.is_some() { 111 } else { 1 },
            format!(
                "{name}: config file not found, or has no creation rules, and no keys provided through command line options (--age)"
            ),
        ));
    }
    // The plaintext input: zeroized when dropped.
    let input = zeroize::Zeroizing::new(common::read_input(&a.file)?);
    let out = sops::encrypt(&input, in_fmt, out_fmt, &settings, layout)
        .map_err(|e| CliError::sops(&name, e))?;
    common::emit(&a.file, a.io.in_place, a.io.output.as_deref(), &out)
}
