//! The CRI-O-style path: podman 4.3 runs the runtime through conmon exactly as CRI-O does
//! (conmon runs `create` and `exec`, the engine runs `start`, `kill`, `delete`), with CRI-O's
//! pod annotations on the container.
//!
//! Podman's config and storage live in this run's work dir (`CONTAINERS_CONF`,
//! `CONTAINERS_STORAGE_CONF`, `CONTAINERS_REGISTRIES_CONF`, `--root`, `--runroot`, `--tmpdir`),
//! so the host's podman setup is never read or touched.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use test_support::containerd::{remove_cgroup_tree, unmount_under};
use test_support::process::Outcome;

use crate::containerd_suite::FAIL_CLOSED_TEXT;
use crate::cri::PodDecl;
use crate::groups::{self, show};
use crate::images::BYPASS_REF;
use crate::pods::{PodSource, toml_str};
use crate::report::Report;
use crate::runtime_config::RuntimeConfig;
use crate::{Harness, audit, proc};

const SUITE: &str = "podman+conmon";
const NAMESPACE: &str = "e2e-tenant";
const TIMEOUT: Duration = Duration::from_secs(60);

struct Podman {
    dir: PathBuf,
    runtime: PathBuf,
    env: Vec<(String, String)>,
    cgroup_parent: String,
}

impl Podman {
    /// Writes containers.conf, storage.conf and registries.conf for a private podman.
    fn setup(h: &Harness, dir: &Path, runtime_config: &Path) -> Result<Self> {
        for sub in ["storage", "run", "tmp", "networks", "hooks", "volumes"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let p = |s: &str| toml_str(&dir.join(s).display().to_string());
        let runtime_name = h
            .runtime
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // conmon runs the runtime with exactly the environment podman gives it:
        // `conmon_env_vars`. The runtime's config file variable must travel that way (CRI-O's
        // equivalent is `conmon_env`).
        let containers_conf = format!(
            r#"[containers]
# root lacks CAP_SYS_RESOURCE here: podman's default 1048576 would fail with EPERM
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = {events}
tmp_dir = {tmp}
volume_path = {volumes}
conmon_path = ["/usr/bin/conmon"]
conmon_env_vars = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", {env}]
hooks_dir = [{hooks}]
# podman passes --log-format=json --log to a runtime only when its name is listed here
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", {name}]

[network]
network_config_dir = {networks}
"#,
            events = p("events.log"),
            tmp = p("tmp"),
            volumes = p("volumes"),
            env = toml_str(&format!(
                "STRICT_SUPPLEMENTALGROUPS_CONFIG={}",
                runtime_config.display()
            )),
            hooks = p("hooks"),
            name = toml_str(&runtime_name),
            networks = p("networks"),
        );
        std::fs::write(dir.join("containers.conf"), containers_conf)?;
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = {}\nrunroot = {}\n",
                p("storage"),
                p("run")
            ),
        )?;
        std::fs::write(
            dir.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )?;
        let env = vec![
            (
                "CONTAINERS_CONF".to_owned(),
                dir.join("containers.conf").display().to_string(),
            ),
            (
                "CONTAINERS_STORAGE_CONF".to_owned(),
                dir.join("storage.conf").display().to_string(),
            ),
            (
                "CONTAINERS_REGISTRIES_CONF".to_owned(),
                dir.join("registries.conf").display().to_string(),
            ),
            (
                "STRICT_SUPPLEMENTALGROUPS_CONFIG".to_owned(),
                runtime_config.display().to_string(),
            ),
        ];
        Ok(Self {
            dir: dir.to_path_buf(),
            runtime: h.runtime.clone(),
            env,
            cgroup_parent: format!("/strict-sg-e2e-{}-podman", h.run_id),
        })
    }

    /// `podman <private-storage flags> --runtime <binary> <args>`.
    fn run(&self, args: &[&str]) -> Result<Outcome> {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .arg("--cgroup-manager")
            .arg("cgroupfs")
            .arg("--events-backend")
            .arg("file")
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args)
            .env_remove("CONTAINER_HOST")
            .env_remove("CONTAINER_CONNECTION");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        proc::run(&mut cmd, TIMEOUT)
    }

    fn run_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.success() {
            bail!(
                "podman {} failed ({:?}): {}",
                args.join(" "),
                out.code,
                out.stderr.trim()
            );
        }
        Ok(out.stdout)
    }

    /// `podman run -d` of the bypass image as `--user 1000` with CRI-O's annotations for `pod`
    /// and its supplementalGroups as `--group-add` (what CRI-O puts in the spec).
    fn run_pod_container(&self, name: &str, pod: &PodDecl) -> Result<Outcome> {
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            name,
            "--network=host",
            "--user",
            "1000",
            "--cgroup-parent",
            &self.cgroup_parent,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for g in pod.cri_supplemental_groups() {
            args.extend(["--group-add".to_owned(), g.to_string()]);
        }
        for (k, v) in [
            ("io.kubernetes.pod.namespace", pod.namespace.as_str()),
            ("io.kubernetes.pod.name", pod.name.as_str()),
            ("io.kubernetes.pod.uid", pod.uid.as_str()),
            ("io.kubernetes.container.name", "app"),
            ("io.kubernetes.cri-o.ContainerType", "container"),
        ] {
            args.extend(["--annotation".to_owned(), format!("{k}={v}")]);
        }
        args.extend([
            BYPASS_REF.to_owned(),
            "sh".to_owned(),
            "-c".to_owned(),
            "id; exec sleep 3600".to_owned(),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&refs)
    }

    /// Removes every container of this private podman, then whatever is left of it: conmon
    /// processes, mounts, the cgroup parent.
    fn teardown(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.run_ok(&["rm", "-f", "-a", "-t", "0"]) {
            problems.push(format!("{e:#}"));
        }
        let dir = self.dir.display().to_string();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                // conmon writes the exit file and leaves on its own shortly after `rm`
                // returns; only one that outlives a grace period is a leftover.
                if cmdline.starts_with("/usr/bin/conmon")
                    && cmdline.contains(&dir)
                    && test_support::process::wait_gone(pid, Duration::from_secs(5)).is_err()
                {
                    problems.push(format!("conmon {pid} was still running"));
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    let _ = test_support::process::wait_gone(pid, Duration::from_secs(5));
                }
            }
        }
        if let Err(e) = remove_cgroup_tree(&self.cgroup_parent) {
            problems.push(format!("{e:#}"));
        }
        if let Err(e) = unmount_under(&self.dir) {
            problems.push(format!("{e:#}"));
        }
        proc::reap_orphans(&[]);
        problems
    }
}

