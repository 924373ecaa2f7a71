//! A private containerd for tests: its own root, state, sockets and log, started under `setsid`,
//! and torn down completely — containerd, the shims it started, their containers, mounts and
//! cgroups — when stopped or dropped, also after a failed test.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use test_support::containerd::{Containerd, ContainerdOptions};
//! let config = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  restrict_oom_score_adj = true\n";
//! let containerd = Containerd::start(ContainerdOptions::new(config))?;
//! containerd.import_image("k8s.io", std::path::Path::new("/tmp/image.tar"))?;
//! println!("CRI endpoint: {}", containerd.socket().display());
//! containerd.stop()?; // or just drop it
//! # Ok(()) }
//! ```
//!
//! What the launcher overrides in the given config, so that instances never collide with each
//! other or with a containerd of the host: `root`, `state`, `grpc.address`, `ttrpc.address`,
//! `debug.address` (a socket in its own dir), `metrics.address` (disabled), the CRI stream server
//! (`127.0.0.1`, port `0`), and, for every CRI runtime of type `io.containerd.runc.v2` whose
//! options set no `Root`, `options.Root` = [`Containerd::runc_root`]. Everything else is kept as
//! written (toml_edit keeps comments and order).
//!
//! Teardown, in order: SIGTERM then SIGKILL to containerd's process group; SIGKILL to every
//! `containerd-shim-runc-v2` whose `-address` is this instance's socket and to all their
//! descendants (the containers); removal of each task's shim socket, of each task's cgroup
//! (`linux.cgroupsPath` of the bundles' config.json) and of the cgroups named in
//! [`ContainerdOptions::cleanup_cgroups`]; a lazy unmount of everything mounted under the
//! instance's directory; removal of the directory.
//!
//! With [`ContainerdOptions::hide_mount`], containerd (and so its shims and containers) runs in a
//! private mount namespace in which the named mount points are unmounted: `/sys/fs/cgroup/unified`
//! gives every runtime the pure cgroup-v1 layout that crun accepts on this hybrid host, without
//! changing anything the host sees. The instance's mounts then live and die with that namespace;
//! directories a runtime made below a hidden mount point land on the filesystem underneath, and
//! the teardown removes those named by the cleanup cgroups from a namespace of its own.
//!
//! The caller should be a child subreaper ([`crate::process::become_subreaper`]): shims outlive
//! the `containerd-shim-runc-v2 start` process that spawned them, and this machine's PID 1 does
//! not reap orphans.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use toml_edit::{DocumentMut, Item, Table, value};

use crate::cgroup_claims::CgroupClaim;
use crate::process::{Outcome, run_to_end};

/// The CRI plugin's table in a version 2 config (in version 3 it keeps only the gRPC service's
/// settings: the stream server, ...).
pub const CRI_PLUGIN: &str = "io.containerd.grpc.v1.cri";
/// Where a version 3 config (containerd 2.x) keeps the CRI runtimes (`containerd.runtimes`),
/// `restrict_oom_score_adj` and the CNI settings.
pub const CRI_RUNTIME_PLUGIN_V3: &str = "io.containerd.cri.v1.runtime";
/// Where a version 3 config keeps the snapshotter and the pinned sandbox image.
pub const CRI_IMAGES_PLUGIN_V3: &str = "io.containerd.cri.v1.images";

/// A containerd release line the tests run against: Debian 12's package (1.6, in /usr/bin),
/// and the 1.7 (Debian trixie) and 2.x (Debian sid) binaries `scripts/fetch-containerd` unpacks
/// under `target/containerd/<line>/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerdLine {
    V1_6,
    V1_7,
    V2,
}

impl ContainerdLine {
    pub const ALL: [ContainerdLine; 3] = [Self::V1_6, Self::V1_7, Self::V2];

    /// `1.6`, `1.7`, `2.x`: the name used in reports, options and `target/containerd/<line>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::V1_6 => "1.6",
            Self::V1_7 => "1.7",
            Self::V2 => "2.x",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The directory holding this line's `containerd`, `ctr` and `containerd-shim-runc-v2`.
    pub fn bin_dir(self) -> PathBuf {
        match self {
            Self::V1_6 => PathBuf::from("/usr/bin"),
            Self::V1_7 | Self::V2 => fetched_dir(self).join("usr/bin"),
        }
    }

