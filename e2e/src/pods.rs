//! Where the runtime under test learns the pods' groups during the e2e run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use test_support::certs::{KubeconfigStyle, TestPki};
use test_support::kubelet::{Behaviour, KubeletStandIn};

use crate::cri::{PodDecl, pod_list};
use crate::runtime_config::write_atomic;

/// The pod-groups source the runtime is configured with.
pub enum PodSource {
    /// The kubelet stand-in: HTTPS on 127.0.0.1, client certificate required, the node's
    /// kubeconfig and the CA written to disk for the runtime (`pod-groups-source = "kubelet"`).
    Kubelet {
        standin: KubeletStandIn,
        kubeconfig: PathBuf,
        ca_file: PathBuf,
    },
    /// A PodList file (`pod-groups-source = "file"`).
    File { path: PathBuf },
}

impl PodSource {
    /// Starts a stand-in kubelet with a fresh test PKI whose files go into `dir`.
    pub fn kubelet(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let pki = TestPki::new()?;
        let standin = KubeletStandIn::start(&pki, Behaviour::Serve)?;
        let kubeconfig = pki.write_kubeconfig(
            &dir.join("kubelet.conf"),
            &standin.url(),
            KubeconfigStyle::FilePaths,
        )?;
        let ca_file = pki.write_files(&dir.join("pki"))?.ca_cert;
        Ok(Self::Kubelet {
            standin,
            kubeconfig,
            ca_file,
        })
    }

    pub fn file(dir: &Path) -> Self {
        Self::File {
            path: dir.join("pods.json"),
        }
    }

    /// The source `--pods-source` names (`kubelet` or `file`), its files in `dir`.
    pub fn new(kind: &str, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        match kind {
            "file" => Ok(Self::file(dir)),
            _ => Self::kubelet(dir),
        }
    }

    /// The runtime config keys that select this source.
    pub fn config_keys(&self) -> String {
        match self {
            Self::Kubelet {
                standin,
                kubeconfig,
                ca_file,
            } => format!(
                "pod-groups-source = \"kubelet\"\nkubelet-url = {}\nkubeconfig = {}\n\
                 kubelet-ca-file = {}\nrequest-timeout = \"2s\"\nlookup-deadline = \"5s\"\n\
                 retries = 1\n",
                toml_str(&standin.url()),
                toml_str(&kubeconfig.display().to_string()),
                toml_str(&ca_file.display().to_string()),
            ),
            Self::File { path } => format!(
                "pod-groups-source = \"file\"\npods-file = {}\n",
                toml_str(&path.display().to_string())
            ),
        }
    }

    /// What the source serves from now on: the pods, and the PersistentVolumeClaims and
    /// PersistentVolumes they mount (the kubelet stand-in serves those as the API server does;
    /// a pods file becomes a `List` holding all three kinds).
    pub fn set_pods(&mut self, pods: &[PodDecl]) -> Result<()> {
        let mut claims = Vec::new();
        let mut volumes = Vec::new();
        for pod in pods {
            let (c, v) = pod.volume_objects();
            claims.extend(c);
            volumes.extend(v);
        }
        match self {
            Self::Kubelet { standin, .. } => {
                standin.set_pods(pod_list(pods));
                standin.set_volumes(claims, volumes);
                Ok(())
            }
            Self::File { path } => {
                let document = if claims.is_empty() {
                    pod_list(pods)
                } else {
                    let mut items: Vec<serde_json::Value> =
                        pods.iter().map(PodDecl::pod_json).collect();
                    items.extend(claims);
                    items.extend(volumes);
                    serde_json::json!({"kind": "List", "apiVersion": "v1", "items": items})
                };
                write_atomic(path, &serde_json::to_vec_pretty(&document)?)
                    .with_context(|| format!("writing {}", path.display()))
            }
        }
    }

    /// Makes the source unavailable (the kubelet goes away).
    pub fn stop(&mut self) -> Result<()> {
        match self {
            Self::Kubelet { standin, .. } => {
                standin.stop();
                Ok(())
            }
            Self::File { path } => {
                let _ = std::fs::remove_file(&*path);
                Ok(())
            }
        }
    }

    /// The requests the stand-in kubelet saw: (path, client certificate CN). None for a file.
    pub fn seen(&self) -> Option<Vec<(String, String)>> {
        match self {
            Self::Kubelet { standin, .. } => Some(
                standin
                    .seen()
                    .into_iter()
                    .map(|r| (r.path, r.client_cn.unwrap_or_default()))
                    .collect(),
            ),
            Self::File { .. } => None,
        }
    }

    /// A word the runtime's error must contain when this source is unreachable.
    pub fn name_in_errors(&self) -> &'static str {
        match self {
            Self::Kubelet { .. } => "kubelet",
            Self::File { .. } => "pods file",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Kubelet { standin, .. } => format!("stand-in kubelet {}", standin.url()),
            Self::File { path } => format!("pods file {}", path.display()),
        }
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_owned()
}