pub async fn run(h: &Harness, source: &mut PodSource, report: &mut Report) -> Result<()> {
    let t = Instant::now();
    let dir = h.work.join("podman");
    std::fs::create_dir_all(&dir)?;
    let audit_log = dir.join("runtime.log");
    let runtime_config = RuntimeConfig::write(&dir, source, &audit_log)?;
    let podman = Podman::setup(h, &dir, runtime_config.path())?;
    let mut pod = PodDecl::new(NAMESPACE, "podman-pod", &format!("podman-pod-{}", h.run_id));
    pod.supplemental_groups = vec![60000];
    let unknown = PodDecl {
        name: "podman-unknown".into(),
        uid: format!("podman-unknown-{}", h.run_id),
        ..pod.clone()
    };
    source.set_pods(std::slice::from_ref(&pod))?;
    let setup = podman
        .run_ok(&["load", "-q", "-i", &h.images.bypass.display().to_string()])
        .and_then(|_| podman.run_ok(&["version", "--format", "{{.Client.Version}}"]));
    match setup {
        Ok(version) => report.add(
            SUITE,
            "setup: private podman storage + config",
            "bypass image loaded; podman uses only the run's config",
            format!("podman {}; pods from {}", version.trim(), source.describe()),
            true,
            t,
        ),
        Err(e) => {
            report.fail(SUITE, "setup: private podman storage + config", &e, t);
            let problems = podman.teardown();
            if !problems.is_empty() {
                eprintln!("podman teardown: {}", problems.join("; "));
            }
            return Ok(());
        }
    }

    let name = format!("sg-e2e-{}", h.run_id);
    scenarios(&podman, &name, &pod, &unknown, &audit_log, report);

    let t = Instant::now();
    let problems = podman.teardown();
    report.add(
        SUITE,
        "teardown: no containers, conmon, mounts or cgroups left",
        "clean",
        if problems.is_empty() {
            "clean".to_owned()
        } else {
            problems.join("; ")
        },
        problems.is_empty(),
        t,
    );
    Ok(())
}

