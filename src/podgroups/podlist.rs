//! Reads only what is needed from Kubernetes objects: from a pod its namespace, name, uid, the
//! groups of its security context, every container's `runAsGroup`, and the volumes that may
//! carry a PersistentVolume gid; from a PersistentVolumeClaim and a PersistentVolume the
//! binding between them and the gid annotation. Every other field is skipped by the
//! deserializer without being built, which keeps a 5,000-pod reply cheap.
//!
//! One view type serves the three kinds ([`ObjectView`]): a `List` in a pods file mixes them,
//! and their fields do not collide (`spec.volumeName` is a claim's, `spec.claimRef` a volume's,
//! the rest a pod's).

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::pod::{ContainerGroups, ContainerKind, LookupError, PodGroups, PodRef};

/// The annotation a PersistentVolume carries its gid in (`pv.beta.kubernetes.io/gid`).
pub const VOLUME_GID_ANNOTATION: &str = "pv.beta.kubernetes.io/gid";

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PodListView {
    pub kind: Option<String>,
    pub items: Option<Vec<ObjectView>>,
}

/// A pod, a PersistentVolumeClaim or a PersistentVolume, as far as this runtime reads them.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct ObjectView {
    pub kind: Option<String>,
    pub metadata: MetadataView,
    pub spec: Option<SpecView>,
    pub status: Option<StatusView>,
}

/// A pod as the sources read it.
pub type PodView = ObjectView;

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default, rename_all = "camelCase")]
pub struct MetadataView {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
    /// Set on an object that is being deleted (a claim in that state must not be used).
    pub deletion_timestamp: Option<IgnoredAny>,
    pub owner_references: Option<Vec<OwnerReferenceView>>,
    pub annotations: Option<AnnotationsView>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct OwnerReferenceView {
    pub uid: Option<String>,
    pub controller: Option<bool>,
}

/// The only annotation read (of a PersistentVolume); the others are skipped.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct AnnotationsView {
    #[serde(rename = "pv.beta.kubernetes.io/gid")]
    pub volume_gid: Option<String>,
}

/// The spec fields read from the three kinds.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default, rename_all = "camelCase")]
pub struct SpecView {
    // Pod.
    pub security_context: Option<PodSecurityContextView>,
    pub volumes: Option<Vec<PodVolumeView>>,
    pub init_containers: Option<Vec<ContainerView>>,
    pub containers: Option<Vec<ContainerView>>,
    pub ephemeral_containers: Option<Vec<ContainerView>>,
    // PersistentVolumeClaim.
    pub volume_name: Option<String>,
    // PersistentVolume.
    pub claim_ref: Option<ClaimRefView>,
}

/// Kubernetes declares these int64; out-of-range values are rejected, not truncated.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSecurityContextView {
    pub supplemental_groups: Option<Vec<i64>>,
    pub fs_group: Option<i64>,
    pub run_as_group: Option<i64>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerView {
    pub name: Option<String>,
    pub security_context: Option<ContainerSecurityContextView>,
    pub volume_mounts: Option<Vec<VolumeUseView>>,
    pub volume_devices: Option<Vec<VolumeUseView>>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerSecurityContextView {
    pub run_as_group: Option<i64>,
}

/// A `volumeMounts` or `volumeDevices` entry: which pod volume a container uses.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct VolumeUseView {
    pub name: Option<String>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default, rename_all = "camelCase")]
pub struct PodVolumeView {
    pub name: Option<String>,
    pub persistent_volume_claim: Option<ClaimSourceView>,
    /// A generic ephemeral volume; only its presence matters (its claim is `<pod>-<volume>`).
    pub ephemeral: Option<IgnoredAny>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default, rename_all = "camelCase")]
pub struct ClaimSourceView {
    pub claim_name: Option<String>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct ClaimRefView {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct StatusView {
    pub phase: Option<String>,
}

impl ObjectView {
    /// A pod, unless its `kind` says otherwise (items of a PodList carry no kind).
    pub fn is_pod(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("Pod"))
    }
}

impl PodListView {
    /// Checks the document is a list of pods, not some other object that happens to parse.
    pub fn validate(&self) -> Result<&[ObjectView], String> {
        match self.kind.as_deref() {
            Some("PodList") | Some("List") | None => {}
            Some(other) => return Err(format!("expected kind PodList, got {other}")),
        }
        self.items
            .as_deref()
            .ok_or_else(|| "no `items` array: not a PodList".to_owned())
    }
}

/// The pod by namespace and name (and uid, when the reference carries one), as it is in the
/// list: the source resolves its volumes before converting it.
pub fn find_pod<'a>(
    items: &'a [ObjectView],
    wanted: &PodRef,
    source_name: &'static str,
) -> Result<&'a ObjectView, LookupError> {
    let mut same_name_other_uid: Option<String> = None;
    for pod in items.iter().filter(|i| i.is_pod()) {
        let meta = &pod.metadata;
        if meta.namespace.as_deref() != Some(wanted.namespace.as_str())
            || meta.name.as_deref() != Some(wanted.name.as_str())
        {
            continue;
        }
        if let Some(uid) = &wanted.uid {
            if meta.uid.as_deref() != Some(uid.as_str()) {
                // Keep looking: a static pod and its mirror, or a pod mid-replacement, can list
                // the same name twice; only the right uid may match.
                same_name_other_uid = Some(meta.uid.clone().unwrap_or_default());
                continue;
            }
        }
        return Ok(pod);
    }
    match same_name_other_uid {
        Some(found) => Err(LookupError::UidMismatch {
            pod: wanted.clone(),
            found,
            source_name,
        }),
        None => Err(LookupError::NotFound {
            pod: wanted.clone(),
            source_name,
        }),
    }
}

