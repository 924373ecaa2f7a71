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
