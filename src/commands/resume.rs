use std::path::Path;

use anyhow::{Context, Result};
use liboci_cli::Resume;

use super::load_container;

pub fn resume(args: Resume, root: &Path) -> Result<()> {
    let mut container = load_container(root, &args.container_id)?;
    container
        .resume()
        .with_context(|| format!("resuming container {}", args.container_id))
}
