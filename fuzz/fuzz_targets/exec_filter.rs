//! An exec's `--process` file through `spec_stage::exec_filter::filter`, as `exec` runs it: the
//! file is written to a private directory (on /dev/shm when there is one: a few µs per run) and
//! filtered against three grants — the fixtures' pod (primary gid 1000, granted 60000 and
//! 70000), a pod whose grant is derived from the input's own gids, and an unmanaged container.
//!
//! Properties, for any bytes:
//! - nothing panics;
//! - an unmanaged container's process file is passed as it is;
//! - for a pod container, an exec whose primary gid is neither the container's nor granted is
//!   refused; otherwise the private copy equals the input everywhere except
//!   `user.additionalGids` (key order included, byte for byte outside the gid list), which is
//!   exactly the decision's kept gids, as
//!   read back by oci-spec (what libcontainer's exec parses) wherever oci-spec read the input;
//! - the private copy is removed when the filtered exec is dropped.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fuzz_support::{
    at_path, derived_grant, only_a_number_list_changed, same_except_additional_gids, self_check,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use strict_supplementalgroups::pod::{Identity, PodRef};
use strict_supplementalgroups::record::Record;
use strict_supplementalgroups::spec_stage::decide;
use strict_supplementalgroups::spec_stage::exec_filter::{ExecProcess, filter};
use strict_supplementalgroups::spec_stage::load::user_of;

/// A directory of this process's own (fuzz/run removes it when the process ends): it holds
/// at most two small files (the input and, never for long, the private copy).
fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("ssg-fuzz-exec-filter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a private work directory");
        dir
    })
}

fn pod_record(granted: Vec<u32>, primary_gid: u32) -> Record {
    Record::new(
        Identity::PodContainer {
            pod: PodRef {
                namespace: "user-alice".into(),
                name: "bypass-pod".into(),
                uid: Some("u1".into()),
            },
            container_name: Some("app".into()),
        },
        granted,
        primary_gid,
        Some("fuzz".into()),
    )
}

/// additionalGids of the process as libcontainer's exec reads it, if it accepts the document.
fn typed_gids(raw: &[u8]) -> Option<Vec<u32>> {
    let process: oci_spec::runtime::Process = serde_json::from_slice(raw).ok()?;
    Some(process.user().additional_gids().clone().unwrap_or_default())
}

fuzz_target!(init: self_check(), |data: &[u8]| {
    let dir = work_dir();
    let input = dir.join("process.json");
    std::fs::write(&input, data).expect("writing the input");

    let unmanaged = Record::new(Identity::Unmanaged, Vec::new(), 0, None);
    let passed = filter(&unmanaged, "fuzz-ctr", dir, ExecProcess::File(&input))
        .expect("an unmanaged container's exec passes through");
    assert_eq!(passed.process.as_deref(), Some(input.as_path()));
    drop(passed);

    let parsed: Option<Value> = serde_json::from_slice(data).ok();
    let user = parsed
        .as_ref()
        .filter(|v| v.is_object())
        .and_then(|v| user_of(v.get("user")).ok());
    let derived = user
        .as_ref()
        .map(|u| pod_record(derived_grant(&u.additional_gids), u.gid))
        .unwrap_or_else(|| pod_record(Vec::new(), 0));
    for record in [pod_record(vec![60000, 70000], 1000), derived] {
        let result = filter(&record, "fuzz-ctr", dir, ExecProcess::File(&input));
        let Some(user) = &user else {
            assert!(result.is_err(), "accepted a process file the stage cannot read");
            continue;
        };
        let allowed = user.gid == record.primary_gid || record.granted.contains(&user.gid);
        let filtered = match result {
            Ok(f) => f,
            Err(_) if !allowed => continue,
            // The rewrite refuses a key twice on its path (serde_json read the last one);
            // libcontainer's typed parse refuses such a document too.
            Err(e) if format!("{e:#}").contains("appears twice") => {
                assert!(typed_gids(data).is_none(), "oci-spec accepted a duplicated key");
                continue;
            }
            Err(e) => panic!("refused a readable process with an allowed gid: {e:#}"),
        };
        assert!(allowed, "ran an exec with primary gid {} that is not granted", user.gid);
        let expected = decide::decide(
            &user.additional_gids,
            record.primary_gid,
            record.granted.iter().copied(),
        );
        let copy = filtered.process.clone().expect("a process file");
        assert_ne!(copy, input, "libcontainer must get a private copy");
        let written = std::fs::read(&copy).expect("the private copy exists");
        let before = parsed.as_ref().expect("parsed above");
        if before.get("user").is_some_and(Value::is_object) {
            only_a_number_list_changed(data, &written);
            let after: Value = serde_json::from_slice(&written).expect("the copy must parse");
            if let Err(diff) = same_except_additional_gids(before, &after, &["user"]) {
                panic!("the exec filter changed more than additionalGids: {diff}");
            }
            let kept: Vec<Value> = expected.kept.iter().map(|&g| Value::from(g)).collect();
            assert_eq!(
                at_path(&after, &["user", "additionalGids"]),
                Some(&Value::Array(kept))
            );
        } else {
            // No user object: nothing to filter (no gids), the bytes pass as they were.
            assert!(expected.kept.is_empty());
            assert_eq!(written, data);
        }
        if typed_gids(data).is_some() {
            assert_eq!(
                typed_gids(&written),
                Some(expected.kept.clone()),
                "libcontainer reads other gids than were kept"
            );
        }
        drop(filtered);
        assert!(!copy.exists(), "the private copy outlived the exec");
    }
});
