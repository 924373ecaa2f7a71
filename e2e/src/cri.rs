//! A CRI client that makes the calls a kubelet makes, with the fields a kubelet sets for a pod
//! with a security context (`runAsUser`, `runAsGroup`, `supplementalGroups`, `fsGroup` folded
//! into the supplemental groups), host networking and a RuntimeClass handler.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{self as cri, NamespaceMode};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// A pod as the harness declares it (the same values go to the stand-in kubelet's PodList, and
/// the kubelet's translation of them to the CRI).
#[derive(Clone, Debug)]
pub struct PodDecl {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The image of its one container, `app`.
    pub image: String,
    pub run_as_user: i64,
    /// `None`: no `runAsGroup`, so containerd takes the primary gid from the image's passwd.
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub fs_group: Option<i64>,
    /// The container's `securityContext.allowPrivilegeEscalation` (CRI `no_new_privs` is its
    /// negation; unset means false, Kubernetes' default).
    pub allow_privilege_escalation: Option<bool>,
    /// PersistentVolumeClaims the pod mounts, each bound to a PersistentVolume.
    pub volumes: Vec<ClaimedVolume>,
    /// `securityContext.supplementalGroupsPolicy: Strict` (else Merge, the default).
    pub strict: bool,
}

/// A `persistentVolumeClaim` volume of a pod and the PersistentVolume bound to it.
#[derive(Clone, Debug)]
pub struct ClaimedVolume {
    pub claim: String,
    pub claim_uid: String,
    pub volume: String,
    /// The PV's `pv.beta.kubernetes.io/gid` annotation, which the kubelet adds to the CRI
    /// supplemental groups.
    pub gid: Option<i64>,
}

impl PodDecl {
    /// The seed's pod shape: the bypass image, runAsUser/runAsGroup 1000, no groups yet.
    pub fn new(namespace: &str, name: &str, uid: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            image: crate::images::BYPASS_REF.into(),
            run_as_user: 1000,
            run_as_group: Some(1000),
            supplemental_groups: Vec::new(),
            fs_group: None,
            allow_privilege_escalation: None,
            volumes: Vec::new(),
            strict: false,
        }
    }

    /// What the kubelet hands the CRI: supplementalGroups, then fsGroup, then the gid of every
    /// PersistentVolume the pod mounts (duplicates kept, as the kubelet keeps them).
    pub fn cri_supplemental_groups(&self) -> Vec<i64> {
        let mut groups = self.supplemental_groups.clone();
        groups.extend(self.fs_group);
        groups.extend(self.volumes.iter().filter_map(|v| v.gid));
        groups
    }

    fn groups_policy(&self) -> i32 {
        if self.strict {
            cri::SupplementalGroupsPolicy::Strict as i32
        } else {
            cri::SupplementalGroupsPolicy::Merge as i32
        }
    }

    /// CRI `no_new_privs`: set exactly when `allowPrivilegeEscalation` is false.
    fn no_new_privs(&self) -> bool {
        self.allow_privilege_escalation == Some(false)
    }

    /// This pod as an item of a kubelet `/pods` PodList.
    pub fn pod_json(&self) -> serde_json::Value {
        let mut ctx = serde_json::json!({
            "runAsUser": self.run_as_user,
            "supplementalGroups": self.supplemental_groups,
        });
        if let Some(group) = self.run_as_group {
            ctx["runAsGroup"] = group.into();
        }
        if let Some(fs) = self.fs_group {
            ctx["fsGroup"] = fs.into();
        }
        if self.strict {
            ctx["supplementalGroupsPolicy"] = "Strict".into();
        }
        let mut container = serde_json::json!({"name": "app", "image": self.image});
        if let Some(allow) = self.allow_privilege_escalation {
            container["securityContext"] = serde_json::json!({"allowPrivilegeEscalation": allow});
        }
        let mut spec = serde_json::json!({"securityContext": ctx});
        if !self.volumes.is_empty() {
            container["volumeMounts"] = self
                .volumes
                .iter()
                .map(|v| serde_json::json!({"name": v.claim, "mountPath": format!("/data/{}", v.claim)}))
                .collect();
            spec["volumes"] = self
                .volumes
                .iter()
                .map(|v| {
                    serde_json::json!({"name": v.claim, "persistentVolumeClaim": {"claimName": v.claim}})
                })
                .collect();
        }
        spec["containers"] = serde_json::json!([container]);
        serde_json::json!({
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
            "spec": spec,
            "status": {"phase": "Pending"}
        })
    }

    /// The PersistentVolumeClaims and PersistentVolumes of this pod, as the API server serves
    /// them.
    pub fn volume_objects(&self) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
        let mut claims = Vec::new();
        let mut volumes = Vec::new();
        for v in &self.volumes {
            claims.push(test_support::kubelet::pvc(
                &self.namespace,
                &v.claim,
                &v.claim_uid,
                &v.volume,
            ));
            let gid = v.gid.map(|g| g.to_string());
            volumes.push(test_support::kubelet::pv(
                &v.volume,
                gid.as_deref(),
                &self.namespace,
                &v.claim,
                &v.claim_uid,
            ));
        }
        (claims, volumes)
    }
}

