//! A node's view of its kubelet and API server, played by one HTTPS stand-in
//! (test_support::kubelet): a PKI, the stand-in requiring client certificates, and the node's
//! PKI files and kubeconfig in a temp dir of their own. Tests of the HTTP sources use its
//! [`Node::config`] in-process; runtimes under test get [`Node::runtime_config`].

use std::path::PathBuf;
use std::time::Duration;

use strict_supplementalgroups::config::HttpSourceConfig;
use strict_supplementalgroups::pod::PodRef;
use test_support::certs::{KubeconfigStyle, PkiFiles, TestPki};
use test_support::kubelet::{Behaviour, KubeletStandIn};

/// An address nobody answers: the API server of a node whose kubeconfig is never used for
/// anything but its credentials (pods without claims need no API server).
pub const NOWHERE: &str = "https://10.255.255.1:6443";

/// The server the node's kubeconfig names.
#[derive(Clone, Copy, Debug)]
pub enum ApiServer {
    /// [`NOWHERE`].
    Elsewhere,
    /// The stand-in, which answers as the API server too (pods, claims, volumes).
    TheStandIn,
}

pub struct Node {
    pub pki: TestPki,
    /// Holds the kubeconfig and the PKI files (`pki/`, as [`TestPki::write_kubeconfig`] puts
    /// them beside it: another kubeconfig written into `dir` would replace them).
    pub dir: tempfile::TempDir,
    pub files: PkiFiles,
    pub kubelet: KubeletStandIn,
    /// `kubelet.conf` in `dir`.
    pub kubeconfig: PathBuf,
    /// The kubelet source's settings for this node: the stand-in as kubelet, its CA as
    /// kubelet-ca-file, 2 s per request, 5 s per lookup, 2 retries. Tests change what they
    /// are about.
    pub config: HttpSourceConfig,
}

impl Node {
    /// A node with EC keys throughout.
    pub fn start(behaviour: Behaviour, api_server: ApiServer, style: KubeconfigStyle) -> Self {
        Self::start_with(
            TestPki::new().expect("test PKI"),
            behaviour,
            api_server,
            style,
        )
    }

    pub fn start_with(
        pki: TestPki,
        behaviour: Behaviour,
        api_server: ApiServer,
        style: KubeconfigStyle,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Where the kubeconfig's styles that name files find them.
        let files = pki
            .write_files(&dir.path().join("pki"))
            .expect("writing PKI files");
        let kubelet = KubeletStandIn::start(&pki, behaviour).expect("starting the stand-in");
        let kubeconfig = dir.path().join("kubelet.conf");
        let server = match api_server {
            ApiServer::Elsewhere => NOWHERE.to_owned(),
            ApiServer::TheStandIn => kubelet.url(),
        };
        pki.write_kubeconfig(&kubeconfig, &server, style)
            .expect("writing kubeconfig");
        let config = HttpSourceConfig {
            kubelet_url: kubelet.url(),
            kubeconfig: kubeconfig.clone(),
            ca_file: Some(files.ca_cert.clone()),
            tls_server_name: None,
            insecure_skip_tls_verify: false,
            request_timeout: Duration::from_secs(2),
            lookup_deadline: Duration::from_secs(5),
            retries: 2,
            cache_max_age: Duration::from_secs(3600),
            apiserver_url: None,
        };
        Self {
            pki,
            dir,
            files,
            kubelet,
            kubeconfig,
            config,
        }
    }

    /// A runtime config.toml for the kubelet source of this node, `extra` appended.
    pub fn runtime_config(&self, extra: &str) -> String {
        format!(
            "pod-groups-source = \"kubelet\"\nkubelet-url = {:?}\nkubeconfig = {:?}\n\
             kubelet-ca-file = {:?}\n{extra}",
            self.kubelet.url(),
            self.kubeconfig.display().to_string(),
            self.files.ca_cert.display().to_string()
        )
    }
}

/// `namespace/name` with `uid`.
pub fn pod_ref(namespace: &str, name: &str, uid: &str) -> PodRef {
    PodRef {
        namespace: namespace.into(),
        name: name.into(),
        uid: Some(uid.into()),
    }
}

/// The captured bypass pod: `user-alice/bypass-pod`, uid u1.
pub fn alice() -> PodRef {
    pod_ref("user-alice", "bypass-pod", "u1")
}
