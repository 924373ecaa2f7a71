//! Test support shared by the runtime's integration tests and the e2e harness.
//!
//! Nothing here is used by the runtime binary itself.

pub mod apiserver_nodes;
pub mod binaries;
pub mod certs;
pub mod cgroup_claims;
pub mod containerd;
pub mod fixtures;
pub mod kubelet;
pub mod oci_image;
pub mod process;
pub mod restart_hook;
pub mod rootfs;
pub mod runtime;
pub mod skip;
