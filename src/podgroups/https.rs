//! A small, synchronous HTTPS GET client on rustls (ring), for the kubelet and API server
//! sources: one request per connection (`Connection: close`), mutual TLS with the node's
//! client certificate, the server verified against configured trust anchors, every attempt
//! bounded by a timeout, a few retries with backoff on connection errors and 5xx, and one
//! overall deadline.
//!
//! Why not a general HTTP client: the kubelet's default serving certificate is self-signed for
//! the node's hostname while the runtime connects to 127.0.0.1, so verification must be able to
//! check another name than the URL's host — which needs a custom rustls verifier; and every
//! failure must turn into a sentence an operator can act on (it ends up in the pod's events).
//! Nothing here runs, and no crypto is initialised, unless a lookup misses the cache.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct,
    RootCertStore, SignatureScheme, StreamOwned,
};

/// Largest body accepted (a PodList of many thousands of pods stays far below).
const MAX_BODY: usize = 512 * 1024 * 1024;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// First pause between attempts; doubled each time, capped at [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

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
        let rest = url
            .strip_prefix("https://")
            .with_context(|| format!("{url:?} is not an https:// URL"))?;
        let (authority, base_path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') || base_path.contains(['?', '#']) {
            bail!("{url:?}: user info, queries and fragments are not supported");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .with_context(|| format!("{url:?}: unclosed '['"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .with_context(|| format!("{url:?}: bad port"))?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            bail!("{url:?} has no host");
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .with_context(|| format!("{url:?}: bad port {p:?}"))?,
            None => 443,
        };
        Ok(Self {
            url: url.to_owned(),
            host: host.to_owned(),
            port,
            base_path: base_path.to_owned(),
        })
    }

    /// `host:port` as it goes into a Host header or a message.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// What the server's certificate must chain to.
#[derive(Debug)]
pub enum Trust {
    /// These certificates are trust anchors (a CA bundle, or a kubelet's self-signed
    /// kubelet.crt). `origin` names where they came from, for messages.
    Anchors {
        certs: Vec<CertificateDer<'static>>,
        origin: String,
    },
    /// No verification at all (`insecure-skip-tls-verify = true`).
    InsecureSkipVerify,
}

/// The client certificate chain and key presented to the server.
#[derive(Debug)]
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Where they came from, for messages.
    pub origin: String,
}

/// How to set up TLS for one endpoint.
#[derive(Debug)]
pub struct TlsSetup {
    pub trust: Trust,
    pub identity: ClientIdentity,
    /// Verify the certificate for this name (and send it as SNI) instead of the URL's host.
    pub server_name: Option<String>,
    /// When the URL's host is a loopback address and no server name is configured, these
    /// names are accepted too (the node's hostname, which a kubelet's self-signed certificate
    /// is issued for).
    pub loopback_alternatives: Vec<String>,
    /// The config key to mention when the name does not match (`kubelet-tls-server-name`).
    pub server_name_key: &'static str,
}