    /// The config version this line is configured with here: 2 up to 1.7, 3 from 2.0.
    pub fn config_version(self) -> i64 {
        match self {
            Self::V1_6 | Self::V1_7 => 2,
            Self::V2 => 3,
        }
    }

    /// Whether the binaries are there (Debian's package; `scripts/bootstrap` fetches the
    /// others); the error says how to get them.
    pub fn check_installed(self) -> Result<()> {
        for bin in ["containerd", "ctr", "containerd-shim-runc-v2"] {
            let path = self.bin_dir().join(bin);
            if !path.is_file() {
                bail!(
                    "containerd {}: {} is missing ({})",
                    self.name(),
                    path.display(),
                    match self {
                        Self::V1_6 => "apt-get install containerd",
                        _ => "run scripts/bootstrap, which runs scripts/fetch-containerd",
                    }
                );
            }
        }
        Ok(())
    }

    /// The exact version of the binary (`containerd --version`, third word).
    pub fn version(self) -> Result<String> {
        let out = Command::new(self.bin_dir().join("containerd"))
            .arg("--version")
            .output()
            .with_context(|| format!("running containerd {} --version", self.name()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .nth(2)
            .map(str::to_owned)
            .with_context(|| format!("unexpected containerd --version output {text:?}"))
    }
}

/// `target/containerd/<line>` of the workspace (or `$STRICT_SG_CONTAINERD_DIR/<line>`).
fn fetched_dir(line: ContainerdLine) -> PathBuf {
    let base = std::env::var_os("STRICT_SG_CONTAINERD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/containerd"));
    base.join(line.name())
}

/// How long [`Containerd::ctr`] lets one `ctr` call run.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(120);

/// How to start an instance. Only `config` is required.
#[derive(Clone, Debug)]
pub struct ContainerdOptions {
    /// A complete containerd config (`version = 2`) as TOML text; the launcher overrides the
    /// paths and addresses listed in the module documentation.
    pub config: String,
    /// Extra environment for containerd (and so for its shims and the runtimes they run).
    pub env: Vec<(String, String)>,
    /// Cgroup paths (relative to each hierarchy's root, e.g. `/strict-sg-e2e-1234`) removed,
    /// with everything below them, at teardown. The trees of two live instances of one process
    /// may not overlap ([`Containerd::start`] refuses: one's teardown would kill the other's
    /// containers).
    pub cleanup_cgroups: Vec<String>,
    /// The containerd binary; `containerd` from PATH by default.
    pub binary: PathBuf,
    /// The `ctr` binary; `ctr` from PATH by default.
    pub ctr_binary: PathBuf,
    /// Parent of the instance's temp dir; the system temp dir by default. Keep it short:
    /// unix socket paths are limited to 107 bytes.
    pub base_dir: Option<PathBuf>,
    /// How long to wait for the API to answer.
    pub start_timeout: Duration,
    /// Mount points unmounted in the private mount namespace containerd is started in; empty
    /// (the default): containerd shares the caller's mount namespace.
    pub hidden_mounts: Vec<PathBuf>,
}

impl ContainerdOptions {
    pub fn new(config: impl Into<String>) -> Self {
        Self {
            config: config.into(),
            env: Vec::new(),
            cleanup_cgroups: Vec::new(),
            binary: PathBuf::from("containerd"),
            ctr_binary: PathBuf::from("ctr"),
            base_dir: None,
            start_timeout: Duration::from_secs(30),
            hidden_mounts: Vec::new(),
        }
    }

    /// Reads the config from a file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading containerd config {}", path.display()))?;
        Ok(Self::new(text))
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn cleanup_cgroup(mut self, path: impl Into<String>) -> Self {
        self.cleanup_cgroups.push(path.into());
        self
    }

    /// Starts containerd in a private mount namespace (propagation private) in which the mount
    /// point `path` is unmounted (e.g. `/sys/fs/cgroup/unified`, for crun on a hybrid host).
    pub fn hide_mount(mut self, path: impl Into<PathBuf>) -> Self {
        self.hidden_mounts.push(path.into());
        self
    }

