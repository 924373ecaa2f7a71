//! strict-supplementalgroups-installer: puts the runtime on a node and registers it with the
//! node's CRI (containerd or CRI-O), and takes it all away again.
//!
//! A second binary so the runtime, which starts for every container, carries neither
//! `toml_edit`, a gRPC client nor signal handling. Everything it changes is listed on stdout and
//! recorded on the host, so `uninstall` takes out exactly what `install` added.

mod cli;
mod containerd;
mod containerd_layout;
mod cri;
mod crio;
mod detect;
mod hostfs;
mod install;
mod lock;
mod node_label;
mod patches;
mod record;
mod restart;
mod signals;
mod uninstall;
mod verify;

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
