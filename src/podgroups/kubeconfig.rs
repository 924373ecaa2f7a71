//! The parts of a kubeconfig the pod sources need: the current context's cluster (server URL,
//! CA, TLS server name) and user (client certificate and key, as file paths or inline
//! `*-data`). A kubelet's own `/etc/kubernetes/kubelet.conf` names its rotating
//! `kubelet-client-current.pem` as both certificate and key; that works too. Relative paths are
//! relative to the kubeconfig's directory, as kubectl resolves them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::https::ClientIdentity;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawKubeconfig {
    #[serde(default)]
    clusters: Option<Vec<Named<RawCluster>>>,
    #[serde(default)]
    users: Option<Vec<NamedUser>>,
    #[serde(default)]
    contexts: Option<Vec<NamedContext>>,
    #[serde(default)]
    current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(default)]
    cluster: Option<T>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawCluster {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    certificate_authority: Option<String>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: Option<bool>,
    #[serde(default)]
    tls_server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: Option<RawUser>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawUser {
    #[serde(default)]
    client_certificate: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    #[serde(default)]
    context: Option<RawContext>,
}

#[derive(Debug, Default, Deserialize)]
struct RawContext {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// PEM bytes named in a kubeconfig, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemRef {
    File(PathBuf),
    /// Decoded from a `*-data` field (named by `field`).
    Inline {
        field: &'static str,
        bytes: Vec<u8>,
    },
}

impl PemRef {
    fn read(&self) -> Result<Vec<u8>> {
        match self {
            PemRef::File(path) => {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))
            }
            PemRef::Inline { bytes, .. } => Ok(bytes.clone()),
        }
    }

    fn describe(&self) -> String {
        match self {
            PemRef::File(path) => path.display().to_string(),
            PemRef::Inline { field, .. } => format!("inline {field}"),
        }
    }
}

/// The current context of a kubeconfig, resolved.
#[derive(Debug, Clone)]
pub struct Kubeconfig {
    pub path: PathBuf,
    pub cluster_name: String,
    pub user_name: String,
    pub server: Option<String>,
    pub certificate_authority: Option<PemRef>,
    pub insecure_skip_tls_verify: bool,
    pub tls_server_name: Option<String>,
    pub client_certificate: Option<PemRef>,
    pub client_key: Option<PemRef>,
}

