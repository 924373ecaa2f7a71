//! strict-supplementalgroups-installer, driven as a binary against a temporary host root.
//!
//! Golden files: installer/tests/fixtures/golden/ (`UPDATE_GOLDEN=1` rewrites them). No test here
//! restarts a real service: they pass `--no-restart` or a restart command that only records its
//! arguments (this machine has no systemd).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{INSTALLER, failed, ok};

fn runtime_binary() -> String {
    test_support::binaries::runtime()
        .expect("the runtime binary")
        .display()
        .to_string()
}
const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
const BINARY: &str = "/usr/local/bin/strict-supplementalgroups-container-runtime";
const RECORD: &str = "/var/lib/strict-supplementalgroups-installer/install-record.json";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Compares with a golden file, or rewrites it under UPDATE_GOLDEN=1.
fn assert_golden(name: &str, actual: &[u8]) {
    let path = fixture("golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from the golden file {}:\n--- got ---\n{}",
        path.display(),
        String::from_utf8_lossy(actual)
    );
}

/// A fake node: a host root plus a fake runtime binary outside it.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("host")).unwrap();
        std::fs::write(
            dir.path().join("runtime"),
            b"#!/bin/sh\necho fake runtime\n",
        )
        .unwrap();
        Self { dir }
    }

    fn host(&self) -> PathBuf {
        self.dir.path().join("host")
    }

    fn on_host(&self, host_path: &str) -> PathBuf {
        self.host().join(host_path.trim_start_matches('/'))
    }

    fn put(&self, host_path: &str, bytes: &[u8]) {
        let path = self.on_host(host_path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Puts the test fixture `name` at `host_path`; returns its bytes.
    fn put_fixture(&self, host_path: &str, name: &str) -> Vec<u8> {
        let bytes = std::fs::read(fixture(name)).unwrap();
        self.put(host_path, &bytes);
        bytes
    }

    fn read(&self, host_path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.on_host(host_path)).ok()
    }

    /// The installer with `args` and this node's `--host-root`, not yet run.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(INSTALLER);
        cmd.args(args).arg("--host-root").arg(self.host());
        cmd
    }

    fn installer(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The fake runtime binary (outside the host root).
    fn runtime(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }

    /// `install --no-restart` with the fake runtime, which may fail.
    fn try_install(&self, extra: &[&str]) -> Output {
        let runtime = self.runtime().display().to_string();
        let mut args = vec!["install", "--no-restart", "--runtime-binary", &runtime];
        args.extend_from_slice(extra);
        self.installer(&args)
    }

    /// `install --no-restart` with the fake runtime; asserts success; returns stdout.
    fn install(&self, extra: &[&str]) -> String {
        ok(self.try_install(extra))
    }

    /// An install for containerd with the fake runtime that restarts it with `restart` and
    /// does not verify the CRI afterwards; not yet run.
    fn restarting_install(&self, restart: &str, extra: &[&str]) -> Command {
        let runtime = self.runtime().display().to_string();
        let mut args = vec![
            "install",
            "--cri",
            "containerd",
            "--no-verify",
            "--runtime-binary",
            &runtime,
            "--restart-command",
            restart,
        ];
        args.extend_from_slice(extra);
        self.command(&args)
    }

    fn uninstall(&self, extra: &[&str]) -> String {
        let mut args = vec!["uninstall"];
        args.extend_from_slice(extra);
        ok(self.installer(&args))
    }

    /// Every file (with its bytes and mode) and directory under the host root.
    fn snapshot(&self) -> BTreeMap<PathBuf, Option<(Vec<u8>, u32)>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<(Vec<u8>, u32)>>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let path = entry.path();
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    out.insert(rel, None);
                    walk(root, &path, out);
                } else {
                    let mode = meta.permissions().mode() & 0o7777;
                    out.insert(rel, Some((std::fs::read(&path).unwrap(), mode)));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.host(), &self.host(), &mut out);
        out
    }
}

