//! The edges of the runtime's promises, against real containers: groups never inherited from
//! the caller, every container-entering argv sealed, concurrent creates of one id, private
//! files, delete that signals only the container's own processes, exec without `--process`,
//! hostile images, ids validated before the stage.
//!
//! `STRICT_SG_RUNTIME_UNDER_TEST` may point these tests at another binary (e.g. an older build,
//! to see them fail without the fixes).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::{TestEnv, require_root};
use serde_json::{Value, json};
use test_support::process::{self, groups_of, status_field};
use test_support::rootfs::{Bundle, minimal_config};

const CONTAINERD_NS: &str = "io.kubernetes.cri.sandbox-namespace";
const CONTAINERD_NAME: &str = "io.kubernetes.cri.sandbox-name";
const CONTAINERD_UID: &str = "io.kubernetes.cri.sandbox-uid";
const CONTAINERD_CONTAINER: &str = "io.kubernetes.cri.container-name";
const CONTAINERD_TYPE: &str = "io.kubernetes.cri.container-type";
const CONTAINERD_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// The pods these tests' containers belong to.
const PODS: &[test_support::fixtures::TestPod<'static>] = &[
    ("tenant", "grants-nothing", "uid-nothing", &[], None),
    ("tenant", "grants-60000", "uid-60000", &[60000], None),
];

fn env(name: &str) -> TestEnv {
    let mut env = TestEnv::with_pods(name, PODS, "");
    if let Some(binary) = std::env::var_os("STRICT_SG_RUNTIME_UNDER_TEST") {
        env.runtime.binary = binary.into();
    }
    env
}

/// Annotations of a containerd app container of pod `tenant/<pod>`.
fn app_annotations(pod: &str, uid: &str) -> Value {
    json!({
        CONTAINERD_TYPE: "container",
        CONTAINERD_NS: "tenant",
        CONTAINERD_NAME: pod,
        CONTAINERD_UID: uid,
        CONTAINERD_CONTAINER: "app",
        CONTAINERD_SANDBOX_ID: "some-sandbox",
    })
}

/// A busybox bundle running `args` as `user`, with `annotations`.
fn bundle(env: &TestEnv, id: &str, args: &[&str], user: (u32, u32, &[u32]), ann: Value) -> Bundle {
    let mut config = env.config(id, args, user);
    if !ann.is_null() {
        config["annotations"] = ann;
    }
    env.bundle_with(id, &config)
}

/// A container of pod `tenant/grants-60000` running `args` as 1000:1000 whose spec lists the
/// image's group 50000 too: what the stage enforces.
fn enforced_bundle(env: &TestEnv, id: &str, args: &[&str]) -> Bundle {
    bundle(
        env,
        id,
        args,
        (1000, 1000, &[1000, 50000, 60000]),
        app_annotations("grants-60000", "uid-60000"),
    )
}

// --- issue 11 §1: a container's supplementary groups are exactly its spec's ---------------

