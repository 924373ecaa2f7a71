//! The calls a shim makes — `create`, `start`, `state`, `exec`, `kill`, `delete` — parsed
//! without building clap's description of all seventeen subcommands, which costs a noticeable
//! share of these commands' start-up (allocations and page faults across clap and every
//! argument struct): callgrind put clap at 285,000 instructions of a `create`, paid twice since
//! `create` and `exec` parse again after the sealed re-exec.
//!
//! Only the plain, unambiguous shapes containerd's shim, conmon and CRI-O use are recognised;
//! anything else — help, a typo, an unknown flag, a missing argument — returns `None` and
//! clap parses it, so errors and edge cases behave exactly as before.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::cli::{Command, Opts, RuncCompatOpts};

/// Parses `argv` (program name first) if it is a plain state/start/kill/delete call.
pub fn parse(argv: &[OsString]) -> Option<Opts> {
    let mut args = argv.iter().skip(1).map(|a| a.to_str());
    let mut global = liboci_cli::GlobalOpts {
        log: None,
        debug: false,
        log_format: None,
        root: None,
        systemd_cgroup: false,
    };
    let mut compat = RuncCompatOpts::default();
    let mut seen: Vec<&str> = Vec::new();
    let subcommand = loop {
        let arg = args.next()??;
        if !arg.starts_with('-') {
            break arg;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (arg, None),
        };
        // A repeated flag is an error or an override depending on the flag: clap decides.
        if seen.contains(&flag) {
            return None;
        }
        seen.push(flag);
        // An empty value, or one that looks like a flag, is something clap rejects or reads
        // differently.
        let mut value = || -> Option<String> {
            let v = match &inline {
                Some(v) => v.clone(),
                None => args.next()??.to_owned(),
            };
            (!v.is_empty() && !v.starts_with('-')).then_some(v)
        };
        match flag {
            "--root" => global.root = Some(PathBuf::from(value()?)),
            "--log" => global.log = Some(PathBuf::from(value()?)),
            "--log-format" => global.log_format = Some(value()?),
            "--log-level" => compat.log_level = Some(value()?),
            "--criu" => compat.criu = Some(PathBuf::from(value()?)),
            "--debug" if inline.is_none() => global.debug = true,
            "--systemd-cgroup" if inline.is_none() => global.systemd_cgroup = true,
            // `--rootless` takes an optional value; only its `=` form is unambiguous.
            "--rootless" if inline.is_some() => compat.rootless = Some(value()?),
            _ => return None,
        }
    };
    let rest: Vec<&str> = args.collect::<Option<Vec<_>>>()?;
    let command = match subcommand {
        "state" => match rest.as_slice() {
            [id] => Command::State(liboci_cli::State {
                container_id: container_id(id)?,
            }),
            _ => return None,
        },
        "start" => match rest.as_slice() {
            [id] => Command::Start(liboci_cli::Start {
                container_id: container_id(id)?,
            }),
            _ => return None,
        },
        "delete" => {
            let (force, positional) = split_flag(&rest, &["--force", "-f"])?;
            match positional.as_slice() {
                [id] => Command::Delete(liboci_cli::Delete {
                    container_id: container_id(id)?,
                    force,
                }),
                _ => return None,
            }
        }
        "create" => create(&rest)?,
        "exec" => exec(&rest)?,
        "kill" => {
            let (all, positional) = split_flag(&rest, &["--all", "-a"])?;
            match positional.as_slice() {
                [id, signal] => Command::Kill(liboci_cli::Kill {
                    container_id: container_id(id)?,
                    signal: (*signal).to_owned(),
                    all,
                }),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(Opts {
        global,
        compat,
        command,
    })
}

/// `create [--bundle B] [--pid-file P] [--console-socket S] [--no-pivot] [--no-new-keyring] ID`
/// in any order, each flag at most once, long forms only (what containerd's shim and conmon
/// write).
fn create(rest: &[&str]) -> Option<Command> {
    let flags = SubcommandFlags::parse(
        rest,
        &["--bundle", "--pid-file", "--console-socket"],
        &["--no-pivot", "--no-new-keyring"],
    )?;
    let [id] = flags.positional.as_slice() else {
        return None;
    };
    Some(Command::Create(liboci_cli::Create {
        bundle: flags
            .value("--bundle")
            .map_or_else(|| PathBuf::from("."), PathBuf::from),
        console_socket: flags.value("--console-socket").map(PathBuf::from),
        pid_file: flags.value("--pid-file").map(PathBuf::from),
        no_pivot: flags.is_set("--no-pivot"),
        no_new_keyring: flags.is_set("--no-new-keyring"),
        preserve_fds: 0,
        container_id: container_id(id)?,
    }))
}

/// `exec [--process F] [--pid-file P] [--console-socket S] [--detach] [--tty] ID`, the id last
/// (after it, clap collects the command to run), each flag at most once, long forms only.
fn exec(rest: &[&str]) -> Option<Command> {
    let flags = SubcommandFlags::parse(
        rest,
        &["--process", "--pid-file", "--console-socket"],
        &["--detach", "--tty"],
    )?;
    let [id] = flags.positional.as_slice() else {
        return None;
    };
    if rest.last() != Some(id) {
        return None;
    }
    Some(Command::Exec(Box::new(liboci_cli::Exec {
        console_socket: flags.value("--console-socket").map(PathBuf::from),
        cwd: None,
        env: Vec::new(),
        tty: flags.is_set("--tty"),
        user: None,
        additional_gids: Vec::new(),
        process: flags.value("--process").map(PathBuf::from),
        detach: flags.is_set("--detach"),
        pid_file: flags.value("--pid-file").map(PathBuf::from),
        process_label: None,
        apparmor: None,
        no_new_privs: false,
        cap: Vec::new(),
        preserve_fds: 0,
        ignore_paused: false,
        cgroup: None,
        container_id: container_id(id)?,
        command: Vec::new(),
    })))
}

/// A subcommand's arguments split into known flags (each at most once; values given as
/// `--flag value` or `--flag=value`, non-empty and not starting with `-`) and positionals.
/// Anything else that starts with `-` — another flag, a short form, `--` — is clap's.
struct SubcommandFlags<'a> {
    values: Vec<(&'static str, &'a str)>,
    set: Vec<&'static str>,
    positional: Vec<&'a str>,
}

impl<'a> SubcommandFlags<'a> {
    fn parse(
        args: &[&'a str],
        with_value: &[&'static str],
        boolean: &[&'static str],
    ) -> Option<Self> {
        let mut flags = Self {
            values: Vec::new(),
            set: Vec::new(),
            positional: Vec::new(),
        };
        let mut args = args.iter().copied();
        while let Some(arg) = args.next() {
            if !arg.starts_with('-') {
                flags.positional.push(arg);
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg, None),
            };
            if let Some(&name) = with_value.iter().find(|f| **f == name) {
                let value = match inline {
                    Some(v) => v,
                    None => args.next()?,
                };
                if value.is_empty()
                    || value.starts_with('-')
                    || flags.values.iter().any(|(n, _)| *n == name)
                {
                    return None;
                }
                flags.values.push((name, value));
            } else if let Some(&name) = boolean.iter().find(|f| **f == name) {
                if inline.is_some() || flags.set.contains(&name) {
                    return None;
                }
                flags.set.push(name);
            } else {
                return None;
            }
        }
        Some(flags)
    }

    fn value(&self, name: &str) -> Option<&'a str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    fn is_set(&self, name: &str) -> bool {
        self.set.contains(&name)
    }
}

/// Separates one boolean flag from positional arguments; any other dash argument (including
/// `--`, which would change what follows) makes the call clap's.
fn split_flag<'a>(args: &[&'a str], names: &[&str]) -> Option<(bool, Vec<&'a str>)> {
    let mut set = false;
    let mut positional = Vec::new();
    for arg in args {
        if names.contains(arg) {
            if set {
                return None;
            }
            set = true;
        } else if arg.starts_with('-') {
            return None;
        } else {
            positional.push(*arg);
        }
    }
    Some((set, positional))
}

/// Non-empty, and not something clap would take for a flag.
fn container_id(id: &str) -> Option<String> {
    (!id.is_empty() && !id.starts_with('-')).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("rt")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// The fast parse must equal clap's wherever it answers.
    fn same_as_clap(words: &[&str]) {
        let args = argv(words);
        let fast = parse(&args).unwrap_or_else(|| panic!("not parsed fast: {words:?}"));
        let slow = Opts::try_parse_from(&args).unwrap();
        assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{words:?}");
    }

    #[test]
    fn shim_and_conmon_calls_parse_like_clap() {
        let shim = [
            "--root",
            "/run/containerd/runc/k8s.io",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
        ];
        for tail in [
            &["start", "abc"][..],
            &["state", "abc"],
            &["kill", "abc", "15"],
            &["kill", "--all", "abc", "9"],
            &["kill", "abc", "9", "--all"],
            &["delete", "abc"],
            &["delete", "--force", "abc"],
            &["delete", "-f", "abc"],
            &[
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/b/init.pid",
                "abc",
            ],
            &[
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/b/init.pid",
                "--console-socket",
                "/s.sock",
                "--no-pivot",
                "--no-new-keyring",
                "abc",
            ],
            &[
                "exec",
                "--process",
                "/run/runc-process123",
                "--detach",
                "--pid-file",
                "/b/e.pid",
                "abc",
            ],
        ] {
            let words: Vec<&str> = shim.iter().chain(tail).copied().collect();
            same_as_clap(&words);
        }
        same_as_clap(&["--root=/run/runc-alt", "--debug", "start", "x"]);
        same_as_clap(&[
            "--systemd-cgroup",
            "--log-format=json",
            "--log",
            "/l",
            "state",
            "x",
        ]);
        same_as_clap(&[
            "--criu",
            "/usr/sbin/criu",
            "--rootless=false",
            "kill",
            "x",
            "KILL",
        ]);
        same_as_clap(&["delete", "--force", "x"]);
        // conmon (CRI-O, podman): --log-format=json --log L first, flags in its order.
        let conmon = ["--log-format=json", "--log", "/u/oci-log"];
        for tail in [
            &[
                "create",
                "--bundle",
                "/u",
                "--pid-file",
                "/u/pidfile",
                "abc",
            ][..],
            &[
                "create",
                "--bundle",
                "/u",
                "--pid-file",
                "/u/pidfile",
                "--no-pivot",
                "abc",
            ],
            &[
                "exec",
                "--pid-file",
                "/u/exec_pid",
                "--process",
                "/u/exec-process-1",
                "--detach",
                "abc",
            ],
            &[
                "exec",
                "--pid-file",
                "/u/exec_pid",
                "--process",
                "/u/exec-process-2",
                "--detach",
                "--tty",
                "--console-socket",
                "/run/conmon-term.X",
                "abc",
            ],
        ] {
            let words: Vec<&str> = conmon.iter().chain(tail).copied().collect();
            same_as_clap(&words);
        }
        same_as_clap(&["create", "abc"]);
        same_as_clap(&["create", "abc", "--bundle=/b"]);
        same_as_clap(&["exec", "--detach", "x"]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// Wherever the fast parse answers for a random mix of the words a caller could pass,
        /// clap parses the same words to the same options.
        #[test]
        fn any_answer_is_clap_s_answer(
            globals in proptest::collection::vec(proptest::sample::select(vec![
                "--root", "--root=/r", "/r", "--log", "/l", "--log-format", "json", "--debug",
                "--systemd-cgroup", "--criu", "--rootless", "--rootless=auto", "--log-level",
                "debug", "--debug=true", "-r", "", "--rootless=", "--root=", "--log-format=text",
            ]), 0..6),
            subcommand in proptest::sample::select(vec![
                "state", "start", "kill", "delete", "list", "create", "exec",
            ]),
            tail in proptest::collection::vec(proptest::sample::select(vec![
                "abc", "9", "KILL", "-9", "--force", "-f", "--all", "-a", "--", "", "--root", "/r",
                "--bundle", "--bundle=/b", "-b", "--pid-file", "/p", "--console-socket",
                "--no-pivot", "--no-new-keyring", "--preserve-fds", "--process", "--process=",
                "--detach", "-d", "--tty", "--cwd", "sh", "--no-pivot=true",
            ]), 0..7),
        ) {
            let words: Vec<&str> = globals.iter().chain([&subcommand]).chain(&tail).copied().collect();
            let args = argv(&words);
            if let Some(fast) = parse(&args) {
                match Opts::try_parse_from(&args) {
                    Ok(slow) => proptest::prop_assert_eq!(
                        format!("{fast:?}"), format!("{slow:?}"), "{:?}", words
                    ),
                    Err(e) => proptest::prop_assert!(
                        false, "{words:?}: parsed fast, but clap refuses it: {e}"
                    ),
                }
            }
        }
    }

    #[test]
    fn everything_else_is_left_to_clap() {
        for words in [
            &["create", "-b", "/b", "x"][..],
            &["create", "--bundle", "/b"],
            &["create", "--bundle", "/b", "x", "y"],
            &["create", "--bundle", "/a", "--bundle", "/b", "x"],
            &["create", "--bundle", "-x", "x"],
            &["create", "--bundle=", "x"],
            &["create", "--preserve-fds", "3", "x"],
            &["create", "--no-pivot=true", "x"],
            &["create", "--", "x"],
            &["exec", "--process", "/p", "x", "sh"],
            &["exec", "x", "--detach"],
            &["exec", "--cwd", "/", "x"],
            &["exec", "-d", "x"],
            &["exec", "--detach", "--detach", "x"],
            &["exec"],
            &["state"],
            &["state", "a", "b"],
            &["state", ""],
            &["kill", "x"],
            &["kill", "--signal", "x", "9"],
            &["delete", "--", "x"],
            &["--help"],
            &["--rootless", "state", "x"],
            &["--unknown", "state", "x"],
            &["--root"],
            &["--root", "", "state", "x"],
            &["-r", "/r", "state", "x"],
            &["--root", "/a", "--root", "/b", "state", "x"],
            &["--log", "/a", "--log=/b", "state", "x"],
            &["--root", "--log", "state", "x"],
            &["--log-format=-x", "state", "x"],
            &["state", "-x"],
            &["start", "--", "x"],
            &["delete", "-f", "--force", "x"],
            &["kill", "--all", "-a", "x", "9"],
            &["kill", "x", "-9"],
            &["list"],
            &[],
        ] {
            assert!(parse(&argv(words)).is_none(), "{words:?}");
        }
    }
}
