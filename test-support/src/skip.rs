//! Tests that skip when a prerequisite is missing — and fail instead where nothing may be
//! skipped: under `STRICT_SG_NO_SKIP=1`, which CI sets.

/// Reports that the running test skips because of `why`; fails it under `STRICT_SG_NO_SKIP`.
#[track_caller]
pub fn skip(why: &str) {
    assert!(
        std::env::var_os("STRICT_SG_NO_SKIP").is_none(),
        "STRICT_SG_NO_SKIP is set, but this test would skip: {why}"
    );
    eprintln!("skipping: {why}");
}

/// Whether this process runs as root; when it does not, the test [`skip`]s.
#[track_caller]
pub fn unless_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        skip("it needs root");
    }
    root
}
