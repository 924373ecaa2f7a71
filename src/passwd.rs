//! `getpwuid_r` without NSS.
//!
//! libcontainer looks up the container user's home directory with `getpwuid_r` *inside* the
//! container, after pivot_root, when the spec sets no `HOME` (the CRI never does). glibc's
//! version reads the image's `/etc/nsswitch.conf` and may `dlopen` whatever `libnss_*.so.2` the
//! image names — code from the image, loaded into the runtime's own process — and in a
//! statically linked binary such a `dlopen` of a foreign glibc's module is undefined behaviour.
//! Like runc, which parses `/etc/passwd` itself, this definition reads only `/etc/passwd` (with
//! the library's `etc_passwd`: a regular file only, never blocking, bounded).
//! Being defined in the executable, it takes precedence over the C library's for every caller
//! in this binary (`nix::unistd::User::from_uid` included).

use std::ffi::{c_char, c_int};
use std::path::Path;

use strict_supplementalgroups::etc_passwd::{find_by_uid, read_bounded};

/// Copies `fields` NUL-terminated into `buf`; returns the start of each, or None if too small.
fn pack(buf: &mut [u8], fields: &[&[u8]]) -> Option<Vec<usize>> {
    let mut offsets = Vec::with_capacity(fields.len());
    let mut at: usize = 0;
    for field in fields {
        if field.contains(&0) {
            return None;
        }
        let end = at.checked_add(field.len())?.checked_add(1)?;
        let dst = buf.get_mut(at..end)?;
        dst[..field.len()].copy_from_slice(field);
        dst[field.len()] = 0;
        offsets.push(at);
        at = end;
    }
    Some(offsets)
}

/// # Safety
/// Called by C code with the `getpwuid_r(3)` contract: `pwd`, `result` valid for writes,
/// `buf` valid for `buflen` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpwuid_r(
    uid: libc::uid_t,
    pwd: *mut libc::passwd,
    buf: *mut c_char,
    buflen: libc::size_t,
    result: *mut *mut libc::passwd,
) -> c_int {
    if result.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: result is non-null and, per the contract, writable.
    unsafe { *result = std::ptr::null_mut() };
    if pwd.is_null() || buf.is_null() {
        return libc::EINVAL;
    }
    // No readable /etc/passwd (missing, not a regular file, too big): "not found", as glibc
    // reports a missing file.
    let Ok(Some(text)) = read_bounded(Path::new("/etc/passwd")) else {
        return 0;
    };
    let Some(entry) = find_by_uid(&text, uid) else {
        return 0;
    };
    // SAFETY: buf is valid for buflen bytes per the contract.
    let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), buflen) };
    let Some(at) = pack(
        out,
        &[
            entry.name,
            entry.passwd,
            entry.gecos,
            entry.dir,
            entry.shell,
        ],
    ) else {
        return libc::ERANGE;
    };
    let field = |i: usize| buf.wrapping_add(at[i]);
    // SAFETY: pwd is non-null and writable; every pointer points into buf.
    unsafe {
        (*pwd).pw_name = field(0);
        (*pwd).pw_passwd = field(1);
        (*pwd).pw_uid = entry.uid;
        (*pwd).pw_gid = entry.gid;
        (*pwd).pw_gecos = field(2);
        (*pwd).pw_dir = field(3);
        (*pwd).pw_shell = field(4);
        *result = pwd;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_or_reports_erange() {
        let mut buf = [0u8; 16];
        let at = pack(&mut buf, &[b"ab", b"", b"cde"]).unwrap();
        assert_eq!(at, vec![0, 3, 4]);
        assert_eq!(&buf[..8], b"ab\0\0cde\0");
        assert!(pack(&mut [0u8; 3], &[b"abc"]).is_none());
        assert!(pack(&mut [0u8; 8], &[b"a\0b"]).is_none());
    }

    #[test]
    fn root_lookup_and_erange() {
        // root is in every /etc/passwd this runs on.
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(0))
            .unwrap()
            .unwrap();
        assert_eq!(user.name, "root");
        let mut buf = [0 as c_char; 4];
        let mut pwd = std::mem::MaybeUninit::<libc::passwd>::zeroed();
        let mut result = std::ptr::null_mut();
        // SAFETY: valid pointers and length.
        let rc = unsafe { getpwuid_r(0, pwd.as_mut_ptr(), buf.as_mut_ptr(), 4, &mut result) };
        assert_eq!(rc, libc::ERANGE);
        assert!(result.is_null());
    }
}
