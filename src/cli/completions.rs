//! `lockstep completions SHELL`.

use clap::CommandFactory;

use super::common::CliResult;

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  lockstep completions bash > lockstep.bash   # then: source lockstep.bash
  # zsh, with fpath+=(~/.zfunc) in ~/.zshrc:
  mkdir -p ~/.zfunc && lockstep completions zsh > ~/.zfunc/_lockstep
  mkdir -p ~/.config/fish/completions \
    && lockstep completions fish > ~/.config/fish/completions/lockstep.fish"#)]
pub struct Args {
    shell: clap_complete::Shell,
}

pub fn run(args: Args) -> CliResult {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "lockstep", &mut std::io::stdout());
    Ok(())
}
