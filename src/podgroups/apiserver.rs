//! The API server source: `GET {server}/api/v1/namespaces/{ns}/pods/{name}` — one small reply
//! per lookup instead of the node's whole pod list. Same kubeconfig, same TLS rules as the
//! kubelet source: the server is the kubeconfig cluster's `server` (or `apiserver-url`), trusted
//! through the cluster's certificate authority, verified for the cluster's `tls-server-name`
//! when it has one; `insecure-skip-tls-verify = true` in this runtime's config turns that off.
//! With the Node authorizer, a node's credentials may read exactly the pods bound to it.

use std::time::Instant;

use anyhow::{Context as _, anyhow};

use super::https::{Budget, Endpoint, HttpsClient, TlsSetup, Trust};
use super::kubeconfig::Kubeconfig;
use super::kubelet::{Permission, check_status};
use super::podlist::{PodView, groups_of};
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

    /// (client, server URL); reads the kubeconfig and prepares TLS, sends nothing.
    fn client(&self) -> anyhow::Result<(HttpsClient, String)> {
        let kubeconfig = Kubeconfig::load(&self.config.kubeconfig)?;
        let url = match (&self.config.apiserver_url, &kubeconfig.server) {
            (Some(url), _) => url.clone(),
            (None, Some(server)) => server.clone(),
            (None, None) => anyhow::bail!(
                "kubeconfig {} names no server for cluster {:?}; set apiserver-url",
                self.config.kubeconfig.display(),
                kubeconfig.cluster_name
            ),
        };
        let endpoint = Endpoint::parse(&url).context("API server URL")?;
        let identity = kubeconfig.client_identity()?;
        let trust = if self.config.insecure_skip_tls_verify {
            Trust::InsecureSkipVerify
        } else if let Some((certs, origin)) = kubeconfig.ca_certs()? {
            Trust::Anchors { certs, origin }
        } else {
            anyhow::bail!(
                "kubeconfig {} gives cluster {:?} no certificate-authority to verify the API \
                 server with{}",
                self.config.kubeconfig.display(),
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
}

/// A namespace or pod name as Kubernetes allows them (a DNS subdomain), so that it can go into
/// the URL path as it is and never be `..` or carry a `/`.
fn valid_name(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
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
        let (client, url) = self
            .client()
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
        let found: PodView = serde_json::from_slice(&response.body).map_err(|e| {
            fail(anyhow!(
                "{url} answered GET {path} with something that is not a Pod ({e}): {}",
                response.body_snippet()
            ))
        })?;
        let meta = &found.metadata;
        if meta.namespace.as_deref() != Some(pod.namespace.as_str())
            || meta.name.as_deref() != Some(pod.name.as_str())
        {
            return Err(fail(anyhow!(
                "{url} answered GET {path} with another pod ({}/{})",
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
        tracing::debug!(
            url = url.as_str(),
            attempts = response.attempts,
            elapsed_us = started.elapsed().as_micros() as u64,
            "API server pod lookup"
        );
        groups_of(&found, pod, found_uid, SOURCE_NAME)
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

#[cfg(test)]
mod standin_tests {
    use std::time::Duration;

    use test_support::certs::{KubeconfigStyle, TestPki};
    use test_support::kubelet::{Behaviour, KubeletStandIn, pod, pod_list};

    use super::*;

    fn setup(
        behaviour: Behaviour,
    ) -> (TestPki, tempfile::TempDir, KubeletStandIn, HttpSourceConfig) {
        let pki = TestPki::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let server = KubeletStandIn::start(&pki, behaviour).unwrap();
        server.set_pods(pod_list(vec![pod(
            "user-alice",
            "bypass-pod",
            "u1",
            &[60000],
            Some(70000),
        )]));
        let kubeconfig = dir.path().join("kubelet.conf");
        pki.write_kubeconfig(&kubeconfig, &server.url(), KubeconfigStyle::FilePaths)
            .unwrap();
        let config = HttpSourceConfig {
            kubelet_url: "https://127.0.0.1:1".into(),
            kubeconfig,
            ca_file: None,
            tls_server_name: None,
            insecure_skip_tls_verify: false,
            request_timeout: Duration::from_secs(2),
            lookup_deadline: Duration::from_secs(5),
            retries: 2,
            cache_max_age: Duration::from_secs(3600),
            apiserver_url: None,
        };
        (pki, dir, server, config)
    }

    fn pod_ref(name: &str, uid: &str) -> PodRef {
        PodRef {
            namespace: "user-alice".into(),
            name: name.into(),
            uid: Some(uid.into()),
        }
    }

    #[test]
    fn one_pod_per_request() {
        let (_pki, _dir, server, config) = setup(Behaviour::Serve);
        let source = ApiServerSource::new(config);
        let g = source.lookup(&pod_ref("bypass-pod", "u1")).unwrap();
        assert_eq!(g.granted().collect::<Vec<_>>(), vec![60000, 70000]);
        assert_eq!(
            server.seen()[0].path,
            "/api/v1/namespaces/user-alice/pods/bypass-pod"
        );
        let err = source.lookup(&pod_ref("ghost", "u9")).unwrap_err();
        assert!(matches!(err, LookupError::NotFound { .. }), "{err}");
        let err = source.lookup(&pod_ref("bypass-pod", "u2")).unwrap_err();
        assert!(matches!(err, LookupError::UidMismatch { .. }), "{err}");
    }

    #[test]
    fn forbidden_and_retries() {
        let (_pki, _dir, server, config) = setup(Behaviour::Status(403));
        let source = ApiServerSource::new(config);
        let err = format!(
            "{:#}",
            source.lookup(&pod_ref("bypass-pod", "u1")).unwrap_err()
        );
        assert!(err.contains("403") && err.contains("get pods"), "{err}");
        server.set_behaviour(Behaviour::StatusThenServe {
            status: 503,
            times: 1,
        });
        source.lookup(&pod_ref("bypass-pod", "u1")).unwrap();
        assert_eq!(server.requests(), 3);
    }

    #[test]
    fn apiserver_url_overrides_the_kubeconfig() {
        let (_pki, _dir, server, mut config) = setup(Behaviour::Serve);
        let url = server.url();
        config.apiserver_url = Some("https://127.0.0.1:1".into());
        config.lookup_deadline = Duration::from_millis(500);
        let err = format!(
            "{:#}",
            ApiServerSource::new(config.clone())
                .lookup(&pod_ref("bypass-pod", "u1"))
                .unwrap_err()
        );
        assert!(err.contains("https://127.0.0.1:1"), "{err}");
        config.apiserver_url = Some(url);
        ApiServerSource::new(config)
            .lookup(&pod_ref("bypass-pod", "u1"))
            .unwrap();
    }
}