#[test]
fn groups_are_exactly_the_specs_whatever_groups_the_caller_has() {
    if !require_root() {
        return;
    }
    let mut env = env("callergroups");
    env.runtime = env.runtime.clone().with_caller_groups(&[4, 27, 50000]);

    // Unmanaged, with an empty list.
    let b = bundle(
        &env,
        "unmanaged",
        &["sleep", "100"],
        (1000, 1000, &[]),
        Value::Null,
    );
    let unmanaged = env.create(&b, "unmanaged", &[]);
    assert_eq!(
        groups_of(unmanaged).unwrap(),
        Vec::<u32>::new(),
        "unmanaged create"
    );

    // A pod container whose every gid the stage drops (primary gid not listed, pod grants
    // nothing).
    let b = bundle(
        &env,
        "dropped-all",
        &["sleep", "100"],
        (1000, 1000, &[50000]),
        app_annotations("grants-nothing", "uid-nothing"),
    );
    let dropped = env.create(&b, "dropped-all", &[]);
    assert_eq!(
        groups_of(dropped).unwrap(),
        Vec::<u32>::new(),
        "filtered to empty"
    );

    // A sandbox (its sandbox id is its own id) with an empty list.
    let mut ann = app_annotations("grants-60000", "uid-60000");
    ann[CONTAINERD_TYPE] = json!("sandbox");
    ann[CONTAINERD_SANDBOX_ID] = json!("sandbox-empty");
    let b = bundle(
        &env,
        "sandbox-empty",
        &["sleep", "100"],
        (65535, 65535, &[]),
        ann,
    );
    let sandbox = env.create(&b, "sandbox-empty", &[]);
    assert_eq!(groups_of(sandbox).unwrap(), Vec::<u32>::new(), "sandbox");

    // exec, from a process file and from flags, into the running unmanaged container.
    env.start("unmanaged");
    let file = env.process_file(
        "empty.json",
        json!({"uid": 1000, "gid": 1000, "additionalGids": []}),
        &["sleep", "100"],
    );
    let file = file.display().to_string();
    assert_eq!(
        env.exec_groups("unmanaged", &["--process", &file]),
        Vec::<u32>::new(),
        "exec --process"
    );
    assert_eq!(
        env.exec_groups("unmanaged", &["--user", "1000:1000"]),
        Vec::<u32>::new(),
        "exec with flags"
    );

    // run -d.
    let b = bundle(
        &env,
        "run-d",
        &["sleep", "100"],
        (1000, 1000, &[]),
        Value::Null,
    );
    let run_pid = env.run_detached(&b, "run-d", &["-d"]);
    assert_eq!(groups_of(run_pid).unwrap(), Vec::<u32>::new(), "run -d");

    for (id, pid) in [
        ("unmanaged", unmanaged),
        ("dropped-all", dropped),
        ("sandbox-empty", sandbox),
        ("run-d", run_pid),
    ] {
        env.destroy(id, Some(pid));
    }
}

// --- issue 11 §3 and 17 §5: every argv that enters a container runs sealed ------------------

/// `(dev, ino)` of a file, following links.
fn file_id(path: &Path) -> (u64, u64) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

#[test]
fn odd_global_flag_forms_still_run_create_sealed() {
    if !require_root() {
        return;
    }
    let env = env("sealforms");
    let binary = file_id(&env.runtime.binary);
    let root = env.root.display().to_string();
    // Each form dispatches to create; a separate argv scan used to see another subcommand in
    // the first two and skip the seal.
    let forms: [&[&str]; 4] = [
        &["--rootless", "state"],
        &["-sr", &root],
        &["--root", &root, "--debug"],
        &["--log-format=json", "--rootless=auto"],
    ];
    for (i, form) in forms.iter().enumerate() {
        let id = format!("sealed-{i}");
        let b = bundle(&env, &id, &["sleep", "100"], (1000, 1000, &[]), Value::Null);
        let pid_file = env.pid_file(&id);
        let mut args: Vec<&str> = form.to_vec();
        let (b_dir, p) = (b.dir.display().to_string(), pid_file.display().to_string());
        args.extend(["create", "--bundle", &b_dir, "--pid-file", &p, &id]);
        // Run without the driver's global flags: the form carries its own.
        let out = std::process::Command::new(&env.runtime.binary)
            .args(if form.contains(&"-sr") || form.contains(&"--root") {
                vec![]
            } else {
                vec!["--root", &root]
            })
            .args(&args)
            .env(common::CONFIG_ENV, env.config_file())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(out.success(), "{args:?}: {out}");
        let init = process::read_pid_file(&pid_file).unwrap();
        // The init waits for `start` as a clone of the runtime: its exe is what the runtime
        // ran from. Sealed means it is not the binary on disk (overlay or memfd).
        assert_ne!(
            file_id(Path::new(&format!("/proc/{init}/exe"))),
            binary,
            "{args:?}: the container's init runs from the unsealed binary"
        );
        env.destroy(&id, Some(init));
    }
}

