//! One small module per subcommand; each is a thin adapter over libcontainer (and, for create,
//! run, exec and explain, the group stage), as in youki. `dispatch` routes a parsed command.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libcgroups::common::AnyCgroupManager;
use libcontainer::container::Container;

use crate::cli::{Command, Opts};
use crate::config::Config;
use crate::container_state::{container_dir, load_container};
use crate::logging::{LogHandle, SinkSpec};

pub mod checkpoint;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod explain;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod resume;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

/// Loads the runtime config, adds its log file (if any) as a second sink and logs remarks.
fn load_config(log: &LogHandle) -> Result<Config> {
    let (config, remarks) = crate::config::load()?;
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

/// Runs the parsed command; returns the process exit code (`run` and `exec` return their
/// process's).
pub fn dispatch(opts: Opts, log: &LogHandle) -> Result<i32> {
    let systemd = opts.global.systemd_cgroup;
    // `spec` and `features` need no state directory (and may run unprivileged).
    match opts.command {
        Command::Spec(args) => return spec::spec(args).map(|()| 0),
        Command::Features(args) => return features::features(args).map(|()| 0),
        _ => {}
    }
    let root = opts
        .global
        .root
        .unwrap_or_else(|| PathBuf::from(crate::cli::DEFAULT_ROOT));
    if let Command::Explain(args) = opts.command {
        // explain changes nothing, not even by creating the state root.
        let config = load_config(log)?;
        let root = root.canonicalize().unwrap_or(root);
        return explain::explain(args, &root, &config).map(|()| 0);
    }
    let root = prepare_root(&root)?;
    let done = |r: Result<()>| r.map(|()| 0);
    match opts.command {
        Command::Create(args) => {
            let config = load_config(log)?;
            done(create::create(args, &root, systemd, &config))
        }
        Command::Run(args) => {
            let config = load_config(log)?;
            run::run(args, &root, systemd, &config)
        }
        Command::Exec(args) => {
            // The exec decision comes from the record kept at create, so a config problem must
            // not block it: only an exec into a container without a record needs the config.
            let config = load_config(log);
            if let Err(err) = &config {
                tracing::warn!("exec proceeds without the config's log file: {err:#}");
            }
            exec::exec(*args, &root, &config)
        }
        Command::Start(args) => done(start::start(args, &root)),
        Command::State(args) => done(state::state(args, &root)),
        Command::Kill(args) => done(kill::kill(args, &root)),
        Command::Delete(args) => done(delete::delete(args, &root)),
        Command::Ps(args) => done(ps::ps(args, &root)),
        Command::List(args) => done(list::list(args, &root)),
        Command::Pause(args) => done(pause::pause(args, &root)),
        Command::Resume(args) => done(resume::resume(args, &root)),
        Command::Events(args) => done(events::events(args, &root)),
        Command::Update(args) => done(update::update(args, &root)),
        Command::Checkpoint(args) => done(checkpoint::checkpoint(args, &root)),
        Command::Spec(_) | Command::Features(_) | Command::Explain(_) => Ok(0),
    }
}

/// Creates the state root if needed (owner-only, as runc) and returns its canonical path.
pub fn prepare_root(root: &Path) -> Result<PathBuf> {
    if !root.exists() {
        libcontainer::utils::create_dir_all_with_mode(
            root,
            nix::unistd::geteuid().as_raw(),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .with_context(|| format!("creating state root {}", root.display()))?;
    }
    root.canonicalize()
        .with_context(|| format!("resolving state root {}", root.display()))
}

pub fn cgroup_manager(root: &Path, id: &str) -> Result<AnyCgroupManager> {
    let container = load_container(root, id)?;
    let config = container
        .spec()
        .with_context(|| format!("loading saved config of container {id}"))?;
    libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: id.to_owned(),
    })
    .with_context(|| format!("opening cgroups of container {id}"))
}

/// Removes what a failed create left behind, so that the caller's `delete --force` (which the
/// shim and conmon always send) and a retry with the same id both work. Only called while the
/// create holds the id's claim, so everything there is this create's; removed like any delete
/// (never sweeping a cgroup that is not the container's).
pub fn cleanup_failed_create(root: &Path, id: &str) {
    let Ok(dir) = container_dir(root, id) else {
        return;
    };
    if !dir.exists() {
        return;
    }
    if let Ok(mut container) = Container::load(dir.clone()) {
        if let Err(err) = delete::delete_container(&mut container, true) {
            tracing::debug!(error = %format!("{err:#}"), "cleanup after failed create: delete");
        }
    }
    if dir.exists() {
        if let Err(err) = fs::remove_dir_all(&dir) {
            tracing::warn!(%err, dir = %dir.display(), "cleanup after failed create");
        }
    }
}
