//! Where a pod's `supplementalGroups` and `fsGroup` come from.
//!
//! The OCI spec does not carry them (containerd resets the sandbox's list, merges the image's
//! groups into the app's, and exec processes carry no annotations), so they are asked of a
//! source: a local PodList file, the kubelet, or the API server.

use std::fmt;

pub mod apiserver;
pub mod cache;
pub mod file;
pub mod https;
pub mod kubeconfig;
pub mod kubelet;
pub mod podlist;
pub mod podscan;

/// Which pod a container belongs to, as its annotations say.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// Present when the CRI annotates it (containerd and CRI-O both do); a pod found under the
    /// same name with another uid is a different pod and never a match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if let Some(uid) = &self.uid {
            write!(f, " (uid {uid})")?;
        }
        Ok(())
    }
}

/// The groups a pod's security context grants, as the source reported them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodGroups {
    /// The uid of the pod the source returned.
    pub uid: String,
    pub supplemental_groups: Vec<u32>,
    pub fs_group: Option<u32>,
}

impl PodGroups {
    /// supplementalGroups ∪ {fsGroup}.
    pub fn granted(&self) -> impl Iterator<Item = u32> + '_ {
        self.supplemental_groups
            .iter()
            .copied()
            .chain(self.fs_group)
    }
}

/// Why a pod's groups could not be determined. Every variant makes create and exec fail closed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("pod {pod} not found in {source_name}")]
    NotFound {
        pod: PodRef,
        source_name: &'static str,
    },
    #[error(
        "pod {}/{} in {source_name} has uid {found}, not {} (a different pod with the same name)",
        pod.namespace, pod.name, pod.uid.as_deref().unwrap_or("?")
    )]
    UidMismatch {
        pod: PodRef,
        found: String,
        source_name: &'static str,
    },
    #[error("pod {pod} in {source_name} has an invalid security context: {reason}")]
    InvalidPod {
        pod: PodRef,
        reason: String,
        source_name: &'static str,
    },
    #[error("looking up pod {pod} in {source_name}: {cause:#}")]
    Source {
        pod: PodRef,
        source_name: &'static str,
        cause: anyhow::Error,
    },
}

/// A place to ask for a pod's groups.
pub trait PodGroupsSource {
    /// Short name for logs and errors (`file /etc/pods.json`, `kubelet https://…`).
    fn describe(&self) -> String;

    fn lookup(&self, pod: &PodRef) -> Result<PodGroups, LookupError>;
}

/// The source the configuration names. The kubelet and API server sources sit behind the
/// per-pod-uid cache under `state_root`; building them reads no file and initialises no TLS
/// (that happens on a cache miss).
pub fn from_config(
    config: &crate::config::Config,
    state_root: &std::path::Path,
) -> anyhow::Result<Box<dyn PodGroupsSource>> {
    use crate::config::SourceKind;
    tracing::trace!(source = config.source.as_str(), "pod groups source");
    match config.source {
        SourceKind::File => {
            let path = config
                .pods_file
                .clone()
                .ok_or_else(|| anyhow::anyhow!("pods-file is not configured"))?;
            Ok(Box::new(file::FileSource::new(path)))
        }
        SourceKind::Kubelet => Ok(Box::new(cache::CachedSource::new(
            kubelet::KubeletSource::new(config.kubelet.clone()),
            cache::PodGroupsCache::new(state_root, config.kubelet.cache_max_age),
        ))),
        SourceKind::Apiserver => Ok(Box::new(cache::CachedSource::new(
            apiserver::ApiServerSource::new(config.kubelet.clone()),
            cache::PodGroupsCache::new(state_root, config.kubelet.cache_max_age),
        ))),
    }
}
