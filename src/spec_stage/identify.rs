//! Step 2: who is this container? Decided from the annotations the CRI wrote, with containerd's
//! and CRI-O's keys both recognised and configured keys taking part too.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use crate::config::AnnotationOverrides;
use crate::pod::{Identity, PodRef};

pub const CONTAINERD_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
pub const CONTAINERD_NAME: &str = "io.kubernetes.cri.sandbox-name";
pub const CONTAINERD_UID: &str = "io.kubernetes.cri.sandbox-uid";
pub const CONTAINERD_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
pub const CONTAINERD_TYPE: &str = "io.kubernetes.cri.container-type";
pub const CONTAINERD_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

pub const CRIO_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const CRIO_NAME: &str = "io.kubernetes.pod.name";
pub const CRIO_UID: &str = "io.kubernetes.pod.uid";
pub const CRIO_CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const CRIO_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
pub const CRIO_SANDBOX_ID: &str = "io.kubernetes.cri-o.SandboxID";

/// Reads one field from every key that may carry it; keys that disagree are an error, because
/// a container must never be identified by whichever key happens to be read first.
fn field(
    annotations: &BTreeMap<String, String>,
    what: &str,
    keys: &[Option<&str>],
) -> Result<Option<String>> {
    let mut found: Option<(&str, &String)> = None;
    for key in keys.iter().flatten() {
        if let Some(value) = annotations.get(*key) {
            match found {
                Some((first_key, first)) if first != value => bail!(
                    "annotations disagree on the {what}: {first_key}={first:?} but {key}={value:?}"
                ),
                Some(_) => {}
                None => found = Some((key, value)),
            }
        }
    }
    Ok(found.map(|(_, v)| v.clone()))
}

pub fn identify(
    annotations: &BTreeMap<String, String>,
    container_id: &str,
    overrides: &AnnotationOverrides,
) -> Result<Identity> {
    let namespace = field(
        annotations,
        "pod namespace",
        &[
            Option::as_deref(&overrides.pod_namespace),
            Some(CONTAINERD_NAMESPACE),
            Some(CRIO_NAMESPACE),
        ],
    )?;
    let name = field(
        annotations,
        "pod name",
        &[
            Option::as_deref(&overrides.pod_name),
            Some(CONTAINERD_NAME),
            Some(CRIO_NAME),
        ],
    )?;
    let uid = field(
        annotations,
        "pod uid",
        &[
            Option::as_deref(&overrides.pod_uid),
            Some(CONTAINERD_UID),
            Some(CRIO_UID),
        ],
    )?;
    let container_name = field(
        annotations,
        "container name",
        &[
            Option::as_deref(&overrides.container_name),
            Some(CONTAINERD_CONTAINER_NAME),
            Some(CRIO_CONTAINER_NAME),
        ],
    )?;
    let kind = field(
        annotations,
        "container type",
        &[
            Option::as_deref(&overrides.container_type),
            Some(CONTAINERD_TYPE),
            Some(CRIO_TYPE),
        ],
    )?;
    let sandbox_id = field(
        annotations,
        "sandbox id",
        &[Some(CONTAINERD_SANDBOX_ID), Some(CRIO_SANDBOX_ID)],
    )?;

    let pod = match (namespace, name) {
        (Some(namespace), Some(name)) => {
            if namespace.is_empty() || name.is_empty() {
                bail!("pod annotations name an empty pod namespace or name");
            }
            // An empty uid is not a uid: matching by namespace and name alone could pick a
            // same-named pod from another life.
            if uid.as_deref() == Some("") {
                bail!("the pod uid annotation is present but empty");
            }
            Some(PodRef {
                namespace,
                name,
                uid,
            })
        }
        (None, None) => None,
        (ns, name) => bail!(
            "incomplete pod annotations: namespace {}, name {}",
            ns.as_deref().unwrap_or("missing"),
            name.as_deref().unwrap_or("missing"),
        ),
    };

    match kind.as_deref() {
        // Only the sandbox itself may claim to be one, and the proof is the annotation
        // containerd and CRI-O always write: its sandbox id is its own id. A claim without that
        // proof (id missing or empty) is enforced as a container of its pod; one that names
        // another sandbox is refused.
        Some("sandbox") => match sandbox_id.as_deref() {
            Some(sid) if sid == container_id => Ok(Identity::Sandbox { pod }),
            Some(sid) if !sid.is_empty() => bail!(
                "container {container_id} is annotated as a pod sandbox, but its sandbox id is \
                 {sid}"
            ),
            _ => match pod {
                Some(pod) => Ok(Identity::PodContainer {
                    pod,
                    container_name,
                }),
                None => bail!(
                    "container {container_id} is annotated as a pod sandbox without its sandbox \
                     id or pod annotations"
                ),
            },
        },
        Some("container") | None => match pod {
            Some(pod) => Ok(Identity::PodContainer {
                pod,
                container_name,
            }),
            None if kind.is_some() || claims_kubernetes(annotations, overrides) => bail!(
                "container {container_id} carries Kubernetes annotations but no pod namespace \
                 and name"
            ),
            None => Ok(Identity::Unmanaged),
        },
        Some(other) => bail!("unknown container type annotation value {other:?}"),
    }
}