// --- issue 11 §5: concurrent creates never harm another container ---------------------------

#[test]
fn racing_creates_of_one_id_leave_the_winner_alone() {
    if !require_root() {
        return;
    }
    let env = env("racingids");
    let id = "contested";
    let b = enforced_bundle(&env, id, &["sleep", "100"]);
    let b_dir = b.dir.display().to_string();
    let outcomes: Vec<(usize, bool, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let env = &env;
                let b_dir = &b_dir;
                s.spawn(move || {
                    let pid_file = env.path().join(format!("contested-{i}.pid"));
                    let out = env
                        .runtime
                        .run(&[
                            "create",
                            "--bundle",
                            b_dir,
                            "--pid-file",
                            pid_file.to_str().unwrap(),
                            id,
                        ])
                        .unwrap();
                    (i, out.success(), out.stderr)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<_> = outcomes.iter().filter(|(_, ok, _)| *ok).collect();
    assert_eq!(winners.len(), 1, "exactly one create wins: {outcomes:?}");
    for (_, ok, stderr) in &outcomes {
        if !ok {
            assert!(
                stderr.contains("already exists") || stderr.contains("being created"),
                "{stderr}"
            );
        }
    }
    let winner = winners[0].0;
    let init = process::read_pid_file(&env.path().join(format!("contested-{winner}.pid"))).unwrap();
    // The winner's container is intact: state, record, running init, enforced groups.
    assert_eq!(env.runtime.status(id).unwrap(), "created");
    assert!(env.record(id).is_file());
    assert_eq!(groups_of(init).unwrap(), vec![1000, 60000]);
    env.start(id);
    assert_eq!(env.runtime.status(id).unwrap(), "running");
    env.destroy(id, Some(init));
}

// --- issue 11 §6: what it writes is private -------------------------------------------------

#[test]
fn log_files_and_their_directories_are_created_private() {
    if !require_root() {
        return;
    }
    let mut env = env("privatelogs");
    let audit_dir = env.path().join("audit");
    let audit = audit_dir.join("runtime.log");
    let pods = env.pods_file();
    env.write_config(&format!(
        "pod-groups-source = \"file\"\npods-file = {:?}\n[logging]\nlog-file = {:?}\n",
        pods.display().to_string(),
        audit.display().to_string()
    ));
    let log_dir = env.path().join("logs");
    let log = log_dir.join("log.json");
    env.runtime = env.runtime.clone().with_log(&log);
    let b = bundle(&env, "private", &["true"], (1000, 1000, &[]), Value::Null);
    let pid = env.create(&b, "private", &[]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&log), 0o640, "--log file");
    assert_eq!(mode(&log_dir), 0o750, "--log directory");
    assert_eq!(mode(&audit), 0o640, "[logging] log-file");
    assert_eq!(mode(&audit_dir), 0o750, "[logging] log-file directory");
    env.destroy("private", Some(pid));

    // An existing file keeps its mode.
    let existing = env.path().join("existing.log");
    std::fs::write(&existing, "").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.runtime
        .clone()
        .with_log(&existing)
        .run(&["list"])
        .unwrap();
    assert_eq!(mode(&existing), 0o644);
}

// --- issue 17 §2: delete signals only the container's own processes -------------------------

/// The mounted cgroup hierarchies (each `/sys/fs/cgroup/<name>` holding a `cgroup.procs`).
fn hierarchies() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").is_file())
        .collect()
}

/// Creates `cgroup` in every hierarchy, cpuset's with its parent's cpus and mems (a task
/// cannot join an empty cpuset).
fn make_cgroup(cgroup: &str) {
    for h in hierarchies() {
        let dir = h.join(cgroup);
        std::fs::create_dir_all(&dir).unwrap();
        if dir.join("cpuset.cpus").exists() {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let mut parent = dir.parent().unwrap().to_path_buf();
                let value = loop {
                    let v = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                    if !v.trim().is_empty() || parent == h {
                        break v;
                    }
                    parent = parent.parent().unwrap().to_path_buf();
                };
                std::fs::write(dir.join(file), value.trim()).unwrap();
            }
        }
    }
}

