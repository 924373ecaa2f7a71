//! The kubelet and API server sources through the network, in-process, against the HTTPS
//! stand-in (test_support::kubelet: client certificates required, settable pods, claims and
//! volumes, misbehaviour on demand). No root needed. The containers that use these sources are
//! tested in `kubelet_source.rs`.

mod common;

use std::time::{Duration, Instant};

use common::kubelet::{ApiServer, Node, alice, pod_ref};
use serde_json::json;
use strict_supplementalgroups::config::HttpSourceConfig;
use strict_supplementalgroups::pod::{
    ContainerKind, LookupError, PodGroups, PodGroupsSource, PodRef,
};
use strict_supplementalgroups::podgroups::CacheWrites;
use strict_supplementalgroups::podgroups::apiserver::ApiServerSource;
use strict_supplementalgroups::podgroups::cache::{CachedSource, PodGroupsCache};
use strict_supplementalgroups::podgroups::kubelet::KubeletSource;
use strict_supplementalgroups::podgroups::podlist::find_pod;
use strict_supplementalgroups::podgroups::podscan;
use test_support::certs::{KeyKind, KubeconfigStyle, TestPki};
use test_support::kubelet::{Behaviour, KubeletStandIn, filler_pods, pod, pod_list};

/// A node whose kubelet (the stand-in) runs three pods, alice's among them; its kubeconfig's
/// API server is elsewhere.
fn setup_with(pki: TestPki, behaviour: Behaviour, style: KubeconfigStyle) -> Node {
    let node = Node::start_with(pki, behaviour, ApiServer::Elsewhere, style);
    node.kubelet.set_pods(pod_list(vec![
        pod("kube-system", "coredns-1", "c1", &[], None),
        pod("user-alice", "bypass-pod", "u1", &[60000], None),
        pod("user-bob", "fsgroup-pod", "u2", &[60000], Some(70000)),
    ]));
    node
}

fn setup(behaviour: Behaviour) -> Node {
    setup_with(
        TestPki::new().unwrap(),
        behaviour,
        KubeconfigStyle::InlineData,
    )
}

fn lookup(config: &HttpSourceConfig, pod: &PodRef) -> Result<PodGroups, LookupError> {
    KubeletSource::new(config.clone()).lookup(pod)
}

fn err_text(r: Result<PodGroups, LookupError>) -> String {
    let err = r.unwrap_err();
    format!("{err:#}")
}

#[test]
fn success() {
    let s = setup(Behaviour::Serve);
    let g = lookup(&s.config, &alice()).unwrap();
    // The stand-in's pods run as group 1000, with one container `app` of no group of its own.
    let containers: Vec<_> = g
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.kind, c.run_as_group))
        .collect();
    assert_eq!(containers, [("app", ContainerKind::Regular, None)]);
    assert_eq!(g.run_as_group, Some(1000));
    assert_eq!(
        (g.uid.as_str(), g.supplemental_groups, g.fs_group),
        ("u1", vec![60000], None)
    );
    let g = lookup(&s.config, &pod_ref("user-bob", "fsgroup-pod", "u2")).unwrap();
    assert_eq!(g.granted().collect::<Vec<_>>(), vec![60000, 70000]);
    let seen = s.kubelet.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/pods");
    assert_eq!(seen[0].client_cn.as_deref(), Some("system:node:test-node"));
}

#[test]
fn second_container_is_served_from_the_cache() {
    let s = setup(Behaviour::Serve);
    let root = s.dir.path().join("state");
    std::fs::create_dir_all(&root).unwrap();
    let cached = || {
        CachedSource::new(
            KubeletSource::new(s.config.clone()),
            PodGroupsCache::new(&root, s.config.cache_max_age, CacheWrites::Allowed),
        )
    };
    // Two runtime processes, one per container of the pod.
    let first = cached().lookup(&alice()).unwrap();
    let second = cached().lookup(&alice()).unwrap();
    assert_eq!(first, second);
    assert_eq!(s.kubelet.requests(), 1);
    // The pod's sandbox is deleted: the next pod with that uid asks again.
    strict_supplementalgroups::podgroups::cache::remove_entry(&root, "u1");
    cached().lookup(&alice()).unwrap();
    assert_eq!(s.kubelet.requests(), 2);
    // Without a uid, every lookup asks.
    let mut no_uid = alice();
    no_uid.uid = None;
    cached().lookup(&no_uid).unwrap();
    cached().lookup(&no_uid).unwrap();
    assert_eq!(s.kubelet.requests(), 4);
}

