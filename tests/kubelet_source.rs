//! The kubelet pod source end to end: real containers from the captured containerd specs,
//! created by the runtime binary exactly as the containerd shim drives it, with their pod's
//! groups coming from a kubelet stand-in over mutual TLS (test_support::kubelet).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{TestEnv, require_root};
use serde_json::Value;
use test_support::certs::{KubeconfigStyle, PkiFiles, TestPki};
use test_support::fixtures::{Adapt, adapt, containerd_fixture, load_json};
use test_support::kubelet::{Behaviour, KubeletStandIn, filler_pods, pod, pod_list, pv, pvc};
use test_support::process::groups_of;
use test_support::rootfs::Bundle;
use test_support::runtime::last_error_msg;

const CONFIG_ENV: &str = "STRICT_SUPPLEMENTALGROUPS_CONFIG";

struct KubeletEnv {
    env: TestEnv,
    kubelet: KubeletStandIn,
    files: PkiFiles,
    kubeconfig: PathBuf,
    _pki: TestPki,
}

/// A test environment whose runtime asks a kubelet stand-in holding the captured pods (among
/// others), with a kubeconfig like a bootstrapped node's (kubelet-client-current.pem).
fn kubelet_env(name: &str) -> KubeletEnv {
    let mut env = TestEnv::new(name);
    let pki = TestPki::new().unwrap();
    let kubelet = KubeletStandIn::start(&pki, Behaviour::Serve).unwrap();
    let mut items = filler_pods(100);
    items.push(pod("user-alice", "bypass-pod", "u1", &[60000], None));
    items.push(pod(
        "user-alice",
        "fsgroup-pod",
        "u2",
        &[60000],
        Some(70000),
    ));
    kubelet.set_pods(pod_list(items));
    let files = pki.write_files(&env.path().join("pki")).unwrap();
    let kubeconfig = env.path().join("kubelet.conf");
    pki.write_kubeconfig(
        &kubeconfig,
        "https://10.255.255.1:6443",
        KubeconfigStyle::CombinedFile,
    )
    .unwrap();
    let config = write_config(&env, &kubelet.url(), &kubeconfig, &files);
    env.runtime = env
        .runtime
        .clone()
        .with_env(CONFIG_ENV, config.display().to_string());
    KubeletEnv {
        env,
        kubelet,
        files,
        kubeconfig,
        _pki: pki,
    }
}

fn write_config(env: &TestEnv, url: &str, kubeconfig: &Path, files: &PkiFiles) -> PathBuf {
    let path = env.path().join("runtime-config.toml");
    std::fs::write(
        &path,
        format!(
            "pod-groups-source = \"kubelet\"\nkubelet-url = {url:?}\nkubeconfig = {:?}\n\
             kubelet-ca-file = {:?}\nrequest-timeout = \"1s\"\nlookup-deadline = \"3s\"\n",
            kubeconfig.display().to_string(),
            files.ca_cert.display().to_string()
        ),
    )
    .unwrap();
    path
}

/// A bundle from a captured containerd spec, made runnable here.
fn fixture_bundle(env: &TestEnv, fixture: &str, id: &str, sandbox_pid: Option<i32>) -> Bundle {
    let mut spec = load_json(&containerd_fixture(fixture)).unwrap();
    let stubs = env.path().join(format!("stubs-{id}"));
    std::fs::create_dir_all(&stubs).unwrap();
    adapt(
        &mut spec,
        &Adapt {
            cgroups_path: env.cgroup(id),
            sandbox_pid,
            stub_dir: &stubs,
        },
    )
    .unwrap();
    env.bundle_with(id, &spec)
}

