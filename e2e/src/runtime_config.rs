//! The runtime's config file during a run. The runtime reads it on every call (containerd
//! passes `STRICT_SUPPLEMENTALGROUPS_CONFIG` to the shim and so to the runtime), so a scenario
//! can switch a policy key for one container and switch it back afterwards.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::pods::{PodSource, toml_str};

pub struct RuntimeConfig {
    path: PathBuf,
    base: String,
}

impl RuntimeConfig {
    /// Writes `<dir>/runtime-config.toml`: the pod source's keys and a JSON log file (the
    /// decision lines the harness reads) at `audit_log`.
    pub fn write(dir: &Path, source: &PodSource, audit_log: &Path) -> Result<Self> {
        let me = Self {
            path: dir.join("runtime-config.toml"),
            base: format!(
                "{}\n[logging]\nlog-file = {}\nlog-level = \"info\"\nlog-format = \"json\"\n",
                source.config_keys(),
                toml_str(&audit_log.display().to_string())
            ),
        };
        me.restore()?;
        Ok(me)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The base config plus `keys` (top-level TOML lines such as `primary-gid = "granted"`),
    /// until [`RuntimeConfig::restore`].
    pub fn set_variant(&self, keys: &str) -> Result<()> {
        // Top-level keys must come before the first table header.
        write_atomic(&self.path, format!("{keys}\n{}", self.base).as_bytes())
    }

    /// Back to the base config.
    pub fn restore(&self) -> Result<()> {
        write_atomic(&self.path, self.base.as_bytes())
    }
}

/// Replaces `path` by rename, so that a runtime reading it concurrently sees the old or the new
/// file, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}
