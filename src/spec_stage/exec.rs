//! Enforcement for `exec`. containerd's exec process.json carries the image-merged gids and no
//! annotations, so the grant comes from the record written at create (no lookup, no network),
//! or, for a container created without one, from the annotations libcontainer kept in its
//! state. libcontainer only ever sees a private, filtered copy of the process file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use libcontainer::container::Container;

use super::identify::Identity;
use super::load::{BundleSpec, user_of};
use super::{Evaluation, audit, evaluate, persist};
use crate::config::Config;
use crate::policy::{self, Decision};
use crate::record::Record;

/// The grant for execs into `container_id`: its record, or a fresh evaluation when it has none
/// (only then is the runtime config, as `main` read it, needed).
pub fn grant_for(
    container_dir: &Path,
    container_id: &str,
    state_root: &Path,
    config: &Result<Config>,
) -> Result<Record> {
    if let Some(record) = Record::load(container_dir)? {
        return Ok(record);
    }
    let container = Container::load(container_dir.to_path_buf())
        .with_context(|| format!("loading state of container {container_id}"))?;
    let annotations = super::identify::state_annotations(&container);
    let mut spec = BundleSpec::load(container.bundle())
        .with_context(|| format!("reading the bundle of container {container_id}"))?;
    // The state's annotations are what create saw; the bundle may have been edited since.
    spec.annotations = annotations;
    let config = config
        .as_ref()
        .map_err(|e| anyhow!("reading the runtime configuration: {e:#}"))?;
    tracing::info!(
        container_id,
        "container has no group record (created before this runtime kept them); resolving again"
    );
    let eval = evaluate(&spec, container_id, config, state_root)?;
    Ok(eval.record())
}

/// What libcontainer is handed for an exec.
pub struct FilteredExec {
    /// The process file to pass (a private copy when filtered), if the caller gave one.
    pub process: Option<PathBuf>,
    pub additional_gids: Vec<u32>,
    private_copy: Option<PathBuf>,
}

impl Drop for FilteredExec {
    fn drop(&mut self) {
        if let Some(path) = self.private_copy.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Filters the exec's `--process` file and `--additional-gids` against the grant.
/// `flag_gid` is the primary gid of a process built from flags (`--user uid:gid`, else 0).
pub fn filter(
    grant: &Record,
    container_id: &str,
    container_dir: &Path,
    process: Option<&Path>,
    flag_gids: &[u32],
    flag_gid: u32,
) -> Result<FilteredExec> {
    let started = Instant::now();
    if !matches!(grant.identity, Identity::PodContainer { .. }) {
        return Ok(FilteredExec {
            process: process.map(Path::to_path_buf),
            additional_gids: flag_gids.to_vec(),
            private_copy: None,
        });
    }
    let allow = |gids: &[u32], gid: u32| -> Decision {
        policy::decide(
            gids,
            gid,
            grant.granted.iter().copied().chain([grant.primary_gid]),
        )
    };

    let mut decision = allow(flag_gids, flag_gid);
    let additional_gids = decision.kept.clone();
    let mut private_copy = None;
    if let Some(path) = process {
        let raw = std::fs::read(path)
            .with_context(|| format!("reading exec process {}", path.display()))?;
        let mut json: serde_json::Value = serde_json::from_slice(&raw)
            .with_context(|| format!("parsing exec process {}", path.display()))?;
        if !json.is_object() {
            bail!("exec process {} must be a JSON object", path.display());
        }
        let user = user_of(json.get("user"))
            .with_context(|| format!("exec process {}: user", path.display()))?;
        decision = allow(&user.additional_gids, user.gid);
        let contents = if json.get("user").is_some_and(|u| u.is_object()) {
            persist::set_additional_gids(&mut json, &["user"], &decision.kept)?;
            persist::serialize_like(&raw, &json)?
        } else {
            raw
        };
        private_copy = Some(write_private_copy(container_dir, &contents)?);
    }
    audit(
        "exec",
        &Evaluation {
            container_id: container_id.to_owned(),
            identity: grant.identity.clone(),
            source: Some(format!(
                "record ({})",
                grant.source.as_deref().unwrap_or("unknown source")
            )),
            pod_groups: None,
            primary_gid: grant.primary_gid,
            decision: Some(decision),
            elapsed_us: started.elapsed().as_micros(),
        },
    );
    Ok(FilteredExec {
        process: private_copy.clone(),
        additional_gids,
        private_copy,
    })
}

/// A root-only file in the container's state directory, never the caller's path: whatever the
/// caller's file says later, libcontainer reads what was filtered.
fn write_private_copy(container_dir: &Path, contents: &[u8]) -> Result<PathBuf> {
    let (path, mut file) = crate::atomic_file::create_unique(container_dir, "exec-process.json")?;
    if let Err(err) = file.write_all(contents) {
        let _ = std::fs::remove_file(&path);
        return Err(err).with_context(|| format!("writing {}", path.display()));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podgroups::PodRef;

    fn pod_record() -> Record {
        Record::new(
            Identity::PodContainer {
                pod: PodRef {
                    namespace: "user-alice".into(),
                    name: "bypass-pod".into(),
                    uid: Some("u1".into()),
                },
                container_name: Some("app".into()),
            },
            vec![60000],
            1000,
            None,
        )
    }

    #[test]
    fn filters_process_file_into_private_copy() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("process.json");
        let body = r#"{"user":{"uid":1000,"gid":1000,"additionalGids":[1000,50000,60000]},"args":["id"],"x-vendor":1}"#;
        std::fs::write(&original, body).unwrap();
        let filtered = filter(&pod_record(), "c", dir.path(), Some(&original), &[], 0).unwrap();
        let copy = filtered.process.clone().unwrap();
        assert_ne!(copy, original);
        assert_eq!(
            std::fs::read_to_string(&copy).unwrap(),
            body.replace("[1000,50000,60000]", "[1000,60000]")
        );
        assert_eq!(std::fs::read_to_string(&original).unwrap(), body);
        drop(filtered);
        assert!(!copy.exists(), "private copy must be removed");
    }

    #[test]
    fn exec_user_gid_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("p.json");
        std::fs::write(
            &original,
            r#"{"user":{"uid":0,"gid":0,"additionalGids":[0,50000,10]}}"#,
        )
        .unwrap();
        let filtered = filter(&pod_record(), "c", dir.path(), Some(&original), &[], 0).unwrap();
        let text = std::fs::read_to_string(filtered.process.as_ref().unwrap()).unwrap();
        assert!(text.contains(r#""additionalGids":[0]"#), "{text}");
    }

    #[test]
    fn flags_are_filtered_and_passthrough_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let f = filter(
            &pod_record(),
            "c",
            dir.path(),
            None,
            &[50000, 60000, 1000, 7],
            7,
        )
        .unwrap();
        assert_eq!(f.additional_gids, vec![60000, 1000, 7]);
        let unmanaged = Record::new(Identity::Unmanaged, vec![], 0, None);
        let f = filter(&unmanaged, "c", dir.path(), None, &[50000], 0).unwrap();
        assert_eq!(f.additional_gids, vec![50000]);
    }

    #[test]
    fn garbage_process_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.json");
        for body in ["{", "[]", r#"{"user":{"additionalGids":[-5]}}"#] {
            std::fs::write(&p, body).unwrap();
            assert!(
                filter(&pod_record(), "c", dir.path(), Some(&p), &[], 0).is_err(),
                "{body}"
            );
        }
    }
}
