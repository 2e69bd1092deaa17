//! `relaygate generate`: the man page and shell completions, generated from
//! the command-line definition so they never disagree with it.

use crate::cli::{Cli, GenerateCommand};
use anyhow::Context;
use clap::CommandFactory;
use std::io::Write;

/// Write what `what` names to standard output.
pub fn generate(what: &GenerateCommand) -> anyhow::Result<()> {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    match what {
        GenerateCommand::Man => clap_mangen::Man::new(command)
            .render(&mut out)
            .context("writing the man page")?,
        GenerateCommand::Completions { shell } => {
            clap_complete::generate(*shell, &mut command, "relaygate", &mut out);
        }
    }
    out.flush().context("writing to standard output")
}
