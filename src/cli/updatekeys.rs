//! `lockstep updatekeys`: re-wrap the same data key for the recipients that the
//! `.sops.yaml` creation rule lists now. Values, `mac` and `lastmodified` are unchanged.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use lockstep::sops::{self, DecryptOptions, Format};

use super::common::{self, CliError, CliResult, Context};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  # to the recipients examples/.sops.yaml lists now:
  lockstep updatekeys -y --config examples/.sops.yaml \
    --identity keys-example/sops.agekey examples/apps/payments/secret.enc.yaml
  # several files, with a progress bar:
  lockstep updatekeys -y --config examples/.sops.yaml \
    --identity keys-example/sops.agekey examples/apps/*/*.enc.yaml"#)]
pub struct Args {
    /// Encrypted files to update.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Accepted for compatibility with sops; lockstep does not prompt.
    #[arg(short = 'y', long)]
    yes: bool,
    #[arg(long, value_enum)]
    input_type: Option<Format>,
    /// Also wrap for these age recipients, besides the rule's (comma-separated; repeatable).
    #[arg(long, value_name = "RECIPIENTS")]
    add_age: Vec<String>,
}

pub fn run(ctx: &Context, a: Args) -> CliResult {
    let config = common::load_config(ctx)?.ok_or_else(|| {
        CliError::new(
            61,
            "config file not found: updatekeys needs a .sops.yaml with creation rules",
        )
    })?;
    let layout = common::layout(Some(&config), None);
    let (ids, searched) = common::identities(ctx);
    let bar = if a.files.len() > 1 {
        ProgressBar::new(a.files.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let add = common::parse_recipients(&a.add_age)?;
    let mut failed = None;
    let (mut changed, mut same) = (0, 0);
    for file in &a.files {
        let name = common::display_name(file);
        bar.set_message(name.clone());
        match update_one(&config, file, a.input_type, &add, &ids, &searched, layout) {
            Ok(true) => changed += 1,
            Ok(false) => same += 1,
            Err(e) => {
                bar.suspend(|| eprintln!("lockstep: {}", e.message));
                failed.get_or_insert(e);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "updatekeys: {changed} file(s) updated, {same} already up to date{}",
        if failed.is_some() {
            ", some failed"
        } else {
            ""
        }
    );
    match failed {
        Some(e) if a.files.len() == 1 => Err(e),
        Some(e) => Err(CliError::new(
            e.code,
            "some files could not be updated (see above)",
        )),
        None => Ok(()),
    }
}

fn update_one(
    config: &sops::config::Config,
    file: &std::path::Path,
    input_type: Option<Format>,
    add: &[lockstep::crypto::age_keys::AgeRecipient],
    ids: &lockstep::crypto::age_keys::Identities,
    searched: &[String],
    layout: sops::Layout,
) -> Result<bool, CliError> {
    let name = common::display_name(file);
    let fmt = input_type.unwrap_or_else(|| Format::for_path(file));
    let rule = config
        .rule_for(&common::rule_path(file, None))
        .map_err(|e| CliError::new(1, format!("{name}: error loading config: {e}")))?;
    let settings = common::settings_from_rule(rule, &config.path)?;
    let input = common::read_input(file)?;
    let encrypted = sops::load_encrypted(&input, fmt).map_err(|e| CliError::sops(&name, e))?;
    sops::require_age_only(&encrypted.metadata).map_err(|e| CliError::sops(&name, e))?;
    // Only the rule's recipients (and --add-age) receive the key: the file's own list
    // is not authenticated, so an entry added to it is dropped, and said so.
    let plan = sops::recipients::plan(&encrypted.metadata, Some(settings.groups.clone()), add, &[])
        .map_err(|e| CliError::new(1, format!("{name}: {e}")))?;
    let current: Vec<Vec<&str>> = encrypted
        .metadata
        .key_groups
        .iter()
        .map(|g| g.age.iter().map(|k| k.recipient.as_str()).collect())
        .collect();
    let wanted: Vec<Vec<&str>> = plan
        .groups
        .iter()
        .map(|g| g.iter().map(|r| r.text.as_str()).collect())
        .collect();
    let threshold_same = settings.shamir_threshold == 0
        || settings.shamir_threshold == encrypted.metadata.shamir_threshold;
    if current == wanted && threshold_same {
        return Ok(false);
    }
    for r in wanted
        .iter()
        .flatten()
        .filter(|r| !current.iter().flatten().any(|c| c == *r))
    {
        tracing::info!("{name}: adding recipient {r}");
    }
    super::rotate::report_plan(&name, &plan);
    if !plan.dropped.is_empty() {
        eprintln!(
            "lockstep: {name}: the data key is unchanged; run `lockstep rotate` so that dropped recipients cannot read later values"
        );
    }
    let decrypted = sops::decrypt(&input, fmt, ids, searched, DecryptOptions::default())
        .map_err(|e| CliError::sops(&name, e))?;
    let out = decrypted
        .with_key_groups(encrypted, &plan.groups, settings.shamir_threshold, layout)
        .map_err(|e| CliError::sops(&name, e))?;
    common::write_atomic(file, &out)?;
    Ok(true)
}
