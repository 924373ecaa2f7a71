//! The runtime's TOML configuration.
//!
//! Keys of the original Go tool keep their meaning so its users can swap the binary without
//! rewriting the file; `runtime` (the runc it wrapped) is accepted and ignored. Every value is
//! validated up front and every error names the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::logging::{self, LogFormat};

pub const DEFAULT_CONFIG_PATH: &str =
    "/etc/strict-supplementalgroups-container-runtime/config.toml";
/// Names another config file (tests, the demo, unusual installs).
pub const CONFIG_ENV: &str = "STRICT_SUPPLEMENTALGROUPS_CONFIG";

pub const DEFAULT_KUBELET_URL: &str = "https://127.0.0.1:10250";
pub const DEFAULT_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";

/// `pod-groups-source` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawSourceKind {
    Kubelet,
    File,
    Apiserver,
}

/// Where the pod's groups are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// `GET /pods` of the local kubelet.
    Kubelet,
    /// A PodList file (`pods-file`).
    File(PathBuf),
    /// One pod per `GET` from the API server.
    Apiserver,
}

/// What to do with a container that carries no Kubernetes pod annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmanagedPolicy {
    Allow,
    Deny,
}

/// `primary-gid`: which primary gid an enforced pod container may run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrimaryGidPolicy {
    /// Whatever the CRI resolved — `runAsGroup`, else the image's choice (its /etc/passwd or
    /// USER): Kubernetes' Strict policy does the same. The default, so no pod breaks.
    Image,
    /// The container's effective `runAsGroup`, or a gid the pod grants (supplementalGroups,
    /// fsGroup, PersistentVolume gids); anything else fails closed.
    Granted,
    /// As `granted`, and also a gid equal to the container's uid (images that create their own
    /// user with a same-numbered group).
    GrantedOrUid,
}

/// `ungranted-gids`: what happens when the stage would drop supplementary gids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UngrantedGidsPolicy {
    /// Remove them and create the container (the default).
    Filter,
    /// Refuse the container, so the attempt shows in the pod's events.
    Refuse,
}

/// `no-new-privileges`: enforced pod containers whose `process.noNewPrivileges` is false (the
/// Kubernetes default when `allowPrivilegeEscalation` is unset) can regain a dropped group
/// through a setgid binary or file capabilities in their image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoNewPrivilegesPolicy {
    /// Leave the spec as it is (the default).
    Unchanged,
    /// Set `noNewPrivileges: true` in the spec (the same lossless rewrite) and in their execs.
    Set,
    /// Refuse such containers; the fix is `allowPrivilegeEscalation: false`.
    Refuse,
}

/// Annotation keys configured to take precedence over the built-in containerd and CRI-O keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnotationOverrides {
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub container_name: Option<String>,
    pub container_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    pub log_file: Option<PathBuf>,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
}

/// How the kubelet and API server sources reach their server: one configuration for both,
/// since both authenticate as the node with the same kubeconfig.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSourceConfig {
    /// The kubelet's URL (`kubelet-url`).
    pub kubelet_url: String,
    pub kubeconfig: PathBuf,
    /// Trust anchor for the kubelet's serving certificate (e.g. its self-signed kubelet.crt).
    pub ca_file: Option<PathBuf>,
    /// Name to verify the serving certificate against when it differs from the URL's host.
    pub tls_server_name: Option<String>,
    pub insecure_skip_tls_verify: bool,
    /// Connect + read timeout of one attempt.
    pub request_timeout: Duration,
    /// Everything, retries included, ends by then.
    pub lookup_deadline: Duration,
    /// Extra attempts after the first, on connection errors and 5xx only.
    pub retries: u32,
    /// Cached lookups older than this are swept.
    pub cache_max_age: Duration,
    /// Overrides the API server URL taken from the kubeconfig (apiserver source only).
    pub apiserver_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub source: SourceKind,
    pub unmanaged: UnmanagedPolicy,
    pub primary_gid: PrimaryGidPolicy,
    pub ungranted_gids: UngrantedGidsPolicy,
    pub no_new_privileges: NoNewPrivilegesPolicy,
    pub annotations: AnnotationOverrides,
    pub http: HttpSourceConfig,
    pub logging: LoggingConfig,
    /// Where the config came from, for messages.
    pub origin: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            source: SourceKind::Kubelet,
            unmanaged: UnmanagedPolicy::Allow,
            primary_gid: PrimaryGidPolicy::Image,
            ungranted_gids: UngrantedGidsPolicy::Filter,
            no_new_privileges: NoNewPrivilegesPolicy::Unchanged,
            annotations: AnnotationOverrides::default(),
            http: HttpSourceConfig {
                kubelet_url: DEFAULT_KUBELET_URL.to_owned(),
                kubeconfig: PathBuf::from(DEFAULT_KUBECONFIG),
                ca_file: None,
                tls_server_name: None,
                insecure_skip_tls_verify: false,
                request_timeout: Duration::from_secs(3),
                lookup_deadline: Duration::from_secs(10),
                retries: 2,
                cache_max_age: Duration::from_secs(7 * 24 * 3600),
                apiserver_url: None,
            },
            logging: LoggingConfig {
                log_file: None,
                log_level: tracing::Level::INFO,
                log_format: LogFormat::Json,
            },
            origin: None,
        }
    }
}

