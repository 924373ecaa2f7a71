//! The runtime's config TOML (`config::parse`, what `config::load` runs on the file's text).
//!
//! Properties, for any bytes: nothing panics (durations, URLs, paths, levels and every other
//! value are validated with errors), and parsing is deterministic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strict_supplementalgroups::config;

fuzz_target!(|data: &[u8]| {
    // config::load reads the file with read_to_string: only UTF-8 reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let first = config::parse(text, None).map(|(c, r)| (c, r.0));
    let second = config::parse(text, None).map(|(c, r)| (c, r.0));
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(format!("{a:#}"), format!("{b:#}")),
        _ => panic!("the same text parsed once and failed once"),
    }
});