impl Kubeconfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        Self::parse(&text, path).with_context(|| format!("kubeconfig {}", path.display()))
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let raw: RawKubeconfig = if text.trim().is_empty() {
            RawKubeconfig::default()
        } else {
            serde_saphyr::from_str(text).context("not a valid kubeconfig (YAML)")?
        };
        let base = path.parent().unwrap_or(Path::new("/"));
        let contexts = raw.contexts.unwrap_or_default();
        let current = raw.current_context.filter(|c| !c.is_empty());
        let context = match (&current, contexts.as_slice()) {
            (Some(name), _) => contexts
                .iter()
                .find(|c| &c.name == name)
                .with_context(|| format!("current-context {name:?} is not among its contexts"))?,
            (None, [only]) => only,
            (None, []) => bail!("it has no contexts"),
            (None, _) => bail!("it has several contexts and no current-context"),
        };
        let ctx = context
            .context
            .as_ref()
            .with_context(|| format!("context {:?} is empty", context.name))?;
        let cluster_name = ctx
            .cluster
            .clone()
            .filter(|c| !c.is_empty())
            .with_context(|| format!("context {:?} names no cluster", context.name))?;
        let user_name = ctx.user.clone().unwrap_or_default();
        let cluster = raw
            .clusters
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name == cluster_name)
            .with_context(|| format!("cluster {cluster_name:?} is not defined"))?
            .cluster
            .unwrap_or_default();
        let user = if user_name.is_empty() {
            RawUser::default()
        } else {
            raw.users
                .unwrap_or_default()
                .into_iter()
                .find(|u| u.name == user_name)
                .with_context(|| format!("user {user_name:?} is not defined"))?
                .user
                .unwrap_or_default()
        };
        let pem = |file: Option<String>,
                   data: Option<String>,
                   field: &'static str|
         -> Result<Option<PemRef>> {
            if let Some(data) = data.filter(|d| !d.trim().is_empty()) {
                let bytes = decode_base64(&data).context(field)?;
                return Ok(Some(PemRef::Inline { field, bytes }));
            }
            Ok(file
                .filter(|f| !f.is_empty())
                .map(|f| PemRef::File(base.join(f))))
        };
        Ok(Self {
            path: path.to_path_buf(),
            server: cluster.server.filter(|s| !s.is_empty()),
            certificate_authority: pem(
                cluster.certificate_authority,
                cluster.certificate_authority_data,
                "certificate-authority-data",
            )?,
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify.unwrap_or(false),
            tls_server_name: cluster.tls_server_name.filter(|s| !s.is_empty()),
            client_certificate: pem(
                user.client_certificate,
                user.client_certificate_data,
                "client-certificate-data",
            )?,
            client_key: pem(user.client_key, user.client_key_data, "client-key-data")?,
            cluster_name,
            user_name,
        })
    }

    /// The cluster's CA certificates, if it names any.
    pub fn ca_certs(&self) -> Result<Option<(Vec<CertificateDer<'static>>, String)>> {
        let Some(ca) = &self.certificate_authority else {
            return Ok(None);
        };
        let origin = format!(
            "the certificate-authority of cluster {:?} in kubeconfig {} ({})",
            self.cluster_name,
            self.path.display(),
            ca.describe()
        );
        let certs = read_certs(&ca.read()?).with_context(|| origin.clone())?;
        Ok(Some((certs, origin)))
    }

    /// The user's client certificate chain and key. A user without them is an error: the
    /// kubelet and the API server only answer authenticated requests.
    pub fn client_identity(&self) -> Result<ClientIdentity> {
        let who = format!(
            "user {:?} in kubeconfig {}",
            self.user_name,
            self.path.display()
        );
        let (cert, key) = match (&self.client_certificate, &self.client_key) {
            (Some(c), Some(k)) => (c, k),
            (None, _) => bail!(
                "{who} has no client certificate (client-certificate or \
                 client-certificate-data); the node's client certificate is required"
            ),
            (Some(_), None) => bail!("{who} has a client certificate but no client-key"),
        };
        let cert_bytes = cert.read().with_context(|| who.clone())?;
        let chain = read_certs(&cert_bytes)
            .with_context(|| format!("{who}: client certificate {}", cert.describe()))?;
        let key_bytes = if key == cert {
            cert_bytes
        } else {
            key.read().with_context(|| who.clone())?
        };
        let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
            anyhow::anyhow!(
                "{who}: client key {}: no usable private key (RSA, EC or PKCS#8 PEM): {e}",
                key.describe()
            )
        })?;
        let origin = if key == cert {
            format!("{who} ({})", cert.describe())
        } else {
            format!("{who} ({}, {})", cert.describe(), key.describe())
        };
        Ok(ClientIdentity {
            chain,
            key: key_der,
            origin,
        })
    }
}

/// Every CERTIFICATE block in PEM text; at least one.
pub fn read_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("bad PEM: {e}"))?;
    if certs.is_empty() {
        bail!("no PEM certificate found");
    }
    Ok(certs)
}