/// install → golden; install again → same bytes, nothing changed; uninstall → the node as before.
fn containerd_round_trip(fixture_name: &str, golden: &str) {
    let node = Node::new();
    let original = node.put_fixture(CONTAINERD_CONFIG, fixture_name);
    std::fs::set_permissions(
        node.on_host(CONTAINERD_CONFIG),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let before = node.snapshot();

    let out = node.install(&["--cri", "containerd"]);
    assert!(out.contains(&format!("created {BINARY}")), "{out}");
    assert!(
        out.contains(&format!(
            "backed up {CONTAINERD_CONFIG} to {CONTAINERD_CONFIG}.strict-supplementalgroups.bak"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("updated {CONTAINERD_CONFIG}")),
        "{out}"
    );
    assert!(
        out.contains("not restarting containerd (--no-restart)"),
        "{out}"
    );
    let installed = node.read(CONTAINERD_CONFIG).unwrap();
    assert_golden(golden, &installed);
    assert_eq!(
        node.read(&format!(
            "{CONTAINERD_CONFIG}.strict-supplementalgroups.bak"
        )),
        Some(original.clone())
    );
    let mode = std::fs::metadata(node.on_host(CONTAINERD_CONFIG))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600, "the config keeps its mode");
    assert_eq!(
        std::fs::metadata(node.on_host(BINARY))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    let after_first = node.snapshot();
    let out = node.install(&["--cri", "containerd"]);
    assert!(
        out.contains(&format!("unchanged {CONTAINERD_CONFIG}")),
        "{out}"
    );
    assert!(out.contains(&format!("unchanged {BINARY}")), "{out}");
    let after_second = node.snapshot();
    assert_eq!(
        after_first.keys().collect::<Vec<_>>(),
        after_second.keys().collect::<Vec<_>>()
    );
    for (path, content) in &after_first {
        // The record notes the pending restart in both runs; every other byte is the same.
        assert_eq!(content, &after_second[path], "{} changed", path.display());
    }

    let out = node.uninstall(&["--no-restart"]);
    assert!(
        out.contains(&format!(
            "out of {CONTAINERD_CONFIG} (containerd config): it is byte for byte as before install"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("remove {BINARY}")), "{out}");
    assert_eq!(
        node.snapshot(),
        before,
        "uninstall must leave the node as it was"
    );
    assert_eq!(node.read(CONTAINERD_CONFIG), Some(original));

    // A second uninstall finds nothing to do.
    let out = node.uninstall(&["--no-restart"]);
    assert!(out.contains("nothing to uninstall"), "{out}");
}

#[test]
fn containerd_1_6_default_config() {
    containerd_round_trip(
        "containerd-1.6.20-default.toml",
        "containerd-1.6.20-default.installed.toml",
    );
}

#[test]
fn containerd_hand_commented_config() {
    containerd_round_trip(
        "containerd-commented.toml",
        "containerd-commented.installed.toml",
    );
    // The systemd cgroup driver of runc is carried over (kubelet and runtime must agree).
    let golden =
        std::fs::read_to_string(fixture("golden/containerd-commented.installed.toml")).unwrap();
    let doc: toml_edit::DocumentMut = golden.parse().unwrap();
    let ours = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["strict-supplementalgroups"];
    assert_eq!(ours["options"]["SystemdCgroup"].as_bool(), Some(true));
    assert_eq!(ours["options"]["BinaryName"].as_str(), Some(BINARY));
    assert!(golden.contains("oom_score = -999   # keep containerd alive under memory pressure"));
}

#[test]
fn containerd_version_3_config() {
    containerd_round_trip("containerd-v3.toml", "containerd-v3.installed.toml");
    // containerd 2.x: the handler lives in a drop-in of ours that config.toml imports.
    let node = Node::new();
    node.put_fixture(CONTAINERD_CONFIG, "containerd-v3.toml");
    let out = node.install(&["--cri", "containerd"]);
    assert!(out.contains("assuming the 2.x line"), "{out}");
    let dropin = "/etc/containerd/conf.d/99-strict-supplementalgroups.toml";
    let text = String::from_utf8(node.read(dropin).unwrap()).unwrap();
    assert_golden("containerd-v3.dropin.toml", text.as_bytes());
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let ours = &doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["strict-supplementalgroups"];
    assert_eq!(ours["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(ours["options"]["SystemdCgroup"].as_bool(), Some(true));
    let main = String::from_utf8(node.read(CONTAINERD_CONFIG).unwrap()).unwrap();
    let main: toml_edit::DocumentMut = main.parse().unwrap();
    assert_eq!(
        main["imports"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>(),
        [dropin]
    );
    assert!(
        main["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]
            .get("strict-supplementalgroups")
            .is_none(),
        "config.toml itself is not given the table"
    );
}

#[test]
fn containerd_without_config_file() {
    let node = Node::new();
    node.put("/etc/containerd/.keep", b"");
    let before = node.snapshot();
    let out = node.install(&["--cri", "containerd"]);
    assert!(
        out.contains(&format!("created {CONTAINERD_CONFIG}")),
        "{out}"
    );
    assert!(!out.contains("backed up"), "{out}");
    let written = node.read(CONTAINERD_CONFIG).unwrap();
    assert_golden("containerd-absent.installed.toml", &written);
    node.install(&["--cri", "containerd"]);
    assert_eq!(node.read(CONTAINERD_CONFIG).unwrap(), written);
    let out = node.uninstall(&["--no-restart"]);
    assert!(
        out.contains(&format!("remove {CONTAINERD_CONFIG}")),
        "{out}"
    );
    assert_eq!(node.snapshot(), before);
}

#[test]
fn crio_dropin_beside_an_existing_config() {
    let node = Node::new();
    node.put_fixture("/etc/crio/crio.conf", "crio/crio.conf");
    node.put_fixture(
        "/etc/crio/crio.conf.d/10-crio.conf",
        "crio/crio.conf.d/10-crio.conf",
    );
    let before = node.snapshot();
    let out = node.install(&["--cri", "crio"]);
    let dropin = "/etc/crio/crio.conf.d/99-strict-supplementalgroups.conf";
    assert!(out.contains(&format!("created {dropin}")), "{out}");
    assert!(
        out.contains("conmon /usr/libexec/crio/conmon as in /etc/crio/crio.conf.d/10-crio.conf"),
        "{out}"
    );
    assert_golden(
        "crio-99-strict-supplementalgroups.conf",
        &node.read(dropin).unwrap(),
    );
    // CRI-O's own files are only read.
    for file in ["/etc/crio/crio.conf", "/etc/crio/crio.conf.d/10-crio.conf"] {
        let rel = PathBuf::from(file.trim_start_matches('/'));
        assert_eq!(node.snapshot()[&rel], before[&rel]);
    }
    let first = node.read(dropin).unwrap();
    let out = node.install(&["--cri", "crio"]);
    assert!(out.contains(&format!("unchanged {dropin}")), "{out}");
    assert_eq!(node.read(dropin).unwrap(), first);
    node.uninstall(&["--no-restart"]);
    assert_eq!(node.snapshot(), before);
}

#[test]
fn crio_without_conmon_anywhere_leaves_monitor_path_out() {
    let node = Node::new();
    node.put(
        "/etc/crio/crio.conf",
        b"[crio.runtime]\ncgroup_manager = \"cgroupfs\"\n",
    );
    let out = node.install(&["--cri", "crio", "--handler-name", "strict"]);
    assert!(out.contains("no conmon found"), "{out}");
    let text =
        String::from_utf8(node.read("/etc/crio/crio.conf.d/99-strict.conf").unwrap()).unwrap();
    assert!(text.contains("[crio.runtime.runtimes.strict]"), "{text}");
    assert!(!text.contains("monitor_path"), "{text}");

    // Found in the usual place once conmon is there.
    node.put("/usr/bin/conmon", b"");
    let out = node.install(&["--cri", "crio", "--handler-name", "strict"]);
    assert!(out.contains("conmon /usr/bin/conmon found"), "{out}");
    let text =
        String::from_utf8(node.read("/etc/crio/crio.conf.d/99-strict.conf").unwrap()).unwrap();
    assert!(
        text.contains("monitor_path = \"/usr/bin/conmon\""),
        "{text}"
    );
}

#[test]
fn malformed_toml_is_refused_and_nothing_is_written() {
    let cases: [(&str, &[u8], &[&str], &str); 4] = [
        (
            CONTAINERD_CONFIG,
            b"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"\n",
            &["--cri", "containerd"],
            "containerd config /etc/containerd/config.toml: not valid TOML",
        ),
        (
            CONTAINERD_CONFIG,
            b"# docker's containerd.io package\ndisabled_plugins = [\"cri\"]\n",
            &["--cri", "containerd"],
            "no `version` key",
        ),
        (
            "/etc/crio/crio.conf.d/10-crio.conf",
            b"[crio.runtime\n",
            &["--cri", "crio"],
            "/etc/crio/crio.conf.d/10-crio.conf: not valid TOML",
        ),
        (
            "/etc/unused",
            b"",
            &["--cri", "containerd", "--runtime-config", "MALFORMED"],
            "refused by the runtime's own parser",
        ),
    ];
    for (path, content, args, message) in cases {
        let node = Node::new();
        node.put(path, content);
        let bad_runtime_config = node.dir.path().join("bad-config.toml");
        std::fs::write(&bad_runtime_config, "kubelet-url = \n").unwrap();
        let args: Vec<&str> = args
            .iter()
            .map(|a| {
                if *a == "MALFORMED" {
                    bad_runtime_config.to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();
        let before = node.snapshot();
        let stderr = failed(node.try_install(&args));
        assert!(stderr.contains(message), "{path}: {stderr}");
        assert_eq!(node.snapshot(), before, "{path}: nothing may be written");
    }
}

#[test]
fn restart_runs_only_when_the_cri_config_changes() {
    let node = Node::new();
    node.put_fixture(CONTAINERD_CONFIG, "containerd-commented.toml");
    let log = node.dir.path().join("restarts.log");
    let restart = format!(
        "/bin/sh -c 'echo \"$0 $1\" >> {}' restart {{unit}}",
        log.display()
    );
    let install = |extra: &[&str]| ok(node.restarting_install(&restart, extra).output().unwrap());
    let restarts = || std::fs::read_to_string(&log).unwrap_or_default();

    let out = install(&[]);
    assert!(out.contains("restarting containerd: /bin/sh -c"), "{out}");
    assert!(out.contains("restarted containerd"), "{out}");
    assert_eq!(restarts(), "restart containerd\n");

    let out = install(&[]);
    assert!(
        out.contains("nothing changed; containerd not restarted"),
        "{out}"
    );
    assert_eq!(restarts(), "restart containerd\n");

    // A new binary needs no restart: the shim runs the binary afresh for every container.
    std::fs::write(node.runtime(), b"#!/bin/sh\necho fake runtime v2\n").unwrap();
    let out = install(&[]);
    assert!(out.contains(&format!("updated {BINARY}")), "{out}");
    assert!(out.contains("containerd not restarted"), "{out}");
    assert_eq!(restarts(), "restart containerd\n");

    let out = ok(node.installer(&[
        "uninstall",
        "--no-verify",
        "--restart-command",
        &restart,
        "--cri-unit",
        "containerd.service",
    ]));
    assert!(out.contains("restarted containerd"), "{out}");
    assert_eq!(
        restarts(),
        "restart containerd\nrestart containerd.service\n"
    );
}

#[test]
fn a_failed_restart_rolls_the_cri_config_back() {
    let node = Node::new();
    let original = node.put_fixture(CONTAINERD_CONFIG, "containerd-1.6.20-default.toml");
    let stderr = failed(
        node.restarting_install("/bin/false {unit}", &[])
            .output()
            .unwrap(),
    );
    assert!(stderr.contains("restarting containerd failed"), "{stderr}");
    assert!(stderr.contains("ROLLBACK FAILED"), "{stderr}");
    // Never half-installed: containerd's config is what it was.
    assert_eq!(node.read(CONTAINERD_CONFIG), Some(original.clone()));
    let record = String::from_utf8(node.read(RECORD).unwrap()).unwrap();
    assert!(record.contains("\"restart-pending\": true"), "{record}");

    let out = ok(node
        .restarting_install("/bin/true {unit}", &[])
        .output()
        .unwrap());
    assert!(
        out.contains(&format!("updated {CONTAINERD_CONFIG}")),
        "{out}"
    );
    assert!(out.contains("restarted containerd"), "{out}");
    let record = String::from_utf8(node.read(RECORD).unwrap()).unwrap();
    assert!(record.contains("\"restart-pending\": false"), "{record}");
}

#[test]
fn uninstall_keeps_edits_made_after_install() {
    let node = Node::new();
    let original = node.put_fixture(CONTAINERD_CONFIG, "containerd-commented.toml");
    node.install(&["--cri", "containerd"]);
    let mut edited = node.read(CONTAINERD_CONFIG).unwrap();
    edited.extend_from_slice(b"\n# OPS-1500: debug logging\n[debug]\n  level = \"debug\"\n");
    node.put(CONTAINERD_CONFIG, &edited);

    let out = node.uninstall(&["--no-restart"]);
    assert!(
        out.contains("it changed since install, and only what install added is taken out"),
        "{out}"
    );
    let after = String::from_utf8(node.read(CONTAINERD_CONFIG).unwrap()).unwrap();
    assert!(after.contains("OPS-1500"), "{after}");
    assert!(!after.contains("strict-supplementalgroups"), "{after}");
    let mut expected = original.clone();
    expected.extend_from_slice(b"\n# OPS-1500: debug logging\n[debug]\n  level = \"debug\"\n");
    assert_eq!(after.as_bytes(), expected.as_slice());
    // The backup stays for the admin.
    assert_eq!(
        node.read(&format!(
            "{CONTAINERD_CONFIG}.strict-supplementalgroups.bak"
        )),
        Some(original)
    );
}

#[test]
fn runtime_config_and_names_are_configurable_and_restored() {
    let node = Node::new();
    node.put("/etc/containerd/config.toml", b"version = 2\n");
    let old_config = b"# hand-written earlier\nunmanaged = \"deny\"\n";
    node.put(
        "/etc/strict-supplementalgroups-container-runtime/config.toml",
        old_config,
    );
    let before = node.snapshot();
    let new_config = node.dir.path().join("config.toml");
    std::fs::write(&new_config, "pod-groups-source = \"kubelet\"\n").unwrap();
    let out = node.install(&[
        "--cri",
        "containerd",
        "--handler-name",
        "strict",
        "--runtime-path",
        "/opt/bin/strict-rt",
        "--runtime-config",
        new_config.to_str().unwrap(),
    ]);
    assert!(
        out.contains("backed up /etc/strict-supplementalgroups-container-runtime/config.toml"),
        "{out}"
    );
    assert_eq!(
        node.read("/etc/strict-supplementalgroups-container-runtime/config.toml"),
        Some(b"pod-groups-source = \"kubelet\"\n".to_vec())
    );
    assert!(node.read("/opt/bin/strict-rt").is_some());
    let text = String::from_utf8(node.read(CONTAINERD_CONFIG).unwrap()).unwrap();
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let ours = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["strict"];
    assert_eq!(
        ours["options"]["BinaryName"].as_str(),
        Some("/opt/bin/strict-rt")
    );

    // A different handler name: the old install is reversed first, then the new one made.
    let out = node.install(&["--cri", "containerd", "--handler-name", "strict2"]);
    assert!(out.contains("reversing it first"), "{out}");
    let text = String::from_utf8(node.read(CONTAINERD_CONFIG).unwrap()).unwrap();
    assert!(text.contains("runtimes.strict2]"), "{text}");
    assert!(!text.contains("runtimes.strict]"), "{text}");
    assert!(node.read("/opt/bin/strict-rt").is_none());
    assert_eq!(
        node.read("/etc/strict-supplementalgroups-container-runtime/config.toml"),
        Some(old_config.to_vec())
    );

    node.uninstall(&["--no-restart"]);
    assert_eq!(node.snapshot(), before);
}

#[test]
fn dry_run_changes_nothing() {
    let node = Node::new();
    node.put_fixture(CONTAINERD_CONFIG, "containerd-1.6.20-default.toml");
    let before = node.snapshot();
    let out = node.install(&["--cri", "containerd", "--dry-run"]);
    assert!(
        out.contains(&format!("would update {CONTAINERD_CONFIG}")),
        "{out}"
    );
    assert!(out.contains("would restart containerd"), "{out}");
    assert_eq!(node.snapshot(), before);
}

#[test]
fn auto_detects_the_cri_by_its_socket() {
    let node = Node::new();
    // Both configs present; only containerd's socket.
    node.put("/etc/crio/crio.conf", b"");
    node.put(CONTAINERD_CONFIG, b"version = 2\n");
    std::fs::create_dir_all(node.on_host("/run/containerd")).unwrap();
    let _socket =
        std::os::unix::net::UnixListener::bind(node.on_host("/run/containerd/containerd.sock"))
            .unwrap();
    let out = node.install(&[]);
    assert!(out.contains("install for containerd"), "{out}");

    let none = Node::new();
    let stderr = failed(none.try_install(&[]));
    assert!(
        stderr.contains("pass --cri containerd or --cri crio"),
        "{stderr}"
    );
}

#[test]
fn refuses_bad_handler_names_and_symlinked_configs() {
    let node = Node::new();
    let stderr = failed(node.installer(&["install", "--handler-name", "Strict_Groups"]));
    assert!(stderr.contains("must be a DNS label"), "{stderr}");

    node.put("/elsewhere/config.toml", b"version = 2\n");
    std::fs::create_dir_all(node.on_host("/etc/containerd")).unwrap();
    std::os::unix::fs::symlink("/elsewhere/config.toml", node.on_host(CONTAINERD_CONFIG)).unwrap();
    let stderr = failed(node.try_install(&["--cri", "containerd"]));
    assert!(stderr.contains("is a symlink"), "{stderr}");
    assert!(node.read(BINARY).is_none());
}

#[test]
fn installs_the_runtime_built_beside_it_by_default() {
    let node = Node::new();
    let out = ok(node.installer(&["install", "--cri", "containerd", "--no-restart"]));
    let runtime = runtime_binary();
    assert!(out.contains(&format!("from {runtime}")), "{out}");
    assert_eq!(node.read(BINARY).unwrap(), std::fs::read(&runtime).unwrap());
}

/// The DaemonSet's own arguments (deploy/base/daemonset.yaml), with the in-pod paths pointed
/// at the test's files.
fn daemonset_args(node: &Node, ready: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/daemonset.yaml"),
    )
    .unwrap();
    let ds: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let config = node.dir.path().join("runtime-config.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/config.toml"),
        &config,
    )
    .unwrap();
    let mut args = Vec::new();
    for arg in ds["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
    {
        let arg = arg.as_str().unwrap();
        let (flag, _) = arg.split_once('=').unwrap_or((arg, ""));
        args.push(match flag {
            "--cri" => "--cri=containerd".to_owned(),
            "--host-root" => format!("--host-root={}", node.host().display()),
            "--runtime-config" => format!("--runtime-config={}", config.display()),
            "--ready-file" => format!("--ready-file={}", ready.display()),
            _ => arg.to_owned(),
        });
    }
    args.extend([
        "--no-restart".to_owned(),
        format!("--runtime-binary={}", node.runtime().display()),
    ]);
    args
}

/// An upgrade, a ConfigMap change, `kubectl delete pod` and a drain all end the installer pod
/// with SIGTERM: none of them may uninstall (each would cost two CRI restarts, and in between
/// the shims of running pods would call a runtime binary that is gone).
/// Failed before the fix: the DaemonSet ran with --uninstall-on-exit.
#[test]
fn a_sigterm_to_the_daemonset_pod_changes_nothing() {
    let node = Node::new();
    let original = node.put_fixture(CONTAINERD_CONFIG, "containerd-1.6.20-default.toml");
    let ready = node.dir.path().join("ready");
    let stdout_path = node.dir.path().join("stdout");
    let args = daemonset_args(&node, &ready);
    let mut child = Command::new(INSTALLER)
        .args(&args)
        .env_remove("NODE_NAME")
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "installer exited early: {}",
            std::fs::read_to_string(&stdout_path).unwrap()
        );
        assert!(Instant::now() < deadline, "never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let installed = node.snapshot();
    assert!(node.read(BINARY).is_some());
    assert_ne!(node.read(CONTAINERD_CONFIG).unwrap(), original);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    assert!(status.success(), "{status}: {stdout}");
    assert!(stdout.contains("received SIGTERM"), "{stdout}");
    assert!(!ready.exists());
    assert_eq!(
        node.snapshot(),
        installed,
        "the node stays installed: {stdout}"
    );

    // The replacement pod (same inputs) finds everything in place and changes nothing.
    let ready2 = node.dir.path().join("ready2");
    let mut args = daemonset_args(&node, &ready2);
    args.retain(|a| a != "--wait" && !a.starts_with("--ready-file"));
    let out = ok(Command::new(INSTALLER)
        .args(&args)
        .env_remove("NODE_NAME")
        .output()
        .unwrap());
    assert!(
        !out.contains("updated") && !out.contains("created"),
        "{out}"
    );
    assert_eq!(node.snapshot(), installed);
}

/// maxSurge, or a pod replaced while the old one still runs: two installers on one node. The
/// second waits for the first's lock instead of editing and restarting in between.
/// Failed before the fix: the second ran straight through during the first's restart.
#[test]
fn two_installers_on_one_node_take_turns() {
    let node = Node::new();
    node.put_fixture(CONTAINERD_CONFIG, "containerd-1.6.20-default.toml");
    let marks = node.dir.path().join("marks");
    let restart = format!(
        "/bin/sh -c 'echo started >> {m}; sleep 2; echo ended >> {m}' restart {{unit}}",
        m = marks.display()
    );
    let first = node
        .restarting_install(&restart, &[])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&marks)
        .unwrap_or_default()
        .contains("started")
    {
        assert!(Instant::now() < deadline, "the first never restarted");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = node.install(&["--cri", "containerd", "--no-verify"]);
    let marks_now = std::fs::read_to_string(&marks).unwrap();
    assert!(
        marks_now.contains("ended"),
        "the second installer ran during the first one's restart:\n{second}"
    );
    assert!(
        second.contains("another installer is working on this node"),
        "{second}"
    );
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success());
}

/// Reproduced: the NVIDIA toolkit adds `runtimes.nvidia` after our install, the installer pod
/// restarts (re-recording the file), and uninstall restored the stale backup: nvidia was lost.
/// Uninstall takes out only what install added.
#[test]
fn uninstall_keeps_a_runtime_added_after_install() {
    let node = Node::new();
    let original = node.put_fixture(CONTAINERD_CONFIG, "containerd-1.6.20-default.toml");
    node.install(&["--cri", "containerd"]);
    let mut edited = node.read(CONTAINERD_CONFIG).unwrap();
    edited.extend_from_slice(
        b"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n  runtime_type = \"io.containerd.runc.v2\"\n",
    );
    node.put(CONTAINERD_CONFIG, &edited);
    // The installer pod restarts: everything is in place.
    let out = node.install(&["--cri", "containerd"]);
    assert!(
        out.contains(&format!("unchanged {CONTAINERD_CONFIG}")),
        "{out}"
    );

    node.uninstall(&["--no-restart"]);
    let after = String::from_utf8(node.read(CONTAINERD_CONFIG).unwrap()).unwrap();
    assert!(after.contains("runtimes.nvidia]"), "{after}");
    assert!(!after.contains("strict-supplementalgroups"), "{after}");
    let mut expected = original.clone();
    expected.extend_from_slice(
        b"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n  runtime_type = \"io.containerd.runc.v2\"\n",
    );
    assert_eq!(after.as_bytes(), expected.as_slice());
}

/// A ConfigMap with a typo never reaches the node (the runtime's own parser refuses it: before
/// the fix it was installed and every new pod failed), and a good change is written without
/// touching the binary or restarting the CRI.
#[test]
fn runtime_config_is_validated_and_a_change_restarts_nothing() {
    let node = Node::new();
    node.put(CONTAINERD_CONFIG, b"version = 2\n");
    let log = node.dir.path().join("restarts.log");
    let restart = format!("/bin/sh -c 'echo restart >> {}'", log.display());
    let config = node.dir.path().join("config.toml");
    let install = |config_text: &str| {
        std::fs::write(&config, config_text).unwrap();
        node.restarting_install(&restart, &["--runtime-config", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    ok(install("pod-groups-source = \"kubelet\"\n"));
    let restarts = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(restarts(), 1);
    let binary = node.on_host(BINARY);
    let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&binary).unwrap());
    let first_inode = inode();
    let before = node.snapshot();

    let stderr = failed(install(
        "pod-groups-source = \"kubelet\"\nkubelet-urll = \"https://x\"\n",
    ));
    assert!(
        stderr.contains("refused by the runtime's own parser"),
        "{stderr}"
    );
    assert!(stderr.contains("kubelet-urll"), "{stderr}");
    assert_eq!(node.snapshot(), before, "nothing changed on the node");

    let out = ok(install(
        "pod-groups-source = \"kubelet\"\nunmanaged = \"deny\"\n",
    ));
    assert!(
        out.contains("updated /etc/strict-supplementalgroups-container-runtime/config.toml"),
        "{out}"
    );
    assert!(out.contains(&format!("unchanged {BINARY}")), "{out}");
    assert_eq!(restarts(), 1, "no CRI restart for a runtime config change");
    assert_eq!(inode(), first_inode, "the binary is not rewritten");
}
