use std::path::Path;

use anyhow::{Context, Result};
use liboci_cli::Delete;

use super::{container_dir, load_container};

pub fn delete(args: Delete, root: &Path) -> Result<()> {
    let dir = container_dir(root, &args.container_id)?;
    if args.force && !dir.exists() {
        // runc: deleting what is already gone with --force succeeds (the shim relies on it).
        return Ok(());
    }
    let mut container = load_container(root, &args.container_id)?;
    container
        .delete(args.force)
        .with_context(|| format!("deleting container {}", args.container_id))
}
