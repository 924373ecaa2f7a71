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

use crate::config::{
    Config, NoNewPrivilegesPolicy, PrimaryGidPolicy, UngrantedGidsPolicy, UnmanagedPolicy,
};
use crate::pod::{Identity, PodGroups, PodGroupsSource, PodRef};
use crate::record::Record;
use decide::{Decision, PrimaryGidRule};
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
    /// The image, when the CRI names it (for the audit line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The container's effective runAsGroup (pod containers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
    /// Why the primary gid is allowed (pod containers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_gid_rule: Option<PrimaryGidRule>,
    /// None when the container is passed through (sandbox, unmanaged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// `no-new-privileges = "set"` turns `process.noNewPrivileges` on.
    pub set_no_new_privileges: bool,
    /// The container and its execs run with `noNewPrivileges` enforced by this runtime.
    pub enforces_no_new_privileges: bool,
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
        let mut record = Record::new(
            self.identity.clone(),
            granted,
            self.primary_gid,
            self.source.clone(),
        );
        record.no_new_privileges = self.enforces_no_new_privileges;
        record
    }

    /// Whether create rewrites config.json.
    pub fn rewrites_spec(&self) -> bool {
        self.set_no_new_privileges || self.decision.as_ref().is_some_and(Decision::drops_any)
    }
}

/// Steps 2–4 for a loaded spec. Fails (closed) whenever a pod container's groups cannot be
/// determined, or a policy refuses it (`unmanaged = "deny"`, `primary-gid`, `ungranted-gids =
/// "refuse"`, `no-new-privileges = "refuse"`). The source is asked only for a pod container.
/// Nothing here reads a file, except the image's /etc/passwd to explain a refused primary gid.
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
        image: spec.image_name().map(str::to_owned),
        run_as_group: None,
        primary_gid_rule: None,
        decision: None,
        set_no_new_privileges: false,
        enforces_no_new_privileges: false,
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
        Identity::PodContainer {
            pod,
            container_name,
        } => {
            eval.source = Some(source.describe());
            let groups = resolve::resolve(source, pod, container_id)?;
            let who = Who {
                container_id,
                pod,
                container_name: container_name.as_deref(),
                image: eval.image.as_deref(),
            };
            let run_as_group = groups.effective_run_as_group(container_name.as_deref());
            let rule = decide::primary_gid_rule(
                config.primary_gid,
                spec.user.gid,
                spec.user.uid,
                run_as_group,
                groups.granted(),
            )
            .ok_or_else(|| refuse_primary_gid(&who, spec, run_as_group, config.primary_gid))?;
            let decision =
                decide::decide(&spec.user.additional_gids, spec.user.gid, groups.granted());
            if decision.drops_any() && config.ungranted_gids == UngrantedGidsPolicy::Refuse {
                return Err(refuse_ungranted(&who, &decision));
            }
            match config.no_new_privileges {
                NoNewPrivilegesPolicy::Unchanged => {}
                NoNewPrivilegesPolicy::Set => {
                    eval.set_no_new_privileges = !spec.no_new_privileges;
                    eval.enforces_no_new_privileges = true;
                }
                NoNewPrivilegesPolicy::Refuse if !spec.no_new_privileges => {
                    return Err(refuse_privilege_escalation(&who));
                }
                NoNewPrivilegesPolicy::Refuse => eval.enforces_no_new_privileges = true,
            }
            eval.run_as_group = run_as_group;
            eval.primary_gid_rule = Some(rule);
            eval.decision = Some(decision);
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
    if eval.rewrites_spec() {
        if let Some(decision) = eval.decision.as_ref().filter(|d| d.drops_any()) {
            persist::set_additional_gids(&mut spec.json, &["process", "user"], &decision.kept)?;
        }
        if eval.set_no_new_privileges {
            persist::set_no_new_privileges(&mut spec.json)?;
        }
        persist::replace_file(&spec.path, &persist::serialize_like(&spec.raw, &spec.json)?)?;
    }
    audit::audit("create", &eval);
    Ok(eval.record())
}

