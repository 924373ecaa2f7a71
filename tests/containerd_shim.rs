//! The real containerd 1.6 runc v2 shim (Debian's `containerd` package) driving this runtime
//! as its `BinaryName`: a private containerd, a locally built image, `ctr run` and
//! `ctr task exec`.

mod common;

use std::time::Duration;

use common::{BINARY, require_root};
use test_support::containerd::{Containerd, ContainerdOptions};
use test_support::oci_image::ImageSpec;
use test_support::process::eventually;
use test_support::rootfs::write_busybox_rootfs;

fn containerd_available() -> bool {
    let found = ["containerd", "ctr", "containerd-shim-runc-v2"]
        .iter()
        .all(|b| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(b).is_file()))
        });
    if !found {
        test_support::skip::skip(
            "containerd, ctr or containerd-shim-runc-v2 missing (scripts/bootstrap installs them)",
        );
    }
    found
}

#[test]
fn ctr_run_and_task_exec_through_the_runc_v2_shim() {
    if !require_root() || !containerd_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    write_busybox_rootfs(&rootfs).unwrap();
    let image = ImageSpec::new("docker.io/strict-sg-tests/bypass:shim", &rootfs)
        .user("1000")
        .entrypoint(&["/bin/sleep", "1000"])
        .write_archive(&work.path().join("image.tar"))
        .unwrap();

    let cgroup = format!("/strict-sg-tests/ctr-{}", std::process::id());
    let containerd =
        Containerd::start(ContainerdOptions::new("version = 2\n").cleanup_cgroup(cgroup.clone()))
            .unwrap();
    containerd.import_image("default", &image.archive).unwrap();

    let id = "shim-ctr";
    let runc_root = containerd.runc_root();
    let out = containerd
        .ctr(&[
            "run",
            "-d",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            BINARY,
            "--runc-root",
            runc_root.to_str().unwrap(),
            "--cgroup",
            &format!("{cgroup}/{id}"),
            &image.reference,
            id,
        ])
        .unwrap();
    assert!(
        out.success(),
        "ctr run: {}\n{}",
        out.stderr,
        containerd.log_tail(30)
    );

    assert!(
        eventually(Duration::from_secs(10), || {
            containerd.ctr(&["task", "ls"]).is_ok_and(|o| {
                o.stdout
                    .lines()
                    .any(|l| l.starts_with(id) && l.contains("RUNNING"))
            })
        }),
        "task never ran: {}",
        containerd.log_tail(30)
    );
    // Our runtime, not runc, owns the container: its state is under the runc root we gave.
    let state = test_support::runtime::Runtime::new(BINARY, runc_root.join("default"))
        .state(id)
        .unwrap();
    assert_eq!(state["status"], "running");

    // ctr task exec: the shim writes a process.json and calls `exec --process … --detach`.
    let exec = containerd
        .ctr(&["task", "exec", "--exec-id", "e1", id, "id"])
        .unwrap();
    assert!(
        exec.success(),
        "task exec: {}\n{}",
        exec.stderr,
        containerd.log_tail(30)
    );
    assert!(exec.stdout.contains("uid=1000"), "{}", exec.stdout);
    // No pod annotations (plain ctr): the image's groups pass through unchanged.
    assert!(exec.stdout.contains("50000(bypassed)"), "{}", exec.stdout);

    containerd
        .ctr_ok(&["task", "kill", "--signal", "SIGKILL", id])
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        containerd
            .ctr(&["task", "ls"])
            .is_ok_and(|o| !o.stdout.contains("RUNNING"))
    }));
    containerd.ctr_ok(&["task", "delete", id]).unwrap();
    containerd.ctr_ok(&["containers", "delete", id]).unwrap();
    assert!(!runc_root.join("default").join(id).exists());
    containerd.stop().unwrap();
}
