//! strict-supplementalgroups-container-runtime: the entry point. Everything it calls is in the
//! library (`src/lib.rs`); this file only orders the four steps every invocation takes.

// Defined in the executable itself, so that it replaces the C library's for every caller.
mod passwd;

use std::process::ExitCode;

use strict_supplementalgroups::{cli, commands, logging, seal};

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();

    // 1. Parse. The same parse decides sealing and dispatch, so no argv can reach create, run
    //    or exec without the seal.
    let opts = match cli::parse(&argv) {
        Ok(opts) => opts,
        Err(err) => err.exit(),
    };

    // 2. Logging, runc's format, to --log (what the shim and conmon read).
    let log = match logging::init_for_cli(&opts) {
        Ok(handle) => handle,
        Err(err) => {
            eprintln!("{err:#}");
            return ExitCode::FAILURE;
        }
    };

    // 3. Seal: a command whose process enters a container re-executes from a sealed image
    //    (CVE-2019-5736) before doing anything else; the sealed process parses again.
    if opts.command.enters_container() {
        if let Err(err) = seal::ensure_sealed() {
            return fail(
                &log,
                &format!("refusing to run unprotected: sealing /proc/self/exe: {err:#}"),
            );
        }
    }
    tracing::debug!(args = ?argv, "started");

    // 4. Dispatch.
    let command_name = opts.command.name();
    match commands::dispatch(opts, &log) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(err) => fail(&log, &format!("{command_name} failed: {err:#}")),
    }
}

/// The error is the last `error` line of the log (what the shim and conmon report), and is
/// also printed for a person at a terminal when the log is a file.
fn fail(log: &logging::LogHandle, msg: &str) -> ExitCode {
    tracing::error!("{msg}");
    if !log.primary_is_stderr() {
        eprintln!("{msg}");
    }
    ExitCode::FAILURE
}