#[test]
fn not_found_names_the_pod() {
    let s = setup(Behaviour::Serve);
    let err = lookup(&s.config, &pod_ref("user-alice", "ghost", "u9")).unwrap_err();
    assert!(matches!(err, LookupError::NotFound { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("user-alice/ghost (uid u9)"), "{text}");
}

#[test]
fn same_name_other_uid_is_an_error() {
    let s = setup(Behaviour::Serve);
    let reborn = pod_ref("user-alice", "bypass-pod", "u1-new-life");
    let err = lookup(&s.config, &reborn).unwrap_err();
    assert!(matches!(err, LookupError::UidMismatch { .. }), "{err}");
    assert!(err.to_string().contains("u1-new-life"), "{err}");
}

#[test]
fn unauthorized_and_forbidden_point_at_nodes_proxy_and_are_not_retried() {
    for status in [401, 403] {
        let s = setup(Behaviour::Status(status));
        let text = err_text(lookup(&s.config, &alice()));
        assert!(text.contains(&status.to_string()), "{text}");
        assert!(text.contains("nodes/proxy"), "{text}");
        assert!(text.contains(&s.config.kubelet_url), "{text}");
        assert_eq!(s.kubelet.requests(), 1, "{status} must not be retried");
    }
}

#[test]
fn server_errors_are_retried() {
    let s = setup(Behaviour::StatusThenServe {
        status: 500,
        times: 2,
    });
    let g = lookup(&s.config, &alice()).unwrap();
    assert_eq!(g.supplemental_groups, vec![60000]);
    assert_eq!(s.kubelet.requests(), 3);
}

#[test]
fn server_errors_forever_fail_within_the_deadline() {
    let mut s = setup(Behaviour::Status(500));
    s.config.retries = 10;
    s.config.lookup_deadline = Duration::from_millis(700);
    s.config.request_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let text = err_text(lookup(&s.config, &alice()));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1000), "{took:?}");
    assert!(text.contains("500"), "{text}");
    assert!(text.contains("attempts"), "{text}");
    assert!(
        s.kubelet.requests() >= 2,
        "retried: {}",
        s.kubelet.requests()
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    let mut s = setup(Behaviour::Hang);
    s.config.request_timeout = Duration::from_millis(300);
    s.config.lookup_deadline = Duration::from_secs(2);
    let started = Instant::now();
    let text = err_text(lookup(&s.config, &alice()));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert!(text.contains("no complete answer"), "{text}");
    assert!(text.contains(&s.config.kubelet_url), "{text}");
}

#[test]
fn garbage_is_an_error() {
    let s = setup(Behaviour::Garbage);
    let text = err_text(lookup(&s.config, &alice()));
    assert!(text.contains("not a PodList"), "{text}");
    s.kubelet.set_behaviour(Behaviour::Serve);
    s.kubelet.set_pods(json!({"kind": "Status", "items": []}));
    let text = err_text(lookup(&s.config, &alice()));
    assert!(text.contains("expected kind PodList"), "{text}");
}

#[test]
fn a_server_certificate_from_another_ca_is_refused() {
    let s = setup(Behaviour::Serve);
    let impostor_cert = s
        .pki
        .other_ca
        .server_cert(&["127.0.0.1", "localhost"], KeyKind::EcP256)
        .unwrap();
    let impostor =
        KubeletStandIn::start_with_cert(&impostor_cert, &s.pki.ca.cert_pem, Behaviour::Serve)
            .unwrap();
    let mut config = s.config.clone();
    config.kubelet_url = impostor.url();
    let text = err_text(lookup(&config, &alice()));
    assert!(text.contains("not trusted"), "{text}");
    assert!(text.contains("some-other-ca"), "{text}");
    assert!(text.contains("kubelet-ca-file"), "{text}");
    assert_eq!(impostor.requests(), 0);

    // Only an explicit insecure-skip-tls-verify talks to it.
    config.insecure_skip_tls_verify = true;
    assert!(lookup(&config, &alice()).is_err_and(|e| matches!(e, LookupError::NotFound { .. })));
    assert_eq!(impostor.requests(), 1);
}

#[test]
fn a_certificate_for_another_name_is_refused_unless_configured() {
    let s = setup(Behaviour::Serve);
    let cert = s
        .pki
        .ca
        .server_cert(&["node-7.example"], KeyKind::EcP256)
        .unwrap();
    let other =
        KubeletStandIn::start_with_cert(&cert, &s.pki.ca.cert_pem, Behaviour::Serve).unwrap();
    other.set_pods(pod_list(vec![pod(
        "user-alice",
        "bypass-pod",
        "u1",
        &[1],
        None,
    )]));
    let mut config = s.config.clone();
    config.kubelet_url = other.url();
    let text = err_text(lookup(&config, &alice()));
    assert!(text.contains("not valid for the name"), "{text}");
    assert!(text.contains("kubelet-tls-server-name"), "{text}");
    config.tls_server_name = Some("node-7.example".into());
    assert_eq!(
        lookup(&config, &alice()).unwrap().supplemental_groups,
        vec![1]
    );
}

#[test]
fn the_kubelets_self_signed_certificate_file_is_a_trust_anchor() {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_ascii_lowercase();
    let s = setup(Behaviour::Serve);
    let serving = test_support::certs::kubelet_self_signed(&hostname).unwrap();
    let kubelet =
        KubeletStandIn::start_with_cert(&serving, &s.pki.ca.cert_pem, Behaviour::Serve).unwrap();
    kubelet.set_pods(pod_list(vec![pod(
        "user-alice",
        "bypass-pod",
        "u1",
        &[5],
        None,
    )]));
    let kubelet_crt = s.dir.path().join("kubelet.crt");
    std::fs::write(&kubelet_crt, &serving.cert_pem).unwrap();
    // Connecting to 127.0.0.1, the certificate names only the hostname: accepted because
    // the URL is loopback and no server name is configured.
    let config = HttpSourceConfig {
        kubelet_url: kubelet.url(),
        ca_file: Some(kubelet_crt.clone()),
        ..s.config.clone()
    };
    assert_eq!(
        lookup(&config, &alice()).unwrap().supplemental_groups,
        vec![5]
    );
    // A configured name is the only name accepted.
    let mut named = config.clone();
    named.tls_server_name = Some("someone-else".into());
    assert!(err_text(lookup(&named, &alice())).contains("not valid for the name"));
}

#[test]
fn the_kubeconfig_ca_is_used_without_kubelet_ca_file() {
    let mut s = setup(Behaviour::Serve);
    s.config.ca_file = None;
    assert!(lookup(&s.config, &alice()).is_ok());
    // Neither: a clear error, nothing sent.
    let bare = s.dir.path().join("bare.conf");
    std::fs::write(
        &bare,
        std::fs::read_to_string(&s.config.kubeconfig)
            .unwrap()
            .lines()
            .filter(|l| !l.contains("certificate-authority"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    s.config.kubeconfig = bare;
    let text = err_text(lookup(&s.config, &alice()));
    assert!(text.contains("set kubelet-ca-file"), "{text}");
    assert_eq!(s.kubelet.requests(), 1);
}

#[test]
fn no_client_certificate_is_a_clear_error() {
    let s = setup_with(
        TestPki::new().unwrap(),
        Behaviour::Serve,
        KubeconfigStyle::NoClientCert,
    );
    let text = err_text(lookup(&s.config, &alice()));
    assert!(text.contains("no client certificate"), "{text}");
    assert!(text.contains("kubelet.conf"), "{text}");
    assert_eq!(s.kubelet.requests(), 0);
}

#[test]
fn a_client_certificate_the_kubelet_does_not_accept_is_explained() {
    let s = setup(Behaviour::Serve);
    // A client certificate from a CA the kubelet does not trust.
    let stranger = TestPki::new().unwrap();
    // In a directory of its own: its PKI files must not replace the node's.
    let kubeconfig = s.dir.path().join("stranger").join("kubelet.conf");
    stranger
        .write_kubeconfig(&kubeconfig, "https://x", KubeconfigStyle::InlineData)
        .unwrap();
    let config = HttpSourceConfig {
        kubeconfig,
        ..s.config.clone()
    };
    let text = err_text(lookup(&config, &alice()));
    assert!(text.contains("refused our client certificate"), "{text}");
    assert_eq!(s.kubelet.requests(), 0);
}

#[test]
fn every_kubeconfig_style_and_key_type_works() {
    for (server_key, client_key) in [
        (KeyKind::EcP256, KeyKind::EcP256),
        (KeyKind::Rsa2048, KeyKind::Rsa2048),
        (KeyKind::EcP256, KeyKind::Rsa2048),
    ] {
        for style in [
            KubeconfigStyle::InlineData,
            KubeconfigStyle::FilePaths,
            KubeconfigStyle::CombinedFile,
        ] {
            let s = setup_with(
                TestPki::with_keys(server_key, client_key).unwrap(),
                Behaviour::Serve,
                style,
            );
            let g = lookup(&s.config, &alice())
                .unwrap_or_else(|e| panic!("{server_key:?}/{client_key:?} {style:?}: {e}"));
            assert_eq!(g.supplemental_groups, vec![60000]);
        }
    }
}

#[test]
fn a_kubelet_that_is_down_is_named() {
    let mut s = setup(Behaviour::Serve);
    let url = s.kubelet.url();
    s.kubelet.stop();
    s.config.lookup_deadline = Duration::from_secs(2);
    let started = Instant::now();
    let text = err_text(lookup(&s.config, &alice()));
    assert!(text.contains(&url), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
    assert!(text.contains("3 attempts"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn five_hundred_pods() {
    let s = setup(Behaviour::Serve);
    let mut items = filler_pods(499);
    items.insert(
        250,
        pod("user-alice", "bypass-pod", "u1", &[60000], Some(70000)),
    );
    s.kubelet.set_pods(pod_list(items));
    let g = lookup(&s.config, &alice()).unwrap();
    assert_eq!(
        (g.supplemental_groups, g.fs_group),
        (vec![60000], Some(70000))
    );
    let far = pod_ref("filler-18", "filler-498", "filler-uid-498");
    let g = lookup(&s.config, &far).unwrap();
    assert_eq!(
        (g.supplemental_groups, g.fs_group),
        (vec![3003], Some(4000))
    );
}

/// Where a kubelet lookup's time goes, over TLS against the stand-in with an RSA-2048 serving
/// key (a kubelet's self-signed default): preparing the client (kubeconfig, keys, trust), a
/// request with a tiny answer (connection + handshake), `GET /pods`, parsing it (the scanner
/// and the serde view), and the whole lookup. Run in release:
/// `cargo test --release --test http_sources -- --ignored --nocapture kubelet_lookup_latency`
#[test]
#[ignore = "benchmark; run with --release --ignored"]
fn kubelet_lookup_latency() {
    use strict_supplementalgroups::podgroups::podlist::PodListView;

    fn stats(mut t: Vec<Duration>) -> String {
        t.sort();
        format!("min {:>8.2?} median {:>8.2?}", t[0], t[t.len() / 2])
    }
    fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
        (0..rounds)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(f());
                started.elapsed()
            })
            .collect()
    }
    let s = setup_with(
        TestPki::with_keys(KeyKind::Rsa2048, KeyKind::EcP256).unwrap(),
        Behaviour::Serve,
        KubeconfigStyle::CombinedFile,
    );
    let source = KubeletSource::new(s.config.clone());
    let rounds = 40;
    for n in [110usize, 1_000, 5_000] {
        let mut items = filler_pods(n - 1);
        items.push(pod("user-alice", "bypass-pod", "u1", &[60000], None));
        let list = pod_list(items);
        let body = serde_json::to_vec(&list).unwrap();
        s.kubelet.set_pods(list);
        println!("{n} pods ({} KiB):", body.len() / 1024);
        println!(
            "  client setup  {}",
            stats(time(rounds, || source.client().unwrap()))
        );
        let client = source.client().unwrap();
        let budget = || source.budget(Instant::now());
        println!(
            "  tiny GET      {}",
            stats(time(rounds, || client.get("/nothing", &budget()).unwrap()))
        );
        println!(
            "  GET /pods     {}",
            stats(time(rounds, || client.get("/pods", &budget()).unwrap()))
        );
        println!(
            "  scan          {}",
            stats(time(rounds, || {
                let list = podscan::scan_pod_list(&body, &alice()).unwrap();
                find_pod(list.validate().unwrap(), &alice(), "x").is_ok()
            }))
        );
        println!(
            "  serde view    {}",
            stats(time(rounds, || {
                let list: PodListView = serde_json::from_slice(&body).unwrap();
                find_pod(list.validate().unwrap(), &alice(), "x").is_ok()
            }))
        );
        println!(
            "  lookup        {}",
            stats(time(rounds, || lookup(&s.config, &alice()).unwrap()))
        );
    }
}

// The API server source.

/// A node whose kubeconfig names the stand-in as its API server, which has alice's pod (with
/// fsGroup 70000); its kubelet is an address nobody answers, and the kubeconfig's CA is the
/// only trust anchor.
fn api_setup(behaviour: Behaviour) -> Node {
    let mut node = Node::start(behaviour, ApiServer::TheStandIn, KubeconfigStyle::FilePaths);
    node.kubelet.set_pods(pod_list(vec![pod(
        "user-alice",
        "bypass-pod",
        "u1",
        &[60000],
        Some(70000),
    )]));
    node.config.kubelet_url = "https://127.0.0.1:1".into();
    node.config.ca_file = None;
    node
}

#[test]
fn one_pod_per_request() {
    let s = api_setup(Behaviour::Serve);
    let source = ApiServerSource::new(s.config.clone());
    let g = source
        .lookup(&pod_ref("user-alice", "bypass-pod", "u1"))
        .unwrap();
    assert_eq!(g.granted().collect::<Vec<_>>(), vec![60000, 70000]);
    assert_eq!(g.run_as_group, Some(1000));
    assert_eq!(
        s.kubelet.seen()[0].path,
        "/api/v1/namespaces/user-alice/pods/bypass-pod"
    );
    let err = source
        .lookup(&pod_ref("user-alice", "ghost", "u9"))
        .unwrap_err();
    assert!(matches!(err, LookupError::NotFound { .. }), "{err}");
    let err = source
        .lookup(&pod_ref("user-alice", "bypass-pod", "u2"))
        .unwrap_err();
    assert!(matches!(err, LookupError::UidMismatch { .. }), "{err}");
}

#[test]
fn forbidden_and_retries() {
    let s = api_setup(Behaviour::Status(403));
    let source = ApiServerSource::new(s.config.clone());
    let err = format!(
        "{:#}",
        source
            .lookup(&pod_ref("user-alice", "bypass-pod", "u1"))
            .unwrap_err()
    );
    assert!(err.contains("403") && err.contains("get pods"), "{err}");
    s.kubelet.set_behaviour(Behaviour::StatusThenServe {
        status: 503,
        times: 1,
    });
    source
        .lookup(&pod_ref("user-alice", "bypass-pod", "u1"))
        .unwrap();
    assert_eq!(s.kubelet.requests(), 3);
}

#[test]
fn apiserver_url_overrides_the_kubeconfig() {
    let s = api_setup(Behaviour::Serve);
    let mut config = s.config.clone();
    let url = s.kubelet.url();
    config.apiserver_url = Some("https://127.0.0.1:1".into());
    config.lookup_deadline = Duration::from_millis(500);
    let err = format!(
        "{:#}",
        ApiServerSource::new(config.clone())
            .lookup(&pod_ref("user-alice", "bypass-pod", "u1"))
            .unwrap_err()
    );
    assert!(err.contains("https://127.0.0.1:1"), "{err}");
    config.apiserver_url = Some(url);
    ApiServerSource::new(config)
        .lookup(&pod_ref("user-alice", "bypass-pod", "u1"))
        .unwrap();
}

/// The kubelet lookup as a runtime process does it (a fresh `explain` per lookup, a pod uid the
/// cache has never seen), for several runtime binaries interleaved round by round, so that the
/// load of a shared machine hits them alike: `SSG_RUNTIMES=/path/a,/path/b cargo test --release
/// --test http_sources -- --ignored --nocapture explain_lookup_latency_of_binaries`. Prints the
/// stage's own time (`elapsed_us`) and the process's minor page faults.
#[test]
#[ignore = "benchmark; run with --release --ignored and SSG_RUNTIMES"]
fn explain_lookup_latency_of_binaries() {
    use std::os::unix::process::ExitStatusExt as _;

    let Ok(list) = std::env::var("SSG_RUNTIMES") else {
        eprintln!("set SSG_RUNTIMES to a comma-separated list of runtime binaries");
        return;
    };
    let binaries: Vec<&str> = list.split(',').collect();
    let s = setup_with(
        TestPki::with_keys(KeyKind::Rsa2048, KeyKind::EcP256).unwrap(),
        Behaviour::Serve,
        KubeconfigStyle::CombinedFile,
    );
    let dir = s.dir.path();
    let config = dir.join("runtime.toml");
    std::fs::write(&config, s.runtime_config("")).unwrap();
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::copy(
        test_support::fixtures::containerd_fixture("app-bypass-pod.config.json"),
        bundle.join("config.json"),
    )
    .unwrap();
    for n in [110usize, 1_000] {
        let mut items = filler_pods(n - 1);
        items.push(pod("user-alice", "bypass-pod", "u1", &[60000], None));
        s.kubelet.set_pods(pod_list(items));
        let mut samples: Vec<Vec<(u64, i64)>> = vec![Vec::new(); binaries.len()];
        for _ in 0..40 {
            for (i, binary) in binaries.iter().enumerate() {
                // Reaped below with wait4, which also gives its resource usage.
                #[allow(clippy::zombie_processes)]
                let child = std::process::Command::new(binary)
                    .args(["--root", dir.join("root").to_str().unwrap()])
                    .args(["explain", "--format", "json", "--bundle"])
                    .arg(&bundle)
                    .env(common::CONFIG_ENV, &config)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                let pid = child.id() as i32;
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut child.stdout.unwrap(), &mut out).unwrap();
                let mut status = 0;
                // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
                let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
                // SAFETY: pid is our child, status and usage are valid pointers.
                unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
                assert!(
                    std::process::ExitStatus::from_raw(status).success(),
                    "{binary}"
                );
                let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
                samples[i].push((report["elapsed_us"].as_u64().unwrap(), usage.ru_minflt));
            }
        }
        for (binary, mut t) in binaries.iter().zip(samples) {
            t.sort();
            println!(
                "{n:>5} pods  {binary}: stage min {} µs, median {} µs; minor faults median {}",
                t[0].0,
                t[t.len() / 2].0,
                t[t.len() / 2].1
            );
        }
    }
}

/// A server that accepts the connection but never speaks TLS: the handshake times out within
/// request-timeout and is not retried (the server took the connection; asking again only adds
/// load), and the message says where it stopped.
#[test]
fn a_silent_server_times_out_in_the_handshake_once() {
    let s = api_setup(Behaviour::Serve);
    let mut config = s.config.clone();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.apiserver_url = Some(format!("https://{}", silent.local_addr().unwrap()));
    config.request_timeout = Duration::from_millis(300);
    config.lookup_deadline = Duration::from_secs(3);
    config.retries = 2;
    let started = Instant::now();
    let err = format!(
        "{:#}",
        ApiServerSource::new(config)
            .lookup(&pod_ref("user-alice", "bypass-pod", "u1"))
            .unwrap_err()
    );
    let took = started.elapsed();
    assert!(err.contains("(TLS handshake)"), "{err}");
    assert!(err.contains("1 attempt "), "{err}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    drop(silent);
}
