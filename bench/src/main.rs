//! strict-supplementalgroups-bench: `just bench`.
//!
//! Measures the runtime the way the containerd runc shim drives it, interleaved round by round
//! with crun, runc (and youki when present) on the same machine, and writes
//! `target/bench/results.json` and a markdown table:
//!
//! - the shim cycle (create → start → wait → delete of a busybox `true` container, no tty):
//!   this runtime on an unmanaged container, on a pod container with the `file` source, with
//!   the kubelet source against a TLS stand-in (first container of a pod: a uid never seen; and
//!   a cached one), crun, runc, youki;
//! - single commands on a running container: start, state, `exec --detach` of `true` (with a
//!   containerd-style `--process` file), kill 9, delete;
//! - the kubelet lookup alone (`explain`'s in-process `elapsed_us`, cache miss) against
//!   stand-ins serving 110, 1,000 and 5,000 pods;
//! - peak RSS of create, binary sizes, and the issues' targets as met / not met.
//!
//! Every runtime runs in the harness's private mount namespace, where a cgroup-hybrid host's
//! cgroup2 mount is hidden ([`mountns`]): crun refuses hybrid mode, and all runtimes must see
//! the same cgroup layout to be compared.
//!
//! Nothing is a pass/fail threshold: the exit code says whether the harness worked. Needs root.

mod env;
mod harness;
mod mountns;
mod proc;
mod report;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use test_support::certs::{KeyKind, KubeconfigStyle, TestPki};
use test_support::kubelet::{Behaviour, KubeletStandIn};
use test_support::runtime::Runtime;

use crate::env::{PodIdentity, SpecTemplate, Workspace};
use crate::harness::{Case, Harness, Kind, Kubelet};
use crate::report::Results;

const RUNTIME_BIN: &str = "strict-supplementalgroups-container-runtime";
/// Pods on a full node with the kubelet's default `maxPods`.
const NODE_PODS: usize = 110;