/// A PodList document of `pods`.
pub fn pod_list(pods: &[PodDecl]) -> serde_json::Value {
    serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": pods.iter().map(PodDecl::pod_json).collect::<Vec<_>>(),
    })
}

/// The container a CreateContainer call makes: `sh -c <script>` in `image`, named `name` in
/// its pod.
pub struct ContainerDecl<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub script: &'a str,
}

/// What containerd reports in `ContainerStatus.user` (KEP-3619): the identity it computed for
/// the container's spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedUser {
    pub uid: i64,
    pub gid: i64,
    pub supplemental_groups: Vec<i64>,
}

pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// A started sandbox and the config it was started with (CreateContainer needs it again).
pub struct Sandbox {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub log_dir: PathBuf,
}

impl Cri {
    /// Connects to a CRI endpoint on a unix socket and waits until the runtime reports ready
    /// (containerd's CRI plugin initialises after its socket is up).
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self> {
        let path = socket.to_path_buf();
        let channel =
            Endpoint::try_from("http://localhost")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .with_context(|| format!("connecting to {}", socket.display()))?;
        let mut me = Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        };
        let deadline = Instant::now() + timeout;
        loop {
            match me
                .runtime
                .status(cri::StatusRequest { verbose: false })
                .await
            {
                Ok(resp) => {
                    let ready = resp
                        .into_inner()
                        .status
                        .map(|s| {
                            s.conditions
                                .iter()
                                .any(|c| c.r#type == "RuntimeReady" && c.status)
                        })
                        .unwrap_or(false);
                    if ready {
                        return Ok(me);
                    }
                }
                Err(status) if Instant::now() > deadline => {
                    bail!("CRI not ready: {}", status.message())
                }
                Err(_) => {}
            }
            if Instant::now() > deadline {
                bail!("CRI runtime not ready after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn version(&mut self) -> Result<String> {
        let v = self
            .runtime
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await?
            .into_inner();
        Ok(format!(
            "{} {} (CRI {})",
            v.runtime_name, v.runtime_version, v.runtime_api_version
        ))
    }

    /// Waits until the image service knows every one of `images`. containerd's CRI learns of an
    /// image imported with `ctr` from an event, a moment after the import returns (containerd
    /// 2.x under load: seen missing right after).
    pub async fn wait_for_images(&mut self, images: &[&str], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for image in images {
            while !self.image_present(image).await? {
                if Instant::now() > deadline {
                    bail!("the CRI does not see the imported image {image} after {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Whether the image service knows `image` (an imported image must be visible to the CRI).
    pub async fn image_present(&mut self, image: &str) -> Result<bool> {
        let resp = self
            .images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await?
            .into_inner();
        Ok(resp.image.is_some())
    }

    fn sandbox_security(pod: &PodDecl) -> cri::LinuxSandboxSecurityContext {
        cri::LinuxSandboxSecurityContext {
            namespace_options: Some(namespace_options(NamespaceMode::Pod)),
            run_as_user: Some(cri::Int64Value {
                value: pod.run_as_user,
            }),
            run_as_group: pod.run_as_group.map(|value| cri::Int64Value { value }),
            supplemental_groups: pod.cri_supplemental_groups(),
            supplemental_groups_policy: pod.groups_policy(),
            ..Default::default()
        }
    }

    /// RunPodSandbox as the kubelet sends it for `pod` (host network, cgroupfs parent).
    pub async fn run_pod_sandbox(
        &mut self,
        pod: &PodDecl,
        handler: &str,
        log_root: &Path,
        cgroup_parent: &str,
    ) -> Result<Sandbox, tonic::Status> {
        let log_dir = log_root.join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid));
        let _ = std::fs::create_dir_all(&log_dir);
        let labels: HashMap<String, String> = [
            ("io.kubernetes.pod.name", pod.name.as_str()),
            ("io.kubernetes.pod.namespace", pod.namespace.as_str()),
            ("io.kubernetes.pod.uid", pod.uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                attempt: 0,
            }),
            hostname: String::new(),
            log_directory: log_dir.display().to_string(),
            labels,
            annotations: HashMap::from([(
                "kubernetes.io/config.source".to_owned(),
                "api".to_owned(),
            )]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.to_owned(),
                security_context: Some(Self::sandbox_security(pod)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: handler.to_owned(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        Ok(Sandbox {
            id,
            config,
            log_dir,
        })
    }

    /// CreateContainer of the pod's `app` container: its image, `sh -c <script>`.
    pub async fn create_container(
        &mut self,
        sandbox: &Sandbox,
        pod: &PodDecl,
        script: &str,
    ) -> Result<String, tonic::Status> {
        let container = ContainerDecl {
            name: "app",
            image: &pod.image,
            script,
        };
        self.create_named_container(sandbox, pod, &container).await
    }

    /// CreateContainer as the kubelet sends it for `container` of `pod` (log in
    /// `<name>/0.log` of the sandbox's log directory).
    pub async fn create_named_container(
        &mut self,
        sandbox: &Sandbox,
        pod: &PodDecl,
        container: &ContainerDecl<'_>,
    ) -> Result<String, tonic::Status> {
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: container.name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: container.image.into(),
                ..Default::default()
            }),
            command: vec!["sh".into(), "-c".into()],
            args: vec![container.script.into()],
            labels: HashMap::from([
                (
                    "io.kubernetes.container.name".to_owned(),
                    container.name.to_owned(),
                ),
                ("io.kubernetes.pod.name".to_owned(), pod.name.clone()),
                (
                    "io.kubernetes.pod.namespace".to_owned(),
                    pod.namespace.clone(),
                ),
                ("io.kubernetes.pod.uid".to_owned(), pod.uid.clone()),
            ]),
            log_path: format!("{}/0.log", container.name),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(namespace_options(NamespaceMode::Container)),
                    run_as_user: Some(cri::Int64Value {
                        value: pod.run_as_user,
                    }),
                    run_as_group: pod.run_as_group.map(|value| cri::Int64Value { value }),
                    supplemental_groups: pod.cri_supplemental_groups(),
                    supplemental_groups_policy: pod.groups_policy(),
                    no_new_privs: pod.no_new_privs(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(self
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.id.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox.config.clone()),
            })
            .await?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.into(),
            })
            .await?;
        Ok(())
    }

    /// ExecSync; returns (exit code, stdout, stderr).
    pub async fn exec_sync(
        &mut self,
        id: &str,
        cmd: &[&str],
    ) -> Result<(i32, String, String), tonic::Status> {
        let resp = self
            .runtime
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
                timeout: 20,
            })
            .await?
            .into_inner();
        Ok((
            resp.exit_code,
            String::from_utf8_lossy(&resp.stdout).into_owned(),
            String::from_utf8_lossy(&resp.stderr).into_owned(),
        ))
    }

    /// The container's pid (from the verbose status info), for /proc checks.
    pub async fn container_pid(&mut self, id: &str) -> Result<i32> {
        let resp = self
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await?
            .into_inner();
        info_pid(&resp.info)
    }

    /// `ContainerStatus.user`: what the CRI reports as the container's identity (containerd
    /// 2.x fills it from the spec it generated; older lines leave it empty).
    pub async fn reported_user(&mut self, id: &str) -> Result<Option<ReportedUser>> {
        let resp = self
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner();
        Ok(resp
            .status
            .and_then(|s| s.user)
            .and_then(|u| u.linux)
            .map(|l| ReportedUser {
                uid: l.uid,
                gid: l.gid,
                supplemental_groups: l.supplemental_groups,
            }))
    }

    pub async fn sandbox_pid(&mut self, id: &str) -> Result<i32> {
        let resp = self
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: true,
            })
            .await?
            .into_inner();
        info_pid(&resp.info)
    }

