//! A kubelet stand-in: an HTTPS server on 127.0.0.1 that, like a real kubelet's port 10250,
//! **requires** a client certificate issued by the test CA, serves a settable PodList on
//! `GET /pods` and single pods on `GET /api/v1/namespaces/{ns}/pods/{name}` (so it also stands
//! in for the API server, together with PersistentVolumeClaims on
//! `GET /api/v1/namespaces/{ns}/persistentvolumeclaims/{name}` and PersistentVolumes on
//! `GET /api/v1/persistentvolumes/{name}`, see [`KubeletStandIn::set_volumes`]), and can be told
//! to misbehave.
//!
//! ```no_run
//! use test_support::certs::TestPki;
//! use test_support::kubelet::{Behaviour, KubeletStandIn, pod, pod_list};
//! let pki = TestPki::new().unwrap();
//! let kubelet = KubeletStandIn::start(&pki, Behaviour::Serve).unwrap();
//! kubelet.set_pods(pod_list(vec![pod("user-alice", "bypass-pod", "u1", &[60000], None)]));
//! println!("{}", kubelet.url()); // https://127.0.0.1:<port>
//! // … point the runtime at it, create containers …
//! assert_eq!(kubelet.requests(), 1);
//! kubelet.set_behaviour(Behaviour::StatusThenServe { status: 500, times: 2 });
//! ```
//!
//! Every answer closes the connection (`Connection: close`). Large bodies are sent chunked, as
//! Go's net/http does, small ones with a Content-Length. Dropping the stand-in stops it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use serde_json::{Value, json};

use crate::certs::{CertKey, TestPki};

/// How the stand-in answers requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with the pods (the default).
    Serve,
    /// Always this status (401, 403, 500, …) with a kubelet-like text body.
    Status(u16),
    /// `status` for the next `times` requests, then [`Behaviour::Serve`].
    StatusThenServe { status: u16, times: usize },
    /// Completes the TLS handshake, reads the request, and never answers.
    Hang,
    /// 200 with a body that is not JSON.
    Garbage,
    /// These bytes, exactly, as the whole answer (a hostile or broken HTTP response); then
    /// the connection is closed.
    Raw(Vec<u8>),
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    /// The subject CN of the client certificate.
    pub client_cn: Option<String>,
}

struct Shared {
    /// The PodList, serialized once per `set_pods`.
    pods_body: Mutex<Arc<Vec<u8>>>,
    /// The PodList's items, for single-pod requests.
    pods: Mutex<Arc<Value>>,
    /// PersistentVolumeClaims and PersistentVolumes served by name.
    volumes: Mutex<Arc<(Vec<Value>, Vec<Value>)>>,
    behaviour: Mutex<Behaviour>,
    /// Failures left for `StatusThenServe`.
    failures_left: AtomicUsize,
    requests: Mutex<Vec<SeenRequest>>,
    stopping: AtomicBool,
}

/// A running stand-in; see the module docs.
pub struct KubeletStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl KubeletStandIn {
    /// Serves with `pki.server` as its certificate and requires client certificates issued by
    /// `pki.ca`. Starts with an empty PodList.
    pub fn start(pki: &TestPki, behaviour: Behaviour) -> Result<Self> {
        Self::start_with_cert(&pki.server, &pki.ca.cert_pem, behaviour)
    }

    /// Serves with any certificate (e.g. one from another CA, or a kubelet-style self-signed
    /// one) and requires client certificates issued by the CA in `client_ca_pem`.
    pub fn start_with_cert(
        server: &CertKey,
        client_ca_pem: &str,
        behaviour: Behaviour,
    ) -> Result<Self> {
        let config = server_config(server, client_ca_pem)?;
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            pods_body: Mutex::new(Arc::new(Vec::new())),
            pods: Mutex::new(Arc::new(Value::Null)),
            volumes: Mutex::new(Arc::new((Vec::new(), Vec::new()))),
            behaviour: Mutex::new(Behaviour::Serve),
            failures_left: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let mut standin = Self {
            addr,
            shared: shared.clone(),
            accept_thread: None,
        };
        standin.set_pods(pod_list(Vec::new()));
        standin.set_behaviour(behaviour);
        let thread = std::thread::Builder::new()
            .name("kubelet-standin".into())
            .spawn(move || accept_loop(listener, config, shared))?;
        standin.accept_thread = Some(thread);
        Ok(standin)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the PodList (a `{"kind":"PodList","items":[…]}` value, see [`pod_list`]).
    pub fn set_pods(&self, list: Value) {
        let body = serde_json::to_vec(&list).unwrap_or_default();
        *lock(&self.shared.pods_body) = Arc::new(body);
        *lock(&self.shared.pods) = Arc::new(list);
    }

    /// Replaces the PersistentVolumeClaims (see [`pvc`]) and PersistentVolumes (see [`pv`])
    /// served by name, as the API server serves them to a node.
    pub fn set_volumes(&self, claims: Vec<Value>, volumes: Vec<Value>) {
        *lock(&self.shared.volumes) = Arc::new((claims, volumes));
    }

    /// Changes how the next requests are answered.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        let failures = match &behaviour {
            Behaviour::StatusThenServe { times, .. } => *times,
            _ => 0,
        };
        self.shared.failures_left.store(failures, Ordering::SeqCst);
        *lock(&self.shared.behaviour) = behaviour;
    }

    /// How many HTTP requests arrived (after a successful TLS handshake), whatever the answer.
    pub fn requests(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// The requests seen so far, oldest first.
    pub fn seen(&self) -> Vec<SeenRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Stops accepting and ends hanging connections. Idempotent; also done on drop.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.accept_thread.take() {
            // Wake the blocking accept.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = thread.join();
        }
    }
}

