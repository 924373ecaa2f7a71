//! strict-supplementalgroups-e2e: the runtime end to end, as a product.
//!
//! 1. builds the images (OCI archives, no registry): pause, the seed's bypass image and the
//!    tenant images of the Strict comparison (one with a setgid probe);
//! 2. for each containerd line (1.6 from Debian 12, 1.7 and 2.x fetched by scripts/bootstrap):
//!    registers the handler as a node gets it (the v2 snippet of `patches/`; on 2.x the
//!    installer with the v3 snippet), starts a private containerd with a stand-in kubelet
//!    serving the pods, and drives it over CRI like a kubelet — the seed's cases, the bypass
//!    pod, the sandbox, a plain `ctr run`, a pod served under another uid, the kubelet gone —
//!    and runs every comparison case through this runtime; on 2.x each case also runs through
//!    runc with `supplementalGroupsPolicy: Strict`, Kubernetes' own enforcement, as the oracle;
//!    then measures the latency a kubelet sees (this runtime, runc, crun);
//! 3. runs the bypass image with podman + conmon the way CRI-O does (create, exec, exec -t,
//!    stop, rm);
//! 4. prints the Strict comparison table, the latency table and the scenario table, and exits
//!    non-zero when any scenario failed.
//!
//! Usage: `strict-supplementalgroups-e2e --runtime <binary> [--installer <binary>]
//!         [--patch <file>] [--suite containerd|podman|all] [--lines 1.6,1.7,2.x]
//!         [--latency-rounds N] [--pods-source kubelet|file] [--keep]`
//! (`--runtime` may also come from `STRICT_SG_E2E_RUNTIME`, `--installer` from
//! `STRICT_SG_E2E_INSTALLER`). Needs root.

mod audit;
mod containerd_config;
mod containerd_suite;
mod cri;
mod explained;
mod groups;
mod images;
mod latency;
mod node_install;
mod podman_suite;
mod pods;
mod proc;
mod report;
mod runtime_config;
mod strict_oracle;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use test_support::containerd::ContainerdLine;

use crate::images::Images;
use crate::pods::PodSource;
use crate::report::Report;

/// The installer binary's name (built beside the harness by `cargo build`).
const INSTALLER_NAME: &str = "strict-supplementalgroups-installer";
/// Latency rounds per line when `--latency-rounds` is not given: enough for a median that is
/// not noise, few enough for CI.
const DEFAULT_LATENCY_ROUNDS: usize = 8;

/// What every suite needs.
pub struct Harness {
    /// This run's private directory.
    pub work: PathBuf,
    /// The runtime under test (absolute).
    pub runtime: PathBuf,
    /// The installer that registers the handler on containerd 2.x.
    pub installer: PathBuf,
    /// `patches/containerd-config-v2.toml` of the repository (containerd 1.6 and 1.7).
    pub patch: PathBuf,
    pub images: Images,
    /// Unique per run: pod uids, cgroup names, container ids.
    pub run_id: String,
    /// `kubelet` or `file`.
    pub pods_source: String,
    /// Latency rounds per containerd line (0: no latency phase).
    pub latency_rounds: usize,
}

struct Args {
    runtime: PathBuf,
    installer: PathBuf,
    patch: PathBuf,
    suites: Vec<String>,
    lines: Vec<ContainerdLine>,
    latency_rounds: usize,
    pods_source: String,
    keep: bool,
}

fn usage() -> &'static str {
    "usage: strict-supplementalgroups-e2e --runtime <binary> [--installer <binary>] \
     [--patch <containerd v2 snippet>] [--suite containerd|podman|all] \
     [--lines 1.6,1.7,2.x] [--latency-rounds N] [--pods-source kubelet|file] [--keep]"
}

fn parse_args() -> Result<Args> {
    let mut runtime = std::env::var_os("STRICT_SG_E2E_RUNTIME").map(PathBuf::from);
    let mut installer = std::env::var_os("STRICT_SG_E2E_INSTALLER").map(PathBuf::from);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut patch = repo.join("patches/containerd-config-v2.toml");
    let mut suites = vec!["containerd".to_owned(), "podman".to_owned()];
    let mut lines = ContainerdLine::ALL.to_vec();
    let mut latency_rounds = DEFAULT_LATENCY_ROUNDS;
    let mut pods_source = "kubelet".to_owned();
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--runtime" => runtime = Some(PathBuf::from(value("--runtime")?)),
            "--installer" => installer = Some(PathBuf::from(value("--installer")?)),
            "--patch" => patch = PathBuf::from(value("--patch")?),
            "--suite" => {
                let v = value("--suite")?;
                suites = match v.as_str() {
                    "all" => vec!["containerd".into(), "podman".into()],
                    "containerd" | "podman" => vec![v],
                    other => bail!("unknown suite {other:?}\n{}", usage()),
                }
            }
            "--lines" => {
                lines = value("--lines")?
                    .split(',')
                    .map(|l| {
                        ContainerdLine::from_name(l.trim()).with_context(|| {
                            format!("unknown containerd line {l:?} (1.6, 1.7, 2.x)\n{}", usage())
                        })
                    })
                    .collect::<Result<_>>()?;
            }
            "--latency-rounds" => {
                latency_rounds = value("--latency-rounds")?
                    .parse()
                    .context("--latency-rounds is a number")?;
            }
            "--pods-source" => {
                pods_source = value("--pods-source")?;
                if pods_source != "kubelet" && pods_source != "file" {
                    bail!("--pods-source is kubelet or file\n{}", usage());
                }
            }
            "--keep" => keep = true,
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    let runtime = runtime.with_context(|| format!("--runtime is required\n{}", usage()))?;
    let runtime = std::fs::canonicalize(&runtime)
        .with_context(|| format!("runtime binary {}", runtime.display()))?;
    let installer = match installer {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("the harness binary has a directory")?
            .join(INSTALLER_NAME),
    };
    let installer = std::fs::canonicalize(&installer).with_context(|| {
        format!(
            "installer binary {} (cargo build -p strict-supplementalgroups-installer)",
            installer.display()
        )
    })?;
    Ok(Args {
        runtime,
        installer,
        patch,
        suites,
        lines,
        latency_rounds,
        pods_source,
        keep,
    })
}

