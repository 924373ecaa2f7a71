use std::path::Path;

use anyhow::{Context, Result, bail};
use liboci_cli::Checkpoint;

use super::load_container;

pub fn checkpoint(args: Checkpoint, root: &Path) -> Result<()> {
    // libcontainer talks to criu over its RPC socket by spawning `criu swrk`; say so plainly
    // instead of surfacing a spawn error from deep inside.
    if !criu_available() {
        bail!("criu not available: checkpoint needs the criu binary in PATH");
    }
    let mut container = load_container(root, &args.container_id)?;
    let opts = libcontainer::container::CheckpointOptions {
        ext_unix_sk: args.ext_unix_sk,
        file_locks: args.file_locks,
        image_path: args.image_path,
        leave_running: args.leave_running,
        shell_job: args.shell_job,
        tcp_established: args.tcp_established,
        work_path: args.work_path,
        manage_cgroups_mode: cgroups_mode(&args.manage_cgroups_mode)?,
        link_remap: args.link_remap,
    };
    container
        .checkpoint(&opts)
        .with_context(|| format!("checkpointing container {}", args.container_id))
}

fn criu_available() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("criu").is_file()))
}

fn cgroups_mode(s: &str) -> Result<rust_criu::CgMode> {
    Ok(match s {
        "ignore" => rust_criu::CgMode::IGNORE,
        "full" => rust_criu::CgMode::FULL,
        "strict" => rust_criu::CgMode::STRICT,
        "soft" => rust_criu::CgMode::SOFT,
        other => bail!("invalid manage-cgroups-mode {other:?}"),
    })
}