/// Whether the annotations say "a CRI made this container for a pod" while naming no pod: a
/// half-written identity, never proof of an unmanaged container. Any key of containerd's CRI
/// (`io.kubernetes.cri.`, which nothing but the CRI plugin writes) or any identity key of
/// CRI-O or of the configuration counts; CRI-O's other `io.kubernetes.cri-o.` keys do not,
/// because plain podman writes them too.
fn claims_kubernetes(
    annotations: &BTreeMap<String, String>,
    overrides: &AnnotationOverrides,
) -> bool {
    let identity_keys = [
        overrides.pod_uid.as_deref(),
        overrides.container_name.as_deref(),
        Some(CRIO_UID),
        Some(CRIO_CONTAINER_NAME),
        Some(CRIO_SANDBOX_ID),
    ];
    annotations
        .keys()
        .any(|k| k.starts_with("io.kubernetes.cri."))
        || identity_keys
            .iter()
            .flatten()
            .any(|k| annotations.contains_key(*k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn none() -> AnnotationOverrides {
        AnnotationOverrides::default()
    }

    #[test]
    fn containerd_app_container() {
        let a = ann(&[
            (CONTAINERD_TYPE, "container"),
            (CONTAINERD_NAMESPACE, "user-alice"),
            (CONTAINERD_NAME, "bypass-pod"),
            (CONTAINERD_UID, "u1"),
            (CONTAINERD_CONTAINER_NAME, "app"),
            (CONTAINERD_SANDBOX_ID, "sb"),
        ]);
        let id = identify(&a, "app-id", &none()).unwrap();
        assert_eq!(
            id,
            Identity::PodContainer {
                pod: PodRef {
                    namespace: "user-alice".into(),
                    name: "bypass-pod".into(),
                    uid: Some("u1".into())
                },
                container_name: Some("app".into()),
            }
        );
    }

    #[test]
    fn crio_and_podman_annotations() {
        let a = ann(&[(CRIO_NAMESPACE, "ns1"), (CRIO_NAME, "p1")]);
        assert!(matches!(
            identify(&a, "x", &none()).unwrap(),
            Identity::PodContainer { .. }
        ));
        let a = ann(&[
            (CRIO_TYPE, "sandbox"),
            (CRIO_SANDBOX_ID, "sb1"),
            (CRIO_NAMESPACE, "ns1"),
            (CRIO_NAME, "p1"),
        ]);
        assert!(matches!(
            identify(&a, "sb1", &none()).unwrap(),
            Identity::Sandbox { .. }
        ));
    }

    #[test]
    fn sandbox_claim_must_be_its_own() {
        let a = ann(&[
            (CONTAINERD_TYPE, "sandbox"),
            (CONTAINERD_SANDBOX_ID, "sb"),
            (CONTAINERD_NAMESPACE, "n"),
            (CONTAINERD_NAME, "p"),
        ]);
        assert!(matches!(
            identify(&a, "sb", &none()).unwrap(),
            Identity::Sandbox { .. }
        ));
        let err = identify(&a, "not-sb", &none()).unwrap_err().to_string();
        assert!(err.contains("sandbox id"), "{err}");
    }

    /// A sandbox claim is proven only by the sandbox-id annotation naming the container itself;
    /// without it (absent or empty) the container is enforced as a container of its pod.
    #[test]
    fn a_sandbox_claim_without_proof_is_enforced() {
        for ty in [CONTAINERD_TYPE, CRIO_TYPE] {
            for sid in [None, Some("")] {
                let mut a = ann(&[
                    (ty, "sandbox"),
                    (CONTAINERD_NAMESPACE, "n"),
                    (CONTAINERD_NAME, "p"),
                ]);
                if let Some(sid) = sid {
                    a.insert(CONTAINERD_SANDBOX_ID.into(), sid.into());
                }
                assert!(
                    matches!(
                        identify(&a, "c", &none()).unwrap(),
                        Identity::PodContainer { .. }
                    ),
                    "{a:?}"
                );
            }
        }
        let a = ann(&[(CONTAINERD_TYPE, "sandbox")]);
        assert!(identify(&a, "c", &none()).is_err());
    }

    #[test]
    fn an_empty_pod_uid_is_not_a_uid() {
        let a = ann(&[
            (CONTAINERD_NAMESPACE, "n"),
            (CONTAINERD_NAME, "p"),
            (CONTAINERD_UID, ""),
        ]);
        let err = identify(&a, "c", &none()).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn no_annotations_is_unmanaged() {
        assert_eq!(
            identify(&ann(&[("org.example/x", "y")]), "c", &none()).unwrap(),
            Identity::Unmanaged
        );
        // What plain podman writes (no pod): unmanaged.
        let podman = ann(&[
            ("io.container.manager", "libpod"),
            ("io.kubernetes.cri-o.Created", "2026-11-27T03:11:18Z"),
            ("io.kubernetes.cri-o.TTY", "false"),
        ]);
        assert_eq!(
            identify(&podman, "c", &none()).unwrap(),
            Identity::Unmanaged
        );
    }

    #[test]
    fn half_identities_fail() {
        for a in [
            ann(&[(CONTAINERD_NAME, "p")]),
            ann(&[(CRIO_NAMESPACE, "n")]),
            ann(&[(CONTAINERD_TYPE, "container")]),
            ann(&[(CONTAINERD_UID, "u")]),
            ann(&[
                (CONTAINERD_TYPE, "weird"),
                (CONTAINERD_NAMESPACE, "n"),
                (CONTAINERD_NAME, "p"),
            ]),
            ann(&[(CONTAINERD_NAMESPACE, ""), (CONTAINERD_NAME, "p")]),
            // A CRI's container that names no pod is not "unmanaged".
            ann(&[(CONTAINERD_CONTAINER_NAME, "app")]),
            ann(&[(CONTAINERD_SANDBOX_ID, "sb")]),
            ann(&[("io.kubernetes.cri.image-name", "i")]),
            ann(&[(CRIO_CONTAINER_NAME, "app")]),
            ann(&[(CRIO_SANDBOX_ID, "sb")]),
        ] {
            assert!(identify(&a, "c", &none()).is_err(), "{a:?}");
        }
    }

    #[test]
    fn disagreeing_keys_fail() {
        let a = ann(&[
            (CONTAINERD_NAMESPACE, "n"),
            (CONTAINERD_NAME, "p"),
            (CRIO_NAME, "other"),
            (CRIO_NAMESPACE, "n"),
        ]);
        let err = identify(&a, "c", &none()).unwrap_err().to_string();
        assert!(err.contains("disagree"), "{err}");
    }

    #[test]
    fn configured_keys_are_read() {
        let overrides = AnnotationOverrides {
            pod_namespace: Some("example.com/ns".into()),
            pod_name: Some("example.com/pod".into()),
            ..Default::default()
        };
        let a = ann(&[("example.com/ns", "n"), ("example.com/pod", "p")]);
        let Identity::PodContainer { pod, .. } = identify(&a, "c", &overrides).unwrap() else {
            panic!("not a pod container");
        };
        assert_eq!((pod.namespace.as_str(), pod.name.as_str()), ("n", "p"));
    }
}
