//! Command line. Every path that names a place on the node is a host path (as the host sees it);
//! the installer prefixes it with `--host-root`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const DEFAULT_HOST_ROOT: &str = "/host";
pub const DEFAULT_HANDLER: &str = "strict-supplementalgroups";
pub const DEFAULT_RUNTIME_PATH: &str = "/usr/local/bin/strict-supplementalgroups-container-runtime";
pub const DEFAULT_RUNTIME_CONFIG_PATH: &str =
    "/etc/strict-supplementalgroups-container-runtime/config.toml";
pub const DEFAULT_RUNTIME_ROOT: &str = "/run/strict-supplementalgroups-container-runtime";
pub const DEFAULT_CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub const DEFAULT_CRIO_CONFIG: &str = "/etc/crio/crio.conf";
pub const DEFAULT_CRIO_CONFIG_DIR: &str = "/etc/crio/crio.conf.d";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/strict-supplementalgroups-installer";
pub const DEFAULT_RESTART_COMMAND: &str = "nsenter --target 1 --mount -- systemctl restart {unit}";
pub const DEFAULT_CONTAINERD_DROPIN_DIR: &str = "/etc/containerd/conf.d";
pub const DEFAULT_NODE_LABEL: &str = "strict-supplementalgroups.io/installed=true";
/// The runtime binary shipped beside the installer (in the image: /usr/local/bin).
pub const RUNTIME_BINARY_NAME: &str = "strict-supplementalgroups-container-runtime";

#[derive(Parser, Debug)]
#[command(
    name = "strict-supplementalgroups-installer",
    version,
    about = "Installs strict-supplementalgroups-container-runtime on a node and registers it as a \
             containerd or CRI-O runtime handler; uninstall reverses exactly what install did"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy the runtime to the host, write its config and register the handler with the CRI
    Install(Box<InstallArgs>),
    /// Take out what install added, restart the CRI and check it serves without the handler
    Uninstall(Box<UninstallArgs>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CriChoice {
    /// containerd if its socket (else its config) is on the host, CRI-O likewise; both or
    /// neither is an error
    Auto,
    Containerd,
    Crio,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Where the node's root filesystem is mounted (use / when running directly on the node)
    #[arg(long, default_value = DEFAULT_HOST_ROOT)]
    pub host_root: PathBuf,
    /// Host directory for the install record and the backups of files other than the
    /// containerd config
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Command that restarts the CRI; split like a shell would (no shell runs), `{unit}` is
    /// replaced by the CRI's service name
    #[arg(long, default_value = DEFAULT_RESTART_COMMAND)]
    pub restart_command: String,
    /// Service name for `{unit}` (default: containerd or crio)
    #[arg(long)]
    pub cri_unit: Option<String>,
    /// Change the files but do not restart the CRI (it keeps its old config until restarted)
    #[arg(long)]
    pub no_restart: bool,
    /// Print what would change; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Host path of the CRI's socket, asked after a restart whether it serves (default:
    /// /run/containerd/containerd.sock or /run/crio/crio.sock)
    #[arg(long)]
    pub cri_socket: Option<PathBuf>,
    /// Do not ask the CRI after the restart (nothing is verified or rolled back, and the node
    /// is not labelled)
    #[arg(long)]
    pub no_verify: bool,
    /// How long the CRI may take to serve again after a restart
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    pub verify_timeout: u64,
    /// The node this runs on (a DaemonSet passes spec.nodeName): after a verified install it
    /// gets --node-label, which the RuntimeClass selects; uninstall takes it off first
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// The node label meaning "handler installed and verified" (key=value)
    #[arg(long, default_value = DEFAULT_NODE_LABEL)]
    pub node_label: String,
    /// API server for the node label (default: in a pod, KUBERNETES_SERVICE_HOST/PORT)
    #[arg(long)]
    pub kube_api: Option<String>,
    /// Bearer token file for the API server (the pod's ServiceAccount token)
    #[arg(long, default_value = crate::node_label::DEFAULT_TOKEN_FILE)]
    pub kube_token_file: PathBuf,
    /// CA that verifies the API server
    #[arg(long, default_value = crate::node_label::DEFAULT_CA_FILE)]
    pub kube_ca_file: PathBuf,
    /// When done, stay until SIGTERM or SIGINT (for a DaemonSet); the signal changes nothing
    #[arg(long)]
    pub wait: bool,
    /// With --wait: file to create (in the installer's own filesystem) once done, for a
    /// readiness probe; removed when the signal comes
    #[arg(long, requires = "wait")]
    pub ready_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct InstallArgs {
    #[command(flatten)]
    pub common: Common,
    /// Which CRI to register the handler with
    #[arg(long, value_enum, default_value_t = CriChoice::Auto)]
    pub cri: CriChoice,
    /// RuntimeClass handler name (a DNS label)
    #[arg(long, default_value = DEFAULT_HANDLER)]
    pub handler_name: String,
    /// Runtime binary to copy to the node (default: strict-supplementalgroups-container-runtime
    /// beside this installer)
    #[arg(long)]
    pub runtime_binary: Option<PathBuf>,
    /// Host path the runtime is installed at (BinaryName / runtime_path)
    #[arg(long, default_value = DEFAULT_RUNTIME_PATH)]
    pub runtime_path: PathBuf,
    /// Runtime config file to install (e.g. from a ConfigMap); without it no config file is
    /// written and the runtime's built-in defaults apply
    #[arg(long)]
    pub runtime_config: Option<PathBuf>,
    /// Host path of the runtime's config file
    #[arg(long, default_value = DEFAULT_RUNTIME_CONFIG_PATH)]
    pub runtime_config_path: PathBuf,
    /// Host path of the runtime's state directory (CRI-O's runtime_root)
    #[arg(long, default_value = DEFAULT_RUNTIME_ROOT)]
    pub runtime_root: PathBuf,
    /// Host path of containerd's config file
    #[arg(long, default_value = DEFAULT_CONTAINERD_CONFIG)]
    pub containerd_config: PathBuf,
    /// Host path of CRI-O's main config file (read only, to find conmon)
    #[arg(long, default_value = DEFAULT_CRIO_CONFIG)]
    pub crio_config: PathBuf,
    /// Host path of CRI-O's drop-in directory
    #[arg(long, default_value = DEFAULT_CRIO_CONFIG_DIR)]
    pub crio_config_dir: PathBuf,
    /// Host path of conmon for CRI-O's monitor_path (default: what CRI-O's config uses for its
    /// default runtime, else the first conmon found in the usual places)
    #[arg(long)]
    pub crio_monitor_path: Option<PathBuf>,
    /// containerd's release line, 1 or 2 (default: asked over the CRI socket; without an
    /// answer, 2 for a version 3 config, else 1)
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub containerd_major: Option<u8>,
    /// Host directory for the handler's drop-in on containerd 2.x (unless config.toml already
    /// imports a directory's *.toml)
    #[arg(long, default_value = DEFAULT_CONTAINERD_DROPIN_DIR)]
    pub containerd_dropin_dir: PathBuf,
    /// Accepted and ignored: a SIGTERM never uninstalls (an upgrade, a ConfigMap change, a
    /// drain or a pod deletion all send one); uninstall is its own step
    #[arg(long, hide = true)]
    pub uninstall_on_exit: bool,
}

#[derive(Args, Debug, Clone)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub common: Common,
    /// Uninstall even while pods run under the handler (their shims then call a runtime
    /// binary that is gone: stop, exec and probes fail)
    #[arg(long)]
    pub force: bool,
    /// With --wait: while pods still run under the handler, check again every this many
    /// seconds instead of failing
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub retry_interval: u64,
}
