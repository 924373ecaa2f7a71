//! Running tools with a deadline, and reaping what this subreaper inherits.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use test_support::runtime::Outcome;

/// Runs `cmd` with stdin from /dev/null and stdout/stderr into files (never pipes: a container
/// or conmon may inherit them and keep them open); kills it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Outcome> {
    let out = tempfile::NamedTempFile::new()?;
    let err = tempfile::NamedTempFile::new()?;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.reopen()?)
        .stderr(err.reopen()?)
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{shown} did not finish within {timeout:?}; stderr: {}",
                std::fs::read_to_string(err.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    reap_orphans(&[]);
    Ok(Outcome {
        code: status.code(),
        stdout: std::fs::read_to_string(out.path())?,
        stderr: std::fs::read_to_string(err.path())?,
    })
}

/// Reaps zombie children of this process — daemons (conmon, shims) that were reparented to us
/// as the subreaper and have exited — except `keep` (children a `std::process::Child` still
/// owns, such as containerd).
pub fn reap_orphans(keep: &[i32]) {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if keep.contains(&pid) {
            continue;
        }
        let Ok(stat) =
            std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
        else {
            continue;
        };
        let mut rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace())
            .into_iter()
            .flatten();
        let state = rest.next();
        let ppid = rest.next();
        if state == Some("Z") && ppid == Some(me.as_str()) {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}
