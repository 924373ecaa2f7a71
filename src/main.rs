//! strict-supplementalgroups-container-runtime: an OCI runtime with runc's command line, built on
//! youki's libcontainer, that drops the supplementary groups a Kubernetes pod did not ask for.

mod atomic_file;
mod cgroup_v1;
mod cli;
mod commands;
mod config;
mod fastargs;
mod logging;
mod passwd;
mod podgroups;
mod policy;
mod record;
mod seal;
mod spec_stage;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Command, Opts};
use crate::logging::{LogFormat, SinkSpec};

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();
    if seal::command_needs_seal(&argv) {
        if let Err(err) = seal::ensure_sealed() {
            // Logging is not up yet (the re-exec must come first); stderr reaches the caller.
            eprintln!("refusing to run unprotected: sealing /proc/self/exe: {err:#}");
            return ExitCode::FAILURE;
        }
    }

    let opts = match fastargs::parse(&argv) {
        Some(opts) => opts,
        None => match Opts::try_parse_from(&argv) {
            Ok(opts) => opts,
            Err(err) => err.exit(),
        },
    };

    let log = match init_logging(&opts) {
        Ok(handle) => handle,
        Err(err) => {
            eprintln!("{err:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::debug!(args = ?argv, "started");
    if opts.compat.criu.is_some() || opts.compat.rootless.is_some() {
        tracing::debug!("ignoring runc-only flags --criu/--rootless");
    }

    let command_name = opts.command.name();
    match dispatch(opts, &log) {
        Ok(code) => ExitCode::from(clamp_exit_code(code)),
        Err(err) => {
            let msg = format!("{command_name} failed: {err:#}");
            tracing::error!("{msg}");
            if !log.primary_is_stderr() {
                eprintln!("{msg}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(opts: &Opts) -> Result<logging::LogHandle> {
    let format = match opts.global.log_format.as_deref() {
        None => LogFormat::Text,
        Some(f) => f.parse().context("--log-format")?,
    };
    // runc treats `--log /dev/stderr` (conmon's default) as stderr.
    let path = opts
        .global
        .log
        .clone()
        .filter(|p| p.as_os_str() != "/dev/stderr");
    // Decisions are logged at info: kept in a log file, but not printed on a terminal.
    let level = match (&opts.compat.log_level, opts.global.debug) {
        (Some(level), _) => logging::parse_level(level).context("--log-level")?,
        (None, true) => tracing::Level::DEBUG,
        (None, false) if path.is_some() => tracing::Level::INFO,
        (None, false) => tracing::Level::WARN,
    };
    // libcontainer and libcgroups warn on every call on cgroup v1 hosts (missing optional
    // controllers); their errors always come through, the rest with --debug.
    let dependency_level = if opts.global.debug || opts.compat.log_level.is_some() {
        level
    } else {
        tracing::Level::ERROR
    };
    logging::init(&SinkSpec {
        path,
        format,
        level,
        dependency_level,
    })
}

fn clamp_exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(255)
}

/// Loads the runtime config, adds its log file (if any) as a second sink and logs remarks.
fn load_config(log: &logging::LogHandle) -> Result<config::Config> {
    let (config, remarks) = config::load()?;
    if let Some(path) = &config.logging.log_file {
        log.add_sink(&SinkSpec {
            path: Some(path.clone()),
            format: config.logging.log_format,
            level: config.logging.log_level,
            dependency_level: tracing::Level::ERROR,
        })
        .with_context(|| format!("[logging] log-file {}", path.display()))?;
    }
    for remark in remarks.0 {
        tracing::warn!("{remark}");
    }
    Ok(config)
}

fn dispatch(opts: Opts, log: &logging::LogHandle) -> Result<i32> {
    let systemd = opts.global.systemd_cgroup;
    // `spec` and `features` need no state directory (and may run unprivileged).
    match opts.command {
        Command::Spec(args) => return commands::spec::spec(args).map(|()| 0),
        Command::Features(args) => return commands::features::features(args).map(|()| 0),
        _ => {}
    }
    let root = commands::prepare_root(
        &opts
            .global
            .root
            .unwrap_or_else(|| PathBuf::from(cli::DEFAULT_ROOT)),
    )?;
    let done = |r: Result<()>| r.map(|()| 0);
    match opts.command {
        Command::Create(args) => {
            let config = load_config(log)?;
            done(commands::create::create(args, &root, systemd, &config))
        }
        Command::Run(args) => {
            let config = load_config(log)?;
            commands::run::run(args, &root, systemd, &config)
        }
        Command::Explain(args) => {
            let config = load_config(log)?;
            done(commands::explain::explain(args, &root, &config))
        }
        Command::Exec(args) => {
            // The exec decision comes from the record kept at create, so a config problem must
            // not block it: only an exec into a container without a record needs the config.
            let config = load_config(log);
            if let Err(err) = &config {
                tracing::warn!("exec proceeds without the config's log file: {err:#}");
            }
            commands::exec::exec(*args, &root, &config)
        }
        Command::Start(args) => done(commands::start::start(args, &root)),
        Command::State(args) => done(commands::state::state(args, &root)),
        Command::Kill(args) => done(commands::kill::kill(args, &root)),
        Command::Delete(args) => done(commands::delete::delete(args, &root)),
        Command::Ps(args) => done(commands::ps::ps(args, &root)),
        Command::List(args) => done(commands::list::list(args, &root)),
        Command::Pause(args) => done(commands::pause::pause(args, &root)),
        Command::Resume(args) => done(commands::resume::resume(args, &root)),
        Command::Events(args) => done(commands::events::events(args, &root)),
        Command::Update(args) => done(commands::update::update(args, &root)),
        Command::Checkpoint(args) => done(commands::checkpoint::checkpoint(args, &root)),
        Command::Spec(_) | Command::Features(_) => Ok(0),
    }
}