/// A process that belongs to nobody's container, placed in `cgroup` of every hierarchy.
fn outsider_in_cgroup(cgroup: &str) -> std::process::Child {
    make_cgroup(cgroup);
    let child = std::process::Command::new("sleep")
        .arg("100")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for h in hierarchies() {
        std::fs::write(h.join(cgroup).join("cgroup.procs"), child.id().to_string()).unwrap();
    }
    child
}

/// Removes `cgroup` (and what is below it) from every hierarchy; its processes must be gone.
fn remove_cgroup(cgroup: &str) {
    for h in hierarchies() {
        let dir = h.join(cgroup);
        let mut dirs = vec![];
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&d) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.path()),
                );
            }
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Runs `steps` (shell) as a caller contained in `cgroup` of every hierarchy, beside a
/// bystander `sleep` also in it. Containment is checked before any step runs, so a runtime that
/// sweeps "its caller's cgroup" can only ever reach these. Returns (the caller's exit status,
/// whether the bystander survived, what the steps wrote to `$OUT`).
fn in_contained_caller(env: &TestEnv, cgroup: &str, steps: &str) -> (Option<i32>, bool, String) {
    make_cgroup(cgroup);
    let bystander_file = env
        .path()
        .join(format!("bystander-{}.pid", cgroup.replace('/', "_")));
    let out_file = env
        .path()
        .join(format!("caller-{}.out", cgroup.replace('/', "_")));
    let join = hierarchies()
        .iter()
        .map(|h| {
            format!(
                "echo $$ > {}/{cgroup}/cgroup.procs || exit 120; ",
                h.display()
            )
        })
        .collect::<String>();
    let script = format!(
        "{join}grep -v ':/{cgroup}$' /proc/self/cgroup | grep -q . && exit 121; \
         sleep 100 </dev/null >/dev/null 2>&1 & echo $! > {bystander}; OUT={out}; {steps}",
        bystander = bystander_file.display(),
        out = out_file.display(),
    );
    // Never wait for EOF on its output: containers and the bystander inherit it.
    let mut caller = std::process::Command::new("sh")
        .args(["-c", &script])
        .env(common::CONFIG_ENV, env.config_file())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let Some(status) = process::wait_until(&mut caller, Duration::from_secs(30)).unwrap() else {
        // A runtime that froze its own cgroup (the freezer) hangs for ever: thaw and end
        // everything in the test cgroup, then fail.
        for h in hierarchies() {
            let _ = std::fs::write(h.join(cgroup).join("freezer.state"), "THAWED");
        }
        for h in hierarchies() {
            let procs = std::fs::read_to_string(h.join(cgroup).join("cgroup.procs"));
            for pid in procs.unwrap_or_default().split_whitespace() {
                if let Ok(pid) = pid.parse() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = caller.wait();
        process::eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(
                Path::new("/sys/fs/cgroup/pids")
                    .join(cgroup)
                    .join("cgroup.procs"),
            )
            .map(|p| p.trim().is_empty())
            .unwrap_or(true)
        });
        remove_cgroup(cgroup);
        panic!("the contained caller hung (a runtime froze or swept its caller's cgroup)");
    };
    assert_ne!(status.code(), Some(120), "could not join the test cgroup");
    assert_ne!(
        status.code(),
        Some(121),
        "the caller is not contained in the test cgroup"
    );
    let bystander = process::read_pid_file(&bystander_file).unwrap();
    let alive = Path::new(&format!("/proc/{bystander}")).exists()
        && !status_field(bystander, "State")
            .unwrap_or_default()
            .starts_with('Z');
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bystander),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = process::wait_gone(bystander, Duration::from_secs(5));
    let written = std::fs::read_to_string(&out_file).unwrap_or_default();
    (status.code(), alive, written)
}

