//! The containerd config of each line: a base config of the line's version (2 for 1.6/1.7, 3
//! for 2.x) with runc as the default runtime, and the runtime handler registered the way a node
//! gets it — the repository's v2 snippet merged in for 1.6/1.7, the installer (with the v3
//! snippet compiled into it) for 2.x.

use std::path::Path;

use anyhow::{Context, Result, bail};
use test_support::containerd::{
    CRI_IMAGES_PLUGIN_V3, CRI_PLUGIN, CRI_RUNTIME_PLUGIN_V3, ContainerdLine, merge_config,
};

use crate::Harness;
use crate::images::PAUSE_REF;
use crate::node_install::NodeInstall;
use crate::pods::toml_str;

/// The runtime handler name of the patches.
pub const HANDLER: &str = "strict-supplementalgroups";
const PATCH_RUNTIME_TABLE: &str = "strict-supplementalgroups";
/// Debian's runc: the default runtime, and the one Kubernetes' Strict policy runs with.
pub const RUNC_HANDLER: &str = "runc";
pub const RUNC: &str = "/usr/sbin/runc";
/// Debian's crun, a handler of the latency instance only.
pub const CRUN_HANDLER: &str = "crun";
pub const CRUN: &str = "/usr/bin/crun";

/// A line's config and how the handler got into it.
pub struct LineConfig {
    pub text: String,
    /// The binary the handler runs (the installed copy on 2.x).
    pub runtime: std::path::PathBuf,
    /// The installer's work, for the 2.x line.
    pub install: Option<NodeInstall>,
}

/// The config `line` runs on, the handler registered as a node would have it. `dir` is the
/// line's work dir.
pub fn for_line(h: &Harness, line: ContainerdLine, dir: &Path) -> Result<LineConfig> {
    let cni = dir.join("cni");
    std::fs::create_dir_all(cni.join("bin"))?;
    std::fs::create_dir_all(cni.join("net.d"))?;
    match line.config_version() {
        3 => {
            let install = NodeInstall::install(
                &h.installer,
                &stripped_copy(&h.runtime, dir)?,
                &dir.join("node"),
                &base_config_v3(&cni),
            )?;
            Ok(LineConfig {
                text: install.config_text()?,
                runtime: install.runtime_path.clone(),
                install: Some(install),
            })
        }
        _ => Ok(LineConfig {
            text: merge_config(
                &base_config_v2(&cni),
                &handler_snippet(&h.patch, &h.runtime)?,
            )?,
            runtime: h.runtime.clone(),
            install: None,
        }),
    }
}

/// The runtime without debug sections, as a release build ships (a debug build is ~150 MB, which
/// the installer copies, fsyncs and hashes twice); the runtime itself when `strip` fails.
fn stripped_copy(runtime: &Path, dir: &Path) -> Result<std::path::PathBuf> {
    let out = dir.join("runtime-stripped");
    let stripped = std::process::Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(runtime)
        .status()
        .is_ok_and(|s| s.success());
    Ok(if stripped { out } else { runtime.to_path_buf() })
}

/// `config` with a `crun` handler running Debian's crun.
pub fn with_crun(config: &str, line: ContainerdLine) -> Result<String> {
    let plugin = runtime_plugin(line);
    merge_config(
        config,
        &format!(
            "[plugins.\"{plugin}\".containerd.runtimes.{CRUN_HANDLER}]\n  \
             runtime_type = \"io.containerd.runc.v2\"\n\
             [plugins.\"{plugin}\".containerd.runtimes.{CRUN_HANDLER}.options]\n  \
             BinaryName = {}\n",
            toml_str(CRUN)
        ),
    )
}

fn runtime_plugin(line: ContainerdLine) -> &'static str {
    match line.config_version() {
        3 => CRI_RUNTIME_PLUGIN_V3,
        _ => CRI_PLUGIN,
    }
}

