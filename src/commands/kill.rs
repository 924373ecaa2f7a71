use std::path::Path;

use anyhow::{Context, Result};
use libcontainer::container::ContainerStatus;
use libcontainer::signal::Signal;
use liboci_cli::Kill;

use super::load_container;

pub fn kill(args: Kill, root: &Path) -> Result<()> {
    let mut container = load_container(root, &args.container_id)?;
    let signal = Signal::try_from(args.signal.as_str())
        .with_context(|| format!("invalid signal {:?}", args.signal))?;
    container.kill(signal, args.all).map_err(|err| {
        let what = if container.status() == ContainerStatus::Stopped {
            "container not running"
        } else {
            "killing container"
        };
        anyhow::Error::new(err).context(format!("{what} {}", args.container_id))
    })
}
