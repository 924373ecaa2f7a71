//! The HTTPS GET client of the kubelet and API server sources: mutual TLS with the node's client
//! certificate, the server verified against configured trust anchors, every attempt bounded
//! by a timeout, a few retries with backoff on connection errors, 429 and 5xx, one overall
//! deadline, and every failure turned into a sentence an operator can act on (it ends up in the
//! pod's events), including what a 401 or 403 means for the permission the node lacks.
//!
//! **Why ureq.** URL parsing, DNS, the socket and its per-phase timeouts, HTTP/1.1 framing
//! (content length, chunked encoding, both bounded), the response size limit and keep-alive
//! (the API server source reads a pod, its claims and their volumes over one connection) are
//! ureq 3's: maintained, synchronous (no async runtime starts for a runtime process that lives
//! a few milliseconds), and light (ureq, ureq-proto, http and five small crates with default
//! features off). It cannot take a custom rustls `ClientConfig`, so [`transport`] plugs the
//! project's own ([`tls`]) into ureq's connector API. hyper needs an executor; reqwest's
//! blocking client starts a tokio runtime on a thread; attohttpc and minreq cannot take a
//! custom rustls configuration either.
//!
//! What stays hand-made, and why: the retry loop (ureq retries nothing but a stale pooled
//! connection), the status sentences (they name the Kubernetes permission), the TLS verifier
//! for loopback URLs and the failure sentences ([`tls`]), and where a large body is kept
//! ([`body`]). The socket, its timeouts and its read buffer are ureq's own TCP transport.
//! Nothing here runs, and no crypto is initialised, unless a lookup misses the cache. (This
//! file is a little over 500 lines because the status sentences for the three permissions live
//! here, with the retry loop they belong to.)

pub mod body;
pub mod tls;
pub mod transport;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ureq::http::Uri;
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{Connector as _, TcpConnector};

pub use body::Body;
use tls::TlsClient;
pub use tls::{ClientIdentity, TlsSetup, Trust};
use transport::TlsConnector;

/// Largest body accepted: a PodList of 5,000 realistic pods is about 24 MiB. Bodies are read as
/// they arrive, never allocated up front from a Content-Length.
pub const MAX_BODY: usize = 128 * 1024 * 1024;
/// Largest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// First pause between attempts; doubled each time, capped at [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How much longer than its connection an attempt may take as a whole; see `attempt`.
const CONNECT_GRACE: Duration = Duration::from_millis(25);

