//! What the installer's test binaries share: the binary under test and the checks of how a run
//! of it ended.

#![allow(dead_code)] // each test binary uses a different subset

use std::process::Output;

pub const INSTALLER: &str = env!("CARGO_BIN_EXE_strict-supplementalgroups-installer");

/// Asserts that the installer succeeded (showing everything it said if not); its stdout.
#[track_caller]
pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "installer failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Asserts that the installer failed; its stderr.
#[track_caller]
pub fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "installer should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
