//! A throw-away PKI for tests that talk TLS to a kubelet stand-in: a CA, a server certificate
//! for 127.0.0.1/localhost, a client certificate for the node (`system:node:…` in
//! `system:nodes`), a second CA that nobody trusts, and writers for the PEM files and
//! kubeconfigs a node has (file paths, inline `*-data`, or kubelet's combined
//! `kubelet-client-current.pem`).
//!
//! ```no_run
//! use test_support::certs::{KubeconfigStyle, TestPki};
//! let pki = TestPki::new().unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! let files = pki.write_files(dir.path()).unwrap();
//! let kubeconfig = dir.path().join("kubelet.conf");
//! pki.write_kubeconfig(&kubeconfig, "https://127.0.0.1:6443", KubeconfigStyle::InlineData)
//!     .unwrap();
//! // trust files.ca_cert for the kubelet's serving certificate
//! # let _ = files;
//! ```
//!
//! Certificates and EC keys are made fresh on every call (rcgen with ring). ring cannot make
//! RSA keys, so RSA certificates use one fixed 2048-bit test key ([`TEST_RSA_KEY_PKCS8`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};

/// The node name the client certificate is issued to (CN `system:node:<NODE_NAME>`).
pub const NODE_NAME: &str = "test-node";

/// Key algorithm of a certificate's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256, what the kubelet's certificate rotation uses.
    EcP256,
    /// RSA 2048, what kubeadm writes.
    Rsa2048,
}

/// How a private key is written to PEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `PRIVATE KEY` (PKCS#8).
    Pkcs8,
    /// `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1), as kubeadm and the kubelet write.
    Traditional,
}

/// A certificate and its private key.
#[derive(Clone, Debug)]
pub struct CertKey {
    pub cert_pem: String,
    /// The key as PKCS#8 DER.
    pub key_pkcs8_der: Vec<u8>,
    pub kind: KeyKind,
}

impl CertKey {
    /// The private key as PEM in the given format.
    pub fn key_pem(&self, format: KeyFormat) -> String {
        match (format, self.kind) {
            (KeyFormat::Pkcs8, _) => pem_block("PRIVATE KEY", &self.key_pkcs8_der),
            (KeyFormat::Traditional, KeyKind::Rsa2048) => pem_block(
                "RSA PRIVATE KEY",
                &pkcs8_inner_key(&self.key_pkcs8_der).unwrap_or_default(),
            ),
            (KeyFormat::Traditional, KeyKind::EcP256) => pem_block(
                "EC PRIVATE KEY",
                &sec1_with_curve(&self.key_pkcs8_der).unwrap_or_default(),
            ),
        }
    }

    /// Certificate then key (traditional format), like the kubelet's
    /// `/var/lib/kubelet/pki/kubelet-client-current.pem`.
    pub fn combined_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem(KeyFormat::Traditional))
    }
}

/// A certificate authority that can issue server and client certificates.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA with an EC key.
    pub fn new(common_name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A serving certificate for `names` (IP addresses or DNS names).
    pub fn server_cert(&self, names: &[&str], kind: KeyKind) -> Result<CertKey> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.issue(params, kind)
    }

    /// A client certificate with `CN=common_name` and `O=` each of `organizations`.
    pub fn client_cert(
        &self,
        common_name: &str,
        organizations: &[&str],
        kind: KeyKind,
    ) -> Result<CertKey> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        for org in organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.issue(params, kind)
    }

    fn issue(&self, params: CertificateParams, kind: KeyKind) -> Result<CertKey> {
        let key = match kind {
            KeyKind::EcP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
            KeyKind::Rsa2048 => {
                KeyPair::from_pkcs8_pem_and_sign_algo(TEST_RSA_KEY_PKCS8, &PKCS_RSA_SHA256)?
            }
        };
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pkcs8_der: key.serialize_der(),
            kind,
        })
    }
}

