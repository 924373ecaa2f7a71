//! Replacing a file so that readers see the old contents or the new, never a part: a new
//! temporary file beside the target (0600, never through a symlink), then a rename over it.
//! config.json, the group record and the pod-groups cache entries all go through here.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// Writes `contents` to a temporary file in `target`'s directory, lets `finish` adjust and
/// sync it as the caller needs (mode, owner, fsync), and renames it over `target`. The
/// temporary file is removed on any failure.
pub fn replace(
    target: &Path,
    contents: &[u8],
    finish: impl FnOnce(&File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let (tmp_path, mut tmp) = create_unique(dir, &stem)?;
    let written = tmp
        .write_all(contents)
        .and_then(|()| finish(&tmp))
        .and_then(|()| std::fs::rename(&tmp_path, target));
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(err).with_context(|| format!("writing {}", target.display()));
    }
    Ok(())
}

/// A new, uniquely named, owner-only file `.<stem>.<pid>.<nanos>.<seq>.tmp` in `dir`:
/// concurrent runtime processes (16 creates of one pod at once) each get their own.
pub fn create_unique(dir: &Path, stem: &str) -> Result<(PathBuf, File)> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    for _ in 0..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let candidate = dir.join(format!(".{stem}.{pid}.{nanos:x}.{seq}.tmp"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&candidate)
        {
            Ok(f) => return Ok((candidate, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating a temporary file in {}", dir.display()));
            }
        }
    }
    bail!("could not create a temporary file in {}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.json");
        std::fs::write(&target, b"old").unwrap();
        replace(&target, b"new", |f| f.sync_all()).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        let failed = replace(&target, b"never", |_| Err(std::io::Error::other("refused")));
        assert!(format!("{:#}", failed.unwrap_err()).contains("refused"));
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary files left: {names:?}");
    }
}
