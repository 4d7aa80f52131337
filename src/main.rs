//! The `lockstep` binary: parse arguments, set up logging, dispatch to `cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    // kube and vaultrs both use rustls; pick ring explicitly or they panic at run time.
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    lockstep_cli::run()
}

#[path = "cli/mod.rs"]
mod lockstep_cli;
