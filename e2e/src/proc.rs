//! Running tools with a deadline, and reaping what this subreaper inherits.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use test_support::process::{Outcome, run_to_end};

/// Runs `cmd` with stdin from /dev/null and stdout/stderr into files (never pipes: a container
/// or conmon may inherit them and keep them open); kills it after `timeout`. Then reaps the
/// daemons that exited meanwhile.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Outcome> {
    let out = run_to_end(cmd, Stdio::null(), Some(timeout))?;
    reap_orphans(&[]);
    Ok(out)
}

/// Reaps zombie children of this process — daemons (conmon, shims) that were reparented to us
/// as the subreaper and have exited — except `keep` (children a `std::process::Child` still
/// owns, such as containerd).
pub fn reap_orphans(keep: &[i32]) {
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    for p in test_support::process::all_processes() {
        if p.state == 'Z' && p.ppid == me && !keep.contains(&p.pid) {
            let _ = waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}