fn decode_base64(text: &str) -> Result<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .context("not valid base64")
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::certs::{KeyKind, KubeconfigStyle, TestPki};

    #[test]
    fn reads_every_credential_style() {
        for kind in [KeyKind::EcP256, KeyKind::Rsa2048] {
            let pki = TestPki::with_keys(KeyKind::EcP256, kind).unwrap();
            for style in [
                KubeconfigStyle::InlineData,
                KubeconfigStyle::FilePaths,
                KubeconfigStyle::CombinedFile,
            ] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("kubelet.conf");
                pki.write_kubeconfig(&path, "https://10.0.0.1:6443", style)
                    .unwrap();
                let kc = Kubeconfig::load(&path).unwrap();
                assert_eq!(kc.server.as_deref(), Some("https://10.0.0.1:6443"));
                let id = kc.client_identity().unwrap();
                assert_eq!(id.chain.len(), 1, "{kind:?} {style:?}");
                rustls::crypto::ring::sign::any_supported_type(&id.key)
                    .unwrap_or_else(|e| panic!("{kind:?} {style:?}: {e}"));
                let (cas, origin) = kc.ca_certs().unwrap().unwrap();
                assert_eq!(cas.len(), 1);
                assert!(origin.contains("default-cluster"), "{origin}");
            }
        }
    }

    #[test]
    fn no_client_certificate_is_a_clear_error() {
        let pki = TestPki::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubelet.conf");
        pki.write_kubeconfig(&path, "https://x", KubeconfigStyle::NoClientCert)
            .unwrap();
        let err = Kubeconfig::load(&path)
            .unwrap()
            .client_identity()
            .unwrap_err()
            .to_string();
        assert!(err.contains("no client certificate"), "{err}");
        assert!(err.contains("kubelet.conf"), "{err}");
    }

    #[test]
    fn relative_paths_and_context_selection() {
        let text = "\
apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: 'https://a:1', certificate-authority: pki/ca.crt, tls-server-name: node-a}
- name: b
  cluster: {server: 'https://b:2', insecure-skip-tls-verify: true}
contexts:
- name: ca
  context: {cluster: a, user: ua}
- name: cb
  context: {cluster: b, user: ub}
current-context: cb
users:
- name: ua
  user: {client-certificate: a.crt, client-key: /abs/a.key}
- name: ub
  user: {token: abc}
preferences: {}
";
        let kc = Kubeconfig::parse(text, Path::new("/etc/k/kc.yaml")).unwrap();
        assert_eq!(kc.server.as_deref(), Some("https://b:2"));
        assert!(kc.insecure_skip_tls_verify);
        assert!(kc.client_certificate.is_none());
        let only_a = text.replace("current-context: cb\n", "current-context: ca\n");
        let kc = Kubeconfig::parse(&only_a, Path::new("/etc/k/kc.yaml")).unwrap();
        assert_eq!(kc.tls_server_name.as_deref(), Some("node-a"));
        assert_eq!(
            kc.certificate_authority,
            Some(PemRef::File(PathBuf::from("/etc/k/pki/ca.crt")))
        );
        assert_eq!(
            kc.client_certificate,
            Some(PemRef::File(PathBuf::from("/etc/k/a.crt")))
        );
        assert_eq!(
            kc.client_key,
            Some(PemRef::File(PathBuf::from("/abs/a.key")))
        );
        let none = text.replace("current-context: cb\n", "");
        let err = Kubeconfig::parse(&none, Path::new("/k"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("current-context"), "{err}");
        let wrong = text.replace("current-context: cb", "current-context: zz");
        assert!(Kubeconfig::parse(&wrong, Path::new("/k")).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in ["{{{", "clusters: 5", "contexts: [1, 2]", "- a\n- b", ""] {
            assert!(Kubeconfig::parse(text, Path::new("/k")).is_err(), "{text}");
        }
        let bad_b64 = "contexts: [{name: c, context: {cluster: c, user: u}}]\n\
                       clusters: [{name: c, cluster: {certificate-authority-data: '!!!'}}]\n\
                       users: [{name: u, user: {}}]\n";
        let err = format!(
            "{:#}",
            Kubeconfig::parse(bad_b64, Path::new("/k")).unwrap_err()
        );
        assert!(err.contains("base64"), "{err}");
    }
}
