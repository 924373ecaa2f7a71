//! The spec-loading stage that runs in-process before libcontainer creates anything:
//!
//! 1. [`load`]: config.json as raw JSON, and the fields the decision reads;
//! 2. [`identify`]: sandbox, pod container or unmanaged, from the CRI's annotations;
//! 3. [`resolve`]: the pod's groups, from a [`PodGroupsSource`] the caller passes in;
//! 4. [`decide`]: which gids stay (a pure function);
//! 5. [`persist`]: the lossless, atomic rewrite of `process.user.additionalGids`.
//!
//! Create and record (steps 6 and 7) are the callers' (`commands::create`, `crate::record`).
//! `exec` reuses the decision on an exec process ([`exec_filter`]). Nothing here builds a pod
//! source or reads libcontainer's state: every fail-closed rule can be tested with an in-memory
//! source.

pub mod audit;
pub mod decide;
pub mod exec_filter;
pub mod identify;
pub mod load;
pub mod persist;
pub mod resolve;

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, anyhow};
use serde::Serialize;

use crate::config::{Config, UnmanagedPolicy};
use crate::pod::{Identity, PodGroups, PodGroupsSource};
use crate::record::Record;
use decide::Decision;
use load::BundleSpec;

/// What the stage found for one container, without side effects (also what `explain` prints).
#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub container_id: String,
    pub identity: Identity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_groups: Option<PodGroups>,
    pub primary_gid: u32,
    /// None when the container is passed through (sandbox, unmanaged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    pub elapsed_us: u128,
}

impl Evaluation {
    /// What to keep beside the container for later execs.
    pub fn record(&self) -> Record {
        let granted = self
            .pod_groups
            .as_ref()
            .map(|g| g.granted().collect())
            .unwrap_or_default();
        Record::new(
            self.identity.clone(),
            granted,
            self.primary_gid,
            self.source.clone(),
        )
    }
}

/// Steps 2–4 for a loaded spec. Fails (closed) whenever a pod container's groups cannot be
/// determined, or an unmanaged container meets `unmanaged = "deny"`. The source is asked only
/// for a pod container.
pub fn evaluate(
    spec: &BundleSpec,
    container_id: &str,
    config: &Config,
    source: &dyn PodGroupsSource,
) -> Result<Evaluation> {
    let started = Instant::now();
    let identity = identify::identify(&spec.annotations, container_id, &config.annotations)
        .map_err(|e| anyhow!("container {container_id}: {e:#}; refusing to run it unfiltered"))?;
    let mut eval = Evaluation {
        container_id: container_id.to_owned(),
        identity,
        source: None,
        pod_groups: None,
        primary_gid: spec.user.gid,
        decision: None,
        elapsed_us: 0,
    };
    match &eval.identity {
        Identity::Sandbox { .. } => {}
        Identity::Unmanaged => {
            if config.unmanaged == UnmanagedPolicy::Deny {
                return Err(anyhow!(
                    "container {container_id} has no Kubernetes pod annotations and the \
                     configuration says unmanaged = \"deny\""
                ));
            }
        }
        Identity::PodContainer { pod, .. } => {
            eval.source = Some(source.describe());
            let groups = resolve::resolve(source, pod, container_id)?;
            eval.decision = Some(decide::decide(
                &spec.user.additional_gids,
                spec.user.gid,
                groups.granted(),
            ));
            eval.pod_groups = Some(groups);
        }
    }
    eval.elapsed_us = started.elapsed().as_micros();
    Ok(eval)
}

/// The whole stage for `create`/`run`: evaluates, logs the decision, and rewrites config.json
/// when gids must go. Returns the record to keep once the container exists.
pub fn enforce_on_bundle(
    bundle: &Path,
    container_id: &str,
    config: &Config,
    source: &dyn PodGroupsSource,
) -> Result<Record> {
    let mut spec = BundleSpec::load(bundle)?;
    let eval = evaluate(&spec, container_id, config, source)?;
    if let Some(decision) = eval.decision.as_ref().filter(|d| d.drops_any()) {
        persist::set_additional_gids(&mut spec.json, &["process", "user"], &decision.kept)?;
        persist::replace_file(&spec.path, &persist::serialize_like(&spec.raw, &spec.json)?)?;
    }
    audit::audit("create", &eval);
    Ok(eval.record())
}

