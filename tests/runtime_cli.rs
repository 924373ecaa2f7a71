//! The runtime as containerd's runc shim and conmon use it: the exact call sequences from
//! `shared/fixtures/*/…-argv.log`, driven against the built binary with real containers.

mod common;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::{TestEnv, require_root};
use test_support::process::{self, eventually, groups_of};

#[test]
fn containerd_shim_sequence() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("shim");
    let id = "shim-seq";
    let bundle = env.bundle(id, &["sleep", "1000"], (1000, 1000, &[1000, 50000]));
    let rt = env.runtime.clone().with_cwd(&bundle.dir);

    // create --bundle B --pid-file B/init.pid ID
    let pid = env.create(&bundle, id, &[]);
    assert_eq!(env.runtime.status(id).unwrap(), "created");
    assert_eq!(env.runtime.state(id).unwrap()["pid"], pid);

    rt.run(&["start", id]).unwrap().expect_ok("start");
    assert_eq!(env.runtime.status(id).unwrap(), "running");
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.starts_with("sleep"))
    }));
    // Unmanaged container: groups exactly as the spec says.
    assert_eq!(groups_of(pid).unwrap(), vec![1000, 50000]);

    // exec --process F --detach --pid-file P2 ID: the process really runs, in the container.
    let process_file = env.path().join("runc-process123");
    std::fs::write(
        &process_file,
        r#"{"user":{"uid":1000,"gid":1000,"additionalGids":[1000]},"args":["sleep","999"],"env":["PATH=/bin"],"cwd":"/"}"#,
    )
    .unwrap();
    let exec_pid_file = env.path().join("exec1.pid");
    rt.run(&[
        "exec",
        "--process",
        process_file.to_str().unwrap(),
        "--detach",
        "--pid-file",
        exec_pid_file.to_str().unwrap(),
        id,
    ])
    .unwrap()
    .expect_ok("exec");
    let exec_pid = process::read_pid_file(&exec_pid_file).unwrap();
    assert!(
        std::fs::read_to_string(format!("/proc/{exec_pid}/cmdline"))
            .unwrap()
            .starts_with("sleep\0999")
    );
    let init_pidns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    let exec_pidns = std::fs::read_link(format!("/proc/{exec_pid}/ns/pid")).unwrap();
    assert_eq!(
        init_pidns, exec_pidns,
        "exec'd process must join the container"
    );
    assert_eq!(groups_of(exec_pid).unwrap(), vec![1000]);

    // kill ID 15 (ignored by sleep as pid 1), kill ID 9, kill --all ID 9
    rt.run(&["kill", id, "15"]).unwrap().expect_ok("kill 15");
    rt.run(&["kill", id, "9"]).unwrap().expect_ok("kill 9");
    rt.run(&["kill", "--all", id, "9"])
        .unwrap()
        .expect_ok("kill --all 9");
    // A dying pid-namespace init waits until every other process of the namespace is reaped;
    // the exec'd process is ours (we are the subreaper, as the shim is), so reap it first.
    process::wait_gone(exec_pid, Duration::from_secs(5)).unwrap();
    process::wait_gone(pid, Duration::from_secs(5)).unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        env.runtime.status(id).is_ok_and(|s| s == "stopped")
    }));

    let cgroup = env.cgroup(id);
    let hierarchies: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|h| h.join(cgroup.trim_start_matches('/')).exists())
        .collect();
    assert!(!hierarchies.is_empty(), "the container had cgroups");
    rt.run(&["delete", id]).unwrap().expect_ok("delete");
    assert!(!env.root.join(id).exists());
    for h in hierarchies {
        let dir = h.join(cgroup.trim_start_matches('/'));
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    // The shim's cleanup: delete --force of a container that is already gone succeeds.
    rt.run(&["delete", "--force", id])
        .unwrap()
        .expect_ok("delete --force of a missing container");
    // Plain delete of a missing container is an error, as in runc.
    assert!(!rt.run(&["delete", id]).unwrap().success());
}

