//! Busybox root filesystems and OCI bundles, built from Debian's busybox-static.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where Debian's busybox-static installs its static binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked into every rootfs.
const APPLETS: &[&str] = &[
    "sh", "id", "cat", "sleep", "true", "false", "ls", "echo", "grep", "stty", "tty", "test",
    "touch", "mkdir", "ps", "env", "pwd", "wc", "head", "kill",
];

/// The seed's image: alice (1000:1000) and an /etc/group that adds her to `bypassed` (50000).
pub const BYPASS_PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\n";
pub const BYPASS_GROUP: &str = "root:x:0:\nalice:x:1000:\nbypassed:x:50000:alice\n";

/// Fails with an actionable message when busybox-static is missing.
pub fn require_busybox() -> Result<PathBuf> {
    let path = PathBuf::from(BUSYBOX);
    let meta = std::fs::metadata(&path)
        .with_context(|| format!("{BUSYBOX} is missing: install Debian's busybox-static"))?;
    if !meta.is_file() {
        bail!("{BUSYBOX} is not a file");
    }
    Ok(path)
}

/// Writes a busybox rootfs into `rootfs` (created if needed) with the bypass image's
/// /etc/passwd and /etc/group.
pub fn write_busybox_rootfs(rootfs: &Path) -> Result<()> {
    let busybox = require_busybox()?;
    for dir in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "home/alice",
        "root",
    ] {
        std::fs::create_dir_all(rootfs.join(dir))
            .with_context(|| format!("creating {}", rootfs.join(dir).display()))?;
    }
    std::fs::copy(&busybox, rootfs.join("bin/busybox")).context("copying busybox")?;
    for applet in APPLETS {
        let link = rootfs.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", &link).with_context(|| format!("linking {applet}"))?;
        }
    }
    std::fs::write(rootfs.join("etc/passwd"), BYPASS_PASSWD)?;
    std::fs::write(rootfs.join("etc/group"), BYPASS_GROUP)?;
    // Targets for the bind mounts containerd adds (hostname, hosts, resolv.conf).
    for f in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
        std::fs::write(rootfs.join(f), "")?;
    }
    Ok(())
}

/// A bundle directory: `<dir>/config.json` and `<dir>/rootfs`.
pub struct Bundle {
    pub dir: PathBuf,
}

impl Bundle {
    /// Creates `<parent>/<name>` with a busybox rootfs and the given config.json.
    pub fn create(parent: &Path, name: &str, config: &serde_json::Value) -> Result<Self> {
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir)?;
        write_busybox_rootfs(&dir.join("rootfs"))?;
        let bundle = Self { dir };
        bundle.write_config(config)?;
        Ok(bundle)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn write_config(&self, config: &serde_json::Value) -> Result<()> {
        std::fs::write(self.config_path(), serde_json::to_vec(config)?)
            .context("writing config.json")
    }

    pub fn read_config(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_slice(&std::fs::read(self.config_path())?)?)
    }
}

/// A minimal runc-style spec running `args` as `uid:gid` with `additional_gids`, no tty,
/// host network, in the cgroup `cgroups_path` (make it unique per container).
pub fn minimal_config(
    args: &[&str],
    uid: u32,
    gid: u32,
    additional_gids: &[u32],
    cgroups_path: &str,
) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid, "additionalGids": additional_gids},
            "args": args,
            "env": ["PATH=/bin", "HOME=/root"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
                "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
                "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]
            },
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// A tiny C program compiled statically (with the `cc` the build already needs), for images
/// that need a real binary with behaviour busybox lacks — e.g. a setgid binary that keeps its
/// privileges (busybox's applets drop them). Written to `dir/name`.
pub fn compile_static_c(dir: &Path, name: &str, source: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let src = dir.join(format!("{name}.c"));
    let out = dir.join(name);
    std::fs::write(&src, source)?;
    let status = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .context("running cc (apt-get install gcc libc6-dev)")?;
    anyhow::ensure!(status.success(), "cc failed to build {name}");
    Ok(out)
}

/// Source of `show-egid-and-read`: prints its egid, then the file named by its argument (a
/// setgid copy shows whether the kernel honoured the setgid bit).
pub const SHOW_EGID_AND_READ_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    printf("egid=%d\n", (int)getegid());
    fflush(stdout);
    if (argc < 2) return 0;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror(argv[1]); return 1; }
    char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) write(1, buf, (size_t)n);
    return 0;
}
"#;
