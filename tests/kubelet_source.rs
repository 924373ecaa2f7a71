//! The kubelet pod source end to end: real containers from the captured containerd specs,
//! created by the runtime binary exactly as the containerd shim drives it, with their pod's
//! groups coming from a kubelet stand-in over mutual TLS (test_support::kubelet).

mod common;

use std::time::{Duration, Instant};

use common::kubelet::Node;
use common::{TestEnv, gids_in, require_root};
use test_support::certs::KubeconfigStyle;
use test_support::kubelet::{Behaviour, pod, pod_list, pv, pvc};
use test_support::process::groups_of;

/// A test environment whose runtime asks a kubelet stand-in holding the captured pods (among
/// others), with a kubeconfig like a bootstrapped node's (kubelet-client-current.pem).
fn kubelet_env(name: &str) -> (TestEnv, Node) {
    TestEnv::with_kubelet(
        name,
        vec![
            pod("user-alice", "bypass-pod", "u1", &[60000], None),
            pod("user-alice", "fsgroup-pod", "u2", &[60000], Some(70000)),
        ],
        "request-timeout = \"1s\"\nlookup-deadline = \"3s\"\n",
    )
}

#[test]
fn app_container_gets_its_groups_from_the_kubelet_and_the_next_one_from_the_cache() {
    if !require_root() {
        return;
    }
    let (env, node) = kubelet_env("kubelet-ok");

    // The sandbox passes through without asking anyone.
    let (sandbox_id, sandbox_pid) = env.start_sandbox("sandbox-bypass-pod.config.json");
    assert_eq!(node.kubelet.requests(), 0);

    let id = "app-bypass";
    let bundle = env.fixture_bundle("app-bypass-pod.config.json", id, Some(sandbox_pid));
    assert_eq!(
        gids_in(&bundle.read_config().unwrap()),
        vec![1000, 50000, 60000]
    );
    let started = Instant::now();
    let pid = env.create(&bundle, id, &[]);
    let first_create = started.elapsed();
    env.start(id);
    assert_eq!(groups_of(pid).unwrap(), vec![1000, 60000]);
    assert_eq!(gids_in(&bundle.read_config().unwrap()), vec![1000, 60000]);
    assert_eq!(node.kubelet.requests(), 1);
    let seen = node.kubelet.seen();
    assert_eq!(seen[0].path, "/pods");
    assert_eq!(seen[0].client_cn.as_deref(), Some("system:node:test-node"));
    assert!(env.cache_entry("u1").exists());

    // A second container of the same pod (a sidecar, or a restart): no request.
    let id2 = "app-bypass-2";
    let bundle2 = env.fixture_bundle("app-bypass-pod.config.json", id2, Some(sandbox_pid));
    let started = Instant::now();
    let pid2 = env.create(&bundle2, id2, &[]);
    let cached_create = started.elapsed();
    env.start(id2);
    assert_eq!(groups_of(pid2).unwrap(), vec![1000, 60000]);
    assert_eq!(node.kubelet.requests(), 1, "served from the cache");
    eprintln!("create: first {first_create:?}, from the cache {cached_create:?}");

    // The shim's teardown: the apps, then the sandbox, whose delete forgets the pod.
    env.kill_and_delete(id, pid);
    env.kill_and_delete(id2, pid2);
    assert!(env.cache_entry("u1").exists(), "app deletes keep the entry");
    env.kill_and_delete(&sandbox_id, sandbox_pid);
    assert!(
        !env.cache_entry("u1").exists(),
        "sandbox delete forgets the pod"
    );
    // Deleting what is gone still succeeds.
    env.runtime
        .run(&["delete", "--force", &sandbox_id])
        .unwrap()
        .expect_ok("delete again");
}