    /// Runs `line`'s binaries: containerd and ctr from its bin dir, which also goes first on
    /// containerd's PATH so that it starts that line's `containerd-shim-runc-v2`.
    pub fn line(mut self, line: ContainerdLine) -> Self {
        let bin = line.bin_dir();
        self.binary = bin.join("containerd");
        self.ctr_binary = bin.join("ctr");
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        self.env.retain(|(k, _)| k != "PATH");
        self.env
            .push(("PATH".to_owned(), format!("{}:{path}", bin.display())));
        self
    }
}

/// A running private containerd. Stopped and cleaned by [`Containerd::stop`] or on drop.
pub struct Containerd {
    child: Option<Child>,
    pid: i32,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    config_path: PathBuf,
    ctr_binary: PathBuf,
    cleanup_cgroups: Vec<String>,
    hidden_mounts: Vec<PathBuf>,
    /// Held for the instance's life (released when it is dropped, after the teardown).
    _cleanup_claim: CgroupClaim,
}

impl Containerd {
    /// Writes the isolated config, starts containerd under `setsid` and waits until `ctr
    /// version` answers. On failure the error carries the tail of containerd's log, and
    /// everything started so far is cleaned up.
    pub fn start(opts: ContainerdOptions) -> Result<Self> {
        let cleanup_claim = CgroupClaim::take(&opts.cleanup_cgroups)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("ctrd-");
        let dir = match &opts.base_dir {
            Some(base) => builder.tempdir_in(base),
            None => builder.tempdir(),
        }
        .context("creating the containerd temp dir")?;
        let dir_path = dir.path().to_path_buf();
        let socket = dir_path.join("containerd.sock");
        let log = dir_path.join("containerd.log");
        let config_path = dir_path.join("config.toml");
        // sun_path holds 107 bytes and a NUL; the ttrpc socket's name is the longest.
        let longest = dir_path.join("containerd.sock.ttrpc");
        if longest.as_os_str().len() > 107 {
            bail!(
                "{} is too long for a unix socket path: choose a shorter base_dir",
                longest.display()
            );
        }
        let config = isolate_config(&opts.config, &dir_path)?;
        std::fs::write(&config_path, config).context("writing containerd config")?;

        let log_file = std::fs::File::create(&log).context("creating containerd log")?;
        let mut cmd = Command::new(&opts.binary);
        cmd.arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let hidden = hidden_mount_paths(&opts.hidden_mounts)?;
        // SAFETY: setsid, unshare, mount and umount2 are plain system calls, async-signal-safe;
        // the paths were made into C strings before the fork, nothing is allocated here.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if !hidden.is_empty() {
                    enter_namespace_without(&hidden)?;
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", opts.binary.display()))?;
        let pid = i32::try_from(child.id()).context("containerd pid out of range")?;
        let mut me = Self {
            child: Some(child),
            pid,
            dir: Some(dir),
            dir_path,
            socket,
            log,
            config_path,
            ctr_binary: opts.ctr_binary,
            cleanup_cgroups: opts.cleanup_cgroups,
            hidden_mounts: opts.hidden_mounts,
            _cleanup_claim: cleanup_claim,
        };
        if let Err(err) = me.wait_ready(opts.start_timeout) {
            let tail = me.log_tail(30);
            let _ = me.teardown();
            return Err(err.context(format!("containerd did not start; its log ends:\n{tail}")));
        }
        Ok(me)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("containerd exited early ({status})");
            }
            if self.socket.exists() {
                let out = self.ctr(&["version"])?;
                if out.success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("containerd's API did not answer within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The containerd gRPC socket (also the CRI endpoint).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// containerd's stdout+stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The config file containerd was started with (after the overrides).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The instance's private directory (root, state, sockets, log); removed at teardown.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    pub fn root(&self) -> PathBuf {
        self.dir_path.join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir_path.join("state")
    }

    /// The runc `--root` given to CRI runtimes that set none; pass it to `ctr run --runc-root`
    /// to keep `ctr` containers' runtime state inside the instance too.
    pub fn runc_root(&self) -> PathBuf {
        self.dir_path.join("runc")
    }

    /// containerd's pid (also its process group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether containerd is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Runs `ctr --address <socket> <args>` with [`CTR_TIMEOUT`]; stdout and stderr go through
    /// files, never pipes (a container started by `ctr run -d` inherits them).
    pub fn ctr(&self, args: &[&str]) -> Result<Outcome> {
        self.ctr_with_timeout(args, CTR_TIMEOUT)
    }

    /// [`Containerd::ctr`] with another deadline; ctr is killed when it passes, and that is an
    /// error.
    pub fn ctr_with_timeout(&self, args: &[&str], timeout: Duration) -> Result<Outcome> {
        let mut cmd = Command::new(&self.ctr_binary);
        cmd.arg("--address").arg(&self.socket).args(args);
        run_to_end(&mut cmd, Stdio::null(), Some(timeout))
    }

    /// Like [`Containerd::ctr`], failing with ctr's stderr unless it exits 0; returns stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ctr(args)?;
        if !out.success() {
            bail!(
                "ctr {} failed ({:?}): {}{}",
                args.join(" "),
                out.code,
                out.stderr.trim(),
                out.stdout.trim()
            );
        }
        Ok(out.stdout)
    }

