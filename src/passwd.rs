//! `getpwuid_r` without NSS.
//!
//! libcontainer looks up the container user's home directory with `getpwuid_r` *inside* the
//! container, after pivot_root, when the spec sets no `HOME` (the CRI never does). glibc's
//! version reads the image's `/etc/nsswitch.conf` and may `dlopen` whatever `libnss_*.so.2` the
//! image names — code from the image, loaded into the runtime's own process — and in a
//! statically linked binary such a `dlopen` of a foreign glibc's module is undefined behaviour.
//! Like runc, which parses `/etc/passwd` itself, this definition reads only `/etc/passwd`.
//! Being defined in the executable, it takes precedence over the C library's for every caller
//! in this binary (`nix::unistd::User::from_uid` included).

use std::ffi::{c_char, c_int};
use std::io::Read;

/// The most of /etc/passwd that is read: enough for any real image, bounded for hostile ones.
const MAX_PASSWD_BYTES: u64 = 4 << 20;

/// One `/etc/passwd` entry, borrowed from the file's text.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    name: &'a [u8],
    passwd: &'a [u8],
    uid: u32,
    gid: u32,
    gecos: &'a [u8],
    dir: &'a [u8],
    shell: &'a [u8],
}

/// Finds the first well-formed entry for `uid`; malformed lines are skipped, as glibc does.
fn find_entry(text: &[u8], uid: u32) -> Option<Entry<'_>> {
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

fn read_passwd() -> Option<Vec<u8>> {
    let file = std::fs::File::open("/etc/passwd").ok()?;
    let mut text = Vec::new();
    file.take(MAX_PASSWD_BYTES).read_to_end(&mut text).ok()?;
    Some(text)
}

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
    let Some(text) = read_passwd() else {
        // No /etc/passwd: "not found", as glibc reports it.
        return 0;
    };
    let Some(entry) = find_entry(&text, uid) else {
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

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
        broken line\n\
        +nis:x:7:7::/nis:\n\
        bad:x:notanumber:1::/bad:/bin/false\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        alice2:x:1000:1000::/second:/bin/sh\n\
        noshell:x:5:5::/ns\n";

    #[test]
    fn finds_first_well_formed_entry() {
        let e = find_entry(PASSWD, 1000).unwrap();
        assert_eq!(
            (e.name, e.dir, e.gid),
            (&b"alice"[..], &b"/home/alice"[..], 1000)
        );
        assert!(
            find_entry(PASSWD, 7).is_none(),
            "NIS compat lines are not entries"
        );
        assert!(find_entry(PASSWD, 4242).is_none());
        assert_eq!(find_entry(PASSWD, 5).unwrap().shell, b"");
    }

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
