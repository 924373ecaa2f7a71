//! The two images of the harness, built from Debian's busybox-static without a registry.

use std::path::{Path, PathBuf};

use anyhow::Result;
use test_support::oci_image::ImageSpec;
use test_support::rootfs;

/// The sandbox (pause) image: busybox sleeping forever, as the captured fixtures' pause did.
pub const PAUSE_REF: &str = "docker.io/strict-sg-e2e/pause:e2e";
/// The seed's bypass image: alice (1000:1000), `/etc/group` puts her in `bypassed` (50000).
pub const BYPASS_REF: &str = "docker.io/strict-sg-e2e/bypass:e2e";

pub struct Images {
    pub pause: PathBuf,
    pub bypass: PathBuf,
}

/// Writes both OCI archives into `dir`.
pub fn build(dir: &Path) -> Result<Images> {
    let pause_root = dir.join("pause-rootfs");
    rootfs::write_busybox_rootfs(&pause_root)?;
    let pause = dir.join("pause.oci.tar");
    ImageSpec::new(PAUSE_REF, &pause_root)
        .entrypoint(&["/bin/sleep", "2147483647"])
        .write_archive(&pause)?;

    let bypass_root = dir.join("bypass-rootfs");
    rootfs::write_busybox_rootfs(&bypass_root)?;
    let bypass = dir.join("bypass.oci.tar");
    ImageSpec::new(BYPASS_REF, &bypass_root)
        .user("1000")
        .env(&["PATH=/bin", "HOME=/home/alice"])
        .cmd(&["sh", "-c", "id; sleep 3600"])
        .write_archive(&bypass)?;
    Ok(Images { pause, bypass })
}
