//! How ureq reaches the server: after ureq's own TCP connector (which also bounds every read
//! and write by the time left), a connector that runs the TLS handshake with the project's own
//! rustls configuration ([`TlsClient`]), and the transport ureq then reads and writes through.
//! It is ureq's rustls connector in shape, with two differences: the configuration is ours
//! (ureq builds its own from a `TlsConfig`, which has no place for a custom verifier), and a
//! handshake that fails comes back as a [`FailKind`] that says why (who the rejected
//! certificate was, what the server refused), so that the client can word it and knows not to
//! retry.
//!
//! This uses ureq's `unversioned::transport` API, which does not follow semver yet: an update
//! of ureq's minor version may need a change here (Cargo.lock pins the version built).

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport, TransportAdapter,
};

use super::FailKind;
use super::tls::TlsClient;

/// Wraps the TCP transport ureq opened in TLS with [`TlsClient`]'s configuration.
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

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = TlsTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<TlsTransport>, ureq::Error> {
        let fail = |kind: FailKind| ureq::Error::Other(Box::new(kind));
        let Some(tcp) = chained else {
            return Err(fail(FailKind::Tls {
                addr: self.authority.clone(),
                reason: "no TCP connection to run TLS over".to_owned(),
            }));
        };
        let limit = details.timeout.not_zero().map(|t| *t);
        let mut sock = TransportAdapter::new(tcp.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
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
        let config = details.config;
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
        if ureq_timeout
            || matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            )
        {
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

/// HTTP/1.1 over the TLS stream, for ureq.
pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport").finish()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        self.stream.flush()?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}
