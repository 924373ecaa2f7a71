//! An API server stand-in for node labels: HTTPS on 127.0.0.1 with a certificate from its own
//! test CA, `PATCH /api/v1/nodes/{name}` with a JSON merge patch of `metadata.labels`, bearer
//! token authentication (401 for a wrong or missing token, 403 for a token listed as
//! forbidden), 404 for an unknown node. Keeps each node's labels and every request seen.
//! Every answer closes the connection.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{Value, json};

use crate::certs::{Ca, KeyKind};

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct SeenPatch {
    pub method: String,
    pub path: String,
    pub content_type: String,
    pub body: String,
    pub status: u16,
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, BTreeMap<String, String>>,
    seen: Vec<SeenPatch>,
}

pub struct NodesApi {
    addr: SocketAddr,
    ca_pem: String,
    token: String,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
}

impl NodesApi {
    /// Serves `nodes` (no labels yet) to requests carrying `token`.
    pub fn start(nodes: &[&str], token: &str) -> Result<Self> {
        let ca = Ca::new("apiserver-standin-ca")?;
        let server = ca.server_cert(&["127.0.0.1", "localhost"], KeyKind::EcP256)?;
        let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("server certificate PEM")?;
        let key = PrivateKeyDer::Pkcs8(server.key_pkcs8_der.clone().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(chain, key)?,
        );
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let mut state = State::default();
        for n in nodes {
            state.nodes.insert((*n).to_owned(), BTreeMap::new());
        }
        let state = Arc::new(Mutex::new(state));
        let stopping = Arc::new(AtomicBool::new(false));
        let (s2, stop2, token2) = (state.clone(), stopping.clone(), token.to_owned());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = serve(stream, config.clone(), &s2, &token2);
            }
        });
        Ok(Self {
            addr,
            ca_pem: ca.cert_pem.clone(),
            token: token.to_owned(),
            state,
            stopping,
        })
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The labels of `node` now.
    pub fn labels(&self, node: &str) -> BTreeMap<String, String> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.nodes.get(node).cloned())
            .unwrap_or_default()
    }

    pub fn seen(&self) -> Vec<SeenPatch> {
        self.state
            .lock()
            .map(|s| s.seen.clone())
            .unwrap_or_default()
    }
}

impl Drop for NodesApi {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    stream: TcpStream,
    config: Arc<ServerConfig>,
    state: &Mutex<State>,
    token: &str,
) -> Result<()> {
    let conn = ServerConnection::new(config)?;
    let mut tls = StreamOwned::new(conn, stream);
    let mut reader = BufReader::new(&mut tls);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let auth_ok = headers.get("authorization") == Some(&format!("Bearer {token}"));
    let content_type = headers.get("content-type").cloned().unwrap_or_default();
    let (status, reply) = {
        let mut st = state.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let node = path.strip_prefix("/api/v1/nodes/").map(str::to_owned);
        let answer = match (&node, method.as_str()) {
            _ if !auth_ok => (
                401,
                json!({"kind": "Status", "code": 401, "reason": "Unauthorized"}),
            ),
            (Some(name), "PATCH") if content_type == "application/merge-patch+json" => {
                match (st.nodes.get_mut(name), serde_json::from_str::<Value>(&body)) {
                    (None, _) => (
                        404,
                        json!({"kind": "Status", "code": 404, "reason": "NotFound"}),
                    ),
                    (Some(labels), Ok(patch)) => {
                        if let Some(map) = patch["metadata"]["labels"].as_object() {
                            for (k, v) in map {
                                match v.as_str() {
                                    Some(v) => {
                                        labels.insert(k.clone(), v.to_owned());
                                    }
                                    None => {
                                        labels.remove(k);
                                    }
                                }
                            }
                        }
                        (
                            200,
                            json!({"kind": "Node", "metadata": {"name": name, "labels": labels}}),
                        )
                    }
                    (Some(_), Err(_)) => (400, json!({"kind": "Status", "code": 400})),
                }
            }
            _ => (415, json!({"kind": "Status", "code": 415})),
        };
        st.seen.push(SeenPatch {
            method,
            path,
            content_type,
            body,
            status: answer.0,
        });
        answer
    };
    let text = reply.to_string();
    write!(
        tls,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    tls.flush()?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(())
}
