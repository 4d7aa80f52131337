//! `lockstep rotate`: a new data key; every value is re-encrypted.

use std::path::PathBuf;

use lockstep::sops::recipients::{self, DropReason, RecipientPlan};
use lockstep::sops::{self, DecryptOptions, Format};

use super::common::{self, CliError, CliResult, Context};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  lockstep rotate -i --identity keys-example/sops.agekey \
    examples/apps/payments/secret.enc.yaml
  lockstep rotate -i --identity keys-example/sops.agekey \
    --add-age age1dyw586cul4e4k03xj5u8ygv5w36frgly45zse76eggw9z4n39yas243ws7 \
    examples/apps/payments/secret.enc.yaml
  lockstep rotate -i --identity keys-example/sops.agekey \
    --rm-age age1dyw586cul4e4k03xj5u8ygv5w36frgly45zse76eggw9z4n39yas243ws7 \
    examples/apps/payments/secret.enc.yaml"#)]
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
    // A .sops.yaml that cannot be read is said so: rotate then falls back to the file's
    // own recipients, which it prints.
    let config = common::load_config(ctx).unwrap_or_else(|e| {
        eprintln!("lockstep: ignoring .sops.yaml: {}", e.message);
        None
    });
    let layout = common::layout(config.as_ref(), None);
    let input = common::read_input(&a.file)?;
    let (ids, searched) = common::identities(ctx);
    let file = sops::decrypt(&input, fmt, &ids, &searched, DecryptOptions::default())
        .map_err(|e| CliError::sops(&name, e))?;
    sops::require_age_only(&file.metadata).map_err(|e| CliError::sops(&name, e))?;
    let add = common::parse_recipients(&a.add_age)?;
    let rm = common::parse_recipients(&a.rm_age)?;
    // The file's recipient list is not authenticated: where a rule covers the file, the
    // rule (plus --add-age) decides who receives the new data key.
    let rule_groups = match &config {
        Some(c) => match c.rule_for(&common::rule_path(&a.file, None)) {
            Ok(rule) if rule.has_keys() => Some(common::settings_from_rule(rule, &c.path)?.groups),
            _ => None,
        },
        None => None,
    };
    let plan = recipients::plan(&file.metadata, rule_groups, &add, &rm)
        .map_err(|e| CliError::new(1, format!("{name}: {e}")))?;
    report_plan(&name, &plan);
    let groups = plan.groups;
    let out = file
        .rotate(Some(&groups), fmt, layout)
        .map_err(|e| CliError::sops(&name, e))?;
    common::emit(&a.file, a.in_place, None, &out)
}

/// Tells on stderr whom the new key goes to, and every listed recipient left out.
pub fn report_plan(name: &str, plan: &RecipientPlan) {
    for (r, why) in &plan.dropped {
        let why = match why {
            DropReason::Removed => "removed with --rm-age",
            DropReason::NotInRule => "listed in the file but not in the .sops.yaml creation rule",
        };
        eprintln!("lockstep: {name}: dropped recipient {r} ({why})");
    }
    if !plan.from_rule {
        let all: Vec<&str> = plan
            .groups
            .iter()
            .flatten()
            .map(|r| r.text.as_str())
            .collect();
        eprintln!(
            "lockstep: {name}: no .sops.yaml rule covers this file; wrapping for the recipients its metadata lists (not authenticated, check them): {}",
            all.join(", ")
        );
    }
}