/// Receives the pty master that the runtime sends to `--console-socket`.
fn receive_fd(listener: &UnixListener) -> OwnedFd {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::AsRawFd;
    let (stream, _) = listener.accept().unwrap();
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just installed this fd for us.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd received on the console socket");
}

#[test]
fn console_socket_no_pivot_no_new_keyring() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("tty");
    let id = "tty-variant";
    let mut config = env.config(
        id,
        &["sh", "-c", "echo hello-from-tty; tty; id; sleep 1000"],
        (1000, 1000, &[1000]),
    );
    config["process"]["terminal"] = true.into();
    let bundle = env.bundle_with(id, &config);
    let socket = env.path().join("pty.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let receiver = std::thread::spawn(move || receive_fd(&listener));

    // The variant pod's exact flags: --console-socket S --no-pivot --no-new-keyring
    let pid = env.create_with_console(&bundle, id, &socket);
    let master = receiver.join().unwrap();
    env.start(id);

    let mut file = std::fs::File::from(master);
    let mut seen = String::new();
    let ok = eventually(Duration::from_secs(5), || {
        let mut buf = [0u8; 1024];
        if let Ok(n) = file.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen.contains("hello-from-tty") && seen.contains("/dev/pts/") && seen.contains("uid=1000")
    });
    assert!(ok, "tty output: {seen:?}");
    env.destroy(id, Some(pid));
}

#[test]
fn run_foreground_and_detached() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("run");
    let id = "run-fg";
    let bundle = env.bundle(id, &["sh", "-c", "exit 3"], (0, 0, &[]));
    let out = env
        .runtime
        .run_within(
            &["run", "--bundle", bundle.dir.to_str().unwrap(), id],
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(
        out.code,
        Some(3),
        "run returns the container's exit code: {out:?}"
    );
    assert!(!env.root.join(id).exists(), "run without --keep deletes");

    let id = "run-detached";
    let bundle = env.bundle(id, &["sleep", "1000"], (0, 0, &[]));
    let pid = env.run_detached(&bundle, id, &["--detach"]);
    assert_eq!(env.runtime.status(id).unwrap(), "running");
    env.destroy(id, Some(pid));
}

/// A foreground `run` whose init exits at once returns its status: the init's SIGCHLD may
/// come before the runtime starts waiting for signals (it once hung in CI, waiting for a
/// signal that had already been discarded). The window is narrow, so many runs race in
/// parallel to make it likely that one of them lands in it.
#[test]
fn foreground_run_of_an_init_that_exits_at_once_returns() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("runquick");
    std::thread::scope(|scope| {
        for t in 0..4 {
            let env = &env;
            scope.spawn(move || {
                for i in 0..15 {
                    let id = format!("quick-{t}-{i}");
                    let bundle = env.bundle(&id, &["true"], (0, 0, &[]));
                    let dir = bundle.dir.to_str().unwrap().to_owned();
                    let mut args = vec!["run", "--bundle", &dir];
                    // The init is a direct child (cloned as the intermediate's sibling), so
                    // the foreground wait does not depend on being a subreaper.
                    if i % 5 == 0 {
                        args.push("--no-subreaper");
                    }
                    args.push(&id);
                    let out = env
                        .runtime
                        .run_within(&args, Duration::from_secs(20))
                        .unwrap();
                    assert_eq!(out.code, Some(0), "run {id}: {out:?}");
                    assert!(!env.root.join(&id).exists(), "run {id} left its state");
                }
            });
        }
    });
}