/// The binary under test for a contained caller, and an environment whose own runtime (used
/// for cleanup, also by TestEnv's drop) is always this build: an older binary must never
/// delete or kill from the test's own, uncontained cgroups.
fn contained_env(name: &str) -> (String, TestEnv) {
    let under_test = env(name).runtime.binary.display().to_string();
    (under_test, TestEnv::with_pods(name, PODS, ""))
}

#[test]
fn delete_never_kills_a_process_outside_its_container() {
    if !require_root() {
        return;
    }
    let env = env("deleteoutsiders");
    let shared = format!("strict-sg-tests/shared-{}", std::process::id());
    let mut outsider = outsider_in_cgroup(&shared);

    // A stopped container whose cgroupsPath is shared with an unrelated process.
    let config = minimal_config(&["true"], 0, 0, &[], &format!("/{shared}"));
    let b = env.bundle_with("shared-path", &config);
    let pid = env.create_and_start(&b, "shared-path");
    process::wait_gone(pid, Duration::from_secs(5)).unwrap();
    let _ = env.runtime.run(&["delete", "shared-path"]).unwrap();
    let _ = env
        .runtime
        .run(&["delete", "--force", "shared-path"])
        .unwrap();
    assert!(
        outsider.try_wait().unwrap().is_none(),
        "delete killed a process outside its container"
    );

    let _ = outsider.kill();
    let _ = outsider.wait();
    remove_cgroup(&shared);
}

#[test]
fn delete_with_an_empty_cgroup_path_never_sweeps_the_callers_cgroup() {
    if !require_root() {
        return;
    }
    let (runtime, env) = contained_env("deleteemptypath");
    let root = env.root.display().to_string();
    let b = env.bundle_with("no-path", &minimal_config(&["true"], 0, 0, &[], ""));
    let cgroup = format!("strict-sg-tests/delete-caller-{}", std::process::id());
    let (code, bystander_alive, out) = in_contained_caller(
        &env,
        &cgroup,
        &format!(
            "{runtime} --root {root} create --bundle {bundle} --pid-file {pid} no-path || exit 10; \
             {runtime} --root {root} start no-path || exit 11; \
             while [ -d /proc/$(cat {pid}) ] && ! grep -q '^State:.Z' /proc/$(cat {pid})/status; \
             do sleep 0.05; done; \
             {runtime} --root {root} delete no-path; echo delete-exit-$? > $OUT",
            bundle = b.dir.display(),
            pid = env.pid_file("no-path").display(),
        ),
    );
    let _ = env.runtime.run(&["delete", "--force", "no-path"]);
    remove_cgroup(&cgroup);
    assert!(
        out.contains("delete-exit-"),
        "the caller was killed ({code:?})"
    );
    assert!(
        bystander_alive,
        "delete killed a process of its caller's cgroup"
    );
    assert!(out.contains("delete-exit-0"), "{out}");
    assert!(!env.root.join("no-path").exists(), "state left behind");
}

// --- issue 17 §3: exec without --process runs as the container's user, like runc ------------

