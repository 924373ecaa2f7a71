use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use liboci_cli::Create;

use super::cleanup_failed_create;
use crate::config::Config;
use crate::container_state::{IdClaim, container_dir};
use crate::podgroups::{self, CacheWrites};
use crate::spec_stage;

/// The parts of `create` and `run` that make an init container.
pub struct InitRequest<'a> {
    pub container_id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a PathBuf>,
    pub console_socket: Option<&'a PathBuf>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    pub detach: bool,
}

pub fn create(args: Create, root: &Path, systemd: bool, config: &Config) -> Result<()> {
    create_enforced(
        &InitRequest {
            container_id: &args.container_id,
            bundle: &args.bundle,
            pid_file: args.pid_file.as_ref(),
            console_socket: args.console_socket.as_ref(),
            preserve_fds: args.preserve_fds,
            no_pivot: args.no_pivot,
            detach: true,
        },
        root,
        systemd,
        config,
    )
    .map(|_| ())
}

/// Claims the id, runs the group stage on the bundle, lets libcontainer create the container,
/// then keeps the decision beside the container's state. Any failure leaves no container of
/// this invocation behind, and never touches another's.
pub fn create_enforced(
    req: &InitRequest<'_>,
    root: &Path,
    systemd: bool,
    config: &Config,
) -> Result<Container> {
    let id = req.container_id;
    let dir = container_dir(root, id)?;
    // Before the stage: a duplicate or concurrent id never rewrites a live container's bundle,
    // and the cleanup below only ever removes what this invocation made.
    let _claim = IdClaim::acquire(root, id)?;
    let source = podgroups::from_config(config, root, CacheWrites::Allowed);
    let record = spec_stage::enforce_on_bundle(req.bundle, id, config, &*source)?;
    crate::process_groups::clear_inherited_groups()?;
    let built = ContainerBuilder::new(id.to_owned(), SyscallType::default())
        .with_pid_file(req.pid_file)?
        .with_console_socket(req.console_socket)
        .with_root_path(root)?
        .with_preserved_fds(req.preserve_fds)
        .validate_id()?
        .as_init(req.bundle)
        .with_systemd(systemd)
        .with_detach(req.detach)
        .with_no_pivot(req.no_pivot)
        .build();
    let container = match built {
        Ok(c) => c,
        Err(err) => {
            cleanup_failed_create(root, id);
            return Err(err).with_context(|| format!("creating container {id}"));
        }
    };
    if let Err(err) = record.save(&dir) {
        // Without a record, a later exec would re-resolve; refuse rather than run half-tracked.
        cleanup_failed_create(root, id);
        return Err(err).context("keeping the group decision for later execs");
    }
    Ok(container)
}
