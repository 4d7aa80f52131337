//! Command-line front door. Each subcommand lives in its own file and only turns
//! arguments into library calls and results into output.

mod check;
mod common;
mod completions;
mod controller;
mod decrypt;
mod devcluster;
mod edit;
mod encrypt;
mod keygen;
mod keys;
mod quickstart;
mod render;
mod reseal;
mod rotate;
mod seal;
mod unseal;
mod updatekeys;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = r#"Examples:
  lockstep keygen -o key.txt  # new identity (mode 0600); prints the recipient
  lockstep decrypt --identity keys-example/sops.agekey \
    examples/apps/payments/secret.enc.yaml > secret.yaml
  lockstep encrypt --age "$(cat keys-example/sops.recipient)" \
    secret.yaml > secret.enc.yaml
  export SOPS_AGE_KEY_FILE=keys-example/sops.agekey
  lockstep decrypt --extract '["stringData"]["DB_USER"]' secret.enc.yaml
  lockstep rotate -i secret.enc.yaml      # a new data key
  lockstep seal --recipients-file keys-example/sealing.recipient \
    secret.yaml > secret.sealed.yaml
  lockstep unseal --identity keys-example/sealing.agekey secret.sealed.yaml
  lockstep keys inventory examples/
  lockstep render examples/apps/payments \
    --identity keys-example/sops.agekey --policy policies/tenant-baseline.yaml
  lockstep check --policy policies/tenant-baseline.yaml examples/apps/payments

Exit status: 0 on success; otherwise the sops exit code for the cause (e.g. 2 unreadable
input, 25 a value failed to decrypt, 51 MAC mismatch, 128 no identity opens the file).
Environment: SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, SOPS_AGE_SSH_PRIVATE_KEY_FILE, SOPS_AGE_KEY_CMD,
SOPS_AGE_RECIPIENTS, SOPS_CONFIG, SOPS_EDITOR/EDITOR, LOCKSTEP_LOG (log filter, e.g. debug)."#;

/// lockstep: Git to Kubernetes with secrets done right. The SOPS commands are a drop-in
/// for the `sops` CLI on age-encrypted files.
#[derive(Parser, Debug)]
#[command(name = "lockstep", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// An age identity file (or OpenSSH private key) to decrypt with, in addition to the
    /// sources sops uses. Repeatable.
    #[arg(long, global = true, value_name = "FILE")]
    identity: Vec<PathBuf>,

    /// Path of the .sops.yaml to use instead of searching from the current directory.
    #[arg(long, global = true, env = "SOPS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate an age X25519 identity (age-keygen format, mode 0600).
    Keygen(keygen::Args),
    /// Encrypt a file as sops does (YAML, JSON, dotenv or binary).
    Encrypt(encrypt::Args),
    /// Decrypt a SOPS file and verify its MAC.
    Decrypt(decrypt::Args),
    /// Edit a SOPS file in $EDITOR; unchanged values keep their ciphertext.
    Edit(edit::Args),
    /// Re-wrap the data key for the recipients that .sops.yaml now lists.
    Updatekeys(updatekeys::Args),
    /// Generate a new data key and re-encrypt every value.
    Rotate(rotate::Args),
    /// Seal Secrets into SealedSecrets that only the cluster can open.
    Seal(seal::Args),
    /// Open SealedSecrets with cluster identities (recovery and debugging).
    Unseal(unseal::Args),
    /// Re-encrypt SealedSecrets under paths to a new recipient set, in place.
    Reseal(reseal::Args),
    /// Key inventory: which recipients each sealed or SOPS file is encrypted to.
    Keys(keys::Args),
    /// Run an embedded Kubernetes API server for local use until interrupted.
    Devcluster(devcluster::Args),
    /// Render an application directory into the objects the reconciler would apply.
    Render(render::Args),
    /// Pre-commit gate: plaintext Secrets, broken files, bad MACs, policy violations.
    Check(check::Args),
    /// Run the reconciler: keep every Application in lockstep with its Git revision.
    Controller(controller::Args),
    /// Try everything on one machine: devcluster, the example repo and keys, a reconcile.
    Quickstart(quickstart::Args),
    /// Print shell completions.
    Completions(completions::Args),
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    common::init_logging();
    let ctx = common::Context {
        identities: cli.identity.clone(),
        config: cli.config.clone(),
    };
    let result = match cli.command {
        Command::Keygen(a) => keygen::run(a),
        Command::Encrypt(a) => encrypt::run(&ctx, a),
        Command::Decrypt(a) => decrypt::run(&ctx, a),
        Command::Edit(a) => edit::run(&ctx, a),
        Command::Updatekeys(a) => updatekeys::run(&ctx, a),
        Command::Rotate(a) => rotate::run(&ctx, a),
        Command::Seal(a) => seal::run(a),
        Command::Unseal(a) => unseal::run(&ctx, a),
        Command::Reseal(a) => reseal::run(&ctx, a),
        Command::Keys(a) => keys::run(a),
        Command::Devcluster(a) => devcluster::run(a),
        Command::Render(a) => render::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Controller(a) => controller::run(a),
        Command::Quickstart(a) => quickstart::run(a),
        Command::Completions(a) => completions::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr: file, key path and cause.
            let msg = e.message.replace('\n', " ");
            eprintln!("lockstep: {msg}");
            ExitCode::from(e.code.clamp(1, 255) as u8)
        }
    }
}
