//! How ureq reaches the server: a connector that opens the TCP connection and runs the TLS
//! handshake with the project's own rustls configuration ([`TlsClient`]), and the transport
//! ureq then reads and writes through. It is ureq's own rustls connector in shape, with three
//! differences: the configuration is ours (ureq builds its own from a `TlsConfig`, which has no
//! place for a custom verifier); a failure to connect or to agree on TLS comes back as a
//! [`FailKind`] that says which of the two failed and why, so the client can word it and decide
//! whether to retry; and the socket under rustls is read through one 256 KiB buffer (rustls
//! asks for 4 KiB at a time, and a syscall per 4 KiB of a multi-megabyte `/pods` reply costs
//! more than decrypting it — ureq's own TCP transport is not public to reuse).
//!
//! This uses ureq's `unversioned::transport` API, which does not follow semver yet: an update
//! of ureq's minor version may need a change here (Cargo.lock pins the version built).

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

use super::FailKind;
use super::tls::TlsClient;

/// Opens TCP, then TLS with [`TlsClient`]'s configuration. The only connector of its agent.
#[derive(Clone)]
pub struct TlsConnector {
    pub tls: Arc<TlsClient>,
    /// `host:port`, for messages.
    pub authority: String,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("authority", &self.authority)
            .finish()
    }
}

impl Connector for TlsConnector {
    type Out = TlsTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<TlsTransport>, ureq::Error> {
        let fail = |kind: FailKind| ureq::Error::Other(Box::new(kind));
        let limit = details.timeout.not_zero().map(|t| *t);
        let started = std::time::Instant::now();
        let mut last_err = None;
        let mut tcp = None;
        for addr in details.addrs.iter() {
            let result = match limit {
                Some(limit) => {
                    let left = limit.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    TcpStream::connect_timeout(addr, left)
                }
                None => TcpStream::connect(addr),
            };
            match result {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let timed_out = |phase| FailKind::Timeout {
            addr: self.authority.clone(),
            timeout: limit.unwrap_or_default(),
            phase,
        };
        let tcp = match (tcp, last_err) {
            (Some(tcp), _) => tcp,
            (None, Some(e)) if is_timeout(&e) => return Err(fail(timed_out("connect"))),
            (None, Some(cause)) => {
                return Err(fail(FailKind::Connect {
                    addr: self.authority.clone(),
                    cause,
                }));
            }
            (None, None) => return Err(fail(timed_out("connect"))),
        };
        let _ = tcp.set_nodelay(true);
        let config = details.config;
        let mut sock = Socket::new(tcp);
        sock.deadline = limit.map(|l| started + l);
        let mut conn = ClientConnection::new(self.tls.config.clone(), self.tls.server_name.clone())
            .map_err(|e| {
                fail(FailKind::Tls {
                    addr: self.authority.clone(),
                    reason: e.to_string(),
                })
            })?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut sock) {
                return Err(fail(self.classify(e, "TLS handshake", limit)));
            }
        }
        Ok(Some(TlsTransport {
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
            stream: StreamOwned::new(conn, sock),
        }))
    }
}

impl TlsConnector {
    /// An I/O error on the connection, in words: a timeout, a TLS failure explained, or the
    /// plain error.
    pub fn classify(&self, e: io::Error, phase: &'static str, limit: Option<Duration>) -> FailKind {
        let addr = self.authority.clone();
        let ureq_timeout = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
        if ureq_timeout || is_timeout(&e) {
            return FailKind::Timeout {
                addr,
                timeout: limit.unwrap_or_default(),
                phase,
            };
        }
        match self.tls.explain(&e) {
            Some(reason) => FailKind::Tls { addr, reason },
            None => FailKind::Io { addr, cause: e },
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// HTTP/1.1 over the TLS stream, for ureq.
pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, Socket>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport").finish()
    }
}

impl TlsTransport {
    /// Bounds the next reads and writes by `timeout`; an expired one is ureq's timeout.
    fn bound(&mut self, timeout: NextTimeout) -> Result<ureq::Timeout, ureq::Error> {
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        self.stream.sock.deadline = if timeout.after.is_not_happening() {
            None
        } else {
            Some(Instant::now() + *timeout.after)
        };
        Ok(timeout.reason)
    }
}

fn io_error(e: io::Error, reason: ureq::Timeout) -> ureq::Error {
    if is_timeout(&e) {
        ureq::Error::Timeout(reason)
    } else {
        ureq::Error::Io(e)
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let reason = self.bound(timeout.for_write())?;
        let output = &self.buffers.output()[..amount];
        self.stream
            .write_all(output)
            .and_then(|()| self.stream.flush())
            .map_err(|e| io_error(e, reason))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let reason = self.bound(timeout.for_read())?;
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match self.stream.read(input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other.map_err(|e| io_error(e, reason))?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        // Open when reading would block: nothing unasked-for arrived, and no end.
        let tcp = self.stream.sock.reader.get_ref();
        if !self.stream.sock.reader.buffer().is_empty() || tcp.set_nonblocking(true).is_err() {
            return false;
        }
        let open =
            matches!(tcp.peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        open && tcp.set_nonblocking(false).is_ok()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// The TCP socket under rustls: reads through one large buffer, and no read or write waits past
/// the deadline.
pub struct Socket {
    reader: BufReader<TcpStream>,
    deadline: Option<Instant>,
    /// The socket timeout last set; set again only when it would overshoot the deadline by more
    /// than a little, to spare a syscall per read.
    armed: Option<Duration>,
}

impl Socket {
    const BUFFER: usize = 256 * 1024;
    const SLACK: Duration = Duration::from_millis(20);

    fn new(tcp: TcpStream) -> Self {
        Self {
            reader: BufReader::with_capacity(Self::BUFFER, tcp),
            deadline: None,
            armed: None,
        }
    }

    fn arm(&mut self) -> io::Result<()> {
        let Some(deadline) = self.deadline else {
            if self.armed.is_some() {
                self.reader.get_ref().set_read_timeout(None)?;
                self.reader.get_ref().set_write_timeout(None)?;
                self.armed = None;
            }
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline reached"));
        }
        if self.armed.is_none_or(|set| set > left + Self::SLACK) {
            self.reader.get_ref().set_read_timeout(Some(left))?;
            self.reader.get_ref().set_write_timeout(Some(left))?;
            self.armed = Some(left);
        }
        Ok(())
    }
}

impl Read for Socket {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.reader.buffer().is_empty() {
            self.arm()?;
        }
        self.reader.read(out)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.reader.get_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.reader.get_mut().flush()
    }
}
