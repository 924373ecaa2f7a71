//! Shared setup of the runtime integration tests: a temp dir per test with its own state root,
//! log file and busybox bundles; the runtime driven exactly as the containerd shim does.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use serde_json::Value;
use test_support::fixtures::{
    Adapt, TestPod, adapt, containerd_fixture, load_json, pod_list, write_file_source_config,
};
use test_support::process;
use test_support::rootfs::{Bundle, minimal_config};
use test_support::runtime::Runtime;

/// The environment variable naming the runtime's config file.
pub const CONFIG_ENV: &str = "STRICT_SUPPLEMENTALGROUPS_CONFIG";

pub const BINARY: &str = env!("CARGO_BIN_EXE_strict-supplementalgroups-container-runtime");

static SUBREAPER: Once = Once::new();

/// Skips (with a message) when not root: these tests create real containers. Under
/// `STRICT_SG_NO_SKIP=1` (CI) a test that would skip fails instead.
pub fn require_root() -> bool {
    if !nix::unistd::geteuid().is_root() {
        skip("creating containers needs root");
        return false;
    }
    SUBREAPER.call_once(|| {
        process::become_subreaper().expect("becoming a subreaper");
    });
    true
}

/// Reports a skipped test, or fails it where nothing may be skipped (`STRICT_SG_NO_SKIP=1`).
pub fn skip(why: &str) {
    assert!(
        std::env::var_os("STRICT_SG_NO_SKIP").is_none(),
        "STRICT_SG_NO_SKIP is set, but this test would skip: {why}"
    );
    eprintln!("skipping: {why}");
}

pub struct TestEnv {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub log: PathBuf,
    pub runtime: Runtime,
    name: String,
}