#[test]
fn ps_list_pause_resume() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("ops");
    let id = "ops-1";
    let bundle = env.bundle(id, &["sleep", "1000"], (0, 0, &[]));
    let pid = env.create_and_start(&bundle, id);

    let ps = env
        .runtime
        .run(&["ps", "--format", "json", id])
        .unwrap()
        .expect_ok("ps");
    let pids: Vec<i32> = serde_json::from_str(ps.stdout.trim()).unwrap();
    assert_eq!(pids, vec![pid]);
    let table = env.runtime.run(&["ps", id]).unwrap().expect_ok("ps table");
    assert!(table.stdout.lines().next().unwrap().contains("PID"));
    assert!(table.stdout.contains(&pid.to_string()));

    let list = env.runtime.run(&["list"]).unwrap().expect_ok("list");
    let header = list.stdout.lines().next().unwrap().to_owned();
    for column in ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "CREATOR"] {
        assert!(header.contains(column), "{header}");
    }
    let row = list.stdout.lines().nth(1).unwrap();
    assert!(
        row.starts_with(id) && row.contains(&pid.to_string()),
        "{row}"
    );

    // runc's other list forms: IDs only, and the JSON go-runc parses.
    let quiet = env
        .runtime
        .run(&["list", "-q"])
        .unwrap()
        .expect_ok("list -q");
    assert_eq!(quiet.stdout, format!("{id}\n"));
    let json = env
        .runtime
        .run(&["list", "-f", "json"])
        .unwrap()
        .expect_ok("list -f json");
    let listed: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    let entry = &listed[0];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(entry["id"], id);
    assert_eq!(entry["pid"], pid);
    assert_eq!(entry["status"], "running");
    assert_eq!(entry["bundle"], bundle.dir.to_str().unwrap());
    assert_eq!(
        entry["rootfs"],
        bundle.dir.join("rootfs").to_str().unwrap(),
        "{entry}"
    );
    assert_eq!(entry["owner"], "root");
    assert!(entry["created"].as_str().is_some_and(|t| t.ends_with('Z')));
    let bad = env.runtime.run(&["list", "--format", "xml"]).unwrap();
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(bad.stderr.contains("invalid format option"), "{bad:?}");

    let freezer = format!("/sys/fs/cgroup/freezer{}/freezer.state", env.cgroup(id));
    env.runtime.run(&["pause", id]).unwrap().expect_ok("pause");
    assert_eq!(env.runtime.status(id).unwrap(), "paused");
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
    env.runtime
        .run(&["resume", id])
        .unwrap()
        .expect_ok("resume");
    assert_eq!(env.runtime.status(id).unwrap(), "running");
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "THAWED");

    // state of an unknown container fails with a message
    let missing = env.runtime.run(&["state", "nope"]).unwrap();
    assert!(!missing.success());
    assert!(missing.stderr.contains("nope"), "{}", missing.stderr);
    env.destroy(id, Some(pid));
}

#[test]
fn spec_and_features() {
    let dir = tempfile::tempdir().unwrap();
    let rt = test_support::runtime::Runtime::new(common::BINARY, dir.path().join("state"));
    rt.run(&["spec", "--bundle", dir.path().to_str().unwrap()])
        .unwrap()
        .expect_ok("spec");
    let spec = test_support::fixtures::load_json(&dir.path().join("config.json")).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    assert!(spec["process"]["args"].is_array());
    // Refuses to overwrite.
    let again = rt
        .run(&["spec", "--bundle", dir.path().to_str().unwrap()])
        .unwrap();
    assert!(!again.success());
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    let features = rt.run(&["features"]).unwrap().expect_ok("features");
    let f: serde_json::Value = serde_json::from_str(&features.stdout).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert_eq!(f["linux"]["cgroup"]["v1"], true);
    assert_eq!(f["linux"]["cgroup"]["v2"], true);
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
}

#[test]
fn checkpoint_without_criu_is_a_clear_error() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("ckpt");
    let out = env
        .runtime
        .clone()
        .with_env("PATH", "/nonexistent")
        .run(&["checkpoint", "whatever"])
        .unwrap();
    assert!(!out.success());
    let msg = env.last_error();
    assert!(msg.contains("criu not available"), "{msg}");
}

