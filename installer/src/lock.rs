//! One installer at a time per node: two installer pods can overlap on a node (a rolling update
//! with maxSurge, a pod being replaced while the old one still stops), and two runs interleaving
//! their edits, restarts and checks could each roll back the other. An exclusive `flock` on a
//! file in the host's state directory serializes them; the kernel releases it when the holder
//! exits, however it exits, so a crashed installer never leaves the node locked.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::hostfs::Host;

pub const LOCK_FILE: &str = "lock";

pub struct HostLock {
    _flock: Flock<std::fs::File>,
    /// Directories made for the lock file (the state directory and its missing parents).
    pub created: Vec<std::path::PathBuf>,
}

/// Takes the node's installer lock, waiting for another holder to finish.
pub fn acquire(host: &Host, state_dir: &Path) -> Result<HostLock> {
    let mut waited = false;
    let mut created = Vec::new();
    loop {
        created.extend(host.create_dir_all(state_dir)?);
        let path = host.path(&state_dir.join(LOCK_FILE))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                if !waited {
                    println!(
                        "another installer is working on this node (it holds {}); waiting for it",
                        state_dir.join(LOCK_FILE).display()
                    );
                    waited = true;
                }
                Flock::lock(file, FlockArg::LockExclusive)
                    .map_err(|(_, err)| err)
                    .with_context(|| format!("locking {}", path.display()))?
            }
            Err((_, err)) => {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
        };
        // An uninstall removes the lock file as it finishes: a lock on that old inode guards
        // nothing, so take the file that is there now.
        let held = lock.metadata().context("inspecting the lock")?;
        let current = std::fs::symlink_metadata(&path).ok();
        if current.is_some_and(|m| m.dev() == held.dev() && m.ino() == held.ino()) {
            if waited {
                println!("the other installer is done; going on");
            }
            return Ok(HostLock {
                _flock: lock,
                created,
            });
        }
    }
}

impl HostLock {
    /// After a run that left no install record (it failed before changing anything, or there
    /// was nothing to do): the lock file and the directories made for it go, so that a refused
    /// install leaves no trace.
    pub fn release_unused(self, host: &Host, state_dir: &Path) -> Result<()> {
        if host.exists(&crate::record::Record::path(state_dir)) {
            return Ok(());
        }
        remove(host, state_dir)?;
        for dir in self.created.iter().rev() {
            host.remove_dir_if_empty(dir)?;
        }
        Ok(())
    }
}

/// Removes the lock file (uninstall, as its last step, while holding the lock).
pub fn remove(host: &Host, state_dir: &Path) -> Result<()> {
    host.remove_file(&state_dir.join(LOCK_FILE))
}
