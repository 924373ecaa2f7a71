//! The install record: what install changed on the host, so uninstall can reverse exactly that.
//! JSON in the state directory; host paths throughout, so it means the same whatever
//! `--host-root` the next run uses.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::detect::Cri;
use crate::hostfs::{FileMode, Host};

pub const RECORD_FILE: &str = "install-record.json";
/// Format 2 added the containerd drop-in, the parts of a file install added, and the node
/// label; format 1 records read as having none of them.
const FORMAT: u32 = 2;
const OLDEST_FORMAT: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    RuntimeBinary,
    RuntimeConfig,
    ContainerdConfig,
    /// Our own file, imported by containerd's config.toml (containerd 2.x).
    ContainerdDropIn,
    CrioDropIn,
}

impl Role {
    pub fn describe(self) -> &'static str {
        match self {
            Role::RuntimeBinary => "runtime binary",
            Role::RuntimeConfig => "runtime config",
            Role::ContainerdConfig => "containerd config",
            Role::ContainerdDropIn => "containerd drop-in",
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
    /// The default runtime's table install wrote out (containerd 1.x relied on the built-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_default_runtime: Option<String>,
    /// The `imports` entry install added (containerd 2.x drop-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_added: Option<String>,
    /// Whether install created the `imports` key itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub imports_key_created: bool,
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
    /// The node label set after a verified install, so uninstall takes it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_label: Option<NodeLabelRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeLabelRecord {
    pub node: String,
    pub key: String,
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
            node_label: None,
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
        if !(OLDEST_FORMAT..=FORMAT).contains(&record.format) {
            bail!(
                "install record {} has format {} (this installer knows {OLDEST_FORMAT} to \
                 {FORMAT})",
                path.display(),
                record.format
            );
        }
        let mut record = record;
        record.format = FORMAT;
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
