//! One small module per subcommand; each is a thin adapter over libcontainer, as in youki.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libcgroups::common::AnyCgroupManager;
use libcontainer::container::Container;

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

/// The directory holding a container's state. Ids are validated first so that an id such as
/// `../x` can never name a path outside the root.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf> {
    validate_id(id)?;
    Ok(root.join(id))
}

/// runc's and libcontainer's rule: letters, digits, `_ + - .`, and not `.` or `..`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if id.is_empty() || id == "." || id == ".." || !ok_chars {
        bail!("invalid container id {id:?}");
    }
    Ok(())
}

pub fn load_container(root: &Path, id: &str) -> Result<Container> {
    let dir = container_dir(root, id)?;
    if !dir.exists() {
        bail!("container {id} does not exist");
    }
    Container::load(dir).with_context(|| format!("loading state of container {id}"))
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
/// shim and conmon always send) and a retry with the same id both work.
pub fn cleanup_failed_create(root: &Path, id: &str) {
    let Ok(dir) = container_dir(root, id) else {
        return;
    };
    if !dir.exists() {
        return;
    }
    if let Ok(mut container) = Container::load(dir.clone()) {
        if let Err(err) = container.delete(true) {
            tracing::debug!(%err, "cleanup after failed create: delete");
        }
    }
    if dir.exists() {
        if let Err(err) = fs::remove_dir_all(&dir) {
            tracing::warn!(%err, dir = %dir.display(), "cleanup after failed create");
        }
    }
}
