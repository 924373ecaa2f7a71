//! CVE-2019-5736 protection: the process that enters a container must not run from a file the
//! container could open for writing through `/proc/<pid>/exe`.
//!
//! Only `create`, `run` and `exec` put one of our processes inside a container, so only they
//! re-execute themselves from a sealed image (decided by the parse that dispatches,
//! `cli::Command::enters_container`); `start`, `state`, `kill`, `delete` stay on the host and
//! pay nothing. The preferred seal is runc 1.2's: a detached, read-only, lower-only overlayfs
//! mount over the binary's directory (no copy, no memory; the container cannot unwrap it to the
//! underlying file). Where overlayfs or the new mount API is unavailable, the binary is copied
//! into a sealed memfd, as youki does.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const SELF_EXE: &str = "/proc/self/exe";

/// An empty directory used as overlayfs' second lower layer (a lower-only overlay needs two).
const EMPTY_LOWER_DIR: &str = "/run/strict-supplementalgroups-container-runtime.exeseal";

// Not in every libc release yet.
const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MFD_EXEC: libc::c_uint = 0x10;
const BASE_SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// How the running image is protected, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealState {
    /// Running from a read-only overlayfs mount.
    Overlay,
    /// Running from a sealed memfd copy.
    Memfd,
    /// Running from a writable file: not protected.
    Unsealed,
}

/// Reports how `/proc/self/exe` is protected right now.
pub fn current_state() -> SealState {
    if let Ok(exe) = File::open(SELF_EXE) {
        // SAFETY: F_GET_SEALS takes no argument and only reads the fd's seal set.
        let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
        if seals >= 0 && seals & BASE_SEALS == BASE_SEALS {
            return SealState::Memfd;
        }
    }
    match nix::sys::statfs::statfs(SELF_EXE) {
        Ok(fs)
            if fs.filesystem_type().0 == libc::OVERLAYFS_SUPER_MAGIC
                && nix::sys::statvfs::statvfs(SELF_EXE)
                    .map(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
                    .unwrap_or(false) =>
        {
            SealState::Overlay
        }
        _ => SealState::Unsealed,
    }
}

/// Re-executes this process from a sealed image unless it already runs from one. Returns only
/// when already sealed; on success of the re-exec it never returns.
pub fn ensure_sealed() -> Result<()> {
    if current_state() != SealState::Unsealed {
        return Ok(());
    }
    let sealed = match sealed_overlay_exe() {
        Ok(fd) => fd,
        Err(overlay_err) => sealed_memfd_exe().with_context(|| {
            format!("overlayfs seal failed ({overlay_err:#}), and so did the memfd copy")
        })?,
    };
    reexec(&sealed)
}

fn sealed_overlay_exe() -> Result<OwnedFd> {
    let real = std::fs::read_link(SELF_EXE).context("reading /proc/self/exe")?;
    let (dir, name) = match (real.parent(), real.file_name()) {
        (Some(dir), Some(name)) => (dir.to_path_buf(), PathBuf::from(name)),
        _ => bail!("{} has no directory", real.display()),
    };
    if !real.is_file() {
        // e.g. "… (deleted)" after an upgrade replaced the binary: only a copy can help.
        bail!("{} is not a regular file on disk", real.display());
    }
    std::fs::create_dir_all(EMPTY_LOWER_DIR)
        .with_context(|| format!("creating {EMPTY_LOWER_DIR}"))?;

    // SAFETY: plain syscalls on valid, NUL-terminated strings; every returned fd is owned.
    unsafe {
        let fs = cstr(OsStr::new("overlay"))?;
        let ctx = libc::syscall(libc::SYS_fsopen, fs.as_ptr(), FSOPEN_CLOEXEC);
        if ctx < 0 {
            return Err(std::io::Error::last_os_error()).context("fsopen(overlay)");
        }
        let ctx = OwnedFd::from_raw_fd(ctx as i32);
        // The binary's directory is the top layer so nothing in the empty dir can mask it.
        let lower = format!(
            "{}:{}",
            escape_lowerdir(&dir),
            escape_lowerdir(Path::new(EMPTY_LOWER_DIR))
        );
        fsconfig_string(&ctx, "lowerdir", &lower)?;
        // Opportunistic: avoids dmesg noise when layers are on different filesystems.
        let _ = fsconfig_string(&ctx, "xino", "off");
        if libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        ) < 0
        {
            return Err(std::io::Error::last_os_error()).context("fsconfig(create overlay)");
        }
        let mnt = libc::syscall(
            libc::SYS_fsmount,
            ctx.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID,
        );
        if mnt < 0 {
            return Err(std::io::Error::last_os_error()).context("fsmount(overlay)");
        }
        let mnt = OwnedFd::from_raw_fd(mnt as i32);
        let name = cstr(name.as_os_str())?;
        let exe = libc::openat(
            mnt.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        );
        if exe < 0 {
            return Err(std::io::Error::last_os_error()).context("opening binary in overlay");
        }
        Ok(OwnedFd::from_raw_fd(exe))
    }
}

unsafe fn fsconfig_string(ctx: &OwnedFd, key: &str, value: &str) -> Result<()> {
    let k = cstr(OsStr::new(key))?;
    let v = cstr(OsStr::new(value))?;
    // SAFETY: caller passes a live fs context; strings outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_SET_STRING,
            k.as_ptr(),
            v.as_ptr(),
            0,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("fsconfig {key}"));
    }
    Ok(())
}

fn escape_lowerdir(path: &Path) -> String {
    path.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
}

fn sealed_memfd_exe() -> Result<OwnedFd> {
    let name = cstr(OsStr::new("strict-supplementalgroups-sealed"))?;
    // SAFETY: memfd_create with a valid name; the fd is immediately owned.
    let fd = unsafe {
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        let mut fd = libc::memfd_create(name.as_ptr(), flags | MFD_EXEC);
        if fd < 0 {
            // Kernels before 6.3 reject MFD_EXEC; memfds are executable there by default.
            fd = libc::memfd_create(name.as_ptr(), flags);
        }
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("memfd_create");
        }
        OwnedFd::from_raw_fd(fd)
    };
    let mut dst = File::from(fd);
    let mut src = File::open(SELF_EXE).context("opening /proc/self/exe")?;
    std::io::copy(&mut src, &mut dst).context("copying the binary into a memfd")?;
    // SAFETY: fcntl on an fd we own; F_SEAL_EXEC is optional (Linux 6.3+).
    unsafe {
        libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_EXEC);
        if libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, BASE_SEALS) < 0 {
            return Err(std::io::Error::last_os_error()).context("sealing the memfd");
        }
    }
    Ok(OwnedFd::from(dst))
}

fn cstr(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).with_context(|| format!("{s:?} contains a NUL byte"))
}

fn reexec(exe: &OwnedFd) -> Result<()> {
    let argv: Vec<CString> = std::env::args_os()
        .map(|a| cstr(&a))
        .collect::<Result<_>>()?;
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstr(&kv)
        })
        .collect::<Result<_>>()?;
    let empty = cstr(OsStr::new(""))?;
    let err = nix::unistd::execveat(
        Some(exe.as_raw_fd()),
        empty.as_c_str(),
        &argv,
        &envp,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    );
    match err {
        Err(e) => Err(e).context("re-executing from the sealed binary"),
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_escaping() {
        assert_eq!(escape_lowerdir(Path::new("/a:b\\c")), "/a\\:b\\\\c");
    }
}
