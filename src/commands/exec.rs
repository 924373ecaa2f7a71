use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use liboci_cli::Exec;
use nix::sys::wait::{WaitStatus, waitpid};

use crate::config::Config;
use crate::container_state::{self, container_dir, load_container};
use crate::podgroups::{self, CacheWrites};
use crate::record::Record;
use crate::spec_stage::exec_filter::{self, ExecProcess};
use crate::spec_stage::load::{BundleSpec, ProcessUser};

/// `exec`: runs a process in a running container, with its groups filtered against the pod's
/// grant; returns the process's exit code unless detached. `config` is the runtime config as
/// `dispatch` read it: only an exec into a container without a group record needs it.
pub fn exec(args: Exec, root: &Path, config: &Result<Config>) -> Result<i32> {
    let id = &args.container_id;
    let dir = container_dir(root, id)?;
    if !dir.exists() {
        anyhow::bail!("container {id} does not exist");
    }
    let grant = match Record::load(&dir)? {
        Some(record) => record,
        None => evaluate_again(root, id, config)?,
    };
    let (process, cwd) = match &args.process {
        Some(path) => (ExecProcess::File(path), None),
        None => {
            let (user, spec_cwd) = flag_user(&args, root)?;
            (ExecProcess::Flags(user), args.cwd.clone().or(spec_cwd))
        }
    };
    let filtered = exec_filter::filter(&grant, id, &dir, process)?;
    crate::process_groups::clear_inherited_groups()?;

    let mut builder = ContainerBuilder::new(id.clone(), SyscallType::default())
        .with_root_path(root)?
        .with_console_socket(args.console_socket.as_ref())
        .with_pid_file(args.pid_file.as_ref())?
        .with_preserved_fds(args.preserve_fds)
        .validate_id()?
        .as_tenant()
        .with_detach(args.detach)
        .with_cwd(cwd.as_ref())
        .with_env(args.env.iter().cloned().collect())
        .with_process(filtered.process.as_ref())
        .with_no_new_privs(args.no_new_privs || filtered.no_new_privileges)
        .with_container_args(args.command.clone())
        .with_capabilities(args.cap.clone())
        .with_ignore_paused(args.ignore_paused)
        .with_sub_cgroup(args.cgroup.clone())
        .with_process_label(args.process_label.clone())
        .with_apparmor(args.apparmor.clone());
    if let Some(user) = &filtered.user {
        builder = builder
            .with_user(Some(user.uid))
            .with_group(Some(user.gid))
            .with_additional_gids(user.additional_gids.clone());
    }
    let pid = builder
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

/// The user of an exec built from flags, as runc builds it: the container's own
/// `process.user` (its bundle's config.json, as create left it), `--user uid[:gid]` replacing
/// the uid and, when given, the gid, and `--additional-gids` appended. Also the spec's cwd,
/// which runc uses unless `--cwd` says otherwise.
fn flag_user(args: &Exec, root: &Path) -> Result<(ProcessUser, Option<PathBuf>)> {
    let container = load_container(root, &args.container_id)?;
    let spec = BundleSpec::load(container.bundle()).with_context(|| {
        format!(
            "reading the bundle of container {} for its process user",
            args.container_id
        )
    })?;
    let mut user = spec.user.clone();
    if let Some((uid, gid)) = args.user {
        user.uid = uid;
        if let Some(gid) = gid {
            user.gid = gid;
        }
    }
    user.additional_gids.extend(&args.additional_gids);
    let cwd = spec
        .json
        .pointer("/process/cwd")
        .and_then(|c| c.as_str())
        .map(PathBuf::from);
    Ok((user, cwd))
}

/// The grant of a container created without a record (by a build that kept none): the stage
/// evaluated again on its bundle, with the annotations libcontainer kept at create.
fn evaluate_again(root: &Path, id: &str, config: &Result<Config>) -> Result<Record> {
    let container = load_container(root, id)?;
    let mut spec = BundleSpec::load(container.bundle())
        .with_context(|| format!("reading the bundle of container {id}"))?;
    // The state's annotations are what create saw; the bundle may have been edited since.
    spec.annotations = container_state::annotations(&container);
    let config = config
        .as_ref()
        .map_err(|e| anyhow!("reading the runtime configuration: {e:#}"))?;
    tracing::info!(
        container_id = id,
        "container has no group record (created before this runtime kept them); resolving again"
    );
    let source = podgroups::from_config(config, root, CacheWrites::Allowed);
    Ok(crate::spec_stage::evaluate(&spec, id, config, &*source)?.record())
}
