//! `allocwatch generate`: the manual pages and shell completions, generated from the command
//! line's own definitions (clap_mangen, clap_complete) when a package is built, so they can
//! never disagree with `--help`. Hidden: it is for packagers, not operators.

use super::{Cli, Failure};
use clap::CommandFactory;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub(super) enum Command {
    /// One roff page per command: allocwatch.1, allocwatch-check.1, …
    Man {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Completion scripts for bash, zsh and fish (allocwatch.bash, _allocwatch, allocwatch.fish).
    Completions {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

pub(super) fn run(command: Command) -> Result<(), Failure> {
    let io = |what: &str, dir: &PathBuf, e: std::io::Error| Failure::runtime(format!("{what} into {}: {e}", dir.display()));
    match command {
        Command::Man { out } => {
            std::fs::create_dir_all(&out).map_err(|e| io("creating the directory", &out, e))?;
            let cmd = Cli::command().version(super::VERSION).long_version(super::VERSION);
            clap_mangen::generate_to(cmd, &out).map_err(|e| io("writing manual pages", &out, e))?;
        }
        Command::Completions { out } => {
            use clap_complete::Shell;
            std::fs::create_dir_all(&out).map_err(|e| io("creating the directory", &out, e))?;
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                clap_complete::generate_to(shell, &mut Cli::command(), "allocwatch", &out).map_err(|e| io("writing completions", &out, e))?;
            }
        }
    }
    Ok(())
}
