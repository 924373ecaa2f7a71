use std::path::Path;

use anyhow::{Context, Result};
use liboci_cli::Pause;

use super::load_container;

pub fn pause(args: Pause, root: &Path) -> Result<()> {
    let mut container = load_container(root, &args.container_id)?;
    container
        .pause()
        .with_context(|| format!("pausing container {}", args.container_id))
}