fn gids_in(spec: &Value) -> Vec<u64> {
    spec.pointer("/process/user/additionalGids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn cache_entry(env: &TestEnv, uid: &str) -> PathBuf {
    env.root
        .join(strict_supplementalgroups::podgroups::cache::CACHE_DIR)
        .join(format!("{uid}.json"))
}

#[test]
fn app_container_gets_its_groups_from_the_kubelet_and_the_next_one_from_the_cache() {
    if !require_root() {
        return;
    }
    let k = kubelet_env("kubelet-ok");
    let env = &k.env;

    // The sandbox passes through without asking anyone.
    let sandbox_spec = load_json(&containerd_fixture("sandbox-bypass-pod.config.json")).unwrap();
    let sandbox_id = sandbox_spec["annotations"]["io.kubernetes.cri.sandbox-id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sandbox = fixture_bundle(env, "sandbox-bypass-pod.config.json", &sandbox_id, None);
    let sandbox_pid = env.create(&sandbox, &sandbox_id, &[]);
    env.runtime
        .run(&["start", &sandbox_id])
        .unwrap()
        .expect_ok("start sandbox");
    assert_eq!(k.kubelet.requests(), 0);

    let id = "app-bypass";
    let bundle = fixture_bundle(env, "app-bypass-pod.config.json", id, Some(sandbox_pid));
    assert_eq!(
        gids_in(&bundle.read_config().unwrap()),
        vec![1000, 50000, 60000]
    );
    let started = Instant::now();
    let pid = env.create(&bundle, id, &[]);
    let first_create = started.elapsed();
    env.runtime.run(&["start", id]).unwrap().expect_ok("start");
    assert_eq!(groups_of(pid).unwrap(), vec![1000, 60000]);
    assert_eq!(gids_in(&bundle.read_config().unwrap()), vec![1000, 60000]);
    assert_eq!(k.kubelet.requests(), 1);
    let seen = k.kubelet.seen();
    assert_eq!(seen[0].path, "/pods");
    assert_eq!(seen[0].client_cn.as_deref(), Some("system:node:test-node"));
    assert!(cache_entry(env, "u1").exists());

    // A second container of the same pod (a sidecar, or a restart): no request.
    let id2 = "app-bypass-2";
    let bundle2 = fixture_bundle(env, "app-bypass-pod.config.json", id2, Some(sandbox_pid));
    let started = Instant::now();
    let pid2 = env.create(&bundle2, id2, &[]);
    let cached_create = started.elapsed();
    env.runtime
        .run(&["start", id2])
        .unwrap()
        .expect_ok("start 2");
    assert_eq!(groups_of(pid2).unwrap(), vec![1000, 60000]);
    assert_eq!(k.kubelet.requests(), 1, "served from the cache");
    eprintln!("create: first {first_create:?}, from the cache {cached_create:?}");

    // The shim's teardown: the apps, then the sandbox, whose delete forgets the pod.
    for (id, pid) in [(id, pid), (id2, pid2)] {
        env.runtime
            .run(&["kill", id, "9"])
            .unwrap()
            .expect_ok("kill");
        test_support::process::wait_gone(pid, Duration::from_secs(5)).unwrap();
        env.runtime
            .run(&["delete", "--force", id])
            .unwrap()
            .expect_ok("delete");
    }
    assert!(
        cache_entry(env, "u1").exists(),
        "app deletes keep the entry"
    );
    env.runtime
        .run(&["kill", &sandbox_id, "9"])
        .unwrap()
        .expect_ok("kill sandbox");
    test_support::process::wait_gone(sandbox_pid, Duration::from_secs(5)).unwrap();
    env.runtime
        .run(&["delete", "--force", &sandbox_id])
        .unwrap()
        .expect_ok("delete sandbox");
    assert!(
        !cache_entry(env, "u1").exists(),
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
    let k = kubelet_env("kubelet-explain");
    let env = &k.env;
    let bundle = fixture_bundle(env, "app-fsgroup-pod.config.json", "explained", None);
    let before = std::fs::read(bundle.config_path()).unwrap();
    let out = env
        .runtime
        .run(&[
            "explain",
            "--format",
            "json",
            "--bundle",
            bundle.dir.to_str().unwrap(),
        ])
        .unwrap()
        .expect_ok("explain");
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        report["source"]
            .as_str()
            .unwrap()
            .contains(&format!("kubelet {}", k.kubelet.url())),
        "{report}"
    );
    assert_eq!(report["pod_groups"]["uid"], "u2");
    assert_eq!(
        report["pod_groups"]["supplemental_groups"],
        serde_json::json!([60000])
    );
    assert_eq!(report["pod_groups"]["fs_group"], 70000);
    assert_eq!(std::fs::read(bundle.config_path()).unwrap(), before);
    assert_eq!(k.kubelet.requests(), 1);

    let text = env
        .runtime
        .run(&["explain", "--bundle", bundle.dir.to_str().unwrap()])
        .unwrap()
        .expect_ok("explain text");
    assert!(
        text.stdout
            .contains("pod grants:       supplementalGroups [60000], fsGroup 70000"),
        "{}",
        text.stdout
    );
}

#[test]
fn create_fails_closed_naming_the_kubelet_when_it_is_down() {
    if !require_root() {
        return;
    }
    let mut k = kubelet_env("kubelet-down");
    let url = k.kubelet.url();
    k.kubelet.stop();
    let env = &k.env;
    let id = "app-down";
    let bundle = fixture_bundle(env, "app-bypass-pod.config.json", id, None);
    let before = std::fs::read(bundle.config_path()).unwrap();
    let started = Instant::now();
    let out = env
        .runtime
        .clone()
        .with_cwd(&bundle.dir)
        .run(&[
            "create",
            "--bundle",
            bundle.dir.to_str().unwrap(),
            "--pid-file",
            bundle.dir.join("init.pid").to_str().unwrap(),
            id,
        ])
        .unwrap();
    assert!(!out.success(), "create must fail");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "within the deadline"
    );
    let msg = last_error_msg(&env.log).unwrap();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("user-alice/bypass-pod"), "{msg}");
    assert!(msg.contains("refusing to create"), "{msg}");
    assert_eq!(std::fs::read(bundle.config_path()).unwrap(), before);
    assert!(!env.root.join(id).exists());
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
    let k = kubelet_env("kubelet-refuses");
    let env = &k.env;
    let cases = [
        (Behaviour::Status(403), "nodes/proxy", "forbidden"),
        (Behaviour::Serve, "not found", "ghost"),
    ];
    for (behaviour, reason, id) in cases {
        k.kubelet.set_behaviour(behaviour);
        let bundle = fixture_bundle(env, "app-bypass-pod.config.json", id, None);
        if id == "ghost" {
            let mut spec = bundle.read_config().unwrap();
            spec["annotations"]["io.kubernetes.cri.sandbox-name"] = "ghost-pod".into();
            bundle.write_config(&spec).unwrap();
        }
        let out = env
            .runtime
            .clone()
            .with_cwd(&bundle.dir)
            .run(&["create", "--bundle", bundle.dir.to_str().unwrap(), id])
            .unwrap();
        assert!(!out.success(), "{id}");
        let msg = last_error_msg(&env.log).unwrap();
        assert!(msg.contains(reason), "{id}: {msg}");
        assert!(!env.root.join(id).exists());
        assert!(!cache_entry(env, "u1").exists(), "failures are not cached");
    }
    // Sanity: the kubeconfig used is the node-style one.
    assert!(
        std::fs::read_to_string(&k.kubeconfig)
            .unwrap()
            .contains(k.files.client_combined.to_str().unwrap())
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
    let mut k = kubelet_env("kubelet-timing");
    if let Ok(binary) = std::env::var("SSG_RUNTIME") {
        k.env.runtime.binary = binary.into();
    }
    let env = &k.env;
    std::fs::create_dir_all(&env.root).unwrap();
    let bundle = fixture_bundle(env, "app-bypass-pod.config.json", "timed", None);
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let out = env
            .runtime
            .run(&[
                "explain",
                "--format",
                "json",
                "--bundle",
                bundle.dir.to_str().unwrap(),
            ])
            .unwrap()
            .expect_ok("explain");
        let wall = started.elapsed();
        let report: Value = serde_json::from_str(&out.stdout).unwrap();
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
    assert_eq!(k.kubelet.requests(), 1);
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
    let k = kubelet_env("kubelet-pv");
    let env = &k.env;
    // The kubeconfig's server is the stand-in: it answers as the API server too.
    k._pki
        .write_kubeconfig(
            &k.kubeconfig,
            &k.kubelet.url(),
            KubeconfigStyle::CombinedFile,
        )
        .unwrap();
    let bypass_volumes =
        serde_json::json!([{"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}]);
    let bypass_mounts = serde_json::json!([{"name": "shared", "mountPath": "/shared"}]);
    let mut bypass = pod("user-alice", "bypass-pod", "u1", &[60000], None);
    bypass["spec"]["volumes"] = bypass_volumes.clone();
    bypass["spec"]["containers"][0]["volumeMounts"] = bypass_mounts.clone();
    k.kubelet.set_pods(pod_list(vec![bypass]));
    k.kubelet.set_volumes(
        vec![pvc("user-alice", "shared", "claim-uid", "pv-shared")],
        vec![pv(
            "pv-shared",
            Some("50000"),
            "user-alice",
            "shared",
            "claim-uid",
        )],
    );

    let bundle = fixture_bundle(env, "app-bypass-pod.config.json", "explained-pv", None);
    let text = env
        .runtime
        .run(&["explain", "--bundle", bundle.dir.to_str().unwrap()])
        .unwrap()
        .expect_ok("explain");
    assert!(
        text.stdout.contains(
            "volume gid:       50000 from PersistentVolume pv-shared (claim shared, volume \"shared\")"
        ),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("dropped:          (none)"),
        "{}",
        text.stdout
    );
    let json = env
        .runtime
        .run(&[
            "explain",
            "--format",
            "json",
            "--bundle",
            bundle.dir.to_str().unwrap(),
        ])
        .unwrap()
        .expect_ok("explain json");
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        report["pod_groups"]["volume_gids"],
        serde_json::json!([{"gid": 50000, "volume": "shared", "claim": "shared",
                            "persistent_volume": "pv-shared"}]),
        "{report}"
    );

    let id = "app-pv";
    let bundle = fixture_bundle(env, "app-bypass-pod.config.json", id, None);
    let before = std::fs::read(bundle.config_path()).unwrap();
    let pid = env.create(&bundle, id, &[]);
    env.runtime.run(&["start", id]).unwrap().expect_ok("start");
    assert_eq!(groups_of(pid).unwrap(), vec![1000, 50000, 60000]);
    assert_eq!(std::fs::read(bundle.config_path()).unwrap(), before);
    let paths: Vec<String> = k.kubelet.seen().into_iter().map(|r| r.path).collect();
    assert_eq!(
        &paths[paths.len() - 3..],
        [
            "/pods",
            "/api/v1/namespaces/user-alice/persistentvolumeclaims/shared",
            "/api/v1/persistentvolumes/pv-shared"
        ]
    );
    env.runtime
        .run(&["kill", id, "9"])
        .unwrap()
        .expect_ok("kill");
    test_support::process::wait_gone(pid, Duration::from_secs(5)).unwrap();
    env.runtime
        .run(&["delete", "--force", id])
        .unwrap()
        .expect_ok("delete");

    // The volume now belongs to another claim (a pod of another uid, so the cache of u1 is
    // not used): the pod's groups cannot be determined, create fails and changes nothing.
    let mut other_life = pod("user-alice", "bypass-pod", "u1-new", &[60000], None);
    other_life["spec"]["volumes"] = bypass_volumes.clone();
    other_life["spec"]["containers"][0]["volumeMounts"] = bypass_mounts.clone();
    k.kubelet.set_pods(pod_list(vec![other_life]));
    k.kubelet.set_volumes(
        vec![pvc("user-alice", "shared", "claim-uid", "pv-shared")],
        vec![pv(
            "pv-shared",
            Some("50000"),
            "user-alice",
            "shared",
            "someone-elses",
        )],
    );
    let id = "app-pv-refused";
    let bundle = fixture_bundle(env, "app-bypass-pod.config.json", id, None);
    let mut spec = bundle.read_config().unwrap();
    spec["annotations"]["io.kubernetes.cri.sandbox-uid"] = "u1-new".into();
    bundle.write_config(&spec).unwrap();
    let before = std::fs::read(bundle.config_path()).unwrap();
    let out = env
        .runtime
        .clone()
        .with_cwd(&bundle.dir)
        .run(&["create", "--bundle", bundle.dir.to_str().unwrap(), id])
        .unwrap();
    assert!(!out.success(), "create must fail");
    let msg = last_error_msg(&env.log).unwrap();
    assert!(
        msg.contains("volume \"shared\" (PersistentVolumeClaim user-alice/shared)")
            && msg.contains("bound to another claim")
            && msg.contains("refusing to create"),
        "{msg}"
    );
    assert_eq!(std::fs::read(bundle.config_path()).unwrap(), before);
    assert!(!env.root.join(id).exists());
}
