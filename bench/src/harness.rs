//! The measured operations, driven exactly like the containerd runc shim drives a runtime:
//! `--root R --log B/log.json --log-format json <cmd> …` with the bundle as working directory,
//! stdio to files, the container's init inherited by this subreaper.
//!
//! Every measured call is checked afterwards (outside the clock): the runtime succeeded, the
//! enforced cases really rewrote config.json, the kubelet was asked exactly when a cache miss
//! was intended and never by an exec. A run that measures a no-op fails instead.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use test_support::kubelet::KubeletStandIn;
use test_support::process::{groups_of, read_pid_file, status_field};
use test_support::runtime::{Runtime, last_error_msg};

use crate::env::{ENFORCED_GIDS, GRANTED, INPUT_GIDS, PodIdentity, SpecTemplate};
use crate::proc::{Finished, run_timed, wait_exit};

/// Longest any single runtime call or container process may take before the run is failed.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// What is being measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// This runtime, a container without pod annotations (nothing to enforce).
    OursUnmanaged,
    /// This runtime, a pod container, `file` source.
    OursPodFile,
    /// This runtime, a pod container, kubelet source, a pod uid never seen (cache miss).
    OursPodKubeletFirst,
    /// This runtime, a pod container, kubelet source, a pod uid seen before (cache hit).
    OursPodKubeletCached,
    Runc,
    Youki,
    Crun,
}

impl Kind {
    pub fn enforced(self) -> bool {
        matches!(
            self,
            Kind::OursPodFile | Kind::OursPodKubeletFirst | Kind::OursPodKubeletCached
        )
    }

    /// Another runtime to compare with (its failures discard a round instead of ending the
    /// run).
    pub fn peer(self) -> bool {
        matches!(self, Kind::Runc | Kind::Youki | Kind::Crun)
    }
}

/// One runtime configuration with its own bundle directory and state root.
pub struct Case {
    pub name: String,
    pub kind: Kind,
    /// Binary, `--root`, `--log`, environment, working directory (the bundle).
    pub rt: Runtime,
    pub bundle: PathBuf,
}

impl Case {
    pub fn new(
        name: &str,
        kind: Kind,
        binary: &Path,
        work: &Path,
        env: &[(String, String)],
    ) -> Result<Self> {
        let bundle = work.join("bundles").join(name);
        let name = name.to_owned();
        std::fs::create_dir_all(&bundle)?;
        test_support::rootfs::write_busybox_rootfs(&bundle.join("rootfs"))?;
        let mut rt = Runtime::new(binary, work.join("state").join(&name))
            .with_log(bundle.join("log.json"))
            .with_cwd(&bundle);
        for (k, v) in env {
            rt = rt.with_env(k, v.clone());
        }
        Ok(Self {
            name,
            kind,
            rt,
            bundle,
        })
    }

    fn stderr_path(&self) -> PathBuf {
        self.bundle.join("runtime.stderr")
    }

    /// What a create's `--pid-file` names.
    fn init_pid_file(&self) -> PathBuf {
        self.bundle.join("init.pid")
    }

    /// What an exec's `--pid-file` names.
    fn exec_pid_file(&self) -> PathBuf {
        self.bundle.join("exec.pid")
    }

    /// The gids its containers must run with: what enforcement leaves, or all of them.
    fn want_gids(&self) -> &'static [u32] {
        if self.kind.enforced() {
            &ENFORCED_GIDS
        } else {
            &INPUT_GIDS
        }
    }

    /// Outside the clock: `config` as the bundle's config.json, no log, an empty stderr file.
    fn write_config(&self, config: &Value) -> Result<()> {
        std::fs::write(self.bundle.join("config.json"), serde_json::to_vec(config)?)
            .context("writing config.json")?;
        let _ = std::fs::remove_file(self.bundle.join("log.json"));
        File::create(self.stderr_path())?;
        Ok(())
    }
}

