use std::fs::File;
use std::io::{BufWriter, ErrorKind, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use libcgroups::common::{CgroupSetup, get_cgroup_setup};
use oci_spec::runtime::{
    LinuxBuilder, LinuxDeviceCgroupBuilder, LinuxIdMappingBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, Spec,
};

/// Writes a default config.json (or a rootless one) into the bundle, refusing to overwrite.
pub fn spec(args: liboci_cli::Spec) -> Result<()> {
    let spec = if args.rootless {
        rootless_spec()?
    } else {
        normalize(Spec::default())?
    };
    let path = args
        .bundle
        .map(|b| b.join("config.json"))
        .unwrap_or_else(|| PathBuf::from("config.json"));
    let file = File::create_new(&path).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => anyhow!("{} already exists", path.display()),
        _ => anyhow!(e).context(format!("creating {}", path.display())),
    })?;
    let mut out = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, &spec)?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}

fn rootless_spec() -> Result<Spec> {
    let mut namespaces: Vec<_> = oci_spec::runtime::get_default_namespaces()
        .into_iter()
        .filter(|ns| {
            !matches!(
                ns.typ(),
                LinuxNamespaceType::Network | LinuxNamespaceType::User
            )
        })
        .collect();
    namespaces.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .build()?,
    );
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let map = |host: u32| {
        LinuxIdMappingBuilder::default()
            .host_id(host)
            .container_id(0_u32)
            .size(1_u32)
            .build()
    };
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .uid_mappings(vec![map(uid)?])
        .gid_mappings(vec![map(gid)?])
        .build()?;
    let mut mounts = oci_spec::runtime::get_default_mounts();
    for mount in &mut mounts {
        if mount.destination() == &PathBuf::from("/sys") {
            mount
                .set_source(Some(PathBuf::from("/sys")))
                .set_typ(Some("none".to_owned()))
                .set_options(Some(
                    ["rbind", "nosuid", "noexec", "nodev", "ro"]
                        .map(String::from)
                        .to_vec(),
                ));
        } else {
            // uid=/gid= options name host ids that do not exist in a user namespace.
            let options = mount
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| !o.starts_with("uid=") && !o.starts_with("gid="))
                .collect();
            mount.set_options(Some(options));
        }
    }
    let mut spec = Spec::default();
    spec.set_linux(Some(linux)).set_mounts(Some(mounts));
    normalize(spec)
}

fn normalize(mut spec: Spec) -> Result<Spec> {
    if let Some(process) = spec.process_mut() {
        if let Some(mut caps) = process.capabilities().clone() {
            caps.set_inheritable(None);
            caps.set_ambient(None);
            process.set_capabilities(Some(caps));
        }
    }
    if let Some(linux) = spec.linux_mut() {
        if let Some(resources) = linux.resources_mut() {
            resources.set_devices(Some(vec![
                LinuxDeviceCgroupBuilder::default()
                    .allow(false)
                    .access("rwm".to_owned())
                    .build()?,
            ]));
        }
        // A cgroup namespace is only useful (and only works everywhere) on unified hierarchies.
        if let Some(namespaces) = linux.namespaces_mut() {
            if !matches!(get_cgroup_setup(), Ok(CgroupSetup::Unified)) {
                namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Cgroup);
            }
        }
    }
    Ok(spec)
}
