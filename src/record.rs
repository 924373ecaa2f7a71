//! What create decided, kept beside the container's state for later `exec`s: containerd's exec
//! process.json carries the unfiltered gids and no annotations, so exec needs the pod's grant
//! without asking anyone. libcontainer's `delete` removes the container directory, and this
//! file with it.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::pod::Identity;

const RECORD_FILE: &str = "strict-supplementalgroups.json";
const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub identity: Identity,
    /// The pod's supplementalGroups ∪ {fsGroup} (pod containers only).
    pub granted: Vec<u32>,
    /// The container's primary gid (its runAsGroup), always allowed.
    pub primary_gid: u32,
    /// Where the grant came from, for audit lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Execs run with `noNewPrivileges` (the `no-new-privileges` policy applied at create).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privileges: bool,
}

impl Record {
    pub fn new(
        identity: Identity,
        granted: Vec<u32>,
        primary_gid: u32,
        source: Option<String>,
    ) -> Self {
        Self {
            version: RECORD_VERSION,
            identity,
            granted,
            primary_gid,
            source,
            no_new_privileges: false,
        }
    }

    pub fn path(container_dir: &Path) -> PathBuf {
        container_dir.join(RECORD_FILE)
    }

    /// Writes atomically (owner-only), so a concurrent exec sees the whole record or none.
    pub fn save(&self, container_dir: &Path) -> Result<()> {
        let path = Self::path(container_dir);
        let bytes = serde_json::to_vec(self)?;
        crate::atomic_file::replace(&path, &bytes, File::sync_all)
    }

    /// `Ok(None)` when the container has no record (created by a build without records).
    pub fn load(container_dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(container_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let record: Self = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        if record.version != RECORD_VERSION {
            bail!(
                "{} has version {}, this runtime reads version {RECORD_VERSION}",
                path.display(),
                record.version
            );
        }
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::PodRef;

    #[test]
    fn round_trip_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Record::load(dir.path()).unwrap(), None);
        let record = Record::new(
            Identity::PodContainer {
                pod: PodRef {
                    namespace: "n".into(),
                    name: "p".into(),
                    uid: Some("u".into()),
                },
                container_name: Some("app".into()),
            },
            vec![60000],
            1000,
            Some("pods file /x".into()),
        );
        record.save(dir.path()).unwrap();
        assert_eq!(Record::load(dir.path()).unwrap(), Some(record));
    }

    #[test]
    fn corrupt_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Record::path(dir.path()), "{").unwrap();
        assert!(Record::load(dir.path()).is_err());
    }
}