#[test]
fn explain_shows_the_kubelets_answer() {
    if !require_root() {
        return;
    }
    let (env, node) = kubelet_env("kubelet-explain");
    let bundle = env.fixture_bundle("app-fsgroup-pod.config.json", "explained", None);
    let before = std::fs::read(bundle.config_path()).unwrap();
    let report = env.explain_json(&bundle);
    assert!(
        report["source"]
            .as_str()
            .unwrap()
            .contains(&format!("kubelet {}", node.kubelet.url())),
        "{report}"
    );
    assert_eq!(report["pod_groups"]["uid"], "u2");
    assert_eq!(
        report["pod_groups"]["supplemental_groups"],
        serde_json::json!([60000])
    );
    assert_eq!(report["pod_groups"]["fs_group"], 70000);
    assert_eq!(std::fs::read(bundle.config_path()).unwrap(), before);
    assert_eq!(node.kubelet.requests(), 1);

    let text = env.explain_text(&bundle);
    assert!(
        text.contains("pod grants:       supplementalGroups [60000], fsGroup 70000"),
        "{text}"
    );
}

#[test]
fn create_fails_closed_naming_the_kubelet_when_it_is_down() {
    if !require_root() {
        return;
    }
    let (env, mut node) = kubelet_env("kubelet-down");
    let url = node.kubelet.url();
    node.kubelet.stop();
    let id = "app-down";
    let bundle = env.fixture_bundle("app-bypass-pod.config.json", id, None);
    let pid_file = bundle.dir.join("init.pid").display().to_string();
    let started = Instant::now();
    env.create_refused(&bundle, id, &["--pid-file", &pid_file]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "within the deadline"
    );
    let msg = env.last_error();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("user-alice/bypass-pod"), "{msg}");
    assert!(msg.contains("refusing to create"), "{msg}");
    // The shim's cleanup after a failed create.
    env.runtime
        .run(&["delete", "--force", id])
        .unwrap()
        .expect_ok("delete --force of a failed create");
}

#[test]
fn create_fails_closed_when_the_kubelet_forbids_or_has_no_such_pod() {
    if !require_root() {
        return;
    }
    let (env, node) = kubelet_env("kubelet-refuses");
    let cases = [
        (Behaviour::Status(403), "nodes/proxy", "forbidden"),
        (Behaviour::Serve, "not found", "ghost"),
    ];
    for (behaviour, reason, id) in cases {
        node.kubelet.set_behaviour(behaviour);
        let bundle = env.fixture_bundle("app-bypass-pod.config.json", id, None);
        if id == "ghost" {
            let mut spec = bundle.read_config().unwrap();
            spec["annotations"]["io.kubernetes.cri.sandbox-name"] = "ghost-pod".into();
            bundle.write_config(&spec).unwrap();
        }
        env.create_refused(&bundle, id, &[]);
        let msg = env.last_error();
        assert!(msg.contains(reason), "{id}: {msg}");
        assert!(!env.cache_entry("u1").exists(), "failures are not cached");
    }
    // Sanity: the kubeconfig used is the node-style one.
    assert!(
        std::fs::read_to_string(&node.kubeconfig)
            .unwrap()
            .contains(node.files.client_combined.to_str().unwrap())
    );
}

/// What `explain` reports as the stage's time for a pod container: the first lookup asks the
/// kubelet, the next ones are served from the cache. Informational; run with
/// `SSG_RUNTIME=<release binary> cargo test --test kubelet_source -- --ignored --nocapture
/// stage_time_with_and_without_the_cache` (the stand-in then runs in the debug test binary, so
/// only the cache-hit numbers are meaningful).
#[test]
#[ignore = "informational timing"]
fn stage_time_with_and_without_the_cache() {
    let (mut env, node) = kubelet_env("kubelet-timing");
    if let Ok(binary) = std::env::var("SSG_RUNTIME") {
        env.runtime.binary = binary.into();
    }
    std::fs::create_dir_all(&env.root).unwrap();
    let bundle = env.fixture_bundle("app-bypass-pod.config.json", "timed", None);
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let report = env.explain_json(&bundle);
        let wall = started.elapsed();
        times.push((report["elapsed_us"].as_u64().unwrap(), wall));
    }
    eprintln!(
        "miss (asks the kubelet): stage {}µs, process {:?}",
        times[0].0, times[0].1
    );
    let mut hits: Vec<_> = times[1..].to_vec();
    hits.sort();
    eprintln!(
        "hits (cache): stage min {}µs median {}µs; process median {:?}",
        hits[0].0,
        hits[hits.len() / 2].0,
        hits[hits.len() / 2].1
    );
    assert_eq!(node.kubelet.requests(), 1);
}

