//! The decision, as a pure function: which supplementary gids a process may keep.
//!
//! allowed = pod.supplementalGroups ∪ {pod.fsGroup} ∪ {process.user.gid}
//! kept    = additionalGids ∩ allowed, in first-seen order, without duplicates
//!
//! The primary gid is always allowed: containerd ≥ 1.6.18 lists it first in additionalGids (the
//! CVE-2023-25173 fix) and dropping it would reopen that bug; Kubernetes' own
//! `supplementalGroupsPolicy: Strict` keeps runAsGroup too.

use serde::Serialize;

use crate::config::PrimaryGidPolicy;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// additionalGids as the spec had them.
    pub input: Vec<u32>,
    /// What the process will run with.
    pub kept: Vec<u32>,
    /// Distinct gids removed, in first-seen order.
    pub dropped: Vec<u32>,
}

impl Decision {
    /// The spec needs rewriting only when a gid is removed; duplicates alone are harmless.
    pub fn drops_any(&self) -> bool {
        !self.dropped.is_empty()
    }
}

/// Decides which of `additional_gids` survive for a process whose primary gid is `primary_gid`
/// in a pod granting `granted` (supplementalGroups and fsGroup).
pub fn decide(
    additional_gids: &[u32],
    primary_gid: u32,
    granted: impl IntoIterator<Item = u32>,
) -> Decision {
    let mut allowed: Vec<u32> = granted.into_iter().collect();
    allowed.push(primary_gid);
    allowed.sort_unstable();
    allowed.dedup();

    let mut kept = Vec::with_capacity(additional_gids.len());
    let mut dropped = Vec::new();
    for &gid in additional_gids {
        if allowed.binary_search(&gid).is_ok() {
            if !kept.contains(&gid) {
                kept.push(gid);
            }
        } else if !dropped.contains(&gid) {
            dropped.push(gid);
        }
    }
    Decision {
        input: additional_gids.to_vec(),
        kept,
        dropped,
    }
}

/// Why a primary gid is allowed, for `explain` and the audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrimaryGidRule {
    /// `primary-gid = "image"`: what the CRI resolved is kept (as Strict does), though it is
    /// neither the container's runAsGroup nor granted: the image chose it.
    ImagePolicy,
    /// It is the container's effective `runAsGroup`.
    RunAsGroup,
    /// The pod grants it (supplementalGroups, fsGroup or a PersistentVolume gid).
    Granted,
    /// `primary-gid = "granted-or-uid"` and it equals the container's uid.
    EqualsUid,
}

