//! The bench's private world: a work directory (a tmpfs by default, like /run on a real node,
//! where containerd keeps bundles and runc its state), the container spec every runtime gets,
//! and the cleanup of containers and cgroups whatever happens.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use test_support::fixtures;
use test_support::runtime::Runtime;

/// Gids of the workload's process: the primary group first (containerd ≥ 1.6.18), the image's
/// `bypassed` group, and the one the pod grants.
pub const INPUT_GIDS: [u32; 3] = [1000, 50000, 60000];
/// What enforcement must leave.
pub const ENFORCED_GIDS: [u32; 2] = [1000, 60000];
/// What the pod grants.
pub const GRANTED: i64 = 60000;

/// The directory everything of one run lives in; unmounted and removed on drop.
pub struct Workspace {
    pub dir: PathBuf,
    pub tmpfs: bool,
    tmp: Option<tempfile::TempDir>,
}

impl Workspace {
    pub fn create(parent: &Path, want_tmpfs: bool) -> Result<Self> {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix("strict-sg-bench-")
            .tempdir_in(parent)
            .with_context(|| format!("creating a work directory in {}", parent.display()))?;
        let dir = tmp.path().to_path_buf();
        let mut tmpfs = false;
        if want_tmpfs {
            match nix::mount::mount(
                Some("tmpfs"),
                &dir,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID,
                Some("mode=0700,size=1g"),
            ) {
                Ok(()) => tmpfs = true,
                Err(e) => eprintln!(
                    "bench: could not mount a tmpfs on {} ({e}); bundles and state stay on \
                     the disk",
                    dir.display()
                ),
            }
        }
        Ok(Self {
            dir,
            tmpfs,
            tmp: Some(tmp),
        })
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if self.tmpfs
            && let Err(e) = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH)
        {
            eprintln!("bench: unmounting {}: {e}", self.dir.display());
        }
        if let Some(tmp) = self.tmp.take() {
            let shown = tmp.path().display().to_string();
            if let Err(e) = tmp.close() {
                eprintln!("bench: removing {shown}: {e}");
            }
        }
    }
}

/// Which pod a container belongs to (what containerd's CRI annotations say).
#[derive(Clone, Debug)]
pub struct PodIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The spec every runtime gets, rendered per container.
pub struct SpecTemplate {
    pub kind: &'static str,
    base: Value,
    process: Value,
}

const CRI: &str = "io.kubernetes.cri.";

impl SpecTemplate {
    /// `containerd`: the app spec a real containerd 1.6.20 handed a runtime
    /// (`tests/fixtures`), made runnable here by `fixtures::adapt`. `minimal`:
    /// `rootfs::minimal_config`.
    pub fn load(kind: &str, stub_dir: &Path) -> Result<Self> {
        let (kind, mut base, process) = match kind {
            "containerd" => {
                let path = fixtures::containerd_fixture("app-bypass-pod.config.json");
                let mut spec = fixtures::load_json(&path)?;
                std::fs::create_dir_all(stub_dir)?;
                fixtures::adapt(
                    &mut spec,
                    &fixtures::Adapt {
                        cgroups_path: String::new(),
                        sandbox_pid: None,
                        stub_dir,
                    },
                )?;
                let process = fixtures::load_json(&fixtures::containerd_fixture(
                    "exec-bypass-pod.process.json",
                ))?;
                ("containerd", spec, process)
            }
            "minimal" => {
                let spec =
                    test_support::rootfs::minimal_config(&["true"], 1000, 1000, &INPUT_GIDS, "");
                let mut process = spec["process"].clone();
                process["args"] = serde_json::json!(["true"]);
                ("minimal", spec, process)
            }
            other => bail!("--spec is containerd or minimal, not {other:?}"),
        };
        let user = &base["process"]["user"];
        if user["uid"] != 1000
            || user["gid"] != 1000
            || user["additionalGids"] != serde_json::json!(INPUT_GIDS)
        {
            bail!("the {kind} spec's process.user is not 1000:1000 with {INPUT_GIDS:?}: {user}");
        }
        if base.get("annotations").is_none() {
            base["annotations"] = serde_json::json!({});
        }
        Ok(Self {
            kind,
            base,
            process,
        })
    }

