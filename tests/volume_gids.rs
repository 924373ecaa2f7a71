//! PersistentVolume gids through every source (issue 12 §1): a pod that mounts a claim holds
//! the gid of the PersistentVolume bound to it, resolved through the API server with the
//! node's identity (for the kubelet and API server sources) or from the objects of a pods
//! file; every way of not resolving it fails the lookup naming the volume and the claim.
//! In-process against the HTTPS stand-in; no root needed. (`kubelet_source.rs` runs a
//! container of such a pod.)

mod common;

use std::path::Path;
use std::time::Duration;

use common::kubelet::{ApiServer, Node, pod_ref};
use serde_json::{Value, json};
use strict_supplementalgroups::pod::{LookupError, PodGroups, PodGroupsSource, PodRef, VolumeGid};
use strict_supplementalgroups::podgroups::apiserver::ApiServerSource;
use strict_supplementalgroups::podgroups::file::FileSource;
use strict_supplementalgroups::podgroups::kubelet::KubeletSource;
use test_support::certs::{KubeconfigStyle, TestPki};
use test_support::kubelet::{Behaviour, KubeletStandIn, filler_pods, pod, pod_list, pv, pvc};

const NS: &str = "user-alice";

/// A pod whose container `app` mounts `mounted`, with these volumes.
fn pod_with_volumes(name: &str, uid: &str, volumes: Value, mounted: &[&str]) -> Value {
    let mut p = pod(NS, name, uid, &[60000], None);
    p["spec"]["volumes"] = volumes;
    p["spec"]["containers"][0]["volumeMounts"] = mounted
        .iter()
        .map(|m| json!({"name": m, "mountPath": format!("/mnt/{m}")}))
        .collect();
    p
}

/// `web` (uid u1) mounts claim `data`, bound to PV `pv-data` (gid 50000).
fn web() -> Value {
    pod_with_volumes(
        "web",
        "u1",
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
               {"name": "tmp", "emptyDir": {}}]),
        &["data", "tmp"],
    )
}

fn web_ref() -> PodRef {
    pod_ref(NS, "web", "u1")
}

fn bound() -> (Vec<Value>, Vec<Value>) {
    (
        vec![pvc(NS, "data", "claim-uid", "pv-data")],
        vec![pv("pv-data", Some("50000"), NS, "data", "claim-uid")],
    )
}

/// One stand-in as kubelet and API server (the kubeconfig's server), holding `pods` and the
/// claims and volumes given; lookups get 4 s and one retry.
fn setup(pods: Vec<Value>, volumes: (Vec<Value>, Vec<Value>)) -> Node {
    let mut node = Node::start(
        Behaviour::Serve,
        ApiServer::TheStandIn,
        KubeconfigStyle::FilePaths,
    );
    let mut items = filler_pods(20);
    items.extend(pods);
    node.kubelet.set_pods(pod_list(items));
    node.kubelet.set_volumes(volumes.0, volumes.1);
    node.config.lookup_deadline = Duration::from_secs(4);
    node.config.retries = 1;
    node
}

/// The kubelet and the API server source, each asked once.
fn both_sources(s: &Node, pod: &PodRef) -> [(&'static str, Result<PodGroups, LookupError>); 2] {
    [
        ("kubelet", KubeletSource::new(s.config.clone()).lookup(pod)),
        (
            "apiserver",
            ApiServerSource::new(s.config.clone()).lookup(pod),
        ),
    ]
}

fn volume_error(source: &str, r: Result<PodGroups, LookupError>) -> String {
    let e = r.unwrap_err();
    assert!(
        matches!(e, LookupError::Volume { .. }),
        "{source}: not a volume error: {e}"
    );
    let text = format!("{e:#}");
    assert!(
        text.contains("volume \"data\"") && text.contains("PersistentVolumeClaim user-alice/data"),
        "{source}: {text}"
    );
    text
}

#[test]
fn both_http_sources_keep_the_gid_of_the_pods_volume() {
    let s = setup(vec![web()], bound());
    for (source, result) in both_sources(&s, &web_ref()) {
        let g = result.unwrap_or_else(|e| panic!("{source}: {e:#}"));
        assert_eq!(
            g.volume_gids,
            vec![VolumeGid {
                gid: 50000,
                volume: "data".into(),
                claim: "data".into(),
                persistent_volume: "pv-data".into(),
            }],
            "{source}"
        );
        assert_eq!(g.granted().collect::<Vec<_>>(), vec![60000, 50000]);
    }
    let paths: Vec<String> = s.kubelet.seen().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/pods",
            "/api/v1/namespaces/user-alice/persistentvolumeclaims/data",
            "/api/v1/persistentvolumes/pv-data",
            "/api/v1/namespaces/user-alice/pods/web",
            "/api/v1/namespaces/user-alice/persistentvolumeclaims/data",
            "/api/v1/persistentvolumes/pv-data",
        ]
    );
    // Every request with the node's own identity.
    assert!(
        s.kubelet
            .seen()
            .iter()
            .all(|r| r.client_cn.as_deref() == Some("system:node:test-node"))
    );
}

#[test]
fn pods_without_claims_make_no_extra_request() {
    let unused = pod_with_volumes(
        "web",
        "u1",
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]),
        &[],
    );
    let s = setup(vec![unused], (vec![], vec![]));
    for (source, result) in both_sources(&s, &web_ref()) {
        let g = result.unwrap_or_else(|e| panic!("{source}: {e:#}"));
        assert!(g.volume_gids.is_empty(), "{source}");
    }
    assert_eq!(s.kubelet.requests(), 2, "one per source, no claim asked");
}

