use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::OnceLock;

use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle};
use procfs::ProcError;
use procfs::process::MountInfo;

use super::ControllerType;
use super::controller_type::CONTROLLERS;

#[derive(thiserror::Error, Debug)]
pub enum V1MountPointError {
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("failed to get mountinfo: {0}")]
    MountInfo(ProcError),
    #[error("could not find mountpoint for {subsystem}")]
    NotFound { subsystem: ControllerType },
    #[error(transparent)]
    Pathrs(#[from] pathrs::error::Error),
}

/// List all cgroup v1 subsystem mount points on the system. This can include unsupported
/// subsystems, comounted controllers and named hierarchies.
pub fn list_subsystem_mount_points() -> Result<Vec<PathBuf>, V1MountPointError> {
    Ok(cgroup_v1_mounts()?
        .into_iter()
        .map(|m| m.mount_point)
        .collect())
}

/// The cgroup v1 mounts of `/proc/self/mountinfo`, in its order.
// Modified for strict-supplementalgroups-container-runtime (not in libcgroups 0.7.0):
// - only the lines whose filesystem type is `cgroup` are parsed into a `MountInfo` (a full parse
//   costs thousands of instructions per line, and a Kubernetes node has hundreds to thousands
//   of mounts); the others are told apart by the ` - cgroup ` that starts the part after the
//   separator of a cgroup v1 line (mount points and options escape spaces, so that text cannot
//   appear elsewhere in a line);
// - the result of the first successful read is kept for the life of the process (and of the
//   processes forked from it after that read), as runc keeps its cgroup mountinfo: the kernel
//   spends about a microsecond per mount generating mountinfo on every read, and container
//   creation otherwise read it once per lookup (the manager, cpuset's parent walk, the cgroup
//   mounts of the container). The cgroup v1 hierarchies a runtime process sees do not change
//   while it runs.
fn cgroup_v1_mounts() -> Result<Vec<MountInfo>, V1MountPointError> {
    static CGROUP_V1_MOUNTS: OnceLock<Vec<MountInfo>> = OnceLock::new();
    if let Some(mounts) = CGROUP_V1_MOUNTS.get() {
        return Ok(mounts.clone());
    }
    let reader = BufReader::new(ProcfsHandle::new()?.open(
        ProcfsBase::ProcSelf,
        "mountinfo",
        OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC,
    )?);
    let mut mounts = Vec::new();
    for line in reader.lines() {
        let line = line?;
        if !line.contains(" - cgroup ") {
            continue;
        }
        let m = MountInfo::from_line(&line).map_err(V1MountPointError::MountInfo)?;
        if m.fs_type == "cgroup" {
            mounts.push(m);
        }
    }
    Ok(CGROUP_V1_MOUNTS.get_or_init(|| mounts).clone())
}

/// List the mount points of all currently supported cgroup subsystems.
pub fn list_supported_mount_points() -> Result<HashMap<ControllerType, PathBuf>, V1MountPointError>
{
    let mut mount_paths = HashMap::with_capacity(CONTROLLERS.len());
    let mounts = MountTable::read()?;

    for controller in CONTROLLERS {
        if let Ok(mount_point) = mounts.subsystem_mount_point(controller) {
            mount_paths.insert(controller.to_owned(), mount_point);
        }
    }

    Ok(mount_paths)
}

pub fn get_subsystem_mount_point(subsystem: &ControllerType) -> Result<PathBuf, V1MountPointError> {
    MountTable::read()?.subsystem_mount_point(subsystem)
}

/// Whether `m` is the cgroup v1 mount of `subsystem`.
fn is_subsystem_mount(m: &MountInfo, subsystem: &ControllerType) -> bool {
    if m.fs_type != "cgroup" {
        return false;
    }
    let subsystem_name = subsystem.to_string();
    // Some systems mount net_prio and net_cls in the same directory
    // other systems mount them in their own directories. This
    // should handle both cases.
    match subsystem_name.as_str() {
        "net_cls" => ["net_cls,net_prio", "net_prio,net_cls", "net_cls"]
            .iter()
            .any(|s| m.mount_point.ends_with(s)),
        "net_prio" => ["net_cls,net_prio", "net_prio,net_cls", "net_prio"]
            .iter()
            .any(|s| m.mount_point.ends_with(s)),
        "cpu" => ["cpu,cpuacct", "cpu"]
            .iter()
            .any(|s| m.mount_point.ends_with(s)),
        "cpuacct" => ["cpu,cpuacct", "cpuacct"]
            .iter()
            .any(|s| m.mount_point.ends_with(s)),
        _ => m.mount_point.ends_with(&subsystem_name),
    }
}

/// The cgroup v1 mounts of `/proc/self/mountinfo`, read once, for looking up the mount points
/// of several subsystems (a v1 cgroup manager needs up to twelve).
// Modified for strict-supplementalgroups-container-runtime (not in libcgroups 0.7.0): reading
// mountinfo once per cgroup manager instead of once per subsystem.
pub(crate) struct MountTable {
    mounts: Vec<MountInfo>,
}

impl MountTable {
    pub(crate) fn read() -> Result<Self, V1MountPointError> {
        Ok(Self {
            mounts: cgroup_v1_mounts()?,
        })
    }

    /// The first mount of `subsystem`, as `get_subsystem_mount_point` always chose it.
    pub(crate) fn subsystem_mount_point(
        &self,
        subsystem: &ControllerType,
    ) -> Result<PathBuf, V1MountPointError> {
        self.mounts
            .iter()
            .find(|m| is_subsystem_mount(m, subsystem))
            .map(|m| m.mount_point.clone())
            .ok_or(V1MountPointError::NotFound {
                subsystem: *subsystem,
            })
    }
}
