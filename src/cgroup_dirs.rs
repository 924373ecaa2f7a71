//! A stopped container's cgroup directories — the same ones libcgroups created for it — found
//! with one read of /proc/self/mountinfo and removed without signalling anyone.
//!
//! Why not libcgroups' `remove()`: it SIGKILLs every process in the directories first, and
//! resolves an empty `cgroupsPath` to the *caller's* own cgroup (v1) or to the hierarchy's root
//! (v2). A delete through it killed an unrelated process sharing the container's path, and with
//! an empty path killed the runtime's own caller and itself. runc's delete of a container with
//! its own pid namespace signals nothing: its processes died with its init. So here only
//! directories that are the container's are removed — never an empty path or the root — and a
//! directory still holding processes is left in place and reported, like runc does.
//!
//! Why hand-made (the module also keeps `delete` cheap): libcgroups' v1 manager re-opens and
//! fully parses mountinfo and /proc/self/cgroup once per controller, most of a `delete`'s CPU
//! time on a v1 host (~0.3 ms; `just bench` measures delete). The directories are the ones
//! libcgroups uses: on cgroup v1 (and hybrid hosts, where libcgroups uses its v1 manager) each
//! controller's mount point is the first `cgroup` mount whose path ends with the controller's
//! name (with the same aliases for co-mounted `cpu,cpuacct` and `net_cls,net_prio`), the
//! controller must be one this process is a member of, and the container's path is joined
//! below it; on cgroup v2 it is the `cgroup2` mount joined with the path.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The cgroup layout of the host, as libcgroups reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 controllers (also hybrid hosts: libcgroups manages only the v1 hierarchies).
    V1,
    /// cgroup v2 only.
    V2,
}

/// libcgroups' v1 controllers, with the mount point names each may live under.
const CONTROLLERS: &[(&str, &[&str])] = &[
    ("cpu", &["cpu,cpuacct", "cpu"]),
    ("cpuacct", &["cpu,cpuacct", "cpuacct"]),
    ("cpuset", &["cpuset"]),
    ("devices", &["devices"]),
    ("hugetlb", &["hugetlb"]),
    ("memory", &["memory"]),
    ("pids", &["pids"]),
    ("perf_event", &["perf_event"]),
    ("blkio", &["blkio"]),
    (
        "net_prio",
        &["net_cls,net_prio", "net_prio,net_cls", "net_prio"],
    ),
    (
        "net_cls",
        &["net_cls,net_prio", "net_prio,net_cls", "net_cls"],
    ),
    ("freezer", &["freezer"]),
];