    /// config.json running `args`, in `cgroups_path`, annotated as a container of `pod` (or
    /// without any annotation: what runc/youki and the unmanaged case get).
    pub fn render(&self, args: &[&str], cgroups_path: &str, pod: Option<&PodIdentity>) -> Value {
        let mut spec = self.base.clone();
        spec["process"]["args"] = serde_json::json!(args);
        spec["linux"]["cgroupsPath"] = Value::from(cgroups_path);
        match pod {
            Some(pod) => {
                let a = &mut spec["annotations"];
                a[format!("{CRI}container-type")] = "container".into();
                a[format!("{CRI}container-name")] = "app".into();
                a[format!("{CRI}sandbox-namespace")] = pod.namespace.as_str().into();
                a[format!("{CRI}sandbox-name")] = pod.name.as_str().into();
                a[format!("{CRI}sandbox-uid")] = pod.uid.as_str().into();
            }
            None => {
                if let Some(obj) = spec.as_object_mut() {
                    obj.remove("annotations");
                }
            }
        }
        spec
    }

    /// An exec `--process` file like containerd's (the unfiltered image gids, no annotations).
    pub fn exec_process(&self, args: &[&str]) -> Value {
        let mut p = self.process.clone();
        p["args"] = serde_json::json!(args);
        p["user"] = serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": INPUT_GIDS});
        p
    }
}

/// `delete --force` of every container left in `rt`'s state root (anything with a
/// state.json); failures are reported, not fatal.
pub fn destroy_leftovers(rt: &Runtime) {
    let Ok(entries) = std::fs::read_dir(&rt.root) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.path().join("state.json").is_file() {
            continue;
        }
        let id = entry.file_name().to_string_lossy().into_owned();
        match rt.run(&["delete", "--force", &id]) {
            Ok(out) if out.success() => {}
            Ok(out) => eprintln!(
                "bench: cleanup: {} delete --force {id}: {}",
                rt.binary.display(),
                out.stderr.trim()
            ),
            Err(e) => eprintln!("bench: cleanup: delete --force {id}: {e:#}"),
        }
    }
}

/// Removes `/<name>` (and everything below it) from every cgroup hierarchy: the parent of all
/// the bench's container cgroups, which the runtimes leave behind. Where a directory below
/// `/sys/fs/cgroup` is not a cgroup filesystem (the tmpfs beneath a cgroup2 mount the bench's
/// namespace hid, see [`crate::mountns`]), runtimes that still wrote there left plain
/// directories and files (crun writes `cgroup.procs`): those are removed as files. Returns what
/// is still there afterwards (empty: clean).
pub fn remove_cgroup_tree(name: &str) -> Vec<PathBuf> {
    let dirs = cgroup_tree_candidates(name);
    for dir in &dirs {
        if !dir.is_dir() {
            continue;
        }
        let result = if is_cgroup_fs(dir) {
            rmdir_tree(dir)
        } else {
            std::fs::remove_dir_all(dir).with_context(|| format!("rm -r {}", dir.display()))
        };
        if let Err(e) = result {
            eprintln!("bench: cleanup: removing cgroup {}: {e:#}", dir.display());
        }
    }
    dirs.into_iter().filter(|d| d.exists()).collect()
}

/// `/sys/fs/cgroup/<name>` and `/sys/fs/cgroup/<each entry>/<name>`.
fn cgroup_tree_candidates(name: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![base.join(name)];
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                candidates.push(e.path().join(name));
            }
        }
    }
    candidates
}

fn is_cgroup_fs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir).is_ok_and(|fs| {
        let t = fs.filesystem_type();
        t == nix::sys::statfs::CGROUP_SUPER_MAGIC || t == nix::sys::statfs::CGROUP2_SUPER_MAGIC
    })
}

fn rmdir_tree(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            rmdir_tree(&e.path())?;
        }
    }
    std::fs::remove_dir(dir).with_context(|| format!("rmdir {}", dir.display()))
}

/// The first executable `tool` on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|p| p.join(tool))
        .find(|p| is_executable(p))
}

pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `<binary> --version`, first line.
pub fn version_of(binary: &Path) -> String {
    test_support::binaries::version_line(binary)
}
