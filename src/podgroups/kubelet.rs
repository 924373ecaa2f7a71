//! The kubelet source: `GET {kubelet-url}/pods` with the node's client certificate, the
//! kubelet's serving certificate verified, bounded in time, and only the needed fields of each
//! pod parsed (see `podscan`).
//!
//! Trust, in order: `insecure-skip-tls-verify = true` (verification off, warned on every use);
//! `kubelet-ca-file` (a CA bundle, or the kubelet's self-signed
//! `/var/lib/kubelet/pki/kubelet.crt` itself); the kubeconfig cluster's CA (right when the
//! kubelet's serving certificate comes from the cluster CA, `serverTLSBootstrap: true`).
//!
//! Name: the certificate must be valid for `kubelet-tls-server-name` when set, else for the
//! URL's host. The kubelet's self-signed certificate names only the node's hostname, so when
//! the URL's host is loopback and no name is configured, this node's hostname is accepted too.
//!
//! A pod whose containers use PersistentVolumeClaims needs its volumes' gids too; the kubelet
//! does not serve claims and volumes, so they are read from the API server with the same node
//! identity (`apiserver::ApiClaimStore`). Pods without claims make no second request.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, anyhow};

use super::apiserver::{ApiClaimStore, api_client};
use super::https::{Budget, Endpoint, HttpsClient, Permission, TlsSetup, Trust, check_status};
use super::kubeconfig::{Kubeconfig, read_certs};
use super::podlist::{find_pod, groups_of};
use super::podscan;
use super::volumes::{claims_of, volume_gids};
use crate::config::HttpSourceConfig;
use crate::pod::{LookupError, PodGroups, PodGroupsSource, PodRef, VolumeClaimRef};

pub const SOURCE_NAME: &str = "kubelet";

pub struct KubeletSource {
    config: HttpSourceConfig,
}

impl KubeletSource {
    pub fn new(config: HttpSourceConfig) -> Self {
        Self { config }
    }

    /// Reads the kubeconfig and trust anchors and prepares TLS; sends nothing.
    pub fn client(&self) -> anyhow::Result<HttpsClient> {
        let endpoint = Endpoint::parse(&self.config.kubelet_url).context("kubelet-url")?;
        let kubeconfig = Kubeconfig::load(&self.config.kubeconfig)?;
        let identity = kubeconfig.client_identity()?;
        let trust = if self.config.insecure_skip_tls_verify {
            Trust::InsecureSkipVerify
        } else if let Some(ca_file) = &self.config.ca_file {
            Trust::Anchors {
                certs: read_ca_file(ca_file)?,
                origin: format!("kubelet-ca-file {}", ca_file.display()),
            }
        } else if let Some((certs, origin)) = kubeconfig.ca_certs()? {
            Trust::Anchors { certs, origin }
        } else {
            anyhow::bail!(
                "nothing to verify the kubelet's serving certificate with: set kubelet-ca-file \
                 (the CA that issued it, or the kubelet's self-signed \
                 /var/lib/kubelet/pki/kubelet.crt){}",
                if kubeconfig.insecure_skip_tls_verify {
                    "; the kubeconfig's insecure-skip-tls-verify is not honoured, only this \
                     runtime's own insecure-skip-tls-verify = true is"
                } else {
                    ""
                }
            );
        };
        HttpsClient::new(
            endpoint,
            TlsSetup {
                trust,
                identity,
                server_name: self.config.tls_server_name.clone(),
                loopback_alternatives: node_hostnames(),
                server_name_key: "kubelet-tls-server-name",
            },
        )
    }

    pub fn budget(&self, started: Instant) -> Budget {
        Budget {
            request_timeout: self.config.request_timeout,
            retries: self.config.retries,
            deadline: started + self.config.lookup_deadline,
        }
    }
}

pub fn read_ca_file(
    path: &Path,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    read_certs(&pem).with_context(|| path.display().to_string())
}

/// The names a kubelet's self-signed serving certificate may carry for this node: its
/// hostname as the kubelet derives it (trimmed, lower-cased).
fn node_hostnames() -> Vec<String> {
    let Ok(raw) = std::fs::read_to_string("/proc/sys/kernel/hostname") else {
        return Vec::new();
    };
    let raw = raw.trim();
    let lower = raw.to_ascii_lowercase();
    let mut names = vec![lower.clone()];
    if raw != lower {
        names.push(raw.to_owned());
    }
    names.retain(|n| !n.is_empty());
    names
}

impl PodGroupsSource for KubeletSource {
    fn describe(&self) -> String {
        format!("kubelet {}", self.config.kubelet_url)
    }

    fn lookup(&self, pod: &PodRef) -> Result<PodGroups, LookupError> {
        let started = Instant::now();
        let fail = |cause: anyhow::Error| LookupError::Source {
            pod: pod.clone(),
            source_name: SOURCE_NAME,
            cause,
        };
        let client = self.client().map_err(|e| {
            fail(e.context(format!(
                "preparing to ask the kubelet at {}",
                self.config.kubelet_url
            )))
        })?;
        let response = client
            .get("/pods", &self.budget(started))
            .map_err(|e| fail(anyhow!(e)))?;
        check_status(
            &response,
            &format!("the kubelet at {}", self.config.kubelet_url),
            "/pods",
            &self.config.kubeconfig,
            Permission::NodesProxy,
        )
        .map_err(fail)?;
        let list = podscan::scan_pod_list(&response.body, pod).map_err(|e| {
            fail(anyhow!(
                "the kubelet at {} answered GET /pods with something that is not a PodList \
                 ({e}): {}",
                self.config.kubelet_url,
                response.body_snippet()
            ))
        })?;
        let items = list.validate().map_err(|reason| {
            fail(anyhow!(
                "the kubelet at {} answered GET /pods with {reason}",
                self.config.kubelet_url
            ))
        })?;
        let found = find_pod(items, pod, SOURCE_NAME).and_then(|found| {
            let mut groups = groups_of(found, pod, SOURCE_NAME)?;
            let claims = claims_of(found, pod, SOURCE_NAME)?;
            if !claims.is_empty() {
                // The kubelet does not serve claims and volumes: the API server does, to the
                // same node identity.
                let (client, url) = api_client(&self.config).map_err(|e| LookupError::Volume {
                    pod: pod.clone(),
                    volume: Box::new(VolumeClaimRef {
                        volume: claims[0].volume.clone(),
                        claim: format!("{}/{}", pod.namespace, claims[0].claim),
                    }),
                    source_name: "the API server",
                    cause: e.context("preparing to ask the API server"),
                })?;
                let store = ApiClaimStore {
                    client: &client,
                    url: &url,
                    budget: self.budget(started),
                    config: &self.config,
                };
                groups.volume_gids = volume_gids(found, pod, &claims, &store, "the API server")?;
            }
            Ok(groups)
        });
        tracing::debug!(
            url = self.config.kubelet_url.as_str(),
            pods = items.len(),
            bytes = response.body.len(),
            attempts = response.attempts,
            elapsed_us = started.elapsed().as_micros() as u64,
            found = found.is_ok(),
            "kubelet /pods lookup"
        );
        found
    }
}
