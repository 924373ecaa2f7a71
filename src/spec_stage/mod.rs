//! The spec-loading stage that runs in-process before libcontainer creates anything:
//! load → identify → resolve → decide → persist. `exec` reuses identify/resolve/decide on the
//! exec process (see `exec`).

pub mod exec;
pub mod identify;
pub mod load;
pub mod persist;

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, anyhow};
use serde::Serialize;

use crate::config::{Config, UnmanagedPolicy};
use crate::podgroups::{self, PodGroups};
use crate::policy::{self, Decision};
use crate::record::Record;
use identify::Identity;
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
/// determined, or an unmanaged container meets `unmanaged = "deny"`.
pub fn evaluate(
    spec: &BundleSpec,
    container_id: &str,
    config: &Config,
    state_root: &Path,
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
            let source = podgroups::from_config(config, state_root)
                .map_err(|e| fail_closed(container_id, pod, &e))?;
            eval.source = Some(source.describe());
            let groups = source
                .lookup(pod)
                .map_err(|e| fail_closed(container_id, pod, &anyhow!(e)))?;
            eval.decision = Some(policy::decide(
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

fn fail_closed(container_id: &str, pod: &podgroups::PodRef, err: &anyhow::Error) -> anyhow::Error {
    anyhow!(
        "cannot determine the supplementary groups of pod {pod} for container {container_id}: \
         {err:#}; refusing to create it with unfiltered groups"
    )
}

/// The whole stage for `create`/`run`: evaluates, logs the decision, and rewrites config.json
/// when gids must go. Returns the record to keep once the container exists.
pub fn enforce_on_bundle(
    bundle: &Path,
    container_id: &str,
    config: &Config,
    state_root: &Path,
) -> Result<Record> {
    let mut spec = BundleSpec::load(bundle)?;
    let eval = evaluate(&spec, container_id, config, state_root)?;
    if let Some(decision) = eval.decision.as_ref().filter(|d| d.drops_any()) {
        persist::set_additional_gids(&mut spec.json, &["process", "user"], &decision.kept)?;
        persist::replace_file(&spec.path, &persist::serialize_like(&spec.raw, &spec.json)?)?;
    }
    audit("create", &eval);
    Ok(eval.record())
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
    let fmt_gids = |g: &[u32]| g.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
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