/// Who a refusal is about, for its message and audit line.
struct Who<'a> {
    container_id: &'a str,
    pod: &'a PodRef,
    container_name: Option<&'a str>,
    image: Option<&'a str>,
}

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "container {:?} ({}) of pod {}",
            self.container_name.unwrap_or("?"),
            self.container_id,
            self.pod
        )?;
        if let Some(image) = self.image {
            write!(f, ", image {image}")?;
        }
        Ok(())
    }
}

/// The primary gid is not the pod's: say which, where it came from, and the fix.
fn refuse_primary_gid(
    who: &Who<'_>,
    spec: &BundleSpec,
    run_as_group: Option<u32>,
    policy: PrimaryGidPolicy,
) -> anyhow::Error {
    let (uid, gid) = (spec.user.uid, spec.user.gid);
    let origin = match run_as_group {
        Some(rag) => format!("the pod's runAsGroup is {rag}, yet the spec asks for gid {gid}"),
        None => {
            let entry = spec
                .rootfs()
                .map(|rootfs| crate::etc_passwd::entry_in_rootfs(&rootfs, uid));
            match entry {
                Some(Ok(Some((name, passwd_gid)))) if passwd_gid == gid => format!(
                    "no runAsGroup is set, so it came from the image's /etc/passwd entry for uid \
                     {uid} ({name}:x:{uid}:{gid})"
                ),
                _ => format!(
                    "no runAsGroup is set, so the image chose it (its USER or /etc/passwd for \
                     uid {uid})"
                ),
            }
        }
    };
    let allowed = match policy {
        PrimaryGidPolicy::GrantedOrUid => "its runAsGroup, a granted gid, or its uid",
        _ => "its runAsGroup or a granted gid",
    };
    tracing::warn!(
        container_id = who.container_id,
        pod = %who.pod,
        container_name = who.container_name.unwrap_or(""),
        image = who.image.unwrap_or(""),
        primary_gid = gid,
        "primary gid refused"
    );
    anyhow::anyhow!(
        "{who}: primary gid {gid} is not granted to the pod ({origin}); primary-gid = \
         \"{}\" allows only {allowed}; set runAsGroup in the pod's or container's \
         securityContext",
        match policy {
            PrimaryGidPolicy::Image => "image",
            PrimaryGidPolicy::Granted => "granted",
            PrimaryGidPolicy::GrantedOrUid => "granted-or-uid",
        }
    )
}

/// `ungranted-gids = "refuse"`: the image tried to add groups the pod was not granted.
fn refuse_ungranted(who: &Who<'_>, decision: &Decision) -> anyhow::Error {
    let gids = audit::gid_list(&decision.dropped);
    tracing::warn!(
        container_id = who.container_id,
        pod = %who.pod,
        container_name = who.container_name.unwrap_or(""),
        image = who.image.unwrap_or(""),
        input_gids = audit::gid_list(&decision.input).as_str(),
        ungranted_gids = gids.as_str(),
        "supplementary groups refused"
    );
    anyhow::anyhow!(
        "{who}: the image adds supplementary gids {gids} that the pod does not grant \
         (ungranted-gids = \"refuse\"); remove them from the image's /etc/group, or grant \
         them in the pod's supplementalGroups"
    )
}

/// `no-new-privileges = "refuse"`: a setgid binary or file capabilities could regain a group.
fn refuse_privilege_escalation(who: &Who<'_>) -> anyhow::Error {
    anyhow::anyhow!(
        "{who}: the container may gain privileges (process.noNewPrivileges is false), so a \
         setgid binary or file capabilities in its image could regain a group the pod does not \
         grant (no-new-privileges = \"refuse\"); set allowPrivilegeEscalation: false in the \
         container's securityContext"
    )
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
        assert!(
            eval.set_no_new_privileges && eval.rewrites_spec() && eval.record().no_new_privileges
        );
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
}
