//! libcontainer's state of a container, read for this runtime: where it lives under the state
//! root, loading it, and the annotations create saw. An adapter: it knows libcontainer, not the
//! stage.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libcontainer::container::Container;

/// Where create claims ids, under the state root. `~` is not allowed in a container id, so no
/// container's state directory can be this one.
const CLAIMS_DIR: &str = "~create-claims";

/// The longest container id: a state directory is one file name (NAME_MAX).
pub const MAX_ID_LEN: usize = 255;

/// The directory holding a container's state. Ids are validated first so that an id such as
/// `../x` can never name a path outside the root.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf> {
    validate_id(id)?;
    Ok(root.join(id))
}

/// runc's and libcontainer's rule — letters, digits, `_ + - .`, and not `.` or `..` — and no
/// longer than a file name may be, so that an id that cannot become a state directory is
/// refused before anything (the group stage included) runs for it.
pub fn validate_id(id: &str) -> Result<()> {
    let ok_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if id.is_empty() || id == "." || id == ".." || !ok_chars {
        bail!("invalid container id {id:?}");
    }
    if id.len() > MAX_ID_LEN {
        bail!(
            "invalid container id: {} characters, at most {MAX_ID_LEN}",
            id.len()
        );
    }
    Ok(())
}

/// Loads an existing container's state.
pub fn load_container(root: &Path, id: &str) -> Result<Container> {
    let dir = container_dir(root, id)?;
    if !dir.exists() {
        bail!("container {id} does not exist");
    }
    Container::load(dir).with_context(|| format!("loading state of container {id}"))
}

/// The annotations libcontainer kept in a container's state: what create saw, whatever the
/// bundle says now.
pub fn annotations(container: &Container) -> BTreeMap<String, String> {
    container
        .state
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// An id claimed by one `create`/`run` for as long as this value lives: an exclusive `flock`
/// on `<root>/~create-claims/<id>`, taken before anything else happens for the id, with the
/// state directory checked absent under the lock. A second create of the same id meanwhile
/// fails at once, before its stage runs and without touching anything of the first; whatever
/// the holder finds at the id's state directory was made by the holder, so its cleanup after
/// a failure never removes another container. The lock file is removed when the claim ends
/// (the state directory exists by then, or was cleaned up).
pub struct IdClaim {
    lock: File,
    path: PathBuf,
}

impl IdClaim {
    pub fn acquire(root: &Path, id: &str) -> Result<Self> {
        let state_dir = container_dir(root, id)?;
        let dir = root.join(CLAIMS_DIR);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
        let path = dir.join(id);
        let lock = Self::lock_file(&path, id)?;
        if state_dir.exists() {
            bail!("container {id} already exists");
        }
        Ok(Self { lock, path })
    }
}

impl IdClaim {
    /// Opens and locks the claim file, retrying when the file was unlinked by a claim that
    /// ended between our open and our lock (the lock would be on a file nobody else sees).
    fn lock_file(path: &Path, id: &str) -> Result<File> {
        use std::os::unix::fs::MetadataExt;
        for _ in 0..8 {
            let lock = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    bail!("container {id} is being created by another process");
                }
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
            let held = lock.metadata()?;
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => return Ok(lock),
                _ => continue,
            }
        }
        bail!(
            "could not claim container id {id}: {} keeps changing",
            path.display()
        )
    }
}

impl Drop for IdClaim {
    fn drop(&mut self) {
        // Unlinked while still locked: a create that opened the old file fails its lock; one
        // that opens a new file finds the state directory (or nothing, after a cleanup).
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.lock;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_cannot_be_a_state_directory_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", "a b", "ü", &"x".repeat(256)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        for good in ["abc", "a.b_c+d-e", &"x".repeat(255)] {
            validate_id(good).unwrap();
        }
    }

    #[test]
    fn an_id_is_claimed_once_at_a_time_and_never_over_existing_state() {
        let root = tempfile::tempdir().unwrap();
        let claim = IdClaim::acquire(root.path(), "c1").unwrap();
        let err = IdClaim::acquire(root.path(), "c1")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("being created"), "{err}");
        IdClaim::acquire(root.path(), "c2").unwrap();
        drop(claim);
        let again = IdClaim::acquire(root.path(), "c1").unwrap();
        std::fs::create_dir(root.path().join("c1")).unwrap();
        drop(again);
        let err = IdClaim::acquire(root.path(), "c1")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("already exists"), "{err}");
        assert!(IdClaim::acquire(root.path(), "../c1").is_err());
    }
}
