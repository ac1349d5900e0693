//! `airlock completions`: shell completion scripts.

use clap::CommandFactory;
use clap_complete::Shell;

use airlock::error::Result;

/// Print a shell completion script.
///
/// Examples:
///   airlock completions bash > ~/.local/share/bash-completion/completions/airlock
///   airlock completions zsh > "${fpath[1]}/_airlock"
///   airlock completions fish > ~/.config/fish/completions/airlock.fish
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The shell to generate completions for.
    shell: Shell,
}

pub fn run(a: Args) -> Result<()> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "airlock", &mut std::io::stdout());
    Ok(())
}