/// Mount points of filesystems of type `fs_type` (`cgroup` or `cgroup2`), in mountinfo order.
fn mount_points(mountinfo: &str, fs_type: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let this_type = after.split(' ').next()?;
            let mount_point = before.split(' ').nth(4)?;
            (this_type == fs_type).then(|| PathBuf::from(unescape(mount_point)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = (bytes[i] == b'\\')
            .then(|| bytes.get(i + 1..i + 4))
            .flatten()
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        if let Some(code) = code {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Controllers this process is a member of, per /proc/self/cgroup (`id:c1,c2:/path`).
fn member_controllers(proc_cgroup: &str) -> Vec<&str> {
    proc_cgroup
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .flat_map(|c| c.split(','))
        .filter(|c| !c.is_empty())
        .collect()
}

/// Whether a container's `cgroupsPath` can name a cgroup of its own: not empty (libcgroups
/// reads that as the caller's cgroup, or on v2 the root) and not the hierarchy's root.
pub fn names_a_cgroup_of_its_own(cgroup_path: &Path) -> bool {
    let relative = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    !cgroup_path.as_os_str().is_empty()
        && relative
            .components()
            .any(|c| !matches!(c, Component::CurDir))
}

/// The directories of `cgroup_path`, as libcgroups computes them for the container. Refuses a
/// path that is not a container's own: empty (libcgroups would take the caller's cgroup, or on
/// v2 the root), the hierarchy's root, or one that climbs out with `..`.
pub fn container_dirs(
    layout: Layout,
    mountinfo: &str,
    proc_cgroup: &str,
    cgroup_path: &Path,
) -> Result<Vec<PathBuf>> {
    if cgroup_path.as_os_str().is_empty() {
        bail!("the cgroup path is empty: it names the caller's cgroup, not the container's");
    }
    if cgroup_path.components().any(|c| c == Component::ParentDir) {
        bail!("cgroup path {} leaves its hierarchy", cgroup_path.display());
    }
    let relative = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    if relative.components().all(|c| c == Component::CurDir) {
        bail!(
            "cgroup path {} is the hierarchy's root",
            cgroup_path.display()
        );
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    match layout {
        Layout::V2 => {
            if let Some(mount) = mount_points(mountinfo, "cgroup2").first() {
                dirs.push(mount.join(relative));
            }
        }
        Layout::V1 => {
            let mounts = mount_points(mountinfo, "cgroup");
            let members = member_controllers(proc_cgroup);
            for (controller, names) in CONTROLLERS {
                if !members.contains(controller) {
                    continue;
                }
                let Some(mount) = mounts
                    .iter()
                    .find(|m| names.iter().any(|name| m.ends_with(name)))
                else {
                    continue;
                };
                let dir = mount.join(relative);
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
    }
    Ok(dirs)
}

/// Removes each directory (and the empty sub-directories libcgroups may have made below it),
/// retrying while the kernel finishes tearing the container's tasks down (the 4 attempts and
/// backoff libcgroups uses). Signals nothing. Returns the directories that could not be removed,
/// each with why (typically: processes that are not the container's are still in it).
pub fn remove_dirs(dirs: &[PathBuf]) -> Vec<String> {
    let mut left = Vec::new();
    for dir in dirs {
        if let Err(err) = remove_tree(dir) {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<&str> = procs.split_whitespace().collect();
            left.push(if pids.is_empty() {
                format!("{}: {err:#}", dir.display())
            } else {
                format!(
                    "{} still holds processes {} that are not the container's (left in place)",
                    dir.display(),
                    pids.join(",")
                )
            });
        }
    }
    left
}

/// Children first, then the directory; a missing directory is already removed.
fn remove_tree(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    remove_with_retry(dir)
}

fn remove_with_retry(dir: &Path) -> Result<()> {
    let mut delay = Duration::from_millis(10);
    let mut last_err = None;
    for attempt in 1..=4u32 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last_err = Some(e),
        }
        std::thread::sleep(delay);
        delay = (delay * attempt).min(Duration::from_millis(100));
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("could not remove")))
        .with_context(|| format!("removing cgroup {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
24 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
25 24 0:23 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
27 25 0:25 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
28 25 0:26 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
29 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
30 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
31 25 0:29 / /sys/fs/cgroup/my\\040dir/freezer rw - cgroup cgroup rw,freezer
";
    const PROC_CGROUP: &str = "\
5:cpu,cpuacct:/
4:memory:/
3:net_cls,net_prio:/
2:pids:/
1:name=systemd:/
0::/
";

    #[test]
    fn resolves_like_libcgroups() {
        let dirs = container_dirs(
            Layout::V1,
            MOUNTINFO,
            PROC_CGROUP,
            Path::new("/kubepods/pod1/abc"),
        )
        .unwrap();
        let expected: Vec<PathBuf> = [
            "/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/abc",
            "/sys/fs/cgroup/memory/kubepods/pod1/abc",
            "/sys/fs/cgroup/pids/kubepods/pod1/abc",
            "/sys/fs/cgroup/net_cls,net_prio/kubepods/pod1/abc",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        // freezer: mounted, but this process is not a member (not in /proc/self/cgroup).
        assert_eq!(dirs, expected);
    }

    #[test]
    fn relative_paths_and_escapes() {
        let dirs = container_dirs(
            Layout::V1,
            MOUNTINFO,
            "1:freezer:/\n",
            Path::new("relative/x"),
        )
        .unwrap();
        assert_eq!(
            dirs,
            vec![PathBuf::from("/sys/fs/cgroup/my dir/freezer/relative/x")]
        );
    }

    #[test]
    fn refuses_paths_that_are_not_a_containers_own() {
        for path in ["/a/../../etc", "", "/", "//", "/.", "."] {
            for layout in [Layout::V1, Layout::V2] {
                assert!(
                    container_dirs(layout, MOUNTINFO, PROC_CGROUP, Path::new(path)).is_err(),
                    "{path:?} on {layout:?}"
                );
            }
        }
    }

    #[test]
    fn v2_joins_the_unified_mount() {
        let dirs = container_dirs(Layout::V2, MOUNTINFO, "0::/\n", Path::new("/k/c")).unwrap();
        assert_eq!(dirs, vec![PathBuf::from("/sys/fs/cgroup/unified/k/c")]);
    }

    #[test]
    fn busy_directories_are_left_and_reported_never_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let busy = dir.path().join("busy");
        std::fs::create_dir_all(busy.join("child")).unwrap();
        // A plain directory with a file stands in for a cgroup that rmdir refuses.
        std::fs::write(busy.join("cgroup.procs"), "4242\n").unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(empty.join("sub")).unwrap();
        let left = remove_dirs(&[busy.clone(), empty.clone(), dir.path().join("gone")]);
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].contains("4242"), "{left:?}");
        assert!(busy.exists());
        assert!(!empty.exists());
    }

    #[test]
    fn matches_this_machine() {
        // Whatever the host looks like, the result must equal libcgroups' own answer.
        let (Ok(mountinfo), Ok(proc_cgroup)) = (
            std::fs::read_to_string("/proc/self/mountinfo"),
            std::fs::read_to_string("/proc/self/cgroup"),
        ) else {
            return;
        };
        if !matches!(
            libcgroups::common::get_cgroup_setup(),
            Ok(libcgroups::common::CgroupSetup::Legacy | libcgroups::common::CgroupSetup::Hybrid)
        ) {
            return;
        }
        let path = Path::new("/strict-sg-unit/equivalence");
        let mut ours = container_dirs(Layout::V1, &mountinfo, &proc_cgroup, path).unwrap();
        let mut theirs: Vec<PathBuf> = libcgroups::v1::util::list_supported_mount_points()
            .unwrap()
            .values()
            .map(|m| m.join("strict-sg-unit/equivalence"))
            .collect();
        ours.sort();
        ours.dedup();
        theirs.sort();
        theirs.dedup();
        assert_eq!(ours, theirs);
    }
}
