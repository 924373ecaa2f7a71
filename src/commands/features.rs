use std::collections::HashMap;

use anyhow::Result;
use liboci_cli::Features;
use oci_spec::runtime::{
    ApparmorBuilder, CgroupBuilder, FeaturesBuilder, IDMapBuilder, IntelRdtBuilder,
    LinuxFeatureBuilder, LinuxNamespaceType, MountExtensionsBuilder, SeccompBuilder,
    SelinuxBuilder, VERSION,
};

/// Hooks libcontainer runs.
const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The OCI features document (`runc features`) for what this build supports.
pub fn features(_: Features) -> Result<()> {
    let namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Time,
    ];
    let mut capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    capabilities.sort();

    let linux = LinuxFeatureBuilder::default()
        .namespaces(namespaces)
        .capabilities(capabilities)
        .cgroup(
            CgroupBuilder::default()
                .v1(true)
                .v2(true)
                .systemd(true)
                .systemd_user(true)
                .rdma(false)
                .build()?,
        )
        .seccomp(SeccompBuilder::default().enabled(true).build()?)
        .apparmor(ApparmorBuilder::default().enabled(true).build()?)
        .selinux(SelinuxBuilder::default().enabled(false).build()?)
        .intel_rdt(IntelRdtBuilder::default().enabled(true).build()?)
        .mount_extensions(
            MountExtensionsBuilder::default()
                .idmap(IDMapBuilder::default().enabled(false).build()?)
                .build()?,
        )
        .build()?;

    let annotations = HashMap::from([(
        "io.github.strict-supplementalgroups.version".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    )]);
    let features = FeaturesBuilder::default()
        .oci_version_min("1.0.0")
        .oci_version_max(VERSION)
        .hooks(HOOKS.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>())
        .mount_options(libcontainer::syscall::linux::MountOption::known_options())
        .linux(linux)
        .annotations(annotations)
        .build()?;
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(())
}