/// A ready client for one endpoint. Building it parses keys and certificates; nothing is sent.
pub struct HttpsClient {
    endpoint: Endpoint,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    verifier: Option<Arc<NamedVerifier>>,
    trust_origin: String,
    identity_origin: String,
    server_name_key: &'static str,
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
    pub body: Vec<u8>,
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
    #[error("cannot resolve {host}: {cause}")]
    Resolve { host: String, cause: io::Error },
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

impl HttpsClient {
    pub fn new(endpoint: Endpoint, tls: TlsSetup) -> Result<Self> {
        let mut provider = rustls::crypto::ring::default_provider();
        // AES-128-GCM first: as safe here and a third cheaper than AES-256 on a multi-MB
        // /pods reply (Go servers honour the client's order when both have AES hardware).
        provider
            .cipher_suites
            .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let provider = Arc::new(provider);
        let server_name_text = tls
            .server_name
            .clone()
            .unwrap_or_else(|| endpoint.host.clone());
        let server_name = ServerName::try_from(server_name_text.clone())
            .with_context(|| format!("{server_name_text:?} is not a valid TLS server name"))?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let (builder, verifier, trust_origin) = match tls.trust {
            Trust::InsecureSkipVerify => {
                // Every client built this way warns, whichever source asked for it.
                tracing::warn!(
                    url = endpoint.url.as_str(),
                    "insecure-skip-tls-verify = true: the server's certificate is NOT verified; \
                     anyone who can answer on this address decides the pod's groups"
                );
                (
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(NoVerification(
                            provider.clone(),
                        ))),
                    None,
                    "nothing (insecure-skip-tls-verify)".to_owned(),
                )
            }
            Trust::Anchors { certs, origin } => {
                let mut roots = RootCertStore::empty();
                for cert in certs {
                    roots.add(cert).with_context(|| {
                        format!("{origin}: a certificate is not usable as a trust anchor")
                    })?;
                }
                if roots.is_empty() {
                    bail!("{origin} holds no certificate");
                }
                let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .with_context(|| format!("trust anchors from {origin}"))?;
                let mut alternatives = Vec::new();
                if tls.server_name.is_none() && endpoint.is_loopback() {
                    for name in &tls.loopback_alternatives {
                        if let Ok(n) = ServerName::try_from(name.clone()) {
                            alternatives.push(n);
                        }
                    }
                }
                let verifier = Arc::new(NamedVerifier {
                    inner,
                    expected: server_name.clone(),
                    alternatives,
                    rejected: Mutex::new(None),
                });
                (
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(verifier.clone()),
                    Some(verifier),
                    origin,
                )
            }
        };
        let identity_origin = tls.identity.origin.clone();
        let config = builder
            .with_client_auth_cert(tls.identity.chain, tls.identity.key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => anyhow::anyhow!(
                    "{identity_origin}: the client key does not belong to the client certificate"
                ),
                other => anyhow::anyhow!("{identity_origin}: unusable client key: {other}"),
            })?;
        Ok(Self {
            endpoint,
            config: Arc::new(config),
            server_name,
            verifier,
            trust_origin,
            identity_origin,
            server_name_key: tls.server_name_key,
        })
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
            let result = self.attempt(path, now + timeout, timeout);
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

