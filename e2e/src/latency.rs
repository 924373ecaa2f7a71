//! The latency a kubelet sees: `CreateContainer` + `StartContainer` of a container in a running
//! pod, and `ExecSync` of `true` in it, through a private containerd of each line — this
//! runtime (an enforced pod, its groups looked up once and cached) against runc, and crun
//! where it runs. Not pass/fail: a number to watch.
//!
//! crun 1.8 refuses this host's cgroup hybrid layout, so when `/sys/fs/cgroup/unified` is a
//! mount point the instance runs in a private mount namespace where it is unmounted; every
//! runtime of the instance then sees the same pure cgroup-v1 layout. Rounds are interleaved
//! (the order rotates each round) so that drift on a busy machine hits every runtime alike.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use test_support::containerd::{Containerd, ContainerdOptions};

use crate::containerd_config::{self, CRUN, CRUN_HANDLER, HANDLER, RUNC, RUNC_HANDLER};
use crate::containerd_suite::{LineRun, suite_name};
use crate::cri::{ContainerDecl, Cri, PodDecl, Sandbox};
use crate::images::{BYPASS_REF, PAUSE_REF};
use crate::pods::PodSource;
use crate::report::Report;
use crate::runtime_config::RuntimeConfig;

const UNIFIED: &str = "/sys/fs/cgroup/unified";
const NAMESPACE: &str = "e2e-latency";

/// Medians and 90th percentiles of one runtime on one line.
pub struct Row {
    pub containerd: String,
    pub runtime: String,
    pub rounds: usize,
    pub create_start: Vec<Duration>,
    pub exec: Vec<Duration>,
}

/// Every line's rows, and notes (where crun did not run, and why).
#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn render(&self, runtime: &Path) -> String {
        let mut out = String::new();
        if self.rows.is_empty() && self.notes.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "\nLatency a kubelet sees (private containerd, interleaved rounds; median / p90 in ms; \
             this runtime = {})\n",
            runtime.display()
        );
        let _ = writeln!(
            out,
            "| containerd | runtime | rounds | CreateContainer + StartContainer | ExecSync (`true`) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.containerd,
                r.runtime,
                r.rounds,
                median_p90(&r.create_start),
                median_p90(&r.exec)
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "\n{n}");
        }
        out
    }
}

fn median_p90(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "-".to_owned();
    }
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        // Nearest rank.
        let rank = (q * ms.len() as f64).ceil() as usize;
        ms[rank.clamp(1, ms.len()) - 1]
    };
    format!("{:.1} / {:.1}", at(0.5), at(0.9))
}

/// One runtime handler under measurement.
struct Handler {
    label: String,
    name: &'static str,
    pod: PodDecl,
    sandbox: Option<Sandbox>,
    create_start: Vec<Duration>,
    exec: Vec<Duration>,
    failure: Option<String>,
}

pub async fn run(run: &LineRun<'_>, table: &mut Table, report: &mut Report) {
    let suite = suite_name(run.line);
    let t = Instant::now();
    let result = measure(run, table).await;
    let (pass, got) = match result {
        Ok(summary) => (true, summary),
        Err(e) => (false, format!("{e:#}")),
    };
    report.add(
        suite,
        "latency: this runtime vs runc (and crun) through the CRI",
        format!(
            "{} interleaved rounds measured for this runtime and runc; instance torn down clean",
            run.h.latency_rounds
        ),
        got,
        pass,
        t,
    );
}

