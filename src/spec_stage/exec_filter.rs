//! Enforcement for `exec`. containerd's exec process.json carries the image-merged gids and no
//! annotations, so the grant is the record written at create (no lookup, no network; for a
//! container created without one, `commands::exec` evaluates its state's annotations again).
//! libcontainer only ever sees a private, filtered copy of the process file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::audit::audit;
use super::decide::{self, Decision};
use super::load::{ProcessUser, user_of};
use super::{Evaluation, persist};
use crate::pod::Identity;
use crate::record::Record;

/// The process an exec asks for: a `--process` file (what the containerd shim and conmon pass),
/// or the user a runc-style flag call resolves to (the container's own user with `--user` and
/// `--additional-gids` applied, as runc does).
pub enum ExecProcess<'a> {
    File(&'a Path),
    Flags(ProcessUser),
}

/// What libcontainer is handed for an exec.
pub struct FilteredExec {
    /// The process file to pass (a private, filtered copy), when the caller gave one.
    pub process: Option<PathBuf>,
    /// The user of a flag-built process, filtered (`None` with a process file).
    pub user: Option<ProcessUser>,
    /// The exec must run with `noNewPrivileges` (the container's `no-new-privileges` policy);
    /// a process file's copy already says so.
    pub no_new_privileges: bool,
    private_copy: Option<PathBuf>,
}

impl Drop for FilteredExec {
    fn drop(&mut self) {
        if let Some(path) = self.private_copy.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Filters an exec's process against the grant of its container. For a pod container, the
/// process's primary gid must be the container's own (its record) or one the pod grants —
/// otherwise the exec is refused — and its supplementary gids are cut to the grant, exactly as
/// at create. Sandboxes and unmanaged containers pass through.
pub fn filter(
    grant: &Record,
    container_id: &str,
    container_dir: &Path,
    process: ExecProcess<'_>,
) -> Result<FilteredExec> {
    let started = Instant::now();
    if !matches!(grant.identity, Identity::PodContainer { .. }) {
        return Ok(match process {
            ExecProcess::File(path) => FilteredExec {
                process: Some(path.to_path_buf()),
                user: None,
                no_new_privileges: false,
                private_copy: None,
            },
            ExecProcess::Flags(user) => FilteredExec {
                process: None,
                user: Some(user),
                no_new_privileges: false,
                private_copy: None,
            },
        });
    }
    let decide_for = |user: &ProcessUser| -> Result<Decision> {
        check_primary_gid(grant, container_id, user.gid)?;
        Ok(decide::decide(
            &user.additional_gids,
            grant.primary_gid,
            grant.granted.iter().copied(),
        ))
    };
    let (decision, filtered) = match process {
        ExecProcess::Flags(mut user) => {
            let decision = decide_for(&user)?;
            user.additional_gids = decision.kept.clone();
            (
                decision,
                FilteredExec {
                    process: None,
                    user: Some(user),
                    no_new_privileges: grant.no_new_privileges,
                    private_copy: None,
                },
            )
        }
        ExecProcess::File(path) => {
            let raw = read_process_file(path)?;
            let json: serde_json::Value = serde_json::from_slice(&raw)
                .with_context(|| format!("parsing exec process {}", path.display()))?;
            if !json.is_object() {
                bail!("exec process {} must be a JSON object", path.display());
            }
            let user = user_of(json.get("user"))
                .with_context(|| format!("exec process {}: user", path.display()))?;
            let decision = decide_for(&user)?;
            let has_user = json.get("user").is_some_and(|u| u.is_object());
            let force_nnp = grant.no_new_privileges
                && json.get("noNewPrivileges") != Some(&serde_json::Value::Bool(true));
            let contents = if has_user || force_nnp {
                let rewriting = || format!("rewriting exec process {}", path.display());
                let mut edit = persist::JsonEdit::parse(&raw).with_context(rewriting)?;
                if has_user {
                    edit.set_additional_gids(&["user"], &decision.kept)
                        .with_context(rewriting)?;
                }
                if force_nnp {
                    edit.set_no_new_privileges(&[]).with_context(rewriting)?;
                }
                edit.into_bytes()
            } else {
                raw
            };
            let copy = write_private_copy(container_dir, &contents)?;
            (
                decision,
                FilteredExec {
                    process: Some(copy.clone()),
                    user: None,
                    no_new_privileges: grant.no_new_privileges,
                    private_copy: Some(copy),
                },
            )
        }
    };
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
            image: None,
            run_as_group: None,
            primary_gid_rule: None,
            decision: Some(decision),
            set_no_new_privileges: false,
            enforces_no_new_privileges: grant.no_new_privileges,
            elapsed_us: started.elapsed().as_micros(),
        },
    );
    Ok(filtered)
}

