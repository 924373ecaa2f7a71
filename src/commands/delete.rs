use std::path::Path;

use anyhow::{Context, Result};
use libcgroups::common::CgroupSetup;
use libcontainer::container::{Container, ContainerStatus};
use liboci_cli::Delete;

use super::{container_dir, load_container};
use crate::cgroup_v1;

pub fn delete(args: Delete, root: &Path) -> Result<()> {
    let dir = container_dir(root, &args.container_id)?;
    if args.force && !dir.exists() {
        // runc: deleting what is already gone with --force succeeds (the shim relies on it).
        return Ok(());
    }
    let mut container = load_container(root, &args.container_id)?;
    forget_pod_groups(root, &container);
    if delete_stopped_quickly(&container)
        .with_context(|| format!("deleting container {}", args.container_id))?
    {
        return Ok(());
    }
    container
        .delete(args.force)
        .with_context(|| format!("deleting container {}", args.container_id))
}

/// The common case — a stopped container on a cgroup v1/hybrid host, with no poststop hooks,
/// no Intel RDT and cgroupfs management — done as libcontainer does it (remove the cgroups,
/// then the state directory) without libcgroups' per-controller mountinfo parsing. Returns
/// false, having changed nothing, whenever the case is not that one.
fn delete_stopped_quickly(container: &Container) -> Result<bool> {
    let plain = container.status() == ContainerStatus::Stopped
        && !container.systemd()
        && container.intel_rdt_dir().is_none()
        && container.intel_rdt_monitoring_dir().is_none()
        && matches!(
            libcgroups::common::get_cgroup_setup(),
            Ok(CgroupSetup::Legacy | CgroupSetup::Hybrid)
        );
    if !plain {
        return Ok(false);
    }
    let Ok(config) = container.spec() else {
        return Ok(false);
    };
    let has_poststop = config
        .hooks
        .as_ref()
        .and_then(|h| h.poststop().as_ref())
        .is_some_and(|hooks| !hooks.is_empty());
    if has_poststop {
        return Ok(false);
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").context("reading cgroups")?;
    let Ok(dirs) = cgroup_v1::container_dirs(&mountinfo, &proc_cgroup, &config.cgroup_path) else {
        return Ok(false);
    };
    cgroup_v1::remove_dirs(&dirs)?;
    std::fs::remove_dir_all(&container.root)
        .with_context(|| format!("removing {}", container.root.display()))?;
    Ok(true)
}

/// When the pod's sandbox goes, so does the pod: its cached groups are removed (best effort;
/// never fails the delete).
fn forget_pod_groups(root: &Path, container: &Container) {
    let annotations = crate::spec_stage::identify::state_annotations(container);
    if annotations.is_empty() {
        return;
    }
    // Configured annotation keys take part in identification; delete must work without a
    // readable config, so fall back to the built-in keys.
    let overrides = crate::config::load()
        .map(|(config, _)| config.annotations)
        .unwrap_or_default();
    match crate::spec_stage::identify::identify(&annotations, container.id(), &overrides) {
        Ok(crate::spec_stage::identify::Identity::Sandbox {
            pod: Some(crate::podgroups::PodRef { uid: Some(uid), .. }),
        }) => crate::podgroups::cache::remove_entry(root, &uid),
        Ok(_) => {}
        Err(err) => tracing::debug!(%err, "delete: not forgetting pod groups"),
    }
}
