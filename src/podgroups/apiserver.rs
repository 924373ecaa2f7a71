//! The API server source: `GET {server}/api/v1/namespaces/{ns}/pods/{name}` — one small reply
//! per lookup instead of the node's whole pod list. Same kubeconfig, same TLS rules as the
//! kubelet source: the server is the kubeconfig cluster's `server` (or `apiserver-url`), trusted
//! through the cluster's certificate authority, verified for the cluster's `tls-server-name`
//! when it has one; `insecure-skip-tls-verify = true` in this runtime's config turns that off.
//! With the Node authorizer, a node's credentials may read exactly the pods bound to it, and
//! their PersistentVolumeClaims and PersistentVolumes: [`ApiClaimStore`] reads those for both
//! HTTP sources when a pod mounts claims (see `volumes`), over the same connection.

use std::time::Instant;

use anyhow::{Context as _, anyhow};

use super::https::{Budget, Endpoint, HttpsClient, Permission, TlsSetup, Trust, check_status};
use super::kubeconfig::Kubeconfig;
use super::podlist::{ObjectView, groups_of};
use super::volumes::{ClaimStore, claims_of, volume_gids};
use crate::config::HttpSourceConfig;
use crate::pod::{LookupError, PodGroups, PodGroupsSource, PodRef};

pub const SOURCE_NAME: &str = "API server";

pub struct ApiServerSource {
    config: HttpSourceConfig,
}

impl ApiServerSource {
    pub fn new(config: HttpSourceConfig) -> Self {
        Self { config }
    }
}

/// A client for the API server the node's kubeconfig names (or `apiserver-url`), and that
/// URL. Reads the kubeconfig and prepares TLS; sends nothing.
pub fn api_client(config: &HttpSourceConfig) -> anyhow::Result<(HttpsClient, String)> {
    let kubeconfig = Kubeconfig::load(&config.kubeconfig)?;
    let url = match (&config.apiserver_url, &kubeconfig.server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.clone(),
        (None, None) => anyhow::bail!(
            "kubeconfig {} names no server for cluster {:?}; set apiserver-url",
            config.kubeconfig.display(),
            kubeconfig.cluster_name
        ),
    };
    let endpoint = Endpoint::parse(&url).context("API server URL")?;
    let identity = kubeconfig.client_identity()?;
    let trust = if config.insecure_skip_tls_verify {
        Trust::InsecureSkipVerify
    } else if let Some((certs, origin)) = kubeconfig.ca_certs()? {
        Trust::Anchors { certs, origin }
    } else {
        anyhow::bail!(
            "kubeconfig {} gives cluster {:?} no certificate-authority to verify the API \
             server with{}",
            config.kubeconfig.display(),
            kubeconfig.cluster_name,
            if kubeconfig.insecure_skip_tls_verify {
                " (its insecure-skip-tls-verify is not honoured; only this runtime's own \
                 insecure-skip-tls-verify = true is)"
            } else {
                ""
            }
        );
    };
    let client = HttpsClient::new(
        endpoint,
        TlsSetup {
            trust,
            identity,
            server_name: kubeconfig.tls_server_name.clone(),
            loopback_alternatives: Vec::new(),
            server_name_key: "the kubeconfig cluster's tls-server-name",
        },
    )?;
    Ok((client, url))
}

/// A namespace or object name as Kubernetes allows them (a DNS subdomain), so that it can go
/// into the URL path as it is and never be `..` or carry a `/`.
pub fn valid_name(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// PersistentVolumeClaims and PersistentVolumes read from the API server, one GET each, within
/// the lookup's budget.
pub struct ApiClaimStore<'a> {
    pub client: &'a HttpsClient,
    pub url: &'a str,
    pub budget: Budget,
    pub config: &'a HttpSourceConfig,
}

impl ApiClaimStore<'_> {
    fn get(&self, path: &str, what: &str) -> anyhow::Result<Option<ObjectView>> {
        let response = self.client.get(path, &self.budget)?;
        if response.status == 404 {
            return Ok(None);
        }
        check_status(
            &response,
            &format!("the API server at {}", self.url),
            path,
            &self.config.kubeconfig,
            Permission::VolumesGet,
        )?;
        let found: ObjectView = serde_json::from_slice(&response.body).map_err(|e| {
            anyhow!(
                "{} answered GET {path} with something that is not a {what} ({e}): {}",
                self.url,
                response.body_snippet()
            )
        })?;
        Ok(Some(found))
    }
}

