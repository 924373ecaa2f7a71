//! The command line: runc's global flags and subcommands (through liboci-cli's argument
//! structs), plus this runtime's own subcommands.

pub mod fast;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Parses argv (program name first): the shim's plain state/start/kill/delete calls without
/// building clap's command tree ([`fast`]), everything else with clap. This one parse decides
/// both what runs and whether it runs sealed ([`Command::enters_container`]).
pub fn parse(argv: &[OsString]) -> Result<Opts, clap::Error> {
    match fast::parse(argv) {
        Some(opts) => Ok(opts),
        None => Opts::try_parse_from(argv),
    }
}

pub const DEFAULT_ROOT: &str = "/run/strict-supplementalgroups-container-runtime";

#[derive(Parser, Debug)]
#[command(
    name = "strict-supplementalgroups-container-runtime",
    version,
    about = "OCI runtime (runc command line) that removes supplementary groups a Kubernetes pod \
             did not ask for before the container is created"
)]
pub struct Opts {
    #[command(flatten)]
    pub global: liboci_cli::GlobalOpts,

    #[command(flatten)]
    pub compat: RuncCompatOpts,

    #[command(subcommand)]
    pub command: Command,
}

/// runc flags that callers may pass but that mean nothing here. Accepted so that a caller
/// configured for runc does not fail; ignored with a debug line.
#[derive(Args, Debug, Default)]
pub struct RuncCompatOpts {
    /// Ignored (runc's path to the criu binary; checkpoint looks up `criu` itself)
    #[arg(long, hide = true, value_name = "PATH")]
    pub criu: Option<PathBuf>,

    /// Ignored (runc's rootless mode selector: true, false or auto)
    #[arg(long, hide = true, value_name = "VALUE", num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,

    /// Log level (trace, debug, info, warn, error); takes precedence over --debug
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container
    Create(liboci_cli::Create),
    /// Start a created container
    Start(liboci_cli::Start),
    /// Output the state of a container
    State(liboci_cli::State),
    /// Send a signal to the container's init process (or to all its processes)
    Kill(liboci_cli::Kill),
    /// Delete a container and the resources it holds
    Delete(liboci_cli::Delete),
    /// Execute a new process inside a running container
    Exec(Box<liboci_cli::Exec>),
    /// Create and start a container
    Run(liboci_cli::Run),
    /// Write a default config.json
    Spec(liboci_cli::Spec),
    /// Display the processes running inside a container
    Ps(liboci_cli::Ps),
    /// List containers
    List(crate::commands::list::List),
    /// Suspend all processes of a container
    Pause(liboci_cli::Pause),
    /// Resume a paused container
    Resume(liboci_cli::Resume),
    /// Show resource usage statistics and events of a container
    Events(liboci_cli::Events),
    /// Update the resource constraints of a container
    Update(liboci_cli::Update),
    /// Show what this runtime supports (OCI features document)
    Features(liboci_cli::Features),
    /// Checkpoint a running container (needs criu)
    Checkpoint(liboci_cli::Checkpoint),
    /// Show what the group stage would do for a bundle or container, changing nothing
    Explain(crate::commands::explain::Explain),
}

impl Command {
    /// Whether this command starts a process that enters a container (and so must run from a
    /// sealed image, CVE-2019-5736): create, run and exec.
    pub fn enters_container(&self) -> bool {
        matches!(
            self,
            Command::Create(_) | Command::Run(_) | Command::Exec(_)
        )
    }