/// containerd 1.6/1.7: CRI settings in the `io.containerd.grpc.v1.cri` plugin.
fn base_config_v2(cni_dir: &Path) -> String {
    format!(
        r#"version = 2

[plugins."{CRI_PLUGIN}"]
  sandbox_image = {pause}
  # root lacks CAP_SYS_RESOURCE on these machines: a negative oom_score_adj fails with EPERM
  restrict_oom_score_adj = true
  enable_selinux = false

  [plugins."{CRI_PLUGIN}".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "{RUNC_HANDLER}"

    [plugins."{CRI_PLUGIN}".containerd.runtimes.{RUNC_HANDLER}]
      runtime_type = "io.containerd.runc.v2"
      [plugins."{CRI_PLUGIN}".containerd.runtimes.{RUNC_HANDLER}.options]
        BinaryName = {runc}

  # no CNI here: pods use the host network; empty private dirs keep the host's CNI out
  [plugins."{CRI_PLUGIN}".cni]
    bin_dir = {cni_bin}
    conf_dir = {cni_conf}
"#,
        pause = toml_str(PAUSE_REF),
        runc = toml_str(RUNC),
        cni_bin = toml_str(&cni_dir.join("bin").display().to_string()),
        cni_conf = toml_str(&cni_dir.join("net.d").display().to_string()),
    )
}

/// containerd 2.x: the images and runtime halves of the CRI in their own plugins.
fn base_config_v3(cni_dir: &Path) -> String {
    format!(
        r#"version = 3

[plugins."{CRI_IMAGES_PLUGIN_V3}"]
  snapshotter = "overlayfs"
  [plugins."{CRI_IMAGES_PLUGIN_V3}".pinned_images]
    sandbox = {pause}

[plugins."{CRI_RUNTIME_PLUGIN_V3}"]
  # root lacks CAP_SYS_RESOURCE on these machines: a negative oom_score_adj fails with EPERM
  restrict_oom_score_adj = true
  enable_selinux = false

  [plugins."{CRI_RUNTIME_PLUGIN_V3}".containerd]
    default_runtime_name = "{RUNC_HANDLER}"

    [plugins."{CRI_RUNTIME_PLUGIN_V3}".containerd.runtimes.{RUNC_HANDLER}]
      runtime_type = "io.containerd.runc.v2"
      [plugins."{CRI_RUNTIME_PLUGIN_V3}".containerd.runtimes.{RUNC_HANDLER}.options]
        BinaryName = {runc}

  # no CNI here: pods use the host network; empty private dirs keep the host's CNI out
  [plugins."{CRI_RUNTIME_PLUGIN_V3}".cni]
    bin_dirs = [{cni_bin}]
    conf_dir = {cni_conf}

# NRI (on by default from 2.0) would listen on the host-wide /var/run/nri/nri.sock
[plugins."io.containerd.nri.v1.nri"]
  disable = true
"#,
        pause = toml_str(PAUSE_REF),
        runc = toml_str(RUNC),
        cni_bin = toml_str(&cni_dir.join("bin").display().to_string()),
        cni_conf = toml_str(&cni_dir.join("net.d").display().to_string()),
    )
}

/// The repository's v2 handler snippet with `BinaryName` pointed at `binary`.
fn handler_snippet(patch: &Path, binary: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(patch).with_context(|| format!("reading {}", patch.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", patch.display()))?;
    let options = doc
        .get_mut("plugins")
        .and_then(|t| t.get_mut(CRI_PLUGIN))
        .and_then(|t| t.get_mut("containerd"))
        .and_then(|t| t.get_mut("runtimes"))
        .and_then(|t| t.get_mut(PATCH_RUNTIME_TABLE))
        .and_then(|t| t.get_mut("options"))
        .and_then(toml_edit::Item::as_table_like_mut)
        .with_context(|| {
            format!(
                "{} has no [plugins.\"{CRI_PLUGIN}\".containerd.runtimes.{PATCH_RUNTIME_TABLE}.options]",
                patch.display()
            )
        })?;
    if options.get("BinaryName").is_none() {
        bail!("{} sets no BinaryName", patch.display());
    }
    options.insert("BinaryName", toml_edit::value(binary.display().to_string()));
    Ok(doc.to_string())
}

/// `<binary> --version`'s first line's last word (`runc version 1.1.5+ds1` → `1.1.5+ds1`).
pub fn tool_version(binary: &str) -> String {
    let line = test_support::binaries::version_line(Path::new(binary));
    line.split_whitespace().last().unwrap_or("?").to_owned()
}