/// A pod whose container mounts a claim bound to a PersistentVolume with gid 50000: the gid the
/// image's /etc/group also grants is kept, because the volume grants it (Strict keeps it too);
/// the claim and volume come from the API server (here the same stand-in) with the node's
/// identity. When the volume is bound to another claim, create fails closed naming both.
#[test]
fn a_persistent_volumes_gid_is_kept_and_explained() {
    if !require_root() {
        return;
    }
    let (env, node) = kubelet_env("kubelet-pv");
    // The kubeconfig's server is the stand-in: it answers as the API server too.
    node.pki
        .write_kubeconfig(
            &node.kubeconfig,
            &node.kubelet.url(),
            KubeconfigStyle::CombinedFile,
        )
        .unwrap();
    // The pod `uid` of user-alice/bypass-pod whose container mounts the claim `shared`.
    let with_claim = |uid: &str| {
        let mut p = pod("user-alice", "bypass-pod", uid, &[60000], None);
        p["spec"]["volumes"] = serde_json::json!([{"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}]);
        p["spec"]["containers"][0]["volumeMounts"] =
            serde_json::json!([{"name": "shared", "mountPath": "/shared"}]);
        pod_list(vec![p])
    };
    // The claim, bound to pv-shared (gid 50000), which names `bound_to` as its claim's uid.
    let volumes = |bound_to: &str| {
        node.kubelet.set_volumes(
            vec![pvc("user-alice", "shared", "claim-uid", "pv-shared")],
            vec![pv(
                "pv-shared",
                Some("50000"),
                "user-alice",
                "shared",
                bound_to,
            )],
        );
    };
    node.kubelet.set_pods(with_claim("u1"));
    volumes("claim-uid");

    let bundle = env.fixture_bundle("app-bypass-pod.config.json", "explained-pv", None);
    let text = env.explain_text(&bundle);
    assert!(
        text.contains(
            "volume gid:       50000 from PersistentVolume pv-shared (claim shared, volume \"shared\")"
        ),
        "{text}"
    );
    assert!(text.contains("dropped:          (none)"), "{text}");
    let report = env.explain_json(&bundle);
    assert_eq!(
        report["pod_groups"]["volume_gids"],
        serde_json::json!([{"gid": 50000, "volume": "shared", "claim": "shared",
                            "persistent_volume": "pv-shared"}]),
        "{report}"
    );

    let id = "app-pv";
    let bundle = env.fixture_bundle("app-bypass-pod.config.json", id, None);
    let before = std::fs::read(bundle.config_path()).unwrap();
    let pid = env.create_and_start(&bundle, id);
    assert_eq!(groups_of(pid).unwrap(), vec![1000, 50000, 60000]);
    assert_eq!(std::fs::read(bundle.config_path()).unwrap(), before);
    let paths: Vec<String> = node.kubelet.seen().into_iter().map(|r| r.path).collect();
    assert_eq!(
        &paths[paths.len() - 3..],
        [
            "/pods",
            "/api/v1/namespaces/user-alice/persistentvolumeclaims/shared",
            "/api/v1/persistentvolumes/pv-shared"
        ]
    );
    env.kill_and_delete(id, pid);

    // The volume now belongs to another claim (a pod of another uid, so the cache of u1 is
    // not used): the pod's groups cannot be determined, create fails and changes nothing.
    node.kubelet.set_pods(with_claim("u1-new"));
    volumes("someone-elses");
    let id = "app-pv-refused";
    let bundle = env.fixture_bundle("app-bypass-pod.config.json", id, None);
    let mut spec = bundle.read_config().unwrap();
    spec["annotations"]["io.kubernetes.cri.sandbox-uid"] = "u1-new".into();
    bundle.write_config(&spec).unwrap();
    env.create_refused(&bundle, id, &[]);
    let msg = env.last_error();
    assert!(
        msg.contains("volume \"shared\" (PersistentVolumeClaim user-alice/shared)")
            && msg.contains("bound to another claim")
            && msg.contains("refusing to create"),
        "{msg}"
    );
}
