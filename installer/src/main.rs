//! strict-supplementalgroups-installer: puts the runtime on a node and registers it with the
//! node's CRI (containerd or CRI-O), and takes it all away again.
//!
//! A second binary so the runtime, which starts for every container, carries neither
//! `toml_edit` nor signal handling. Everything it changes is listed on stdout and recorded on the
//! host, so `uninstall` reverses exactly what `install` did.

mod cli;
mod containerd;
mod crio;
mod detect;
mod hostfs;
mod install;
mod patches;
mod record;
mod restart;
mod signals;
mod uninstall;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Install(args) => install::run(&args),
        Command::Uninstall(args) => uninstall::run(&args),
    }
}
