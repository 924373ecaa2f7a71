//! The captured specs in `tests/fixtures/` of the repository (what containerd 1.6.20 and
//! podman/conmon really handed a runtime), made runnable on this machine while keeping what the tests are about —
//! `process.user` and the annotations — exactly as captured.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// `tests/fixtures` of the repository (this crate lives one level below its root).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

pub fn containerd_fixture(name: &str) -> PathBuf {
    fixtures_dir().join("containerd-1.6.20").join(name)
}

pub fn conmon_fixture(name: &str) -> PathBuf {
    fixtures_dir().join("conmon-podman-4.3").join(name)
}

pub fn load_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// How to make a captured spec runnable here.
pub struct Adapt<'a> {
    /// Unique cgroup path for this container (the captured ones collide across tests).
    pub cgroups_path: String,
    /// Namespace paths of the captured sandbox (`/proc/<pid>/ns/…`) are pointed at this pid;
    /// without one they are dropped and the container gets its own namespaces.
    pub sandbox_pid: Option<i32>,
    /// Where to create stand-ins for bind-mount sources under /var/lib/containerd, /run/….
    pub stub_dir: &'a Path,
}

/// Rewrites host-specific parts: namespace paths, bind-mount sources, cgroupsPath, and a
/// negative oomScoreAdj (root lacks CAP_SYS_RESOURCE on these machines). Everything else,
/// including process.user and annotations, is kept.
pub fn adapt(spec: &mut Value, how: &Adapt<'_>) -> Result<()> {
    if let Some(linux) = spec.get_mut("linux").and_then(Value::as_object_mut) {
        linux.insert("cgroupsPath".into(), Value::from(how.cgroups_path.clone()));
        if let Some(nss) = linux.get_mut("namespaces").and_then(Value::as_array_mut) {
            for ns in nss.iter_mut() {
                let Some(obj) = ns.as_object_mut() else {
                    continue;
                };
                let Some(path) = obj.get("path").and_then(Value::as_str).map(str::to_owned) else {
                    continue;
                };
                match how.sandbox_pid {
                    Some(pid) => {
                        let kind = path.rsplit('/').next().unwrap_or_default().to_owned();
                        obj.insert("path".into(), Value::from(format!("/proc/{pid}/ns/{kind}")));
                    }
                    None => {
                        obj.remove("path");
                    }
                }
            }
            if how.sandbox_pid.is_none() {
                // A network namespace of our own would have no loopback configured; the
                // captured pods used the sandbox's, i.e. the host's.
                nss.retain(|ns| ns["type"] != "network");
            }
        }
    }
    if let Some(mounts) = spec.get_mut("mounts").and_then(Value::as_array_mut) {
        for (i, mount) in mounts.iter_mut().enumerate() {
            let Some(source) = mount
                .get("source")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            if !(source.starts_with("/var/lib/containerd") || source.starts_with("/run/containerd"))
            {
                continue;
            }
            let is_dir = mount["destination"] == "/dev/shm";
            let stub = how.stub_dir.join(format!("mount-{i}"));
            if is_dir {
                std::fs::create_dir_all(&stub)?;
            } else {
                std::fs::write(&stub, "")?;
            }
            mount["source"] = Value::from(stub.display().to_string());
        }
    }
    if let Some(process) = spec.get_mut("process").and_then(Value::as_object_mut)
        && process
            .get("oomScoreAdj")
            .and_then(Value::as_i64)
            .is_some_and(|v| v < 0)
    {
        process.insert("oomScoreAdj".into(), Value::from(0));
    }
    Ok(())
}

/// One pod of a test PodList: `(namespace, name, uid, supplementalGroups, fsGroup)`.
pub type TestPod<'a> = (&'a str, &'a str, &'a str, &'a [i64], Option<i64>);

/// A PodList with one entry per pod.
pub fn pod_list(pods: &[TestPod<'_>]) -> Value {
    let items: Vec<Value> = pods
        .iter()
        .map(|(ns, name, uid, supp, fs)| {
            let mut ctx = serde_json::json!({ "supplementalGroups": supp, "runAsUser": 1000 });
            if let Some(fs) = fs {
                ctx["fsGroup"] = Value::from(*fs);
            }
            serde_json::json!({
                "metadata": {"namespace": ns, "name": name, "uid": uid},
                "spec": {"securityContext": ctx, "containers": [{"name": "app", "image": "x"}]},
                "status": {"phase": "Running"}
            })
        })
        .collect();
    serde_json::json!({"kind": "PodList", "apiVersion": "v1", "items": items})
}

/// Writes a runtime config using the `file` source, returns its path.
pub fn write_file_source_config(dir: &Path, pods_file: &Path, extra: &str) -> Result<PathBuf> {
    let path = dir.join("runtime-config.toml");
    std::fs::write(
        &path,
        format!(
            "pod-groups-source = \"file\"\npods-file = {:?}\n{extra}\n",
            pods_file.display().to_string()
        ),
    )?;
    Ok(path)
}