#[test]
fn exec_without_a_process_file_runs_as_the_containers_user() {
    if !require_root() {
        return;
    }
    let env = env("execuser");
    let id = "execuser";
    let b = enforced_bundle(&env, id, &["sleep", "100"]);
    let pid = env.create_and_start(&b, id);

    let check = |extra: &[&str], uid: &str, gid: &str, groups: Vec<u32>| {
        let exec = env.exec_detached(id, extra, &["sleep", "100"]);
        let uids = status_field(exec, "Uid").unwrap();
        let gids = status_field(exec, "Gid").unwrap();
        let got = groups_of(exec).unwrap();
        common::kill_exec(exec);
        assert_eq!(uids.split_whitespace().next(), Some(uid), "{extra:?} uid");
        assert_eq!(gids.split_whitespace().next(), Some(gid), "{extra:?} gid");
        assert_eq!(got, groups, "{extra:?} groups");
    };
    // runc: the container's own process.user (as create left it: [1000, 60000]).
    check(&[], "1000", "1000", vec![1000, 60000]);
    check(&["--user", "1000"], "1000", "1000", vec![1000, 60000]);
    check(&["--user", "0"], "0", "1000", vec![1000, 60000]);
    // Flag gids are added to the container's and filtered like the rest.
    check(
        &["--additional-gids", "0", "--additional-gids", "50000"],
        "1000",
        "1000",
        vec![1000, 60000],
    );
    // A primary gid that is neither the container's nor granted is refused.
    let out = env
        .runtime
        .run(&["exec", "--user", "1000:0", id, "true"])
        .unwrap();
    assert!(!out.success(), "exec --user 1000:0 ran");
    let msg = env.last_error();
    assert!(msg.contains("primary gid 0"), "{msg}");
    env.destroy(id, Some(pid));
}

// --- issue 17 §4: a hostile image cannot hang the runtime -----------------------------------

#[test]
fn an_etc_passwd_fifo_does_not_hang_create_or_exec() {
    if !require_root() {
        return;
    }
    let env = env("passwdfifo");
    let id = "fifo";
    let mut config = env.config(id, &["sleep", "100"], (1000, 1000, &[]));
    // No HOME: the runtime looks it up in the image's /etc/passwd, as runc does.
    config["process"]["env"] = json!(["PATH=/bin"]);
    let b = env.bundle_with(id, &config);
    let passwd = b.dir.join("rootfs/etc/passwd");
    let _ = std::fs::remove_file(&passwd);
    nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let pid_file = env.pid_file(id);
    let out = env
        .runtime
        .clone()
        .with_cwd(&b.dir)
        .run_within(
            &[
                "create",
                "--bundle",
                b.dir.to_str().unwrap(),
                "--pid-file",
                pid_file.to_str().unwrap(),
                id,
            ],
            Duration::from_secs(20),
        )
        .expect("create must not hang on a FIFO /etc/passwd");
    assert!(out.success(), "{out:?}");
    let pid = process::read_pid_file(&pid_file).unwrap();
    env.start(id);
    let out = env
        .runtime
        .run_within(&["exec", id, "true"], Duration::from_secs(20))
        .expect("exec must not hang on a FIFO /etc/passwd");
    assert!(out.success(), "{out:?}");
    env.destroy(id, Some(pid));
}

// --- issue 17 §5: ids validated before the stage ---------------------------------------------

#[test]
fn an_id_that_cannot_be_created_never_rewrites_the_bundle() {
    if !require_root() {
        return;
    }
    let env = env("longid");
    let id = "x".repeat(300);
    let b = enforced_bundle(&env, "longid", &["true"]);
    // create_refused asserts that config.json is not rewritten.
    env.create_refused(&b, &id, &[]);
    let msg = env.last_error();
    assert!(msg.contains("invalid container id"), "{msg}");
}

// --- issue 11 §5: 32 concurrent creates of one pod's containers against a cold cache ---------

