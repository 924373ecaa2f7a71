use std::path::Path;

use anyhow::{Context, Result};
use liboci_cli::Start;

use super::load_container;

pub fn start(args: Start, root: &Path) -> Result<()> {
    let mut container = load_container(root, &args.container_id)?;
    container
        .start()
        .with_context(|| format!("starting container {}", args.container_id))
}
