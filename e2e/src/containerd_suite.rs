//! The runtime under a real containerd CRI — one line at a time (1.6, 1.7, 2.x) — driven over
//! gRPC the way a kubelet drives it: the seed's scenarios, the Strict comparison cases, and
//! the latency a kubelet sees.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use test_support::containerd::{Containerd, ContainerdLine, ContainerdOptions};

use crate::containerd_config::{self, HANDLER, LineConfig, RUNC, RUNC_HANDLER};
use crate::cri::{self, Cri, PodDecl, ReportedUser, Sandbox, short};
use crate::groups::{self, Identity, show};
use crate::images::{BYPASS_REF, SETGID_PROBE};
use crate::pods::PodSource;
use crate::report::Report;
use crate::runtime_config::RuntimeConfig;
use crate::strict_oracle::{self, Case, Observed, Oracle, Outcome};
use crate::{Harness, audit, latency};

const NAMESPACE: &str = "e2e-tenant";
/// containerd namespace of the plain `ctr run` container (not the CRI's k8s.io).
const CTR_NAMESPACE: &str = "strict-sg-e2e";
/// What our runtime says, first words of the message, when a pod's groups are unknown.
pub const FAIL_CLOSED_TEXT: &str = "cannot determine the supplementary groups of pod";

/// The report's suite name of a line.
pub fn suite_name(line: ContainerdLine) -> &'static str {
    match line {
        ContainerdLine::V1_6 => "containerd 1.6",
        ContainerdLine::V1_7 => "containerd 1.7",
        ContainerdLine::V2 => "containerd 2.x",
    }
}

/// `1.6.20~ds1` → `1.6.20`: the upstream version, for tables.
pub fn upstream_version(version: &str) -> &str {
    version.split(['~', '+']).next().unwrap_or(version)
}

/// The pods of this suite. Names are fixed; uids are unique per run.
struct Pods {
    allowed: PodDecl,
    restricted: PodDecl,
    bypass: PodDecl,
    mismatch: PodDecl,
    down: PodDecl,
}

impl Pods {
    fn new(run_id: &str, line: &str) -> Self {
        let pod = |name: &str, sg: &[i64], fs: Option<i64>| {
            let mut pod = PodDecl::new(NAMESPACE, name, &format!("{name}-{run_id}-{line}"));
            pod.supplemental_groups = sg.to_vec();
            pod.fs_group = fs;
            pod
        };
        Self {
            // The seed's first case: the image's 50000 is granted by the pod.
            allowed: pod("seed-allowed", &[50000], Some(60000)),
            // The seed's second case.
            restricted: pod("seed-restricted", &[50001], Some(50002)),
            bypass: pod("bypass-pod", &[60000], None),
            mismatch: pod("uid-mismatch", &[60000], None),
            down: pod("kubelet-down", &[60000], None),
        }
    }

    /// What the kubelet serves: every pod, but `uid-mismatch` under another uid (a same-named
    /// pod from another life).
    fn served(&self) -> Vec<PodDecl> {
        let mut other = self.mismatch.clone();
        other.uid = format!("{}-other", self.mismatch.uid);
        vec![
            self.allowed.clone(),
            self.restricted.clone(),
            self.bypass.clone(),
            other,
            self.down.clone(),
        ]
    }
}

struct Suite<'a> {
    h: &'a Harness,
    line: ContainerdLine,
    /// The upstream containerd version (`2.1.9`).
    version: String,
    report: &'a mut Report,
    containerd: &'a Containerd,
    cri: Cri,
    runtime_config: &'a RuntimeConfig,
    audit_log: PathBuf,
    cgroup_root: String,
    sandboxes: Vec<String>,
    containers: Vec<String>,
    /// A pod deliberately left running for the teardown: (sandbox, container, container pid).
    left_running: Option<(String, String, i32)>,
    /// Problems removing the comparison pods, reported with the lifecycle.
    cleanup_problems: Vec<String>,
}

/// What every phase of one line needs.
pub struct LineRun<'a> {
    pub h: &'a Harness,
    pub line: ContainerdLine,
    /// The upstream version (`2.1.9`), for tables.
    pub version: String,
    /// As `containerd --version` prints it (`2.1.9+unknown`).
    pub full_version: String,
    pub config: LineConfig,
    /// The line's work dir.
    pub dir: PathBuf,
}

