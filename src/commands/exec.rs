use std::path::Path;

use anyhow::{Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use liboci_cli::Exec;
use nix::sys::wait::{WaitStatus, waitpid};

use super::container_dir;
use crate::config::Config;
use crate::spec_stage;

/// `exec`: runs a process in a running container, with its supplementary groups filtered
/// against the pod's grant; returns the process's exit code unless detached.
/// `config` is the runtime config as `main` read it: only an exec into a container without a
/// group record needs it.
pub fn exec(args: Exec, root: &Path, config: &Result<Config>) -> Result<i32> {
    let id = &args.container_id;
    let dir = container_dir(root, id)?;
    if !dir.exists() {
        anyhow::bail!("container {id} does not exist");
    }
    let user = args.user.map(|(uid, _)| uid);
    let group = args.user.and_then(|(_, gid)| gid);
    let grant = spec_stage::exec::grant_for(&dir, id, root, config)?;
    let filtered = spec_stage::exec::filter(
        &grant,
        id,
        &dir,
        args.process.as_deref(),
        &args.additional_gids,
        group.unwrap_or(0),
    )?;

    let pid = ContainerBuilder::new(id.clone(), SyscallType::default())
        .with_root_path(root)?
        .with_console_socket(args.console_socket.as_ref())
        .with_pid_file(args.pid_file.as_ref())?
        .with_preserved_fds(args.preserve_fds)
        .validate_id()?
        .as_tenant()
        .with_detach(args.detach)
        .with_cwd(args.cwd.as_ref())
        .with_env(args.env.iter().cloned().collect())
        .with_process(filtered.process.as_ref())
        .with_no_new_privs(args.no_new_privs)
        .with_container_args(args.command.clone())
        .with_additional_gids(filtered.additional_gids.clone())
        .with_user(user)
        .with_group(group)
        .with_capabilities(args.cap.clone())
        .with_ignore_paused(args.ignore_paused)
        .with_sub_cgroup(args.cgroup.clone())
        .with_process_label(args.process_label.clone())
        .with_apparmor(args.apparmor.clone())
        .build()
        .with_context(|| format!("exec in container {id}"))?;
    // libcontainer has read the private process copy; it is removed here.
    drop(filtered);
    if args.detach {
        return Ok(0);
    }
    match waitpid(pid, None).context("waiting for the exec process")? {
        WaitStatus::Exited(_, code) => Ok(code),
        WaitStatus::Signaled(_, sig, _) => Ok(128 + sig as i32),
        _ => Ok(0),
    }
}
