//! strict-supplementalgroups-e2e: the runtime end to end, as a product.
//!
//! 1. builds a pause image and the seed's bypass image (OCI archives, no registry);
//! 2. starts a stand-in kubelet (TLS, client certificate required) serving the pods it creates;
//! 3. boots a private containerd 1.6 with the handler from `patches/` pointing at the runtime,
//!    and drives it over CRI like a kubelet: the seed's cases, the bypass pod, the sandbox, a
//!    plain `ctr run`, a pod served under another uid, the kubelet gone;
//! 4. runs the bypass image with podman + conmon the way CRI-O does (create, exec, exec -t,
//!    stop, rm);
//! 5. prints a table and exits non-zero when any scenario failed.
//!
//! Usage: `strict-supplementalgroups-e2e --runtime <binary> [--patch <file>]
//!         [--suite containerd|podman|all] [--pods-source kubelet|file] [--keep]`
//! (`--runtime` may also come from `STRICT_SG_E2E_RUNTIME`). Needs root.

mod audit;
mod containerd_suite;
mod cri;
mod groups;
mod images;
mod podman_suite;
mod pods;
mod proc;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::images::Images;
use crate::pods::PodSource;
use crate::report::Report;

/// What every suite needs.
pub struct Harness {
    /// This run's private directory.
    pub work: PathBuf,
    /// The runtime under test (absolute).
    pub runtime: PathBuf,
    /// `patches/containerd-config-v2.toml` of the repository.
    pub patch: PathBuf,
    pub images: Images,
    /// Unique per run: pod uids, cgroup names, container ids.
    pub run_id: String,
}

struct Args {
    runtime: PathBuf,
    patch: PathBuf,
    suites: Vec<String>,
    pods_source: String,
    keep: bool,
}

fn usage() -> &'static str {
    "usage: strict-supplementalgroups-e2e --runtime <binary> [--patch <containerd snippet>] \
     [--suite containerd|podman|all] [--pods-source kubelet|file] [--keep]"
}

fn parse_args() -> Result<Args> {
    let mut runtime = std::env::var_os("STRICT_SG_E2E_RUNTIME").map(PathBuf::from);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut patch = repo.join("patches/containerd-config-v2.toml");
    let mut suites = vec!["containerd".to_owned(), "podman".to_owned()];
    let mut pods_source = "kubelet".to_owned();
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--runtime" => runtime = Some(PathBuf::from(value("--runtime")?)),
            "--patch" => patch = PathBuf::from(value("--patch")?),
            "--suite" => {
                let v = value("--suite")?;
                suites = match v.as_str() {
                    "all" => vec!["containerd".into(), "podman".into()],
                    "containerd" | "podman" => vec![v],
                    other => bail!("unknown suite {other:?}\n{}", usage()),
                }
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
    Ok(Args {
        runtime,
        patch,
        suites,
        pods_source,
        keep,
    })
}

/// Fails early, with the package to install, when a tool is missing.
fn preflight(suites: &[String]) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the e2e harness needs root (containerd, mounts, cgroups)");
    }
    let mut needed = vec![
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
    ];
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
    if let Err(e) = preflight(&args.suites) {
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
    let mut source = match args.pods_source.as_str() {
        "file" => PodSource::file(work.path()),
        _ => PodSource::kubelet(&work.path().join("kubelet"))?,
    };
    report.add(
        "harness",
        "images + pod source",
        "OCI archives written; pod source up",
        format!("pause + bypass archives; {}", source.describe()),
        true,
        t,
    );
    let harness = Harness {
        work: work.path().to_path_buf(),
        runtime: args.runtime.clone(),
        patch: args.patch.clone(),
        images,
        run_id,
    };
    for suite in &args.suites {
        let t = Instant::now();
        let result = match suite.as_str() {
            "containerd" => containerd_suite::run(&harness, &mut source, report).await,
            _ => {
                // The containerd suite stops the kubelet in its last scenario: podman gets its
                // own source.
                let mut own = match args.pods_source.as_str() {
                    "file" => PodSource::file(&work.path().join("podman")),
                    _ => PodSource::kubelet(&work.path().join("podman-kubelet"))?,
                };
                podman_suite::run(&harness, &mut own, report).await
            }
        };
        if let Err(e) = result {
            report.fail(
                if suite == "containerd" {
                    "containerd"
                } else {
                    "podman"
                },
                "suite",
                &e,
                t,
            );
        }
    }
    drop(source);
    if args.keep {
        let kept = work.keep();
        eprintln!("e2e: kept {}", kept.display());
    }
    Ok(())
}