/// One containerd line: its config (the handler as a node gets it), the scenarios and
/// comparison cases on a private instance, the latency phase, and for 2.x the installer's
/// uninstall.
pub async fn run(
    h: &Harness,
    line: ContainerdLine,
    oracle: &mut Oracle,
    latency: &mut latency::Table,
    report: &mut Report,
) -> Result<()> {
    let suite = suite_name(line);
    let t = Instant::now();
    line.check_installed()?;
    let full_version = line.version()?;
    let dir = h.work.join(format!("containerd-{}", line.name()));
    std::fs::create_dir_all(&dir)?;
    let config = containerd_config::for_line(h, line, &dir)?;
    let run = LineRun {
        h,
        line,
        version: upstream_version(&full_version).to_owned(),
        full_version,
        config,
        dir,
    };
    if let Some(install) = &run.config.install {
        report.add(
            suite,
            "installer registers the handler (v3 snippet)",
            "install --cri containerd … --no-restart succeeds; BinaryName = the installed copy",
            format!(
                "{}; BinaryName {}",
                install.output.trim().replace('\n', "; "),
                run.config.runtime.display()
            ),
            install
                .registered_text()
                .is_ok_and(|t| t.contains(&run.config.runtime.display().to_string())),
            t,
        );
    }
    let mut source = PodSource::new(&h.pods_source, &run.dir.join("pods"))?;
    scenario_instance(&run, &mut source, oracle, report).await;
    drop(source);
    if h.latency_rounds > 0 {
        latency::run(&run, latency, report).await;
    }
    if let Some(install) = &run.config.install {
        let t = Instant::now();
        let result = install.uninstall();
        report.add(
            suite,
            "installer uninstall restores the node",
            "config byte-for-byte as before install; installed runtime removed",
            match &result {
                Ok(out) => out.trim().replace('\n', "; "),
                Err(e) => format!("{e:#}"),
            },
            result.is_ok(),
            t,
        );
    }
    Ok(())
}

async fn scenario_instance(
    run: &LineRun<'_>,
    source: &mut PodSource,
    oracle: &mut Oracle,
    report: &mut Report,
) {
    let LineRun {
        h,
        line,
        version,
        full_version,
        config,
        dir,
    } = run;
    let (h, line) = (*h, *line);
    let suite = suite_name(line);
    let t = Instant::now();
    let audit_log = dir.join("runtime.log");
    let runtime_config = match RuntimeConfig::write(dir, source, &audit_log) {
        Ok(c) => c,
        Err(e) => return report.fail(suite, "setup: runtime config", &e, t),
    };
    let cgroup_root = format!(
        "/strict-sg-e2e-{}-{}",
        h.run_id,
        line.name().replace('.', "")
    );
    let containerd = match Containerd::start(
        ContainerdOptions::new(config.text.clone())
            .line(line)
            .env(
                "STRICT_SUPPLEMENTALGROUPS_CONFIG",
                runtime_config.path().display().to_string(),
            )
            .cleanup_cgroup(cgroup_root.clone()),
    ) {
        Ok(c) => c,
        Err(e) => return report.fail(suite, "setup: private containerd", &e, t),
    };
    eprintln!(
        "containerd {full_version} pid {} at {} (log {})",
        containerd.pid(),
        containerd.socket().display(),
        containerd.log_path().display()
    );
    let result = async {
        for (_, image) in &h.images.cri {
            containerd.import_image("k8s.io", image)?;
        }
        containerd.import_image(CTR_NAMESPACE, &h.images.bypass)?;
        let mut cri = Cri::connect(containerd.socket(), Duration::from_secs(20)).await?;
        let cri_version = cri.version().await?;
        let refs: Vec<&str> = h.images.cri.iter().map(|(r, _)| *r).collect();
        cri.wait_for_images(&refs, Duration::from_secs(20)).await?;
        report.add(
            suite,
            "setup: private containerd, images, handler",
            format!(
                "CRI ready, {} images visible, handler {}",
                h.images.cri.len(),
                if config.install.is_some() {
                    "from the installer"
                } else {
                    "from patches/"
                }
            ),
            format!("{cri_version}; pods from {}", source.describe()),
            true,
            t,
        );
        let mut suite = Suite {
            h,
            line,
            version: version.to_owned(),
            report: &mut *report,
            containerd: &containerd,
            cri,
            runtime_config: &runtime_config,
            audit_log: audit_log.clone(),
            cgroup_root: cgroup_root.clone(),
            sandboxes: Vec::new(),
            containers: Vec::new(),
            left_running: None,
            cleanup_problems: Vec::new(),
        };
        suite.scenarios(source, oracle).await;
        suite.lifecycle().await;
        Ok(suite.left_running.map(|(_, _, pid)| pid))
    }
    .await;
    let left_pid = match &result {
        Ok(pid) => *pid,
        Err(err) => {
            report.fail(suite, "setup: private containerd, images, handler", err, t);
            eprintln!("containerd log tail:\n{}", containerd.log_tail(40));
            None
        }
    };
    let t = Instant::now();
    let dir_path = containerd.dir().to_path_buf();
    let stopped = containerd.stop();
    // Shims that exited were reparented to this subreaper.
    crate::proc::reap_orphans(&[]);
    let mut leftovers = leftovers(&dir_path, &cgroup_root);
    if let Some(pid) = left_pid
        && Path::new(&format!("/proc/{pid}")).exists()
    {
        let msg = format!("container process {pid} of the pod left running survived");
        leftovers = Some(leftovers.map(|l| format!("{l}; {msg}")).unwrap_or(msg));
    }
    report.add(
        suite,
        "teardown: containerd, shims, mounts, cgroups gone",
        format!(
            "stop() ok, nothing left{}",
            if left_pid.is_some() {
                " (one pod was still running: killed with its shim)"
            } else {
                ""
            }
        ),
        match (&stopped, &leftovers) {
            (Ok(()), None) => "clean".to_owned(),
            (Err(e), _) => format!("{e:#}"),
            (_, Some(l)) => l.clone(),
        },
        stopped.is_ok() && leftovers.is_none(),
        t,
    );
}

