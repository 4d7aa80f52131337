//! `lockstep render`: the final objects of an application directory, as the reconciler
//! would apply them. Secret values are redacted unless `--reveal`.

use std::path::PathBuf;

use lockstep::crypto::identity_sources;
use lockstep::policy::PolicySet;
use lockstep::render::{self, Limits, NoVault, RenderOptions};
use lockstep::vault;

use super::common::{self, CliError, CliResult, Context};
use super::seal::{OutputFormat, write_docs};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  lockstep render examples/apps/payments \
    --identity keys-example/sops.agekey --policy policies/tenant-baseline.yaml
  lockstep render examples/apps/billing --namespace team-billing -o json \
    --sealing-identity keys-example/sealing.agekey
  # print Secret values (careful):
  lockstep render examples/apps/payments \
    --identity keys-example/sops.agekey --reveal"#)]
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
    /// Resolve `ref+vault://PATH#KEY` references against this Vault (or OpenBao).
    #[arg(long, value_name = "URL", env = "VAULT_ADDR")]
    vault_addr: Option<String>,
    /// A file holding the Vault token (never pass a token on the command line).
    #[arg(long, value_name = "FILE", requires = "vault_addr")]
    vault_token_file: Option<PathBuf>,
    /// The Vault Enterprise / OpenBao namespace.
    #[arg(long, value_name = "NS", requires = "vault_addr")]
    vault_namespace: Option<String>,
    /// CA bundle (PEM) for Vault's certificate.
    #[arg(long, value_name = "FILE", requires = "vault_addr")]
    vault_ca_file: Option<PathBuf>,
}

pub fn run(ctx: &Context, a: Args) -> CliResult {
    let (sops_ids, _) = common::identities(ctx);
    let sealing = identity_sources::load_explicit(&a.sealing_identity);
    if let Some(p) = sealing.problems.first() {
        return Err(CliError::new(1, p.clone()));
    }
    let policies = PolicySet::load(&a.policy).map_err(|e| CliError::new(1, e.to_string()))?;
    let (_runtime, resolver) = vault_resolver(&a, &policies)?;
    let opts = RenderOptions {
        sops_identities: &sops_ids,
        sealing_identities: &sealing.identities,
        destination_namespace: a.namespace.as_deref(),
        vault: match &resolver {
            Some(r) => r,
            None => &NoVault,
        },
        limits: Limits::default(),
        policies: Some(&policies),
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

type VaultParts = (Option<tokio::runtime::Runtime>, Option<vault::AppResolver>);

/// A resolver for `--vault-addr`, with the runtime its calls run on.
fn vault_resolver(a: &Args, policies: &PolicySet) -> Result<VaultParts, CliError> {
    let Some(addr) = &a.vault_addr else {
        return Ok((None, None));
    };
    let Some(token_file) = &a.vault_token_file else {
        return Err(CliError::new(
            1,
            "--vault-addr needs --vault-token-file (a file holding the token)",
        ));
    };
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| CliError::new(1, format!("{}: {e}", token_file.display())))?;
    let token = vault::Secret::new(token.trim().to_owned());
    if token.expose().is_empty() {
        return Err(CliError::new(
            1,
            format!("{}: empty token", token_file.display()),
        ));
    }
    let ca_pem = match &a.vault_ca_file {
        Some(f) => {
            Some(std::fs::read(f).map_err(|e| CliError::new(1, format!("{}: {e}", f.display())))?)
        }
        None => None,
    };
    // A worker thread drives the I/O: the resolver blocks on the handle from this thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| CliError::new(1, format!("runtime: {e}")))?;
    let resolver = vault::Vault::default().resolver(
        rt.handle().clone(),
        vault::Endpoint {
            address: addr.trim_end_matches('/').to_owned(),
            namespace: a.vault_namespace.clone(),
            ca_pem,
            timeout: vault::DEFAULT_TIMEOUT,
        },
        vault::Auth::Token(token),
        "cli".into(),
        "cli".into(),
        vault::rules_of(policies),
    );
    Ok((Some(rt), Some(resolver)))
}
