use std::path::Path;

use anyhow::{Context, Result};
use libcontainer::container::ContainerStatus;
use libcontainer::signal::Signal;
use liboci_cli::Kill;

use super::load_container;

/// `kill [--all] ID SIGNAL`. `--all` signals every process of the container's cgroup, as runc
/// does — but never of a cgroup that is not the container's own (an empty `cgroupsPath` would
/// mean the caller's cgroup, `/` the whole hierarchy): there only the init is signalled.
pub fn kill(args: Kill, root: &Path) -> Result<()> {
    let mut container = load_container(root, &args.container_id)?;
    let signal = Signal::try_from(args.signal.as_str())
        .with_context(|| format!("invalid signal {:?}", args.signal))?;
    let own_cgroup = || {
        container
            .spec()
            .is_ok_and(|c| crate::cgroup_dirs::names_a_cgroup_of_its_own(&c.cgroup_path))
    };
    let all = args.all && own_cgroup();
    if args.all && !all {
        tracing::warn!(
            container_id = args.container_id.as_str(),
            "kill --all: the container has no cgroup of its own; signalling its init only"
        );
        container
            .refresh_status()
            .with_context(|| format!("reading the status of container {}", args.container_id))?;
        if container.status() == ContainerStatus::Stopped {
            // Its init is gone and nothing else is known to be its own.
            return Ok(());
        }
    }
    container.kill(signal, all).map_err(|err| {
        let what = if container.status() == ContainerStatus::Stopped {
            "container not running"
        } else {
            "killing container"
        };
        anyhow::Error::new(err).context(format!("{what} {}", args.container_id))
    })
}