/// What survived a teardown: shims still serving the socket, mounts, the cgroup parent, dirs.
fn leftovers(dir: &Path, cgroup_root: &str) -> Option<String> {
    let mut found = Vec::new();
    if dir.exists() {
        found.push(format!("{} still exists", dir.display()));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir_s = dir.display().to_string();
    if mountinfo.lines().any(|l| l.contains(&dir_s)) {
        found.push("mounts remain".into());
    }
    for hierarchy in [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/unified",
    ] {
        let p = Path::new(hierarchy).join(cgroup_root.trim_start_matches('/'));
        if p.exists() {
            found.push(format!("{} remains", p.display()));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("containerd-shim") && cmdline.contains(&dir_s) {
                found.push(format!("shim {} remains", e.file_name().to_string_lossy()));
            }
        }
    }
    (!found.is_empty()).then(|| found.join("; "))
}

/// Groups seen in the log and by ExecSync of one app container.
struct Seen {
    log: Option<Vec<u32>>,
    exec: Option<Vec<u32>>,
    /// `Groups:` of the container's init in /proc.
    proc: Option<Vec<u32>>,
    detail: String,
}

impl Suite<'_> {
    async fn scenarios(&mut self, source: &mut PodSource, oracle: &mut Oracle) {
        let pods = Pods::new(&self.h.run_id, self.line.name());
        let cases = strict_oracle::cases(&self.h.run_id, self.line.name());
        let mut served = pods.served();
        served.extend(cases.iter().map(|c| c.pod.clone()));
        if let Err(e) = source.set_pods(&served) {
            self.report.fail(
                suite_name(self.line),
                "serve the PodList",
                &e,
                Instant::now(),
            );
            return;
        }

        // 1. The seed's first case: 50000 is granted, so it stays. This pod is left running
        // for the teardown to kill (the path a failed run takes).
        if let Some(app) = self
            .expect_groups(
                "seed case 1: supplementalGroups [50000] + fsGroup 60000",
                &pods.allowed,
                &[1000, 50000, 60000],
            )
            .await
            && let (Some(sandbox), Ok(pid)) = (
                self.sandboxes.last().cloned(),
                self.cri.container_pid(&app).await,
            )
        {
            self.left_running = Some((sandbox, app, pid));
        }
        // 2. The seed's second case: 50000 (from the image) goes.
        self.expect_groups(
            "seed case 2: supplementalGroups [50001] + fsGroup 50002",
            &pods.restricted,
            &[1000, 50001, 50002],
        )
        .await;
        // 3. The bypass pod, and proof that its input had 50000.
        if let Some(app) = self
            .expect_groups(
                "bypass pod: supplementalGroups [60000]",
                &pods.bypass,
                &[1000, 60000],
            )
            .await
        {
            self.input_had_50000(&app).await;
        }
        // The runtime really asked the kubelet, with the node's client certificate.
        if let Some(seen) = source.seen() {
            let t = Instant::now();
            let pods_calls = seen.iter().filter(|(path, _)| path == "/pods").count();
            let cns: std::collections::BTreeSet<&str> =
                seen.iter().map(|(_, cn)| cn.as_str()).collect();
            self.report.add(
                suite_name(self.line),
                "the runtime asked the stand-in kubelet",
                "GET /pods with the node's client certificate (CN system:node:…)",
                format!(
                    "{pods_calls} of {} requests were GET /pods; client CNs {cns:?}",
                    seen.len()
                ),
                pods_calls > 0 && cns.iter().all(|cn| cn.starts_with("system:node:")),
                t,
            );
        }
        // 4. The sandbox of the bypass pod is passed through.
        if let Some(sandbox) = self.sandboxes.last().cloned() {
            self.sandbox_untouched(&sandbox).await;
        }
        // 5. `ctr run` without pod annotations is passed through.
        self.ctr_run_plain();
        // 6. The kubelet answers with another uid for the pod.
        self.expect_refusal(
            "uid mismatch: kubelet serves the pod under another uid",
            &pods.mismatch,
            "has uid",
        )
        .await;
        // 7. The Strict comparison cases (the kubelet is still up).
        oracle.set_cases(&cases);
        for case in &cases {
            self.compare(case, oracle).await;
        }
        if self.line == ContainerdLine::V2 {
            self.reported_user(oracle);
        }
        // 8. The kubelet is gone.
        let t = Instant::now();
        if let Err(e) = source.stop() {
            self.report
                .fail(suite_name(self.line), "stop the kubelet", &e, t);
        }
        let hint = source.name_in_errors();
        self.expect_refusal(
            "kubelet stopped: the container is refused",
            &pods.down,
            hint,
        )
        .await;
    }

    /// Sandbox + app container for `pod`; checks `id` in the log and through ExecSync.
    /// Returns the app container's id when it ran.
    async fn expect_groups(&mut self, name: &str, pod: &PodDecl, want: &[u32]) -> Option<String> {
        let t = Instant::now();
        let expected = format!(
            "log: groups={0}; exec: groups={0}; /proc Groups {0}",
            show(want)
        );
        match self.run_app(pod).await {
            Ok((app, seen)) => {
                let pass = seen.log.as_deref() == Some(want)
                    && seen.exec.as_deref() == Some(want)
                    && seen.proc.as_deref() == Some(want);
                let got = format!(
                    "log: groups={}; exec: groups={}; /proc Groups {}{}",
                    seen.log.as_deref().map(show).unwrap_or("?".into()),
                    seen.exec.as_deref().map(show).unwrap_or("?".into()),
                    seen.proc.as_deref().map(show).unwrap_or("?".into()),
                    if pass {
                        String::new()
                    } else {
                        format!(" ({})", seen.detail)
                    }
                );
                self.report
                    .add(suite_name(self.line), name, expected, got, pass, t);
                Some(app)
            }
            Err(e) => {
                self.report.add(
                    suite_name(self.line),
                    name,
                    expected,
                    format!("{e:#}"),
                    false,
                    t,
                );
                None
            }
        }
    }

    async fn sandbox(&mut self, pod: &PodDecl, handler: &str) -> Result<Sandbox> {
        let cgroup_parent = format!("{}/pod{}", self.cgroup_root, pod.uid);
        let logs = self.h.work.join(format!("pods-{}", self.line.name()));
        let sandbox = self
            .cri
            .run_pod_sandbox(pod, handler, &logs, &cgroup_parent)
            .await
            .map_err(|s| anyhow::anyhow!("RunPodSandbox: {}", s.message()))?;
        self.sandboxes.push(sandbox.id.clone());
        Ok(sandbox)
    }

    async fn run_app(&mut self, pod: &PodDecl) -> Result<(String, Seen)> {
        let sandbox = self.sandbox(pod, HANDLER).await?;
        let app = self
            .cri
            .create_container(&sandbox, pod, "id; exec sleep 3600")
            .await
            .map_err(|s| anyhow::anyhow!("CreateContainer: {}", s.message()))?;
        self.containers.push(app.clone());
        self.cri
            .start_container(&app)
            .await
            .map_err(|s| anyhow::anyhow!("StartContainer: {}", s.message()))?;
        let log_path = sandbox.log_dir.join("app/0.log");
        let line = cri::wait_log_line(&log_path, "uid=", Duration::from_secs(15)).await;
        let (code, stdout, stderr) = self
            .cri
            .exec_sync(&app, &["id"])
            .await
            .map_err(|s| anyhow::anyhow!("ExecSync: {}", s.message()))?;
        let proc = match self.cri.container_pid(&app).await {
            Ok(pid) => test_support::process::groups_of(pid).ok().map(|mut g| {
                g.sort_unstable();
                g.dedup();
                g
            }),
            Err(_) => None,
        };
        let seen = Seen {
            proc,
            log: line.as_deref().and_then(groups::from_id_output),
            exec: (code == 0)
                .then(|| groups::from_id_output(&stdout))
                .flatten(),
            detail: format!(
                "log line {:?}; exec exit {code} stdout {:?} stderr {:?}",
                line.unwrap_or_default(),
                stdout.trim(),
                stderr.trim()
            ),
        };
        Ok((app, seen))
    }

    /// The runtime's log says what containerd handed it, at create (config.json) and at exec
    /// (the exec process file): 50000 in, 50000 dropped.
    async fn input_had_50000(&mut self, app: &str) {
        let t = Instant::now();
        let mut pass = true;
        let mut got = Vec::new();
        for operation in ["create", "exec"] {
            match audit::decisions(&self.audit_log, app, operation).last() {
                Some(line) => {
                    let input = audit::gids(&line["input_gids"]);
                    let dropped = audit::gids(&line["dropped_gids"]);
                    pass &= input.contains(&50000) && dropped == [50000];
                    got.push(format!("{operation}: {}", audit::summary(line)));
                }
                None => {
                    pass = false;
                    got.push(format!(
                        "no {operation} decision for {} in {}",
                        short(app),
                        self.audit_log.display()
                    ));
                }
            }
        }
        self.report.add(
            suite_name(self.line),
            "bypass pod: containerd's config.json and exec process had 50000",
            "create and exec decisions: input_gids ∋ 50000, dropped_gids = 50000",
            got.join("; "),
            pass,
            t,
        );
    }

    /// The pause container runs with exactly the gids containerd put in its spec, and the
    /// runtime logged it as a passed-through sandbox.
    async fn sandbox_untouched(&mut self, sandbox: &str) {
        let t = Instant::now();
        let result: Result<(bool, String)> = async {
            let pid = self.cri.sandbox_pid(sandbox).await?;
            let mut running = test_support::process::groups_of(pid)?;
            running.sort_unstable();
            let spec_path = self
                .containerd
                .state()
                .join("io.containerd.runtime.v2.task/k8s.io")
                .join(sandbox)
                .join("config.json");
            let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&spec_path)?)?;
            let mut asked: Vec<u32> = spec["process"]["user"]["additionalGids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g.as_u64())
                        .map(|g| g as u32)
                        .collect()
                })
                .unwrap_or_default();
            asked.sort_unstable();
            asked.dedup();
            let decision = audit::decisions(&self.audit_log, sandbox, "create");
            let kind = decision
                .last()
                .map(|l| l["kind"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            Ok((
                running == asked && kind == "sandbox",
                format!(
                    "spec additionalGids {}, pause Groups {}, runtime: {}",
                    show(&asked),
                    show(&running),
                    decision
                        .last()
                        .map(audit::summary)
                        .unwrap_or_else(|| "no decision logged".into())
                ),
            ))
        }
        .await;
        let (pass, got) = result.unwrap_or_else(|e| (false, format!("{e:#}")));
        self.report.add(
            suite_name(self.line),
            "sandbox (pause) container untouched",
            "pause Groups = its spec's additionalGids; logged as passed-through sandbox",
            got,
            pass,
            t,
        );
    }

    /// An admin's `ctr run` of the bypass image through our runtime: no pod annotations, so
    /// nothing is filtered and the image's 50000 stays.
    fn ctr_run_plain(&mut self) {
        let t = Instant::now();
        let id = format!("plain-{}", self.h.run_id);
        let runtime = self.h.runtime.display().to_string();
        let runc_root = self.containerd.runc_root().display().to_string();
        let cgroup = format!("{}/{id}", self.cgroup_root);
        let fifo_dir = self.containerd.dir().join("fifo").display().to_string();
        let out = self.containerd.ctr(&[
            "-n",
            CTR_NAMESPACE,
            "run",
            "--rm",
            "--net-host",
            "--fifo-dir",
            &fifo_dir,
            "--runc-binary",
            &runtime,
            "--runc-root",
            &runc_root,
            "--cgroup",
            &cgroup,
            BYPASS_REF,
            &id,
            "id",
        ]);
        let (pass, got) = match out {
            Ok(out) => {
                let seen = groups::from_id_output(&out.stdout);
                let decision = audit::decisions(&self.audit_log, &id, "create");
                let kind = decision
                    .last()
                    .map(|l| l["kind"].as_str().unwrap_or_default().to_owned())
                    .unwrap_or_default();
                (
                    out.success()
                        && seen.as_deref() == Some(&[1000, 50000][..])
                        && kind == "unmanaged",
                    format!(
                        "exit {:?}, groups={}, runtime: {}{}",
                        out.code,
                        seen.as_deref().map(show).unwrap_or("?".into()),
                        decision
                            .last()
                            .map(audit::summary)
                            .unwrap_or_else(|| "no decision logged".into()),
                        if out.success() {
                            String::new()
                        } else {
                            format!(" stderr: {}", out.stderr.trim())
                        }
                    ),
                )
            }
            Err(e) => (false, format!("{e:#}")),
        };
        self.report.add(
            suite_name(self.line),
            "plain `ctr run` (no pod annotations) passes through",
            "groups=1000,50000 (image groups kept); logged as unmanaged",
            got,
            pass,
            t,
        );
    }

    /// The app container of `pod` must not run; the CRI error must carry our message.
    async fn expect_refusal(&mut self, name: &str, pod: &PodDecl, detail: &str) {
        let t = Instant::now();
        let expected = format!(
            "CreateContainer/StartContainer fails; CRI error contains {FAIL_CLOSED_TEXT:?}{}",
            if detail.is_empty() {
                String::new()
            } else {
                format!(" and {detail:?}")
            }
        );
        let result: Result<String> = async {
            let sandbox = self.sandbox(pod, HANDLER).await?;
            // containerd's CRI creates only metadata at CreateContainer; the OCI runtime's
            // `create` runs at StartContainer. Either call failing counts.
            let err = match self
                .cri
                .create_container(&sandbox, pod, "id; exec sleep 3600")
                .await
            {
                Err(status) => format!("CreateContainer: {}", status.message()),
                Ok(app) => {
                    self.containers.push(app.clone());
                    match self.cri.start_container(&app).await {
                        Err(status) => format!("StartContainer: {}", status.message()),
                        Ok(()) => {
                            let out = self.cri.exec_sync(&app, &["id"]).await;
                            let groups = out
                                .ok()
                                .and_then(|(_, o, _)| groups::from_id_output(&o))
                                .map(|g| show(&g))
                                .unwrap_or_default();
                            bail!("the container started (groups={groups})");
                        }
                    }
                }
            };
            Ok(err)
        }
        .await;
        let (pass, got) = match result {
            Ok(err) => (
                err.contains(FAIL_CLOSED_TEXT) && err.contains(detail),
                crate::report::focus(&err, FAIL_CLOSED_TEXT),
            ),
            Err(e) => (false, format!("{e:#}")),
        };
        self.report
            .add(suite_name(self.line), name, expected, got, pass, t);
    }

    /// Runs `case` through this runtime and, on containerd 2.x, its Strict baseline through runc;
    /// records both with the oracle.
    async fn compare(&mut self, case: &Case, oracle: &mut Oracle) {
        let (outcome, reported) = self
            .observe(&case.pod, HANDLER, case.runtime_config, case.probe)
            .await;
        eprintln!(
            "  {} / this runtime {}: {}",
            case.key,
            self.version,
            outcome.show()
        );
        oracle.record_runtime(&self.version, case.key, outcome);
        let mut reports = (None, reported);
        if self.line == ContainerdLine::V2 && case.runs_under_strict() {
            let (outcome, reported) = self
                .observe(&case.strict_pod(), RUNC_HANDLER, "", case.probe)
                .await;
            eprintln!("  {} / Strict: {}", case.key, outcome.show());
            let env = format!(
                "containerd {} + runc {}",
                self.version,
                containerd_config::tool_version(RUNC)
            );
            oracle.record_strict(&env, case.key, outcome);
            reports.0 = reported;
        }
        if self.line == ContainerdLine::V2 {
            oracle.reported.insert(case.key, reports);
        }
    }

    /// KEP-3619's `ContainerStatus.user` on containerd 2.x: for the bypass pod containerd
    /// reports the groups of the spec it generated — with Strict what was applied, with this
    /// runtime the merged list it filtered afterwards.
    fn reported_user(&mut self, oracle: &Oracle) {
        let t = Instant::now();
        let applied = match oracle.runtime_outcome(&self.version, "bypass") {
            Some(Outcome::Ran(o)) => Some(o.init.groups.clone()),
            _ => None,
        };
        let show_user = |u: &Option<ReportedUser>| match u {
            Some(u) => format!(
                "gid {} groups {}",
                u.gid,
                u.supplemental_groups
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None => "none".to_owned(),
        };
        let (strict, ours) = oracle.reported.get("bypass").cloned().unwrap_or_default();
        let ours_has_50000 = ours
            .as_ref()
            .is_some_and(|u| u.supplemental_groups.contains(&50000));
        let applied_has_50000 = applied.as_ref().is_some_and(|g| g.contains(&50000));
        let strict_plain = strict
            .as_ref()
            .is_some_and(|u| !u.supplemental_groups.contains(&50000));
        self.report.add(
            suite_name(self.line),
            "ContainerStatus.user reports containerd's computation, not what the runtime applied",
            "bypass pod: Strict reports no 50000; this runtime's pod reports 50000 (containerd's \
             merged spec) while its process has none",
            format!(
                "Strict reported {}; this runtime reported {}, applied {}",
                show_user(&strict),
                show_user(&ours),
                applied
                    .map(|g| show(&g.into_iter().collect::<Vec<_>>()))
                    .unwrap_or_else(|| "?".into())
            ),
            strict_plain && ours_has_50000 && !applied_has_50000,
            t,
        );
    }

    /// Sandbox and `app` container of `pod` under `handler`, with `runtime_config` keys set
    /// around the container's create and exec; what its init process and an exec show, and
    /// what the CRI reports as its user. The pod is removed afterwards.
    async fn observe(
        &mut self,
        pod: &PodDecl,
        handler: &str,
        runtime_config: &str,
        probe: bool,
    ) -> (Outcome, Option<ReportedUser>) {
        let sandbox = match self.sandbox(pod, handler).await {
            Ok(s) => s,
            Err(e) => return (Outcome::Broken(format!("{e:#}")), None),
        };
        // After the sandbox, so that a config the runtime rejects only fails the container.
        if !runtime_config.is_empty()
            && let Err(e) = self.runtime_config.set_variant(runtime_config)
        {
            return (Outcome::Broken(format!("{e:#}")), None);
        }
        let script = if probe {
            format!("{SETGID_PROBE}; exec sleep 3600")
        } else {
            "exec sleep 3600".to_owned()
        };
        let mut container = None;
        let outcome = async {
            let app = match self.cri.create_container(&sandbox, pod, &script).await {
                Ok(app) => app,
                Err(s) => return Outcome::Refused(format!("CreateContainer: {}", s.message())),
            };
            container = Some(app.clone());
            if let Err(s) = self.cri.start_container(&app).await {
                return Outcome::Refused(format!("StartContainer: {}", s.message()));
            }
            match self.observe_running(&sandbox, &app, probe).await {
                Ok(o) => Outcome::Ran(o),
                Err(e) => Outcome::Broken(format!("{e:#}")),
            }
        }
        .await;
        if !runtime_config.is_empty()
            && let Err(e) = self.runtime_config.restore()
        {
            self.cleanup_problems
                .push(format!("restoring the runtime config: {e:#}"));
        }
        let reported = match &container {
            Some(app) => self.cri.reported_user(app).await.ok().flatten(),
            None => None,
        };
        self.remove_pod(&sandbox.id, container.as_deref()).await;
        (outcome, reported)
    }

    async fn observe_running(
        &mut self,
        sandbox: &Sandbox,
        app: &str,
        probe: bool,
    ) -> Result<Observed> {
        let pid = self.cri.container_pid(app).await?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let init = Identity::from_status(&status)
            .ok_or_else(|| anyhow::anyhow!("no Gid/Groups in /proc/{pid}/status"))?;
        let (code, stdout, stderr) = self
            .cri
            .exec_sync(app, &["cat", "/proc/self/status"])
            .await
            .map_err(|s| anyhow::anyhow!("ExecSync: {}", s.message()))?;
        let exec = Identity::from_status(&stdout).ok_or_else(|| {
            anyhow::anyhow!("ExecSync cat /proc/self/status: exit {code}, stderr {stderr:?}")
        })?;
        let (mut probe_init, mut probe_exec) = (None, None);
        if probe {
            let log = sandbox.log_dir.join("app/0.log");
            probe_init = cri::wait_log_line(&log, "probe:", Duration::from_secs(15))
                .await
                .map(|l| probe_line(&l));
            let (_, out, err) = self
                .cri
                .exec_sync(app, &[SETGID_PROBE])
                .await
                .map_err(|s| anyhow::anyhow!("ExecSync {SETGID_PROBE}: {}", s.message()))?;
            probe_exec = out
                .lines()
                .find(|l| l.starts_with("probe:"))
                .map(probe_line)
                .or(Some(format!("no probe line (stderr {:?})", err.trim())));
        }
        Ok(Observed {
            init,
            exec,
            probe_init,
            probe_exec,
        })
    }

    /// StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox of one pod; problems go
    /// to the lifecycle row.
    async fn remove_pod(&mut self, sandbox: &str, container: Option<&str>) {
        if let Some(id) = container {
            let problems = self.cri.stop_and_remove_container(id).await;
            self.cleanup_problems.extend(problems);
        }
        let problems = self.cri.stop_and_remove_sandbox(sandbox).await;
        self.cleanup_problems.extend(problems);
        // `sandbox()` listed it for the lifecycle; it is gone already.
        self.sandboxes.retain(|s| s != sandbox);
    }

    /// StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox for everything created,
    /// but the pod left running for the teardown.
    async fn lifecycle(&mut self) {
        let t = Instant::now();
        let mut problems = std::mem::take(&mut self.cleanup_problems);
        let (keep_sandbox, keep_container) = match &self.left_running {
            Some((s, c, _)) => (s.clone(), c.clone()),
            None => (String::new(), String::new()),
        };
        let containers: Vec<String> = self
            .containers
            .iter()
            .filter(|c| **c != keep_container)
            .cloned()
            .collect();
        let sandboxes: Vec<String> = self
            .sandboxes
            .iter()
            .filter(|s| **s != keep_sandbox)
            .cloned()
            .collect();
        for id in &containers {
            problems.extend(self.cri.stop_and_remove_container(id).await);
        }
        for id in &sandboxes {
            problems.extend(self.cri.stop_and_remove_sandbox(id).await);
        }
        let kept = usize::from(self.left_running.is_some());
        let left_sandboxes = self
            .cri
            .list_sandboxes()
            .await
            .map(|v| v.len())
            .unwrap_or(99);
        let left_containers = self
            .cri
            .list_containers()
            .await
            .map(|v| v.len())
            .unwrap_or(99);
        if left_sandboxes != kept || left_containers != kept {
            problems.push(format!(
                "still listed: {left_sandboxes} sandboxes, {left_containers} containers \
                 (expected {kept} of each)"
            ));
        }
        self.report.add(
            suite_name(self.line),
            "StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox",
            format!(
                "{} containers and {} sandboxes stopped and removed{}",
                containers.len(),
                sandboxes.len(),
                if kept > 0 {
                    "; seed case 1's pod left running for the teardown"
                } else {
                    ""
                }
            ),
            if problems.is_empty() {
                "all calls succeeded; nothing else listed".to_owned()
            } else {
                problems.join("; ")
            },
            problems.is_empty(),
            t,
        );
    }
}

/// `probe: rgid=1000 egid=50000 read=ok` → `rgid=1000 egid=50000 read=ok`.
fn probe_line(line: &str) -> String {
    line.trim_start_matches("probe:").trim().to_owned()
}