/// The file as written; everything optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    runtime: Option<String>,
    kubelet_url: Option<String>,
    kubeconfig: Option<PathBuf>,
    kubelet_ca_file: Option<PathBuf>,
    kubelet_tls_server_name: Option<String>,
    insecure_skip_tls_verify: Option<bool>,
    request_timeout: Option<String>,
    lookup_deadline: Option<String>,
    retries: Option<u32>,
    cache_max_age: Option<String>,
    apiserver_url: Option<String>,
    pod_groups_source: Option<RawSourceKind>,
    pods_file: Option<PathBuf>,
    unmanaged: Option<UnmanagedPolicy>,
    primary_gid: Option<PrimaryGidPolicy>,
    ungranted_gids: Option<UngrantedGidsPolicy>,
    no_new_privileges: Option<NoNewPrivilegesPolicy>,
    pod_namespace_annotation: Option<String>,
    pod_name_annotation: Option<String>,
    pod_uid_annotation: Option<String>,
    container_name_annotation: Option<String>,
    container_type_annotation: Option<String>,
    logging: Option<RawLogging>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLogging {
    log_file: Option<PathBuf>,
    log_level: Option<String>,
    log_format: Option<String>,
    /// The Go tool rotated its log itself; here rotation is left to logrotate (copytruncate),
    /// because many runtime processes append to the file at once. Accepted for compatibility.
    rotation: Option<RawRotation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(dead_code)] // validated for type, not used: see RawLogging::rotation
struct RawRotation {
    max_size_in_mb: Option<u64>,
    max_backups: Option<u64>,
    max_age_in_day: Option<u64>,
    compress: Option<bool>,
}

/// Non-fatal remarks found while loading, logged by the caller once logging is up.
#[derive(Debug, Default)]
pub struct Remarks(pub Vec<String>);

/// Which file to read: `$STRICT_SUPPLEMENTALGROUPS_CONFIG`, else the default path.
pub fn config_path() -> (PathBuf, bool) {
    match std::env::var_os(CONFIG_ENV) {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    }
}

/// Loads the configuration. A missing default file means defaults; a file named by the
/// environment must exist.
pub fn load() -> Result<(Config, Remarks)> {
    let (path, explicit) = config_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, Some(&path)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !explicit => {
            Ok((Config::default(), Remarks::default()))
        }
        Err(err) => Err(err).with_context(|| format!("reading config file {}", path.display())),
    }
}

pub fn parse(text: &str, origin: Option<&Path>) -> Result<(Config, Remarks)> {
    let shown = origin
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "config".to_owned());
    let raw: RawConfig = toml::from_str(text).with_context(|| format!("invalid {shown}"))?;
    build(raw, origin).with_context(|| format!("invalid {shown}"))
}