    /// One connection, one request, one response.
    fn attempt(
        &self,
        path: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), FailKind> {
        let addr_text = self.endpoint.authority();
        let timed_out = |phase| FailKind::Timeout {
            addr: addr_text.clone(),
            timeout,
            phase,
        };
        let addrs = self.resolve()?;
        let mut tcp = None;
        let mut last_err = None;
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let tcp = match (tcp, last_err) {
            (Some(tcp), _) => tcp,
            (None, Some(e)) if is_timeout(&e) => return Err(timed_out("connect")),
            (None, Some(cause)) => {
                return Err(FailKind::Connect {
                    addr: addr_text,
                    cause,
                });
            }
            (None, None) => return Err(timed_out("connect")),
        };
        let _ = tcp.set_nodelay(true);
        let sock = DeadlineStream::new(tcp, deadline);
        let conn =
            ClientConnection::new(self.config.clone(), self.server_name.clone()).map_err(|e| {
                FailKind::Tls {
                    addr: addr_text.clone(),
                    reason: e.to_string(),
                }
            })?;
        let mut tls = StreamOwned::new(conn, sock);
        let io_fail = |e: io::Error, phase: &'static str| self.classify(e, phase, timeout);

        let request = format!(
            "GET {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}/{}\r\n\
             Accept: application/json\r\nConnection: close\r\n\r\n",
            self.endpoint.base_path,
            self.endpoint.authority(),
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
        );
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| io_fail(e, "TLS handshake"))?;
        }
        tls.write_all(request.as_bytes())
            .and_then(|()| tls.flush())
            .map_err(|e| io_fail(e, "sending the request"))?;
        read_response(&mut tls).map_err(|e| match e {
            ReadError::Io(e) => io_fail(e, "reading the response"),
            ReadError::Protocol(reason) => FailKind::Protocol {
                addr: addr_text.clone(),
                reason,
            },
        })
    }

    fn resolve(&self) -> Result<Vec<SocketAddr>, FailKind> {
        if let Ok(ip) = self.endpoint.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.endpoint.port)]);
        }
        (self.endpoint.host.as_str(), self.endpoint.port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|cause| FailKind::Resolve {
                host: self.endpoint.host.clone(),
                cause,
            })
    }

    /// Turns an I/O error from the TLS stream into a sentence: rustls errors (which arrive
    /// wrapped in io::Error) say what was not trusted or what the server rejected.
    fn classify(&self, e: io::Error, phase: &'static str, timeout: Duration) -> FailKind {
        let addr = self.endpoint.authority();
        if is_timeout(&e) {
            return FailKind::Timeout {
                addr,
                timeout,
                phase,
            };
        }
        let Some(tls_err) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return FailKind::Io { addr, cause: e };
        };
        let rejected = self
            .verifier
            .as_ref()
            .and_then(|v| v.rejected.lock().ok().and_then(|r| r.clone()))
            .unwrap_or_else(|| "the server's certificate".to_owned());
        let reason = match tls_err {
            rustls::Error::InvalidCertificate(cert_err) => match cert_err {
                CertificateError::UnknownIssuer => format!(
                    "{rejected} is not trusted: it was not issued by any certificate in {}",
                    self.trust_origin
                ),
                CertificateError::BadSignature => format!(
                    "{rejected} is not trusted: its signature does not verify against {}",
                    self.trust_origin
                ),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => format!(
                    "{rejected} is not valid for the name {:?} ({cert_err}); set {} to a name \
                     the certificate carries",
                    server_name_text(&self.server_name),
                    self.server_name_key
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    format!("{rejected} has expired ({cert_err})")
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    format!("{rejected} is not valid yet ({cert_err})")
                }
                other => format!("{rejected} is not trusted: {other}"),
            },
            rustls::Error::AlertReceived(
                alert @ (AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::AccessDenied
                | AlertDescription::DecryptError),
            ) => format!(
                "the server refused our client certificate from {} (TLS alert {alert:?}): is it \
                 expired, or issued by a CA the server does not accept?",
                self.identity_origin
            ),
            other => other.to_string(),
        };
        FailKind::Tls { addr, reason }
    }
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
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

