//! The project's own TLS client setup on rustls (ring): trust anchors (a CA bundle, or a
//! kubelet's self-signed certificate), the node's client certificate, and a verifier that
//! accepts the node's hostname when the URL is a loopback address — a kubelet's self-signed
//! serving certificate names only the hostname, while the runtime connects to 127.0.0.1. This
//! is why the HTTP client cannot build its own rustls configuration. Also here: turning a TLS
//! failure into a sentence an operator can act on (it ends up in the pod's events), which
//! needs to know who the rejected certificate was.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};

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

/// A rustls configuration for one endpoint, and what is needed to explain its failures.
#[derive(Debug)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    verifier: Option<Arc<NamedVerifier>>,
    trust_origin: String,
    identity_origin: String,
    server_name_key: &'static str,
}

impl TlsClient {
    /// Parses keys and certificates; sends nothing. `host` is the URL's host, `loopback`
    /// whether it is a loopback address.
    pub fn new(host: &str, loopback: bool, tls: TlsSetup) -> Result<Self> {
        let mut provider = rustls::crypto::ring::default_provider();
        // AES-128-GCM first: as safe here and a third cheaper than AES-256 on a multi-MB
        // /pods reply (Go servers honour the client's order when both have AES hardware).
        provider
            .cipher_suites
            .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let provider = Arc::new(provider);
        let server_name_text = tls.server_name.clone().unwrap_or_else(|| host.to_owned());
        let server_name = ServerName::try_from(server_name_text.clone())
            .with_context(|| format!("{server_name_text:?} is not a valid TLS server name"))?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let (builder, verifier, trust_origin) = match tls.trust {
            Trust::InsecureSkipVerify => {
                // Every client built this way warns, whichever source asked for it.
                tracing::warn!(
                    host,
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
                if tls.server_name.is_none() && loopback {
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
            config: Arc::new(config),
            server_name,
            verifier,
            trust_origin,
            identity_origin,
            server_name_key: tls.server_name_key,
        })
    }

    /// If `e` carries a rustls error (they arrive wrapped in io::Error), the sentence that
    /// says what was not trusted or what the server rejected.
    pub fn explain(&self, e: &io::Error) -> Option<String> {
        let tls_err = e.get_ref()?.downcast_ref::<rustls::Error>()?;
        let rejected = self
            .verifier
            .as_ref()
            .and_then(|v| v.rejected.lock().ok().and_then(|r| r.clone()))
            .unwrap_or_else(|| "the server's certificate".to_owned());
        Some(match tls_err {
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
        })
    }
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Certificates come from the network: no input panics their reader.
        #[test]
        fn arbitrary_certificates_never_panic(
            der in proptest::collection::vec(proptest::sample::select(vec![
                0x30u8, 0x31, 0x06, 0x03, 0x55, 0x04, 0x0c, 0x82, 0x81, 0xa0, 0xff, 0x00, 0x05,
            ]), 0..256),
        ) {
            let _ = cert_names(&der);
            let _ = describe_cert(&CertificateDer::from(der.clone()));
        }
    }
}
