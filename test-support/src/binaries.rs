//! The workspace's binaries, for tests of another package (cargo sets `CARGO_BIN_EXE_*` only
//! for a package's own binaries).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Result, bail};

pub const RUNTIME_NAME: &str = "strict-supplementalgroups-container-runtime";

/// The runtime binary: `$STRICT_SG_RUNTIME`, else the one cargo built beside the running test
/// (`target/<profile>/`), which `cargo test --workspace` builds before running any test.
pub fn runtime() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("STRICT_SG_RUNTIME") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|d| d.to_path_buf());
    match profile_dir.map(|d| d.join(RUNTIME_NAME)) {
        Some(path) if path.is_file() => Ok(path),
        _ => bail!(
            "{RUNTIME_NAME} is not built beside {}: run `cargo build --bin {RUNTIME_NAME}` \
             (or set STRICT_SG_RUNTIME)",
            exe.display()
        ),
    }
}

/// The first line `<binary> --version` prints (`runc version 1.1.5+ds1`), or `?`.
pub fn version_line(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "?".to_owned())
}
