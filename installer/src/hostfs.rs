//! The node's filesystem, seen through `--host-root`. Paths in and out are host paths; files are
//! replaced atomically (temp file, fsync, rename, fsync of the directory) and never through a
//! symlink, because a symlink's target means something else inside the installer's container.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Owner and mode a replaced file keeps.
#[derive(Clone, Copy, Debug)]
pub struct FileMode {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn new(root: &Path) -> Result<Self> {
        let meta = fs::metadata(root)
            .with_context(|| format!("host root {} is not accessible", root.display()))?;
        if !meta.is_dir() {
            bail!("host root {} is not a directory", root.display());
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the host path `host_path` is in this process's view.
    pub fn path(&self, host_path: &Path) -> Result<PathBuf> {
        let relative = check_host_path(host_path)?;
        Ok(self.root.join(relative))
    }

    /// lstat; `None` when absent; an error for a symlink.
    pub fn metadata(&self, host_path: &Path) -> Result<Option<fs::Metadata>> {
        let path = self.path(host_path)?;
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => bail!(
                "{} is a symlink; refusing to follow it (name the real file instead)",
                host_path.display()
            ),
            Ok(meta) => Ok(Some(meta)),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("inspecting {}", host_path.display())),
        }
    }

    pub fn exists(&self, host_path: &Path) -> bool {
        self.path(host_path)
            .map(|p| fs::symlink_metadata(p).is_ok())
            .unwrap_or(false)
    }

    /// The file's bytes, `None` when absent.
    pub fn read(&self, host_path: &Path) -> Result<Option<Vec<u8>>> {
        let Some(meta) = self.metadata(host_path)? else {
            return Ok(None);
        };
        if !meta.is_file() {
            bail!("{} is not a regular file", host_path.display());
        }
        let path = self.path(host_path)?;
        fs::read(&path)
            .map(Some)
            .with_context(|| format!("reading {}", host_path.display()))
    }

    pub fn mode_of(&self, host_path: &Path) -> Result<Option<FileMode>> {
        Ok(self.metadata(host_path)?.map(|m| FileMode {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        }))
    }

    /// Replaces (or creates) `host_path` with `bytes`. The parent directory must exist.
    pub fn write_atomic(&self, host_path: &Path, bytes: &[u8], mode: FileMode) -> Result<()> {
        let target = self.path(host_path)?;
        if self.metadata(host_path)?.is_some_and(|m| m.is_dir()) {
            bail!("{} is a directory", host_path.display());
        }
        let (dir, name) = split(&target)?;
        let tmp = dir.join(format!(".{name}.strict-supplementalgroups-tmp"));
        let result = (|| -> Result<()> {
            match fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(err).context("removing a stale temporary file"),
            }
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .context("creating a temporary file")?;
            file.write_all(bytes).context("writing")?;
            // Ownership first: chown clears the set-id bits that set_permissions then restores.
            std::os::unix::fs::fchown(&file, Some(mode.uid), Some(mode.gid))
                .context("setting the owner")?;
            file.set_permissions(fs::Permissions::from_mode(mode.mode))
                .context("setting the mode")?;
            file.sync_all().context("fsync")?;
            drop(file);
            fs::rename(&tmp, &target).context("renaming into place")?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.with_context(|| format!("writing {}", host_path.display()))
    }

    pub fn remove_file(&self, host_path: &Path) -> Result<()> {
        let path = self.path(host_path)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            Err(err) => {
                return Err(err).with_context(|| format!("removing {}", host_path.display()));
            }
        }
        if let Ok((dir, _)) = split(&path) {
            sync_dir(dir).with_context(|| format!("removing {}", host_path.display()))?;
        }
        Ok(())
    }

