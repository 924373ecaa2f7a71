//! The shared vocabulary at the bottom of the library: which pod a container belongs to, what
//! the pod grants, who a container is, and why a pod's groups could not be determined. Every
//! other module may use these; these use nothing of the crate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which pod a container belongs to, as its annotations say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// What a pod grants, as the source reported it: the gids the kubelet puts into the CRI's
/// `supplemental_groups` (the pod's `supplementalGroups`, its `fsGroup`, and the gid annotation
/// of each PersistentVolume it mounts), and the `runAsGroup`s that decide which primary gids
/// are the pod's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodGroups {
    /// The uid of the pod the source returned.
    pub uid: String,
    pub supplemental_groups: Vec<u32>,
    pub fs_group: Option<u32>,
    /// `pv.beta.kubernetes.io/gid` of the PersistentVolumes bound to the pod's claims.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_gids: Vec<VolumeGid>,
    /// `spec.securityContext.runAsGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
    /// Every init, regular and ephemeral container with its own `securityContext.runAsGroup`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerGroups>,
}

/// A gid the pod holds because it mounts a PersistentVolume that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeGid {
    pub gid: u32,
    /// The pod's volume (`spec.volumes[].name`).
    pub volume: String,
    /// The PersistentVolumeClaim (a `persistentVolumeClaim.claimName`, or `<pod>-<volume>` for a
    /// generic ephemeral volume).
    pub claim: String,
    /// The PersistentVolume bound to it.
    pub persistent_volume: String,
}

/// A pod volume and the PersistentVolumeClaim behind it, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeClaimRef {
    /// `spec.volumes[].name`.
    pub volume: String,
    /// `namespace/name` of the claim.
    pub claim: String,
}

impl fmt::Display for VolumeClaimRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "volume {:?} (PersistentVolumeClaim {})",
            self.volume, self.claim
        )
    }
}

/// Which list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerKind {
    Init,
    Regular,
    Ephemeral,
}

/// One container of the pod spec, as far as its primary gid is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerGroups {
    pub name: String,
    pub kind: ContainerKind,
    /// The container's own `securityContext.runAsGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
}

impl PodGroups {
    /// supplementalGroups ∪ {fsGroup} ∪ volume gids: the CRI `supplemental_groups` the kubelet
    /// sends, and so what `supplementalGroupsPolicy: Strict` gives a container.
    pub fn granted(&self) -> impl Iterator<Item = u32> + '_ {
        self.supplemental_groups
            .iter()
            .copied()
            .chain(self.fs_group)
            .chain(self.volume_gids.iter().map(|v| v.gid))
    }

    /// The container of that name, in whichever list of the spec it is.
    pub fn container(&self, name: &str) -> Option<&ContainerGroups> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The `runAsGroup` that applies to a container: its own, else the pod's (as the kubelet
    /// resolves it). `None` when neither sets one: the image then chooses the primary gid.
    pub fn effective_run_as_group(&self, container: Option<&str>) -> Option<u32> {
        container
            .and_then(|name| self.container(name))
            .and_then(|c| c.run_as_group)
            .or(self.run_as_group)
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
    /// A volume whose PersistentVolume may carry a gid could not be resolved (claim missing,
    /// not bound, PersistentVolume missing or bound to another claim, API server unreachable).
    #[error("pod {pod}: cannot resolve {volume} through {source_name}: {cause:#}")]
    Volume {
        pod: PodRef,
        volume: Box<VolumeClaimRef>,
        source_name: &'static str,
        cause: anyhow::Error,
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

/// What kind of container this is, as far as group enforcement is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Identity {
    /// The pod's pause/infra container: not user code, passed through unchanged.
    Sandbox { pod: Option<PodRef> },
    /// A container of a Kubernetes pod: its groups are enforced.
    PodContainer {
        pod: PodRef,
        container_name: Option<String>,
    },
    /// No pod annotations: not created by Kubernetes (an admin's `ctr run`, podman).
    Unmanaged,
}
