//! The group-enforcement stage against real containers built from what containerd 1.6.20 and
//! podman/conmon really handed a runtime (tests/fixtures), with the `file` pod source.

mod common;

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use common::{TestEnv, gids_in, require_root};
use serde_json::Value;
use test_support::fixtures::{conmon_fixture, containerd_fixture, load_json};
use test_support::process::{self, groups_of};
use test_support::rootfs::Bundle;

/// The three captured pods and the podman one, as the pods file lists them (the kubelet folds
/// fsGroup into the CRI's list; the pod spec has it separately).
const CAPTURED_PODS: &[test_support::fixtures::TestPod<'static>] = &[
    ("user-alice", "bypass-pod", "u1", &[60000], None),
    ("user-alice", "fsgroup-pod", "u2", &[60000], Some(70000)),
    ("user-alice", "variant-pod", "u3", &[60000], None),
    ("ns1", "p1", "podman-uid", &[60000], None),
];

/// A test environment whose runtime reads the captured pods from a file.
fn pod_env(name: &str) -> TestEnv {
    TestEnv::with_pods(name, CAPTURED_PODS, "")
}

#[test]
fn bypass_pod_app_and_exec_are_enforced_sandbox_untouched() {
    if !require_root() {
        return;
    }
    let env = pod_env("bypass");
    let (sandbox_id, sandbox_pid) = env.start_sandbox("sandbox-bypass-pod.config.json");
    assert_eq!(groups_of(sandbox_pid).unwrap(), vec![1000]);

    let id = "app-bypass";
    let bundle = env.fixture_bundle("app-bypass-pod.config.json", id, Some(sandbox_pid));
    let before = bundle.read_config().unwrap();
    assert_eq!(
        gids_in(&before),
        vec![1000, 50000, 60000],
        "the input really carries the image's group"
    );
    let pid = env.create(&bundle, id, &[]);
    let after = bundle.read_config().unwrap();
    assert_eq!(gids_in(&after), vec![1000, 60000]);
    // Nothing else changed, key order included.
    let mut expected = before.clone();
    expected["process"]["user"]["additionalGids"] = serde_json::json!([1000, 60000]);
    assert_eq!(
        serde_json::to_string(&after).unwrap(),
        serde_json::to_string(&expected).unwrap()
    );
    env.start(id);
    assert_eq!(groups_of(pid).unwrap(), vec![1000, 60000]);

    // containerd's exec process.json: unfiltered gids, no annotations.
    let process_file = env.path().join("runc-process2291297428");
    std::fs::copy(
        containerd_fixture("exec-bypass-pod.process.json"),
        &process_file,
    )
    .unwrap();
    let process_before = std::fs::read(&process_file).unwrap();
    let detached_file =
        env.captured_process("runc-process-detached", &process_file, &["sleep", "100"]);
    let exec_pid = env.exec_detached(id, &["--process", detached_file.to_str().unwrap()], &[]);
    assert_eq!(groups_of(exec_pid).unwrap(), vec![1000, 60000]);

    // The captured exec itself (`id`), in the foreground: what the tenant would see.
    let out = env
        .runtime
        .run(&["exec", "--process", process_file.to_str().unwrap(), id])
        .unwrap()
        .expect_ok("exec id");
    assert!(
        out.stdout.contains("groups=1000(alice),60000") && !out.stdout.contains("50000"),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read(&process_file).unwrap(),
        process_before,
        "the caller's process file is never modified"
    );
    let leftovers: Vec<_> = std::fs::read_dir(env.root.join(id))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("exec-process"))
        .collect();
    assert!(leftovers.is_empty(), "private process copies are removed");

    // Audit lines for create and both execs.
    let log = env.log_text();
    let audits: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["msg"] == "supplementary groups filtered" && v["container_id"] == id)
        .collect();
    assert_eq!(audits.len(), 3, "{log}");
    assert_eq!(audits[0]["operation"], "create");
    assert_eq!(audits[0]["pod"], "user-alice/bypass-pod");
    assert_eq!(audits[0]["pod_uid"], "u1");
    assert_eq!(audits[0]["dropped_gids"], "50000");
    assert_eq!(audits[0]["kept_gids"], "1000,60000");
    assert!(audits[0]["elapsed_us"].is_u64());

    let _ = process::wait_gone(exec_pid, Duration::from_millis(1));
    env.kill_all(id, exec_pid);
    process::wait_gone(pid, Duration::from_secs(5)).unwrap();
    env.runtime
        .run(&["delete", id])
        .unwrap()
        .expect_ok("delete");
    env.destroy(&sandbox_id, Some(sandbox_pid));
}

