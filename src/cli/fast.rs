//! The calls a shim makes most — `state`, `start`, `kill`, `delete` — parsed without building
//! clap's description of all seventeen subcommands, which costs a noticeable share of these
//! commands' start-up (allocations and page faults across clap and every argument struct).
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
            subcommand in proptest::sample::select(vec!["state", "start", "kill", "delete", "list"]),
            tail in proptest::collection::vec(proptest::sample::select(vec![
                "abc", "9", "KILL", "-9", "--force", "-f", "--all", "-a", "--", "", "--root", "/r",
            ]), 0..4),
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
            &["create", "--bundle", "/b", "x"][..],
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