/// A kubelet stand-in and the pods it serves besides the measured one.
pub struct Kubelet {
    pub standin: KubeletStandIn,
    pub fillers: Vec<Value>,
    /// Pods always listed (e.g. the cached pod).
    pub fixed: Vec<Value>,
}

impl Kubelet {
    /// Serves `fillers + fixed + extra`.
    pub fn serve(&self, extra: Option<Value>) {
        let mut items = self.fillers.clone();
        items.extend(self.fixed.iter().cloned());
        items.extend(extra);
        self.standin
            .set_pods(test_support::kubelet::pod_list(items));
    }

    /// Serves `fillers + fixed` and `pod`, which grants [`GRANTED`].
    fn serve_pod(&self, pod: &PodIdentity) {
        self.serve(Some(test_support::kubelet::pod(
            &pod.namespace,
            &pod.name,
            &pod.uid,
            &[GRANTED],
            None,
        )));
    }
}

pub struct CycleSample {
    pub create: Finished,
    /// The group stage's own `elapsed_us` from the runtime's create audit line (enforced
    /// cases: identify + lookup + decide), ms.
    pub stage_ms: Option<f64>,
    pub start_ms: f64,
    pub delete_ms: f64,
    pub cycle_ms: f64,
}

pub struct OpsSample {
    pub start_ms: f64,
    pub state_ms: f64,
    pub exec_ms: f64,
    pub kill_ms: f64,
    pub delete_ms: f64,
    /// Requests the kubelet saw during the exec (must be 0).
    pub exec_requests: usize,
    /// The exec filter's own `elapsed_us` from the runtime's audit line (enforced cases), ms.
    pub exec_filter_ms: Option<f64>,
}

pub struct LookupSample {
    /// `elapsed_us` as `explain` reports it (identify + lookup + decide, in-process), in ms.
    pub lookup_ms: f64,
    /// The whole `explain` process, spawn to exit.
    pub explain_ms: f64,
}

