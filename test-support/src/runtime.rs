//! Drives the built runtime binary the way containerd's runc shim does: the same global flags
//! in the same order (`--root R --log B/log.json --log-format json <cmd> …`), stdout and stderr
//! into files (never pipes: a container inherits them, so EOF may never come).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;

use crate::process::Outcome;

/// Where the runtime binary under test is. Integration tests pass
/// `env!("CARGO_BIN_EXE_strict-supplementalgroups-container-runtime")`.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
    /// `--log` file; `--log-format json` is passed with it, as the shim does.
    pub log: Option<PathBuf>,
    /// Extra environment (e.g. the config file variable).
    pub env: Vec<(String, String)>,
    /// Working directory (the shim runs the runtime in the bundle).
    pub cwd: Option<PathBuf>,
    /// Supplementary groups the runtime process starts with (a caller that has some, such as a
    /// shim started from a root shell); `None` inherits the test's.
    pub caller_groups: Option<Vec<u32>>,
}

impl Runtime {
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            root: root.into(),
            log: None,
            env: Vec::new(),
            cwd: None,
            caller_groups: None,
        }
    }

    /// Runs the runtime with exactly these supplementary groups.
    pub fn with_caller_groups(mut self, groups: &[u32]) -> Self {
        self.caller_groups = Some(groups.to_vec());
        self
    }

    pub fn with_log(mut self, log: impl Into<PathBuf>) -> Self {
        self.log = Some(log.into());
        self
    }

    pub fn with_env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn with_cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// The global flags, in the shim's order.
    pub fn global_args(&self) -> Vec<String> {
        let mut args = vec!["--root".to_owned(), self.root.display().to_string()];
        if let Some(log) = &self.log {
            args.extend([
                "--log".to_owned(),
                log.display().to_string(),
                "--log-format".to_owned(),
                "json".to_owned(),
            ]);
        }
        args
    }

    /// Runs `<binary> <global flags> <args>` with stdin from /dev/null.
    pub fn run(&self, args: &[&str]) -> Result<Outcome> {
        self.run_with_stdio(args, Stdio::null())
    }

    /// Like [`run`](Self::run), but a call still running after `limit` is killed and is an
    /// error: for calls that must not hang.
    pub fn run_within(&self, args: &[&str], limit: Duration) -> Result<Outcome> {
        self.call(args, Stdio::null(), Some(limit))
    }

    pub fn run_with_stdio(&self, args: &[&str], stdin: Stdio) -> Result<Outcome> {
        self.call(args, stdin, None)
    }

    fn call(&self, args: &[&str], stdin: Stdio, limit: Option<Duration>) -> Result<Outcome> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.global_args()).args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        if let Some(groups) = self.caller_groups.clone() {
            use std::os::unix::process::CommandExt;
            // SAFETY: setgroups is async-signal-safe; `groups` was allocated before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        crate::process::run_to_end(&mut cmd, stdin, limit)
    }

    /// `state <id>` parsed.
    pub fn state(&self, id: &str) -> Result<serde_json::Value> {
        let out = self.run(&["state", id])?;
        anyhow::ensure!(out.success(), "state {id} failed: {}", out.stderr);
        Ok(serde_json::from_str(&out.stdout)?)
    }

    pub fn status(&self, id: &str) -> Result<String> {
        Ok(self.state(id)?["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}

/// The `msg` of the last line whose level is exactly "error" — what containerd's shim reports.
pub fn last_error_msg(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(str::to_owned))
}
