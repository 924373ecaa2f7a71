//! Which CRI the node runs.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::cli::CriChoice;
use crate::hostfs::Host;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cri {
    Containerd,
    Crio,
}

impl Cri {
    pub fn name(self) -> &'static str {
        match self {
            Cri::Containerd => "containerd",
            Cri::Crio => "CRI-O",
        }
    }

    /// The systemd unit restarted after a change.
    pub fn unit(self) -> &'static str {
        match self {
            Cri::Containerd => "containerd",
            Cri::Crio => "crio",
        }
    }
}

const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
const CRIO_SOCKET: &str = "/run/crio/crio.sock";

/// `auto`: the CRI whose socket is on the host; without sockets, the one whose config is.
pub fn resolve(
    choice: CriChoice,
    host: &Host,
    containerd_config: &Path,
    crio_config: &Path,
    crio_dir: &Path,
) -> Result<Cri> {
    match choice {
        CriChoice::Containerd => return Ok(Cri::Containerd),
        CriChoice::Crio => return Ok(Cri::Crio),
        CriChoice::Auto => {}
    }
    let socket = |p: &str| {
        host.path(Path::new(p))
            .ok()
            .and_then(|p| std::fs::symlink_metadata(p).ok())
            .is_some_and(|m| m.file_type().is_socket())
    };
    let pick = |containerd: bool, crio: bool| match (containerd, crio) {
        (true, false) => Some(Cri::Containerd),
        (false, true) => Some(Cri::Crio),
        _ => None,
    };
    let (containerd_sock, crio_sock) = (socket(CONTAINERD_SOCKET), socket(CRIO_SOCKET));
    if let Some(cri) = pick(containerd_sock, crio_sock) {
        return Ok(cri);
    }
    if containerd_sock && crio_sock {
        bail!("both containerd and CRI-O are running on this node; pass --cri");
    }
    let containerd_conf = host.exists(containerd_config);
    let crio_conf = host.exists(crio_config) || host.exists(crio_dir);
    if let Some(cri) = pick(containerd_conf, crio_conf) {
        return Ok(cri);
    }
    bail!(
        "cannot tell which CRI this node runs (no {CONTAINERD_SOCKET} or {CRIO_SOCKET}; configs: \
         containerd {}, CRI-O {}); pass --cri containerd or --cri crio",
        if containerd_conf {
            "found"
        } else {
            "not found"
        },
        if crio_conf { "found" } else { "not found" },
    )
}
