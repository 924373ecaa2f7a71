//! Shared setup of the runtime integration tests: a temp dir per test with its own state root,
//! log file and busybox bundles; the runtime driven exactly as the containerd shim does.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use serde_json::Value;
use test_support::process;
use test_support::rootfs::{Bundle, minimal_config};
use test_support::runtime::Runtime;

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

    pub fn path(&self) -> &Path {
        self.tmp.path()
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