/// Fails early, with the package to install, when a tool is missing.
fn preflight(suites: &[String], lines: &[ContainerdLine]) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the e2e harness needs root (containerd, mounts, cgroups)");
    }
    let mut needed = vec![("cc", "gcc libc6-dev")];
    if suites.iter().any(|s| s == "containerd") {
        needed.push(("runc", "runc"));
    }
    if suites.iter().any(|s| s == "podman") {
        needed.extend([("podman", "podman"), ("conmon", "conmon")]);
    }
    let mut missing = Vec::new();
    for (tool, package) in needed {
        if which(tool).is_none() {
            missing.push(format!("{tool} (apt-get install {package})"));
        }
    }
    if test_support::rootfs::require_busybox().is_err() {
        missing.push("/bin/busybox (apt-get install busybox-static)".into());
    }
    if suites.iter().any(|s| s == "containerd") {
        for line in lines {
            if let Err(e) = line.check_installed() {
                missing.push(format!("{e:#}"));
            }
        }
    }
    if !missing.is_empty() {
        bail!("missing: {}", missing.join(", "));
    }
    Ok(())
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

fn main() -> ExitCode {
    let started = Instant::now();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = preflight(&args.suites, &args.lines) {
        eprintln!("e2e preflight: {e:#}");
        return ExitCode::from(2);
    }
    if let Err(e) = test_support::process::become_subreaper() {
        eprintln!("{e:#}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            return ExitCode::from(2);
        }
    };
    let mut report = Report::default();
    let outcome = rt.block_on(run(&args, &mut report));
    if let Err(e) = &outcome {
        report.fail("harness", "setup", e, started);
    }
    // Daemons reparented to this subreaper (shims, conmon) that exited: reap them before
    // exiting, or they become zombies of a PID 1 that does not reap.
    proc::reap_orphans(&[]);
    report.print(started.elapsed());
    if report.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(args: &Args, report: &mut Report) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix("sg-e2e-")
        .tempdir()
        .context("creating the work dir")?;
    let run_id = format!("{}", std::process::id());
    eprintln!(
        "e2e: runtime {}, work dir {}",
        args.runtime.display(),
        work.path().display()
    );
    let t = Instant::now();
    let images = images::build(work.path())?;
    report.add(
        "harness",
        "images",
        "OCI archives written (setgid probe compiled)",
        format!(
            "{} images: {}",
            images.cri.len(),
            images
                .cri
                .iter()
                .map(|(r, _)| *r)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        true,
        t,
    );
    let harness = Harness {
        work: work.path().to_path_buf(),
        runtime: args.runtime.clone(),
        installer: args.installer.clone(),
        patch: args.patch.clone(),
        images,
        run_id,
        pods_source: args.pods_source.clone(),
        latency_rounds: args.latency_rounds,
    };
    let mut oracle = strict_oracle::Oracle::default();
    let mut latency = latency::Table::default();
    for suite in &args.suites {
        let t = Instant::now();
        match suite.as_str() {
            "containerd" => {
                for line in &args.lines {
                    let t = Instant::now();
                    if let Err(e) =
                        containerd_suite::run(&harness, *line, &mut oracle, &mut latency, report)
                            .await
                    {
                        report.fail(containerd_suite::suite_name(*line), "suite", &e, t);
                    }
                }
                let table = oracle.conclude(report);
                report.sections.push(table);
                report.sections.push(latency.render(&harness.runtime));
            }
            _ => {
                let result = async {
                    let mut own =
                        PodSource::new(&args.pods_source, &work.path().join("podman-pods"))?;
                    podman_suite::run(&harness, &mut own, report).await
                }
                .await;
                if let Err(e) = result {
                    report.fail("podman+conmon", "suite", &e, t);
                }
            }
        }
    }
    if args.keep {
        let kept = work.keep();
        eprintln!("e2e: kept {}", kept.display());
    }
    Ok(())
}
