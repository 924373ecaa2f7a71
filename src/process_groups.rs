//! The runtime's own supplementary groups, cleared before it starts a container process.
//!
//! libcontainer calls `setgroups()` only when `additionalGids` is not empty, so with an empty
//! list a container process would keep the groups of whoever ran the runtime (a shim started
//! from a root shell hands over root's groups). runc always calls `setgroups()`. Clearing the
//! runtime's own list first, in the process that forks the container's, makes "empty" mean
//! empty for every identity and command; a non-empty list is then set by libcontainer.

use anyhow::{Context, Result};

/// Clears this process's supplementary groups where the kernel lets it, as runc decides:
/// not when running without root (rootless, where the groups belong to the caller's user
/// namespace and cannot be changed), and not where `/proc/self/setgroups` says `deny`.
pub fn clear_inherited_groups() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    if std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny") {
        return Ok(());
    }
    nix::unistd::setgroups(&[]).context(
        "clearing the runtime's own supplementary groups, so that the container gets exactly \
         the groups of its spec",
    )
}
