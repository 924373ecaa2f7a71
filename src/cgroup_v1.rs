//! A stopped container's cgroup v1 directories, found and removed with one read of
//! /proc/self/mountinfo.
//!
//! libcgroups' v1 manager re-opens and fully parses mountinfo (and /proc/self/cgroup) once per
//! controller it knows, which is most of the CPU time of a `delete` — and `delete` runs for
//! every container. The directories are the same ones libcgroups would use: each controller's
//! mount point is the first cgroup mount whose path ends with the controller's name (with the
//! same aliases for co-mounted `cpu,cpuacct` and `net_cls,net_prio`), the controller must be
//! one this process is a member of, and the container's path is joined below it.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

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

/// Mount points of `cgroup` (v1) filesystems, in mountinfo order.
fn cgroup_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fs_type = after.split(' ').next()?;
            let mount_point = before.split(' ').nth(4)?;
            (fs_type == "cgroup").then(|| PathBuf::from(unescape(mount_point)))
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

/// The per-controller directories of `cgroup_path`, as libcgroups' v1 manager computes them.
pub fn container_dirs(
    mountinfo: &str,
    proc_cgroup: &str,
    cgroup_path: &Path,
) -> Result<Vec<PathBuf>> {
    if cgroup_path.as_os_str().is_empty() {
        bail!("empty cgroup path");
    }
    if cgroup_path.components().any(|c| c == Component::ParentDir) {
        bail!("cgroup path {} leaves its hierarchy", cgroup_path.display());
    }
    let relative = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    let mounts = cgroup_mount_points(mountinfo);
    let members = member_controllers(proc_cgroup);
    let mut dirs: Vec<PathBuf> = Vec::new();
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
    Ok(dirs)
}

/// Kills what is left in each directory and removes it, retrying while the kernel finishes
/// tearing the tasks down (the same 4 attempts and backoff libcgroups uses).
pub fn remove_dirs(dirs: &[PathBuf]) -> Result<()> {
    for dir in dirs {
        if !dir.exists() {
            continue;
        }
        let procs = dir.join("cgroup.procs");
        let text = std::fs::read_to_string(&procs)
            .with_context(|| format!("reading {}", procs.display()))?;
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        remove_with_retry(dir)?;
    }
    Ok(())
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
        let dirs = container_dirs(MOUNTINFO, PROC_CGROUP, Path::new("/kubepods/pod1/abc")).unwrap();
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
        let dirs = container_dirs(MOUNTINFO, "1:freezer:/\n", Path::new("relative/x")).unwrap();
        assert_eq!(
            dirs,
            vec![PathBuf::from("/sys/fs/cgroup/my dir/freezer/relative/x")]
        );
    }

    #[test]
    fn refuses_paths_that_escape() {
        assert!(container_dirs(MOUNTINFO, PROC_CGROUP, Path::new("/a/../../etc")).is_err());
        assert!(container_dirs(MOUNTINFO, PROC_CGROUP, Path::new("")).is_err());
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
        let mut ours = container_dirs(&mountinfo, &proc_cgroup, path).unwrap();
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
