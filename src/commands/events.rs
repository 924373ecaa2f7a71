use std::path::Path;

use anyhow::{Context, Result};
use liboci_cli::Events;

use super::load_container;

pub fn events(args: Events, root: &Path) -> Result<()> {
    let mut container = load_container(root, &args.container_id)?;
    container
        .events(args.interval, args.stats)
        .with_context(|| format!("reading events of container {}", args.container_id))
}