const USAGE: &str = "\
usage: strict-supplementalgroups-bench [options]
  --runtime PATH        runtime under test (default: target/release/strict-supplementalgroups-container-runtime)
  --compare PATH        another build of this runtime, measured as the extra case compare-pod-file
                        (the ours-pod-file workload): before/after numbers of a change in one run
  --runc PATH           runc to compare with (default: /usr/sbin/runc, else runc on PATH)
  --crun PATH|none      crun to compare with (default: /usr/bin/crun, else crun on PATH)
  --youki PATH|none     youki to compare with (default: youki on PATH or ~/.cargo/bin/youki, if it works)
  --node-mounts N       add N tmpfs mounts in the bench's mount namespace first, as a node's pods
                        have (default 0: the namespace's own mounts only)
  --no-seal-cost        leave out ours-pod-file-presealed (the runtime started from a read-only
                        overlay, so without its sealed re-exec: the cost of that protection)
  --iterations N        measured rounds per phase (default 100; --smoke: 3)
  --warmup N            discarded rounds before them (default 10; --smoke: 1)
  --phases LIST         cycle,commands,lookup (default: all)
  --lookup-pods LIST    pod counts of the lookup stand-ins (default 110,1000,5000; --smoke: 110,1000)
  --spec KIND           containerd (the captured containerd 1.6.20 app spec in tests/fixtures;
                        default) or minimal (test-support's minimal_config)
  --kubelet-cert KIND   stand-in serving key: rsa (a kubelet's self-signed default, default) or ec
  --work-dir DIR        where the private work directory goes (default /run)
  --no-tmpfs            keep bundles and state on that directory's filesystem instead of a tmpfs
  --out DIR             results.json and results.md (default target/bench; --smoke: target/bench/smoke)
  --seed N              seed of the per-round shuffle of the cases (default: the clock)
  --smoke               a few rounds, to prove the harness works (CI)";

struct Opts {
    runtime: PathBuf,
    compare: Option<PathBuf>,
    runc: PathBuf,
    crun: Option<PathBuf>,
    youki: Option<PathBuf>,
    youki_explicit: bool,
    node_mounts: usize,
    seal_cost: bool,
    iterations: usize,
    warmup: usize,
    phases: Vec<String>,
    lookup_pods: Vec<usize>,
    spec: String,
    kubelet_cert: KeyKind,
    work_dir: PathBuf,
    tmpfs: bool,
    out: PathBuf,
    smoke: bool,
    seed: u64,
}

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn detect_youki() -> Option<PathBuf> {
    env::which("youki").or_else(|| {
        let p = PathBuf::from(std::env::var_os("HOME")?).join(".cargo/bin/youki");
        env::is_executable(&p).then_some(p)
    })
}

fn parse_args() -> Result<Opts> {
    let mut runtime = repo_dir().join("target/release").join(RUNTIME_BIN);
    let mut runc = None;
    let mut compare = None;
    let mut node_mounts = 0;
    let mut seal_cost = true;
    let mut crun: Option<Option<PathBuf>> = None;
    let mut youki: Option<Option<PathBuf>> = None;
    let mut iterations = None;
    let mut warmup = None;
    let mut phases = vec!["cycle".into(), "commands".into(), "lookup".into()];
    let mut lookup_pods = None;
    let mut spec = None;
    let mut kubelet_cert = KeyKind::Rsa2048;
    let mut work_dir = PathBuf::from("/run");
    let mut tmpfs = true;
    let mut out = None;
    let mut smoke = false;
    let mut seed = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        let number = |name: &str, v: String| {
            v.parse::<usize>()
                .with_context(|| format!("{name}: {v:?} is not a number"))
        };
        match arg.as_str() {
            "--runtime" => runtime = value(&arg)?.into(),
            "--runc" => runc = Some(PathBuf::from(value(&arg)?)),
            "--compare" => compare = Some(PathBuf::from(value(&arg)?)),
            "--node-mounts" => node_mounts = number(&arg, value(&arg)?)?,
            "--no-seal-cost" => seal_cost = false,
            "--crun" => {
                let v = value(&arg)?;
                crun = Some((v != "none").then(|| PathBuf::from(v)));
            }
            "--youki" => {
                let v = value(&arg)?;
                youki = Some((v != "none").then(|| PathBuf::from(v)));
            }
            "--iterations" => iterations = Some(number(&arg, value(&arg)?)?),
            "--warmup" => warmup = Some(number(&arg, value(&arg)?)?),
            "--phases" => {
                phases = value(&arg)?.split(',').map(str::to_owned).collect();
                for p in &phases {
                    if !["cycle", "commands", "lookup"].contains(&p.as_str()) {
                        bail!("unknown phase {p:?}\n{USAGE}");
                    }
                }
            }
            "--lookup-pods" => {
                let pods: Vec<usize> = value(&arg)?
                    .split(',')
                    .map(|v| number("--lookup-pods", v.to_owned()))
                    .collect::<Result<_>>()?;
                if pods.contains(&0) {
                    bail!("--lookup-pods: a stand-in serves at least the looked-up pod");
                }
                lookup_pods = Some(pods);
            }
            "--spec" => spec = Some(value(&arg)?),
            "--kubelet-cert" => {
                kubelet_cert = match value(&arg)?.as_str() {
                    "rsa" => KeyKind::Rsa2048,
                    "ec" => KeyKind::EcP256,
                    other => bail!("--kubelet-cert is rsa or ec, not {other:?}"),
                }
            }
            "--work-dir" => work_dir = value(&arg)?.into(),
            "--no-tmpfs" => tmpfs = false,
            "--out" => out = Some(PathBuf::from(value(&arg)?)),
            "--smoke" => smoke = true,
            "--seed" => {
                let v = value(&arg)?;
                seed = Some(
                    v.parse::<u64>()
                        .with_context(|| format!("--seed: {v:?} is not a number"))?,
                );
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let runc = match runc {
        Some(p) => p,
        None if env::is_executable(Path::new("/usr/sbin/runc")) => "/usr/sbin/runc".into(),
        None => env::which("runc").context("runc not found: apt-get install runc, or --runc")?,
    };
    // crun is a peer like runc (scripts/bootstrap installs it): leaving it out takes
    // `--crun none`.
    let crun = match crun {
        Some(choice) => choice,
        None if env::is_executable(Path::new("/usr/bin/crun")) => Some("/usr/bin/crun".into()),
        None => Some(
            env::which("crun")
                .context("crun not found: scripts/bootstrap installs it, or --crun none")?,
        ),
    };
    let youki_explicit = matches!(youki, Some(Some(_)));
    let youki = youki.unwrap_or_else(detect_youki);
    let iterations = iterations.unwrap_or(if smoke { 3 } else { 100 });
    if iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    Ok(Opts {
        runtime: std::fs::canonicalize(&runtime).with_context(|| {
            format!(
                "runtime binary {} (build it: cargo build --release --bin {RUNTIME_BIN})",
                runtime.display()
            )
        })?,
        runc: std::fs::canonicalize(&runc).with_context(|| format!("runc {}", runc.display()))?,
        compare: compare
            .map(|c| {
                std::fs::canonicalize(&c).with_context(|| format!("--compare {}", c.display()))
            })
            .transpose()?,
        crun: crun
            .map(|c| std::fs::canonicalize(&c).with_context(|| format!("crun {}", c.display())))
            .transpose()?,
        youki: youki
            .map(|y| std::fs::canonicalize(&y).with_context(|| format!("youki {}", y.display())))
            .transpose()?,
        youki_explicit,
        node_mounts,
        // The smoke run proves the harness on few cases.
        seal_cost: seal_cost && !smoke,
        iterations,
        warmup: warmup.unwrap_or(if smoke { 1 } else { 10 }),
        phases,
        // The smoke run leaves out 5,000 pods: with debug builds, serving them costs seconds.
        lookup_pods: lookup_pods.unwrap_or_else(|| {
            if smoke {
                vec![110, 1000]
            } else {
                vec![110, 1000, 5000]
            }
        }),
        // The captured containerd spec (tests/fixtures), unless --spec minimal.
        spec: spec.unwrap_or_else(|| "containerd".to_owned()),
        kubelet_cert,
        work_dir,
        tmpfs,
        out: out.unwrap_or_else(|| {
            let base = repo_dir().join("target/bench");
            if smoke { base.join("smoke") } else { base }
        }),
        smoke,
        seed: seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        }),
    })
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs on every exit path: containers of every state root, the cgroup parent, zombies.
struct Cleanup {
    runtimes: Vec<Runtime>,
    cgroup_parent: String,
    done: bool,
}

impl Cleanup {
    /// Removes everything; returns the cgroup directories still there (empty: clean).
    fn run(&mut self) -> Vec<PathBuf> {
        self.done = true;
        for rt in &self.runtimes {
            env::destroy_leftovers(rt);
        }
        proc::reap_zombies();
        env::remove_cgroup_tree(&self.cgroup_parent)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.done {
            for left in self.run() {
                eprintln!("bench: cleanup: {} is still there", left.display());
            }
        }
    }
}

/// Writes `binary` into `dir` (on a disk filesystem, as the host's is) in one piece, as the
/// installer lays the runtime down on a node, and returns the copy's path. The linker's output
/// in target/ started ~0.14 ms slower per command here (`perf stat` of `state`: 1.07 against
/// 0.90 ms; 173 against 164 page faults), and so did a copy on a tmpfs (1.06–1.10 ms, 172
/// faults): the page cache keeps those in small folios, the copy on ext4 in large ones.
fn install_copy(binary: &Path, dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let name = binary
        .file_name()
        .with_context(|| format!("{} has no file name", binary.display()))?;
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Absolute: the runtimes are spawned in their bundle directories.
    let dir = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let copy = dir.join(name);
    std::fs::write(&copy, bytes).with_context(|| format!("writing {}", copy.display()))?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", copy.display()))?;
    Ok(copy)
}

/// A runtime config (TOML) for the kubelet source against `url`, with a kubelet.conf whose
/// client certificate and key are one combined file, as after kubelet TLS bootstrap.
fn kubelet_config(dir: &Path, pki: &TestPki, url: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let kubeconfig = pki.write_kubeconfig(
        &dir.join("kubelet.conf"),
        url,
        KubeconfigStyle::CombinedFile,
    )?;
    let ca = dir.join("pki/ca.crt");
    let path = dir.join("runtime-config.toml");
    std::fs::write(
        &path,
        format!(
            "pod-groups-source = \"kubelet\"\nkubelet-url = {url:?}\nkubeconfig = {:?}\n\
             kubelet-ca-file = {:?}\n",
            kubeconfig.display().to_string(),
            ca.display().to_string()
        ),
    )?;
    Ok(path)
}

fn config_env(path: &Path) -> Vec<(String, String)> {
    vec![(
        "STRICT_SUPPLEMENTALGROUPS_CONFIG".to_owned(),
        path.display().to_string(),
    )]
}

fn start_kubelet(pki: &TestPki, fillers: usize, fixed: Vec<Value>) -> Result<Kubelet> {
    let standin = KubeletStandIn::start(pki, Behaviour::Serve).context("kubelet stand-in")?;
    let k = Kubelet {
        standin,
        fillers: test_support::kubelet::filler_pods(fillers),
        fixed,
    };
    k.serve(None);
    Ok(k)
}

fn stand_in_pod(p: &PodIdentity) -> Value {
    test_support::kubelet::pod(&p.namespace, &p.name, &p.uid, &[env::GRANTED], None)
}

/// xorshift64*: enough to shuffle the order of the cases in a round, reproducibly (`--seed`).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// One case's measurements in one round: (metric, value).
type Metrics = Vec<(&'static str, f64)>;

/// Per metric, the samples of every case, round by round.
type Collected = BTreeMap<&'static str, stats::Series>;

/// The measured phases' rounds: the generator of their random orders, the run's warm-up and
/// round counts, and the failures of peer runtimes that discarded a round.
struct Rounds {
    rng: Rng,
    warmup: usize,
    iterations: usize,
    failures: Vec<String>,
}

impl Rounds {
    /// [`Rounds::run_n`] with the run's warm-up and round counts.
    fn run(
        &mut self,
        label: &str,
        cases: &[&Case],
        f: impl FnMut(&Case) -> Result<Metrics>,
    ) -> Result<Collected> {
        self.run_n(label, cases, self.warmup, self.iterations, f)
    }

    /// Runs `f` over `cases` for `warmup` discarded rounds and then until `iterations` rounds have
    /// been measured. Every round runs every case once, in a fresh random order: a case must not
    /// always follow the same one (what a runtime leaves the kernel to finish after it exits —
    /// cgroup teardown, freeing a memfd copy — lands on whoever comes next).
    ///
    /// A round's samples are kept only when every case of the round succeeded, so that the samples
    /// of all cases stay paired by round. A failure of this runtime ends the run (a bug to look at);
    /// a failure of a peer (crun, runc, youki) is recorded in `self.failures` and its round discarded
    /// and redone, up to a tenth of the rounds.
    fn run_n(
        &mut self,
        label: &str,
        cases: &[&Case],
        warmup: usize,
        iterations: usize,
        mut f: impl FnMut(&Case) -> Result<Metrics>,
    ) -> Result<Collected> {
        let mut out = Collected::new();
        let t = Instant::now();
        let mut order: Vec<&Case> = cases.to_vec();
        let (mut done, mut measured, mut discarded) = (0, 0, 0);
        let budget = (iterations / 10).max(3);
        while measured < iterations {
            proc::check_interrupted()?;
            self.rng.shuffle(&mut order);
            let mut round = Vec::with_capacity(order.len());
            let mut failed = false;
            for case in &order {
                match f(case) {
                    Ok(m) => round.push((case.name.as_str(), m)),
                    Err(e) if case.kind.peer() => {
                        let msg = format!("{label}, round {}: {}: {e:#}", done + 1, case.name);
                        eprintln!("bench: {msg}; round discarded");
                        self.failures.push(msg);
                        failed = true;
                        break;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("{label}, round {}", done + 1));
                    }
                }
            }
            proc::reap_zombies();
            done += 1;
            if failed {
                discarded += 1;
                if discarded > budget {
                    bail!(
                        "{label}: {discarded} rounds discarded because a peer runtime failed; \
                     giving up:\n{}",
                        self.failures.join("\n")
                    );
                }
            } else if done > warmup {
                measured += 1;
                for (case, metrics) in round {
                    for (metric, v) in metrics {
                        out.entry(metric).or_default().push(case, v);
                    }
                }
            }
            if done % 10 == 0 || measured == iterations {
                eprintln!(
                    "bench: {label}: {measured}/{iterations} measured rounds ({warmup} warm-up, \
                 {discarded} discarded), {:.0}s, load {}",
                    t.elapsed().as_secs_f64(),
                    proc::loadavg()
                );
            }
        }
        Ok(out)
    }
}

fn take(c: &mut Collected, metric: &str) -> stats::Series {
    c.remove(metric).unwrap_or_default()
}

fn run(opts: &Opts) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the bench creates containers: run it as root");
    }
    // First, while this process has one thread: everything after runs in the namespace.
    let cgroup_view = mountns::enter()?;
    eprintln!("bench: {}", cgroup_view.describe());
    test_support::rootfs::require_busybox()?;
    test_support::process::become_subreaper()?;
    proc::install_interrupt_handler()?;

    let wall = Instant::now();
    let load_before = proc::loadavg();
    let machine0 = proc::machine_cpu();
    let own0 = proc::own_cpu_seconds();
    let run_id = std::process::id().to_string();

    let ws = Workspace::create(&opts.work_dir, opts.tmpfs)?;
    let work = ws.dir.clone();
    if opts.node_mounts > 0 {
        mountns::add_node_mounts(&work.join("node-mounts"), opts.node_mounts)?;
    }
    eprintln!(
        "bench: work dir {} ({}), load {load_before}",
        work.display(),
        if ws.tmpfs { "tmpfs" } else { "no tmpfs" }
    );
    let spec = SpecTemplate::load(&opts.spec, &work.join("stubs"))?;
    let mut h = Harness::new(spec, run_id.clone(), None);
    let pki = TestPki::with_keys(opts.kubelet_cert, KeyKind::EcP256)?;

    // The kubelet of the cycle cases: a full node (110 pods) = fillers + the cached pod + the
    // pod of the current first container (or an idle one).
    let cached = h
        .pod_for(Kind::OursPodKubeletCached, 0)
        .context("cached pod")?;
    let kubelet = start_kubelet(&pki, NODE_PODS - 2, vec![stand_in_pod(&cached)])?;
    kubelet.serve(Some(stand_in_pod(&PodIdentity {
        namespace: "bench".into(),
        name: "idle".into(),
        uid: format!("{run_id}-idle"),
    })));
    let kubelet_cfg = kubelet_config(&work.join("config-kubelet"), &pki, &kubelet.standin.url())?;
    h.kubelet = Some(kubelet);

    // The file source: a PodList of a full node, the measured pod among small ones.
    let file_pod = h.pod_for(Kind::OursPodFile, 0).context("file pod")?;
    let filler_names: Vec<(String, String, String)> = (1..NODE_PODS)
        .map(|i| {
            (
                format!("ns-{}", i % 20),
                format!("pod-{i}"),
                format!("{run_id}-uid-{i}"),
            )
        })
        .collect();
    let filler_groups: [i64; 1] = [3000];
    let mut tuples: Vec<test_support::fixtures::TestPod<'_>> = filler_names
        .iter()
        .map(|(ns, name, uid)| {
            (
                ns.as_str(),
                name.as_str(),
                uid.as_str(),
                &filler_groups[..],
                None,
            )
        })
        .collect();
    let granted = [env::GRANTED];
    tuples.push((
        &file_pod.namespace,
        &file_pod.name,
        &file_pod.uid,
        &granted[..],
        None,
    ));
    let file_dir = work.join("config-file");
    std::fs::create_dir_all(&file_dir)?;
    let pods_file = file_dir.join("pods.json");
    std::fs::write(
        &pods_file,
        serde_json::to_vec(&test_support::fixtures::pod_list(&tuples))?,
    )?;
    let file_cfg = test_support::fixtures::write_file_source_config(&file_dir, &pods_file, "")?;

    let ours = &install_copy(&opts.runtime, &opts.out.join("installed/ours"))?;
    let mut cases = vec![
        Case::new(
            report::UNMANAGED,
            Kind::OursUnmanaged,
            ours,
            &work,
            &config_env(&file_cfg),
        )?,
        Case::new(
            report::FILE,
            Kind::OursPodFile,
            ours,
            &work,
            &config_env(&file_cfg),
        )?,
        Case::new(
            report::FIRST,
            Kind::OursPodKubeletFirst,
            ours,
            &work,
            &config_env(&kubelet_cfg),
        )?,
        Case::new(
            report::CACHED,
            Kind::OursPodKubeletCached,
            ours,
            &work,
            &config_env(&kubelet_cfg),
        )?,
        Case::new(report::RUNC, Kind::Runc, &opts.runc, &work, &[])?,
    ];
    if let Some(crun) = &opts.crun {
        cases.push(Case::new(report::CRUN, Kind::Crun, crun, &work, &[])?);
    }
    if opts.seal_cost {
        let presealed = mountns::sealed_view(ours, &work.join("sealed"), &work.join("empty"))?;
        cases.push(Case::new(
            report::PRESEALED,
            Kind::OursPodFile,
            &presealed,
            &work,
            &config_env(&file_cfg),
        )?);
        // crun re-execs itself too (from a read-only bind mount of its binary) unless it
        // already runs from a read-only mount: the same measurement for it.
        if let Some(crun) = &opts.crun {
            let presealed =
                mountns::sealed_view(crun, &work.join("sealed-crun"), &work.join("empty"))?;
            cases.push(Case::new(
                report::CRUN_PRESEALED,
                Kind::Crun,
                &presealed,
                &work,
                &[],
            )?);
        }
    }
    if let Some(other) = &opts.compare {
        cases.push(Case::new(
            report::COMPARE,
            Kind::OursPodFile,
            &install_copy(other, &opts.out.join("installed/compare"))?,
            &work,
            &config_env(&file_cfg),
        )?);
    }
    if let Some(youki) = &opts.youki {
        cases.push(Case::new(report::YOUKI, Kind::Youki, youki, &work, &[])?);
    }

    // `explain` (the lookup phase) creates no container: only these roots can hold any.
    let mut cleanup = Cleanup {
        runtimes: cases.iter().map(|c| c.rt.clone()).collect(),
        cgroup_parent: h.cgroup_parent.clone(),
        done: false,
    };

    let mut results = Results {
        smoke: opts.smoke,
        ..Results::default()
    };
    if opts.seal_cost {
        results.notes.push(format!(
            "{} is the ours-pod-file workload with the runtime started from a read-only \
             overlayfs view of its directory (already sealed, so create and exec skip the \
             sealed re-exec): the difference to ours-pod-file is what that protection costs; \
             {} is crun started the same way (it then skips its own re-exec)",
            report::PRESEALED,
            report::CRUN_PRESEALED
        ));
    }
    if opts.node_mounts > 0 {
        results.notes.push(format!(
            "{} tmpfs mounts were added in the bench's namespace first (a node's pods' mounts); \
             every runtime saw them",
            opts.node_mounts
        ));
    }
    results.notes.push(
        "this runtime is measured as a node runs it: a copy written in one piece on a disk \
         filesystem (`<out>/installed/`), the way the installer installs it on the host (also \
         for --compare). The linker's output in target/, or a copy on a tmpfs, starts ~0.14 ms \
         slower on this machine: the page cache holds those in small pieces, which costs more \
         page faults at every start"
            .to_owned(),
    );
    if let Some(other) = &opts.compare {
        results.notes.push(format!(
            "{} is the ours-pod-file workload run by {}",
            report::COMPARE,
            other.display()
        ));
    }
    let mut rounds = Rounds {
        rng: Rng(opts.seed | 1),
        warmup: opts.warmup,
        iterations: opts.iterations,
        failures: Vec::new(),
    };

    // What the clock reads for a process that does nothing: spawn + exit + wait of /bin/true,
    // included in every number below.
    let mut floor = Vec::new();
    for _ in 0..20 {
        let mut cmd = std::process::Command::new("/bin/true");
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        floor.push(proc::run_timed(&mut cmd, harness::TIMEOUT)?.ms());
    }
    let spawn_floor = stats::median(&floor);

    // Prove every case runs the intended workload (and prime the cache of the cached case).
    let mut dropped_youki = None;
    for case in &cases {
        eprintln!("bench: validating {}", case.name);
        if let Err(e) = h.validate(case) {
            if case.kind == Kind::Youki && !opts.youki_explicit {
                dropped_youki = Some(format!("{e:#}"));
                continue;
            }
            return Err(e).context("validation");
        }
    }
    if let Some(why) = dropped_youki {
        eprintln!("bench: youki found but it cannot run this container, left out: {why}");
        results.notes.push(format!(
            "youki was found but could not run the container (build it with --features \
             v1,v2,systemd,seccomp); left out: {why}"
        ));
        cases.retain(|c| c.kind != Kind::Youki);
    }
    if !cases.iter().any(|c| c.kind == Kind::Crun) {
        results
            .notes
            .push("crun left out (--crun none): its ratios and targets are null".to_owned());
    }
    if !cases.iter().any(|c| c.kind == Kind::Youki) {
        results
            .notes
            .push("youki absent: its ratios and targets are null".to_owned());
    }

    if opts.phases.iter().any(|p| p == "cycle") {
        let list: Vec<&Case> = cases.iter().collect();
        let mut c = rounds.run("cycle", &list, |case| {
            let s = h.cycle(case, false)?;
            let mut m = vec![
                ("cycle", s.cycle_ms),
                ("create", s.create.ms()),
                ("start", s.start_ms),
                ("delete", s.delete_ms),
            ];
            m.extend(s.stage_ms.map(|v| ("stage", v)));
            Ok(m)
        })?;
        results.cycle = take(&mut c, "cycle");
        results.create = take(&mut c, "create");
        results.start = take(&mut c, "start");
        results.delete = take(&mut c, "delete");
        results.create_stage = take(&mut c, "stage");
    }

    if opts.phases.iter().any(|p| p == "commands") {
        let list: Vec<&Case> = cases
            .iter()
            .filter(|c| c.kind != Kind::OursPodKubeletFirst)
            .collect();
        let mut c = rounds.run("commands", &list, |case| {
            // Every exec is checked: a kubelet request from one fails the run.
            let s = h.ops(case)?;
            let mut m = vec![
                ("start", s.start_ms),
                ("state", s.state_ms),
                ("exec", s.exec_ms),
                ("kill", s.kill_ms),
                ("delete", s.delete_ms),
                ("exec_requests", s.exec_requests as f64),
            ];
            m.extend(s.exec_filter_ms.map(|v| ("exec_filter", v)));
            Ok(m)
        })?;
        results.ops_start = take(&mut c, "start");
        results.ops_state = take(&mut c, "state");
        results.exec = take(&mut c, "exec");
        results.ops_kill = take(&mut c, "kill");
        results.ops_delete = take(&mut c, "delete");
        results.exec_filter = take(&mut c, "exec_filter");
        results.exec_requests = take(&mut c, "exec_requests")
            .by_case
            .values()
            .flatten()
            .sum::<f64>() as usize;
    }

    if opts.phases.iter().any(|p| p == "cycle") {
        // Peak RSS of create, apart from the timed rounds (measured through `busybox time`).
        let list: Vec<&Case> = cases.iter().collect();
        let n = if opts.smoke { 1 } else { 5 };
        let mut c = rounds.run_n("create peak RSS", &list, 0, n, |case| {
            Ok(vec![("rss", h.create_rss(case)?)])
        })?;
        results.create_rss_kib = take(&mut c, "rss");
    }

    // Lookup stand-ins (started only now: 5,000 pods are a lot of memory to carry through the
    // other phases); the looked-up pod is the last of `pods`.
    let mut lookups = Vec::new();
    if opts.phases.iter().any(|p| p == "lookup") {
        for &pods in &opts.lookup_pods {
            let k = start_kubelet(&pki, pods - 1, Vec::new())?;
            let name = format!("kubelet-{pods}");
            let cfg = kubelet_config(&work.join(format!("config-{name}")), &pki, &k.standin.url())?;
            let case = Case::new(
                &name,
                Kind::OursPodKubeletFirst,
                ours,
                &work,
                &config_env(&cfg),
            )?;
            lookups.push((case, k));
        }
    }
    if !lookups.is_empty() {
        let list: Vec<&Case> = lookups.iter().map(|(c, _)| c).collect();
        let mut c = rounds.run("lookup", &list, |case| {
            let k = &lookups
                .iter()
                .find(|(c, _)| c.name == case.name)
                .context("lookup case")?
                .1;
            let s = h.lookup(case, k)?;
            Ok(vec![("lookup", s.lookup_ms), ("explain", s.explain_ms)])
        })?;
        results.lookup = take(&mut c, "lookup");
        results.explain = take(&mut c, "explain");
    }
    if !rounds.failures.is_empty() {
        results.notes.push(format!(
            "{} round(s) discarded because a peer runtime failed: {}",
            rounds.failures.len(),
            rounds.failures.join("; ")
        ));
    }
    results.failures = rounds.failures;

    drop(lookups);
    // Every container and cgroup directory of the run, now: the report says whether it is clean.
    let cgroups_left = cleanup.run();
    results.notes.push(cgroup_view.describe());
    results.notes.push(if cgroups_left.is_empty() {
        format!(
            "every cgroup directory of the run (`/{}` in each hierarchy, and under the hidden \
             cgroup2 mount point) was removed",
            h.cgroup_parent
        )
    } else {
        format!(
            "cgroup directories the run could not remove: {}",
            cgroups_left
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let names: Vec<String> = cases
        .iter()
        .map(|c| c.name.clone())
        .chain(opts.lookup_pods.iter().map(|p| format!("kubelet-{p}")))
        .collect();
    results.reorder(&names);

    // Binaries and the conditions of the run.
    for case in &cases {
        let kind_name = match case.kind {
            Kind::Runc => "runc",
            Kind::Youki => "youki",
            Kind::Crun => "crun",
            _ if case.name == report::COMPARE => "compared build of this runtime",
            _ if case.name == report::PRESEALED || case.name == report::CRUN_PRESEALED => continue,
            _ => "strict-supplementalgroups-container-runtime",
        };
        if results.binaries.iter().any(|b| b.0 == kind_name) {
            continue;
        }
        let bytes = std::fs::metadata(&case.rt.binary)?.len();
        results.binaries.push((
            kind_name.to_owned(),
            case.rt.binary.display().to_string(),
            bytes,
            env::version_of(&case.rt.binary),
        ));
    }
    // Shares of all CPUs' time during the run: others' processes (busy minus the harness and
    // everything it reaped: runtimes, containers), and the hypervisor's steal.
    let (other_busy, steal) = match (machine0, proc::machine_cpu()) {
        (Some(a), Some(b)) if b.total > a.total => {
            let own = proc::own_cpu_seconds() - own0;
            let span = b.total - a.total;
            (
                Some(((b.busy - a.busy - own) / span * 100.0).max(0.0)),
                Some((b.steal - a.steal) / span * 100.0),
            )
        }
        _ => (None, None),
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_after = proc::loadavg();
    let m = &mut results.meta;
    m.insert(
        "started_unix".into(),
        json!(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                .saturating_sub(wall.elapsed().as_secs())
        ),
    );
    m.insert("duration_s".into(), json!(wall.elapsed().as_secs()));
    m.insert("iterations".into(), json!(opts.iterations));
    m.insert("warmup".into(), json!(opts.warmup));
    m.insert("smoke".into(), json!(opts.smoke));
    m.insert("seed".into(), json!(opts.seed));
    m.insert("cpus".into(), json!(cpus));
    m.insert("cgroup_layout".into(), json!(cgroup_view.layout));
    m.insert("node_mounts_added".into(), json!(opts.node_mounts));
    m.insert(
        "mountinfo_lines".into(),
        json!(
            std::fs::read_to_string("/proc/self/mountinfo")
                .map(|t| t.lines().count())
                .unwrap_or(0)
        ),
    );
    m.insert(
        "cgroup2_mounts_hidden".into(),
        json!(
            cgroup_view
                .hidden
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        ),
    );
    m.insert(
        "cgroup_dirs_left".into(),
        json!(
            cgroups_left
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        ),
    );
    m.insert(
        "kernel".into(),
        json!(
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
        ),
    );
    m.insert("loadavg_before".into(), json!(load_before));
    m.insert("loadavg_after".into(), json!(load_after));
    m.insert("other_cpu_busy_percent".into(), stats::round3(other_busy));
    m.insert("cpu_steal_percent".into(), stats::round3(steal));
    m.insert("spec".into(), json!(h.spec.kind));
    m.insert("spawn_floor_ms".into(), stats::round3(spawn_floor));
    m.insert("tmpfs".into(), json!(ws.tmpfs));
    m.insert("node_pods".into(), json!(NODE_PODS));
    m.insert("lookup_pods".into(), json!(opts.lookup_pods));
    m.insert(
        "kubelet_serving_key".into(),
        json!(match opts.kubelet_cert {
            KeyKind::Rsa2048 => "rsa2048",
            KeyKind::EcP256 => "ec-p256",
        }),
    );
    if let (Some(busy), Some(steal)) = (other_busy, steal) {
        results.notes.push(format!(
            "machine: {cpus} CPUs, load {load_before} before / {load_after} after; during the \
             run other processes used {busy:.0}% of all CPU time and the hypervisor stole \
             {steal:.0}%"
        ));
    }
    if let Some(f) = spawn_floor {
        results.notes.push(format!(
            "every time is spawn → exit → wait4 of the runtime process, as a shim sees it; \
             for /bin/true that reads {f:.2} ms here"
        ));
    }
    results.notes.push(format!(
        "{} interleaved rounds (cases shuffled in each round, seed {}) after {} warm-up rounds; \
         ratios are medians of per-round ratios",
        opts.iterations, opts.seed, opts.warmup
    ));

    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let json_path = opts.out.join("results.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&results.to_json())? + "\n",
    )
    .with_context(|| format!("writing {}", json_path.display()))?;
    let md = results.markdown();
    std::fs::write(opts.out.join("results.md"), &md)?;
    println!("{md}");
    eprintln!(
        "bench: wrote {} ({:.0}s)",
        json_path.display(),
        wall.elapsed().as_secs_f64()
    );
    if !cgroups_left.is_empty() {
        bail!("the run left cgroup directories behind: {cgroups_left:?}");
    }
    Ok(())
}
