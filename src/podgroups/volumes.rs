//! The gids a pod holds through its PersistentVolumes, computed the way the kubelet computes
//! the extra gids it adds to the CRI `supplemental_groups` (its volume manager's
//! `GetExtraSupplementalGroupsForPod`, fed by the desired-state populator), so that this runtime
//! keeps exactly what `supplementalGroupsPolicy: Strict` keeps. The rules, in order:
//!
//! 1. **Only volumes a container uses.** The kubelet mounts (and takes the gid of) only the
//!    pod volumes named in some `volumeMounts` or `volumeDevices` of an init, regular or
//!    ephemeral container; an unused volume adds nothing and is not looked up.
//! 2. **Which claim.** `persistentVolumeClaim.claimName`, in the pod's namespace; for a
//!    generic `ephemeral` volume (and no `persistentVolumeClaim`) the claim is
//!    `<pod name>-<volume name>`, and it counts only if the pod controls it (an
//!    `ownerReferences` entry with `controller: true` and the pod's uid) — else it is someone
//!    else's claim that happens to have that name. Other volume types carry no gid.
//! 3. **The claim.** It must exist, not be being deleted, be `Bound`, and name its volume.
//! 4. **The volume.** The PersistentVolume must exist and its `claimRef.uid` must be the
//!    claim's uid (a volume released and bound to another claim is not this pod's).
//! 5. **The gid.** `pv.beta.kubernetes.io/gid` absent or empty: no gid, as with the kubelet.
//!    A decimal integer (what Go's `ParseInt(v, 10, 64)` accepts: an optional sign, digits) in
//!    0..=4294967295: that gid. A value that is no such integer is ignored by the kubelet, so
//!    Strict gives no gid for it, and neither does this runtime (a warning is logged). An
//!    integer outside the gid range (negative, or above 2³²−1) the kubelet would pass on and
//!    the CRI runtime truncate to some other gid: no PersistentVolume justifies that gid, so
//!    the lookup fails instead of guessing.
//!
//! Every failure of rules 2–4 (and of reading the claim or volume at all) fails the lookup
//! with an error naming the volume and the claim: the container is refused, the kubelet
//! retries, exactly as the kubelet itself would not start a pod whose volumes it cannot
//! resolve. Nothing here does I/O: the claims and volumes come from a [`ClaimStore`] (the API
//! server, or the objects of a pods file). Over half of this file is the unit tests, one or
//! more per rule, with an in-memory store.

use anyhow::{anyhow, bail};

use super::podlist::{ObjectView, PodView};
use crate::pod::{LookupError, PodRef, VolumeClaimRef, VolumeGid};

/// A pod volume whose PersistentVolume may carry a gid: the volume, and the claim behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimUse {
    pub volume: String,
    pub claim: String,
    /// A generic ephemeral volume: its claim must be controlled by the pod.
    pub ephemeral: bool,
}

/// Where PersistentVolumeClaims and PersistentVolumes are read.
pub trait ClaimStore {
    /// For messages: `the API server at https://…`, `pods file /etc/pods.json`.
    fn describe(&self) -> String;
    /// The claim `namespace/name`; `None` when there is no such claim.
    fn claim(&self, namespace: &str, name: &str) -> anyhow::Result<Option<ObjectView>>;
    /// The PersistentVolume `name`; `None` when there is no such volume.
    fn volume(&self, name: &str) -> anyhow::Result<Option<ObjectView>>;
}

