//! `lockstep render`: the final objects of an application directory, as the reconciler
//! would apply them. Secret values are redacted unless `--reveal`.

use std::path::PathBuf;

use lockstep::crypto::identity_sources;
use lockstep::policy::PolicySet;
use lockstep::render::{self, Limits, NoVault, RenderOptions};

use super::common::{self, CliError, CliResult, Context};
use super::seal::{OutputFormat, write_docs};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  lockstep render apps/payments --identity keys/app.agekey --sealing-identity cluster.txt\n  lockstep render apps/payments --namespace payments --policy policies/ -o json\n  lockstep render apps/payments --reveal   # print Secret values (careful)"
)]
pub struct Args {
    /// The application directory (all .yaml/.yml/.json below it, recursively).
    dir: PathBuf,
    /// The cluster's sealing identity, for SealedSecrets; repeatable (key rotation).
    #[arg(long, value_name = "FILE")]
    sealing_identity: Vec<PathBuf>,
    /// Policy files or directories; every object must satisfy every policy.
    #[arg(long, value_name = "DIR")]
    policy: Vec<PathBuf>,
    /// Destination namespace for objects that name none.
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Option<String>,
    /// For a kustomization: the directory its bases must stay inside (default: the Git
    /// work tree that holds DIR).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Print Secret values instead of redacting them.
    #[arg(long)]
    reveal: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
}

pub fn run(ctx: &Context, a: Args) -> CliResult {
    let (sops_ids, _) = common::identities(ctx);
    let sealing = identity_sources::load_explicit(&a.sealing_identity);
    if let Some(p) = sealing.problems.first() {
        return Err(CliError::new(1, p.clone()));
    }
    let policies = PolicySet::load(&a.policy).map_err(|e| CliError::new(1, e.to_string()))?;
    let opts = RenderOptions {
        sops_identities: &sops_ids,
        sealing_identities: &sealing.identities,
        destination_namespace: a.namespace.as_deref(),
        vault: &NoVault,
        limits: Limits::default(),
    };
    let objects = match &a.root {
        Some(root) => render::render_app(root, &a.dir, &opts),
        None => render::render_dir(&a.dir, &opts),
    }
    .map_err(|e| CliError::new(1, format!("{}: {e}", a.dir.display())))?;
    let violations: Vec<String> = objects
        .iter()
        .flat_map(|o| policies.check(&o.subject()))
        .map(|v| v.to_string())
        .collect();
    if !violations.is_empty() {
        for v in &violations {
            eprintln!("lockstep: {}: {v}", a.dir.display());
        }
        return Err(CliError::new(
            1,
            format!("{} policy violation(s); nothing rendered", violations.len()),
        ));
    }
    let docs: Vec<_> = objects
        .into_iter()
        .map(|mut o| {
            if !a.reveal {
                render::redact_object(&mut o);
            }
            o.doc
        })
        .collect();
    write_docs(&docs, a.output)
}