impl ClaimStore for ApiClaimStore<'_> {
    fn describe(&self) -> String {
        format!("the API server at {}", self.url)
    }

    fn claim(&self, namespace: &str, name: &str) -> anyhow::Result<Option<ObjectView>> {
        if !valid_name(namespace) || !valid_name(name) {
            anyhow::bail!("{namespace:?}/{name:?} is not a valid claim name");
        }
        self.get(
            &format!("/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"),
            "PersistentVolumeClaim",
        )
    }

    fn volume(&self, name: &str) -> anyhow::Result<Option<ObjectView>> {
        if !valid_name(name) {
            anyhow::bail!("{name:?} is not a valid PersistentVolume name");
        }
        self.get(
            &format!("/api/v1/persistentvolumes/{name}"),
            "PersistentVolume",
        )
    }
}

impl PodGroupsSource for ApiServerSource {
    fn describe(&self) -> String {
        match &self.config.apiserver_url {
            Some(url) => format!("API server {url}"),
            None => format!(
                "API server of kubeconfig {}",
                self.config.kubeconfig.display()
            ),
        }
    }

    fn lookup(&self, pod: &PodRef) -> Result<PodGroups, LookupError> {
        let started = Instant::now();
        let fail = |cause: anyhow::Error| LookupError::Source {
            pod: pod.clone(),
            source_name: SOURCE_NAME,
            cause,
        };
        let (client, url) = api_client(&self.config)
            .map_err(|e| fail(e.context("preparing to ask the API server")))?;
        if !valid_name(&pod.namespace) || !valid_name(&pod.name) {
            return Err(fail(anyhow!(
                "{:?}/{:?} is not a valid Kubernetes namespace and pod name",
                pod.namespace,
                pod.name
            )));
        }
        let path = format!("/api/v1/namespaces/{}/pods/{}", pod.namespace, pod.name);
        let budget = Budget {
            request_timeout: self.config.request_timeout,
            retries: self.config.retries,
            deadline: started + self.config.lookup_deadline,
        };
        let response = client.get(&path, &budget).map_err(|e| fail(anyhow!(e)))?;
        if response.status == 404 {
            return Err(LookupError::NotFound {
                pod: pod.clone(),
                source_name: SOURCE_NAME,
            });
        }
        check_status(
            &response,
            &format!("the API server at {url}"),
            &path,
            &self.config.kubeconfig,
            Permission::PodsGet,
        )
        .map_err(fail)?;
        let found: ObjectView = serde_json::from_slice(&response.body).map_err(|e| {
            fail(anyhow!(
                "{url} answered GET {path} with something that is not a Pod ({e}): {}",
                response.body_snippet()
            ))
        })?;
        let meta = &found.metadata;
        if !found.is_pod()
            || meta.namespace.as_deref() != Some(pod.namespace.as_str())
            || meta.name.as_deref() != Some(pod.name.as_str())
        {
            return Err(fail(anyhow!(
                "{url} answered GET {path} with another object ({} {}/{})",
                found.kind.as_deref().unwrap_or("Pod"),
                meta.namespace.as_deref().unwrap_or("?"),
                meta.name.as_deref().unwrap_or("?")
            )));
        }
        let found_uid = meta.uid.clone().unwrap_or_default();
        if let Some(uid) = &pod.uid {
            if *uid != found_uid {
                return Err(LookupError::UidMismatch {
                    pod: pod.clone(),
                    found: found_uid,
                    source_name: SOURCE_NAME,
                });
            }
        }
        let mut groups = groups_of(&found, pod, SOURCE_NAME)?;
        let claims = claims_of(&found, pod, SOURCE_NAME)?;
        if !claims.is_empty() {
            let store = ApiClaimStore {
                client: &client,
                url: &url,
                budget,
                config: &self.config,
            };
            groups.volume_gids = volume_gids(&found, pod, &claims, &store, SOURCE_NAME)?;
        }
        tracing::debug!(
            url = url.as_str(),
            attempts = response.attempts,
            claims = claims.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "API server pod lookup"
        );
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kubernetes_names_go_into_the_path() {
        for ok in ["kube-system", "a", "web-0", "x.y-z"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "A", "-a", "a-", "a b", "a%2F"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
