//! The stage's rules, with an in-memory source: no root, no network. The fail-closed table,
//! the sandbox and unmanaged pass-through, and the primary-gid, ungranted-gids and
//! no-new-privileges policies.

use std::cell::Cell;

use super::*;
use crate::config::PrimaryGidPolicy;
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

    /// One pod `t/p` (uid u1) answering with `groups`.
    fn answering(groups: PodGroups) -> Self {
        Self {
            pods: vec![(
                PodRef {
                    namespace: "t".into(),
                    name: "p".into(),
                    uid: Some("u1".into()),
                },
                PodGroups {
                    uid: "u1".into(),
                    ..groups
                },
            )],
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
        let eval = evaluate(&spec(annotations, "[50000]"), "c", &Config::default(), &src).unwrap();
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

fn spec_with(user: &str, nnp: bool, annotations: &str) -> BundleSpec {
    let json = format!(
        r#"{{"process":{{"user":{user},"noNewPrivileges":{nnp}}},"root":{{"path":"rootfs"}},"annotations":{{{annotations}}}}}"#
    );
    BundleSpec::parse("/nonexistent/config.json".into(), json.into_bytes()).unwrap()
}

fn config_with(f: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    f(&mut config);
    config
}

/// The image's /etc/passwd gave alice (1000) primary gid 50000; the pod set no runAsGroup.
const PASSWD_GID: &str = r#"{"uid":1000,"gid":50000,"additionalGids":[50000,60000]}"#;

#[test]
fn primary_gid_policy_image_keeps_what_the_cri_resolved() {
    let src = source();
    let eval = evaluate(
        &spec_with(PASSWD_GID, false, &pod_annotations("t", "p", "u1")),
        "c",
        &Config::default(),
        &src,
    )
    .unwrap();
    assert_eq!(eval.primary_gid_rule, Some(PrimaryGidRule::ImagePolicy));
    // The primary gid stays in additionalGids too, as containerd lists it.
    assert_eq!(eval.decision.unwrap().kept, vec![50000, 60000]);
}

#[test]
fn primary_gid_policy_granted_refuses_an_image_chosen_gid_and_names_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rootfs/etc")).unwrap();
    std::fs::write(
        dir.path().join("rootfs/etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nalice:x:1000:50000::/home/alice:/bin/sh\n",
    )
    .unwrap();
    let json = format!(
        r#"{{"process":{{"user":{PASSWD_GID}}},"root":{{"path":"rootfs"}},"annotations":{{{},"io.kubernetes.cri.image-name":"registry.example/bypass:1"}}}}"#,
        pod_annotations("t", "p", "u1")
    );
    let spec = BundleSpec::parse(dir.path().join("config.json"), json.into_bytes()).unwrap();
    for policy in [PrimaryGidPolicy::Granted, PrimaryGidPolicy::GrantedOrUid] {
        let config = config_with(|c| c.primary_gid = policy);
        let err = format!(
            "{:#}",
            evaluate(&spec, "c", &config, &source()).unwrap_err()
        );
        for needle in [
            "container \"app\" (c) of pod t/p (uid u1)",
            "image registry.example/bypass:1",
            "primary gid 50000",
            "/etc/passwd entry for uid 1000 (alice:x:1000:50000)",
            "set runAsGroup",
        ] {
            assert!(
                err.contains(needle),
                "{policy:?}: missing {needle:?} in {err}"
            );
        }
    }
}

#[test]
fn primary_gid_policy_granted_accepts_the_effective_run_as_group() {
    use crate::pod::{ContainerGroups, ContainerKind};
    let granted = config_with(|c| c.primary_gid = PrimaryGidPolicy::Granted);
    let containers = vec![
        ContainerGroups {
            name: "app".into(),
            kind: ContainerKind::Regular,
            run_as_group: Some(50000),
        },
        ContainerGroups {
            name: "init".into(),
            kind: ContainerKind::Init,
            run_as_group: None,
        },
        ContainerGroups {
            name: "debugger".into(),
            kind: ContainerKind::Ephemeral,
            run_as_group: Some(7),
        },
    ];
    let src = MemorySource::answering(PodGroups {
        run_as_group: Some(1000),
        containers,
        ..Default::default()
    });
    let annotations = |name: &str| {
        pod_annotations("t", "p", "u1").replace(
            r#""io.kubernetes.cri.container-name":"app""#,
            &format!(r#""io.kubernetes.cri.container-name":"{name}""#),
        )
    };
    // The container's own runAsGroup overrides the pod's.
    let user = |gid: u32| format!(r#"{{"uid":1000,"gid":{gid},"additionalGids":[{gid}]}}"#);
    let ok = |name: &str, gid: u32| {
        evaluate(
            &spec_with(&user(gid), false, &annotations(name)),
            "c",
            &granted,
            &src,
        )
    };
    assert_eq!(
        ok("app", 50000).unwrap().primary_gid_rule,
        Some(PrimaryGidRule::RunAsGroup)
    );
    assert!(
        ok("app", 1000).is_err(),
        "the pod's runAsGroup is overridden for app"
    );
    // An init container without its own takes the pod's; an ephemeral one has its own.
    assert!(ok("init", 1000).is_ok());
    assert!(ok("init", 50000).is_err());
    assert!(ok("debugger", 7).is_ok());
    // An unknown container name falls back to the pod's runAsGroup.
    assert!(ok("other", 1000).is_ok());
}

#[test]
fn primary_gid_policy_granted_or_uid_accepts_gid_equal_to_uid() {
    let config = config_with(|c| c.primary_gid = PrimaryGidPolicy::GrantedOrUid);
    let user = r#"{"uid":1000,"gid":1000,"additionalGids":[1000,50000]}"#;
    let eval = evaluate(
        &spec_with(user, false, &pod_annotations("t", "p", "u1")),
        "c",
        &config,
        &source(),
    )
    .unwrap();
    assert_eq!(eval.primary_gid_rule, Some(PrimaryGidRule::EqualsUid));
    let config = config_with(|c| c.primary_gid = PrimaryGidPolicy::Granted);
    assert!(
        evaluate(
            &spec_with(user, false, &pod_annotations("t", "p", "u1")),
            "c",
            &config,
            &source()
        )
        .is_err()
    );
}

#[test]
fn ungranted_gids_refuse_names_the_gids_and_the_image() {
    let config = config_with(|c| c.ungranted_gids = UngrantedGidsPolicy::Refuse);
    let annotations = format!(
        r#"{},"io.kubernetes.cri.image-name":"registry.example/bypass:1""#,
        pod_annotations("t", "p", "u1")
    );
    let user = r#"{"uid":1000,"gid":1000,"additionalGids":[1000,50000,60000]}"#;
    let err = format!(
        "{:#}",
        evaluate(
            &spec_with(user, false, &annotations),
            "c",
            &config,
            &source()
        )
        .unwrap_err()
    );
    assert!(
        err.contains("gids 50000") && err.contains("registry.example/bypass:1"),
        "{err}"
    );
    // Nothing to drop: nothing to refuse.
    let user = r#"{"uid":1000,"gid":1000,"additionalGids":[1000,60000]}"#;
    assert!(
        evaluate(
            &spec_with(user, false, &annotations),
            "c",
            &config,
            &source()
        )
        .is_ok()
    );
}

#[test]
fn no_new_privileges_policies() {
    let user = r#"{"uid":1000,"gid":1000,"additionalGids":[1000]}"#;
    let spec = |nnp| spec_with(user, nnp, &pod_annotations("t", "p", "u1"));
    let eval = evaluate(&spec(false), "c", &Config::default(), &source()).unwrap();
    assert!(!eval.set_no_new_privileges && !eval.rewrites_spec());
    let set = config_with(|c| c.no_new_privileges = NoNewPrivilegesPolicy::Set);
    let eval = evaluate(&spec(false), "c", &set, &source()).unwrap();
    assert!(eval.set_no_new_privileges && eval.rewrites_spec() && eval.record().no_new_privileges);
    let eval = evaluate(&spec(true), "c", &set, &source()).unwrap();
    assert!(!eval.set_no_new_privileges && eval.record().no_new_privileges);
    let refuse = config_with(|c| c.no_new_privileges = NoNewPrivilegesPolicy::Refuse);
    let err = format!(
        "{:#}",
        evaluate(&spec(false), "c", &refuse, &source()).unwrap_err()
    );
    assert!(err.contains("allowPrivilegeEscalation: false"), "{err}");
    assert!(evaluate(&spec(true), "c", &refuse, &source()).is_ok());
    // Sandboxes and unmanaged containers are not pod containers: untouched.
    let unmanaged = spec_with(user, false, "");
    let eval = evaluate(&unmanaged, "c", &refuse, &source()).unwrap();
    assert!(!eval.rewrites_spec());
}

#[test]
fn no_new_privileges_set_rewrites_only_that_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{"ociVersion":"1.0.2","process":{{"noNewPrivileges":false,"user":{{"uid":1000,"gid":1000,"additionalGids":[1000,60000]}},"x":1}},"annotations":{{{}}}}}"#,
        pod_annotations("t", "p", "u1")
    );
    std::fs::write(dir.path().join("config.json"), &config).unwrap();
    let set = config_with(|c| c.no_new_privileges = NoNewPrivilegesPolicy::Set);
    let record = enforce_on_bundle(dir.path(), "c", &set, &source()).unwrap();
    assert!(record.no_new_privileges);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
        config.replace(r#""noNewPrivileges":false"#, r#""noNewPrivileges":true"#)
    );
}
