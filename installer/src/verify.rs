//! After a CRI restart: is the CRI serving again, and does it serve the handler (or, after an
//! uninstall, no longer serve it)? And the node label that follows from the answer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::Common;
use crate::containerd_layout::Major;
use crate::cri::{self, CriClient, Health};
use crate::detect::Cri;
use crate::hostfs::Host;
use crate::node_label::{ApiServer, Label};

const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
const CRIO_SOCKET: &str = "/run/crio/crio.sock";

pub struct Verifier {
    client: CriClient,
    shown: PathBuf,
    timeout: Duration,
    enabled: bool,
}

impl Verifier {
    pub fn new(host: &Host, common: &Common, cri: Cri) -> Result<Self> {
        let shown = common.cri_socket.clone().unwrap_or_else(|| {
            PathBuf::from(match cri {
                Cri::Containerd => CONTAINERD_SOCKET,
                Cri::Crio => CRIO_SOCKET,
            })
        });
        let client = CriClient::new(&host.path(&shown).context("--cri-socket")?)?;
        Ok(Self {
            client,
            shown,
            timeout: Duration::from_secs(common.verify_timeout.max(1)),
            enabled: !common.no_verify,
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// containerd's line as its CRI reports it; `None` when the CRI does not answer.
    pub fn containerd_major(&self) -> Option<(Major, String)> {
        if !self.client.exists() {
            return None;
        }
        let (_, version) = self.client.version(Duration::from_secs(5)).ok()?;
        Major::from_runtime_version(&version).map(|m| (m, version))
    }

    /// Waits until the CRI is ready and serves `handler` (`want`) or not (`!want`).
    pub fn expect(&self, handler: &str, want: bool) -> Result<Health> {
        cri::wait_socket(self.client.socket(), self.timeout)
            .with_context(|| format!("the CRI socket {}", self.shown.display()))?;
        let health = self
            .client
            .wait_for(Some((handler, want)), self.timeout)
            .with_context(|| format!("asking the CRI at {}", self.shown.display()))?;
        if !health.runtime_ready {
            bail!(
                "the CRI at {} is not ready after {:?} ({})",
                self.shown.display(),
                self.timeout,
                health.reason
            );
        }
        match health.knows(handler) {
            Some(known) if known != want => bail!(
                "the CRI at {} is ready but {} the runtime handler {handler:?} (it serves {:?})",
                self.shown.display(),
                if want {
                    "does not serve"
                } else {
                    "still serves"
                },
                health.handlers.clone().unwrap_or_default()
            ),
            Some(_) => println!(
                "verified: the CRI at {} is ready and {} handler {handler:?}",
                self.shown.display(),
                if want { "serves" } else { "no longer serves" }
            ),
            None => println!(
                "the CRI at {} is ready; it does not list its handlers, so {handler:?} is not \
                 checked by name",
                self.shown.display()
            ),
        }
        Ok(health)
    }

    /// Waits until the CRI is ready, whatever it serves (after a rollback).
    pub fn expect_ready(&self) -> Result<()> {
        cri::wait_socket(self.client.socket(), self.timeout)?;
        let health = self.client.wait_for(None, self.timeout)?;
        if !health.runtime_ready {
            bail!("the CRI is not ready ({})", health.reason);
        }
        Ok(())
    }

    /// Pods (namespace/name) running under `handler` right now.
    pub fn pods_using(&self, handler: &str) -> Result<Vec<String>> {
        self.client
            .sandboxes_using(handler, Duration::from_secs(10))
            .with_context(|| format!("listing pods at {}", self.shown.display()))
    }

    pub fn socket_exists(&self) -> bool {
        self.client.exists()
    }
}

/// The node label, when this runs for a node (`--node-name`).
pub struct NodeLabeler {
    node: Option<String>,
    label: Label,
    api: Option<ApiServer>,
}

impl NodeLabeler {
    pub fn new(common: &Common) -> Result<Self> {
        let label = Label::parse(&common.node_label).context("--node-label")?;
        let node = common.node_name.clone().filter(|n| !n.is_empty());
        let api = match (
            &node,
            common.kube_api.clone().or_else(ApiServer::in_cluster_url),
        ) {
            (Some(_), Some(url)) => Some(
                ApiServer::parse_url(&url, &common.kube_token_file, &common.kube_ca_file)
                    .context("--kube-api")?,
            ),
            (Some(node), None) => bail!(
                "--node-name {node:?} is given but no API server (--kube-api, or \
                 KUBERNETES_SERVICE_HOST in a pod) to label it with"
            ),
            (None, _) => None,
        };
        Ok(Self { node, label, api })
    }

    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    pub fn key(&self) -> &str {
        &self.label.key
    }

    /// Sets the label; says so either way.
    pub fn set(&self) -> Result<bool> {
        let (Some(node), Some(api)) = (&self.node, &self.api) else {
            println!("no --node-name: no node label set");
            return Ok(false);
        };
        api.label_node(node, &self.label.key, Some(&self.label.value))
            .with_context(|| format!("labelling node {node}"))?;
        println!(
            "labelled node {node} {}={}",
            self.label.key, self.label.value
        );
        Ok(true)
    }

    /// Removes `key` (the recorded one, else ours) from the node.
    pub fn remove(&self, key: Option<&str>) -> Result<()> {
        let (Some(node), Some(api)) = (&self.node, &self.api) else {
            return Ok(());
        };
        let key = key.unwrap_or(&self.label.key);
        api.label_node(node, key, None)
            .with_context(|| format!("removing the label {key} from node {node}"))?;
        println!("removed the label {key} from node {node}");
        Ok(())
    }
}
