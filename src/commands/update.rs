use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result};
use libcgroups::common::{CgroupManager, ControllerOpt};
use liboci_cli::Update;
use oci_spec::runtime::{LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder};

use super::cgroup_manager;

pub fn update(args: Update, root: &Path) -> Result<()> {
    let manager = cgroup_manager(root, &args.container_id)?;
    let resources: LinuxResources = match &args.resources {
        Some(path) if path.as_os_str() == "-" => serde_json::from_reader(std::io::stdin().lock())
            .context("parsing resources from stdin")?,
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            serde_json::from_reader(BufReader::new(file))
                .with_context(|| format!("parsing resources from {}", path.display()))?
        }
        None => {
            let mut builder = LinuxResourcesBuilder::default();
            if let Some(limit) = args.pids_limit {
                builder = builder.pids(LinuxPidsBuilder::default().limit(limit).build()?);
            }
            builder.build()?
        }
    };
    manager
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .with_context(|| format!("updating resources of container {}", args.container_id))
}
