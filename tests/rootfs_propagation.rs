//! Containers start with every `linux.rootfsPropagation`, and for every mode but `shared` no
//! mount of the container is shared: the fact the carried libcontainer change relies on when it
//! skips the parent-mount lookup after a recursive `MS_SLAVE`/`MS_PRIVATE` of `/`
//! (third_party/README.md).

mod common;

use common::{TestEnv, require_root};

/// Lines of the container's mountinfo that say the mount is shared (`shared:N` optional field).
fn shared_mounts(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("reading the container's mountinfo")
        .lines()
        .filter(|line| {
            line.split(" - ")
                .next()
                .is_some_and(|fields| fields.split(' ').any(|f| f.starts_with("shared:")))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_rootfs_propagation_starts_and_only_shared_leaves_shared_mounts() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("propagation");
    for mode in [
        None,
        Some("slave"),
        Some("private"),
        Some("unbindable"),
        Some("shared"),
    ] {
        let id = format!("prop-{}", mode.unwrap_or("default"));
        let mut config = env.config(&id, &["sleep", "1000"], (1000, 1000, &[1000]));
        if let Some(mode) = mode {
            config["linux"]["rootfsPropagation"] = mode.into();
        }
        let bundle = env.bundle_with(&id, &config);
        let pid = env.create(&bundle, &id, &[]);
        let shared = shared_mounts(pid);
        if mode != Some("shared") {
            assert!(
                shared.is_empty(),
                "rootfsPropagation {mode:?}: shared mounts in the container: {shared:#?}"
            );
        }
        env.destroy(&id, Some(pid));
    }
}