fn build(raw: RawConfig, origin: Option<&Path>) -> Result<(Config, Remarks)> {
    let mut remarks = Remarks::default();
    let mut cfg = Config {
        origin: origin.map(Path::to_path_buf),
        ..Config::default()
    };
    if let Some(runtime) = raw.runtime {
        remarks.0.push(format!(
            "config key `runtime` ({runtime:?}) is ignored: this runtime creates containers \
             itself and never executes another runtime"
        ));
    }
    if let Some(url) = raw.kubelet_url {
        cfg.http.kubelet_url = validate_https_url("kubelet-url", &url)?;
    }
    if let Some(url) = raw.apiserver_url {
        cfg.http.apiserver_url = Some(validate_https_url("apiserver-url", &url)?);
    }
    if let Some(p) = raw.kubeconfig {
        cfg.http.kubeconfig = non_empty_path("kubeconfig", p)?;
    }
    if let Some(p) = raw.kubelet_ca_file {
        cfg.http.ca_file = Some(non_empty_path("kubelet-ca-file", p)?);
    }
    if let Some(name) = raw.kubelet_tls_server_name {
        if name.trim().is_empty() {
            bail!("kubelet-tls-server-name: must not be empty");
        }
        cfg.http.tls_server_name = Some(name);
    }
    cfg.http.insecure_skip_tls_verify = raw.insecure_skip_tls_verify.unwrap_or(false);
    if let Some(t) = raw.request_timeout {
        cfg.http.request_timeout = positive_duration("request-timeout", &t)?;
    }
    if let Some(t) = raw.lookup_deadline {
        cfg.http.lookup_deadline = positive_duration("lookup-deadline", &t)?;
    }
    if let Some(r) = raw.retries {
        if r > 10 {
            bail!("retries: {r} is too many (at most 10); the lookup blocks a container start");
        }
        cfg.http.retries = r;
    }
    if let Some(t) = raw.cache_max_age {
        cfg.http.cache_max_age = positive_duration("cache-max-age", &t)?;
    }
    if cfg.http.lookup_deadline < cfg.http.request_timeout {
        bail!(
            "lookup-deadline ({:?}) must not be shorter than request-timeout ({:?})",
            cfg.http.lookup_deadline,
            cfg.http.request_timeout
        );
    }
    let pods_file = raw
        .pods_file
        .map(|p| non_empty_path("pods-file", p))
        .transpose()?;
    cfg.source = match (raw.pod_groups_source, pods_file) {
        (Some(RawSourceKind::File), Some(path)) => SourceKind::File(path),
        (Some(RawSourceKind::File), None) => {
            bail!("pods-file: required when pod-groups-source = \"file\"")
        }
        (Some(RawSourceKind::Apiserver), _) => SourceKind::Apiserver,
        (Some(RawSourceKind::Kubelet) | None, _) => SourceKind::Kubelet,
    };
    if let Some(u) = raw.unmanaged {
        cfg.unmanaged = u;
    }
    if let Some(p) = raw.primary_gid {
        cfg.primary_gid = p;
    }
    if let Some(p) = raw.ungranted_gids {
        cfg.ungranted_gids = p;
    }
    if let Some(p) = raw.no_new_privileges {
        cfg.no_new_privileges = p;
    }
    cfg.annotations = AnnotationOverrides {
        pod_namespace: annotation_key("pod-namespace-annotation", raw.pod_namespace_annotation)?,
        pod_name: annotation_key("pod-name-annotation", raw.pod_name_annotation)?,
        pod_uid: annotation_key("pod-uid-annotation", raw.pod_uid_annotation)?,
        container_name: annotation_key("container-name-annotation", raw.container_name_annotation)?,
        container_type: annotation_key("container-type-annotation", raw.container_type_annotation)?,
    };
    if let Some(logging) = raw.logging {
        if let Some(p) = logging.log_file {
            // The Go tool's "/dev/null" meant "no log file".
            if !p.as_os_str().is_empty() && p != Path::new("/dev/null") {
                cfg.logging.log_file = Some(p);
            }
        }
        if let Some(level) = logging.log_level {
            cfg.logging.log_level = logging::parse_level(&level).context("[logging] log-level")?;
        }
        if let Some(format) = logging.log_format {
            cfg.logging.log_format = format.parse().context("[logging] log-format")?;
        }
        let _ = logging.rotation;
    }
    Ok((cfg, remarks))
}