/// A serving certificate like the one a kubelet makes for itself when none is configured
/// (`/var/lib/kubelet/pki/kubelet.crt`): a leaf for `hostname` only (no IP, no localhost),
/// issued by a throw-away `<hostname>-ca@<time>` CA; `cert_pem` holds the leaf then that CA,
/// as the kubelet's file does, so the file itself can serve as the client's trust anchor.
pub fn kubelet_self_signed(hostname: &str) -> Result<CertKey> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ca = Ca::new(&format!("{hostname}-ca@{stamp}"))?;
    let mut leaf = ca.server_cert(&[hostname], KeyKind::EcP256)?;
    leaf.cert_pem.push_str(&ca.cert_pem);
    Ok(leaf)
}

/// The usual test setup: one CA that issued both the kubelet's serving certificate (for
/// `127.0.0.1` and `localhost`) and the node's client certificate, plus an unrelated CA.
pub struct TestPki {
    pub ca: Ca,
    pub server: CertKey,
    pub client: CertKey,
    /// A CA nobody trusts, for "server certificate from another CA" cases.
    pub other_ca: Ca,
}

/// Paths written by [`TestPki::write_files`].
#[derive(Clone, Debug)]
pub struct PkiFiles {
    /// The CA certificate (trust anchor for the server, and the server's client CA).
    pub ca_cert: PathBuf,
    pub client_cert: PathBuf,
    /// The client key in traditional format (`EC PRIVATE KEY` / `RSA PRIVATE KEY`).
    pub client_key: PathBuf,
    /// Client certificate and key in one file, like `kubelet-client-current.pem`.
    pub client_combined: PathBuf,
    /// The unrelated CA's certificate.
    pub other_ca_cert: PathBuf,
}

/// How a kubeconfig carries its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeconfigStyle {
    /// `certificate-authority-data`, `client-certificate-data`, `client-key-data`.
    InlineData,
    /// `certificate-authority`, `client-certificate`, `client-key` as absolute paths to files
    /// written beside the kubeconfig.
    FilePaths,
    /// `client-certificate` and `client-key` both naming one combined file, as a kubelet's
    /// kubelet.conf does after TLS bootstrap.
    CombinedFile,
    /// A user with no client certificate at all.
    NoClientCert,
}

impl TestPki {
    /// EC keys throughout.
    pub fn new() -> Result<Self> {
        Self::with_keys(KeyKind::EcP256, KeyKind::EcP256)
    }

    pub fn with_keys(server: KeyKind, client: KeyKind) -> Result<Self> {
        let ca = Ca::new("test-cluster-ca")?;
        let server = ca.server_cert(&["127.0.0.1", "localhost"], server)?;
        let client = ca.client_cert(
            &format!("system:node:{NODE_NAME}"),
            &["system:nodes"],
            client,
        )?;
        let other_ca = Ca::new("some-other-ca")?;
        Ok(Self {
            ca,
            server,
            client,
            other_ca,
        })
    }

