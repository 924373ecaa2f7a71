//! The node label that tells the scheduler the handler is installed and verified here: the
//! RuntimeClass's `scheduling.nodeSelector` selects it, so pods of the RuntimeClass only land on
//! nodes where the CRI has been seen serving the handler (kata-deploy and youki's deploy do the
//! same).
//!
//! One JSON merge patch of `metadata.labels` on `/api/v1/nodes/<node>`, sent with the pod's
//! ServiceAccount token over TLS verified against the pod's `ca.crt`. hyper (already in the
//! installer for the CRI's gRPC) speaks HTTP/1.1 over tokio-rustls; the token is read afresh for
//! every request because projected tokens rotate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const DEFAULT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(10);

/// `key=value`, both as Kubernetes allows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: String,
}

impl Label {
    pub fn parse(text: &str) -> Result<Self> {
        let (key, value) = text
            .split_once('=')
            .with_context(|| format!("node label {text:?}: expected key=value"))?;
        let (prefix, name) = match key.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, key),
        };
        if let Some(prefix) = prefix {
            let ok = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|part| {
                    !part.is_empty()
                        && part.len() <= 63
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !part.starts_with('-')
                        && !part.ends_with('-')
                });
            if !ok {
                bail!("node label key {key:?}: the prefix must be a DNS subdomain");
            }
        }
        if name.is_empty() || !label_value_ok(name) {
            bail!(
                "node label key {key:?}: the name must be 1-63 letters, digits, '-', '_' or '.', \
                 starting and ending with a letter or digit"
            );
        }
        if !value.is_empty() && !label_value_ok(value) {
            bail!(
                "node label value {value:?}: at most 63 letters, digits, '-', '_' or '.', \
                 starting and ending with a letter or digit"
            );
        }
        Ok(Self {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

fn label_value_ok(v: &str) -> bool {
    let alnum = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && alnum(v.bytes().next())
        && alnum(v.bytes().last())
}

/// How to reach the API server.
#[derive(Clone, Debug)]
pub struct ApiServer {
    pub host: String,
    pub port: u16,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
}

impl ApiServer {
    /// `https://host:port` (IPv6 in brackets).
    pub fn parse_url(url: &str, token_file: &Path, ca_file: &Path) -> Result<Self> {
        let rest = url
            .strip_prefix("https://")
            .with_context(|| format!("API server URL {url:?}: must start with https://"))?
            .trim_end_matches('/');
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .with_context(|| format!("API server URL {url:?}: unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok(),
                None if after.is_empty() => Some(443),
                None => None,
            };
            (host.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().ok()),
                None => (rest.to_owned(), Some(443)),
            }
        };
        let port = port.with_context(|| format!("API server URL {url:?}: bad port"))?;
        if host.is_empty() || host.contains('/') {
            bail!("API server URL {url:?}: no host (a path is not accepted)");
        }
        Ok(Self {
            host,
            port,
            token_file: token_file.to_path_buf(),
            ca_file: ca_file.to_path_buf(),
        })
    }

    /// In a pod: `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    pub fn in_cluster_url() -> Option<String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        if host.is_empty() {
            return None;
        }
        Some(if host.contains(':') {
            format!("https://[{host}]:{port}")
        } else {
            format!("https://{host}:{port}")
        })
    }

    /// Sets (`Some`) or removes (`None`) the label `key` on `node`.
    pub fn label_node(&self, node: &str, key: &str, value: Option<&str>) -> Result<()> {
        let body = serde_json::json!({"metadata": {"labels": {key: value}}}).to_string();
        let path = format!("/api/v1/nodes/{}", path_segment(node)?);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the API client")?;
        let mut last = None;
        for attempt in 1..=ATTEMPTS {
            // The timer is made inside the runtime: it needs the runtime's clock.
            match rt
                .block_on(async { tokio::time::timeout(TIMEOUT, self.patch(&path, &body)).await })
            {
                Ok(Ok((status, _))) if (200..300).contains(&status) => return Ok(()),
                Ok(Ok((status, reply))) if status < 500 && status != 429 => {
                    bail!(
                        "PATCH {path} on {}: HTTP {status}: {}",
                        self.authority(),
                        reply.trim()
                    );
                }
                Ok(Ok((status, reply))) => {
                    last = Some(anyhow::anyhow!("HTTP {status}: {}", reply.trim()));
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(anyhow::anyhow!("no answer within {TIMEOUT:?}")),
            }
            if attempt < ATTEMPTS {
                std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
            .context(format!(
                "PATCH {path} on {} failed {ATTEMPTS} times",
                self.authority()
            )))
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn tls(&self) -> Result<tokio_rustls::TlsConnector> {
        let mut roots = rustls::RootCertStore::empty();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.ca_file)
            .with_context(|| format!("reading the CA {}", self.ca_file.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("parsing the CA {}", self.ca_file.display()))?;
        if certs.is_empty() {
            bail!(
                "the CA file {} holds no certificate",
                self.ca_file.display()
            );
        }
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("the CA {}", self.ca_file.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS setup")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    async fn patch(&self, path: &str, body: &str) -> Result<(u16, String)> {
        let token = std::fs::read_to_string(&self.token_file)
            .with_context(|| format!("reading the token {}", self.token_file.display()))?;
        let token = token.trim();
        if token.is_empty() {
            bail!("the token file {} is empty", self.token_file.display());
        }
        let connector = self.tls()?;
        let name = ServerName::try_from(self.host.clone())
            .with_context(|| format!("{:?} is not a valid server name", self.host))?;
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("connecting to {}", self.authority()))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {}", self.authority()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = hyper::Request::patch(path)
            .header(hyper::header::HOST, self.authority())
            .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(hyper::header::CONTENT_TYPE, "application/merge-patch+json")
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!(
                    "strict-supplementalgroups-installer/",
                    env!("CARGO_PKG_VERSION")
                ),
            )
            .body(Full::new(Bytes::from(body.to_owned())))
            .context("building the request")?;
        let response = sender.send_request(request).await.context("sending")?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
        Ok((status, text))
    }
}

/// A node name is a DNS subdomain: nothing that could leave the path segment.
fn path_segment(node: &str) -> Result<&str> {
    let ok = !node.is_empty()
        && node.len() <= 253
        && node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !ok {
        bail!("node name {node:?} is not a DNS subdomain");
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let l = Label::parse("strict-supplementalgroups.io/installed=true").unwrap();
        assert_eq!(l.key, "strict-supplementalgroups.io/installed");
        assert_eq!(l.value, "true");
        assert!(Label::parse("plain=").is_ok());
        for bad in [
            "novalue",
            "=x",
            "Bad_Prefix/x=y",
            "a/-x=y",
            "a/x=-y",
            "a/x=y z",
        ] {
            assert!(Label::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_and_node_names() {
        let t = Path::new("/t");
        let a = ApiServer::parse_url("https://10.96.0.1:443", t, t).unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.96.0.1", 443));
        let b = ApiServer::parse_url("https://[fd00::1]:6443/", t, t).unwrap();
        assert_eq!((b.host.as_str(), b.port), ("fd00::1", 6443));
        assert_eq!(b.authority(), "[fd00::1]:6443");
        assert!(ApiServer::parse_url("http://x", t, t).is_err());
        assert!(ApiServer::parse_url("https://x:y", t, t).is_err());
        assert!(ApiServer::parse_url("https://x/api", t, t).is_err());
        assert!(path_segment("node-1.example").is_ok());
        assert!(path_segment("../x").is_err());
        assert!(path_segment("a/b").is_err());
    }
}