/// Rules 1 and 2 (without the owner check): the claims of the volumes the pod's containers
/// use, in the order of `spec.volumes`. Empty for most pods, which then cost no request.
pub fn claims_of(
    pod: &PodView,
    wanted: &PodRef,
    source_name: &'static str,
) -> Result<Vec<ClaimUse>, LookupError> {
    let Some(spec) = &pod.spec else {
        return Ok(Vec::new());
    };
    let used = |volume: &str| {
        [
            &spec.init_containers,
            &spec.containers,
            &spec.ephemeral_containers,
        ]
        .into_iter()
        .flatten()
        .flatten()
        .any(|c| {
            c.volume_mounts
                .iter()
                .chain(c.volume_devices.iter())
                .flatten()
                .any(|u| u.name.as_deref() == Some(volume))
        })
    };
    let invalid = |reason: String| LookupError::InvalidPod {
        pod: wanted.clone(),
        reason,
        source_name,
    };
    let mut claims = Vec::new();
    for v in spec.volumes.iter().flatten() {
        let name = v.name.as_deref().unwrap_or_default();
        let claim = match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(source), _) => {
                let claim = source.claim_name.clone().unwrap_or_default();
                if claim.is_empty() {
                    return Err(invalid(format!(
                        "volume {name:?} is a persistentVolumeClaim without claimName"
                    )));
                }
                ClaimUse {
                    volume: name.to_owned(),
                    claim,
                    ephemeral: false,
                }
            }
            (None, Some(_)) => {
                let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
                ClaimUse {
                    volume: name.to_owned(),
                    claim: format!("{pod_name}-{name}"),
                    ephemeral: true,
                }
            }
            (None, None) => continue,
        };
        if name.is_empty() {
            return Err(invalid("a volume has no name".to_owned()));
        }
        if used(name) {
            claims.push(claim);
        }
    }
    Ok(claims)
}

/// Rules 2–5 for each claim: the gids the pod's PersistentVolumes give it.
pub fn volume_gids(
    pod: &PodView,
    wanted: &PodRef,
    claims: &[ClaimUse],
    store: &dyn ClaimStore,
    source_name: &'static str,
) -> Result<Vec<VolumeGid>, LookupError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let mut gids = Vec::new();
    for claim in claims {
        let fail = |cause: anyhow::Error| LookupError::Volume {
            pod: wanted.clone(),
            volume: Box::new(VolumeClaimRef {
                volume: claim.volume.clone(),
                claim: format!("{namespace}/{}", claim.claim),
            }),
            source_name,
            cause: cause.context(format!("reading it from {}", store.describe())),
        };
        if let Some(gid) = resolve_one(namespace, pod_uid, claim, store).map_err(fail)? {
            gids.push(gid);
        }
    }
    Ok(gids)
}

fn resolve_one(
    namespace: &str,
    pod_uid: &str,
    claim: &ClaimUse,
    store: &dyn ClaimStore,
) -> anyhow::Result<Option<VolumeGid>> {
    let found = store
        .claim(namespace, &claim.claim)?
        .ok_or_else(|| anyhow!("the claim does not exist"))?;
    check_identity(
        &found,
        "PersistentVolumeClaim",
        Some(namespace),
        &claim.claim,
    )?;
    if claim.ephemeral {
        let controlled = found
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true));
        if pod_uid.is_empty() || controlled.and_then(|r| r.uid.as_deref()) != Some(pod_uid) {
            bail!(
                "the claim was not created for this pod (its controller is not pod uid {pod_uid})"
            );
        }
    }
    if found.metadata.deletion_timestamp.is_some() {
        bail!("the claim is being deleted");
    }
    let phase = found.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase != Some("Bound") {
        bail!(
            "the claim is not bound (phase {})",
            phase.unwrap_or("unset")
        );
    }
    let claim_uid = found.metadata.uid.as_deref().unwrap_or_default();
    if claim_uid.is_empty() {
        bail!("the claim has no uid");
    }
    let pv_name = found
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow!("the claim names no volume (spec.volumeName)"))?;
    let pv = store
        .volume(pv_name)?
        .ok_or_else(|| anyhow!("its PersistentVolume {pv_name} does not exist"))?;
    check_identity(&pv, "PersistentVolume", None, pv_name)?;
    let bound_to = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .ok_or_else(|| anyhow!("PersistentVolume {pv_name} is not bound to any claim"))?;
    if bound_to.uid.as_deref() != Some(claim_uid) {
        bail!(
            "PersistentVolume {pv_name} is bound to another claim ({}/{} uid {}, not uid \
             {claim_uid})",
            bound_to.namespace.as_deref().unwrap_or("?"),
            bound_to.name.as_deref().unwrap_or("?"),
            bound_to.uid.as_deref().unwrap_or("?"),
        );
    }
    let value = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.volume_gid.as_deref())
        .unwrap_or_default();
    Ok(parse_volume_gid(value)
        .map_err(|e| anyhow!("PersistentVolume {pv_name}: {e}"))?
        .map(|gid| VolumeGid {
            gid,
            volume: claim.volume.clone(),
            claim: claim.claim.clone(),
            persistent_volume: pv_name.to_owned(),
        })
        .or_else(|| {
            if !value.is_empty() {
                tracing::warn!(
                    persistent_volume = pv_name,
                    value,
                    "the gid annotation is not an integer; the kubelet ignores it, and so does \
                     this runtime"
                );
            }
            None
        }))
}

