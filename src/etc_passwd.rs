//! Reading an image's `/etc/passwd`: the container's HOME lookup (the binary's `getpwuid_r`)
//! and the explanation of where an image's primary gid comes from. The file belongs to the
//! image, so it is hostile input: only a regular file is read (a FIFO or device would block or
//! never end), opened without blocking, and only up to a bound.

use std::path::Path;

/// The most of /etc/passwd that is read: enough for any real image, bounded for hostile ones.
const MAX_PASSWD_BYTES: u64 = 4 << 20;

/// One `/etc/passwd` entry, borrowed from the file's text.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub name: &'a [u8],
    pub passwd: &'a [u8],
    pub uid: u32,
    pub gid: u32,
    pub gecos: &'a [u8],
    pub dir: &'a [u8],
    pub shell: &'a [u8],
}

/// Finds the first well-formed entry for `uid`; malformed lines are skipped, as glibc does.
pub fn find_by_uid(text: &[u8], uid: u32) -> Option<Entry<'_>> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let mut f = line.split(|&b| b == b':');
        let name = f.next()?;
        let passwd = f.next()?;
        let entry_uid = std::str::from_utf8(f.next()?).ok()?.parse::<u32>().ok()?;
        let gid = std::str::from_utf8(f.next()?).ok()?.parse::<u32>().ok()?;
        let gecos = f.next()?;
        let dir = f.next()?;
        let shell = f.next().unwrap_or_default();
        (entry_uid == uid && !name.is_empty() && !name.starts_with(b"+") && !name.starts_with(b"-"))
            .then_some(Entry {
                name,
                passwd,
                uid: entry_uid,
                gid,
                gecos,
                dir,
                shell,
            })
    })
}

/// The file's bytes, `Ok(None)` when it does not exist; an error when it is not a regular file
/// or larger than the bound.
pub fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    crate::bounded_read::read(path, MAX_PASSWD_BYTES)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
}

/// The entry of `uid` in the /etc/passwd of the root filesystem at `rootfs`, resolved inside
/// it (a symlink in the image cannot lead to the host's files): `(name, gid)`.
pub fn entry_in_rootfs(rootfs: &Path, uid: u32) -> anyhow::Result<Option<(String, u32)>> {
    use anyhow::Context as _;
    let root = pathrs::Root::open(rootfs)
        .with_context(|| format!("opening the root filesystem {}", rootfs.display()))?;
    let file = match root.open_subpath(
        "etc/passwd",
        pathrs::flags::OpenFlags::O_RDONLY
            | pathrs::flags::OpenFlags::O_NONBLOCK
            | pathrs::flags::OpenFlags::O_NOCTTY
            | pathrs::flags::OpenFlags::O_CLOEXEC,
    ) {
        Ok(file) => file,
        Err(err) if err.kind() == pathrs::error::ErrorKind::OsError(Some(libc::ENOENT)) => {
            return Ok(None);
        }
        Err(err) => return Err(err).context("opening the image's /etc/passwd"),
    };
    let text = crate::bounded_read::read_file(file, MAX_PASSWD_BYTES)
        .context("reading the image's /etc/passwd")?;
    Ok(find_by_uid(&text, uid).map(|e| (String::from_utf8_lossy(e.name).into_owned(), e.gid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
        broken line\n\
        +nis:x:7:7::/nis:\n\
        bad:x:notanumber:1::/bad:/bin/false\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        alice2:x:1000:1000::/second:/bin/sh\n\
        noshell:x:5:5::/ns\n";

    #[test]
    fn finds_first_well_formed_entry() {
        let e = find_by_uid(PASSWD, 1000).unwrap();
        assert_eq!(
            (e.name, e.dir, e.gid),
            (&b"alice"[..], &b"/home/alice"[..], 1000)
        );
        assert!(
            find_by_uid(PASSWD, 7).is_none(),
            "NIS compat lines are not entries"
        );
        assert!(find_by_uid(PASSWD, 4242).is_none());
        assert_eq!(find_by_uid(PASSWD, 5).unwrap().shell, b"");
    }

    #[test]
    fn the_images_passwd_is_resolved_inside_its_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(
            rootfs.join("etc/passwd"),
            "alice:x:1000:50000::/home:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(
            entry_in_rootfs(&rootfs, 1000).unwrap(),
            Some(("alice".to_owned(), 50000))
        );
        assert_eq!(entry_in_rootfs(&rootfs, 7).unwrap(), None);
        // An absolute symlink is resolved inside the rootfs, never on the host.
        let outside = dir.path().join("host-passwd");
        std::fs::write(&outside, "secret:x:1000:4242::/:/bin/sh\n").unwrap();
        std::fs::remove_file(rootfs.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(&outside, rootfs.join("etc/passwd")).unwrap();
        assert_eq!(entry_in_rootfs(&rootfs, 1000).unwrap(), None);
        std::fs::remove_file(rootfs.join("etc/passwd")).unwrap();
        assert_eq!(entry_in_rootfs(&rootfs, 1000).unwrap(), None);
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("passwd");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_bounded(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(read_bounded(Path::new("/dev/zero")).is_err());
        assert_eq!(read_bounded(&dir.path().join("missing")).unwrap(), None);
        let file = dir.path().join("ok");
        std::fs::write(&file, PASSWD).unwrap();
        assert_eq!(read_bounded(&file).unwrap().unwrap(), PASSWD);
    }
}
