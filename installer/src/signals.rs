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
