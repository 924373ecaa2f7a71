//! The one place the harness calls `strict-supplementalgroups-installer`: it registers the
//! runtime handler in a containerd config the way a node's DaemonSet does (the handler table from
//! `patches/`, compiled into the installer; the runtime binary copied to `--runtime-path`), on
//! files inside this run's work dir (`--host-root /`, no restart: the private containerd is
//! started on the result instead).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where the installer puts the runtime on the "node", relative to the node dir.
const RUNTIME_PATH: &str = "usr/local/bin/strict-supplementalgroups-container-runtime";

/// An installation into `<node>/etc/containerd/config.toml`, reversible with
/// [`NodeInstall::uninstall`].
pub struct NodeInstall {
    installer: PathBuf,
    node: PathBuf,
    config: PathBuf,
    original: String,
    /// The installed runtime: the handler's `BinaryName`.
    pub runtime_path: PathBuf,
    /// What the installer printed.
    pub output: String,
}

impl NodeInstall {
    /// Writes `base_config` as the node's containerd config and runs `installer install` on it
    /// with `runtime` as the binary to install.
    pub fn install(
        installer: &Path,
        runtime: &Path,
        node: &Path,
        base_config: &str,
    ) -> Result<Self> {
        let config = node.join("etc/containerd/config.toml");
        std::fs::create_dir_all(config.parent().context("config path has a parent")?)?;
        std::fs::write(&config, base_config)
            .with_context(|| format!("writing {}", config.display()))?;
        let runtime_path = node.join(RUNTIME_PATH);
        let mut me = Self {
            installer: installer.to_path_buf(),
            node: node.to_path_buf(),
            config,
            original: base_config.to_owned(),
            runtime_path,
            output: String::new(),
        };
        let mut args: Vec<String> = vec![
            "install".into(),
            "--cri".into(),
            "containerd".into(),
            "--containerd-config".into(),
            me.config.display().to_string(),
            "--runtime-binary".into(),
            runtime.display().to_string(),
            "--runtime-path".into(),
            me.runtime_path.display().to_string(),
            // The 2.x handler goes into a drop-in that config.toml imports: inside the node dir,
            // never the host's /etc/containerd/conf.d.
            "--containerd-dropin-dir".into(),
            me.dropin_dir().display().to_string(),
            "--containerd-major".into(),
            "2".into(),
        ];
        args.extend(me.common_args());
        me.output = me.run(&args)?;
        Ok(me)
    }

    /// Where the installer puts the handler's drop-in.
    pub fn dropin_dir(&self) -> PathBuf {
        self.node.join("etc/containerd/conf.d")
    }

    /// config.toml and the drop-ins, as the installer left them: where the handler is.
    pub fn registered_text(&self) -> Result<String> {
        let mut text = self.config_text()?;
        if let Ok(entries) = std::fs::read_dir(self.dropin_dir()) {
            for entry in entries.flatten() {
                text.push('\n');
                text.push_str(&std::fs::read_to_string(entry.path())?);
            }
        }
        Ok(text)
    }

    /// The containerd config as the installer left it.
    pub fn config_text(&self) -> Result<String> {
        std::fs::read_to_string(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))
    }

    /// `installer uninstall`; then the config must be byte-for-byte the original and the
    /// installed runtime gone.
    pub fn uninstall(&self) -> Result<String> {
        let mut args = vec!["uninstall".to_owned()];
        args.extend(self.common_args());
        let output = self.run(&args)?;
        let now = self.config_text()?;
        if now != self.original {
            bail!(
                "after uninstall {} differs from the original:\n{now}",
                self.config.display()
            );
        }
        if self.runtime_path.exists() {
            bail!(
                "after uninstall {} still exists",
                self.runtime_path.display()
            );
        }
        Ok(output)
    }

    fn common_args(&self) -> Vec<String> {
        vec![
            "--host-root".into(),
            "/".into(),
            "--state-dir".into(),
            self.node.join("installer-state").display().to_string(),
            "--no-restart".into(),
        ]
    }

    fn run(&self, args: &[String]) -> Result<String> {
        let out = Command::new(&self.installer)
            .args(args)
            .output()
            .with_context(|| format!("running {}", self.installer.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "{} {} failed ({}): {}{}",
                self.installer.display(),
                args.join(" "),
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(stdout)
    }
}
