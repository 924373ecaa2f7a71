//! DaemonSet mode: wait for SIGTERM/SIGINT. The signals are blocked before install starts, so
//! one that arrives during install is not lost and cannot cut a write short; it is taken once
//! install is done. (Children get a clean signal mask: std resets it on spawn.)

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};

pub struct Blocked(SigSet);

pub fn block_termination() -> Result<Blocked> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("blocking SIGTERM and SIGINT")?;
    Ok(Blocked(set))
}

impl Blocked {
    pub fn wait(&self) -> Result<Signal> {
        self.0.wait().context("waiting for SIGTERM or SIGINT")
    }
}

/// DaemonSet mode after the work is done: mark ready, wait for the signal, leave. The signal
/// changes nothing on the node: an upgrade, a ConfigMap change, a drain and a pod deletion all
/// send it, and none of them means "uninstall".
pub fn wait_ready(
    blocked: &Blocked,
    ready_file: Option<&std::path::Path>,
    what: &str,
) -> Result<()> {
    if let Some(ready) = ready_file {
        std::fs::write(ready, format!("{what}\n"))
            .with_context(|| format!("writing the ready file {}", ready.display()))?;
    }
    println!("{what}; waiting for SIGTERM (which changes nothing on the node)");
    let signal = blocked.wait()?;
    println!("received {signal}; exiting, the node stays as it is");
    if let Some(ready) = ready_file {
        let _ = std::fs::remove_file(ready);
    }
    Ok(())
}