    /// Creates `host_path` and its missing parents (mode 0755); returns the host paths it
    /// created, outermost first.
    pub fn create_dir_all(&self, host_path: &Path) -> Result<Vec<PathBuf>> {
        let relative = check_host_path(host_path)?;
        let mut created = Vec::new();
        let mut host = PathBuf::from("/");
        let mut here = self.root.clone();
        for component in relative.components() {
            host.push(component);
            here.push(component);
            match fs::symlink_metadata(&here) {
                Ok(meta) if meta.is_dir() => continue,
                // A symlinked directory (e.g. /usr/local -> /opt/local) cannot be followed
                // safely from inside a container.
                Ok(meta) if meta.file_type().is_symlink() => bail!(
                    "{} is a symlink; refusing to follow it (choose a path without symlinks)",
                    host.display()
                ),
                Ok(_) => bail!("{} exists and is not a directory", host.display()),
                Err(err) if err.kind() == ErrorKind::NotFound => {
                    fs::create_dir(&here)
                        .with_context(|| format!("creating directory {}", host.display()))?;
                    fs::set_permissions(&here, fs::Permissions::from_mode(0o755))
                        .with_context(|| format!("setting the mode of {}", host.display()))?;
                    created.push(host.clone());
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("inspecting {}", host.display()));
                }
            }
        }
        Ok(created)
    }

    /// Removes the directory if it exists and is empty; says whether it did.
    pub fn remove_dir_if_empty(&self, host_path: &Path) -> Result<bool> {
        let path = self.path(host_path)?;
        match fs::read_dir(&path) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Ok(false);
                }
            }
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(false),
            Err(err) => {
                return Err(err).with_context(|| format!("reading {}", host_path.display()));
            }
        }
        fs::remove_dir(&path).with_context(|| format!("removing {}", host_path.display()))?;
        Ok(true)
    }

    /// Names of the regular files in a directory, sorted; empty when it does not exist.
    pub fn list_files(&self, host_path: &Path) -> Result<Vec<String>> {
        let path = self.path(host_path)?;
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => {
                return Err(err).with_context(|| format!("reading {}", host_path.display()));
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", host_path.display()))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }
}

/// A host path must be absolute and plain: no `..`, no `.`.
pub fn check_host_path(host_path: &Path) -> Result<&Path> {
    if !host_path.is_absolute() {
        bail!("{} is not an absolute path", host_path.display());
    }
    let relative = host_path.strip_prefix("/").unwrap_or(host_path);
    for component in relative.components() {
        if !matches!(component, Component::Normal(_)) {
            bail!("{} must not contain `.` or `..`", host_path.display());
        }
    }
    if relative.as_os_str().is_empty() {
        bail!("{} names the root directory", host_path.display());
    }
    Ok(relative)
}

fn split(path: &Path) -> Result<(&Path, String)> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", path.display()))?;
    Ok((dir, name.to_owned()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync of {}", dir.display()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_are_plain_and_absolute() {
        assert!(check_host_path(Path::new("etc/containerd")).is_err());
        assert!(check_host_path(Path::new("/etc/../root")).is_err());
        assert!(check_host_path(Path::new("/")).is_err());
        assert_eq!(
            check_host_path(Path::new("/etc/containerd/config.toml")).unwrap(),
            Path::new("etc/containerd/config.toml")
        );
    }

    #[test]
    fn sha256_of_nothing() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn write_keeps_mode_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path()).unwrap();
        let mode = FileMode {
            mode: 0o640,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        };
        let created = host.create_dir_all(Path::new("/etc/x")).unwrap();
        assert_eq!(
            created,
            vec![PathBuf::from("/etc"), PathBuf::from("/etc/x")]
        );
        host.write_atomic(Path::new("/etc/x/a"), b"one", mode)
            .unwrap();
        host.write_atomic(Path::new("/etc/x/a"), b"two", mode)
            .unwrap();
        assert_eq!(host.read(Path::new("/etc/x/a")).unwrap().unwrap(), b"two");
        assert_eq!(
            host.mode_of(Path::new("/etc/x/a")).unwrap().unwrap().mode,
            0o640
        );
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/x/link")).unwrap();
        assert!(host.read(Path::new("/etc/x/link")).is_err());
        assert!(
            host.write_atomic(Path::new("/etc/x/link"), b"x", mode)
                .is_err()
        );
        assert!(host.create_dir_all(Path::new("/etc/x/link/sub")).is_err());
        assert_eq!(host.list_files(Path::new("/etc/x")).unwrap(), vec!["a"]);
    }
}