impl TestEnv {
    pub fn new(name: &str) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("ssg-{name}-"))
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().join("state");
        let log = tmp.path().join("log.json");
        let runtime = Runtime::new(BINARY, &root).with_log(&log);
        Self {
            tmp,
            root,
            log,
            runtime,
            name: name.to_owned(),
        }
    }

    /// An environment whose runtime reads `pods` from a pods file (the `file` source), with
    /// `extra` appended to its config.
    pub fn with_pods(name: &str, pods: &[TestPod<'_>], extra_config: &str) -> Self {
        let mut env = Self::new(name);
        env.write_pods(pods);
        let config =
            write_file_source_config(env.path(), &env.pods_file(), extra_config).expect("config");
        env.runtime = env
            .runtime
            .clone()
            .with_env(CONFIG_ENV, config.display().to_string());
        env
    }

    /// The pods file of [`TestEnv::with_pods`].
    pub fn pods_file(&self) -> PathBuf {
        self.path().join("pods.json")
    }

    /// Replaces what the pods file lists.
    pub fn write_pods(&self, pods: &[TestPod<'_>]) {
        std::fs::write(
            self.pods_file(),
            serde_json::to_vec(&pod_list(pods)).expect("pods json"),
        )
        .expect("writing pods file");
    }

    /// Replaces the runtime's config file (same path, read on every runtime call).
    pub fn write_config(&self, text: &str) {
        let (_, path) = self
            .runtime
            .env
            .iter()
            .find(|(k, _)| k == CONFIG_ENV)
            .expect("environment with a config file");
        std::fs::write(path, text).expect("writing config");
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A bundle from a captured containerd spec (tests/fixtures), made runnable here.
    pub fn fixture_bundle(&self, fixture: &str, id: &str, sandbox_pid: Option<i32>) -> Bundle {
        let spec = load_json(&containerd_fixture(fixture)).expect("fixture");
        self.adapted_bundle(id, spec, sandbox_pid)
    }

    /// A bundle around a captured spec (any, possibly edited), made runnable here.
    pub fn adapted_bundle(&self, id: &str, mut spec: Value, sandbox_pid: Option<i32>) -> Bundle {
        let stubs = self.path().join(format!("stubs-{id}"));
        std::fs::create_dir_all(&stubs).expect("stub dir");
        adapt(
            &mut spec,
            &Adapt {
                cgroups_path: self.cgroup(id),
                sandbox_pid,
                stub_dir: &stubs,
            },
        )
        .expect("adapting fixture");
        self.bundle_with(id, &spec)
    }

    /// `exec --detach --pid-file … <extra> ID <args>`; returns the exec'd process's pid.
    pub fn exec_detached(&self, id: &str, extra: &[&str], args: &[&str]) -> i32 {
        let pid_file = self.path().join(format!("exec-{id}-{}.pid", unique()));
        let p = pid_file.display().to_string();
        let mut all = vec!["exec", "--detach", "--pid-file", &p];
        all.extend_from_slice(extra);
        all.push(id);
        all.extend_from_slice(args);
        self.runtime
            .run(&all)
            .expect("running exec")
            .expect_ok("exec --detach");
        process::read_pid_file(&pid_file).expect("exec pid file")
    }

    /// The groups of a process exec'd with `extra` (e.g. `--process F`, `--user 1000`) into a
    /// running container; the process (`sleep`) is killed again.
    pub fn exec_groups(&self, id: &str, extra: &[&str]) -> Vec<u32> {
        let args: &[&str] = if extra.contains(&"--process") {
            &[]
        } else {
            &["sleep", "100"]
        };
        let pid = self.exec_detached(id, extra, args);
        let groups = process::groups_of(pid).expect("groups of the exec");
        kill_exec(pid);
        groups
    }

    /// A process file for exec: `user` and `args` on top of a captured containerd exec process.
    pub fn process_file(&self, name: &str, user: Value, args: &[&str]) -> PathBuf {
        let mut p =
            load_json(&containerd_fixture("exec-bypass-pod.process.json")).expect("exec fixture");
        p["user"] = user;
        p["args"] = serde_json::json!(args);
        p["terminal"] = Value::Bool(false);
        let path = self.path().join(name);
        std::fs::write(&path, p.to_string()).expect("writing process file");
        path
    }

    /// A unique cgroup path for a container of this test.
    pub fn cgroup(&self, id: &str) -> String {
        format!("/strict-sg-tests/{}-{}-{id}", self.name, std::process::id())
    }

    /// A busybox bundle with a minimal spec.
    pub fn bundle(&self, id: &str, args: &[&str], user: (u32, u32, &[u32])) -> Bundle {
        let config = minimal_config(args, user.0, user.1, user.2, &self.cgroup(id));
        Bundle::create(self.path(), id, &config).expect("bundle")
    }

    /// A busybox bundle around an arbitrary spec.
    pub fn bundle_with(&self, id: &str, config: &Value) -> Bundle {
        Bundle::create(self.path(), id, config).expect("bundle")
    }

    pub fn pid_file(&self, id: &str) -> PathBuf {
        self.path().join(format!("{id}.pid"))
    }

    /// `create --bundle B --pid-file P ID` as the shim does; returns the init pid.
    pub fn create(&self, bundle: &Bundle, id: &str, extra: &[&str]) -> i32 {
        let pid_file = self.pid_file(id);
        let b = bundle.dir.display().to_string();
        let p = pid_file.display().to_string();
        let mut args = vec!["create", "--bundle", &b, "--pid-file", &p];
        args.extend_from_slice(extra);
        args.push(id);
        self.runtime
            .clone()
            .with_cwd(&bundle.dir)
            .run(&args)
            .expect("running create")
            .expect_ok("create");
        process::read_pid_file(&pid_file).expect("pid file")
    }

    /// `kill --all ID 9`, then waits until the exec'd process `exec_pid` is gone.
    pub fn kill_all(&self, id: &str, exec_pid: i32) {
        self.runtime
            .run(&["kill", "--all", id, "9"])
            .expect("running kill --all");
        process::wait_gone(exec_pid, Duration::from_secs(5)).expect("exec'd process exits");
    }

    /// Kills and deletes the container, reaping its init; ignores failures (cleanup path).
    pub fn destroy(&self, id: &str, pid: Option<i32>) {
        let _ = self.runtime.run(&["kill", "--all", id, "9"]);
        if let Some(pid) = pid {
            let _ = process::wait_gone(pid, Duration::from_secs(5));
        }
        let _ = self.runtime.run(&["delete", "--force", id]);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestEnv {
    /// A failing test must not leave containers (or frozen cgroups) behind for the next one.
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let pid = self
                .runtime
                .state(&id)
                .ok()
                .and_then(|s| s["pid"].as_i64())
                .map(|p| p as i32);
            let _ = self.runtime.run(&["resume", &id]);
            self.destroy(&id, pid);
        }
    }
}

/// `additionalGids` (or any gid array) at `pointer` of a spec.
pub fn gids_in(spec: &Value, pointer: &str) -> Vec<u64> {
    spec.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Kills one exec'd process (not the container) and reaps it.
pub fn kill_exec(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    process::wait_gone(pid, Duration::from_secs(5)).expect("exec'd process exits");
}
