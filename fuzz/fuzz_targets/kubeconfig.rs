//! A kubeconfig (YAML; inline `*-data` base64; PEM certificates and keys): what the kubelet and
//! API server sources read to authenticate as the node.
//!
//! Properties, for any bytes: nothing panics or allocates without bound, in the YAML, the
//! context/cluster/user resolution, the base64 of inline data, and the PEM reading of inline
//! CA certificates, client certificates and keys. File references are resolved but not read
//! (the fuzzer would otherwise read whatever path it invents).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use strict_supplementalgroups::podgroups::kubeconfig::{Kubeconfig, PemRef};

fn inline_or_absent(pem: &Option<PemRef>) -> bool {
    !matches!(pem, Some(PemRef::File(_)))
}

fuzz_target!(|data: &[u8]| {
    // Kubeconfig::load reads the file as UTF-8 text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(kubeconfig) = Kubeconfig::parse(text, Path::new("/etc/kubernetes/kubelet.conf")) else {
        return;
    };
    if inline_or_absent(&kubeconfig.certificate_authority) {
        let _ = kubeconfig.ca_certs();
    }
    if inline_or_absent(&kubeconfig.client_certificate) && inline_or_absent(&kubeconfig.client_key)
    {
        let _ = kubeconfig.client_identity();
    }
});
