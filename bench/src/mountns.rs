//! One cgroup layout for every runtime of the run: the harness moves itself into a private
//! mount namespace before it starts anything, and on a cgroup "hybrid" host (v1 controllers,
//! a cgroup2 mount below `/sys/fs/cgroup`) it unmounts that cgroup2 mount there. crun refuses
//! hybrid hosts ("cgroups in hybrid mode not supported"); in the namespace crun, runc, youki
//! and this runtime all see the same pure cgroup-v1 layout. The host's mounts do not change.
//!
//! The price: directories a runtime makes where the cgroup2 mount was land on the tmpfs
//! beneath it (the host's `/sys/fs/cgroup`), hidden from the host by its cgroup2 mount; they
//! are removed from inside the namespace ([`crate::env::remove_cgroup_tree`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What the run's namespace looks like, for the report.
#[derive(Debug, Clone)]
pub struct CgroupView {
    /// cgroup2 mounts hidden in the namespace (a hybrid host's `/sys/fs/cgroup/unified`).
    pub hidden: Vec<PathBuf>,
    /// "v1" or "v2", as every runtime of the run sees it.
    pub layout: &'static str,
}

impl CgroupView {
    pub fn describe(&self) -> String {
        if self.hidden.is_empty() {
            format!(
                "every runtime ran in the harness's private mount namespace; cgroup {} as on \
                 the host",
                self.layout
            )
        } else {
            let shown: Vec<String> = self
                .hidden
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            format!(
                "every runtime ran in the harness's private mount namespace, in which this \
                 cgroup-hybrid host's cgroup2 mount ({}) is unmounted: all saw the same pure \
                 cgroup-v1 layout (crun refuses hybrid mode); the host's mounts were not changed",
                shown.join(", ")
            )
        }
    }
}

/// One line of /proc/self/mountinfo: mount point and filesystem type.
fn mounts() -> Result<Vec<(PathBuf, String)>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").context("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            Some((PathBuf::from(unescape(point)), fstype.to_owned()))
        })
        .collect())
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (b[i] == b'\\' && i + 3 < b.len())
            .then(|| &b[i + 1..i + 4])
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| {
                let v = d.iter().fold(0u16, |v, c| v * 8 + u16::from(c - b'0'));
                u8::try_from(v).ok()
            });
        if let Some(byte) = octal {
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Enters a private mount namespace (propagation private, so nothing done here reaches the
/// host) and hides cgroup2 mounts below a cgroup-v1 `/sys/fs/cgroup`. Must run before the
/// process has a second thread: `unshare(CLONE_NEWNS)` refuses multithreaded callers.
pub fn enter() -> Result<CgroupView> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).context(
        "unshare(CLONE_NEWNS): the bench runs every runtime in a private mount namespace",
    )?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making the bench's mount namespace private")?;
    let all = mounts()?;
    let root = std::path::Path::new(CGROUP_ROOT);
    let root_type = all
        .iter()
        .rev()
        .find(|(p, _)| p == root)
        .map(|(_, t)| t.as_str());
    if root_type == Some("cgroup2") {
        return Ok(CgroupView {
            hidden: Vec::new(),
            layout: "v2",
        });
    }
    let hybrid: Vec<PathBuf> = all
        .iter()
        .filter(|(p, t)| t == "cgroup2" && p.starts_with(root) && p != root)
        .map(|(p, _)| p.clone())
        .collect();
    for point in &hybrid {
        nix::mount::umount2(point, MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {} in the bench's namespace", point.display()))?;
    }
    if mounts()?
        .iter()
        .any(|(p, t)| t == "cgroup2" && p.starts_with(root))
    {
        bail!("a cgroup2 mount below {CGROUP_ROOT} is still visible in the bench's namespace");
    }
    Ok(CgroupView {
        hidden: hybrid,
        layout: "v1",
    })
}

/// Adds `n` small tmpfs mounts below `dir`, in the bench's namespace only: a Kubernetes node
/// has hundreds to thousands of mounts (every pod's volumes, secrets, shm, container rootfs),
/// and runtimes that read `/proc/self/mountinfo` pay for each one (the kernel spends about a
/// microsecond per mount generating it). They go away with the namespace.
pub fn add_node_mounts(dir: &Path, n: usize) -> Result<()> {
    for i in 0..n {
        let point = dir.join(i.to_string());
        std::fs::create_dir_all(&point).with_context(|| format!("creating {}", point.display()))?;
        nix::mount::mount(
            Some("tmpfs"),
            &point,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=4k,mode=0700"),
        )
        .with_context(|| format!("mounting a tmpfs on {}", point.display()))?;
    }
    Ok(())
}

/// A read-only overlayfs view of the directory of `binary` at `at`, in the bench's namespace: a
/// process started from it already runs from a sealed image (the runtime's own seal, runc
/// 1.2's method), so it skips the sealed re-exec that `create` and `exec` otherwise do first.
/// Measuring the runtime from there and from its real path gives the cost of that protection.
pub fn sealed_view(binary: &Path, at: &Path, empty: &Path) -> Result<PathBuf> {
    let dir = binary
        .parent()
        .with_context(|| format!("{} has no directory", binary.display()))?;
    let name = binary
        .file_name()
        .with_context(|| format!("{} has no file name", binary.display()))?;
    for d in [at, empty] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    for d in [dir, empty] {
        if d.to_string_lossy().contains([',', ':', '\\']) {
            bail!("{}: overlayfs options cannot carry this path", d.display());
        }
    }
    let options = format!("ro,lowerdir={}:{}", dir.display(), empty.display());
    nix::mount::mount(
        Some("overlay"),
        at,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(options.as_str()),
    )
    .with_context(|| {
        format!(
            "mounting a read-only overlay of {} on {}",
            dir.display(),
            at.display()
        )
    })?;
    Ok(at.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/x\\134"), "/x\\");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
        assert_eq!(unescape("/big\\777"), "/big\\777");
    }
}
