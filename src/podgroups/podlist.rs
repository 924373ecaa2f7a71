//! Reads only what is needed from a PodList (`kubectl get pods -A -o json`, the kubelet's
//! `/pods`): namespace, name, uid, supplementalGroups and fsGroup. Every other field of every
//! pod is skipped by the deserializer without being built, which keeps a 5,000-pod reply cheap.

use serde::Deserialize;

use crate::pod::{LookupError, PodGroups, PodRef};

#[derive(Deserialize)]
pub struct PodListView {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub items: Option<Vec<PodView>>,
}

#[derive(Deserialize)]
pub struct PodView {
    #[serde(default)]
    pub metadata: MetadataView,
    #[serde(default)]
    pub spec: Option<SpecView>,
}

#[derive(Deserialize, Default)]
pub struct MetadataView {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct SpecView {
    #[serde(default, rename = "securityContext")]
    pub security_context: Option<SecurityContextView>,
}

/// Kubernetes declares these int64; out-of-range values are rejected, not truncated.
#[derive(Deserialize, Default)]
pub struct SecurityContextView {
    #[serde(default, rename = "supplementalGroups")]
    pub supplemental_groups: Option<Vec<i64>>,
    #[serde(default, rename = "fsGroup")]
    pub fs_group: Option<i64>,
}

impl PodListView {
    /// Checks the document is a list of pods, not some other object that happens to parse.
    pub fn validate(&self) -> Result<&[PodView], String> {
        match self.kind.as_deref() {
            Some("PodList") | Some("List") | None => {}
            Some(other) => return Err(format!("expected kind PodList, got {other}")),
        }
        self.items
            .as_deref()
            .ok_or_else(|| "no `items` array: not a PodList".to_owned())
    }
}

/// Finds the pod by namespace and name; checks the uid when the reference carries one.
pub fn find_pod(
    pods: &[PodView],
    wanted: &PodRef,
    source_name: &'static str,
) -> Result<PodGroups, LookupError> {
    let mut same_name_other_uid: Option<String> = None;
    for pod in pods {
        let meta = &pod.metadata;
        if meta.namespace.as_deref() != Some(wanted.namespace.as_str())
            || meta.name.as_deref() != Some(wanted.name.as_str())
        {
            continue;
        }
        let found_uid = meta.uid.clone().unwrap_or_default();
        if let Some(uid) = &wanted.uid {
            if *uid != found_uid {
                // Keep looking: a static pod and its mirror, or a pod mid-replacement, can list
                // the same name twice; only the right uid may match.
                same_name_other_uid = Some(found_uid);
                continue;
            }
        }
        return groups_of(pod, wanted, found_uid, source_name);
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

/// Converts one pod's security context, rejecting gids that cannot exist on Linux.
pub fn groups_of(
    pod: &PodView,
    wanted: &PodRef,
    uid: String,
    source_name: &'static str,
) -> Result<PodGroups, LookupError> {
    let invalid = |reason: String| LookupError::InvalidPod {
        pod: wanted.clone(),
        reason,
        source_name,
    };
    let ctx = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let to_gid = |field: &str, v: i64| {
        u32::try_from(v).map_err(|_| invalid(format!("{field} {v} is not a valid gid")))
    };
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
    Ok(PodGroups {
        uid,
        supplemental_groups,
        fs_group,
        ..Default::default()
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
         "spec": {"securityContext": {"fsGroup": 4294967296}}}
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

    #[test]
    fn matches_by_uid_among_same_names() {
        let list = pods();
        let items = list.validate().unwrap();
        let g = find_pod(items, &pod("a", "p", Some("u-new")), "test").unwrap();
        assert_eq!(g.supplemental_groups, vec![60000, 60001]);
        assert_eq!(g.fs_group, None);
        assert_eq!(g.uid, "u-new");
        let g = find_pod(items, &pod("a", "p", Some("u-old")), "test").unwrap();
        assert_eq!((g.supplemental_groups, g.fs_group), (vec![1], Some(2)));
    }

    #[test]
    fn other_uid_is_an_error_not_a_match() {
        let list = pods();
        let err = find_pod(
            list.validate().unwrap(),
            &pod("a", "p", Some("u-x")),
            "test",
        )
        .unwrap_err();
        assert!(matches!(err, LookupError::UidMismatch { .. }), "{err}");
        assert!(err.to_string().contains("a/p"));
    }

    #[test]
    fn not_found_names_the_pod() {
        let list = pods();
        let err =
            find_pod(list.validate().unwrap(), &pod("a", "q", Some("u9")), "test").unwrap_err();
        assert!(matches!(err, LookupError::NotFound { .. }));
        assert!(err.to_string().contains("a/q (uid u9)"), "{err}");
    }

    #[test]
    fn no_security_context_means_no_groups() {
        let list = pods();
        let g = find_pod(list.validate().unwrap(), &pod("b", "nosec", None), "test").unwrap();
        assert!(g.supplemental_groups.is_empty() && g.fs_group.is_none());
    }

    #[test]
    fn out_of_range_gids_are_rejected() {
        let list = pods();
        for name in ["bad", "huge"] {
            let err =
                find_pod(list.validate().unwrap(), &pod("b", name, None), "test").unwrap_err();
            assert!(matches!(err, LookupError::InvalidPod { .. }), "{err}");
        }
    }

    #[test]
    fn rejects_documents_that_are_not_pod_lists() {
        let v: PodListView = serde_json::from_str(r#"{"kind":"Pod","items":[]}"#).unwrap();
        assert!(v.validate().is_err());
        let v: PodListView = serde_json::from_str(r#"{"kind":"PodList"}"#).unwrap();
        assert!(v.validate().is_err());
    }
}