#[test]
fn fsgroup_pod_keeps_fs_group() {
    if !require_root() {
        return;
    }
    let env = pod_env("fsgroup");
    let id = "app-fsgroup";
    let bundle = env.fixture_bundle("app-fsgroup-pod.config.json", id, None);
    let pid = env.create_and_start(&bundle, id);
    assert_eq!(groups_of(pid).unwrap(), vec![1000, 60000, 70000]);

    let process_file = env.captured_process(
        "exec.json",
        &containerd_fixture("exec-fsgroup-pod.process.json"),
        &["sleep", "100"],
    );
    assert_eq!(
        env.exec_groups(id, &["--process", process_file.to_str().unwrap()]),
        vec![1000, 60000, 70000]
    );
    env.destroy(id, Some(pid));
}

#[test]
fn variant_pod_with_tty_no_pivot_no_new_keyring() {
    if !require_root() {
        return;
    }
    let env = pod_env("variant");
    let (sandbox_id, sandbox_pid) = env.start_sandbox("sandbox-variant-pod.config.json");
    let id = "app-variant";
    let bundle = env.fixture_bundle("app-variant-pod.config.json", id, Some(sandbox_pid));
    let socket = env.path().join("pty.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    // Accept and hold the pty so the container's terminal stays open.
    let holder = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let pid = env.create_with_console(&bundle, id, &socket);
    let _conn = holder.join().unwrap().unwrap();
    env.start(id);
    assert_eq!(groups_of(pid).unwrap(), vec![1000, 60000]);
    env.destroy(id, Some(pid));
    env.destroy(&sandbox_id, Some(sandbox_pid));
}

#[test]
fn unmanaged_container_passes_through_untouched() {
    if !require_root() {
        return;
    }
    let env = pod_env("unmanaged");
    let id = "admin-ctr-run";
    let mut spec = load_json(&containerd_fixture("app-bypass-pod.config.json")).unwrap();
    spec.as_object_mut().unwrap().remove("annotations");
    let bundle = env.adapted_bundle(id, spec, None);
    let before = std::fs::read(bundle.config_path()).unwrap();
    let pid = env.create(&bundle, id, &[]);
    assert_eq!(std::fs::read(bundle.config_path()).unwrap(), before);
    env.start(id);
    assert_eq!(groups_of(pid).unwrap(), vec![1000, 50000, 60000]);
    env.destroy(id, Some(pid));
}

#[test]
fn unmanaged_deny_refuses() {
    if !require_root() {
        return;
    }
    let env = TestEnv::with_pods("deny", &[], "unmanaged = \"deny\"");
    let id = "denied";
    let bundle = env.bundle(id, &["true"], (0, 0, &[]));
    env.create_refused(&bundle, id, &[]);
    let msg = env.last_error();
    assert!(msg.contains("unmanaged") && msg.contains(id), "{msg}");
}

#[test]
fn crio_annotations_are_enforced() {
    if !require_root() {
        return;
    }
    let env = pod_env("crio");
    // The bypass pod as CRI-O would annotate it.
    let id = "crio-app";
    let mut spec = load_json(&containerd_fixture("app-bypass-pod.config.json")).unwrap();
    spec["annotations"] = serde_json::json!({
        "io.kubernetes.pod.namespace": "user-alice",
        "io.kubernetes.pod.name": "bypass-pod",
        "io.kubernetes.pod.uid": "u1",
        "io.kubernetes.container.name": "app",
        "io.kubernetes.cri-o.ContainerType": "container",
        "io.kubernetes.cri-o.SandboxID": "somesandbox"
    });
    let bundle = env.adapted_bundle(id, spec, None);
    let pid = env.create_and_start(&bundle, id);
    assert_eq!(groups_of(pid).unwrap(), vec![1000, 60000]);
    env.destroy(id, Some(pid));

    // What podman/conmon really produced (pod annotations only, no uid, no type): allowed
    // groups stay; podman's exec files omit the primary gid and are applied as they are.
    let id = "podman-app";
    let mut spec = load_json(&conmon_fixture("app-podman.config.json")).unwrap();
    spec["process"]["args"] = serde_json::json!(["sleep", "1000"]);
    spec["process"]["terminal"] = false.into();
    if let Some(rlimits) = spec["process"]
        .get_mut("rlimits")
        .and_then(Value::as_array_mut)
    {
        // podman's defaults exceed this machine's hard limits (no CAP_SYS_RESOURCE).
        rlimits.clear();
    }
    spec["root"]["path"] = "rootfs".into();
    spec["linux"]["cgroupsPath"] = env.cgroup(id).into();
    let mounts = spec["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| {
        let src = m["source"].as_str().unwrap_or_default();
        !src.starts_with('/') || Path::new(src).exists()
    });
    let bundle = env.bundle_with(id, &spec);
    let pid = env.create_and_start(&bundle, id);
    assert_eq!(groups_of(pid).unwrap(), vec![1000, 60000]);
    let exec_file = env.captured_process(
        "exec-process-1",
        &conmon_fixture("exec-1.process.json"),
        &["sleep", "100"],
    );
    // conmon's argument order.
    let pid_file = env.path().join("exec_pid");
    env.runtime
        .run(&[
            "exec",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--process",
            exec_file.to_str().unwrap(),
            "--detach",
            id,
        ])
        .unwrap()
        .expect_ok("exec");
    let exec_pid = process::read_pid_file(&pid_file).unwrap();
    assert_eq!(groups_of(exec_pid).unwrap(), vec![60000]);
    env.kill_all(id, exec_pid);
    env.destroy(id, Some(pid));
}

