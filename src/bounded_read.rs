//! Reading a file that input names (a bundle's config.json, an exec process file, an image's
//! /etc/passwd) without being made to wait or to allocate without bound: it is opened without
//! blocking (a FIFO would otherwise wait for a writer for ever), must be a regular file (not a
//! FIFO, device or directory), and is read only up to a limit.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` for reading without blocking; `Ok(None)` when it does not exist.
pub fn open(path: &Path) -> std::io::Result<Option<File>> {
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads an opened file whole if it is a regular file of at most `limit` bytes.
pub fn read_file(file: File, limit: u64) -> std::io::Result<Vec<u8>> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > limit {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the {limit} read",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow after the check: never past the limit.
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`open`] and [`read_file`]: `Ok(None)` when the file does not exist.
pub fn read(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    match open(path)? {
        Some(file) => read_file(file, limit).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read(&fifo, 10).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(read(Path::new("/dev/zero"), 10).is_err());
        assert!(read(dir.path(), 10).is_err());
        assert_eq!(read(&dir.path().join("missing"), 10).unwrap(), None);
        let file = dir.path().join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read(&file, 10).unwrap().unwrap(), b"0123456789");
        assert!(read(&file, 9).is_err());
    }
}