    /// Writes the CA, client certificate and key (separate and combined) into `dir`.
    pub fn write_files(&self, dir: &Path) -> Result<PkiFiles> {
        std::fs::create_dir_all(dir)?;
        let files = PkiFiles {
            ca_cert: dir.join("ca.crt"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            client_combined: dir.join("kubelet-client-current.pem"),
            other_ca_cert: dir.join("other-ca.crt"),
        };
        write(&files.ca_cert, &self.ca.cert_pem)?;
        write(&files.client_cert, &self.client.cert_pem)?;
        write(
            &files.client_key,
            &self.client.key_pem(KeyFormat::Traditional),
        )?;
        write(&files.client_combined, &self.client.combined_pem())?;
        write(&files.other_ca_cert, &self.other_ca.cert_pem)?;
        Ok(files)
    }

    /// A kubeconfig (YAML) for `server_url` with this PKI's CA and client credentials.
    /// Styles that name files write them beside `path`.
    pub fn write_kubeconfig(
        &self,
        path: &Path,
        server_url: &str,
        style: KubeconfigStyle,
    ) -> Result<PathBuf> {
        let dir = path
            .parent()
            .context("kubeconfig path has no parent directory")?;
        let files = self.write_files(&dir.join("pki"))?;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let ca_file = format!("    certificate-authority: {}\n", files.ca_cert.display());
        let (ca, user) = match style {
            KubeconfigStyle::InlineData => (
                format!(
                    "    certificate-authority-data: {}\n",
                    b64(&self.ca.cert_pem)
                ),
                format!(
                    "    client-certificate-data: {}\n    client-key-data: {}\n",
                    b64(&self.client.cert_pem),
                    b64(&self.client.key_pem(KeyFormat::Traditional))
                ),
            ),
            KubeconfigStyle::FilePaths => (
                ca_file,
                format!(
                    "    client-certificate: {}\n    client-key: {}\n",
                    files.client_cert.display(),
                    files.client_key.display()
                ),
            ),
            KubeconfigStyle::CombinedFile => (
                ca_file,
                format!(
                    "    client-certificate: {0}\n    client-key: {0}\n",
                    files.client_combined.display()
                ),
            ),
            KubeconfigStyle::NoClientCert => (ca_file, "    {}\n".to_owned()),
        };
        let cluster = format!("    server: {server_url}\n{ca}");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n{cluster}  name: default-cluster\n\
             contexts:\n- context:\n    cluster: default-cluster\n    namespace: default\n    \
             user: default-auth\n  name: default-context\ncurrent-context: default-context\n\
             preferences: {{}}\nusers:\n- name: default-auth\n  user:\n{user}"
        );
        write(path, &text)?;
        Ok(path.to_path_buf())
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// PEM armour around DER.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

/// One DER element at `pos`: (tag, content range, end).
fn der_element(der: &[u8], pos: usize) -> Result<(u8, std::ops::Range<usize>, usize)> {
    let tag = *der.get(pos).context("DER: truncated")?;
    let first = *der.get(pos + 1).context("DER: truncated")?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            bail!("DER: unsupported length");
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*der.get(pos + 2 + i).context("DER: truncated")?);
        }
        (len, 2 + n)
    };
    let start = pos + header;
    let end = start + len;
    if end > der.len() {
        bail!("DER: element runs past the end");
    }
    Ok((tag, start..end, end))
}

fn der_encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The algorithm-specific key inside a PKCS#8 PrivateKeyInfo (PKCS#1 for RSA, SEC1 for EC).
fn pkcs8_inner_key(pkcs8: &[u8]) -> Result<Vec<u8>> {
    let (tag, body, _) = der_element(pkcs8, 0)?;
    if tag != 0x30 {
        bail!("PKCS#8: not a SEQUENCE");
    }
    let (_, _, next) = der_element(pkcs8, body.start)?; // version
    let (_, _, next) = der_element(pkcs8, next)?; // algorithm
    let (tag, key, _) = der_element(pkcs8, next)?;
    if tag != 0x04 {
        bail!("PKCS#8: private key is not an OCTET STRING");
    }
    Ok(pkcs8[key].to_vec())
}

/// SEC1 ECPrivateKey with the curve named in `[0]`, as `x509.MarshalECPrivateKey` writes it.
fn sec1_with_curve(pkcs8: &[u8]) -> Result<Vec<u8>> {
    const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let inner = pkcs8_inner_key(pkcs8)?;
    let (tag, body, _) = der_element(&inner, 0)?;
    if tag != 0x30 {
        bail!("SEC1: not a SEQUENCE");
    }
    let mut fields = Vec::new();
    let mut pos = body.start;
    while pos < body.end {
        let (tag, _, next) = der_element(&inner, pos)?;
        fields.push((tag, inner[pos..next].to_vec()));
        pos = next;
    }
    let mut content = Vec::new();
    for (i, (tag, raw)) in fields.iter().enumerate() {
        if *tag == 0xa0 {
            continue;
        }
        content.extend_from_slice(raw);
        if i == 1 {
            content.extend_from_slice(&der_encode(0xa0, P256_OID));
        }
    }
    Ok(der_encode(0x30, &content))
}