/// An `https://host[:port][/base]` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As configured, without a trailing slash; used in messages.
    pub url: String,
    /// Host without brackets (an IPv6 address is bare).
    pub host: String,
    pub port: u16,
    /// Path prefix (empty or starting with `/`, no trailing slash).
    pub base_path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim_end_matches('/');
        let uri: Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a valid URL"))?;
        if uri.scheme_str() != Some("https") {
            bail!("{url:?} is not an https:// URL");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{url:?} has no host"))?;
        if authority.as_str().contains('@') || uri.query().is_some() || url.contains('#') {
            bail!("{url:?}: user info, queries and fragments are not supported");
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            bail!("{url:?} has no host");
        }
        // Whatever follows the host (after an IPv6 address's bracket) is the port, if any.
        let text = authority.as_str();
        let after_host = &text[text.rfind(']').map_or(0, |i| i + 1)..];
        let port = match authority.port_u16() {
            Some(0) => bail!("{url:?}: bad port 0"),
            Some(p) => p,
            None if after_host.contains(':') => bail!("{url:?}: bad port"),
            None => 443,
        };
        Ok(Self {
            url: url.to_owned(),
            host: host.to_owned(),
            port,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// `host:port` as it goes into a message.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// A ready client for one endpoint. Building it parses keys and certificates; nothing is sent.
/// Requests through one client share connections (keep-alive).
pub struct HttpsClient {
    endpoint: Endpoint,
    agent: ureq::Agent,
    connector: TlsConnector,
}

/// Time and attempts allowed for one request.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// One attempt: connect, TLS handshake, request and the whole response.
    pub request_timeout: Duration,
    /// Extra attempts after the first, on connection errors, 429 and 5xx only.
    pub retries: u32,
    /// Nothing runs past this.
    pub deadline: Instant,
}

/// A complete response (any status).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Body,
    pub attempts: u32,
    pub elapsed: Duration,
}

impl Response {
    /// The start of the body as text, for error messages.
    pub fn body_snippet(&self) -> String {
        snippet(&self.body)
    }
}

/// A request that got no complete response.
#[derive(Debug, thiserror::Error)]
#[error("GET {url}: {kind} ({attempts} attempt{s} in {elapsed:.1?})", s = if *.attempts == 1 { "" } else { "s" })]
pub struct FetchError {
    pub url: String,
    pub attempts: u32,
    pub elapsed: Duration,
    pub kind: FailKind,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum FailKind {
    #[error("cannot connect to {addr}: {cause}")]
    Connect { addr: String, cause: io::Error },
    #[error("cannot resolve {host}")]
    Resolve { host: String },
    #[error("TLS with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    #[error("connection to {addr} broke: {cause}")]
    Io { addr: String, cause: io::Error },
    #[error("no complete answer from {addr} within {timeout:?} ({phase})")]
    Timeout {
        addr: String,
        timeout: Duration,
        phase: &'static str,
    },
    #[error("{addr} sent a malformed HTTP response: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("no time left before the lookup deadline")]
    DeadlineExceeded,
}

impl FailKind {
    fn retryable(&self) -> bool {
        match self {
            FailKind::Connect { .. } | FailKind::Io { .. } | FailKind::Resolve { .. } => true,
            // A connect that timed out is a connection error; a server that took the request
            // and did not answer in time is overloaded or stuck, and asking again only adds load.
            FailKind::Timeout { phase, .. } => *phase == "connect",
            FailKind::Tls { .. } | FailKind::Protocol { .. } | FailKind::DeadlineExceeded => false,
        }
    }
}

/// The ureq configuration of every request (also what the HTTP fuzz target replays server bytes
/// through).
pub fn agent_config() -> ureq::config::Config {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .https_only(true)
        .max_redirects(0)
        // A node's proxy variables are for pulling images, not for the kubelet on
        // 127.0.0.1 or the API server the kubelet itself reaches directly.
        .proxy(None)
        .user_agent(concat!(
            env!("CARGO_PKG_NAME"),
            "/",
            env!("CARGO_PKG_VERSION")
        ))
        .accept("application/json")
        .max_response_header_size(MAX_HEAD)
        .build()
}

/// Reads a response's whole body as every request does: bounded by [`MAX_BODY`] as it arrives,
/// never sized from what the server announces.
pub fn read_body(response: &mut ureq::http::Response<ureq::Body>) -> io::Result<Body> {
    let reader = response.body_mut().with_config().limit(u64::MAX).reader();
    Body::read_all(reader, MAX_BODY)
}

impl HttpsClient {
    pub fn new(endpoint: Endpoint, tls: TlsSetup) -> Result<Self> {
        let tls = TlsClient::new(&endpoint.host, endpoint.is_loopback(), tls)?;
        let connector = TlsConnector {
            tls: Arc::new(tls),
            authority: endpoint.authority(),
        };
        let config = agent_config();
        let agent = ureq::Agent::with_parts(
            config,
            ().chain(TcpConnector::default()).chain(connector.clone()),
            DefaultResolver::default(),
        );
        Ok(Self {
            endpoint,
            agent,
            connector,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `GET <base><path>`, retried on connection errors, 429 and 5xx within the budget.
    /// Returns the last response whatever its status; errors only when no response came.
    pub fn get(&self, path: &str, budget: &Budget) -> Result<Response, FetchError> {
        let started = Instant::now();
        let url = format!("{}{path}", self.endpoint.url);
        let mut attempts = 0u32;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let now = Instant::now();
            let remaining = budget.deadline.saturating_duration_since(now);
            if remaining < Duration::from_millis(1) {
                return Err(FetchError {
                    url,
                    attempts,
                    elapsed: started.elapsed(),
                    kind: FailKind::DeadlineExceeded,
                });
            }
            attempts += 1;
            let timeout = budget.request_timeout.min(remaining);
            let result = self.attempt(&url, timeout);
            let retry = match &result {
                Ok((status, _)) => *status == 429 || *status >= 500,
                Err(kind) => kind.retryable(),
            };
            let last = attempts > budget.retries;
            let pause = jitter(backoff);
            let out_of_time = Instant::now() + pause >= budget.deadline;
            if !retry || last || out_of_time {
                return match result {
                    Ok((status, body)) => Ok(Response {
                        status,
                        body,
                        attempts,
                        elapsed: started.elapsed(),
                    }),
                    Err(kind) => Err(FetchError {
                        url,
                        attempts,
                        elapsed: started.elapsed(),
                        kind,
                    }),
                };
            }
            match &result {
                Ok((status, body)) => tracing::debug!(
                    url = url.as_str(),
                    status,
                    body = snippet(body).as_str(),
                    attempt = attempts,
                    "retrying after a server error"
                ),
                Err(kind) => tracing::debug!(
                    url = url.as_str(),
                    error = %kind,
                    attempt = attempts,
                    "retrying after a connection error"
                ),
            }
            std::thread::sleep(pause);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One request and its whole response, within `timeout`.
    fn attempt(&self, url: &str, timeout: Duration) -> Result<(u16, Body), FailKind> {
        // The connection (TCP and TLS) gets the attempt's time, the whole attempt a little
        // more: so a connect that times out is reported as ureq's Connect timeout (retried),
        // and anything later as the global one (not retried).
        let mut response = self
            .agent
            .get(url)
            .config()
            .timeout_connect(Some(timeout))
            .timeout_global(Some(timeout + CONNECT_GRACE))
            .build()
            .call()
            .map_err(|e| self.fail(e, "reading the response", timeout))?;
        let status = response.status().as_u16();
        let body = read_body(&mut response).map_err(|e| {
            if e.kind() == io::ErrorKind::FileTooLarge {
                FailKind::Protocol {
                    addr: self.endpoint.authority(),
                    reason: e.to_string(),
                }
            } else {
                self.fail(ureq::Error::from(e), "reading the response", timeout)
            }
        })?;
        Ok((status, body))
    }

    /// ureq's error, in this client's words.
    fn fail(&self, e: ureq::Error, phase: &'static str, timeout: Duration) -> FailKind {
        let addr = self.endpoint.authority();
        match e {
            ureq::Error::Other(inner) => match inner.downcast::<FailKind>() {
                Ok(kind) => *kind,
                Err(other) => FailKind::Protocol {
                    addr,
                    reason: other.to_string(),
                },
            },
            // Errors of connect(2): nothing was sent yet.
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::HostUnreachable
                        | io::ErrorKind::NetworkUnreachable
                        | io::ErrorKind::AddrNotAvailable
                ) =>
            {
                FailKind::Connect { addr, cause: io }
            }
            ureq::Error::Io(io) => self.connector.classify(io, phase, Some(timeout)),
            ureq::Error::Timeout(t) => FailKind::Timeout {
                addr,
                timeout,
                phase: match t {
                    ureq::Timeout::Resolve | ureq::Timeout::Connect => "connect",
                    ureq::Timeout::SendRequest | ureq::Timeout::SendBody => "sending the request",
                    _ => phase,
                },
            },
            ureq::Error::HostNotFound => FailKind::Resolve {
                host: self.endpoint.host.clone(),
            },
            ureq::Error::BodyExceedsLimit(limit) => FailKind::Protocol {
                addr,
                reason: format!("the body is larger than {limit} bytes"),
            },
            ureq::Error::LargeResponseHeader(_, limit) => FailKind::Protocol {
                addr,
                reason: format!("the response head is larger than {limit} bytes"),
            },
            other => FailKind::Protocol {
                addr,
                reason: other.to_string(),
            },
        }
    }
}

/// Which permission a 401/403 points at.
#[derive(Clone, Copy, Debug)]
pub enum Permission {
    /// The kubelet's `/pods` (authorized as `nodes/proxy` get).
    NodesProxy,
    /// The API server's pods (get).
    PodsGet,
    /// The API server's PersistentVolumeClaims and PersistentVolumes (get), which the Node
    /// authorizer grants a node for the pods bound to it.
    VolumesGet,
}

/// Turns a non-200 answer into a sentence an operator can act on. `who` names the server
/// (`the kubelet at https://…`).
pub fn check_status(
    response: &Response,
    who: &str,
    path: &str,
    kubeconfig: &Path,
    permission: Permission,
) -> Result<()> {
    let status = response.status;
    if status == 200 {
        return Ok(());
    }
    let body = response.body_snippet();
    let attempts = if response.attempts > 1 {
        format!(
            " after {} attempts in {:.1?}",
            response.attempts, response.elapsed
        )
    } else {
        String::new()
    };
    let what = match permission {
        Permission::NodesProxy => format!(
            "the node's identity (the client certificate in kubeconfig {}) needs permission \
             to get nodes/pods on this node where the kubelet authorizes it finely \
             (KubeletFineGrainedAuthz, on by default since Kubernetes 1.33: deploy/'s default \
             RBAC grants it to the group system:nodes), else nodes/proxy (deploy/'s opt-in \
             component kubelet-nodes-proxy)",
            kubeconfig.display()
        ),
        Permission::PodsGet => format!(
            "the identity in kubeconfig {} needs permission to get pods in that namespace",
            kubeconfig.display()
        ),
        Permission::VolumesGet => format!(
            "the identity in kubeconfig {} needs permission to get persistentvolumeclaims and \
             persistentvolumes (the Node authorizer grants a node those of the pods bound to \
             it: is the kubeconfig the node's own, system:node:<name> in group system:nodes?)",
            kubeconfig.display()
        ),
    };
    match status {
        401 => Err(anyhow!(
            "{who} answered GET {path} with 401 Unauthorized ({body:?}): it did not accept the \
             client certificate (expired, or not issued by the CA it trusts for clients?); \
             {what}"
        )),
        403 => Err(anyhow!(
            "{who} answered GET {path} with 403 Forbidden ({body:?}): {what}"
        )),
        _ => Err(anyhow!(
            "{who} answered GET {path} with HTTP {status}{attempts}: {body:?}"
        )),
    }
}

/// Up to +50% of `d`, from the clock: spreads the retries of many runtimes started at once.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let half = d.as_nanos() / 2;
    let extra = if half == 0 {
        0
    } else {
        u128::from(nanos) % half
    };
    d + Duration::from_nanos(u64::try_from(extra).unwrap_or(0))
}

/// The start of a body as one line of text.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    if body.len() > 300 {
        format!("{trimmed}…")
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://127.0.0.1:10250/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.base_path.as_str()),
            ("127.0.0.1", 10250, "")
        );
        assert_eq!(e.url, "https://127.0.0.1:10250");
        let e = Endpoint::parse("https://[::1]:6443/prefix").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.base_path.as_str()),
            ("::1", 6443, "/prefix")
        );
        assert_eq!(e.authority(), "[::1]:6443");
        assert!(e.is_loopback());
        let e = Endpoint::parse("https://api.example.com").unwrap();
        assert_eq!(e.port, 443);
        assert!(!e.is_loopback());
        for bad in [
            "http://x",
            "https://",
            "https://:1",
            "https://h:0",
            "https://h:x",
            "https://u@h",
            "https://h/p?q",
            "https://h/p#f",
            "h:1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet(b"a\nb\r\n"), "a b");
        assert!(snippet(&[b'x'; 1000]).ends_with('…'));
    }

    #[test]
    fn only_connection_errors_and_connect_timeouts_are_retried() {
        let io = || io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        let addr = || "a:1".to_owned();
        assert!(
            FailKind::Connect {
                addr: addr(),
                cause: io()
            }
            .retryable()
        );
        assert!(FailKind::Resolve { host: addr() }.retryable());
        let timeout = |phase| FailKind::Timeout {
            addr: addr(),
            timeout: Duration::from_secs(1),
            phase,
        };
        assert!(timeout("connect").retryable());
        assert!(!timeout("reading the response").retryable());
        assert!(
            !FailKind::Tls {
                addr: addr(),
                reason: "x".into()
            }
            .retryable()
        );
        assert!(
            !FailKind::Protocol {
                addr: addr(),
                reason: "x".into()
            }
            .retryable()
        );
    }
}
