//! The kubelet source: `GET {kubelet-url}/pods` with the node's client certificate, the
//! kubelet's serving certificate verified, bounded in time, and only the needed fields of each
//! pod parsed (see `podscan`).
//!
//! Trust, in order: `insecure-skip-tls-verify = true` (verification off, warned on every use);
//! `kubelet-ca-file` (a CA bundle, or the kubelet's self-signed
//! `/var/lib/kubelet/pki/kubelet.crt` itself); the kubeconfig cluster's CA (right when the
//! kubelet's serving certificate comes from the cluster CA, `serverTLSBootstrap: true`).
//!
//! Name: the certificate must be valid for `kubelet-tls-server-name` when set, else for the
//! URL's host. The kubelet's self-signed certificate names only the node's hostname, so when
//! the URL's host is loopback and no name is configured, this node's hostname is accepted too.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, anyhow};

use super::https::{Budget, Endpoint, HttpsClient, Response, TlsSetup, Trust};
use super::kubeconfig::{Kubeconfig, read_certs};
use super::podlist::find_pod;
use super::podscan;
use crate::config::HttpSourceConfig;
use crate::pod::{LookupError, PodGroups, PodGroupsSource, PodRef};

pub const SOURCE_NAME: &str = "kubelet";

pub struct KubeletSource {
    config: HttpSourceConfig,
}

impl KubeletSource {
    pub fn new(config: HttpSourceConfig) -> Self {
        Self { config }
    }

    /// Reads the kubeconfig and trust anchors and prepares TLS; sends nothing.
    fn client(&self) -> anyhow::Result<HttpsClient> {
        let endpoint = Endpoint::parse(&self.config.kubelet_url).context("kubelet-url")?;
        let kubeconfig = Kubeconfig::load(&self.config.kubeconfig)?;
        let identity = kubeconfig.client_identity()?;
        let trust = if self.config.insecure_skip_tls_verify {
            Trust::InsecureSkipVerify
        } else if let Some(ca_file) = &self.config.ca_file {
            Trust::Anchors {
                certs: read_ca_file(ca_file)?,
                origin: format!("kubelet-ca-file {}", ca_file.display()),
            }
        } else if let Some((certs, origin)) = kubeconfig.ca_certs()? {
            Trust::Anchors { certs, origin }
        } else {
            anyhow::bail!(
                "nothing to verify the kubelet's serving certificate with: set kubelet-ca-file \
                 (the CA that issued it, or the kubelet's self-signed \
                 /var/lib/kubelet/pki/kubelet.crt){}",
                if kubeconfig.insecure_skip_tls_verify {
                    "; the kubeconfig's insecure-skip-tls-verify is not honoured, only this \
                     runtime's own insecure-skip-tls-verify = true is"
                } else {
                    ""
                }
            );
        };
        HttpsClient::new(
            endpoint,
            TlsSetup {
                trust,
                identity,
                server_name: self.config.tls_server_name.clone(),
                loopback_alternatives: node_hostnames(),
                server_name_key: "kubelet-tls-server-name",
            },
        )
    }

    fn budget(&self, started: Instant) -> Budget {
        Budget {
            request_timeout: self.config.request_timeout,
            retries: self.config.retries,
            deadline: started + self.config.lookup_deadline,
        }
    }
}

pub fn read_ca_file(
    path: &Path,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    read_certs(&pem).with_context(|| path.display().to_string())
}

/// The names a kubelet's self-signed serving certificate may carry for this node: its
/// hostname as the kubelet derives it (trimmed, lower-cased).
fn node_hostnames() -> Vec<String> {
    let Ok(raw) = std::fs::read_to_string("/proc/sys/kernel/hostname") else {
        return Vec::new();
    };
    let raw = raw.trim();
    let lower = raw.to_ascii_lowercase();
    let mut names = vec![lower.clone()];
    if raw != lower {
        names.push(raw.to_owned());
    }
    names.retain(|n| !n.is_empty());
    names
}

impl PodGroupsSource for KubeletSource {
    fn describe(&self) -> String {
        format!("kubelet {}", self.config.kubelet_url)
    }

    fn lookup(&self, pod: &PodRef) -> Result<PodGroups, LookupError> {
        let started = Instant::now();
        let fail = |cause: anyhow::Error| LookupError::Source {
            pod: pod.clone(),
            source_name: SOURCE_NAME,
            cause,
        };
        let client = self.client().map_err(|e| {
            fail(e.context(format!(
                "preparing to ask the kubelet at {}",
                self.config.kubelet_url
            )))
        })?;
        let response = client
            .get("/pods", &self.budget(started))
            .map_err(|e| fail(anyhow!(e)))?;
        check_status(
            &response,
            &format!("the kubelet at {}", self.config.kubelet_url),
            "/pods",
            &self.config.kubeconfig,
            Permission::NodesProxy,
        )
        .map_err(fail)?;
        let list = podscan::scan_pod_list(&response.body, pod).map_err(|e| {
            fail(anyhow!(
                "the kubelet at {} answered GET /pods with something that is not a PodList \
                 ({e}): {}",
                self.config.kubelet_url,
                response.body_snippet()
            ))
        })?;
        let items = list.validate().map_err(|reason| {
            fail(anyhow!(
                "the kubelet at {} answered GET /pods with {reason}",
                self.config.kubelet_url
            ))
        })?;
        let found = find_pod(items, pod, SOURCE_NAME);
        tracing::debug!(
            url = self.config.kubelet_url.as_str(),
            pods = items.len(),
            bytes = response.body.len(),
            attempts = response.attempts,
            elapsed_us = started.elapsed().as_micros() as u64,
            found = found.is_ok(),
            "kubelet /pods lookup"
        );
        found
    }
}

