//! The runtime under a real containerd 1.6 CRI, driven over gRPC the way a kubelet drives it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use test_support::containerd::{CRI_PLUGIN, Containerd, ContainerdOptions, merge_config};

use crate::cri::{self, Cri, PodDecl, Sandbox};
use crate::groups::{self, show};
use crate::images::{BYPASS_REF, PAUSE_REF};
use crate::pods::{PodSource, toml_str};
use crate::report::Report;
use crate::{Harness, audit};

const SUITE: &str = "containerd";
/// The runtime handler name of patches/containerd-config-v2.toml.
pub const HANDLER: &str = "strict-supplementalgroups";
const PATCH_RUNTIME_TABLE: &str = "strict-supplementalgroups";
const NAMESPACE: &str = "e2e-tenant";
/// containerd namespace of the plain `ctr run` container (not the CRI's k8s.io).
const CTR_NAMESPACE: &str = "strict-sg-e2e";
/// What our runtime says, first words of the message, when a pod's groups are unknown.
pub const FAIL_CLOSED_TEXT: &str = "cannot determine the supplementary groups of pod";

/// The containerd config before the runtime handler is merged in.
fn base_config(cni_dir: &Path) -> String {
    format!(
        r#"version = 2

[plugins."{CRI_PLUGIN}"]
  sandbox_image = {pause}
  # root lacks CAP_SYS_RESOURCE on these machines: a negative oom_score_adj fails with EPERM
  restrict_oom_score_adj = true
  enable_selinux = false

  [plugins."{CRI_PLUGIN}".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."{CRI_PLUGIN}".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

  # no CNI here: pods use the host network; empty private dirs keep the host's CNI out
  [plugins."{CRI_PLUGIN}".cni]
    bin_dir = {cni_bin}
    conf_dir = {cni_conf}
"#,
        pause = toml_str(PAUSE_REF),
        cni_bin = toml_str(&cni_dir.join("bin").display().to_string()),
        cni_conf = toml_str(&cni_dir.join("net.d").display().to_string()),
    )
}

/// The repository's handler snippet with `BinaryName` pointed at `binary`.
fn handler_snippet(patch: &Path, binary: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(patch).with_context(|| format!("reading {}", patch.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", patch.display()))?;
    let options = doc
        .get_mut("plugins")
        .and_then(|t| t.get_mut(CRI_PLUGIN))
        .and_then(|t| t.get_mut("containerd"))
        .and_then(|t| t.get_mut("runtimes"))
        .and_then(|t| t.get_mut(PATCH_RUNTIME_TABLE))
        .and_then(|t| t.get_mut("options"))
        .and_then(toml_edit::Item::as_table_like_mut)
        .with_context(|| {
            format!(
                "{} has no [plugins.\"{CRI_PLUGIN}\".containerd.runtimes.{PATCH_RUNTIME_TABLE}.options]",
                patch.display()
            )
        })?;
    if options.get("BinaryName").is_none() {
        bail!("{} sets no BinaryName", patch.display());
    }
    options.insert("BinaryName", toml_edit::value(binary.display().to_string()));
    Ok(doc.to_string())
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
    fn new(run_id: &str) -> Self {
        let pod = |name: &str, sg: &[i64], fs: Option<i64>| PodDecl {
            namespace: NAMESPACE.into(),
            name: name.into(),
            uid: format!("{name}-{run_id}"),
            run_as_user: 1000,
            run_as_group: 1000,
            supplemental_groups: sg.to_vec(),
            fs_group: fs,
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
    report: &'a mut Report,
    containerd: &'a Containerd,
    cri: Cri,
    audit_log: PathBuf,
    cgroup_root: String,
    sandboxes: Vec<String>,
    containers: Vec<String>,
    /// A pod deliberately left running for the teardown: (sandbox, container, container pid).
    left_running: Option<(String, String, i32)>,
}

pub async fn run(h: &Harness, source: &mut PodSource, report: &mut Report) -> Result<()> {
    let t = Instant::now();
    let dir = h.work.join("containerd");
    std::fs::create_dir_all(dir.join("cni/bin"))?;
    std::fs::create_dir_all(dir.join("cni/net.d"))?;
    let audit_log = dir.join("runtime.log");
    let runtime_config = dir.join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        format!(
            "{}\n[logging]\nlog-file = {}\nlog-level = \"info\"\nlog-format = \"json\"\n",
            source.config_keys(),
            toml_str(&audit_log.display().to_string())
        ),
    )?;
    let config = merge_config(
        &base_config(&dir.join("cni")),
        &handler_snippet(&h.patch, &h.runtime)?,
    )?;
    let cgroup_root = format!("/strict-sg-e2e-{}", h.run_id);
    let containerd = Containerd::start(
        ContainerdOptions::new(config)
            .env(
                "STRICT_SUPPLEMENTALGROUPS_CONFIG",
                runtime_config.display().to_string(),
            )
            .cleanup_cgroup(cgroup_root.clone()),
    )?;
    eprintln!(
        "containerd pid {} at {} (log {})",
        containerd.pid(),
        containerd.socket().display(),
        containerd.log_path().display()
    );
    let result = async {
        for image in [&h.images.pause, &h.images.bypass] {
            let path = image.display().to_string();
            containerd.ctr_ok(&["-n", "k8s.io", "images", "import", &path])?;
        }
        containerd.ctr_ok(&[
            "-n",
            CTR_NAMESPACE,
            "images",
            "import",
            &h.images.bypass.display().to_string(),
        ])?;
        let mut cri = Cri::connect(containerd.socket(), Duration::from_secs(20)).await?;
        let version = cri.version().await?;
        for image in [PAUSE_REF, BYPASS_REF] {
            if !cri.image_present(image).await? {
                bail!("the CRI does not see the imported image {image}");
            }
        }
        report.add(
            SUITE,
            "setup: private containerd, images, handler",
            "CRI ready, pause + bypass images visible, handler from patches/",
            format!("{version}; pods from {}", source.describe()),
            true,
            t,
        );
        let mut suite = Suite {
            h,
            report: &mut *report,
            containerd: &containerd,
            cri,
            audit_log: audit_log.clone(),
            cgroup_root: cgroup_root.clone(),
            sandboxes: Vec::new(),
            containers: Vec::new(),
            left_running: None,
        };
        suite.scenarios(source).await;
        suite.lifecycle().await;
        Ok(suite.left_running.map(|(_, _, pid)| pid))
    }
    .await;
    let left_pid = match &result {
        Ok(pid) => *pid,
        Err(err) => {
            report.fail(SUITE, "setup: private containerd, images, handler", err, t);
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
        SUITE,
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
    Ok(())
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
    async fn scenarios(&mut self, source: &mut PodSource) {
        let pods = Pods::new(&self.h.run_id);
        if let Err(e) = source.set_pods(&pods.served()) {
            self.report
                .fail(SUITE, "serve the PodList", &e, Instant::now());
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
                SUITE,
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
        // 7. The kubelet is gone.
        let t = Instant::now();
        if let Err(e) = source.stop() {
            self.report.fail(SUITE, "stop the kubelet", &e, t);
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
                self.report.add(SUITE, name, expected, got, pass, t);
                Some(app)
            }
            Err(e) => {
                self.report
                    .add(SUITE, name, expected, format!("{e:#}"), false, t);
                None
            }
        }
    }

    async fn sandbox(&mut self, pod: &PodDecl) -> Result<Sandbox> {
        let cgroup_parent = format!("{}/pod{}", self.cgroup_root, pod.uid);
        let sandbox = self
            .cri
            .run_pod_sandbox(pod, HANDLER, &self.h.work.join("pods"), &cgroup_parent)
            .await
            .map_err(|s| anyhow::anyhow!("RunPodSandbox: {}", s.message()))?;
        self.sandboxes.push(sandbox.id.clone());
        Ok(sandbox)
    }

    async fn run_app(&mut self, pod: &PodDecl) -> Result<(String, Seen)> {
        let sandbox = self.sandbox(pod).await?;
        let app = self
            .cri
            .create_container(&sandbox, pod, BYPASS_REF, "id; exec sleep 3600")
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
            SUITE,
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
            SUITE,
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
            SUITE,
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
            let sandbox = self.sandbox(pod).await?;
            // containerd's CRI creates only metadata at CreateContainer; the OCI runtime's
            // `create` runs at StartContainer. Either call failing counts.
            let err = match self
                .cri
                .create_container(&sandbox, pod, BYPASS_REF, "id; exec sleep 3600")
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
        self.report.add(SUITE, name, expected, got, pass, t);
    }

    /// StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox for everything created,
    /// but the pod left running for the teardown.
    async fn lifecycle(&mut self) {
        let t = Instant::now();
        let mut problems = Vec::new();
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
            if let Err(s) = self.cri.stop_container(id).await {
                problems.push(format!("StopContainer {}: {}", short(id), s.message()));
            }
            if let Err(s) = self.cri.remove_container(id).await {
                problems.push(format!("RemoveContainer {}: {}", short(id), s.message()));
            }
        }
        for id in &sandboxes {
            if let Err(s) = self.cri.stop_pod_sandbox(id).await {
                problems.push(format!("StopPodSandbox {}: {}", short(id), s.message()));
            }
            if let Err(s) = self.cri.remove_pod_sandbox(id).await {
                problems.push(format!("RemovePodSandbox {}: {}", short(id), s.message()));
            }
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
            SUITE,
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

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
