//! The CRI, asked over its socket the way the kubelet asks it: `Version` (which containerd line
//! runs here), `Status` (is the runtime ready, and which handlers it serves) and
//! `ListPodSandbox` (which pods still run under the handler).
//!
//! The real protocol through its published bindings (`k8s-cri`, tonic) rather than a CLI: the
//! installer image then needs no crictl matching the node, and an answer is typed, not
//! scraped from text. Handlers are read from `StatusResponse.runtime_handlers` (containerd 2.x,
//! CRI-O 1.30+) and else from the verbose `config` info (containerd 1.6/1.7 list their runtimes
//! there).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// One Status answer, reduced to what the installer decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub runtime_ready: bool,
    /// Handlers the CRI says it serves; `None` when it does not say.
    pub handlers: Option<Vec<String>>,
    /// Why the runtime is not ready, when it is not.
    pub reason: String,
}

impl Health {
    /// Whether `handler` is served: `Some(false)` when the CRI lists its handlers without it.
    pub fn knows(&self, handler: &str) -> Option<bool> {
        self.handlers
            .as_ref()
            .map(|h| h.iter().any(|name| name == handler))
    }
}

pub struct CriClient {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl CriClient {
    /// `socket` is the path in this process's view (under the host root).
    pub fn new(socket: &Path) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the CRI client")?;
        Ok(Self {
            socket: socket.to_path_buf(),
            rt,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether something listens there at all.
    pub fn exists(&self) -> bool {
        self.socket.exists()
    }

    async fn connect(&self, timeout: Duration) -> Result<RuntimeServiceClient<Channel>> {
        let path = self.socket.clone();
        let channel =
            Endpoint::try_from("http://localhost")?
                .connect_timeout(timeout)
                .timeout(timeout)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .with_context(|| format!("connecting to {}", self.socket.display()))?;
        Ok(RuntimeServiceClient::new(channel))
    }

    /// (runtime name, runtime version), e.g. ("containerd", "v2.1.9").
    pub fn version(&self, timeout: Duration) -> Result<(String, String)> {
        self.rt.block_on(async {
            let mut client = self.connect(timeout).await?;
            let v = tokio::time::timeout(
                timeout,
                client.version(cri::VersionRequest {
                    version: "v1".into(),
                }),
            )
            .await
            .context("CRI Version timed out")?
            .map_err(|s| anyhow::anyhow!("CRI Version: {}", s.message()))?
            .into_inner();
            Ok((v.runtime_name, v.runtime_version))
        })
    }

    /// One Status call.
    pub fn health(&self, timeout: Duration) -> Result<Health> {
        self.rt.block_on(async {
            let mut client = self.connect(timeout).await?;
            let resp =
                tokio::time::timeout(timeout, client.status(cri::StatusRequest { verbose: true }))
                    .await
                    .context("CRI Status timed out")?
                    .map_err(|s| anyhow::anyhow!("CRI Status: {}", s.message()))?
                    .into_inner();
            Ok(health_of(&resp))
        })
    }

    /// Polls Status until the runtime is ready and, with `handler = Some((name, want))`, the
    /// handler is (`want`) or is not served, or `timeout` passes. Returns the last answer, or
    /// the last error.
    pub fn wait_for(&self, handler: Option<(&str, bool)>, timeout: Duration) -> Result<Health> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt =
                self.health(left.clamp(Duration::from_millis(200), Duration::from_secs(5)));
            if let Ok(h) = &attempt {
                let settled = h.runtime_ready
                    && handler.is_none_or(|(name, want)| h.knows(name).is_none_or(|k| k == want));
                if settled {
                    return attempt;
                }
            }
            if Instant::now() >= deadline {
                return attempt;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Ids of the ready pod sandboxes that run under `handler`.
    pub fn sandboxes_using(&self, handler: &str, timeout: Duration) -> Result<Vec<String>> {
        self.rt.block_on(async {
            let mut client = self.connect(timeout).await?;
            let items = tokio::time::timeout(
                timeout,
                client.list_pod_sandbox(cri::ListPodSandboxRequest {
                    filter: Some(cri::PodSandboxFilter {
                        state: Some(cri::PodSandboxStateValue {
                            state: cri::PodSandboxState::SandboxReady as i32,
                        }),
                        ..Default::default()
                    }),
                }),
            )
            .await
            .context("CRI ListPodSandbox timed out")?
            .map_err(|s| anyhow::anyhow!("CRI ListPodSandbox: {}", s.message()))?
            .into_inner()
            .items;
            Ok(items
                .into_iter()
                .filter(|s| s.runtime_handler == handler)
                .map(|s| {
                    s.metadata
                        .map(|m| format!("{}/{}", m.namespace, m.name))
                        .unwrap_or(s.id)
                })
                .collect())
        })
    }
}

fn health_of(resp: &cri::StatusResponse) -> Health {
    let conditions = resp
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let ready = conditions.iter().find(|c| c.r#type == "RuntimeReady");
    let runtime_ready = ready.is_some_and(|c| c.status);
    let reason = match ready {
        None => "no RuntimeReady condition".to_owned(),
        Some(c) if !c.status => format!("{}: {}", c.reason, c.message),
        Some(_) => String::new(),
    };
    let mut handlers: Option<Vec<String>> = None;
    if !resp.runtime_handlers.is_empty() {
        handlers = Some(
            resp.runtime_handlers
                .iter()
                .map(|h| h.name.clone())
                .filter(|n| !n.is_empty())
                .collect(),
        );
    } else if let Some(config) = resp.info.get("config") {
        handlers = handlers_in_config_info(config);
    }
    Health {
        runtime_ready,
        handlers,
        reason,
    }
}

/// containerd 1.x's verbose `config` info: the CRI plugin config as JSON, runtimes under
/// `containerdConfig.runtimes` (older field names tried too).
fn handlers_in_config_info(json: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    for path in [
        &["containerd", "runtimes"][..],
        &["containerdConfig", "runtimes"][..],
    ] {
        let mut item = &v;
        let mut found = true;
        for key in path {
            match item.get(key) {
                Some(next) => item = next,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if found && let Some(map) = item.as_object() {
            return Some(map.keys().cloned().collect());
        }
    }
    None
}

/// Waits for the socket to exist at all (after a restart it is recreated).
pub fn wait_socket(path: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() >= deadline {
            bail!("{} did not appear within {timeout:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_from_containerd_1_config_info() {
        let info = r#"{"containerd":{"snapshotter":"overlayfs","defaultRuntimeName":"runc","runtimes":{"runc":{},"strict":{}}}}"#;
        let mut h = handlers_in_config_info(info).unwrap();
        h.sort();
        assert_eq!(h, ["runc", "strict"]);
        assert_eq!(handlers_in_config_info("{}"), None);
        assert_eq!(handlers_in_config_info("not json"), None);
    }

    #[test]
    fn health_reads_conditions_and_handlers() {
        let resp = cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![cri::RuntimeCondition {
                    r#type: "RuntimeReady".into(),
                    status: true,
                    ..Default::default()
                }],
            }),
            runtime_handlers: vec![
                cri::RuntimeHandler {
                    name: String::new(),
                    features: None,
                },
                cri::RuntimeHandler {
                    name: "strict".into(),
                    features: None,
                },
            ],
            ..Default::default()
        };
        let h = health_of(&resp);
        assert!(h.runtime_ready);
        assert_eq!(h.knows("strict"), Some(true));
        assert_eq!(h.knows("other"), Some(false));
        let empty = health_of(&cri::StatusResponse::default());
        assert!(!empty.runtime_ready);
        assert_eq!(empty.knows("x"), None);
    }
}