/// Every way the pod's groups can be unknown: create fails, config.json stays byte-for-byte
/// the same, no container is left, and the last error line names the pod and the reason.
#[test]
fn fail_closed_cases() {
    if !require_root() {
        return;
    }
    let env = pod_env("failclosed");
    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "pod-missing",
            Box::new(|| env.write_pods(&[("user-alice", "other", "u9", &[1], None)])),
            "not found",
        ),
        (
            "uid-mismatch",
            Box::new(|| {
                env.write_pods(&[(
                    "user-alice",
                    "bypass-pod",
                    "u1-previous-life",
                    &[50000],
                    None,
                )])
            }),
            "u1-previous-life",
        ),
        (
            "pods-file-missing",
            Box::new(|| {
                let _ = std::fs::remove_file(env.pods_file());
            }),
            "pods.json",
        ),
        (
            "pods-file-garbage",
            Box::new(|| {
                std::fs::write(env.pods_file(), "{\"kind\": \"PodList\", \"items\": [").unwrap()
            }),
            "parsing pods file",
        ),
        (
            "gid-out-of-range",
            Box::new(|| env.write_pods(&[("user-alice", "bypass-pod", "u1", &[-7], None)])),
            "not a valid gid",
        ),
    ];
    for (id, setup, reason) in cases {
        setup();
        let bundle = env.fixture_bundle("app-bypass-pod.config.json", id, None);
        // Fails, config.json untouched, no container left.
        let out = env.create_refused(&bundle, id, &[]);
        let msg = env.last_error();
        assert!(
            msg.contains("user-alice/bypass-pod") && msg.contains(reason) && msg.contains(id),
            "{id}: {msg}"
        );
        assert!(out.stderr.contains(reason), "{id}: stderr {}", out.stderr);
    }
}

