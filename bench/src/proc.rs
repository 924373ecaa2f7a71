//! Process plumbing for measuring a runtime the way a shim drives it: spawn, wait with a
//! deadline but without polling loops (a pidfd wakes us the moment the process exits), collect
//! the rusage, and reap what this subreaper inherits. A runtime's stdout/stderr are files or
//! /dev/null, never pipes, and are never read until the process has exited: containers inherit
//! them, so EOF may never come.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How one runtime process ended, and how long it took from spawn to exit.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub elapsed: Duration,
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Terminating signal, when it was killed.
    pub signal: Option<i32>,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown status".to_owned(),
        }
    }

    pub fn ms(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e3
    }
}

fn pidfd_open(pid: libc::pid_t) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Blocks until the pidfd is readable (the process exited) or `timeout` passes.
fn wait_readable(fd: &OwnedFd, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r > 0 {
            return Ok(true);
        }
        if r == 0 {
            return Ok(false);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("poll on a pidfd");
        }
    }
}

fn wait4(pid: libc::pid_t, flags: libc::c_int) -> std::io::Result<(libc::pid_t, i32, i64)> {
    loop {
        let mut status = 0;
        // SAFETY: zeroed rusage is a valid value to be overwritten.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r >= 0 {
            return Ok((r, status, ru.ru_maxrss));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Spawns `cmd` and waits for it; the clock runs from just before the spawn to the moment
/// `wait4` returns. Kills it after `timeout`.
pub fn run_timed(cmd: &mut Command, timeout: Duration) -> Result<Finished> {
    // Formatted before the clock starts.
    let shown = format!("{cmd:?}");
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {shown}"))?;
    let pid = child.id() as libc::pid_t;
    // std never waits on drop; the child is waited for below with wait4.
    drop(child);
    let pidfd = pidfd_open(pid).context("pidfd_open on a child")?;
    if !wait_readable(&pidfd, timeout)? {
        // SAFETY: the child is not reaped yet, so the pid is still ours.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = wait4(pid, 0);
        bail!("{shown} did not finish within {timeout:?}");
    }
    let (_, status, _) = wait4(pid, 0).context("wait4 on a child")?;
    let elapsed = started.elapsed();
    Ok(Finished {
        elapsed,
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
    })
}

/// Waits until `pid` (a container's init or exec process, ours by inheritance as the
/// subreaper, or not) has exited, reaping it when it is our child.
pub fn wait_exit(pid: i32, timeout: Duration) -> Result<()> {
    match pidfd_open(pid) {
        Ok(fd) => {
            // A pid namespace's init does not finish exiting while a zombie of that namespace
            // waits to be reaped by its parent — which may be us. So when the exit takes
            // long, reap what has exited and keep waiting.
            let deadline = Instant::now() + timeout;
            while !wait_readable(&fd, Duration::from_millis(500))? {
                reap_zombies();
                if Instant::now() > deadline {
                    bail!("process {pid} still running after {timeout:?}");
                }
            }
        }
        // Already gone (and reaped by someone).
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(e) => return Err(e).context("pidfd_open"),
    }
    let _ = wait4(pid, libc::WNOHANG);
    Ok(())
}

/// Reaps every exited child (orphans reparented to this subreaper: container inits, exec
/// processes, runtime helpers). Only called when no measured process is in flight.
pub fn reap_zombies() -> usize {
    let mut reaped = 0;
    while let Ok((pid, _, _)) = wait4(-1, libc::WNOHANG) {
        if pid <= 0 {
            break;
        }
        reaped += 1;
    }
    reaped
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM stop the run between measurements, so that cleanup still happens.
pub fn install_interrupt_handler() -> Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }.with_context(|| format!("installing {sig} handler"))?;
    }
    Ok(())
}

pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// CPU time (user + system) of this process and of all its reaped descendants, in seconds.
pub fn own_cpu_seconds() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: zeroed rusage is valid; getrusage fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer.
        if unsafe { libc::getrusage(who, &mut ru) } == 0 {
            for tv in [ru.ru_utime, ru.ru_stime] {
                total += tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
            }
        }
    }
    total
}

/// CPU seconds of the whole machine since boot, from /proc/stat.
#[derive(Clone, Copy, Debug)]
pub struct MachineCpu {
    /// user + nice + system + irq + softirq (guest time is inside user).
    pub busy: f64,
    /// Time the hypervisor ran something else while a vCPU wanted to run.
    pub steal: f64,
    pub total: f64,
}

pub fn machine_cpu() -> Option<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    if v.len() < 8 {
        return None;
    }
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let total: f64 = v[..8].iter().sum();
    Some(MachineCpu {
        busy: (v[0] + v[1] + v[2] + v[5] + v[6]) / hz,
        steal: v[7] / hz,
        total: total / hz,
    })
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