impl Drop for KubeletStandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn server_config(server: &CertKey, client_ca_pem: &str) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(cert.context("client CA PEM")?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("client verifier")?;
    let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("server certificate PEM")?;
    let key = PrivateKeyDer::Pkcs8(server.key_pkcs8_der.clone().into());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("server certificate and key")?;
    Ok(Arc::new(config))
}

fn accept_loop(listener: TcpListener, config: Arc<ServerConfig>, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let config = config.clone();
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("kubelet-standin-conn".into())
            .spawn(move || {
                let _ = serve_connection(stream, config, &shared);
            });
    }
}

fn serve_connection(tcp: TcpStream, config: Arc<ServerConfig>, shared: &Shared) -> Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let _ = tcp.set_nodelay(true);
    let conn = ServerConnection::new(config)?;
    let mut tls = StreamOwned::new(conn, tcp);
    // Handshake first: a client without an acceptable certificate never gets further.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let client_cn = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| subject_cn(c));

    let (method, path) = {
        let mut reader = BufReader::new(&mut tls);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
                break;
            }
        }
        let mut parts = request_line.split_whitespace();
        (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        )
    };
    lock(&shared.requests).push(SeenRequest {
        method: method.clone(),
        path: path.clone(),
        client_cn,
    });

    let behaviour = lock(&shared.behaviour).clone();
    let status = match behaviour {
        Behaviour::Serve => None,
        Behaviour::Status(code) => Some(code),
        Behaviour::StatusThenServe { status, .. } => {
            let left = shared.failures_left.load(Ordering::SeqCst);
            if left > 0 {
                shared.failures_left.store(left - 1, Ordering::SeqCst);
                Some(status)
            } else {
                None
            }
        }
        Behaviour::Hang => {
            while !shared.stopping.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return Ok(());
        }
        Behaviour::Raw(bytes) => {
            send_and_close(&mut tls, &bytes)?;
            return Ok(());
        }
        Behaviour::Garbage => {
            respond(
                &mut tls,
                200,
                "application/json",
                b"{\"kind\":\"PodList\",\"items\":[{{{ <html>",
            )?;
            return Ok(());
        }
    };
    if let Some(code) = status {
        let body = match code {
            401 => "Unauthorized".to_owned(),
            403 => format!(
                "Forbidden (user=system:node:{}, verb=get, resource=nodes, subresource(s)=[proxy])",
                crate::certs::NODE_NAME
            ),
            _ => "Internal Server Error: stand-in told to fail".to_owned(),
        };
        respond(&mut tls, code, "text/plain; charset=utf-8", body.as_bytes())?;
        return Ok(());
    }

    if method != "GET" {
        respond(&mut tls, 405, "text/plain", b"method not allowed")?;
    } else if path == "/pods" || path.starts_with("/pods?") {
        let body = lock(&shared.pods_body).clone();
        respond(&mut tls, 200, "application/json", &body)?;
    } else if let Some(name) = path.strip_prefix("/api/v1/persistentvolumes/") {
        let volumes = lock(&shared.volumes).clone();
        let found = volumes
            .1
            .iter()
            .find(|v| v["metadata"]["name"].as_str() == Some(name));
        respond_object(
            &mut tls,
            found,
            "persistentvolumes",
            name,
            "PersistentVolume",
        )?;
    } else if let Some(rest) = path.strip_prefix("/api/v1/namespaces/") {
        if let Some((ns, name)) = rest.split_once("/persistentvolumeclaims/") {
            let volumes = lock(&shared.volumes).clone();
            let found = volumes.0.iter().find(|c| {
                c["metadata"]["namespace"].as_str() == Some(ns)
                    && c["metadata"]["name"].as_str() == Some(name)
            });
            respond_object(
                &mut tls,
                found,
                "persistentvolumeclaims",
                name,
                "PersistentVolumeClaim",
            )?;
        } else {
            let pods = lock(&shared.pods).clone();
            match rest.split_once("/pods/") {
                Some((ns, name)) if !name.contains('/') => {
                    respond_object(&mut tls, find(&pods, ns, name), "pods", name, "Pod")?
                }
                _ => respond(&mut tls, 404, "text/plain", b"404 page not found")?,
            }
        }
    } else {
        respond(&mut tls, 404, "text/plain", b"404 page not found")?;
    }
    Ok(())
}

