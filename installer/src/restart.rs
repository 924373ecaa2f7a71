//! Restarting the CRI so it reads its config again: containerd does not reload on SIGHUP, and
//! CRI-O reloads only some options that way. By default the host's systemctl runs in PID 1's
//! mount namespace (the DaemonSet has hostPID), as kata-deploy does.

use std::process::Command;

use anyhow::{Context, Result, bail};

pub struct Restart {
    pub template: String,
    pub unit: String,
    pub enabled: bool,
}

impl Restart {
    /// The command's argv, `{unit}` replaced.
    pub fn argv(&self) -> Result<Vec<String>> {
        let words = shlex::split(&self.template)
            .with_context(|| format!("--restart-command {:?}: unbalanced quotes", self.template))?;
        if words.is_empty() {
            bail!("--restart-command is empty (use --no-restart to skip the restart)");
        }
        Ok(words
            .into_iter()
            .map(|w| w.replace("{unit}", &self.unit))
            .collect())
    }

    /// Restarts (or says why not). Returns whether the restart happened.
    pub fn run(&self, cri: &str) -> Result<bool> {
        let argv = self.argv()?;
        if !self.enabled {
            println!(
                "not restarting {cri} (--no-restart): restart it for the change to take effect"
            );
            return Ok(false);
        }
        let shown =
            shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "));
        println!("restarting {cri}: {shown}");
        let status = Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .with_context(|| format!("running {shown}"))?;
        if !status.success() {
            bail!("restarting {cri} failed: {shown} exited with {status}");
        }
        println!("restarted {cri}");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_split_and_filled() {
        let r = Restart {
            template: crate::cli::DEFAULT_RESTART_COMMAND.to_owned(),
            unit: "containerd".to_owned(),
            enabled: true,
        };
        assert_eq!(
            r.argv().unwrap(),
            [
                "nsenter",
                "--target",
                "1",
                "--mount",
                "--",
                "systemctl",
                "restart",
                "containerd"
            ]
        );
        let quoted = Restart {
            template: "sh -c 'echo {unit}'".to_owned(),
            unit: "crio".to_owned(),
            enabled: true,
        };
        assert_eq!(quoted.argv().unwrap(), ["sh", "-c", "echo crio"]);
        let bad = Restart {
            template: "'".to_owned(),
            unit: String::new(),
            enabled: true,
        };
        assert!(bad.argv().is_err());
    }
}