pub struct Harness {
    pub spec: SpecTemplate,
    /// Unique per run: part of cgroup paths, pod uids, container ids.
    pub run_id: String,
    /// `/<cgroup_parent>/<id>` is every container's cgroupsPath.
    pub cgroup_parent: String,
    /// The stand-in behind the kubelet cycle cases (110 pods, like a full default node).
    pub kubelet: Option<Kubelet>,
    seq: Cell<usize>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Harness {
    pub fn new(spec: SpecTemplate, run_id: String, kubelet: Option<Kubelet>) -> Self {
        Self {
            spec,
            cgroup_parent: format!("strict-sg-bench-{run_id}"),
            run_id,
            kubelet,
            seq: Cell::new(0),
        }
    }

    fn next_seq(&self) -> usize {
        let n = self.seq.get() + 1;
        self.seq.set(n);
        n
    }

    fn requests(&self) -> usize {
        self.kubelet.as_ref().map_or(0, |k| k.standin.requests())
    }

    /// The pod a case's container belongs to for this container (`seq` unique per container).
    pub fn pod_for(&self, kind: Kind, seq: usize) -> Option<PodIdentity> {
        let (name, uid) = match kind {
            Kind::OursPodFile => ("file-pod".to_owned(), format!("{}-file", self.run_id)),
            Kind::OursPodKubeletFirst => (
                format!("first-{seq}"),
                format!("{}-first-{seq}", self.run_id),
            ),
            Kind::OursPodKubeletCached => {
                ("cached-pod".to_owned(), format!("{}-cached", self.run_id))
            }
            _ => return None,
        };
        Some(PodIdentity {
            namespace: "bench".to_owned(),
            name,
            uid,
        })
    }

    /// Outside the clock: a fresh config.json (enforcement rewrote the last one), no log, no pid
    /// files, an empty stderr file, and for a first-container case the stand-in now serving a
    /// pod nobody has seen. Returns the container id.
    fn prepare(&self, case: &Case, args: &[&str], seq: usize) -> Result<String> {
        let id = format!("sgb-{}-{seq}", case.name);
        let cgroups_path = format!("/{}/{id}", self.cgroup_parent);
        let pod = self.pod_for(case.kind, seq);
        case.write_config(&self.spec.render(args, &cgroups_path, pod.as_ref()))?;
        for f in [case.init_pid_file(), case.exec_pid_file()] {
            let _ = std::fs::remove_file(f);
        }
        if case.kind == Kind::OursPodKubeletFirst {
            let pod = pod.context("first-container case without a pod")?;
            let k = self
                .kubelet
                .as_ref()
                .context("kubelet case without a stand-in")?;
            k.serve_pod(&pod);
        }
        Ok(id)
    }

    /// A runtime command as the shim builds it; stdout to `stdout` (or /dev/null), stderr
    /// appended to the case's stderr file.
    fn command(&self, case: &Case, args: &[&str], stdout: Option<&Path>) -> Result<Command> {
        self.command_with(case, None, args, stdout)
    }

    /// `rss_to`: run under `busybox time -f %M -o <rss_to>`, which writes the `ru_maxrss` its
    /// `wait4` got. Through a small parent because `ru_maxrss` also counts the address space a
    /// process had before its execve — for a child of this (large) harness, the harness's.
    fn command_with(
        &self,
        case: &Case,
        rss_to: Option<&Path>,
        args: &[&str],
        stdout: Option<&Path>,
    ) -> Result<Command> {
        let rt = &case.rt;
        let mut cmd = match rss_to {
            None => Command::new(&rt.binary),
            Some(out) => {
                let mut c = Command::new(test_support::rootfs::BUSYBOX);
                c.args(["time", "-f", "%M", "-o"]).arg(out).arg(&rt.binary);
                c
            }
        };
        cmd.args(rt.global_args()).args(args);
        cmd.env_clear().env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        for (k, v) in &rt.env {
            cmd.env(k, v);
        }
        if let Some(cwd) = &rt.cwd {
            cmd.current_dir(cwd);
        }
        let err = OpenOptions::new()
            .append(true)
            .create(true)
            .open(case.stderr_path())?;
        cmd.stdin(Stdio::null()).stderr(err);
        match stdout {
            Some(path) => cmd.stdout(File::create(path)?),
            None => cmd.stdout(Stdio::null()),
        };
        Ok(cmd)
    }

    /// `create --bundle B --pid-file B/init.pid ID`, as the shim calls it.
    fn create_command(&self, case: &Case, id: &str, rss_to: Option<&Path>) -> Result<Command> {
        let b = case.bundle.display().to_string();
        let p = case.init_pid_file().display().to_string();
        let args = ["create", "--bundle", &b, "--pid-file", &p, id];
        self.command_with(case, rss_to, &args, None)
    }

    /// `exec --process F --detach --pid-file B/exec.pid ID`, as the shim calls it.
    fn exec_command(&self, case: &Case, id: &str, process: &Path) -> Result<Command> {
        let f = process.display().to_string();
        let p = case.exec_pid_file().display().to_string();
        let args = ["exec", "--process", &f, "--detach", "--pid-file", &p, id];
        self.command(case, &args, None)
    }

    /// Writes an exec `--process` file as containerd does (the unfiltered gids), running
    /// `args`.
    fn write_exec_process(&self, case: &Case, args: &[&str]) -> Result<PathBuf> {
        let process = case.bundle.join("process.json");
        std::fs::write(&process, serde_json::to_vec(&self.spec.exec_process(args))?)?;
        Ok(process)
    }

    /// Outside the clock: one runtime call that must succeed.
    fn untimed(&self, case: &Case, id: &str, what: &str, args: &[&str]) -> Result<Finished> {
        self.call(case, id, what, &mut self.command(case, args, None)?)
    }

    /// An error with everything the runtime said; the container is force-deleted.
    fn failure(&self, case: &Case, id: &str, what: &str, fin: &Finished) -> anyhow::Error {
        let stderr = std::fs::read_to_string(case.stderr_path()).unwrap_or_default();
        let log = case
            .rt
            .log
            .as_deref()
            .and_then(last_error_msg)
            .unwrap_or_default();
        let _ = case.rt.run(&["delete", "--force", id]);
        anyhow!(
            "{} ({}): `{what}` of container {id} failed with {}\n  stderr: {}\n  last log error: {}",
            case.name,
            case.rt.binary.display(),
            fin.describe(),
            stderr.trim(),
            log
        )
    }

    fn call(&self, case: &Case, id: &str, what: &str, cmd: &mut Command) -> Result<Finished> {
        let fin = run_timed(cmd, TIMEOUT).with_context(|| format!("{}: {what}", case.name))?;
        if !fin.success() {
            return Err(self.failure(case, id, what, &fin));
        }
        Ok(fin)
    }

    /// Outside the clock, after create: config.json says what enforcement must have done.
    fn check_config(&self, case: &Case) -> Result<()> {
        let config: Value =
            serde_json::from_slice(&std::fs::read(case.bundle.join("config.json"))?)?;
        let gids = &config["process"]["user"]["additionalGids"];
        let want = case.want_gids();
        ensure!(
            *gids == serde_json::json!(want),
            "{}: after create, config.json has additionalGids {gids}, expected {want:?} — the \
             measurement would not be of the intended work",
            case.name
        );
        Ok(())
    }

    /// Kubelet requests made by one create of this case must be what the case means.
    fn check_requests(&self, case: &Case, delta: usize, priming: bool) -> Result<()> {
        let want = match case.kind {
            Kind::OursPodKubeletFirst => 1,
            Kind::OursPodKubeletCached if priming => delta.min(1),
            _ => 0,
        };
        ensure!(
            delta == want,
            "{}: the kubelet stand-in saw {delta} request(s) during one create, expected {want}",
            case.name
        );
        Ok(())
    }

    /// create → start → wait for the init to exit → delete, of a `true` container.
    pub fn cycle(&self, case: &Case, priming: bool) -> Result<CycleSample> {
        let seq = self.next_seq();
        let id = self.prepare(case, &["true"], seq)?;
        let mut create = self.create_command(case, &id, None)?;
        let mut start = self.command(case, &["start", &id], None)?;
        let mut delete = self.command(case, &["delete", &id], None)?;
        let before = self.requests();

        let t0 = Instant::now();
        let created = self.call(case, &id, "create", &mut create)?;
        let init = read_pid_file(&case.init_pid_file())?;
        let started = self.call(case, &id, "start", &mut start)?;
        wait_exit(init, TIMEOUT).with_context(|| format!("{}: container init", case.name))?;
        let deleted = self.call(case, &id, "delete", &mut delete)?;
        let cycle = t0.elapsed();

        self.check_config(case)?;
        self.check_requests(case, self.requests() - before, priming)?;
        Ok(CycleSample {
            stage_ms: if case.kind.enforced() {
                audit_elapsed_ms(case, "create")
            } else {
                None
            },
            create: created,
            start_ms: started.ms(),
            delete_ms: deleted.ms(),
            cycle_ms: ms(cycle),
        })
    }

    /// Peak RSS (KiB) of one create of a `true` container, then start, wait, delete; not timed.
    pub fn create_rss(&self, case: &Case) -> Result<f64> {
        let seq = self.next_seq();
        let id = self.prepare(case, &["true"], seq)?;
        let rss_file = case.bundle.join("create.maxrss");
        let _ = std::fs::remove_file(&rss_file);
        let mut create = self.create_command(case, &id, Some(&rss_file))?;
        self.call(case, &id, "create (under busybox time)", &mut create)?;
        let init = read_pid_file(&case.init_pid_file())?;
        self.untimed(case, &id, "start", &["start", &id])?;
        wait_exit(init, TIMEOUT).with_context(|| format!("{}: container init", case.name))?;
        self.untimed(case, &id, "delete", &["delete", &id])?;
        self.check_config(case)?;
        let text = std::fs::read_to_string(&rss_file).with_context(|| {
            format!(
                "{}: busybox time wrote no {}",
                case.name,
                rss_file.display()
            )
        })?;
        text.lines()
            .rev()
            .find_map(|l| l.trim().parse::<f64>().ok())
            .with_context(|| format!("{}: no maxrss in {text:?}", case.name))
    }

    /// A `sleep` container: create, then timed start, state, `exec --detach` of `true` (with a
    /// `--process` file as containerd writes it), kill 9, delete.
    pub fn ops(&self, case: &Case) -> Result<OpsSample> {
        let seq = self.next_seq();
        let id = self.prepare(case, &["sleep", "3600"], seq)?;
        let process = self.write_exec_process(case, &["true"])?;
        let state_out = case.bundle.join("state.out");
        let mut create = self.create_command(case, &id, None)?;
        let mut start = self.command(case, &["start", &id], None)?;
        let mut state = self.command(case, &["state", &id], Some(&state_out))?;
        let mut exec = self.exec_command(case, &id, &process)?;
        let mut kill = self.command(case, &["kill", &id, "9"], None)?;
        let mut delete = self.command(case, &["delete", &id], None)?;

        let before_create = self.requests();
        self.call(case, &id, "create", &mut create)?;
        let create_requests = self.requests() - before_create;
        let init = read_pid_file(&case.init_pid_file())?;
        let started = self.call(case, &id, "start", &mut start)?;
        let stated = self.call(case, &id, "state", &mut state)?;
        let before = self.requests();
        let execed = self.call(case, &id, "exec --detach", &mut exec)?;
        let exec_requests = self.requests() - before;
        let exec_pid = read_pid_file(&case.exec_pid_file())?;
        wait_exit(exec_pid, TIMEOUT).with_context(|| format!("{}: exec process", case.name))?;
        let killed = self.call(case, &id, "kill 9", &mut kill)?;
        wait_exit(init, TIMEOUT).with_context(|| format!("{}: killed init", case.name))?;
        let deleted = self.call(case, &id, "delete", &mut delete)?;

        let state: Value = serde_json::from_slice(&std::fs::read(&state_out)?)
            .with_context(|| format!("{}: state output", case.name))?;
        ensure!(
            state["status"] == "running",
            "{}: state said {} for a running container",
            case.name,
            state["status"]
        );
        self.check_config(case)?;
        self.check_requests(case, create_requests, false)?;
        ensure!(
            exec_requests == 0,
            "{}: exec made {exec_requests} request(s) to the kubelet",
            case.name
        );
        let exec_filter_ms = if case.kind.enforced() {
            audit_elapsed_ms(case, "exec")
        } else {
            None
        };
        Ok(OpsSample {
            exec_filter_ms,
            start_ms: started.ms(),
            state_ms: stated.ms(),
            exec_ms: execed.ms(),
            kill_ms: killed.ms(),
            delete_ms: deleted.ms(),
            exec_requests,
        })
    }

    /// Not measured: proves each case runs the intended workload. The init of a `sleep`
    /// container and a process exec'd into it (from containerd's unfiltered `--process` file)
    /// must have exactly the groups enforcement leaves (pod cases) or all of them (the rest).
    /// Also primes the cached-kubelet case's cache.
    pub fn validate(&self, case: &Case) -> Result<()> {
        if case.kind == Kind::OursPodKubeletFirst {
            // Its containers are measured by `cycle` only, which checks every call.
            return self.cycle(case, true).map(|_| ());
        }
        let seq = self.next_seq();
        let id = self.prepare(case, &["sleep", "3600"], seq)?;
        let process = self.write_exec_process(case, &["sleep", "3600"])?;
        let want = case.want_gids();
        let before = self.requests();
        self.call(
            case,
            &id,
            "create",
            &mut self.create_command(case, &id, None)?,
        )?;
        let after_create = self.requests();
        let result = (|| -> Result<()> {
            self.check_config(case)?;
            self.check_requests(case, after_create - before, true)?;
            let init = read_pid_file(&case.init_pid_file())?;
            self.untimed(case, &id, "start", &["start", &id])?;
            expect_groups(init, want).with_context(|| format!("{}: container init", case.name))?;
            self.call(
                case,
                &id,
                "exec",
                &mut self.exec_command(case, &id, &process)?,
            )?;
            let exec_pid = read_pid_file(&case.exec_pid_file())?;
            expect_groups(exec_pid, want)
                .with_context(|| format!("{}: exec'd process", case.name))?;
            ensure!(
                self.requests() == after_create,
                "{}: exec asked the kubelet",
                case.name
            );
            self.untimed(case, &id, "kill", &["kill", &id, "9"])?;
            // The exec'd process first: the init, as its pid namespace's reaper, finishes
            // exiting only once every other process of the namespace is reaped.
            wait_exit(exec_pid, TIMEOUT)
                .with_context(|| format!("{}: exec'd process of a killed container", case.name))?;
            wait_exit(init, TIMEOUT).with_context(|| format!("{}: killed init", case.name))?;
            self.untimed(case, &id, "delete", &["delete", &id])?;
            Ok(())
        })();
        if result.is_err() {
            let _ = case.rt.run(&["delete", "--force", &id]);
        }
        result
    }

    /// `explain --bundle B --format json` of a pod container whose pod uid was never seen, the
    /// stand-in serving `kubelet`'s pods plus that one (last in the list).
    pub fn lookup(&self, case: &Case, kubelet: &Kubelet) -> Result<LookupSample> {
        let seq = self.next_seq();
        let pod = PodIdentity {
            namespace: "bench".to_owned(),
            name: format!("lookup-{seq}"),
            uid: format!("{}-lookup-{seq}", self.run_id),
        };
        kubelet.serve_pod(&pod);
        case.write_config(&self.spec.render(
            &["true"],
            &format!("/{}/explain", self.cgroup_parent),
            Some(&pod),
        ))?;
        let out = case.bundle.join("explain.json");
        let b = case.bundle.display().to_string();
        let mut cmd = self.command(
            case,
            &["explain", "--bundle", &b, "--format", "json"],
            Some(&out),
        )?;
        let before = kubelet.standin.requests();
        let fin = self.call(case, "(explain)", "explain", &mut cmd)?;
        let requests = kubelet.standin.requests() - before;

        let report: Value = serde_json::from_slice(&std::fs::read(&out)?)
            .with_context(|| format!("{}: explain --format json output", case.name))?;
        let elapsed_us = report["elapsed_us"]
            .as_f64()
            .with_context(|| format!("{}: explain printed no elapsed_us: {report}", case.name))?;
        ensure!(
            report["decision"]["dropped"] == serde_json::json!([50000])
                && report["pod_groups"]["uid"] == pod.uid.as_str(),
            "{}: explain did not find pod {} and drop 50000: {report}",
            case.name,
            pod.uid
        );
        ensure!(
            requests == 1,
            "{}: one explain of an unseen pod made {requests} kubelet requests (expected 1)",
            case.name
        );
        Ok(LookupSample {
            lookup_ms: elapsed_us / 1e3,
            explain_ms: fin.ms(),
        })
    }
}

/// `elapsed_us` of the last audit line of `operation` in the case's `--log` file, in ms.
fn audit_elapsed_ms(case: &Case, operation: &str) -> Option<f64> {
    let text = std::fs::read_to_string(case.rt.log.as_deref()?).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["operation"] == operation)
        .and_then(|v| v["elapsed_us"].as_f64())
        .map(|us| us / 1e3)
}

/// Waits until `pid` runs `sleep` (exec done, groups final), then compares its groups.
fn expect_groups(pid: i32, want: &[u32]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if status_field(pid, "Name").is_ok_and(|n| n == "sleep") {
            break;
        }
        if Instant::now() > deadline {
            bail!("process {pid} never became `sleep`");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut got = groups_of(pid)?;
    got.sort_unstable();
    let mut want = want.to_vec();
    want.sort_unstable();
    ensure!(
        got == want,
        "process {pid} has groups {got:?}, expected {want:?}"
    );
    Ok(())
}
