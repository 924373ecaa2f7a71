//! A created container's init is in its cgroup in every hierarchy the cgroup manager handles:
//! on cgroup v1, every v1 hierarchy of a controller libcgroups supports that this host mounts
//! (libcgroups is carried with a patched v1 manager, third_party/README.md); on cgroup v2, the
//! unified hierarchy. Guards that the manager still finds every controller.

mod common;

use common::{TestEnv, require_root};

/// The v1 controllers libcgroups' v1 manager places a container in (`CONTROLLERS`).
const V1_CONTROLLERS: [&str; 12] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// (controllers, path) of each line of /proc/<pid>/cgroup.
fn cgroups_of(pid: &str) -> Vec<(Vec<String>, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .expect("reading /proc/<pid>/cgroup")
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            Some((
                controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path.to_owned(),
            ))
        })
        .collect()
}

#[test]
fn init_joins_its_cgroup_in_every_handled_hierarchy() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("cgroups");
    let id = "cg-all";
    let bundle = env.bundle(id, &["sleep", "1000"], (1000, 1000, &[1000]));
    let pid = env.create(&bundle, id, &[]);
    let cgroup = env.cgroup(id);

    // What this test process is in tells which hierarchies the host has and of which kind.
    let ours = cgroups_of("self");
    let theirs = cgroups_of(&pid.to_string());
    let v1_handled: Vec<&Vec<String>> = ours
        .iter()
        .map(|(controllers, _)| controllers)
        .filter(|c| c.iter().any(|c| V1_CONTROLLERS.contains(&c.as_str())))
        .collect();
    let checked = if v1_handled.is_empty() {
        // cgroup v2: the unified hierarchy only.
        let unified = theirs
            .iter()
            .find(|(controllers, _)| controllers.is_empty())
            .map(|(_, path)| path.as_str());
        assert_eq!(unified, Some(cgroup.as_str()), "init's cgroups: {theirs:?}");
        1
    } else {
        for controllers in &v1_handled {
            let path = theirs
                .iter()
                .find(|(c, _)| c == *controllers)
                .map(|(_, path)| path.as_str());
            assert_eq!(
                path,
                Some(cgroup.as_str()),
                "hierarchy {controllers:?}: init's cgroups are {theirs:?}"
            );
        }
        v1_handled.len()
    };
    assert!(checked > 0);
    env.destroy(id, Some(pid));
}