#[test]
fn failed_creates_leave_an_error_line_and_nothing_behind() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("badcreate");
    // Malformed config.json.
    let id = "bad-json";
    let bundle = env.bundle(id, &["true"], (0, 0, &[]));
    std::fs::write(bundle.config_path(), "{ this is not json").unwrap();
    let out = env.create_refused(&bundle, id, &[]);
    let msg = env.last_error();
    assert!(msg.contains("config.json"), "{msg}");
    assert!(
        out.stderr.contains("config.json"),
        "the message also goes to stderr"
    );
    env.runtime
        .run(&["delete", "--force", id])
        .unwrap()
        .expect_ok("delete --force after a failed create");

    // Missing rootfs: libcontainer fails after creating state; nothing may be left.
    let id = "no-rootfs";
    let bundle = env.bundle(id, &["true"], (0, 0, &[]));
    std::fs::remove_dir_all(bundle.dir.join("rootfs")).unwrap();
    // create_refused asserts that no state is left after a failed create.
    env.create_refused(&bundle, id, &[]);
    let msg = env.last_error();
    assert!(msg.contains(id), "{msg}");
    env.runtime
        .run(&["delete", "--force", id])
        .unwrap()
        .expect_ok("delete --force after a failed create");
    // Every line of the log is runc-shaped JSON.
    for line in env.log_text().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["level"].is_string() && v["msg"].is_string() && v["time"].is_string());
    }
}

#[test]
fn runc_only_global_flags_are_accepted() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("flags");
    let out = env
        .runtime
        .run(&["--criu", "/usr/sbin/criu", "--rootless", "false", "list"])
        .unwrap();
    // Global flags after the shim's are still global flags.
    assert!(out.success(), "{out:?}");
}

/// CVE-2019-5736: the process inside the container (the init, while it waits for `start`) must
/// not be a writable view of the host binary, even through a file handle kept until after it
/// exits.
#[test]
fn host_binary_cannot_be_reopened_for_writing_through_proc_exe() {
    if !require_root() {
        return;
    }
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    use std::os::fd::AsRawFd;

    let env = TestEnv::new("cve");
    let id = "cve-5736";
    let bundle = env.bundle(id, &["sleep", "1000"], (0, 0, &[]));
    let before = std::fs::read(common::BINARY).unwrap();
    let pid = env.create(&bundle, id, &[]);
    // The attacker's first step: an O_PATH handle on the runtime's /proc/<pid>/exe.
    let handle = open(
        format!("/proc/{pid}/exe").as_str(),
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let target = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_ne!(
        target,
        std::path::Path::new(common::BINARY).canonicalize().unwrap(),
        "the container's init must not run from the host binary"
    );
    env.destroy(id, Some(pid));
    // Second step, once the runtime process is gone: reopen the handle for writing.
    let reopened = open(
        format!("/proc/self/fd/{}", handle.as_raw_fd()).as_str(),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    assert!(
        reopened.is_err(),
        "the sealed image must not be writable, got {reopened:?}"
    );
    assert_eq!(std::fs::read(common::BINARY).unwrap(), before);
}

/// libcontainer looks up HOME with getpwuid_r inside the container. glibc's would follow the
/// image's nsswitch.conf (here `passwd: db`, a module to dlopen from the image); this runtime's
/// lookup reads only /etc/passwd, as runc does.
#[test]
fn home_comes_from_etc_passwd_never_from_image_nss_modules() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("nss");
    let id = "nss-home";
    let mut config = env.config(id, &["sh", "-c", "echo HOME=$HOME"], (1000, 1000, &[]));
    config["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    let bundle = env.bundle_with(id, &config);
    std::fs::write(
        bundle.dir.join("rootfs/etc/nsswitch.conf"),
        "passwd: db\ngroup: db\n",
    )
    .unwrap();
    let out = env
        .runtime
        .run(&["run", "--bundle", bundle.dir.to_str().unwrap(), id])
        .unwrap()
        .expect_ok("run");
    assert_eq!(out.stdout.trim(), "HOME=/home/alice", "{out:?}");
}
