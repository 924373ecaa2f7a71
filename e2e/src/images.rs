//! The images of the harness, built from Debian's busybox-static without a registry.
//!
//! Each tenant image is a busybox rootfs whose /etc/passwd and /etc/group say one thing about
//! alice (uid 1000) or root; the setgid image also carries the statically built probe of
//! `e2e/probe/setgid_probe.c`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use test_support::oci_image::ImageSpec;
use test_support::rootfs;

/// The sandbox (pause) image: busybox sleeping forever, as the captured fixtures' pause did.
pub const PAUSE_REF: &str = "docker.io/strict-sg-e2e/pause:e2e";
/// The seed's bypass image: alice (1000:1000), `/etc/group` puts her in `bypassed` (50000).
pub const BYPASS_REF: &str = "docker.io/strict-sg-e2e/bypass:e2e";
/// alice (1000:1000) in no group but her own.
pub const NO_EXTRA_GROUP_REF: &str = "docker.io/strict-sg-e2e/no-extra-group:e2e";
/// `/etc/group` puts root in `bypassed` (50000).
pub const ROOT_IN_GROUP_REF: &str = "docker.io/strict-sg-e2e/root-in-group:e2e";
/// `/etc/passwd` gives alice the primary gid 50000 (`alice:x:1000:50000:…`).
pub const PASSWD_GID_REF: &str = "docker.io/strict-sg-e2e/passwd-gid:e2e";
/// alice (1000:1000) in no extra group; `/opt/setgid-probe` is root:50000 mode 2755 and
/// `/secret/group-50000` is root:50000 mode 0640.
pub const SETGID_REF: &str = "docker.io/strict-sg-e2e/setgid:e2e";

/// Where the setgid image keeps its probe, and the file the probe tries to read.
pub const SETGID_PROBE: &str = "/opt/setgid-probe";
pub const GROUP_SECRET: &str = "/secret/group-50000";

const PASSWD_ALICE_1000: &str =
    "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\n";
const PASSWD_ALICE_50000: &str =
    "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:50000:alice:/home/alice:/bin/sh\n";
const GROUP_NO_MEMBERS: &str = "root:x:0:\nalice:x:1000:\nbypassed:x:50000:\n";
const GROUP_ROOT_MEMBER: &str = "root:x:0:\nalice:x:1000:\nbypassed:x:50000:root\n";

pub struct Images {
    pub pause: PathBuf,
    pub bypass: PathBuf,
    /// Every image the CRI suites import: (reference, OCI archive).
    pub cri: Vec<(&'static str, PathBuf)>,
}

/// Writes every OCI archive into `dir` (compiling the setgid probe with `cc`).
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
    tenant(BYPASS_REF, &bypass_root).write_archive(&bypass)?;

    let mut cri = vec![(PAUSE_REF, pause.clone()), (BYPASS_REF, bypass.clone())];
    for (reference, passwd, group) in [
        (NO_EXTRA_GROUP_REF, PASSWD_ALICE_1000, GROUP_NO_MEMBERS),
        (ROOT_IN_GROUP_REF, PASSWD_ALICE_1000, GROUP_ROOT_MEMBER),
        (PASSWD_GID_REF, PASSWD_ALICE_50000, GROUP_NO_MEMBERS),
    ] {
        let root = dir.join(format!("{}-rootfs", short_name(reference)));
        users_rootfs(&root, passwd, group)?;
        let archive = dir.join(format!("{}.oci.tar", short_name(reference)));
        tenant(reference, &root).write_archive(&archive)?;
        cri.push((reference, archive));
    }

    let setgid_root = dir.join("setgid-rootfs");
    users_rootfs(&setgid_root, PASSWD_ALICE_1000, GROUP_NO_MEMBERS)?;
    let probe_rel = SETGID_PROBE.trim_start_matches('/');
    let secret_rel = GROUP_SECRET.trim_start_matches('/');
    compile_probe(&setgid_root.join(probe_rel))?;
    let secret = setgid_root.join(secret_rel);
    std::fs::create_dir_all(secret.parent().context("secret path has a parent")?)?;
    std::fs::write(&secret, "readable by group 50000 only\n")?;
    let setgid = dir.join("setgid.oci.tar");
    tenant(SETGID_REF, &setgid_root)
        .owner_mode(probe_rel, 0, 50000, 0o2755)
        .owner_mode(secret_rel, 0, 50000, 0o640)
        .write_archive(&setgid)?;
    cri.push((SETGID_REF, setgid));

    Ok(Images { pause, bypass, cri })
}

/// The image config every tenant image shares: user 1000, a shell that prints `id` and waits.
fn tenant(reference: &str, root: &Path) -> ImageSpec {
    ImageSpec::new(reference, root)
        .user("1000")
        .env(&["PATH=/bin", "HOME=/home/alice"])
        .cmd(&["sh", "-c", "id; sleep 3600"])
}

fn users_rootfs(root: &Path, passwd: &str, group: &str) -> Result<()> {
    rootfs::write_busybox_rootfs(root)?;
    std::fs::write(root.join("etc/passwd"), passwd)?;
    std::fs::write(root.join("etc/group"), group)?;
    Ok(())
}

fn short_name(reference: &str) -> &str {
    reference
        .rsplit('/')
        .next()
        .and_then(|n| n.split(':').next())
        .unwrap_or(reference)
}

/// The probe's C source, compiled statically (the image has no libc).
const PROBE_SOURCE: &str = include_str!("../probe/setgid_probe.c");

fn compile_probe(out: &Path) -> Result<()> {
    let dir = out.parent().context("probe path has a parent")?;
    std::fs::create_dir_all(dir)?;
    let source = dir.join("setgid_probe.c");
    std::fs::write(&source, PROBE_SOURCE)?;
    let result = Command::new("cc")
        .args(["-static", "-Os", "-o"])
        .arg(out)
        .arg(&source)
        .output()
        .context("running cc (apt-get install gcc libc6-dev) to build the setgid probe")?;
    std::fs::remove_file(&source)?;
    if !result.status.success() {
        bail!(
            "cc -static failed for the setgid probe: {}",
            String::from_utf8_lossy(&result.stderr).trim()
        );
    }
    Ok(())
}
