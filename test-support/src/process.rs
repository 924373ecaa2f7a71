//! Process plumbing for tests that start containers on a machine whose PID 1 does not reap.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Makes this process the reaper of orphaned descendants (container init processes whose
/// runtime exited), as the containerd shim and conmon are.
pub fn become_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")
}

/// Reaps `pid` if it has exited and was reparented to us; never touches other children, so
/// `std::process::Child::wait` elsewhere keeps working.
pub fn reap(pid: i32) {
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

/// Waits until `pid` is gone (reaping it if it is our child) or the timeout passes.
pub fn wait_gone(pid: i32, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => return Ok(()),
            // Not our child: poll /proc instead.
            Err(_) => {
                if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("process {pid} still alive after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The `Groups:` line of /proc/<pid>/status, as numbers.
pub fn groups_of(pid: i32) -> Result<Vec<u32>> {
    status_field(pid, "Groups")?
        .split_whitespace()
        .map(|g| g.parse::<u32>().context("parsing Groups"))
        .collect()
}

/// One field of /proc/<pid>/status, value trimmed.
pub fn status_field(pid: i32, field: &str) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_owned())
        })
        .with_context(|| format!("/proc/{pid}/status has no {field}"))
}

/// Reads a pid file, waiting briefly for it to appear.
pub fn read_pid_file(path: &Path) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            bail!("no pid in {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
