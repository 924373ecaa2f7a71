//! strict-supplementalgroups-container-runtime as a library: an OCI runtime with runc's command
//! line, built on youki's libcontainer, that drops the supplementary groups a Kubernetes pod did
//! not ask for before the container is created.
//!
//! The binary (`src/main.rs`) only seals itself, parses argv, starts logging and dispatches
//! here (it also carries `passwd.rs`, which must be linked into the executable itself). Dependencies point down this list:
//!
//! - [`commands`]: one thin adapter per runc subcommand, over libcontainer and the stage;
//! - [`spec_stage`]: load → identify → resolve → decide → persist, and the exec filter; it takes
//!   its pod source as a parameter, so every rule is unit-tested without root or network;
//! - [`podgroups`]: the sources of a pod's groups (file, kubelet, API server, cache);
//! - [`record`], [`container_state`], [`atomic_file`]: what is kept beside a container, and
//!   libcontainer's state read for us;
//! - [`cli`], [`config`], [`logging`], [`seal`], [`process_groups`], [`cgroup_dirs`]: the edges;
//! - [`pod`]: the shared vocabulary (pod reference, pod groups, identity, lookup error).

pub mod atomic_file;
pub mod bounded_read;
pub mod cgroup_dirs;
pub mod cli;
pub mod commands;
pub mod config;
pub mod container_state;
pub mod etc_passwd;
pub mod logging;
pub mod pod;
pub mod podgroups;
pub mod process_groups;
pub mod record;
pub mod seal;
pub mod spec_stage;