/// A fixed RSA 2048 test key (PKCS#8), generated for these tests only; it protects nothing.
pub const TEST_RSA_KEY_PKCS8: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC5yN8n0B+pc3On
dJb2QuimyvF8juGGwVqOsFh3xooHzZwzVfUwrV8wiDOl3JVQdHnhDM32JxEagbcB
3lMj6SBXlCKGwdYISihH+qPGOvphr4NJpQvM9RUfDa2BLtFzf/L2/HI9DEDP4YqP
foTdq4ERBfdUiWB1Qk0eeHgK7KxLpy+xk1C2sXdrjrnSlyLaq0deiDTNQqJHRJuL
tq01lHcP8liTSMUKUzoYBGcWNyKOQTxuuzV7yIC/MfyFR15TQDQ0SNxlwJ9XNUXm
ycPiSyKK8XqyrC71ieqeLYA1ebc93xEVJPjhnU9INrC6uIJgQjxaNVeghlzJDORQ
Ccce06xxAgMBAAECggEAAbr5ORzn7paAsUKViJDYkeHtNd4u0FtLEjrApPzyAPia
FKOF6rO/ezg8vIK9cUf+Cpz2UVPNbC3HgpQlIH4Y99Fzyni4gZzcAZYE1UfSi5TG
G3cW3dkHUiHsFJPwp3hXNWDmJeNpulK9DT3kbU9ROGz4MyiRMwZj3LDKjW9+4biw
DPgdQuDVAfj0j7uInwYDYL2PVO3WSvokGSTYBrXhYw2i7rXpzIuaEJiGTqgAtpvU
p89X6yDUBD/Q+mdzSbrOhfmcaaH4wfOm1LHqIOvuI7p5Jx8EXP+YnXJQ2EOcuWWB
x7I/Rl+J9Add34txNtyyl3xXaK/zk/oAUOOH7+o+MQKBgQDcqkSAGAI9/8oagUq0
lgN9syIKLNATk4FLqTwUmGs78FQkcwwnBTi12EZd27sEwg1lRSPyeYoD0hKmuy+T
0b95EbeE2ps7u++jjLlLqZyYHPwC0dcB1dSc+tpSR3apSROCl1ChTzepe5C2XlNB
qWpytk5cqsTcRbamhN8EIWnhUwKBgQDXiL+etvhqPKSxJaQwIanM4Fpkok5P9FX8
Th7YNrMWfvqlDMHwiF/hcKYA2TjxFcnKOl4Ai9Qm6tgGrrx92TN0rxfjxYhe8P4t
HFobGZ8qR3PspAhkJGwnn2legRzPdmAzZakoAPHB1CWu/ZA3XB9QcQP2gJfJWb3L
LTPPTQXuqwKBgAkgxfqig5068opMJOH5fqV5foP7PJRCust9ca3MbEsrct+bHrqS
fbkP/EEvsLnOqS0yQf1qx6nGy9y3y40K1SfV8sh9HoTHDm+uh4+4sXCdalNXiNRb
mxLvUY6rxB3WlwcE6WHy2/OX1/GjT0BdGLksD2vH6KLQA3E599u84htfAoGAXD1C
vFrTnyuK0+EnDg4qC+rr5GttllwbvFl2a9Ok+vimraHzEcxbNDCwamaMLujDLg+i
kRtGVM1mXB3FvxoIImSYlbrArNj3/jhG+5gQfNiNbPWaPbk0rBRV1MLuoH6plvVn
2h3lWK1A303WvUpogFWNe532143XYq9an9n3svcCgYEAtibAJo6ltc7BbYLDFXV9
wbo0Ravjgi2TN/Sl52RvnM0blxdRIOerCLXzf0adQMcBzVfOi7OCpmBln3namWxA
Cjv+GA1VSv+tUlCVNAN2+xhD37ApkcyA6wTB+98WWNDx2nfi/fXl19g5rHzj0N3A
2q3JxF6/l+7FwE0rvENYLLc=
-----END PRIVATE KEY-----
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traditional_keys_round_trip_through_rustls() {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject;
        for kind in [KeyKind::EcP256, KeyKind::Rsa2048] {
            let pki = TestPki::with_keys(kind, kind).unwrap();
            for format in [KeyFormat::Pkcs8, KeyFormat::Traditional] {
                let pem = pki.client.key_pem(format);
                let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
                rustls::crypto::ring::sign::any_supported_type(&key)
                    .unwrap_or_else(|e| panic!("{kind:?} {format:?}: {e}"));
            }
        }
    }
}
