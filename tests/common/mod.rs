//! Shared setup of the runtime integration tests: a temp dir per test with its own state root,
//! log file and busybox bundles; the runtime driven exactly as the containerd shim does.
//! `kubelet` holds the kubelet/API-server stand-in of a node, for the tests of the HTTP sources
//! in-process and for runtimes that ask it.

#![allow(dead_code)] // each test binary uses a different subset

pub mod kubelet;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use serde_json::Value;
use test_support::fixtures::{
    Adapt, TestPod, adapt, containerd_fixture, load_json, pod_list, write_file_source_config,
};
use test_support::process::{self, Outcome};
use test_support::rootfs::{Bundle, minimal_config};
use test_support::runtime::{Runtime, last_error_msg};

/// The environment variable naming the runtime's config file.
pub use strict_supplementalgroups::config::CONFIG_ENV;

/// The name of the record a create leaves beside the container's state.
pub const RECORD_FILE: &str = "strict-supplementalgroups.json";

pub const BINARY: &str = env!("CARGO_BIN_EXE_strict-supplementalgroups-container-runtime");

static SUBREAPER: Once = Once::new();

/// Skips (with a message) when not root: these tests create real containers. Under
/// `STRICT_SG_NO_SKIP=1` (CI) a test that would skip fails instead.
pub fn require_root() -> bool {
    if !test_support::skip::unless_root() {
        return false;
    }
    SUBREAPER.call_once(|| {
        process::become_subreaper().expect("becoming a subreaper");
    });
    true
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
        let env = Self::new(name);
        env.write_pods(pods);
        let config =
            write_file_source_config(env.path(), &env.pods_file(), extra_config).expect("config");
        env.with_config_file(&config)
    }

    /// An environment whose runtime asks a kubelet stand-in (the `kubelet` source) holding 100
    /// filler pods and `pods`, through a kubeconfig like a bootstrapped node's
    /// (kubelet-client-current.pem), with `extra` appended to its config.
    pub fn with_kubelet(name: &str, pods: Vec<Value>, extra_config: &str) -> (Self, kubelet::Node) {
        use test_support::certs::KubeconfigStyle;
        use test_support::kubelet::{Behaviour, filler_pods, pod_list};
        let env = Self::new(name);
        let node = kubelet::Node::start(
            Behaviour::Serve,
            kubelet::ApiServer::Elsewhere,
            KubeconfigStyle::CombinedFile,
        );
        let mut items = filler_pods(100);
        items.extend(pods);
        node.kubelet.set_pods(pod_list(items));
        let config = env.path().join("runtime-config.toml");
        std::fs::write(&config, node.runtime_config(extra_config)).expect("writing config");
        (env.with_config_file(&config), node)
    }

    /// Points the runtime at the config file `path` (it reads it on every call).
    fn with_config_file(mut self, path: &Path) -> Self {
        self.runtime = self
            .runtime
            .clone()
            .with_env(CONFIG_ENV, path.display().to_string());
        self
    }

    /// The runtime's config file (of [`TestEnv::with_pods`] or [`TestEnv::with_kubelet`]).
    pub fn config_file(&self) -> PathBuf {
        let (_, path) = self
            .runtime
            .env
            .iter()
            .find(|(k, _)| k == CONFIG_ENV)
            .expect("environment with a config file");
        PathBuf::from(path)
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
        std::fs::write(self.config_file(), text).expect("writing config");
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

    /// `exec <extra> --detach --pid-file P ID <args>` (with `--process F` as `extra`, the
    /// shim's call); returns the exec'd process's pid.
    pub fn exec_detached(&self, id: &str, extra: &[&str], args: &[&str]) -> i32 {
        let pid_file = self.path().join(format!("exec-{id}-{}.pid", unique()));
        self.try_exec_detached(id, extra, &pid_file, args)
            .expect_ok("exec --detach");
        process::read_pid_file(&pid_file).expect("exec pid file")
    }

    /// [`TestEnv::exec_detached`] with the pid file `pid_file`, which may fail: its outcome.
    pub fn try_exec_detached(
        &self,
        id: &str,
        extra: &[&str],
        pid_file: &Path,
        args: &[&str],
    ) -> Outcome {
        let p = pid_file.display().to_string();
        let mut all = vec!["exec"];
        all.extend_from_slice(extra);
        all.extend(["--detach", "--pid-file", &p, id]);
        all.extend_from_slice(args);
        self.runtime.run(&all).expect("running exec")
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
        let fixture = containerd_fixture("exec-bypass-pod.process.json");
        self.write_process(name, &fixture, args, Some(user))
    }

    /// A process file for exec: a captured exec process (`fixture`, its gids as the CRI sent
    /// them) running `args`.
    pub fn captured_process(&self, name: &str, fixture: &Path, args: &[&str]) -> PathBuf {
        self.write_process(name, fixture, args, None)
    }

    fn write_process(
        &self,
        name: &str,
        fixture: &Path,
        args: &[&str],
        user: Option<Value>,
    ) -> PathBuf {
        let mut p = load_json(fixture).expect("exec fixture");
        if let Some(user) = user {
            p["user"] = user;
        }
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

    /// A minimal spec running `args` as `user` (uid, gid, additionalGids), in this test's
    /// cgroup for `id`.
    pub fn config(&self, id: &str, args: &[&str], user: (u32, u32, &[u32])) -> Value {
        minimal_config(args, user.0, user.1, user.2, &self.cgroup(id))
    }

    /// A busybox bundle with a minimal spec.
    pub fn bundle(&self, id: &str, args: &[&str], user: (u32, u32, &[u32])) -> Bundle {
        self.bundle_with(id, &self.config(id, args, user))
    }

    /// A busybox bundle around an arbitrary spec.
    pub fn bundle_with(&self, id: &str, config: &Value) -> Bundle {
        Bundle::create(self.path(), id, config).expect("bundle")
    }

    pub fn pid_file(&self, id: &str) -> PathBuf {
        self.path().join(format!("{id}.pid"))
    }

    /// `create --bundle B --pid-file P <extra> ID` as the shim does; returns the init pid.
    pub fn create(&self, bundle: &Bundle, id: &str, extra: &[&str]) -> i32 {
        self.with_pid_file("create", bundle, id, extra)
    }

    /// [`TestEnv::create`] with the captured variant pod's flags (tty, a rootfs of its own):
    /// `--console-socket S --no-pivot --no-new-keyring`; S must be accepting.
    pub fn create_with_console(&self, bundle: &Bundle, id: &str, socket: &Path) -> i32 {
        let socket = socket.display().to_string();
        let flags = [
            "--console-socket",
            &socket,
            "--no-pivot",
            "--no-new-keyring",
        ];
        self.create(bundle, id, &flags)
    }

    /// `run --bundle B --pid-file P <extra> ID` with `--detach` (or `-d`) in `extra`; returns
    /// the init pid.
    pub fn run_detached(&self, bundle: &Bundle, id: &str, extra: &[&str]) -> i32 {
        self.with_pid_file("run", bundle, id, extra)
    }

    /// `<command> --bundle B --pid-file P <extra> ID`, which must succeed; the pid it wrote.
    fn with_pid_file(&self, command: &str, bundle: &Bundle, id: &str, extra: &[&str]) -> i32 {
        let pid_file = self.pid_file(id);
        let p = pid_file.display().to_string();
        let mut args = vec!["--pid-file", &p];
        args.extend_from_slice(extra);
        self.in_bundle(command, bundle, id, &args)
            .expect_ok(command);
        process::read_pid_file(&pid_file).expect("pid file")
    }

    /// `<command> --bundle B <extra> ID`, run in the bundle as the shim runs the runtime.
    fn in_bundle(&self, command: &str, bundle: &Bundle, id: &str, extra: &[&str]) -> Outcome {
        let b = bundle.dir.display().to_string();
        let mut args = vec![command, "--bundle", &b];
        args.extend_from_slice(extra);
        args.push(id);
        self.runtime
            .clone()
            .with_cwd(&bundle.dir)
            .run(&args)
            .unwrap_or_else(|e| panic!("running {command}: {e:#}"))
    }

    /// `start ID`.
    pub fn start(&self, id: &str) {
        self.runtime
            .run(&["start", id])
            .expect("running start")
            .expect_ok(&format!("start {id}"));
    }

    /// [`TestEnv::create`], then [`TestEnv::start`]; returns the init pid.
    pub fn create_and_start(&self, bundle: &Bundle, id: &str) -> i32 {
        let pid = self.create(bundle, id, &[]);
        self.start(id);
        pid
    }

    /// `create --bundle B <extra> ID` as the shim calls it, which must fail: asserts that it
    /// does, that config.json is byte for byte what it was and that no container is left.
    /// The runtime's last error line is [`TestEnv::last_error`].
    pub fn create_refused(&self, bundle: &Bundle, id: &str, extra: &[&str]) -> Outcome {
        let before = std::fs::read(bundle.config_path()).expect("reading config.json");
        let out = self.in_bundle("create", bundle, id, extra);
        assert!(!out.success(), "{id}: create must fail: {out:?}");
        assert_eq!(
            std::fs::read(bundle.config_path()).expect("reading config.json"),
            before,
            "{id}: a refused create must leave config.json untouched"
        );
        assert!(!self.root.join(id).exists(), "{id}: no container left");
        out
    }

    /// `explain --format json --bundle B`, parsed.
    pub fn explain_json(&self, bundle: &Bundle) -> Value {
        let out = self
            .runtime
            .run(&[
                "explain",
                "--format",
                "json",
                "--bundle",
                &bundle.dir.display().to_string(),
            ])
            .expect("running explain")
            .expect_ok("explain --format json");
        serde_json::from_str(&out.stdout).expect("explain's JSON")
    }

    /// `explain --bundle B`: the text report.
    pub fn explain_text(&self, bundle: &Bundle) -> String {
        self.runtime
            .run(&["explain", "--bundle", &bundle.dir.display().to_string()])
            .expect("running explain")
            .expect_ok("explain")
            .stdout
    }

    /// The sandbox of a captured pod, created and started; its id is its own sandbox-id
    /// annotation. Asserts that its config.json is not touched. Returns (id, init pid).
    pub fn start_sandbox(&self, fixture: &str) -> (String, i32) {
        let spec = load_json(&containerd_fixture(fixture)).expect("fixture");
        let id = spec["annotations"]["io.kubernetes.cri.sandbox-id"]
            .as_str()
            .expect("a sandbox-id annotation")
            .to_owned();
        let bundle = self.fixture_bundle(fixture, &id, None);
        let before = std::fs::read(bundle.config_path()).expect("reading config.json");
        let pid = self.create_and_start(&bundle, &id);
        assert_eq!(
            std::fs::read(bundle.config_path()).expect("reading config.json"),
            before,
            "a sandbox's config.json is never touched"
        );
        (id, pid)
    }

    /// The shim's teardown of one container: `kill ID 9`, its init reaped, `delete --force ID`.
    pub fn kill_and_delete(&self, id: &str, pid: i32) {
        self.runtime
            .run(&["kill", id, "9"])
            .expect("running kill")
            .expect_ok("kill");
        process::wait_gone(pid, Duration::from_secs(5)).expect("the init exits");
        self.runtime
            .run(&["delete", "--force", id])
            .expect("running delete")
            .expect_ok("delete --force");
    }

    /// The record a create wrote beside the container's state.
    pub fn record(&self, id: &str) -> PathBuf {
        self.root.join(id).join(RECORD_FILE)
    }

    /// The pod-groups cache entry of the pod with uid `uid`.
    pub fn cache_entry(&self, uid: &str) -> PathBuf {
        self.root
            .join(strict_supplementalgroups::podgroups::cache::CACHE_DIR)
            .join(format!("{uid}.json"))
    }

    /// The `msg` of the last `error` line of the `--log` file; panics when there is none.
    pub fn last_error(&self) -> String {
        last_error_msg(&self.log)
            .unwrap_or_else(|| panic!("no error line in --log:\n{}", self.log_text()))
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

/// `process.user.additionalGids` of a spec.
pub fn gids_in(spec: &Value) -> Vec<u64> {
    spec.pointer("/process/user/additionalGids")
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
