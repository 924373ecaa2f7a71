//! `ContainerdOptions::hide_mount`: containerd runs in a private mount namespace without the
//! hidden mount point while the caller still sees it, and `remove_under_hidden_mounts` removes
//! what lies underneath a mount point, as seen from such a namespace. Uses a tmpfs of its own
//! over a temp dir (not /sys/fs/cgroup/unified), so it means the same on every host. Needs
//! root; skips without it, or fails under STRICT_SG_NO_SKIP=1 (CI).

use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use test_support::containerd::{
    CRI_PLUGIN, Containerd, ContainerdOptions, remove_under_hidden_mounts,
};
use test_support::skip;

fn mount_points(pid: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .collect()
}

/// Unmounts the tmpfs even when an assertion fails.
struct TmpfsOver<'a>(&'a Path);

impl Drop for TmpfsOver<'_> {
    fn drop(&mut self) {
        let _ = umount2(self.0, MntFlags::MNT_DETACH);
    }
}

#[test]
fn containerd_runs_without_the_hidden_mount_and_what_lies_under_it_can_be_removed() {
    if !skip::unless_root() {
        return;
    }
    if !Path::new("/usr/bin/containerd").is_file() {
        skip::skip("/usr/bin/containerd is missing (apt-get install containerd)");
        return;
    }
    test_support::process::become_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let point = dir.path().join("point");
    std::fs::create_dir_all(point.join("under/made/deeper")).unwrap();
    std::fs::write(point.join("under/kept"), b"").unwrap();
    mount(
        Some("tmpfs"),
        &point,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let _guard = TmpfsOver(&point);
    let point_s = point.display().to_string();

    let config =
        format!("version = 2\n[plugins.\"{CRI_PLUGIN}\"]\n  restrict_oom_score_adj = true\n");
    let containerd = Containerd::start(ContainerdOptions::new(config).hide_mount(&point)).unwrap();
    let pid = containerd.pid().to_string();
    assert!(
        mount_points("self").contains(&point_s),
        "the caller keeps its mount"
    );
    assert!(
        !mount_points(&pid).contains(&point_s),
        "containerd still sees {point_s}"
    );
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).unwrap();
    assert_ne!(
        ns("self"),
        ns(&pid),
        "containerd shares the caller's mount namespace"
    );
    containerd.stop().unwrap();

    // Underneath the tmpfs: `under/made` goes, its sibling stays; nothing on the tmpfs changes.
    std::fs::write(point.join("on-tmpfs"), b"").unwrap();
    remove_under_hidden_mounts(std::slice::from_ref(&point), &["/under/made".to_owned()]).unwrap();
    assert!(point.join("on-tmpfs").exists());
    assert!(
        remove_under_hidden_mounts(std::slice::from_ref(&point), &["../escape".to_owned()])
            .is_err()
    );
    assert!(remove_under_hidden_mounts(std::slice::from_ref(&point), &["/".to_owned()]).is_err());
    drop(_guard);
    assert!(
        !point.join("under/made").exists(),
        "under/made was not removed"
    );
    assert!(point.join("under/kept").exists(), "a sibling was removed");
}
