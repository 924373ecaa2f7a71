//! Process plumbing for tests that start containers on a machine whose PID 1 does not reap.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// What one call printed and how it exited.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with everything the process said; for test assertions.
    #[track_caller]
    pub fn expect_ok(self, what: &str) -> Self {
        assert!(
            self.success(),
            "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` to its end with `stdin`, its stdout and stderr into files — never pipes: a
/// container, shim or conmon started by it inherits them, so EOF may never come. With a
/// `limit`, a process still running when it passes is killed, and that is an error carrying
/// what it wrote to stderr.
pub fn run_to_end(cmd: &mut Command, stdin: Stdio, limit: Option<Duration>) -> Result<Outcome> {
    let out = tempfile::NamedTempFile::new()?;
    let err = tempfile::NamedTempFile::new()?;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(stdin)
        .stdout(out.reopen()?)
        .stderr(err.reopen()?)
        .spawn()
        .with_context(|| format!("running {shown}"))?;
    let status = match limit {
        None => child
            .wait()
            .with_context(|| format!("waiting for {shown}"))?,
        Some(limit) => match wait_until(&mut child, limit)? {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{shown} did not finish within {limit:?} (killed); stderr: {}",
                    std::fs::read_to_string(err.path())
                        .unwrap_or_default()
                        .trim()
                );
            }
        },
    };
    Ok(Outcome {
        code: status.code(),
        stdout: std::fs::read_to_string(out.path())?,
        stderr: std::fs::read_to_string(err.path())?,
    })
}

/// Waits for `child` to exit for at most `limit`: its status, or `None` when it is still
/// running then (what to end, and how, is the caller's to decide).
pub fn wait_until(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

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
    stat_of(pid).is_some_and(|p| p.state == 'Z')
}

/// A process as its `/proc/<pid>/stat` shows it.
#[derive(Clone, Copy, Debug)]
pub struct ProcStat {
    pub pid: i32,
    /// `R`, `S`, `Z`, …
    pub state: char,
    pub ppid: i32,
}

/// `/proc/<pid>/stat` of one process, `None` when it is gone.
pub fn stat_of(pid: i32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold anything: the fields follow its last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(ProcStat { pid, state, ppid })
}

/// Every process of the machine (those that exit while it looks are left out).
pub fn all_processes() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat_of)
        .collect()
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
