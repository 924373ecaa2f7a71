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
mod refuse;
pub mod resolve;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use serde::Serialize;

use crate::config::{Config, NoNewPrivilegesPolicy, UngrantedGidsPolicy, UnmanagedPolicy};
use crate::pod::{Identity, PodGroups, PodGroupsSource};
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
            let who = refuse::Who {
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
            .ok_or_else(|| refuse::primary_gid(&who, spec, run_as_group, config.primary_gid))?;
            let decision =
                decide::decide(&spec.user.additional_gids, spec.user.gid, groups.granted());
            if decision.drops_any() && config.ungranted_gids == UngrantedGidsPolicy::Refuse {
                return Err(refuse::ungranted(&who, &decision));
            }
            match config.no_new_privileges {
                NoNewPrivilegesPolicy::Unchanged => {}
                NoNewPrivilegesPolicy::Set => {
                    eval.set_no_new_privileges = !spec.no_new_privileges;
                    eval.enforces_no_new_privileges = true;
                }
                NoNewPrivilegesPolicy::Refuse if !spec.no_new_privileges => {
                    return Err(refuse::privilege_escalation(&who));
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
    let spec = BundleSpec::load(bundle)?;
    let eval = evaluate(&spec, container_id, config, source)?;
    if eval.rewrites_spec() {
        let rewriting = || format!("rewriting {}", spec.path.display());
        let mut edit = persist::JsonEdit::parse(&spec.raw).with_context(rewriting)?;
        if let Some(decision) = eval.decision.as_ref().filter(|d| d.drops_any()) {
            edit.set_additional_gids(&["process", "user"], &decision.kept)
                .with_context(rewriting)?;
        }
        if eval.set_no_new_privileges {
            edit.set_no_new_privileges(&["process"])
                .with_context(rewriting)?;
        }
        persist::replace_file(&spec.path, &edit.into_bytes())?;
    }
    audit::audit("create", &eval);
    Ok(eval.record())
}

#[cfg(test)]
mod tests;