/// 200 with the object (its kind and apiVersion set, as the API server sends them), or the API
/// server's 404 Status naming `resource`.
fn respond_object(
    tls: &mut StreamOwned<ServerConnection, TcpStream>,
    found: Option<&Value>,
    resource: &str,
    name: &str,
    kind: &str,
) -> Result<()> {
    match found {
        Some(object) => {
            let mut object = object.clone();
            object["kind"] = json!(kind);
            object["apiVersion"] = json!("v1");
            respond(
                tls,
                200,
                "application/json",
                &serde_json::to_vec(&object).unwrap_or_default(),
            )
        }
        None => {
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure",
                "message": format!("{resource} \"{name}\" not found"),
                "reason": "NotFound",
                "details": {"name": name, "kind": resource}, "code": 404
            });
            respond(
                tls,
                404,
                "application/json",
                &serde_json::to_vec(&status).unwrap_or_default(),
            )
        }
    }
}

fn find<'a>(list: &'a Value, ns: &str, name: &str) -> Option<&'a Value> {
    list["items"].as_array()?.iter().find(|p| {
        p["metadata"]["namespace"].as_str() == Some(ns)
            && p["metadata"]["name"].as_str() == Some(name)
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes one response and closes (close_notify, then FIN).
fn respond(
    tls: &mut StreamOwned<ServerConnection, TcpStream>,
    code: u16,
    content_type: &str,
    body: &[u8],
) -> Result<()> {
    const CHUNK: usize = 32 * 1024;
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nConnection: close\r\n",
        reason(code)
    );
    let chunked = body.len() > 8 * 1024;
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    }
    // One buffer, one write: TLS records as full as a Go server's, not one per fragment.
    let mut wire = Vec::with_capacity(head.len() + body.len() + body.len() / CHUNK * 12 + 16);
    wire.extend_from_slice(head.as_bytes());
    if chunked {
        for chunk in body.chunks(CHUNK) {
            wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
    } else {
        wire.extend_from_slice(body);
    }
    send_and_close(tls, &wire)
}

/// Writes `wire` and closes (close_notify, then FIN), draining until the client closes so
/// that the client never sees a reset.
fn send_and_close(tls: &mut StreamOwned<ServerConnection, TcpStream>, wire: &[u8]) -> Result<()> {
    tls.write_all(wire)?;
    tls.conn.send_close_notify();
    tls.flush()?;
    let _ = tls.sock.shutdown(std::net::Shutdown::Write);
    // Drain until the client closes, so the client never sees a reset.
    let mut sink = [0u8; 1024];
    let _ = tls.sock.set_read_timeout(Some(Duration::from_secs(2)));
    while matches!(tls.sock.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
}

/// The subject CN of a DER certificate, found by scanning for the CN attribute OID.
fn subject_cn(cert: &CertificateDer<'_>) -> Option<String> {
    // OID 2.5.4.3 followed by a string type; the subject's CN is the last one (the issuer's
    // comes first in the TBSCertificate).
    const CN_OID: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    let der = cert.as_ref();
    let mut found = None;
    let mut i = 0;
    while i + CN_OID.len() + 2 <= der.len() {
        if &der[i..i + CN_OID.len()] == CN_OID {
            let len_pos = i + CN_OID.len() + 1;
            let len = usize::from(der[len_pos]);
            if let Some(bytes) = der.get(len_pos + 1..len_pos + 1 + len) {
                found = String::from_utf8(bytes.to_vec()).ok();
            }
            i = len_pos;
        }
        i += 1;
    }
    found
}

/// A PersistentVolumeClaim `namespace/name` (uid `uid`) bound to the PersistentVolume `volume`.
pub fn pvc(namespace: &str, name: &str, uid: &str, volume: &str) -> Value {
    json!({
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "metadata": {"namespace": namespace, "name": name, "uid": uid},
        "spec": {"accessModes": ["ReadWriteMany"], "volumeName": volume,
                 "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"},
    })
}

/// A PersistentVolume `name` bound to the claim `claim_namespace/claim_name` (uid `claim_uid`),
/// with the kubelet's gid annotation `pv.beta.kubernetes.io/gid` when `gid` is given.
pub fn pv(
    name: &str,
    gid: Option<&str>,
    claim_namespace: &str,
    claim_name: &str,
    claim_uid: &str,
) -> Value {
    let mut annotations = json!({});
    if let Some(gid) = gid {
        annotations["pv.beta.kubernetes.io/gid"] = json!(gid);
    }
    json!({
        "kind": "PersistentVolume",
        "apiVersion": "v1",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "nfs": {"server": "nfs.example", "path": format!("/exports/{name}")},
            "claimRef": {"kind": "PersistentVolumeClaim", "namespace": claim_namespace,
                         "name": claim_name, "uid": claim_uid},
        },
        "status": {"phase": "Bound"},
    })
}

/// A PodList value with these items.
pub fn pod_list(items: Vec<Value>) -> Value {
    json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    })
}