/// Which permission a 401/403 points at.
#[derive(Clone, Copy)]
pub enum Permission {
    /// The kubelet's `/pods` (authorized as `nodes/proxy` get).
    NodesProxy,
    /// The API server's pods (get).
    PodsGet,
}

/// Turns a non-200 answer into a sentence an operator can act on.
pub fn check_status(
    response: &Response,
    who: &str,
    path: &str,
    kubeconfig: &Path,
    permission: Permission,
) -> anyhow::Result<()> {
    let status = response.status;
    if status == 200 {
        return Ok(());
    }
    let body = response.body_snippet();
    let attempts = if response.attempts > 1 {
        format!(
            " after {} attempts in {:.1?}",
            response.attempts, response.elapsed
        )
    } else {
        String::new()
    };
    let what = match permission {
        Permission::NodesProxy => format!(
            "the node's identity (the client certificate in kubeconfig {}) needs permission \
             to get nodes/proxy on this node — deploy/ ships that RBAC (a ClusterRole \
             granting get on nodes/proxy, bound to the group system:nodes)",
            kubeconfig.display()
        ),
        Permission::PodsGet => format!(
            "the identity in kubeconfig {} needs permission to get pods in that namespace",
            kubeconfig.display()
        ),
    };
    match status {
        401 => Err(anyhow!(
            "{who} answered GET {path} with 401 Unauthorized ({body:?}): it did not accept the \
             client certificate (expired, or not issued by the CA it trusts for clients?); \
             {what}"
        )),
        403 => Err(anyhow!(
            "{who} answered GET {path} with 403 Forbidden ({body:?}): {what}"
        )),
        _ => Err(anyhow!(
            "{who} answered GET {path} with HTTP {status}{attempts}: {body:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use serde_json::json;
    use test_support::certs::{KeyKind, KubeconfigStyle, PkiFiles, TestPki};
    use test_support::kubelet::{Behaviour, KubeletStandIn, filler_pods, pod, pod_list};

    use super::*;
    use crate::podgroups::cache::{CachedSource, PodGroupsCache};

    struct Setup {
        pki: TestPki,
        dir: tempfile::TempDir,
        files: PkiFiles,
        kubelet: KubeletStandIn,
        config: HttpSourceConfig,
    }

    fn alice() -> PodRef {
        PodRef {
            namespace: "user-alice".into(),
            name: "bypass-pod".into(),
            uid: Some("u1".into()),
        }
    }

    fn config(url: String, kubeconfig: PathBuf, ca_file: Option<PathBuf>) -> HttpSourceConfig {
        HttpSourceConfig {
            kubelet_url: url,
            kubeconfig,
            ca_file,
            tls_server_name: None,
            insecure_skip_tls_verify: false,
            request_timeout: Duration::from_secs(2),
            lookup_deadline: Duration::from_secs(5),
            retries: 2,
            cache_max_age: Duration::from_secs(3600),
            apiserver_url: None,
        }
    }

    fn setup_with(pki: TestPki, behaviour: Behaviour, style: KubeconfigStyle) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let files = pki.write_files(&dir.path().join("node-pki")).unwrap();
        let kubelet = KubeletStandIn::start(&pki, behaviour).unwrap();
        kubelet.set_pods(pod_list(vec![
            pod("kube-system", "coredns-1", "c1", &[], None),
            pod("user-alice", "bypass-pod", "u1", &[60000], None),
            pod("user-bob", "fsgroup-pod", "u2", &[60000], Some(70000)),
        ]));
        let kubeconfig = dir.path().join("kubelet.conf");
        pki.write_kubeconfig(&kubeconfig, "https://10.255.255.1:6443", style)
            .unwrap();
        let config = config(kubelet.url(), kubeconfig, Some(files.ca_cert.clone()));
        Setup {
            pki,
            dir,
            files,
            kubelet,
            config,
        }
    }

    fn setup(behaviour: Behaviour) -> Setup {
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
        assert_eq!(
            (g.uid.as_str(), g.supplemental_groups, g.fs_group),
            ("u1", vec![60000], None)
        );
        let bob = PodRef {
            namespace: "user-bob".into(),
            name: "fsgroup-pod".into(),
            uid: Some("u2".into()),
        };
        let g = lookup(&s.config, &bob).unwrap();
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
                PodGroupsCache::new(
                    &root,
                    s.config.cache_max_age,
                    crate::podgroups::CacheWrites::Allowed,
                ),
            )
        };
        // Two runtime processes, one per container of the pod.
        let first = cached().lookup(&alice()).unwrap();
        let second = cached().lookup(&alice()).unwrap();
        assert_eq!(first, second);
        assert_eq!(s.kubelet.requests(), 1);
        // The pod's sandbox is deleted: the next pod with that uid asks again.
        crate::podgroups::cache::remove_entry(&root, "u1");
        cached().lookup(&alice()).unwrap();
        assert_eq!(s.kubelet.requests(), 2);
        // Without a uid, every lookup asks.
        let no_uid = PodRef {
            uid: None,
            ..alice()
        };
        cached().lookup(&no_uid).unwrap();
        cached().lookup(&no_uid).unwrap();
        assert_eq!(s.kubelet.requests(), 4);
    }

    #[test]
    fn not_found_names_the_pod() {
        let s = setup(Behaviour::Serve);
        let ghost = PodRef {
            namespace: "user-alice".into(),
            name: "ghost".into(),
            uid: Some("u9".into()),
        };
        let err = lookup(&s.config, &ghost).unwrap_err();
        assert!(matches!(err, LookupError::NotFound { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("user-alice/ghost (uid u9)"), "{text}");
    }

    #[test]
    fn same_name_other_uid_is_an_error() {
        let s = setup(Behaviour::Serve);
        let reborn = PodRef {
            uid: Some("u1-new-life".into()),
            ..alice()
        };
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
        assert!(
            lookup(&config, &alice()).is_err_and(|e| matches!(e, LookupError::NotFound { .. }))
        );
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
            KubeletStandIn::start_with_cert(&serving, &s.pki.ca.cert_pem, Behaviour::Serve)
                .unwrap();
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
        let config = config(
            kubelet.url(),
            s.config.kubeconfig.clone(),
            Some(kubelet_crt.clone()),
        );
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
        let kubeconfig = s.dir.path().join("stranger.conf");
        stranger
            .write_kubeconfig(&kubeconfig, "https://x", KubeconfigStyle::InlineData)
            .unwrap();
        let config = config(s.kubelet.url(), kubeconfig, Some(s.files.ca_cert.clone()));
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
        let far = PodRef {
            namespace: "filler-18".into(),
            name: "filler-498".into(),
            uid: Some("filler-uid-498".into()),
        };
        let g = lookup(&s.config, &far).unwrap();
        assert_eq!(
            (g.supplemental_groups, g.fs_group),
            (vec![3003], Some(4000))
        );
    }

    /// Lookup latency over TLS against the stand-in. Run in release:
    /// `cargo test --release --bin strict-supplementalgroups-container-runtime -- --ignored
    /// --nocapture kubelet_lookup_latency`
    #[test]
    #[ignore = "benchmark; run with --release --ignored"]
    fn kubelet_lookup_latency() {
        let s = setup(Behaviour::Serve);
        for n in [110usize, 1_000, 5_000] {
            let mut items = filler_pods(n - 1);
            items.push(pod("user-alice", "bypass-pod", "u1", &[60000], None));
            let list = pod_list(items);
            let bytes = serde_json::to_vec(&list).unwrap().len();
            s.kubelet.set_pods(list);
            let mut times = Vec::new();
            for _ in 0..30 {
                let started = Instant::now();
                lookup(&s.config, &alice()).unwrap();
                times.push(started.elapsed());
            }
            times.sort();
            let client = KubeletSource::new(s.config.clone()).client().unwrap();
            let mut transfer = Vec::new();
            for _ in 0..10 {
                let started = Instant::now();
                let budget = KubeletSource::new(s.config.clone()).budget(started);
                std::hint::black_box(client.get("/pods", &budget).unwrap());
                transfer.push(started.elapsed());
            }
            transfer.sort();
            println!(
                "      GET only: min {:?} median {:?}",
                transfer[0], transfer[5]
            );
            let body = serde_json::to_vec(&pod_list(filler_pods(n))).unwrap();
            let mut parse = Vec::new();
            for _ in 0..10 {
                let started = Instant::now();
                let list = podscan::scan_pod_list(&body, &alice()).unwrap();
                std::hint::black_box(find_pod(list.validate().unwrap(), &alice(), "x").ok());
                parse.push(started.elapsed());
            }
            parse.sort();
            println!("      parse only: min {:?} median {:?}", parse[0], parse[5]);
            println!(
                "{n:>5} pods ({:>5} KiB): min {:?} median {:?} p90 {:?}",
                bytes / 1024,
                times[0],
                times[times.len() / 2],
                times[times.len() * 9 / 10]
            );
        }
    }
}