/// Whether a container may run with primary gid `gid` under `policy`; `None` means it may not.
pub fn primary_gid_rule(
    policy: PrimaryGidPolicy,
    gid: u32,
    uid: u32,
    run_as_group: Option<u32>,
    mut granted: impl Iterator<Item = u32>,
) -> Option<PrimaryGidRule> {
    // The most telling reason first, whatever the policy (explain and the audit line show it).
    if run_as_group == Some(gid) {
        return Some(PrimaryGidRule::RunAsGroup);
    }
    if granted.any(|g| g == gid) {
        return Some(PrimaryGidRule::Granted);
    }
    match policy {
        PrimaryGidPolicy::Image => Some(PrimaryGidRule::ImagePolicy),
        PrimaryGidPolicy::GrantedOrUid if gid == uid => Some(PrimaryGidRule::EqualsUid),
        PrimaryGidPolicy::GrantedOrUid | PrimaryGidPolicy::Granted => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bypass_pod_fixture() {
        // containerd 1.6.20 gave [1000, 50000, 60000] for supplementalGroups [60000].
        let d = decide(&[1000, 50000, 60000], 1000, [60000]);
        assert_eq!(d.kept, vec![1000, 60000]);
        assert_eq!(d.dropped, vec![50000]);
        assert!(d.drops_any());
    }

    #[test]
    fn fsgroup_pod_fixture() {
        let d = decide(&[1000, 50000, 60000, 70000], 1000, [60000, 70000]);
        assert_eq!(d.kept, vec![1000, 60000, 70000]);
        assert_eq!(d.dropped, vec![50000]);
    }

    #[test]
    fn fs_group_alone_is_granted() {
        let granted = crate::pod::PodGroups {
            uid: "u".into(),
            supplemental_groups: vec![50001],
            fs_group: Some(50002),
            ..Default::default()
        };
        let d = decide(&[1000, 50000, 50001, 50002], 1000, granted.granted());
        assert_eq!(d.kept, vec![1000, 50001, 50002]);
    }

    #[test]
    fn nothing_to_drop_leaves_spec_alone() {
        let d = decide(&[1000, 60000, 60000], 1000, [60000]);
        assert_eq!(d.kept, vec![1000, 60000]);
        assert!(!d.drops_any());
    }

    #[test]
    fn empty_pod_keeps_only_primary() {
        let d = decide(&[0, 1000, 4], 1000, []);
        assert_eq!(d.kept, vec![1000]);
        assert_eq!(d.dropped, vec![0, 4]);
    }

    #[test]
    fn primary_gid_rules() {
        use PrimaryGidPolicy::*;
        // The image's passwd gave 50000; the pod set no runAsGroup and grants 60000.
        assert_eq!(
            primary_gid_rule(Image, 50000, 1000, None, [60000].into_iter()),
            Some(PrimaryGidRule::ImagePolicy)
        );
        // Under image too, the reason names a runAsGroup when there is one.
        assert_eq!(
            primary_gid_rule(Image, 1000, 1000, Some(1000), [].into_iter()),
            Some(PrimaryGidRule::RunAsGroup)
        );
        for policy in [Granted, GrantedOrUid] {
            assert_eq!(
                primary_gid_rule(policy, 50000, 1000, None, [60000].into_iter()),
                None
            );
            assert_eq!(
                primary_gid_rule(policy, 1000, 1000, Some(1000), [].into_iter()),
                Some(PrimaryGidRule::RunAsGroup)
            );
            assert_eq!(
                primary_gid_rule(policy, 60000, 1000, Some(1000), [60000].into_iter()),
                Some(PrimaryGidRule::Granted)
            );
        }
        assert_eq!(
            primary_gid_rule(Granted, 1000, 1000, None, [].into_iter()),
            None
        );
        assert_eq!(
            primary_gid_rule(GrantedOrUid, 1000, 1000, None, [].into_iter()),
            Some(PrimaryGidRule::EqualsUid)
        );
        // runAsUser 0 without runAsGroup: gid 0 is granted only as the uid.
        assert_eq!(
            primary_gid_rule(GrantedOrUid, 0, 0, None, [].into_iter()),
            Some(PrimaryGidRule::EqualsUid)
        );
    }

    proptest! {
        #[test]
        fn kept_is_subset_of_allowed_and_input(
            input in proptest::collection::vec(0u32..20, 0..30),
            primary in 0u32..20,
            granted in proptest::collection::vec(0u32..20, 0..10),
        ) {
            let d = decide(&input, primary, granted.iter().copied());
            for g in &d.kept {
                prop_assert!(input.contains(g));
                prop_assert!(*g == primary || granted.contains(g));
            }
            for g in &d.dropped {
                prop_assert!(input.contains(g));
                prop_assert!(*g != primary && !granted.contains(g));
            }
            // Every input gid is accounted for exactly once.
            for g in &input {
                prop_assert!(d.kept.contains(g) ^ d.dropped.contains(g));
            }
        }

        #[test]
        fn primary_survives_when_present(
            mut input in proptest::collection::vec(0u32..20, 0..30),
            primary in 0u32..20,
            granted in proptest::collection::vec(0u32..20, 0..10),
        ) {
            input.push(primary);
            let d = decide(&input, primary, granted);
            prop_assert!(d.kept.contains(&primary));
        }

        #[test]
        fn idempotent_and_order_preserving(
            input in proptest::collection::vec(0u32..20, 0..30),
            primary in 0u32..20,
            granted in proptest::collection::vec(0u32..20, 0..10),
        ) {
            let once = decide(&input, primary, granted.iter().copied());
            let twice = decide(&once.kept, primary, granted.iter().copied());
            prop_assert_eq!(&twice.kept, &once.kept);
            prop_assert!(!twice.drops_any());
            // First-seen order: kept is input with disallowed and repeated entries removed.
            let mut expected = Vec::new();
            for g in &input {
                if (*g == primary || granted.contains(g)) && !expected.contains(g) {
                    expected.push(*g);
                }
            }
            prop_assert_eq!(once.kept, expected);
        }
    }
}
