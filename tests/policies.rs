//! The enforcement policies beyond the supplementary-gid filter, against real containers:
//! `primary-gid` (the gid an image's /etc/passwd picks), `ungranted-gids = "refuse"`, and
//! `no-new-privileges` (a setgid binary in the image regaining a dropped group).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{TestEnv, gids_in, require_root};
use serde_json::{Value, json};
use test_support::process::{self, status_field};
use test_support::rootfs::Bundle;

/// The pod: runAsUser 1000, no runAsGroup, supplementalGroups [60000].
const PODS: &[test_support::fixtures::TestPod<'static>] =
    &[("tenant", "passwd-pod", "uid-passwd", &[60000], None)];

fn annotations() -> Value {
    json!({
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-id": "sandbox",
        "io.kubernetes.cri.sandbox-namespace": "tenant",
        "io.kubernetes.cri.sandbox-name": "passwd-pod",
        "io.kubernetes.cri.sandbox-uid": "uid-passwd",
        "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.image-name": "registry.example/bypass:1",
    })
}

fn env(name: &str, policies: &str) -> TestEnv {
    TestEnv::with_pods(name, PODS, policies)
}

/// A container as containerd would hand it for the pod: user `uid:gid` with `gids`, the
/// image's /etc/passwd giving alice (1000) primary group 50000, `noNewPrivileges` false (the
/// Kubernetes default), and `/bin/sgid-reader` (prints its egid and a file) setgid and owned by
/// group 50000, next to a 0640 file of that group.
fn bundle(env: &TestEnv, id: &str, user: (u32, u32, &[u32])) -> Bundle {
    let mut config = env.config(id, &["sleep", "100"], user);
    config["annotations"] = annotations();
    config["process"]["noNewPrivileges"] = json!(false);
    let b = env.bundle_with(id, &config);
    let rootfs = b.dir.join("rootfs");
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:50000::/home/alice:/bin/sh\n",
    )
    .unwrap();
    let sgid = rootfs.join("bin/sgid-reader");
    test_support::rootfs::compile_static_c(
        &env.path().join(format!("cc-{id}")),
        "sgid-reader",
        test_support::rootfs::SHOW_EGID_AND_READ_C,
    )
    .and_then(|bin| Ok(std::fs::copy(bin, &sgid)?))
    .unwrap();
    std::os::unix::fs::chown(&sgid, Some(0), Some(50000)).unwrap();
    std::fs::set_permissions(&sgid, std::fs::Permissions::from_mode(0o2755)).unwrap();
    let secret = rootfs.join("secret");
    std::fs::write(&secret, "group 50000 only\n").unwrap();
    std::os::unix::fs::chown(&secret, Some(0), Some(50000)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    b
}

/// A create the policy refuses (config.json untouched, no container left): its error line.
fn create_fails(env: &TestEnv, b: &Bundle, id: &str) -> String {
    env.create_refused(b, id, &[]);
    env.last_error()
}

/// What `/bin/sgid-reader /secret` prints in the container (its egid decides).
fn read_secret_through_setgid(env: &TestEnv, id: &str) -> String {
    env.runtime
        .run_within(
            &["exec", id, "/bin/sgid-reader", "/secret"],
            Duration::from_secs(20),
        )
        .unwrap()
        .stdout
}

#[test]
fn primary_gid_image_keeps_the_passwd_gid_and_granted_refuses_it() {
    if !require_root() {
        return;
    }
    // Default (image), as Kubernetes' Strict: the container runs with gid 50000.
    let env1 = env("primarygid-image", "");
    let b = bundle(&env1, "image", (1000, 50000, &[50000, 60000]));
    let pid = env1.create(&b, "image", &[]);
    assert_eq!(
        status_field(pid, "Gid").unwrap().split_whitespace().next(),
        Some("50000")
    );
    env1.destroy("image", Some(pid));

    // granted: refused, with the pod, the container, the gid, its origin and the fix.
    let env2 = env("primarygid-granted", "primary-gid = \"granted\"");
    let b = bundle(&env2, "granted", (1000, 50000, &[50000, 60000]));
    let msg = create_fails(&env2, &b, "granted");
    for needle in [
        "pod tenant/passwd-pod",
        "container \"app\"",
        "primary gid 50000",
        "/etc/passwd entry for uid 1000 (alice:x:1000:50000)",
        "runAsGroup",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in {msg}");
    }
    // With runAsGroup given (what the fix produces), the same image is fine.
    let b = bundle(&env2, "fixed", (1000, 60000, &[60000, 50000]));
    let pid = env2.create(&b, "fixed", &[]);
    assert_eq!(process::groups_of(pid).unwrap(), vec![60000]);
    env2.destroy("fixed", Some(pid));
}

#[test]
fn ungranted_gids_refuse_makes_the_attempt_an_error() {
    if !require_root() {
        return;
    }
    let env = env("ungranted", "ungranted-gids = \"refuse\"");
    let b = bundle(&env, "refused", (1000, 1000, &[1000, 50000, 60000]));
    let msg = create_fails(&env, &b, "refused");
    assert!(
        msg.contains("50000") && msg.contains("registry.example/bypass:1"),
        "{msg}"
    );
    let log = env.log_text();
    assert!(
        log.contains("\"msg\":\"supplementary groups refused\"")
            && log.contains("\"ungranted_gids\":\"50000\""),
        "{log}"
    );
}

#[test]
fn no_new_privileges_closes_the_setgid_hole() {
    if !require_root() {
        return;
    }
    // unchanged (the default): the filter drops 50000, the setgid binary gets it back.
    let env1 = env("nnp-unchanged", "");
    let b = bundle(&env1, "unchanged", (1000, 1000, &[1000, 50000, 60000]));
    let pid = env1.create_and_start(&b, "unchanged");
    assert_eq!(process::groups_of(pid).unwrap(), vec![1000, 60000]);
    assert!(
        read_secret_through_setgid(&env1, "unchanged").contains("group 50000 only"),
        "the setgid hole is open under no-new-privileges = \"unchanged\""
    );
    env1.destroy("unchanged", Some(pid));

    // set: noNewPrivileges goes into the spec (and into execs): the setgid bit does nothing.
    let env2 = env("nnp-set", "no-new-privileges = \"set\"");
    let b = bundle(&env2, "set", (1000, 1000, &[1000, 50000, 60000]));
    let pid = env2.create(&b, "set", &[]);
    let spec = b.read_config().unwrap();
    assert_eq!(spec["process"]["noNewPrivileges"], json!(true));
    assert_eq!(gids_in(&spec), vec![1000, 60000]);
    assert_eq!(status_field(pid, "NoNewPrivs").unwrap(), "1");
    env2.start("set");
    assert!(
        !read_secret_through_setgid(&env2, "set").contains("group 50000 only"),
        "an exec regained group 50000 through a setgid binary"
    );
    // An exec process file that says noNewPrivileges: false gets it anyway.
    let file = env2.process_file(
        "nnp-false.json",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [1000, 50000, 60000]}),
        &["/bin/sgid-reader", "/secret"],
    );
    let mut p: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    p["noNewPrivileges"] = json!(false);
    std::fs::write(&file, p.to_string()).unwrap();
    let out = env2
        .runtime
        .run_within(
            &["exec", "--process", file.to_str().unwrap(), "set"],
            Duration::from_secs(20),
        )
        .unwrap();
    assert!(!out.stdout.contains("group 50000 only"), "{out:?}");
    env2.destroy("set", Some(pid));

    // refuse: the container is refused, naming the fix; with noNewPrivileges it runs.
    let env3 = env("nnp-refuse", "no-new-privileges = \"refuse\"");
    let b = bundle(&env3, "refused", (1000, 1000, &[1000, 60000]));
    let msg = create_fails(&env3, &b, "refused");
    assert!(msg.contains("allowPrivilegeEscalation: false"), "{msg}");
    let b = bundle(&env3, "allowed", (1000, 1000, &[1000, 60000]));
    let mut spec = b.read_config().unwrap();
    spec["process"]["noNewPrivileges"] = json!(true);
    b.write_config(&spec).unwrap();
    let pid = env3.create(&b, "allowed", &[]);
    env3.destroy("allowed", Some(pid));
}
