//! The installer's output, read by a real containerd (Debian's 1.6.20: `apt-get install
//! containerd`). A private instance (own root, state and socket, from test-support's launcher)
//! starts on the config the installer merged into `containerd config default`; containerd's
//! own parser and the CRI plugin must then know the handler and its BinaryName.
//!
//! The installer runs with `--host-root /` on paths inside a temp dir and with `--no-restart`
//! (this machine has no systemd; the private containerd is started on the result instead).

use std::path::Path;
use std::process::Command;

use test_support::containerd::{Containerd, ContainerdOptions};

const INSTALLER: &str = env!("CARGO_BIN_EXE_strict-supplementalgroups-installer");
fn runtime_binary() -> String {
    test_support::binaries::runtime()
        .expect("the runtime binary")
        .display()
        .to_string()
}
const HANDLER: &str = "strict-supplementalgroups";

fn run(args: &[&str]) -> String {
    let out = Command::new(INSTALLER).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "installer {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_real_containerd_loads_the_registered_handler() {
    assert!(
        Path::new("/usr/bin/containerd").exists(),
        "this test needs containerd (Debian: apt-get install containerd)"
    );
    test_support::process::become_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("etc/containerd/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let default = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/containerd-1.6.20-default.toml"),
    )
    .unwrap();
    std::fs::write(&config, &default).unwrap();
    let binary = dir
        .path()
        .join("bin/strict-supplementalgroups-container-runtime");
    let state = dir.path().join("state");
    let common = [
        "--host-root",
        "/",
        "--state-dir",
        state.to_str().unwrap(),
        "--no-restart",
    ];

    let runtime = runtime_binary();
    let mut install = vec![
        "install",
        "--cri",
        "containerd",
        "--runtime-binary",
        &runtime,
        "--runtime-path",
        binary.to_str().unwrap(),
        "--containerd-config",
        config.to_str().unwrap(),
    ];
    install.extend(common);
    run(&install);
    let installed = std::fs::read_to_string(&config).unwrap();

    let containerd = Containerd::start(ContainerdOptions::new(installed)).unwrap();

    // containerd's own reading of the file it runs on.
    let dump = Command::new("/usr/bin/containerd")
        .arg("--config")
        .arg(containerd.config_path())
        .args(["config", "dump"])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dumped: toml_edit::DocumentMut = String::from_utf8(dump.stdout).unwrap().parse().unwrap();
    let runtimes = &dumped["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
    assert_eq!(
        runtimes[HANDLER]["runtime_type"].as_str(),
        Some("io.containerd.runc.v2")
    );
    assert_eq!(
        runtimes[HANDLER]["options"]["BinaryName"].as_str(),
        binary.to_str()
    );
    assert!(
        runtimes.get("runc").is_some(),
        "the default runtime is still there"
    );

    // The CRI plugin loaded, with our handler among its runtimes.
    let plugins = containerd.ctr_ok(&["plugins", "ls"]).unwrap();
    assert!(
        plugins.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"io.containerd.grpc.v1")
                && f.get(1) == Some(&"cri")
                && f.last() == Some(&"ok")
        }),
        "the cri plugin is not ok:\n{plugins}"
    );
    let log = std::fs::read_to_string(containerd.log_path()).unwrap();
    let cri_config = log
        .lines()
        .find(|l| l.contains("Start cri plugin with config"))
        .unwrap_or_else(|| panic!("the CRI plugin did not start:\n{}", containerd.log_tail(40)));
    assert!(
        cri_config.contains(&format!("{HANDLER}:{{Type:io.containerd.runc.v2")),
        "{cri_config}"
    );
    assert!(
        cri_config.contains(&format!("BinaryName:{}", binary.display())),
        "{cri_config}"
    );
    containerd.stop().unwrap();

    // Uninstall gives containerd its original file back.
    let mut uninstall = vec!["uninstall"];
    uninstall.extend(common);
    run(&uninstall);
    assert_eq!(std::fs::read(&config).unwrap(), default);
    assert!(!binary.exists());
    assert!(!state.exists());
}
