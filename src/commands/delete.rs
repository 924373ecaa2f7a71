use std::path::Path;

use anyhow::{Context, Result};
use libcgroups::common::CgroupSetup;
use libcontainer::container::{Container, ContainerStatus};
use liboci_cli::Delete;

use crate::cgroup_v1;
use crate::config::AnnotationOverrides;
use crate::container_state::{self, container_dir, load_container};
use crate::pod::{Identity, PodRef};
use crate::podgroups::cache;
use crate::record::Record;
use crate::spec_stage::identify::identify;

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
/// never fails the delete). Who the container is comes from the record create kept (create
/// identified it with the configured annotation keys), so delete reads no configuration; a
/// container created by a build that kept no record is identified by the built-in keys.
fn forget_pod_groups(root: &Path, container: &Container) {
    let identity = match Record::load(&container.root) {
        Ok(Some(record)) => record.identity,
        Ok(None) => {
            let annotations = container_state::annotations(container);
            if annotations.is_empty() {
                return;
            }
            match identify(
                &annotations,
                container.id(),
                &AnnotationOverrides::default(),
            ) {
                Ok(identity) => identity,
                Err(err) => {
                    tracing::debug!(%err, "delete: not forgetting pod groups");
                    return;
                }
            }
        }
        Err(err) => {
            tracing::debug!(error = %format!("{err:#}"), "delete: not forgetting pod groups");
            return;
        }
    };
    if let Identity::Sandbox {
        pod: Some(PodRef { uid: Some(uid), .. }),
    } = identity
    {
        cache::remove_entry(root, &uid);
    }
}
