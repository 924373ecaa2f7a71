use std::path::Path;

use anyhow::{Context, Result};
use liboci_cli::Run;
use nix::sys::signal::{self, Signal};
use nix::sys::signalfd::SigSet;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::create::{InitRequest, create_enforced};
use crate::config::Config;

/// `run`: create + start; in the foreground it forwards signals and returns the exit status.
pub fn run(args: Run, root: &Path, systemd: bool, config: &Config) -> Result<i32> {
    if !args.detach && !args.no_subreaper {
        // Processes the container double-forks must come back to us, not to PID 1.
        nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
    }
    let mut container = create_enforced(
        &InitRequest {
            container_id: &args.container_id,
            bundle: &args.bundle,
            pid_file: args.pid_file.as_ref(),
            console_socket: args.console_socket.as_ref(),
            preserve_fds: args.preserve_fds,
            no_pivot: args.no_pivot,
            detach: args.detach,
        },
        root,
        systemd,
        config,
    )?;
    container
        .start()
        .with_context(|| format!("starting container {}", args.container_id))?;
    if args.detach {
        return Ok(0);
    }
    let init = container
        .pid()
        .context("container state has no init pid after start")?;
    let status = wait_foreground(init);
    if !args.keep {
        super::delete::delete_container(&mut container, true)?;
    }
    status
}

/// Blocks every signal, forwards them to the init process and reaps children until init exits.
fn wait_foreground(init: Pid) -> Result<i32> {
    let all = SigSet::all();
    all.thread_block().context("blocking signals")?;
    // A SIGCHLD that came before the block was discarded (its default action), so reap before
    // the first wait: a short-lived init may already be a zombie.
    loop {
        if let Some(code) = reap(init)? {
            return Ok(code);
        }
        match all.wait().context("waiting for signals")? {
            Signal::SIGCHLD => {}
            // The Go runtime's preemption signal in runc; meaningless to a container.
            Signal::SIGURG => {}
            other => {
                if let Err(err) = signal::kill(init, other) {
                    tracing::warn!(%err, signal = ?other, "forwarding signal to the container");
                }
            }
        }
    }
}

/// Reaps every exited child; returns init's exit code (128 + signal) once it is among them.
fn reap(init: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == init => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == init => {
                return Ok(Some(128 + sig as i32));
            }
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(None),
            Ok(_) => continue,
            Err(err) => return Err(err).context("reaping children"),
        }
    }
}