    /// `ctr -n <namespace> images import <archive>`, failing with ctr's stderr.
    pub fn import_image(&self, namespace: &str, archive: &Path) -> Result<()> {
        let archive = archive.display().to_string();
        self.ctr_ok(&["-n", namespace, "images", "import", &archive])
            .map(drop)
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops containerd and removes every trace of the instance (see the module docs).
    /// Returns the first problem met, after trying every step.
    pub fn stop(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        let mut problems: Vec<String> = Vec::new();
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                problems.push(format!("{e:#}"));
            }
        };
        if let Some(child) = self.child.take() {
            note(stop_process_group(child, self.pid));
        }
        let bundles = task_bundles(&self.state());
        note(kill_shims(&self.socket));
        for bundle in &bundles {
            // The shim's socket lives outside our dir (/run/containerd/s/…); a killed shim
            // leaves it behind.
            if let Ok(addr) = std::fs::read_to_string(bundle.join("address"))
                && let Some(path) = addr.trim().strip_prefix("unix://")
            {
                let _ = std::fs::remove_file(path);
            }
            if let Some(cg) = bundle_cgroup(bundle) {
                note(remove_cgroup_tree(&cg));
            }
        }
        for cg in &self.cleanup_cgroups {
            note(remove_cgroup_tree(cg));
        }
        if !self.hidden_mounts.is_empty() {
            let mut made: Vec<String> = self.cleanup_cgroups.clone();
            made.extend(bundles.iter().filter_map(|b| bundle_cgroup(b)));
            note(remove_under_hidden_mounts(&self.hidden_mounts, &made));
        }
        note(unmount_under(&self.dir_path));
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                problems.push(format!("removing {}: {e}", path.display()));
            }
        }
        match problems.first() {
            None => Ok(()),
            Some(_) => bail!("containerd teardown: {}", problems.join("; ")),
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if (self.child.is_some() || self.dir.is_some())
            && let Err(e) = self.teardown()
        {
            eprintln!("{e:#}");
        }
    }
}

fn hidden_mount_paths(paths: &[PathBuf]) -> Result<Vec<std::ffi::CString>> {
    paths
        .iter()
        .map(|p| {
            if !p.is_absolute() {
                bail!("hidden mount {} is not an absolute path", p.display());
            }
            std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
                .with_context(|| format!("hidden mount {} contains NUL", p.display()))
        })
        .collect()
}