/// A TCP stream whose reads and writes never wait past `deadline`. Reads are buffered: rustls
/// asks for 4 KiB at a time, and a syscall per 4 KiB would cost more than the decryption.
struct DeadlineStream {
    tcp: TcpStream,
    deadline: Instant,
    /// The socket timeout last set; re-set only when it would overshoot the deadline by more
    /// than a little, to spare a syscall per read.
    set: Option<Duration>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl DeadlineStream {
    const BUFFER: usize = 256 * 1024;

    fn new(tcp: TcpStream, deadline: Instant) -> Self {
        Self {
            tcp,
            deadline,
            set: None,
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    fn arm(&mut self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline reached"));
        }
        let slack = Duration::from_millis(20);
        if self.set.is_none_or(|set| set > left + slack) {
            self.tcp.set_read_timeout(Some(left))?;
            self.tcp.set_write_timeout(Some(left))?;
            self.set = Some(left);
        }
        Ok(())
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            self.arm()?;
            if self.buf.is_empty() {
                self.buf = vec![0; Self::BUFFER];
            }
            self.start = 0;
            self.end = self.tcp.read(&mut self.buf)?;
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

enum ReadError {
    Io(io::Error),
    Protocol(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn protocol(reason: impl Into<String>) -> ReadError {
    ReadError::Protocol(reason.into())
}

/// [`read_response`] on any reader, for the fuzz target `fuzz/fuzz_targets/http_response.rs`
/// (which must follow this reader's replacement); not an API.
#[doc(hidden)]
pub fn read_response_for_fuzzing(stream: &mut impl Read) -> Result<(u16, Vec<u8>), String> {
    read_response(stream).map_err(|e| match e {
        ReadError::Io(e) => e.to_string(),
        ReadError::Protocol(reason) => reason,
    })
}

/// Reads one HTTP/1.1 response: head, then a body framed by Content-Length, chunked encoding,
/// or the end of the connection. Stops as soon as the body is complete.
fn read_response(stream: &mut impl Read) -> Result<(u16, Vec<u8>), ReadError> {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut window = vec![0u8; 64 * 1024];
    // Head (skipping any 1xx interim responses).
    let (status, framing, head_len) = loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let code = resp.code.unwrap_or(0);
                    Some((code, framing_of(resp.headers)?, n))
                }
                Ok(httparse::Status::Partial) => None,
                Err(e) => return Err(protocol(format!("bad response head: {e}"))),
            }
        };
        match parsed {
            Some((code, _, n)) if (100..200).contains(&code) => {
                buf.drain(..n);
                continue;
            }
            Some(found) => break found,
            None => {}
        }
        if buf.len() > MAX_HEAD {
            return Err(protocol("response head too large"));
        }
        let n = read_some(stream, &mut window)?;
        if n == 0 {
            return Err(ReadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            )));
        }
        buf.extend_from_slice(&window[..n]);
    };
    buf.drain(..head_len);
    let body = match framing {
        Framing::Length(len) => {
            if len > MAX_BODY {
                return Err(protocol(format!("body of {len} bytes is too large")));
            }
            let mut body = buf;
            if body.len() > len {
                body.truncate(len);
            }
            let have = body.len();
            body.resize(len, 0);
            let mut filled = have;
            while filled < len {
                let n = read_some(stream, &mut body[filled..])?;
                if n == 0 {
                    return Err(ReadError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("body ended after {filled} of {len} bytes"),
                    )));
                }
                filled += n;
            }
            body
        }
        Framing::Chunked => read_chunked(stream, buf, &mut window)?,
        Framing::UntilClose => {
            let mut body = buf;
            loop {
                let n = read_some(stream, &mut window)?;
                if n == 0 {
                    break;
                }
                if body.len() + n > MAX_BODY {
                    return Err(protocol("body too large"));
                }
                body.extend_from_slice(&window[..n]);
            }
            body
        }
    };
    Ok((status, body))
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn framing_of(headers: &[httparse::Header<'_>]) -> Result<Framing, ReadError> {
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if value.trim().ends_with("chunked") {
                return Ok(Framing::Chunked);
            }
            return Err(protocol(format!("unsupported transfer-encoding {value:?}")));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| protocol("bad content-length"))?;
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Reads, treating a TLS peer that closed without close_notify after sending everything it
/// meant to like any other early end (the caller decides whether the body was complete).
fn read_some(stream: &mut impl Read, buf: &mut [u8]) -> Result<usize, ReadError> {
    loop {
        match stream.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Ensures at least `want` unparsed bytes after `pos`, or returns false at EOF.
fn fill(
    stream: &mut impl Read,
    window: &mut [u8],
    pending: &mut Vec<u8>,
    pos: &mut usize,
    want: usize,
) -> Result<bool, ReadError> {
    while pending.len() - *pos < want {
        if *pos > 0 && *pos == pending.len() {
            pending.clear();
            *pos = 0;
        }
        let n = read_some(stream, window)?;
        if n == 0 {
            return Ok(false);
        }
        pending.extend_from_slice(&window[..n]);
    }
    Ok(true)
}

/// Decodes a chunked body; `pending` holds bytes already read past the head.
fn read_chunked(
    stream: &mut impl Read,
    mut pending: Vec<u8>,
    window: &mut [u8],
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::with_capacity(pending.len().max(64 * 1024));
    let mut pos = 0usize; // start of unparsed data in `pending`
    let eof = || {
        ReadError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed inside a chunked body",
        ))
    };
    loop {
        // Chunk size line.
        let line_end = loop {
            if let Some(i) = pending[pos..].windows(2).position(|w| w == b"\r\n") {
                break pos + i;
            }
            if pending.len() - pos > 1024 {
                return Err(protocol("chunk size line too long"));
            }
            let want = pending.len() - pos + 1;
            if !fill(stream, window, &mut pending, &mut pos, want)? {
                return Err(eof());
            }
        };
        let line = std::str::from_utf8(&pending[pos..line_end])
            .map_err(|_| protocol("chunk size is not text"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| protocol(format!("bad chunk size {size_text:?}")))?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers, up to an empty line; nothing in them is needed.
            loop {
                if let Some(i) = pending[pos..].windows(2).position(|w| w == b"\r\n") {
                    let empty = i == 0;
                    pos += i + 2;
                    if empty {
                        return Ok(body);
                    }
                    continue;
                }
                let want = pending.len() - pos + 1;
                if !fill(stream, window, &mut pending, &mut pos, want)? {
                    // Some servers close right after the last chunk.
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(protocol("body too large"));
        }
        // Chunk data: copy what is buffered, read the rest straight into the body.
        let buffered = (pending.len() - pos).min(size);
        body.extend_from_slice(&pending[pos..pos + buffered]);
        pos += buffered;
        let mut missing = size - buffered;
        if missing > 0 {
            let start = body.len();
            body.resize(start + missing, 0);
            let mut at = start;
            while missing > 0 {
                let n = read_some(stream, &mut body[at..])?;
                if n == 0 {
                    return Err(eof());
                }
                at += n;
                missing -= n;
            }
        }
        if !fill(stream, window, &mut pending, &mut pos, 2)? {
            return Err(eof());
        }
        if &pending[pos..pos + 2] != b"\r\n" {
            return Err(protocol("chunk not followed by CRLF"));
        }
        pos += 2;
        if pos > 32 * 1024 {
            pending.drain(..pos);
            pos = 0;
        }
    }
}

/// Verifies the chain with webpki against the trust anchors, for the configured name or, when
/// the URL's host is loopback and no name is configured, for one of the alternatives; and
/// remembers who the last rejected certificate was, for the error message.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: ServerName<'static>,
    alternatives: Vec<ServerName<'static>>,
    rejected: Mutex<Option<String>>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let first = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            &self.expected,
            ocsp_response,
            now,
        );
        let result = match first {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.alternatives.is_empty() => {
                let alt = self.alternatives.iter().find_map(|name| {
                    self.inner
                        .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
                        .ok()
                });
                match alt {
                    Some(ok) => Ok(ok),
                    None => first,
                }
            }
            other => other,
        };
        if result.is_err() {
            if let Ok(mut slot) = self.rejected.lock() {
                *slot = Some(describe_cert(end_entity));
            }
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any certificate (still checking the handshake signatures, so the session is at
/// least bound to the key in the certificate presented).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `the server's certificate "CN=x" (issued by "CN=y")`, from a minimal walk of the DER.
fn describe_cert(der: &CertificateDer<'_>) -> String {
    match cert_names(der.as_ref()) {
        Some((issuer, subject)) => format!(
            "the server's certificate {:?} (issued by {:?})",
            subject.unwrap_or_default(),
            issuer.unwrap_or_default()
        ),
        None => "the server's certificate".to_owned(),
    }
}

/// (issuer CN, subject CN) of a certificate.
fn cert_names(der: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let (_, cert, _) = der_element(der, 0)?;
    let (_, tbs, _) = der_element(der, cert.start)?;
    let mut pos = tbs.start;
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    let (tag, _, next) = der_element(der, pos)?;
    if tag == 0xa0 {
        pos = next;
    }
    let (_, _, next) = der_element(der, pos)?; // serial
    let (_, _, next) = der_element(der, next)?; // signature algorithm
    let (_, issuer, next) = der_element(der, next)?;
    let (_, _, next) = der_element(der, next)?; // validity
    let (_, subject, _) = der_element(der, next)?;
    Some((common_name(der, issuer), common_name(der, subject)))
}

/// The CN attribute of a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
fn common_name(der: &[u8], name: std::ops::Range<usize>) -> Option<String> {
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let mut pos = name.start;
    while pos < name.end {
        let (_, set, next_rdn) = der_element(der, pos)?;
        let mut inner = set.start;
        while inner < set.end {
            let (_, atv, next_atv) = der_element(der, inner)?;
            let (oid_tag, oid, after_oid) = der_element(der, atv.start)?;
            if oid_tag == 0x06 && &der[oid.clone()] == CN_OID {
                let (_, value, _) = der_element(der, after_oid)?;
                return Some(String::from_utf8_lossy(&der[value]).into_owned());
            }
            inner = next_atv;
        }
        pos = next_rdn;
    }
    None
}

/// One DER element at `pos`: (tag, content range, end).
fn der_element(der: &[u8], pos: usize) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let tag = *der.get(pos)?;
    let first = *der.get(pos + 1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*der.get(pos + 2 + i)?);
        }
        (len, 2 + n)
    };
    let start = pos.checked_add(header)?;
    let end = start.checked_add(len)?;
    if end > der.len() {
        return None;
    }
    Some((tag, start..end, end))
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
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    fn parse(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
        // Feed in small pieces to exercise every partial-read path.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(7);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        read_response(&mut Trickle(raw)).map_err(|e| match e {
            ReadError::Io(e) => format!("io: {e}"),
            ReadError::Protocol(p) => format!("protocol: {p}"),
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Responses and certificates come from the network: no input panics their parsers.
        #[test]
        fn arbitrary_responses_and_certificates_never_panic(
            head in proptest::sample::select(vec![
                &b""[..],
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            ]),
            tail in proptest::collection::vec(proptest::sample::select(vec![
                b'0', b'5', b'f', b'\r', b'\n', b';', b'x', b' ', 0x30, 0x82, 0xff,
            ]), 0..256),
        ) {
            let raw = [head, tail.as_slice()].concat();
            let _ = parse(&raw);
            let _ = cert_names(&tail);
            let _ = describe_cert(&CertificateDer::from(tail.clone()));
        }
    }

    #[test]
    fn response_framings() {
        let (s, b) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"hello"[..]));
        let (s, b) = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n\
              4;ext=1\r\nabcd\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (403, &b"abcd0123456789abcdef"[..]));
        let (s, b) = parse(b"HTTP/1.0 500 Oops\r\n\r\nuntil close").unwrap();
        assert_eq!((s, b.as_slice()), (500, &b"until close"[..]));
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for chunk in big.chunks(70_000) {
            raw.extend_from_slice(format!("{:X}\r\n", chunk.len()).as_bytes());
            raw.extend_from_slice(chunk);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(parse(&raw).unwrap().1, big);
    }

    #[test]
    fn malformed_responses() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (raw, kind, detail) in [
            (String::new(), "io:", ""),
            ("SSH-2.0-OpenSSH\r\n\r\n".to_owned(), "protocol:", ""),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_owned(),
                "io:",
                "5 of 10",
            ),
            (format!("{chunked}zz\r\n"), "protocol:", "chunk size"),
            (format!("{chunked}5\r\nab"), "io:", ""),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n".to_owned(),
                "protocol:",
                "transfer-encoding",
            ),
        ] {
            let err = parse(raw.as_bytes()).unwrap_err();
            assert!(
                err.starts_with(kind) && err.contains(detail),
                "{raw:?}: {err}"
            );
        }
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet(b"a\nb\r\n"), "a b");
        assert!(snippet(&[b'x'; 1000]).ends_with('…'));
    }
}