#[test]
fn concurrent_creates_of_one_pod_against_a_cold_kubelet_cache_are_all_enforced() {
    if !require_root() {
        return;
    }
    let (env, node) = TestEnv::with_kubelet(
        "coldcache",
        vec![test_support::kubelet::pod(
            "tenant",
            "grants-60000",
            "uid-60000",
            &[60000],
            None,
        )],
        "",
    );

    let ids: Vec<String> = (0..32).map(|i| format!("cold-{i}")).collect();
    let bundles: Vec<Bundle> = ids
        .iter()
        .map(|id| enforced_bundle(&env, id, &["sleep", "100"]))
        .collect();
    let pids: Vec<i32> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .zip(&bundles)
            .map(|(id, b)| {
                let env = &env;
                s.spawn(move || env.create(b, id, &[]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((id, b), pid) in ids.iter().zip(&bundles).zip(&pids) {
        assert_eq!(groups_of(*pid).unwrap(), vec![1000, 60000], "{id}");
        let spec = b.read_config().unwrap();
        assert_eq!(common::gids_in(&spec), vec![1000, 60000], "{id}");
        let record: Value =
            serde_json::from_slice(&std::fs::read(env.record(id)).unwrap()).unwrap();
        assert_eq!(record["granted"], json!([60000]), "{id}");
    }
    let entry: Value =
        serde_json::from_slice(&std::fs::read(env.cache_entry("uid-60000")).unwrap()).unwrap();
    assert_eq!(entry["groups"]["supplemental_groups"], json!([60000]));
    // The first miss asks; the others wait for its answer (they made 11 requests before).
    let requests = node.kubelet.requests();
    eprintln!("32 concurrent creates against a cold cache made {requests} kubelet request(s)");
    assert_eq!(requests, 1);
    for (id, pid) in ids.iter().zip(pids) {
        env.destroy(id, Some(pid));
    }
}

// --- issue 17 §2 (kill): --all never signals a cgroup that is not the container's -----------

#[test]
fn kill_all_with_an_empty_cgroup_path_signals_only_the_init() {
    if !require_root() {
        return;
    }
    let (runtime, env) = contained_env("killallempty");
    let root = env.root.display().to_string();
    let b = env.bundle_with(
        "emptypath",
        &minimal_config(&["sleep", "100"], 0, 0, &[], ""),
    );
    let cgroup = format!("strict-sg-tests/kill-caller-{}", std::process::id());
    // With an empty cgroupsPath the container joins its caller's cgroup, and `kill --all` used
    // to kill all of it: the bystander, the caller and the runtime itself.
    let (code, bystander_alive, out) = in_contained_caller(
        &env,
        &cgroup,
        &format!(
            "{runtime} --root {root} create --bundle {bundle} --pid-file {pid} emptypath || exit 10; \
             {runtime} --root {root} start emptypath || exit 11; \
             {runtime} --root {root} kill --all emptypath 9; echo kill-exit-$? > $OUT",
            bundle = b.dir.display(),
            pid = env.pid_file("emptypath").display(),
        ),
    );
    let init = process::read_pid_file(&env.pid_file("emptypath")).ok();
    let init_gone = init.is_some_and(|pid| process::wait_gone(pid, Duration::from_secs(5)).is_ok());
    env.destroy("emptypath", init);
    remove_cgroup(&cgroup);
    assert!(
        out.contains("kill-exit-"),
        "the caller was killed ({code:?})"
    );
    assert!(
        bystander_alive,
        "kill --all killed a process that is not the container's"
    );
    assert!(out.contains("kill-exit-0"), "{out}");
    assert!(init_gone, "the init did not get the signal");
}

// --- issue 13 §2: explain changes nothing ---------------------------------------------------

#[test]
fn explain_creates_no_state_root_and_writes_nothing() {
    if !require_root() {
        return;
    }
    let env = env("explainnothing");
    let b = enforced_bundle(&env, "explained", &["true"]);
    let before = std::fs::read(b.config_path()).unwrap();
    let root = env.path().join("never-created");
    let out = std::process::Command::new(&env.runtime.binary)
        .args(["--root", root.to_str().unwrap(), "explain", "--bundle"])
        .arg(&b.dir)
        .env(common::CONFIG_ENV, env.config_file())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("dropped:          50000"));
    assert!(!root.exists(), "explain created the state root");
    assert_eq!(std::fs::read(b.config_path()).unwrap(), before);
}