/// An exec may run with the container's own primary gid, or with one the pod grants; any
/// other gid would be a group the pod never had.
fn check_primary_gid(grant: &Record, container_id: &str, gid: u32) -> Result<()> {
    if gid == grant.primary_gid || grant.granted.contains(&gid) {
        return Ok(());
    }
    bail!(
        "exec into container {container_id} asks for primary gid {gid}, which is neither the \
         container's own ({}) nor granted by its pod ({}); refusing it",
        grant.primary_gid,
        if grant.granted.is_empty() {
            "no supplementalGroups, fsGroup or volume gids".to_owned()
        } else {
            grant
                .granted
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    )
}

/// The most of a process file that is read: a process is a few KiB.
const MAX_PROCESS_FILE: u64 = 4 << 20;

/// Reads a process file: a regular file (never a FIFO or device that would block), bounded.
fn read_process_file(path: &Path) -> Result<Vec<u8>> {
    crate::bounded_read::read(path, MAX_PROCESS_FILE)
        .and_then(|bytes| bytes.ok_or_else(|| std::io::ErrorKind::NotFound.into()))
        .with_context(|| format!("reading exec process {}", path.display()))
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
    use crate::pod::PodRef;

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

    fn user(gid: u32, additional: &[u32]) -> ProcessUser {
        ProcessUser {
            uid: 1000,
            gid,
            additional_gids: additional.to_vec(),
        }
    }

    #[test]
    fn filters_process_file_into_private_copy() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("process.json");
        let body = r#"{"user":{"uid":1000,"gid":1000,"additionalGids":[1000,50000,60000]},"args":["id"],"x-vendor":1}"#;
        std::fs::write(&original, body).unwrap();
        let filtered =
            filter(&pod_record(), "c", dir.path(), ExecProcess::File(&original)).unwrap();
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
    fn an_exec_primary_gid_must_be_the_containers_or_granted() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("p.json");
        // gid 0 is neither the container's primary gid (1000) nor granted (60000).
        std::fs::write(
            &original,
            r#"{"user":{"uid":0,"gid":0,"additionalGids":[0,50000,10]}}"#,
        )
        .unwrap();
        let err = filter(&pod_record(), "c", dir.path(), ExecProcess::File(&original))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("primary gid 0"), "{err}");
        // A granted gid may be an exec's primary gid; the container's own always is.
        for gid in [60000, 1000] {
            let f = filter(
                &pod_record(),
                "c",
                dir.path(),
                ExecProcess::Flags(user(gid, &[gid, 50000])),
            )
            .unwrap();
            assert_eq!(f.user.as_ref().unwrap().additional_gids, vec![gid]);
        }
    }

    #[test]
    fn flags_are_filtered_and_passthrough_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let f = filter(
            &pod_record(),
            "c",
            dir.path(),
            ExecProcess::Flags(user(1000, &[50000, 60000, 1000, 7, 0])),
        )
        .unwrap();
        assert_eq!(f.user.as_ref().unwrap().additional_gids, vec![60000, 1000]);
        assert!(
            filter(
                &pod_record(),
                "c",
                dir.path(),
                ExecProcess::Flags(user(7, &[]))
            )
            .is_err()
        );
        let unmanaged = Record::new(Identity::Unmanaged, vec![], 0, None);
        let f = filter(
            &unmanaged,
            "c",
            dir.path(),
            ExecProcess::Flags(user(7, &[50000])),
        )
        .unwrap();
        assert_eq!(f.user.as_ref().unwrap().additional_gids, vec![50000]);
    }

    #[test]
    fn garbage_or_special_process_files_fail_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.json");
        for body in ["{", "[]", r#"{"user":{"additionalGids":[-5]}}"#] {
            std::fs::write(&p, body).unwrap();
            assert!(
                filter(&pod_record(), "c", dir.path(), ExecProcess::File(&p)).is_err(),
                "{body}"
            );
        }
        // A FIFO with no writer would block a blocking open forever.
        let fifo = dir.path().join("fifo.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = filter(&pod_record(), "c", dir.path(), ExecProcess::File(&fifo))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