/// In a forked child: a new mount namespace, nothing propagating back to the host, `hidden`
/// unmounted. Only system calls (async-signal-safe).
fn enter_namespace_without(hidden: &[std::ffi::CString]) -> std::io::Result<()> {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    use std::ffi::CStr;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    mount::<CStr, CStr, CStr, CStr>(
        None,
        c"/",
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    for path in hidden {
        umount2(path.as_c_str(), MntFlags::MNT_DETACH)?;
    }
    Ok(())
}

/// Removes `<hidden mount point>/<rel>` for every relative cgroup path in `rels`, as seen from a
/// fresh private mount namespace in which the hidden mount points are unmounted (where a
/// runtime in the instance's namespace made them). Paths escaping their root are refused.
pub fn remove_under_hidden_mounts(hidden: &[PathBuf], rels: &[String]) -> Result<()> {
    let mut targets = Vec::new();
    for rel in rels {
        let rel = rel.trim_start_matches('/');
        if rel.is_empty()
            || rel
                .split('/')
                .any(|c| c == ".." || c == "." || c.is_empty())
        {
            bail!("refusing to remove {rel:?} below a hidden mount");
        }
        for mount in hidden {
            targets.push(mount.join(rel));
        }
    }
    if targets.is_empty() {
        return Ok(());
    }
    let paths = hidden_mount_paths(hidden)?;
    let mut cmd = Command::new("rm");
    cmd.arg("-rf").arg("--").args(&targets).stdin(Stdio::null());
    // SAFETY: as in Containerd::start, only system calls run between fork and exec.
    unsafe {
        cmd.pre_exec(move || enter_namespace_without(&paths));
    }
    let out = cmd
        .output()
        .context("running rm in a namespace without the hidden mounts")?;
    if !out.status.success() {
        bail!(
            "removing {targets:?} below hidden mounts: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Applies the isolation overrides to `config` for an instance living in `dir`.
fn isolate_config(config: &str, dir: &Path) -> Result<String> {
    let mut doc: DocumentMut = config.parse().context("parsing the containerd config")?;
    let p = |name: &str| dir.join(name).display().to_string();
    if doc.get("version").is_none() {
        doc["version"] = value(2);
    }
    doc["root"] = value(p("root"));
    doc["state"] = value(p("state"));
    table_mut(&mut doc, &["grpc"])?["address"] = value(p("containerd.sock"));
    table_mut(&mut doc, &["ttrpc"])?["address"] = value(p("containerd.sock.ttrpc"));
    table_mut(&mut doc, &["debug"])?["address"] = value(p("debug.sock"));
    table_mut(&mut doc, &["metrics"])?["address"] = value("");
    let cri = table_mut(&mut doc, &["plugins", CRI_PLUGIN])?;
    cri["stream_server_address"] = value("127.0.0.1");
    cri["stream_server_port"] = value("0");
    // Version 3 (containerd 2.x) keeps the runtimes in their own plugin's table.
    let runtime_plugin = match doc.get("version").and_then(Item::as_integer) {
        Some(v) if v >= 3 => CRI_RUNTIME_PLUGIN_V3,
        _ => CRI_PLUGIN,
    };
    let runc_root = p("runc");
    if let Some(runtimes) = doc
        .get_mut("plugins")
        .and_then(|t| t.get_mut(runtime_plugin))
        .and_then(|t| t.get_mut("containerd"))
        .and_then(|t| t.get_mut("runtimes"))
        .and_then(Item::as_table_like_mut)
    {
        for (_, runtime) in runtimes.iter_mut() {
            let Some(runtime) = runtime.as_table_like_mut() else {
                continue;
            };
            let is_runc_v2 = runtime
                .get("runtime_type")
                .and_then(Item::as_str)
                .is_some_and(|t| t == "io.containerd.runc.v2");
            if !is_runc_v2 {
                continue;
            }
            if runtime.get("options").is_none() {
                runtime.insert("options", Item::Table(Table::new()));
            }
            if let Some(options) = runtime.get_mut("options").and_then(Item::as_table_like_mut)
                && options.get("Root").is_none()
            {
                options.insert("Root", value(runc_root.clone()));
            }
        }
    }
    Ok(doc.to_string())
}

/// The table at `path`, created (as a standard table) where missing.
fn table_mut<'a>(doc: &'a mut DocumentMut, path: &[&str]) -> Result<&'a mut Item> {
    let mut item = doc.as_item_mut();
    for key in path {
        let table = item
            .as_table_like_mut()
            .with_context(|| format!("containerd config: {key:?} is not inside a table"))?;
        if table.get(key).is_none() {
            let mut t = Table::new();
            t.set_implicit(true);
            table.insert(key, Item::Table(t));
        }
        item = table
            .get_mut(key)
            .with_context(|| format!("containerd config: missing {key:?}"))?;
        if !item.is_table_like() {
            bail!("containerd config: {key:?} is not a table");
        }
    }
    Ok(item)
}

/// Merges `snippet` (TOML text, e.g. a runtime handler's table) into `base` (TOML text): tables
/// are merged key by key, any other value in the snippet replaces the base's. Comments and key
/// order of the base are kept.
pub fn merge_config(base: &str, snippet: &str) -> Result<String> {
    let mut base: DocumentMut = base.parse().context("parsing the base config")?;
    let snippet: DocumentMut = snippet.parse().context("parsing the snippet")?;
    merge_tables(base.as_table_mut(), snippet.as_table());
    Ok(base.to_string())
}

fn merge_tables(base: &mut Table, overlay: &Table) {
    for (key, item) in overlay.iter() {
        match (base.get_mut(key), item) {
            (Some(Item::Table(b)), Item::Table(o)) => merge_tables(b, o),
            _ => {
                base.insert(key, item.clone());
            }
        }
    }
}

fn stop_process_group(mut child: Child, pgid: i32) -> Result<()> {
    let pg = Pid::from_raw(pgid);
    if matches!(child.try_wait(), Ok(None)) {
        let _ = killpg(pg, Signal::SIGTERM);
        let _ = crate::process::wait_until(&mut child, Duration::from_secs(5));
    }
    // Whatever is left in the group (containerd, or helpers it started) goes now.
    let _ = killpg(pg, Signal::SIGKILL);
    child.wait().context("waiting for containerd")?;
    Ok(())
}

/// Every process: (pid, ppid, argv).
fn processes() -> Vec<(i32, i32, Vec<String>)> {
    crate::process::all_processes()
        .into_iter()
        .map(|p| {
            let argv = std::fs::read(format!("/proc/{}/cmdline", p.pid))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            (p.pid, p.ppid, argv)
        })
        .collect()
}

/// Kills every shim serving `socket`, and everything below them (containers, execs).
fn kill_shims(socket: &Path) -> Result<()> {
    let socket = socket.display().to_string();
    let procs = processes();
    let shims: Vec<i32> = procs
        .iter()
        .filter(|(_, _, argv)| {
            argv.first().is_some_and(|a| a.contains("containerd-shim"))
                && argv
                    .windows(2)
                    .any(|w| w[0] == "-address" && (w[1] == socket || w[1].ends_with(&socket)))
        })
        .map(|(pid, _, _)| *pid)
        .collect();
    if shims.is_empty() {
        return Ok(());
    }
    let mut doomed = shims.clone();
    let mut i = 0;
    while i < doomed.len() {
        let parent = doomed[i];
        for (pid, ppid, _) in &procs {
            if *ppid == parent && !doomed.contains(pid) {
                doomed.push(*pid);
            }
        }
        i += 1;
    }
    // Stop the shims first so that none of them restarts or reports anything half-way.
    for pid in shims.iter().chain(doomed.iter()) {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let mut stuck = Vec::new();
    for pid in &doomed {
        if crate::process::wait_gone(*pid, Duration::from_secs(5)).is_err() {
            stuck.push(*pid);
        }
    }
    if !stuck.is_empty() {
        bail!("processes of shims of {socket} survived SIGKILL: {stuck:?}");
    }
    Ok(())
}

/// The bundle dirs of the runtime v2 tasks of every namespace.
fn task_bundles(state: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(state.join("io.containerd.runtime.v2.task")) else {
        return out;
    };
    for ns in namespaces.flatten() {
        if let Ok(tasks) = std::fs::read_dir(ns.path()) {
            out.extend(tasks.flatten().map(|t| t.path()));
        }
    }
    out
}

/// The cgroupfs path of a bundle's container, when it has one (systemd-style `a:b:c` paths are
/// not created on this machine and are skipped).
fn bundle_cgroup(bundle: &Path) -> Option<String> {
    let bytes = std::fs::read(bundle.join("config.json")).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let path = spec["linux"]["cgroupsPath"].as_str()?;
    if path.is_empty() || path.contains(':') {
        return None;
    }
    Some(path.to_owned())
}

/// The mount points of every cgroup (v1 and v2) hierarchy mounted at its root.
fn cgroup_mounts() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = right.split_whitespace().next().unwrap_or_default();
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        if fields.get(3) == Some(&"/")
            && let Some(mp) = fields.get(4)
        {
            out.push(PathBuf::from(unescape_mountinfo(mp)));
        }
    }
    out
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Removes the cgroup `rel` (relative to each hierarchy's root, e.g. `/strict-sg-e2e-42`) and
/// everything below it from every mounted hierarchy (v1 and v2), killing the processes still in
/// it. Paths escaping the root are refused. Also useful after other engines (podman).
pub fn remove_cgroup_tree(rel: &str) -> Result<()> {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == ".." || c == ".") {
        bail!("refusing to remove cgroup {rel:?}");
    }
    let mut problems = Vec::new();
    for mount in cgroup_mounts() {
        let dir = mount.join(rel);
        if dir.is_dir()
            && let Err(e) = remove_cgroup_dir(&dir)
        {
            problems.push(format!("{}: {e:#}", dir.display()));
        }
    }
    if !problems.is_empty() {
        bail!("removing cgroups: {}", problems.join("; "));
    }
    Ok(())
}

fn remove_cgroup_dir(dir: &Path) -> Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_dir(&entry.path())?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                crate::process::reap(pid);
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("rmdir {}", dir.display()));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Lazily unmounts every mount point at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|mp| PathBuf::from(unescape_mountinfo(mp)))
        .filter(|mp| mp.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    let mut problems = Vec::new();
    for mp in points {
        if let Err(e) = nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH)
            && e != nix::errno::Errno::EINVAL
            && e != nix::errno::Errno::ENOENT
        {
            problems.push(format!("umount {}: {e}", mp.display()));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim is taken before anything starts: a second instance whose cleanup tree lies
    /// inside a live one's is refused without running containerd (no binary is needed).
    #[test]
    fn an_instance_whose_cleanup_tree_overlaps_a_live_one_does_not_start() {
        let _live = CgroupClaim::take(&["/containerd-claim-test".to_owned()]).unwrap();
        let mut opts =
            ContainerdOptions::new("version = 2\n").cleanup_cgroup("/containerd-claim-test/b");
        opts.binary = PathBuf::from("/nonexistent/containerd");
        let err = Containerd::start(opts)
            .err()
            .expect("an overlapping tree must be refused");
        assert!(format!("{err:#}").contains("overlaps"), "{err:#}");
    }

    #[test]
    fn overrides_paths_and_sets_runc_root() {
        let cfg = r#"
version = 2
root = "/var/lib/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.other]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.other.options]
    BinaryName = "/x"
    Root = "/keep"
"#;
        let out = isolate_config(cfg, Path::new("/tmp/x")).unwrap();
        let doc: DocumentMut = out.parse().unwrap();
        assert_eq!(doc["root"].as_str(), Some("/tmp/x/root"));
        assert_eq!(doc["state"].as_str(), Some("/tmp/x/state"));
        assert_eq!(
            doc["grpc"]["address"].as_str(),
            Some("/tmp/x/containerd.sock")
        );
        let rt = &doc["plugins"][CRI_PLUGIN]["containerd"]["runtimes"];
        assert_eq!(rt["runc"]["options"]["Root"].as_str(), Some("/tmp/x/runc"));
        assert_eq!(rt["other"]["options"]["Root"].as_str(), Some("/keep"));
        assert_eq!(rt["other"]["options"]["BinaryName"].as_str(), Some("/x"));
        assert_eq!(
            doc["plugins"][CRI_PLUGIN]["stream_server_port"].as_str(),
            Some("0")
        );
    }

    #[test]
    fn merge_keeps_base_and_adds_snippet() {
        let base =
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"p\"\n";
        let snippet = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.x]\n  runtime_type = \"io.containerd.runc.v2\"\n";
        let out: DocumentMut = merge_config(base, snippet).unwrap().parse().unwrap();
        let cri = &out["plugins"][CRI_PLUGIN];
        assert_eq!(cri["sandbox_image"].as_str(), Some("p"));
        assert_eq!(
            cri["containerd"]["runtimes"]["x"]["runtime_type"].as_str(),
            Some("io.containerd.runc.v2")
        );
    }

    #[test]
    fn refuses_to_remove_cgroup_roots() {
        assert!(remove_cgroup_tree("/").is_err());
        assert!(remove_cgroup_tree("../x").is_err());
    }
}
