//! The install record: what install changed on the host, so uninstall can reverse exactly that.
//! JSON in the state directory; host paths throughout, so it means the same whatever
//! `--host-root` the next run uses.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::detect::Cri;
use crate::hostfs::{FileMode, Host};

pub const RECORD_FILE: &str = "install-record.json";
const FORMAT: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    RuntimeBinary,
    RuntimeConfig,
    ContainerdConfig,
    CrioDropIn,
}

impl Role {
    pub fn describe(self) -> &'static str {
        match self {
            Role::RuntimeBinary => "runtime binary",
            Role::RuntimeConfig => "runtime config",
            Role::ContainerdConfig => "containerd config",
            Role::CrioDropIn => "CRI-O drop-in",
        }
    }
}

/// What the file was before install first changed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "path")]
pub enum Original {
    /// It did not exist: uninstall removes it.
    Absent,
    /// Copied here before the first change: uninstall puts these bytes back.
    BackedUp(PathBuf),
    /// It was already what install wanted: install did not touch it, nor does uninstall.
    Untouched,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileEntry {
    pub path: PathBuf,
    pub role: Role,
    pub original: Original,
    /// sha256 of the bytes install last wrote (or found, for `Untouched`).
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    pub format: u32,
    pub installer_version: String,
    pub cri: Cri,
    pub handler: String,
    /// In the order install changed them; uninstall goes backwards.
    pub files: Vec<FileEntry>,
    /// Directories install created, outermost first.
    pub dirs_created: Vec<PathBuf>,
    /// Files changed but the CRI not restarted since (a failed or skipped restart): the next
    /// install restarts even if it changes nothing.
    pub restart_pending: bool,
}

impl Record {
    pub fn new(cri: Cri, handler: &str) -> Self {
        Self {
            format: FORMAT,
            installer_version: env!("CARGO_PKG_VERSION").to_owned(),
            cri,
            handler: handler.to_owned(),
            files: Vec::new(),
            dirs_created: Vec::new(),
            restart_pending: false,
        }
    }

    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(RECORD_FILE)
    }

    pub fn load(host: &Host, state_dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(state_dir);
        let Some(bytes) = host.read(&path)? else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&bytes)
            .with_context(|| format!("install record {} is unreadable", path.display()))?;
        if record.format != FORMAT {
            bail!(
                "install record {} has format {} (this installer knows {FORMAT})",
                path.display(),
                record.format
            );
        }
        Ok(Some(record))
    }

    /// Writes the record, creating the state directory (and noting it) when needed.
    pub fn save(&mut self, host: &Host, state_dir: &Path) -> Result<()> {
        for dir in host.create_dir_all(state_dir)? {
            self.dirs_created.push(dir);
        }
        let mut bytes = serde_json::to_vec_pretty(self).context("encoding the install record")?;
        bytes.push(b'\n');
        let mode = FileMode {
            mode: 0o600,
            uid: 0,
            gid: 0,
        };
        host.write_atomic(&Self::path(state_dir), &bytes, owned_by_us(mode))
    }

    pub fn entry(&self, path: &Path) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    pub fn upsert(&mut self, entry: FileEntry) {
        match self.files.iter_mut().find(|f| f.path == entry.path) {
            Some(existing) => *existing = entry,
            None => self.files.push(entry),
        }
    }
}

/// New files belong to whoever runs the installer (root on a node).
pub fn owned_by_us(mut mode: FileMode) -> FileMode {
    mode.uid = nix::unistd::geteuid().as_raw();
    mode.gid = nix::unistd::getegid().as_raw();
    mode
}