#[cfg(test)]
mod tests {
    //! The fail-closed table of the stage, with an in-memory source: no root, no network.

    use std::cell::Cell;

    use super::*;
    use crate::pod::{LookupError, PodRef};

    /// Answers from a fixed list of pods, or with a fixed failure; counts lookups.
    struct MemorySource {
        pods: Vec<(PodRef, PodGroups)>,
        failure: Option<fn(&PodRef) -> LookupError>,
        lookups: Cell<u32>,
    }

    impl MemorySource {
        fn with(pods: &[(&str, &str, &str, &[u32])]) -> Self {
            Self {
                pods: pods
                    .iter()
                    .map(|(ns, name, uid, sg)| {
                        (
                            PodRef {
                                namespace: (*ns).into(),
                                name: (*name).into(),
                                uid: Some((*uid).into()),
                            },
                            PodGroups {
                                uid: (*uid).into(),
                                supplemental_groups: sg.to_vec(),
                                ..Default::default()
                            },
                        )
                    })
                    .collect(),
                failure: None,
                lookups: Cell::new(0),
            }
        }

        fn failing(failure: fn(&PodRef) -> LookupError) -> Self {
            Self {
                failure: Some(failure),
                ..Self::with(&[])
            }
        }
    }

    impl PodGroupsSource for MemorySource {
        fn describe(&self) -> String {
            "memory".into()
        }

        fn lookup(&self, pod: &PodRef) -> Result<PodGroups, LookupError> {
            self.lookups.set(self.lookups.get() + 1);
            if let Some(failure) = self.failure {
                return Err(failure(pod));
            }
            let by_name = self
                .pods
                .iter()
                .find(|(p, _)| p.namespace == pod.namespace && p.name == pod.name);
            match by_name {
                Some((p, g)) if p.uid == pod.uid || pod.uid.is_none() => Ok(g.clone()),
                Some((p, _)) => Err(LookupError::UidMismatch {
                    pod: pod.clone(),
                    found: p.uid.clone().unwrap_or_default(),
                    source_name: "memory",
                }),
                None => Err(LookupError::NotFound {
                    pod: pod.clone(),
                    source_name: "memory",
                }),
            }
        }
    }

    const APP: &str =
        r#""io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"sb""#;

    fn spec(annotations: &str, gids: &str) -> BundleSpec {
        let json = format!(
            r#"{{"process":{{"user":{{"uid":1000,"gid":1000,"additionalGids":{gids}}}}},"annotations":{{{annotations}}}}}"#
        );
        BundleSpec::parse("config.json".into(), json.into_bytes()).unwrap()
    }

    fn pod_annotations(ns: &str, name: &str, uid: &str) -> String {
        format!(
            r#"{APP},"io.kubernetes.cri.sandbox-namespace":"{ns}","io.kubernetes.cri.sandbox-name":"{name}","io.kubernetes.cri.sandbox-uid":"{uid}","io.kubernetes.cri.container-name":"app""#
        )
    }

    fn source() -> MemorySource {
        MemorySource::with(&[("t", "p", "u1", &[60000])])
    }

    fn deny_unmanaged() -> Config {
        Config {
            unmanaged: UnmanagedPolicy::Deny,
            ..Config::default()
        }
    }

    #[test]
    fn a_pod_container_keeps_what_its_pod_grants() {
        let src = source();
        let eval = evaluate(
            &spec(&pod_annotations("t", "p", "u1"), "[1000,50000,60000]"),
            "c",
            &Config::default(),
            &src,
        )
        .unwrap();
        let d = eval.decision.unwrap();
        assert_eq!((d.kept, d.dropped), (vec![1000, 60000], vec![50000]));
        assert_eq!(src.lookups.get(), 1);
    }

