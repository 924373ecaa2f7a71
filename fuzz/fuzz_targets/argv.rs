//! argv: `cli::parse` (the fast parser for the shim's plain state/start/kill/delete calls, clap
//! for everything else). Its result decides both what runs and whether the process seals
//! itself first (`Command::enters_container`), so:
//!
//! - nothing panics, for any argument bytes (NUL separates arguments; any other byte, UTF-8 or
//!   not, may be in one), and clap's error text renders;
//! - wherever the fast parser answers, clap parses the same argv to the same options — so the
//!   command, and with it the sealing decision, is the one clap would make.

#![no_main]

use clap::Parser as _;
use fuzz_support::argv_from;
use libfuzzer_sys::fuzz_target;
use strict_supplementalgroups::cli::{self, Opts};

fuzz_target!(|data: &[u8]| {
    let argv = argv_from(data);
    let parsed = cli::parse(&argv);
    if let Err(e) = &parsed {
        let _ = e.render().to_string();
    }
    if let Some(fast) = cli::fast::parse(&argv) {
        let slow = Opts::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("parsed fast, but clap refuses it: {e}"));
        assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
        assert_eq!(
            fast.command.enters_container(),
            slow.command.enters_container()
        );
    }
});
