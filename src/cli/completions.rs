//! `lockstep completions SHELL`.

use clap::CommandFactory;

use super::common::CliResult;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  lockstep completions bash > /etc/bash_completion.d/lockstep\n  lockstep completions zsh > \"${fpath[1]}/_lockstep\"\n  lockstep completions fish > ~/.config/fish/completions/lockstep.fish"
)]
pub struct Args {
    shell: clap_complete::Shell,
}

pub fn run(args: Args) -> CliResult {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "lockstep", &mut std::io::stdout());
    Ok(())
}