async fn measure(run: &LineRun<'_>, table: &mut Table) -> Result<String> {
    let (h, line, version, config) = (run.h, run.line, run.version.as_str(), &run.config);
    let dir = &run.dir.join("latency");
    std::fs::create_dir_all(dir)?;
    let mut source = PodSource::new(&h.pods_source, &dir.join("pods"))?;
    let runtime_config = RuntimeConfig::write(dir, &source, &dir.join("runtime.log"))?;
    let pod = |handler: &str| {
        let mut pod = PodDecl::new(
            NAMESPACE,
            &format!("latency-{handler}"),
            &format!("latency-{handler}-{}-{}", h.run_id, line.name()),
        );
        pod.supplemental_groups = vec![60000];
        pod
    };
    let cgroup_root = format!(
        "/strict-sg-e2e-{}-latency-{}",
        h.run_id,
        line.name().replace('.', "")
    );

    // crun needs the unified hierarchy out of sight; try that for the whole instance.
    let hybrid = is_mount_point(UNIFIED);
    let crun_installed = Path::new(CRUN).is_file();
    let mut note = None;
    let text = if crun_installed {
        containerd_config::with_crun(&config.text, line)?
    } else {
        note = Some(format!("crun not run: {CRUN} is not installed"));
        config.text.clone()
    };
    let options = |text: String| {
        ContainerdOptions::new(text)
            .line(line)
            .env(
                "STRICT_SUPPLEMENTALGROUPS_CONFIG",
                runtime_config.path().display().to_string(),
            )
            .cleanup_cgroup(cgroup_root.clone())
    };
    let (containerd, private_ns) = if hybrid {
        match Containerd::start(options(text.clone()).hide_mount(UNIFIED)) {
            Ok(c) => (c, true),
            Err(e) => {
                note = Some(format!(
                    "crun not run on containerd {version}: no private mount namespace without \
                     {UNIFIED} ({e:#}); runc and this runtime measured on the host's hybrid layout"
                ));
                (Containerd::start(options(config.text.clone()))?, false)
            }
        }
    } else {
        (Containerd::start(options(text))?, false)
    };
    let crun_usable = crun_installed && (private_ns || !hybrid);

    let result = async {
        for image in [&h.images.pause, &h.images.bypass] {
            containerd.import_image("k8s.io", image)?;
        }
        let mut cri = Cri::connect(containerd.socket(), Duration::from_secs(20)).await?;
        cri.wait_for_images(&[PAUSE_REF, BYPASS_REF], Duration::from_secs(20))
            .await?;
        let mut handlers = vec![
            Handler::new(
                "this runtime (enforced pod)".into(),
                HANDLER,
                pod("runtime"),
            ),
            Handler::new(
                format!("runc {}", containerd_config::tool_version(RUNC)),
                RUNC_HANDLER,
                pod("runc"),
            ),
        ];
        if crun_usable {
            handlers.push(Handler::new(
                format!("crun {}", containerd_config::tool_version(CRUN)),
                CRUN_HANDLER,
                pod("crun"),
            ));
        }
        let pods: Vec<PodDecl> = handlers.iter().map(|x| x.pod.clone()).collect();
        source.set_pods(&pods)?;
        let logs = dir.join("logs");
        for x in &mut handlers {
            let cgroup_parent = format!("{cgroup_root}/pod{}", x.pod.uid);
            match cri
                .run_pod_sandbox(&x.pod, x.name, &logs, &cgroup_parent)
                .await
            {
                Ok(s) => x.sandbox = Some(s),
                Err(s) => x.failure = Some(format!("RunPodSandbox: {}", s.message())),
            }
            // One unmeasured round: the shim is up, the pod's groups are cached, the page cache
            // is warm.
            if x.failure.is_none()
                && let Err(e) = x.round(&mut cri, "warmup").await
            {
                x.failure = Some(format!("{e:#}"));
            }
        }
        for round in 0..h.latency_rounds {
            let n = handlers.len();
            for i in 0..n {
                let x = &mut handlers[(i + round) % n];
                if x.failure.is_some() {
                    continue;
                }
                match x.round(&mut cri, &format!("c{round}")).await {
                    Ok((create_start, exec)) => {
                        x.create_start.push(create_start);
                        x.exec.push(exec);
                    }
                    Err(e) => x.failure = Some(format!("round {round}: {e:#}")),
                }
            }
        }
        for x in &handlers {
            if let Some(s) = &x.sandbox {
                let _ = cri.stop_pod_sandbox(&s.id).await;
                let _ = cri.remove_pod_sandbox(&s.id).await;
            }
        }
        Ok::<_, anyhow::Error>(handlers)
    }
    .await;
    let stopped = containerd.stop();
    crate::proc::reap_orphans(&[]);
    let handlers = result?;
    stopped.context("tearing down the latency instance")?;

    let mut summary = Vec::new();
    for x in &handlers {
        match &x.failure {
            Some(why) if x.name == CRUN_HANDLER => {
                note = Some(format!("crun not run on containerd {version}: {why}"));
            }
            Some(why) => bail!("{}: {why}", x.label),
            None => {}
        }
        if x.failure.is_none() {
            summary.push(format!(
                "{}: {} / {}",
                x.label,
                median_p90(&x.create_start),
                median_p90(&x.exec)
            ));
            table.rows.push(Row {
                containerd: version.to_owned(),
                runtime: x.label.clone(),
                rounds: x.create_start.len(),
                create_start: x.create_start.clone(),
                exec: x.exec.clone(),
            });
        }
    }
    if private_ns {
        summary.push(format!(
            "all runtimes in a private mount namespace without {UNIFIED}"
        ));
    }
    if let Some(n) = note {
        summary.push(n.clone());
        table.notes.push(n);
    }
    Ok(summary.join("; "))
}

impl Handler {
    fn new(label: String, name: &'static str, pod: PodDecl) -> Self {
        Self {
            label,
            name,
            pod,
            sandbox: None,
            create_start: Vec::new(),
            exec: Vec::new(),
            failure: None,
        }
    }

    /// CreateContainer + StartContainer, then ExecSync `true`; the container is removed
    /// afterwards (not timed).
    async fn round(&self, cri: &mut Cri, name: &str) -> Result<(Duration, Duration)> {
        let sandbox = self.sandbox.as_ref().context("no sandbox")?;
        let decl = ContainerDecl {
            name,
            image: BYPASS_REF,
            script: "exec sleep 3600",
        };
        let t0 = Instant::now();
        let id = cri
            .create_named_container(sandbox, &self.pod, &decl)
            .await
            .map_err(|s| anyhow::anyhow!("CreateContainer: {}", s.message()))?;
        let started = cri.start_container(&id).await;
        let create_start = t0.elapsed();
        let exec = match started {
            Ok(()) => {
                let t1 = Instant::now();
                let out = cri.exec_sync(&id, &["true"]).await;
                let elapsed = t1.elapsed();
                match out {
                    Ok((0, _, _)) => Ok(elapsed),
                    Ok((code, _, err)) => Err(anyhow::anyhow!("ExecSync true: exit {code} {err}")),
                    Err(s) => Err(anyhow::anyhow!("ExecSync: {}", s.message())),
                }
            }
            Err(s) => Err(anyhow::anyhow!("StartContainer: {}", s.message())),
        };
        let _ = cri.stop_container(&id).await;
        let removed = cri.remove_container(&id).await;
        let exec = exec?;
        removed.map_err(|s| anyhow::anyhow!("RemoveContainer: {}", s.message()))?;
        Ok((create_start, exec))
    }
}

/// Whether `path` is a mount point in this process's mount namespace.
fn is_mount_point(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(path))
}