/// A minimal pod with the given security context groups.
pub fn pod(
    namespace: &str,
    name: &str,
    uid: &str,
    supplemental_groups: &[i64],
    fs_group: Option<i64>,
) -> Value {
    let mut security_context = json!({
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "supplementalGroups": supplemental_groups,
    });
    if let Some(fs_group) = fs_group {
        security_context["fsGroup"] = json!(fs_group);
    }
    json!({
        "metadata": {"namespace": namespace, "name": name, "uid": uid},
        "spec": {
            "containers": [{"name": "app", "image": "busybox"}],
            "securityContext": security_context,
        },
        "status": {"phase": "Running"},
    })
}

/// `n` pods shaped like what a real kubelet's `/pods` returns for an ordinary Deployment pod
/// (labels, annotations, ownerReferences, managedFields, a container with env, probes and
/// volume mounts, volumes, tolerations, a full status): about 6 KiB of JSON each. For load
/// and latency tests; namespaces `filler-<i % 20>`, names `filler-<i>`, uids `filler-uid-<i>`.
pub fn filler_pods(n: usize) -> Vec<Value> {
    (0..n).map(filler_pod).collect()
}

fn filler_pod(i: usize) -> Value {
    let ns = format!("filler-{}", i % 20);
    let name = format!("filler-{i}");
    let ts = "2026-11-27T10:00:00Z";
    let env: Vec<Value> = (0..8)
        .map(|k| json!({"name": format!("ENV_VAR_{k}"), "value": format!("value-{k}-{i}")}))
        .collect();
    json!({
        "metadata": {
            "name": name,
            "generateName": "filler-",
            "namespace": ns,
            "uid": format!("filler-uid-{i}"),
            "resourceVersion": format!("{}", 100_000 + i),
            "creationTimestamp": ts,
            "labels": {"app": "filler", "pod-template-hash": "5d8f7c9b6d", "tier": "backend"},
            "annotations": {
                "kubernetes.io/config.seen": ts,
                "kubernetes.io/config.source": "api",
                "kubectl.kubernetes.io/restartedAt": ts,
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "filler-5d8f7c9b6d",
                "uid": format!("rs-uid-{i}"), "controller": true, "blockOwnerDeletion": true
            }],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                 "time": ts, "fieldsType": "FieldsV1", "fieldsV1": {
                    "f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {},
                        "f:pod-template-hash": {}}, "f:ownerReferences": {".": {},
                        "k:{\"uid\":\"rs\"}": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:env": {},
                        "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {},
                        "f:securityContext": {}, "f:terminationMessagePath": {}}},
                        "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                        "f:securityContext": {".": {}, "f:fsGroup": {}, "f:runAsUser": {},
                        "f:supplementalGroups": {}}, "f:terminationGracePeriodSeconds": {}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": ts,
                 "fieldsType": "FieldsV1", "subresource": "status", "fieldsV1": {"f:status": {
                    "f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {},
                    "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}}
            ]
        },
        "spec": {
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "kube-api-access-x7k2p", "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt",
                                   "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ], "defaultMode": 420}}
            ],
            "containers": [{
                "name": "app",
                "image": "registry.example.com/team/filler-app:v1.2.3",
                "command": ["/bin/app"],
                "args": ["--port=8080", "--log-level=info", format!("--replica={i}")],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": env,
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                              "requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "kube-api-access-x7k2p", "readOnly": true,
                     "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
                ],
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                    "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                    "failureThreshold": 3},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
                    "timeoutSeconds": 1, "periodSeconds": 5, "successThreshold": 1,
                    "failureThreshold": 3},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}}
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "nodeName": crate::certs::NODE_NAME,
            "securityContext": {"runAsUser": 2000 + (i % 7), "supplementalGroups": [3000 + (i % 5) as i64],
                                "fsGroup": 4000 + (i % 3) as i64},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastProbeTime": null,
                 "lastTransitionTime": ts},
                {"type": "Ready", "status": "True", "lastProbeTime": null,
                 "lastTransitionTime": ts},
                {"type": "ContainersReady", "status": "True", "lastProbeTime": null,
                 "lastTransitionTime": ts},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                 "lastTransitionTime": ts}
            ],
            "hostIP": "10.0.0.10",
            "podIP": format!("10.244.{}.{}", (i / 250) % 250, i % 250 + 2),
            "podIPs": [{"ip": format!("10.244.{}.{}", (i / 250) % 250, i % 250 + 2)}],
            "startTime": ts,
            "containerStatuses": [{
                "name": "app",
                "state": {"running": {"startedAt": ts}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "image": "registry.example.com/team/filler-app:v1.2.3",
                "imageID": "registry.example.com/team/filler-app@sha256:0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a09080706050403020100",
                "containerID": format!("containerd://{:064x}", i),
                "started": true
            }],
            "qosClass": "Burstable"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(
        standin: &KubeletStandIn,
        pki: &TestPki,
        with_client_cert: bool,
        path: &str,
    ) -> Result<String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(pki.ca.cert_pem.as_bytes()) {
            roots.add(c?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = if with_client_cert {
            let chain = CertificateDer::pem_slice_iter(pki.client.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(
                chain,
                PrivateKeyDer::Pkcs8(pki.client.key_pkcs8_der.clone().into()),
            )?
        } else {
            builder.with_no_client_auth()
        };
        let conn = rustls::ClientConnection::new(Arc::new(config), "127.0.0.1".try_into()?)?;
        let tcp = TcpStream::connect(standin.addr())?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut tls = StreamOwned::new(conn, tcp);
        tls.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn serves_pods_only_to_clients_with_certificates() {
        let pki = TestPki::new().unwrap();
        let standin = KubeletStandIn::start(&pki, Behaviour::Serve).unwrap();
        standin.set_pods(pod_list(vec![pod("ns", "p", "u1", &[60000], Some(70000))]));
        let reply = get(&standin, &pki, true, "/pods").unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.contains("\"supplementalGroups\":[60000]"), "{reply}");
        let reply = get(&standin, &pki, true, "/api/v1/namespaces/ns/pods/p").unwrap();
        assert!(reply.contains("\"kind\":\"Pod\""), "{reply}");
        let reply = get(&standin, &pki, true, "/api/v1/namespaces/ns/pods/q").unwrap();
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        assert!(get(&standin, &pki, false, "/pods").is_err());
        assert_eq!(standin.requests(), 3);
        standin.set_volumes(
            vec![pvc("ns", "data", "claim-uid", "pv-1")],
            vec![pv("pv-1", Some("50000"), "ns", "data", "claim-uid")],
        );
        let reply = get(
            &standin,
            &pki,
            true,
            "/api/v1/namespaces/ns/persistentvolumeclaims/data",
        )
        .unwrap();
        assert!(reply.contains("\"volumeName\":\"pv-1\""), "{reply}");
        let reply = get(&standin, &pki, true, "/api/v1/persistentvolumes/pv-1").unwrap();
        assert!(
            reply.contains("\"pv.beta.kubernetes.io/gid\":\"50000\""),
            "{reply}"
        );
        let reply = get(&standin, &pki, true, "/api/v1/persistentvolumes/pv-2").unwrap();
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        let reply = get(
            &standin,
            &pki,
            true,
            "/api/v1/namespaces/other/persistentvolumeclaims/data",
        )
        .unwrap();
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        assert_eq!(standin.requests(), 7);
        assert_eq!(
            standin.seen()[0].client_cn.as_deref(),
            Some("system:node:test-node")
        );
        standin.set_behaviour(Behaviour::StatusThenServe {
            status: 403,
            times: 1,
        });
        let reply = get(&standin, &pki, true, "/pods").unwrap();
        assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
        let reply = get(&standin, &pki, true, "/pods").unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }

    #[test]
    fn filler_pods_are_realistic_in_size() {
        let body = serde_json::to_vec(&pod_list(filler_pods(100))).unwrap();
        let per_pod = body.len() / 100;
        assert!((4_000..9_000).contains(&per_pod), "{per_pod} bytes per pod");
    }
}