fn validate_https_url(key: &str, url: &str) -> Result<String> {
    let Some(rest) = url.strip_prefix("https://") else {
        bail!("{key}: {url:?} must be an https:// URL (pod lookups must be authenticated)");
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        bail!("{key}: {url:?} has no host");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn non_empty_path(key: &str, p: PathBuf) -> Result<PathBuf> {
    if p.as_os_str().is_empty() {
        bail!("{key}: must not be empty");
    }
    Ok(p)
}

fn annotation_key(key: &str, value: Option<String>) -> Result<Option<String>> {
    match value {
        Some(v) if v.trim().is_empty() => bail!("{key}: must not be empty"),
        other => Ok(other),
    }
}

fn positive_duration(key: &str, text: &str) -> Result<Duration> {
    let d = parse_duration(text).with_context(|| format!("{key}: {text:?}"))?;
    if d.is_zero() {
        bail!("{key}: must be greater than zero");
    }
    Ok(d)
}

/// Parses `250ms`, `3s`, `2m`, `24h`, `7d` (one number, one unit).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .context("missing unit (ms, s, m, h or d)")?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .context("expected a whole number before the unit")?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => bail!("unknown unit {other:?} (use ms, s, m, h or d)"),
    }
    .context("duration too large")?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> (Config, Remarks) {
        parse(text, None).unwrap()
    }

    fn parse_err(text: &str) -> String {
        format!("{:#}", parse(text, None).unwrap_err())
    }

    #[test]
    fn empty_file_gives_defaults() {
        let (cfg, remarks) = parse_ok("");
        assert_eq!(cfg.source, SourceKind::Kubelet);
        assert_eq!(cfg.http.kubelet_url, DEFAULT_KUBELET_URL);
        assert_eq!(cfg.unmanaged, UnmanagedPolicy::Allow);
        assert!(remarks.0.is_empty());
    }

    #[test]
    fn go_tool_config_loads_unchanged() {
        // deploy/config/config-containerd.toml of the original tool, plus its rotation block.
        let (cfg, remarks) = parse_ok(
            r#"
runtime = "runc"
kubeconfig = "/etc/kubernetes/kubelet.conf"
kubelet-url = "https://127.0.0.1:10250"
pod-namespace-annotation = "io.kubernetes.cri.sandbox-namespace"
pod-name-annotation = "io.kubernetes.cri.sandbox-name"
container-name-annotation = "io.kubernetes.cri.container-name"
container-type-annotation = "io.kubernetes.cri.container-type"

[logging]
log-level = "info"
log-file = "/var/log/strict-supplementalgroups-container-runtime.log"
log-format = "json"

[logging.rotation]
max-size-in-mb = 100
max-backups = 3
max-age-in-day = 30
compress = false
"#,
        );
        assert_eq!(remarks.0.len(), 1);
        assert!(remarks.0[0].contains("`runtime`"));
        assert_eq!(
            cfg.logging.log_file.as_deref(),
            Some(Path::new(
                "/var/log/strict-supplementalgroups-container-runtime.log"
            ))
        );
        assert_eq!(
            cfg.annotations.pod_name.as_deref(),
            Some("io.kubernetes.cri.sandbox-name")
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        assert!(parse_err("kubelet-ulr = \"https://x\"").contains("kubelet-ulr"));
        assert!(parse_err("[logging]\nlevel = \"info\"").contains("level"));
    }

    #[test]
    fn bad_values_name_the_key() {
        assert!(parse_err("pod-groups-source = \"etcd\"").contains("pod-groups-source"));
        assert!(parse_err("unmanaged = \"maybe\"").contains("unmanaged"));
        assert!(parse_err("kubelet-url = \"http://127.0.0.1:10255\"").contains("kubelet-url"));
        assert!(parse_err("pod-groups-source = \"file\"").contains("pods-file"));
        assert!(parse_err("request-timeout = \"3 parsecs\"").contains("request-timeout"));
        assert!(parse_err("request-timeout = \"0s\"").contains("request-timeout"));
        assert!(parse_err("[logging]\nlog-level = \"loud\"").contains("log-level"));
        assert!(parse_err("[logging]\nlog-format = \"xml\"").contains("log-format"));
        assert!(parse_err("pod-name-annotation = \"\"").contains("pod-name-annotation"));
        assert!(
            parse_err("request-timeout = \"5s\"\nlookup-deadline = \"1s\"")
                .contains("lookup-deadline")
        );
        assert!(parse_err("retries = 50").contains("retries"));
    }

    #[test]
    fn file_source_and_policy() {
        let (cfg, _) = parse_ok(
            "pod-groups-source = \"file\"\npods-file = \"/etc/pods.json\"\nunmanaged = \"deny\"",
        );
        assert_eq!(
            cfg.source,
            SourceKind::File(PathBuf::from("/etc/pods.json"))
        );
        assert_eq!(cfg.unmanaged, UnmanagedPolicy::Deny);
    }

    #[test]
    fn enforcement_policies() {
        let (cfg, _) = parse_ok("");
        assert_eq!(
            (cfg.primary_gid, cfg.ungranted_gids, cfg.no_new_privileges),
            (
                PrimaryGidPolicy::Image,
                UngrantedGidsPolicy::Filter,
                NoNewPrivilegesPolicy::Unchanged
            )
        );
        let (cfg, _) = parse_ok(
            "primary-gid = \"granted-or-uid\"\nungranted-gids = \"refuse\"\n\
             no-new-privileges = \"set\"",
        );
        assert_eq!(
            (cfg.primary_gid, cfg.ungranted_gids, cfg.no_new_privileges),
            (
                PrimaryGidPolicy::GrantedOrUid,
                UngrantedGidsPolicy::Refuse,
                NoNewPrivilegesPolicy::Set
            )
        );
        assert!(parse_err("primary-gid = \"runAsGroup\"").contains("primary-gid"));
        assert!(parse_err("ungranted-gids = \"drop\"").contains("ungranted-gids"));
        assert!(parse_err("no-new-privileges = true").contains("no-new-privileges"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn dev_null_log_file_means_none() {
        let (cfg, _) = parse_ok("[logging]\nlog-file = \"/dev/null\"");
        assert_eq!(cfg.logging.log_file, None);
    }
}
