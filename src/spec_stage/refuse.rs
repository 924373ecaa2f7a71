//! The policy refusals of the stage: each names who (pod, container, image), what, why, and
//! the fix, and leaves a warn line in the audit trail before the error ends the create.

use super::audit;
use super::decide::Decision;
use super::load::BundleSpec;
use crate::config::PrimaryGidPolicy;
use crate::pod::PodRef;

/// Who a refusal is about, for its message and audit line.
pub(super) struct Who<'a> {
    pub container_id: &'a str,
    pub pod: &'a PodRef,
    pub container_name: Option<&'a str>,
    pub image: Option<&'a str>,
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
pub(super) fn primary_gid(
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
pub(super) fn ungranted(who: &Who<'_>, decision: &Decision) -> anyhow::Error {
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
pub(super) fn privilege_escalation(who: &Who<'_>) -> anyhow::Error {
    anyhow::anyhow!(
        "{who}: the container may gain privileges (process.noNewPrivileges is false), so a \
         setgid binary or file capabilities in its image could regain a group the pod does not \
         grant (no-new-privileges = \"refuse\"); set allowPrivilegeEscalation: false in the \
         container's securityContext"
    )
}