#[test]
fn exec_without_record_resolves_again_and_fails_closed() {
    if !require_root() {
        return;
    }
    let env = pod_env("norecord");
    let id = "app-norecord";
    let bundle = env.fixture_bundle("app-bypass-pod.config.json", id, None);
    let pid = env.create_and_start(&bundle, id);
    // As if created by a build that kept no record.
    std::fs::remove_file(env.record(id)).unwrap();

    let process_file = env.captured_process(
        "p.json",
        &containerd_fixture("exec-bypass-pod.process.json"),
        &["sleep", "100"],
    );
    let pid_file = env.path().join("e.pid");
    let exec = |env: &TestEnv| {
        env.try_exec_detached(
            id,
            &["--process", process_file.to_str().unwrap()],
            &pid_file,
            &[],
        )
    };
    exec(&env).expect_ok("exec re-resolving from state annotations");
    let exec_pid = process::read_pid_file(&pid_file).unwrap();
    assert_eq!(groups_of(exec_pid).unwrap(), vec![1000, 60000]);
    std::fs::remove_file(&pid_file).unwrap();

    // The pod is gone from the source now: the exec must not run at all.
    env.write_pods(&[]);
    let out = exec(&env);
    assert!(!out.success());
    assert!(!pid_file.exists(), "no process was started");
    let msg = env.last_error();
    assert!(
        msg.contains("user-alice/bypass-pod") && msg.contains("not found"),
        "{msg}"
    );
    env.kill_all(id, exec_pid);
    env.destroy(id, Some(pid));
}

#[test]
fn exec_flags_are_filtered_too() {
    if !require_root() {
        return;
    }
    let env = pod_env("execflags");
    let id = "app-flags";
    let bundle = env.fixture_bundle("app-bypass-pod.config.json", id, None);
    let pid = env.create_and_start(&bundle, id);
    // As runc builds a flag exec: the container's own (filtered) additionalGids [1000, 60000]
    // plus the flags' 50000 and 60000; 50000 is dropped.
    let flags = [
        "--user",
        "1000:1000",
        "--additional-gids",
        "50000",
        "-g",
        "60000",
    ];
    assert_eq!(env.exec_groups(id, &flags), vec![1000, 60000]);
    env.destroy(id, Some(pid));
}

#[test]
fn sixteen_concurrent_creates_for_one_pod_are_all_enforced() {
    if !require_root() {
        return;
    }
    let env = pod_env("concurrent");
    let bundles: Vec<(String, Bundle)> = (0..16)
        .map(|i| {
            let id = format!("app-{i}");
            let b = env.fixture_bundle("app-bypass-pod.config.json", &id, None);
            (id, b)
        })
        .collect();
    let pids: Vec<(String, i32)> = std::thread::scope(|s| {
        let handles: Vec<_> = bundles
            .iter()
            .map(|(id, b)| s.spawn(|| (id.clone(), env.create(b, id, &[]))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (id, pid) in &pids {
        env.start(id);
        assert_eq!(groups_of(*pid).unwrap(), vec![1000, 60000], "{id}");
    }
    for (id, pid) in pids {
        env.destroy(&id, Some(pid));
    }
}

#[test]
fn explain_reports_without_touching_anything() {
    if !require_root() {
        return;
    }
    let env = pod_env("explain");
    let id = "explained";
    let bundle = env.fixture_bundle("app-bypass-pod.config.json", id, None);
    let before = std::fs::read(bundle.config_path()).unwrap();
    let report = env.explain_json(&bundle);
    assert_eq!(report["identity"]["kind"], "pod-container");
    assert_eq!(report["decision"]["kept"], serde_json::json!([1000, 60000]));
    assert_eq!(report["decision"]["dropped"], serde_json::json!([50000]));
    assert_eq!(
        report["pod_groups"]["supplemental_groups"],
        serde_json::json!([60000])
    );
    assert_eq!(std::fs::read(bundle.config_path()).unwrap(), before);
    assert!(!env.root.join(id).exists());

    let text = env.explain_text(&bundle);
    assert!(text.contains("dropped:          50000"), "{text}");

    // Where create would fail, explain fails too.
    let mut spec = bundle.read_config().unwrap();
    spec["annotations"]["io.kubernetes.cri.sandbox-name"] = "ghost".into();
    bundle.write_config(&spec).unwrap();
    let out = env
        .runtime
        .run(&["explain", "--bundle", bundle.dir.to_str().unwrap()])
        .unwrap();
    assert!(!out.success());
    assert!(out.stderr.contains("user-alice/ghost"), "{}", out.stderr);
}