    pub async fn stop_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout: 0,
            })
            .await?;
        Ok(())
    }

    pub async fn remove_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await?;
        Ok(())
    }

    pub async fn stop_pod_sandbox(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await?;
        Ok(())
    }

    /// StopContainer, then RemoveContainer of `id`: what failed, as `<call> <id>: <message>`.
    pub async fn stop_and_remove_container(&mut self, id: &str) -> Vec<String> {
        let stopped = self.stop_container(id).await;
        let removed = self.remove_container(id).await;
        failed_calls(
            id,
            [("StopContainer", stopped), ("RemoveContainer", removed)],
        )
    }

    /// StopPodSandbox, then RemovePodSandbox of `id`: what failed, as `<call> <id>: <message>`.
    pub async fn stop_and_remove_sandbox(&mut self, id: &str) -> Vec<String> {
        let stopped = self.stop_pod_sandbox(id).await;
        let removed = self.remove_pod_sandbox(id).await;
        failed_calls(
            id,
            [("StopPodSandbox", stopped), ("RemovePodSandbox", removed)],
        )
    }

    /// Ids of every sandbox the runtime knows (for cleanup).
    pub async fn list_sandboxes(&mut self) -> Result<Vec<String>> {
        Ok(self
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await?
            .into_inner()
            .items
            .into_iter()
            .map(|s| s.id)
            .collect())
    }

    /// Ids of every container the runtime knows (for cleanup).
    pub async fn list_containers(&mut self) -> Result<Vec<String>> {
        Ok(self
            .runtime
            .list_containers(cri::ListContainersRequest { filter: None })
            .await?
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect())
    }
}

/// `<call> <id>: <message>` of each call that failed.
fn failed_calls(id: &str, calls: [(&str, Result<(), tonic::Status>); 2]) -> Vec<String> {
    calls
        .into_iter()
        .filter_map(|(call, r)| {
            r.err()
                .map(|s| format!("{call} {}: {}", short(id), s.message()))
        })
        .collect()
}

/// The first 12 characters of a sandbox or container id, as crictl shows them.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn namespace_options(pid: NamespaceMode) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: pid as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn info_pid(info: &HashMap<String, String>) -> Result<i32> {
    let text = info.get("info").context("no verbose info")?;
    let v: serde_json::Value = serde_json::from_str(text).context("parsing verbose info")?;
    v["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
        .context("verbose info has no pid")
}

/// The `F`ull stdout lines of a CRI log file (`<time> <stream> <tag> <text>`).
pub fn read_cri_log(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let _time = parts.next()?;
            let stream = parts.next()?;
            let _tag = parts.next()?;
            (stream == "stdout").then(|| parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// Waits until the container log has a line starting with `prefix`; returns it.
pub async fn wait_log_line(path: &Path, prefix: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(line) = read_cri_log(path)
            .into_iter()
            .find(|l| l.starts_with(prefix))
        {
            return Some(line);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