/// Converts one pod's security contexts, rejecting gids that cannot exist on Linux. Volume
/// gids are not here: they need the pod's claims (see `volumes`).
pub fn groups_of(
    pod: &PodView,
    wanted: &PodRef,
    source_name: &'static str,
) -> Result<PodGroups, LookupError> {
    let invalid = |reason: String| LookupError::InvalidPod {
        pod: wanted.clone(),
        reason,
        source_name,
    };
    let to_gid = |field: &str, v: i64| {
        u32::try_from(v).map_err(|_| invalid(format!("{field} {v} is not a valid gid")))
    };
    let spec = pod.spec.as_ref();
    let ctx = spec.and_then(|s| s.security_context.as_ref());
    let supplemental_groups = ctx
        .and_then(|c| c.supplemental_groups.as_ref())
        .map(|gids| {
            gids.iter()
                .map(|&g| to_gid("supplementalGroups entry", g))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let fs_group = ctx
        .and_then(|c| c.fs_group)
        .map(|g| to_gid("fsGroup", g))
        .transpose()?;
    let run_as_group = ctx
        .and_then(|c| c.run_as_group)
        .map(|g| to_gid("runAsGroup", g))
        .transpose()?;
    let mut containers = Vec::new();
    if let Some(spec) = spec {
        for (kind, list, field) in [
            (ContainerKind::Init, &spec.init_containers, "initContainers"),
            (ContainerKind::Regular, &spec.containers, "containers"),
            (
                ContainerKind::Ephemeral,
                &spec.ephemeral_containers,
                "ephemeralContainers",
            ),
        ] {
            for c in list.iter().flatten() {
                let name = c.name.clone().unwrap_or_default();
                let run_as_group = c
                    .security_context
                    .as_ref()
                    .and_then(|s| s.run_as_group)
                    .map(|g| to_gid(&format!("{field}[{name}].securityContext.runAsGroup"), g))
                    .transpose()?;
                containers.push(ContainerGroups {
                    name,
                    kind,
                    run_as_group,
                });
            }
        }
    }
    Ok(PodGroups {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        supplemental_groups,
        fs_group,
        volume_gids: Vec::new(),
        run_as_group,
        containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{
      "kind": "PodList", "apiVersion": "v1", "metadata": {},
      "items": [
        {"metadata": {"namespace": "a", "name": "p", "uid": "u-old", "labels": {"x": "y"}},
         "spec": {"containers": [{"name": "c", "image": "i"}],
                  "securityContext": {"supplementalGroups": [1], "fsGroup": 2}},
         "status": {"phase": "Running"}},
        {"metadata": {"namespace": "a", "name": "p", "uid": "u-new"},
         "spec": {"securityContext": {"supplementalGroups": [60000, 60001], "runAsUser": 1000}}},
        {"metadata": {"namespace": "b", "name": "nosec", "uid": "u3"}, "spec": {}},
        {"metadata": {"namespace": "b", "name": "bad", "uid": "u4"},
         "spec": {"securityContext": {"supplementalGroups": [-1]}}},
        {"metadata": {"namespace": "b", "name": "huge", "uid": "u5"},
         "spec": {"securityContext": {"fsGroup": 4294967296}}},
        {"metadata": {"namespace": "b", "name": "groups", "uid": "u6"},
         "spec": {"securityContext": {"runAsGroup": 3000},
                  "initContainers": [{"name": "init", "securityContext": {"runAsGroup": 3001}}],
                  "containers": [{"name": "app"},
                                 {"name": "side", "securityContext": {"runAsUser": 5,
                                                                       "runAsGroup": 3002}}],
                  "ephemeralContainers": [{"name": "debug",
                                           "securityContext": {"runAsGroup": 0}}]}},
        {"metadata": {"namespace": "b", "name": "bad-container", "uid": "u7"},
         "spec": {"containers": [{"name": "app", "securityContext": {"runAsGroup": -5}}]}},
        {"metadata": {"namespace": "b", "name": "bad-pod-group", "uid": "u8"},
         "spec": {"securityContext": {"runAsGroup": 4294967296}}}
      ]}"#;

    fn pods() -> PodListView {
        serde_json::from_str(LIST).unwrap()
    }

    fn pod(ns: &str, name: &str, uid: Option<&str>) -> PodRef {
        PodRef {
            namespace: ns.into(),
            name: name.into(),
            uid: uid.map(Into::into),
        }
    }

    fn lookup(list: &PodListView, wanted: &PodRef) -> Result<PodGroups, LookupError> {
        let found = find_pod(list.validate().unwrap(), wanted, "test")?;
        groups_of(found, wanted, "test")
    }

    #[test]
    fn matches_by_uid_among_same_names() {
        let list = pods();
        let g = lookup(&list, &pod("a", "p", Some("u-new"))).unwrap();
        assert_eq!(g.supplemental_groups, vec![60000, 60001]);
        assert_eq!(g.fs_group, None);
        assert_eq!(g.uid, "u-new");
        let g = lookup(&list, &pod("a", "p", Some("u-old"))).unwrap();
        assert_eq!((g.supplemental_groups, g.fs_group), (vec![1], Some(2)));
    }

    #[test]
    fn other_uid_is_an_error_not_a_match() {
        let err = lookup(&pods(), &pod("a", "p", Some("u-x"))).unwrap_err();
        assert!(matches!(err, LookupError::UidMismatch { .. }), "{err}");
        assert!(err.to_string().contains("a/p"));
    }

    #[test]
    fn not_found_names_the_pod() {
        let err = lookup(&pods(), &pod("a", "q", Some("u9"))).unwrap_err();
        assert!(matches!(err, LookupError::NotFound { .. }));
        assert!(err.to_string().contains("a/q (uid u9)"), "{err}");
    }

    #[test]
    fn no_security_context_means_no_groups() {
        let g = lookup(&pods(), &pod("b", "nosec", None)).unwrap();
        assert!(g.supplemental_groups.is_empty() && g.fs_group.is_none());
        assert_eq!((g.run_as_group, g.containers.len()), (None, 0));
    }

    #[test]
    fn out_of_range_gids_are_rejected() {
        for name in ["bad", "huge", "bad-container", "bad-pod-group"] {
            let err = lookup(&pods(), &pod("b", name, None)).unwrap_err();
            assert!(matches!(err, LookupError::InvalidPod { .. }), "{err}");
        }
        let err = lookup(&pods(), &pod("b", "bad-container", None)).unwrap_err();
        assert!(
            err.to_string()
                .contains("containers[app].securityContext.runAsGroup -5"),
            "{err}"
        );
    }

    #[test]
    fn run_as_groups_of_the_pod_and_every_container() {
        let g = lookup(&pods(), &pod("b", "groups", Some("u6"))).unwrap();
        assert_eq!(g.run_as_group, Some(3000));
        let containers: Vec<_> = g
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.kind, c.run_as_group))
            .collect();
        assert_eq!(
            containers,
            vec![
                ("init", ContainerKind::Init, Some(3001)),
                ("app", ContainerKind::Regular, None),
                ("side", ContainerKind::Regular, Some(3002)),
                ("debug", ContainerKind::Ephemeral, Some(0)),
            ]
        );
        assert_eq!(g.effective_run_as_group(Some("app")), Some(3000));
        assert_eq!(g.effective_run_as_group(Some("side")), Some(3002));
        assert_eq!(g.effective_run_as_group(Some("debug")), Some(0));
    }

    #[test]
    fn rejects_documents_that_are_not_pod_lists() {
        let v: PodListView = serde_json::from_str(r#"{"kind":"Pod","items":[]}"#).unwrap();
        assert!(v.validate().is_err());
        let v: PodListView = serde_json::from_str(r#"{"kind":"PodList"}"#).unwrap();
        assert!(v.validate().is_err());
    }

    #[test]
    fn items_of_other_kinds_are_not_pods() {
        let v: PodListView = serde_json::from_str(
            r#"{"kind":"List","items":[
                 {"kind":"PersistentVolumeClaim","metadata":{"namespace":"a","name":"p"}},
                 {"kind":"Pod","metadata":{"namespace":"a","name":"p","uid":"u"}}]}"#,
        )
        .unwrap();
        let found = find_pod(v.validate().unwrap(), &pod("a", "p", None), "test").unwrap();
        assert_eq!(found.metadata.uid.as_deref(), Some("u"));
    }
}
