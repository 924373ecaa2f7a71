//! One structured line per decision, at info level, in `--log` and the configured log file:
//! the audit trail of what the stage kept and dropped, for whom, from which source.

use crate::pod::Identity;

use super::Evaluation;

/// `1000,60000`.
pub fn gid_list(gids: &[u32]) -> String {
    gids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// One structured line per decision, for the audit trail.
pub fn audit(operation: &str, eval: &Evaluation) {
    let (pod, pod_uid, container_name) = match &eval.identity {
        Identity::PodContainer {
            pod,
            container_name,
        } => (
            format!("{}/{}", pod.namespace, pod.name),
            pod.uid.clone().unwrap_or_default(),
            container_name.clone().unwrap_or_default(),
        ),
        Identity::Sandbox { pod: Some(pod) } => (
            format!("{}/{}", pod.namespace, pod.name),
            pod.uid.clone().unwrap_or_default(),
            String::new(),
        ),
        _ => Default::default(),
    };
    let kind = match &eval.identity {
        Identity::PodContainer { .. } => "pod-container",
        Identity::Sandbox { .. } => "sandbox",
        Identity::Unmanaged => "unmanaged",
    };
    let fmt_gids = |g: &[u32]| gid_list(g);
    match &eval.decision {
        Some(d) => tracing::info!(
            operation,
            container_id = eval.container_id.as_str(),
            kind,
            pod = pod.as_str(),
            pod_uid = pod_uid.as_str(),
            container_name = container_name.as_str(),
            input_gids = fmt_gids(&d.input).as_str(),
            kept_gids = fmt_gids(&d.kept).as_str(),
            dropped_gids = fmt_gids(&d.dropped).as_str(),
            primary_gid = eval.primary_gid,
            image = eval.image.as_deref().unwrap_or(""),
            no_new_privileges_set = eval.set_no_new_privileges,
            source = eval.source.as_deref().unwrap_or(""),
            elapsed_us = eval.elapsed_us as u64,
            "{}",
            if d.drops_any() {
                "supplementary groups filtered"
            } else {
                "supplementary groups allowed unchanged"
            }
        ),
        None => tracing::info!(
            operation,
            container_id = eval.container_id.as_str(),
            kind,
            pod = pod.as_str(),
            pod_uid = pod_uid.as_str(),
            elapsed_us = eval.elapsed_us as u64,
            "supplementary groups passed through ({kind})"
        ),
    }
}