    /// Every way of not knowing a pod container's groups refuses it, naming the pod.
    #[test]
    fn fail_closed_table() {
        let cases: Vec<(&str, String, MemorySource)> = vec![
            ("not found", pod_annotations("t", "other", "u9"), source()),
            ("uid mismatch", pod_annotations("t", "p", "u2"), source()),
            (
                "source down",
                pod_annotations("t", "p", "u1"),
                MemorySource::failing(|pod| LookupError::Source {
                    pod: pod.clone(),
                    source_name: "memory",
                    cause: anyhow::anyhow!("connection refused"),
                }),
            ),
            (
                "invalid pod",
                pod_annotations("t", "p", "u1"),
                MemorySource::failing(|pod| LookupError::InvalidPod {
                    pod: pod.clone(),
                    reason: "fsGroup -1 is not a valid gid".into(),
                    source_name: "memory",
                }),
            ),
        ];
        for (what, annotations, src) in cases {
            let err = evaluate(
                &spec(&annotations, "[1000,50000]"),
                "c",
                &Config::default(),
                &src,
            )
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_else(|| panic!("{what}: not refused"));
            assert!(
                err.contains("cannot determine the supplementary groups of pod t/")
                    && err.contains("refusing"),
                "{what}: {err}"
            );
        }
    }

    /// Annotations that do not make a clear identity refuse the container before any lookup.
    #[test]
    fn unclear_identities_are_refused_without_a_lookup() {
        for annotations in [
            r#""io.kubernetes.cri.sandbox-name":"p""#.to_owned(),
            r#""io.kubernetes.cri.sandbox-uid":"u1""#.to_owned(),
            format!(
                r#"{},"io.kubernetes.pod.name":"other""#,
                pod_annotations("t", "p", "u1")
            ),
            pod_annotations("t", "p", ""),
            r#""io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-id":"not-c","io.kubernetes.cri.sandbox-namespace":"t","io.kubernetes.cri.sandbox-name":"p""#.to_owned(),
        ] {
            let src = source();
            let result = evaluate(&spec(&annotations, "[50000]"), "c", &Config::default(), &src);
            assert!(result.is_err(), "{annotations}");
            assert_eq!(src.lookups.get(), 0, "{annotations}");
        }
    }

    #[test]
    fn sandboxes_and_unmanaged_pass_through_without_a_lookup() {
        let src = source();
        let sandbox = r#""io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-id":"c","io.kubernetes.cri.sandbox-namespace":"t","io.kubernetes.cri.sandbox-name":"p""#;
        for annotations in [sandbox, ""] {
            let eval =
                evaluate(&spec(annotations, "[50000]"), "c", &Config::default(), &src).unwrap();
            assert!(eval.decision.is_none(), "{annotations}");
        }
        assert_eq!(src.lookups.get(), 0);
        let err = evaluate(&spec("", "[50000]"), "c", &deny_unmanaged(), &src)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unmanaged = \"deny\""), "{err}");
    }

    #[test]
    fn a_sandbox_claim_without_its_id_is_enforced() {
        let src = source();
        let claim = r#""io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-namespace":"t","io.kubernetes.cri.sandbox-name":"p","io.kubernetes.cri.sandbox-uid":"u1""#;
        let eval = evaluate(&spec(claim, "[1000,50000]"), "c", &Config::default(), &src).unwrap();
        assert_eq!(eval.decision.unwrap().kept, vec![1000]);
    }

    /// A refused create leaves config.json byte for byte as it was.
    #[test]
    fn a_refused_create_leaves_the_bundle_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"{{"process":{{"user":{{"uid":1000,"gid":1000,"additionalGids":[1000,50000]}}}},"annotations":{{{}}}}}"#,
            pod_annotations("t", "gone", "u1")
        );
        std::fs::write(dir.path().join("config.json"), &config).unwrap();
        let src = source();
        assert!(enforce_on_bundle(dir.path(), "c", &Config::default(), &src).is_err());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
            config
        );
    }
}