/// The object is of the kind asked for, with the name (and namespace) asked for.
fn check_identity(
    found: &ObjectView,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> anyhow::Result<()> {
    if found.kind.as_deref().is_some_and(|k| k != kind)
        || found.metadata.name.as_deref() != Some(name)
        || namespace.is_some_and(|ns| found.metadata.namespace.as_deref() != Some(ns))
    {
        bail!(
            "asked for {kind} {}{name}, got {} {}/{}",
            namespace.map(|ns| format!("{ns}/")).unwrap_or_default(),
            found.kind.as_deref().unwrap_or("an object"),
            found.metadata.namespace.as_deref().unwrap_or(""),
            found.metadata.name.as_deref().unwrap_or("?"),
        );
    }
    Ok(())
}

/// Rule 5: `Ok(None)` for what the kubelet ignores (empty, not an int64), `Err` for an integer
/// that is no gid.
pub fn parse_volume_gid(value: &str) -> Result<Option<u32>, String> {
    // Rust's i64 parser accepts what Go's ParseInt(v, 10, 64) does: an optional sign and
    // ASCII digits, nothing else (no blanks, no underscores), and fails on overflow.
    let Ok(number) = value.parse::<i64>() else {
        return Ok(None);
    };
    u32::try_from(number).map(Some).map_err(|_| {
        format!(
            "annotation {} = {value:?} is not a valid gid (0 to 4294967295)",
            super::podlist::VOLUME_GID_ANNOTATION
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::{Value, json};

    use super::*;

    fn view(v: Value) -> ObjectView {
        serde_json::from_value(v).unwrap()
    }

    /// A pod whose container mounts `mounted`, with the volumes given.
    fn pod_with(volumes: Value, mounted: &[&str]) -> PodView {
        let mounts: Vec<Value> = mounted.iter().map(|m| json!({"name": m})).collect();
        view(json!({
            "metadata": {"namespace": "ns", "name": "web", "uid": "pod-uid"},
            "spec": {"volumes": volumes,
                     "containers": [{"name": "app", "volumeMounts": mounts}]}
        }))
    }

    fn wanted() -> PodRef {
        PodRef {
            namespace: "ns".into(),
            name: "web".into(),
            uid: Some("pod-uid".into()),
        }
    }

    #[derive(Default)]
    struct Store {
        claims: HashMap<String, Value>,
        volumes: HashMap<String, Value>,
        fail: bool,
    }

    impl ClaimStore for Store {
        fn describe(&self) -> String {
            "the test store".into()
        }
        fn claim(&self, namespace: &str, name: &str) -> anyhow::Result<Option<ObjectView>> {
            if self.fail {
                bail!("store unreachable");
            }
            Ok(self
                .claims
                .get(&format!("{namespace}/{name}"))
                .cloned()
                .map(view))
        }
        fn volume(&self, name: &str) -> anyhow::Result<Option<ObjectView>> {
            Ok(self.volumes.get(name).cloned().map(view))
        }
    }

    fn claim(name: &str, uid: &str, pv: &str) -> Value {
        json!({"kind": "PersistentVolumeClaim",
               "metadata": {"namespace": "ns", "name": name, "uid": uid},
               "spec": {"volumeName": pv}, "status": {"phase": "Bound"}})
    }

    fn volume(name: &str, gid: Option<&str>, claim_uid: &str) -> Value {
        let mut v = json!({"kind": "PersistentVolume", "metadata": {"name": name},
                           "spec": {"claimRef": {"namespace": "ns", "name": "data",
                                                 "uid": claim_uid}}});
        if let Some(gid) = gid {
            v["metadata"]["annotations"] = json!({"pv.beta.kubernetes.io/gid": gid});
        }
        v
    }

    fn store(claims: Vec<(&str, Value)>, volumes: Vec<(&str, Value)>) -> Store {
        Store {
            claims: claims
                .into_iter()
                .map(|(k, v)| (format!("ns/{k}"), v))
                .collect(),
            volumes: volumes
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            fail: false,
        }
    }

    fn resolve(pod: &PodView, store: &Store) -> Result<Vec<VolumeGid>, LookupError> {
        let claims = claims_of(pod, &wanted(), "test")?;
        volume_gids(pod, &wanted(), &claims, store, "test")
    }

    fn data_pod() -> PodView {
        pod_with(
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]),
            &["data"],
        )
    }

    fn bound_store(gid: Option<&str>) -> Store {
        store(
            vec![("data", claim("data", "claim-uid", "pv-1"))],
            vec![("pv-1", volume("pv-1", gid, "claim-uid"))],
        )
    }

    fn err_text(r: Result<Vec<VolumeGid>, LookupError>) -> String {
        let e = r.unwrap_err();
        assert!(matches!(e, LookupError::Volume { .. }), "{e}");
        let text = format!("{e:#}");
        assert!(
            text.contains("\"data\"") && text.contains("ns/data"),
            "{text}"
        );
        text
    }

    #[test]
    fn a_bound_claim_gives_its_volumes_gid() {
        assert_eq!(
            resolve(&data_pod(), &bound_store(Some("50000"))).unwrap(),
            vec![VolumeGid {
                gid: 50000,
                volume: "data".into(),
                claim: "data".into(),
                persistent_volume: "pv-1".into(),
            }]
        );
    }

    #[test]
    fn volumes_no_container_uses_are_not_looked_up() {
        let pod = pod_with(
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                   {"name": "scratch", "emptyDir": {}}]),
            &["scratch"],
        );
        assert!(claims_of(&pod, &wanted(), "test").unwrap().is_empty());
        // Used by an init container's volumeDevices or an ephemeral container: looked up.
        for list in ["initContainers", "ephemeralContainers"] {
            let mut pod = serde_json::to_value(json!({
                "metadata": {"namespace": "ns", "name": "web", "uid": "pod-uid"},
                "spec": {"volumes": [{"name": "data",
                                      "persistentVolumeClaim": {"claimName": "data"}}]}
            }))
            .unwrap();
            pod["spec"][list] = json!([{"name": "c", "volumeDevices": [{"name": "data"}]}]);
            let claims = claims_of(&view(pod), &wanted(), "test").unwrap();
            assert_eq!(claims.len(), 1, "{list}");
        }
    }

    #[test]
    fn a_pod_without_claims_asks_nothing() {
        let pod = pod_with(
            json!([{"name": "cfg", "configMap": {"name": "x"}}]),
            &["cfg"],
        );
        let failing = Store {
            fail: true,
            ..Store::default()
        };
        assert_eq!(resolve(&pod, &failing).unwrap(), vec![]);
    }

    #[test]
    fn ephemeral_volumes_use_the_pods_own_claim() {
        let pod = pod_with(
            json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]),
            &["scratch"],
        );
        let mut owned = claim("web-scratch", "claim-uid", "pv-1");
        owned["metadata"]["ownerReferences"] =
            json!([{"kind": "Pod", "name": "web", "uid": "pod-uid", "controller": true}]);
        let s = store(
            vec![("web-scratch", owned.clone())],
            vec![("pv-1", volume("pv-1", Some("51000"), "claim-uid"))],
        );
        let gids = resolve(&pod, &s).unwrap();
        assert_eq!(
            (gids[0].gid, gids[0].claim.as_str()),
            (51000, "web-scratch")
        );

        // A claim of that name that this pod does not control is someone else's.
        for refs in [
            json!([]),
            json!([{"kind": "Pod", "name": "web", "uid": "other-pod", "controller": true}]),
            json!([{"kind": "Pod", "name": "web", "uid": "pod-uid"}]),
        ] {
            let mut foreign = owned.clone();
            foreign["metadata"]["ownerReferences"] = refs.clone();
            let s = store(
                vec![("web-scratch", foreign)],
                vec![("pv-1", volume("pv-1", Some("51000"), "claim-uid"))],
            );
            let e = resolve(&pod, &s).unwrap_err();
            assert!(
                e.to_string().contains("not created for this pod"),
                "{refs}: {e}"
            );
        }
    }

    #[test]
    fn every_unresolvable_claim_fails_naming_volume_and_claim() {
        let pod = data_pod();
        // Claim missing.
        let text = err_text(resolve(&pod, &store(vec![], vec![])));
        assert!(text.contains("does not exist"), "{text}");
        // Store unreachable.
        let failing = Store {
            fail: true,
            ..Store::default()
        };
        assert!(err_text(resolve(&pod, &failing)).contains("unreachable"));
        // Not bound.
        let mut pending = claim("data", "claim-uid", "pv-1");
        pending["status"]["phase"] = json!("Pending");
        let s = store(vec![("data", pending)], vec![]);
        assert!(err_text(resolve(&pod, &s)).contains("not bound (phase Pending)"));
        // Being deleted.
        let mut deleting = claim("data", "claim-uid", "pv-1");
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-27T10:00:00Z");
        let s = store(vec![("data", deleting)], vec![]);
        assert!(err_text(resolve(&pod, &s)).contains("being deleted"));
        // No volume name.
        let mut unnamed = claim("data", "claim-uid", "pv-1");
        unnamed["spec"] = json!({});
        let s = store(vec![("data", unnamed)], vec![]);
        assert!(err_text(resolve(&pod, &s)).contains("spec.volumeName"));
        // PV missing.
        let s = store(vec![("data", claim("data", "claim-uid", "pv-1"))], vec![]);
        assert!(err_text(resolve(&pod, &s)).contains("pv-1 does not exist"));
        // PV bound to another claim (same name, other life).
        let s = store(
            vec![("data", claim("data", "claim-uid", "pv-1"))],
            vec![("pv-1", volume("pv-1", Some("50000"), "old-claim-uid"))],
        );
        assert!(err_text(resolve(&pod, &s)).contains("bound to another claim"));
        // PV not bound at all.
        let mut free = volume("pv-1", Some("50000"), "x");
        free["spec"] = json!({});
        let s = store(
            vec![("data", claim("data", "claim-uid", "pv-1"))],
            vec![("pv-1", free)],
        );
        assert!(err_text(resolve(&pod, &s)).contains("not bound to any claim"));
        // A reply that is another object.
        let s = store(
            vec![("data", claim("other", "claim-uid", "pv-1"))],
            vec![("pv-1", volume("pv-1", Some("50000"), "claim-uid"))],
        );
        assert!(err_text(resolve(&pod, &s)).contains("asked for PersistentVolumeClaim"));
        // A gid that is no gid.
        for bad in ["-1", "4294967296", "9223372036854775807"] {
            let text = err_text(resolve(&pod, &bound_store(Some(bad))));
            assert!(text.contains("not a valid gid"), "{bad}: {text}");
        }
    }

    #[test]
    fn annotations_the_kubelet_ignores_give_no_gid() {
        for ignored in [
            None,
            Some(""),
            Some("abc"),
            Some(" 50000"),
            Some("5_0"),
            Some("1e3"),
        ] {
            assert_eq!(
                resolve(&data_pod(), &bound_store(ignored)).unwrap(),
                vec![],
                "{ignored:?}"
            );
        }
        // Beyond int64 the kubelet's ParseInt fails too: ignored, not an error.
        assert_eq!(
            resolve(&data_pod(), &bound_store(Some("99999999999999999999"))).unwrap(),
            vec![]
        );
        for (text, gid) in [("+50000", 50000), ("050000", 50000), ("0", 0)] {
            assert_eq!(parse_volume_gid(text), Ok(Some(gid)), "{text}");
        }
    }

    #[test]
    fn a_persistent_volume_claim_without_a_name_is_an_invalid_pod() {
        let pod = pod_with(
            json!([{"name": "data", "persistentVolumeClaim": {}}]),
            &["data"],
        );
        let e = claims_of(&pod, &wanted(), "test").unwrap_err();
        assert!(matches!(e, LookupError::InvalidPod { .. }), "{e}");
    }
}