#[test]
fn generic_ephemeral_volumes_are_the_pods_own_claims() {
    let eph = pod_with_volumes(
        "web",
        "u1",
        json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]),
        &["scratch"],
    );
    let mut claim = pvc(NS, "web-scratch", "claim-uid", "pv-scratch");
    claim["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Pod",
        "name": "web", "uid": "u1", "controller": true, "blockOwnerDeletion": true}]);
    let scratch = pv("pv-scratch", Some("51000"), NS, "web-scratch", "claim-uid");
    let s = setup(vec![eph], (vec![claim.clone()], vec![scratch.clone()]));
    for (source, result) in both_sources(&s, &web_ref()) {
        let g = result.unwrap_or_else(|e| panic!("{source}: {e:#}"));
        assert_eq!(g.volume_gids[0].gid, 51000, "{source}");
        assert_eq!(g.volume_gids[0].claim, "web-scratch", "{source}");
    }
    // The same claim name owned by a pod of an earlier life: not this pod's.
    claim["metadata"]["ownerReferences"][0]["uid"] = json!("u0");
    s.kubelet.set_volumes(vec![claim], vec![scratch]);
    for (source, result) in both_sources(&s, &web_ref()) {
        let text = format!("{:#}", result.unwrap_err());
        assert!(
            text.contains("not created for this pod"),
            "{source}: {text}"
        );
    }
}

#[test]
fn every_unresolvable_claim_fails_naming_volume_and_claim() {
    let s = setup(vec![web()], (vec![], vec![]));
    let cases: Vec<(&str, Vec<Value>, Vec<Value>, &str)> = vec![
        ("claim missing", vec![], vec![], "the claim does not exist"),
        (
            "claim pending",
            vec![{
                let mut c = pvc(NS, "data", "claim-uid", "pv-data");
                c["status"]["phase"] = json!("Pending");
                c
            }],
            vec![],
            "not bound (phase Pending)",
        ),
        (
            "PV missing",
            vec![pvc(NS, "data", "claim-uid", "pv-data")],
            vec![],
            "PersistentVolume pv-data does not exist",
        ),
        (
            "claimRef of another claim",
            vec![pvc(NS, "data", "claim-uid", "pv-data")],
            vec![pv("pv-data", Some("50000"), NS, "data", "an-earlier-claim")],
            "bound to another claim",
        ),
        (
            "garbage claim",
            vec![json!({"metadata": {"namespace": NS, "name": "data"}, "spec": 5})],
            vec![],
            "not a PersistentVolumeClaim",
        ),
        (
            "gid out of range",
            bound().0,
            vec![pv("pv-data", Some("-5"), NS, "data", "claim-uid")],
            "not a valid gid",
        ),
    ];
    for (case, claims, volumes, expected) in cases {
        s.kubelet.set_volumes(claims, volumes);
        for (source, result) in both_sources(&s, &web_ref()) {
            let text = volume_error(source, result);
            assert!(text.contains(expected), "{case}, {source}: {text}");
        }
    }
}

#[test]
fn an_unreachable_or_refusing_api_server_fails_the_pod_that_has_claims() {
    // The kubelet answers; the API server (the kubeconfig's server) refuses, then is down.
    let s = setup(vec![web()], bound());
    let pki = TestPki::new().unwrap();
    let refusing =
        KubeletStandIn::start_with_cert(&pki.server, &s.pki.ca.cert_pem, Behaviour::Status(403))
            .unwrap();
    let mut config = s.config.clone();
    config.apiserver_url = Some(refusing.url());
    // The refusing server's certificate is from another CA: use insecure mode to reach its 403
    // (its own test covers trust); then an address nobody listens on.
    config.insecure_skip_tls_verify = true;
    let text = volume_error(
        "kubelet",
        KubeletSource::new(config.clone()).lookup(&web_ref()),
    );
    assert!(
        text.contains("403") && text.contains("persistentvolumeclaims"),
        "{text}"
    );
    assert_eq!(refusing.requests(), 1, "403 is not retried");

    config.apiserver_url = Some("https://127.0.0.1:1".into());
    config.lookup_deadline = Duration::from_secs(1);
    let text = volume_error("kubelet", KubeletSource::new(config).lookup(&web_ref()));
    assert!(text.contains("cannot connect"), "{text}");
}

#[test]
fn a_pods_file_list_resolves_claims_from_its_own_items() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pods.json");
    let write = |items: Vec<Value>| {
        let list = json!({"kind": "List", "apiVersion": "v1", "items": items});
        std::fs::write(&path, serde_json::to_vec(&list).unwrap()).unwrap();
    };
    let mut pod_item = web();
    pod_item["kind"] = json!("Pod");
    let (claims, volumes) = bound();
    write(
        [vec![pod_item.clone()], claims.clone(), volumes.clone()]
            .concat()
            .into_iter()
            .collect(),
    );
    let g = FileSource::new(path.clone()).lookup(&web_ref()).unwrap();
    assert_eq!(g.volume_gids.len(), 1);
    assert_eq!(
        (
            g.volume_gids[0].gid,
            g.volume_gids[0].persistent_volume.as_str()
        ),
        (50000, "pv-data")
    );
    // Without its volume in the file: the claim cannot be resolved.
    write([vec![pod_item.clone()], claims.clone()].concat());
    let text = volume_error("file", FileSource::new(path.clone()).lookup(&web_ref()));
    assert!(text.contains("pv-data does not exist"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    // A claim of another namespace with that name is not the pod's.
    let mut elsewhere = claims[0].clone();
    elsewhere["metadata"]["namespace"] = json!("other");
    write(vec![pod_item, elsewhere, volumes[0].clone()]);
    let text = volume_error("file", FileSource::new(path.clone()).lookup(&web_ref()));
    assert!(text.contains("the claim does not exist"), "{text}");
    assert!(Path::new(&path).exists());
}