    /// The subcommand's name as a caller typed it, for log lines.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create(_) => "create",
            Command::Start(_) => "start",
            Command::State(_) => "state",
            Command::Kill(_) => "kill",
            Command::Delete(_) => "delete",
            Command::Exec(_) => "exec",
            Command::Run(_) => "run",
            Command::Spec(_) => "spec",
            Command::Ps(_) => "ps",
            Command::List(_) => "list",
            Command::Pause(_) => "pause",
            Command::Resume(_) => "resume",
            Command::Events(_) => "events",
            Command::Update(_) => "update",
            Command::Features(_) => "features",
            Command::Checkpoint(_) => "checkpoint",
            Command::Explain(_) => "explain",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Odd but valid global-flag forms before create/run/exec: each must parse to a command that
    /// enters a container (and so runs sealed), because the seal is decided by this same parse.
    /// (Before, a separate argv scan read `--rootless state create …` as `state` and clustered
    /// short flags such as `-sr ROOT exec …` as the subcommand `ROOT`, and skipped the seal.)
    #[test]
    fn every_argv_that_enters_a_container_is_sealed() {
        let tails: [&[&str]; 3] = [
            &["create", "--bundle", "/b", "id"],
            &["run", "--bundle", "/b", "-d", "id"],
            &["exec", "--process", "/p", "id"],
        ];
        let globals: &[&[&str]] = &[
            &[],
            &["--rootless", "state"],
            &["--rootless"],
            &["--rootless=true"],
            &["--rootless", "false"],
            &["--root", "/r"],
            &["--root=/r"],
            &["-r", "/r"],
            &["-r/r"],
            &["-sr", "/r"],
            &["-sl", "/log"],
            &["-s", "-l", "/log", "-r", "/r"],
            &["--log", "create"],
            &["--log=/l", "--log-format", "json"],
            &["--criu", "state", "--log-level", "debug"],
            &["--debug", "--systemd-cgroup"],
            &["--log-format=json", "--root", "exec"],
        ];
        for tail in tails {
            for global in globals {
                let argv: Vec<OsString> = std::iter::once("rt")
                    .chain(global.iter().copied())
                    .chain(tail.iter().copied())
                    .map(OsString::from)
                    .collect();
                // A form clap refuses (`--rootless create …` reads `create` as the flag's
                // value) runs nothing; every form that dispatches to create/run/exec is sealed.
                let Ok(opts) = parse(&argv) else {
                    continue;
                };
                let name = opts.command.name();
                assert_eq!(
                    opts.command.enters_container(),
                    matches!(name, "create" | "run" | "exec"),
                    "{argv:?} -> {:?}",
                    opts.command
                );
            }
        }
        // The forms that used to skip the seal parse, dispatch to their command, and seal.
        for global in [
            &["--rootless", "state"][..],
            &["-sr", "/r"],
            &["-sl", "/log"],
            &["-r/r"],
        ] {
            for tail in tails {
                let argv: Vec<OsString> = std::iter::once("rt")
                    .chain(global.iter().copied())
                    .chain(tail.iter().copied())
                    .map(OsString::from)
                    .collect();
                let opts = parse(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
                assert_eq!(opts.command.name(), tail[0], "{argv:?}");
                assert!(opts.command.enters_container(), "{argv:?}");
            }
        }
        // `--` ends the options: what follows is the subcommand.
        let argv: Vec<OsString> = ["rt", "--root", "/r", "--", "exec", "--process", "/p", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        if let Ok(opts) = parse(&argv) {
            assert_eq!(
                opts.command.enters_container(),
                opts.command.name() == "exec"
            );
        }
        // The commands that stay on the host are not sealed.
        for cmd in [
            &["state", "x"][..],
            &["kill", "x", "9"],
            &["delete", "x"],
            &["list"],
        ] {
            let argv: Vec<OsString> = std::iter::once("rt")
                .chain(["--root", "create"])
                .chain(cmd.iter().copied())
                .map(OsString::from)
                .collect();
            let opts = parse(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert!(!opts.command.enters_container(), "{argv:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Opts::command().debug_assert();
    }

    #[test]
    fn containerd_shim_create_parses() {
        let opts = Opts::try_parse_from([
            "rt",
            "--root",
            "/run/containerd/runc/k8s.io",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "--console-socket",
            "/run/pty1/pty.sock",
            "--no-pivot",
            "--no-new-keyring",
            "abc",
        ])
        .unwrap();
        assert_eq!(opts.global.log_format.as_deref(), Some("json"));
        let Command::Create(create) = opts.command else {
            panic!("not create");
        };
        assert!(create.no_pivot && create.no_new_keyring);
        assert_eq!(create.container_id, "abc");
    }

    #[test]
    fn runc_only_flags_are_accepted() {
        for argv in [
            &["rt", "--criu", "/usr/sbin/criu", "state", "x"][..],
            &["rt", "--rootless", "auto", "state", "x"],
            &["rt", "--rootless=false", "state", "x"],
            &["rt", "--root=/run/runc-alt", "--debug", "start", "x"],
            &[
                "rt",
                "--systemd-cgroup",
                "--log-format=json",
                "--log",
                "/l",
                "state",
                "x",
            ],
        ] {
            Opts::try_parse_from(argv).unwrap();
        }
    }

    #[test]
    fn conmon_exec_parses() {
        let opts = Opts::try_parse_from([
            "rt",
            "--log-format=json",
            "--log",
            "/x/oci-log",
            "exec",
            "--pid-file",
            "/x/exec_pid",
            "--process",
            "/x/exec-process-1",
            "--detach",
            "--tty",
            "--console-socket",
            "/run/conmon-term.X",
            "ctr1",
        ])
        .unwrap();
        let Command::Exec(exec) = opts.command else {
            panic!("not exec");
        };
        assert!(exec.detach && exec.tty);
        assert_eq!(exec.container_id, "ctr1");
    }

    #[test]
    fn kill_all_parses_in_shim_order() {
        let opts = Opts::try_parse_from(["rt", "kill", "--all", "abc", "9"]).unwrap();
        let Command::Kill(kill) = opts.command else {
            panic!("not kill");
        };
        assert!(kill.all);
        assert_eq!(
            (kill.container_id.as_str(), kill.signal.as_str()),
            ("abc", "9")
        );
    }
}