fn scenarios(
    podman: &Podman,
    name: &str,
    pod: &PodDecl,
    unknown: &PodDecl,
    audit_log: &Path,
    report: &mut Report,
) {
    // 1. The container runs enforced: conmon ran `create` with podman's merged groups.
    let t = Instant::now();
    let want_run = [1000u32, 60000];
    let started = podman.run_pod_container(name, pod);
    let mut id = String::new();
    let (ran, got) = match &started {
        Ok(out) if out.success() => {
            id = out.stdout.trim().to_owned();
            let line = wait_for_id_line(podman, name);
            let seen = line.as_deref().and_then(groups::from_id_output);
            let decision = audit::decisions(audit_log, &id, "create");
            let input_had = decision
                .last()
                .is_some_and(|l| audit::gids(&l["input_gids"]).contains(&50000));
            (
                seen.as_deref() == Some(&want_run[..]) && input_had,
                format!(
                    "log: groups={}; runtime: {}",
                    seen.as_deref().map(show).unwrap_or("?".into()),
                    decision
                        .last()
                        .map(audit::summary)
                        .unwrap_or_else(|| "no create decision logged".into())
                ),
            )
        }
        Ok(out) => (false, format!("podman run failed: {}", out.stderr.trim())),
        Err(e) => (false, format!("{e:#}")),
    };
    report.add(
        SUITE,
        "podman run --user 1000 (image adds 50000), pod [60000]",
        "log: groups=1000,60000; create input had 50000",
        got,
        ran,
        t,
    );

    // 2. exec and exec -t: podman's process file has [60000, 50000] and no primary gid; the
    // runtime applies exactly that minus 50000.
    for (label, tty) in [("podman exec", false), ("podman exec -t", true)] {
        let t = Instant::now();
        let mut args = vec!["exec"];
        if tty {
            args.push("-t");
        }
        args.extend([name, "id"]);
        let before = audit::decisions(audit_log, &id, "exec").len();
        let (pass, got) = match podman.run(&args) {
            Ok(out) if out.success() => {
                let seen = groups::from_id_output(&out.stdout.replace('\r', ""));
                let decisions = audit::decisions(audit_log, &id, "exec");
                let decision = decisions.get(before);
                let filtered = decision.is_some_and(|l| {
                    audit::gids(&l["input_gids"]).contains(&50000)
                        && audit::gids(&l["kept_gids"]) == [60000]
                });
                (
                    seen.as_deref() == Some(&[60000][..]) && filtered,
                    format!(
                        "groups={}; runtime: {}",
                        seen.as_deref()
                            .map(show)
                            .unwrap_or_else(|| format!("? ({:?})", out.stdout.trim())),
                        decision
                            .map(audit::summary)
                            .unwrap_or_else(|| "no exec decision logged".into())
                    ),
                )
            }
            Ok(out) => (false, format!("exit {:?}: {}", out.code, out.stderr.trim())),
            Err(e) => (false, format!("{e:#}")),
        };
        report.add(
            SUITE,
            &format!("{label}: enforced"),
            "groups=60000: exec decision input ∋ 50000, kept exactly 60000 (podman's process \
             file names no primary gid, none is added)",
            got,
            pass,
            t,
        );
    }

    // 3. stop and rm.
    let t = Instant::now();
    let stop = podman.run_ok(&["stop", "-t", "1", name]);
    let rm = podman.run_ok(&["rm", name]);
    let listed = podman
        .run_ok(&["ps", "-a", "-q"])
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("{e:#}"));
    let pass = stop.is_ok() && rm.is_ok() && listed.is_empty();
    report.add(
        SUITE,
        "podman stop + rm",
        "both succeed; no container left",
        match (&stop, &rm) {
            (Err(e), _) | (_, Err(e)) => format!("{e:#}"),
            _ if !listed.is_empty() => format!("still listed: {listed}"),
            _ => "stopped, removed".to_owned(),
        },
        pass,
        t,
    );

    // 4. A pod the kubelet does not know: conmon reports the runtime's error.
    let t = Instant::now();
    let refused_name = format!("{name}-unknown");
    let (pass, got) = match podman.run_pod_container(&refused_name, unknown) {
        Ok(out) if !out.success() => (
            out.stderr.contains(FAIL_CLOSED_TEXT),
            crate::report::focus(out.stderr.trim(), FAIL_CLOSED_TEXT),
        ),
        Ok(_) => (false, "the container started".to_owned()),
        Err(e) => (false, format!("{e:#}")),
    };
    let _ = podman.run(&["rm", "-f", "-t", "0", &refused_name]);
    report.add(
        SUITE,
        "pod unknown to the kubelet: podman run refused",
        format!("podman run fails; error contains {FAIL_CLOSED_TEXT:?}"),
        got,
        pass,
        t,
    );
}

/// `podman logs` until the `id` line shows up.
fn wait_for_id_line(podman: &Podman, name: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(out) = podman.run(&["logs", name])
            && let Some(line) = out.stdout.lines().find(|l| l.starts_with("uid="))
        {
            return Some(line.to_owned());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
