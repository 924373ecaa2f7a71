//! Where the handler's table goes, decided the way containerd reads its configuration:
//! config.toml first, then every file its `imports` name (globs expanded, relative paths taken
//! from the importing file's directory), breadth first, each file once.
//!
//! The two lines merge differently (both seen with `containerd config dump` of 1.6.20, 1.7.24
//! and 2.1.9):
//! - 1.6/1.7: an imported file that has a plugin's table *replaces* that whole table. So the
//!   handler is merged into the file that owns the CRI plugin's table, which must be
//!   config.toml (an import owning it is refused: editing another tool's file would be undone
//!   by that tool). A file naming any runtime loses containerd's built-in `runc`, so its table
//!   is written out when the default runtime relies on it.
//! - 2.x: imported tables are merged key by key, each file migrated by its own version. The
//!   handler goes into a drop-in of our own, imported by config.toml (as kata-deploy and the
//!   NVIDIA installer do); the drop-in has config.toml's version, because a version 3 drop-in
//!   makes 2.x read a version 2 config.toml's CRI settings as unknown keys.
//!
//! Configurations the installer cannot change safely are refused before anything is written:
//! a config.toml generated from a template (k3s, RKE2), a disabled CRI plugin, version 1.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use toml_edit::{DocumentMut, Item};

use crate::containerd::{self, HandlerTable, Version};
use crate::hostfs::Host;

/// The containerd release line the node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Major {
    One,
    Two,
}

impl Major {
    /// From the CRI's `runtime_version` (`1.6.20~ds1`, `v2.1.9`, ...).
    pub fn from_runtime_version(version: &str) -> Option<Self> {
        let v = version.trim_start_matches('v');
        match v.split('.').next()? {
            "1" => Some(Major::One),
            "2" => Some(Major::Two),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Major::One => "1.x",
            Major::Two => "2.x",
        }
    }
}

/// One config file as containerd loads it.
struct Loaded {
    path: PathBuf,
    doc: DocumentMut,
    version: Option<Version>,
}

/// What one containerd file should become.
pub struct ContainerdFile {
    pub path: PathBuf,
    /// The handler's drop-in (ours alone) or containerd's config.toml.
    pub is_dropin: bool,
    pub bytes: Vec<u8>,
    pub what: String,
    pub added_default_runtime: Option<String>,
    pub import_added: Option<String>,
    pub imports_key_created: bool,
}

pub struct Request<'a> {
    pub host: &'a Host,
    pub config: &'a Path,
    pub dropin_dir: &'a Path,
    pub major: Major,
    pub handler: &'a str,
    pub binary: &'a str,
}

/// Plans the containerd files. Reads only.
pub fn plan(req: &Request<'_>) -> Result<Vec<ContainerdFile>> {
    refuse_generated(req.host, req.config)?;
    let main_text = read_text(req.host, req.config)?;
    let files = load_all(req.host, req.config, main_text.as_deref())?;
    refuse_disabled_cri(&files)?;
    match req.major {
        Major::One => plan_main_file(req, main_text.as_deref(), &files),
        Major::Two => plan_dropin(req, main_text.as_deref(), &files),
    }
}

fn plan_main_file(
    req: &Request<'_>,
    main_text: Option<&str>,
    files: &[Loaded],
) -> Result<Vec<ContainerdFile>> {
    let owner = files
        .iter()
        .rev()
        .find(|f| {
            f.doc
                .get("plugins")
                .and_then(|p| p.get(Version::V2.cri_plugin()))
                .is_some()
        })
        .map(|f| f.path.as_path());
    if let Some(owner) = owner
        && owner != req.config
    {
        bail!(
            "containerd config {}: the CRI plugin's table is set in the imported file {}, and \
             containerd 1.x lets an imported table replace config.toml's whole CRI table; this \
             installer does not edit another tool's file: add the table of \
             patches/containerd-config-v2.toml to {} by hand (BinaryName = {:?}), or move that \
             file's CRI settings into config.toml",
            req.config.display(),
            owner.display(),
            owner.display(),
            req.binary
        );
    }
    let merged = containerd::merge(
        main_text,
        &HandlerTable {
            handler: req.handler,
            binary: req.binary,
            systemd_cgroup: None,
            ensure_default_runtime: true,
        },
    )
    .with_context(|| format!("containerd config {}", req.config.display()))?;
    let mut what = format!(
        "runtime handler {:?} (config version {}",
        req.handler,
        merged.version.number()
    );
    if let Some((runtime, on)) = &merged.systemd_cgroup_from {
        what.push_str(&format!(
            ", SystemdCgroup = {on} as for runtime {runtime:?}"
        ));
    }
    if let Some(default) = &merged.added_default_runtime {
        what.push_str(&format!(
            "; the default runtime {default:?} written out, which containerd 1.x would \
             otherwise drop"
        ));
    }
    what.push(')');
    Ok(vec![ContainerdFile {
        path: req.config.to_path_buf(),
        is_dropin: false,
        bytes: merged.text.into_bytes(),
        what,
        added_default_runtime: merged.added_default_runtime,
        import_added: None,
        imports_key_created: false,
    }])
}

fn plan_dropin(
    req: &Request<'_>,
    main_text: Option<&str>,
    files: &[Loaded],
) -> Result<Vec<ContainerdFile>> {
    let main_version = match files.first() {
        Some(main) => main
            .version
            .with_context(|| format!("containerd config {}", req.config.display()))?,
        None => Version::V3,
    };
    let main_imports = match files.first() {
        Some(main) => containerd::imports_of(&main.doc)
            .with_context(|| format!("containerd config {}", req.config.display()))?,
        None => Vec::new(),
    };
    let name = format!("99-{}.toml", req.handler);
    let config_dir = req.config.parent().unwrap_or(Path::new("/"));
    // A directory config.toml already imports with `<dir>/*.toml` takes the drop-in as it is.
    let globbed_dir = main_imports.iter().find_map(|pattern| {
        let dir = pattern.strip_suffix("/*.toml")?;
        if dir.contains(['*', '?', '[']) {
            return None;
        }
        Some(absolute(config_dir, Path::new(dir)))
    });
    let (dropin, import) = match globbed_dir {
        Some(dir) => (dir.join(&name), None),
        None => {
            let path = req.dropin_dir.join(&name);
            let shown = path
                .to_str()
                .context("the drop-in directory is not UTF-8")?
                .to_owned();
            (path, Some(shown))
        }
    };
    let systemd = effective_systemd_cgroup(files, req.handler);
    let text = containerd::render_dropin(
        main_version,
        &HandlerTable {
            handler: req.handler,
            binary: req.binary,
            systemd_cgroup: Some(systemd.clone()),
            ensure_default_runtime: false,
        },
    )
    .context("rendering the drop-in")?;
    let mut what = format!(
        "runtime handler {:?} (config version {}",
        req.handler,
        main_version.number()
    );
    if let Some((runtime, on)) = &systemd {
        what.push_str(&format!(
            ", SystemdCgroup = {on} as for runtime {runtime:?}"
        ));
    }
    what.push(')');
    let mut out = vec![ContainerdFile {
        path: dropin.clone(),
        is_dropin: true,
        bytes: text.into_bytes(),
        what,
        added_default_runtime: None,
        import_added: None,
        imports_key_created: false,
    }];
    let (main_bytes, import_added, created) = match &import {
        Some(import) => {
            let (text, created) = containerd::add_import(main_text, import, main_version)
                .with_context(|| format!("containerd config {}", req.config.display()))?;
            (text.into_bytes(), Some(import.clone()), created)
        }
        None => (
            main_text.map(|t| t.as_bytes().to_vec()).unwrap_or_default(),
            None,
            false,
        ),
    };
    if import_added.is_some() {
        out.push(ContainerdFile {
            path: req.config.to_path_buf(),
            is_dropin: false,
            bytes: main_bytes,
            what: format!("imports {}", dropin.display()),
            added_default_runtime: None,
            import_added,
            imports_key_created: created,
        });
    }
    Ok(out)
}

/// The default runtime's `SystemdCgroup` after 2.x's key-by-key merge of every file.
fn effective_systemd_cgroup(files: &[Loaded], handler: &str) -> Option<(String, bool)> {
    let containerd_table = |f: &Loaded| {
        let version = f.version?;
        f.doc
            .get("plugins")?
            .get(version.cri_plugin())?
            .get("containerd")
            .cloned()
    };
    let mut default = containerd::BUILTIN_RUNTIME.to_owned();
    for f in files {
        if let Some(name) = containerd_table(f)
            .as_ref()
            .and_then(|c| c.get("default_runtime_name"))
            .and_then(Item::as_str)
        {
            default = name.to_owned();
        }
    }
    if default == handler {
        default = containerd::BUILTIN_RUNTIME.to_owned();
    }
    let mut on = None;
    for f in files {
        if let Some(v) = containerd_table(f)
            .as_ref()
            .and_then(|c| c.get("runtimes"))
            .and_then(|r| r.get(&default))
            .and_then(|r| r.get("options"))
            .and_then(|o| o.get("SystemdCgroup"))
            .and_then(Item::as_bool)
        {
            on = Some(v);
        }
    }
    on.map(|on| (default, on))
}

/// k3s and RKE2 write config.toml from a template at every start: an edit is lost.
fn refuse_generated(host: &Host, config: &Path) -> Result<()> {
    let dir = config.parent().unwrap_or(Path::new("/"));
    for template in ["config.toml.tmpl", "config-v3.toml.tmpl"] {
        let path = dir.join(template);
        if host.exists(&path) {
            bail!(
                "containerd config {}: {} exists, so config.toml is generated from it (k3s, \
                 RKE2) and an edit would be lost at the next start; add the table of \
                 patches/containerd-config-v2.toml to the template instead",
                config.display(),
                path.display()
            );
        }
    }
    if let Some(text) = read_text(host, config)? {
        let head: String = text.lines().take(5).collect::<Vec<_>>().join("\n");
        let lower = head.to_ascii_lowercase();
        if lower.contains("do not edit") || lower.contains("generated by k3s") {
            bail!(
                "containerd config {} says it is generated (\"{}\"); an edit would be lost: \
                 register the handler where the file is generated from",
                config.display(),
                head.lines().next().unwrap_or_default().trim()
            );
        }
    }
    for (root, what) in [
        ("/var/lib/rancher/k3s/agent/etc/containerd", "k3s"),
        ("/var/lib/rancher/rke2/agent/etc/containerd", "RKE2"),
    ] {
        if host.exists(Path::new(root)) && !config.starts_with(root) {
            bail!(
                "this node runs {what}'s containerd (configured under {root}, from a template); \
                 this installer does not edit generated configs: add the table of \
                 patches/containerd-config-v2.toml to {root}/config.toml.tmpl"
            );
        }
    }
    Ok(())
}

fn refuse_disabled_cri(files: &[Loaded]) -> Result<()> {
    for f in files {
        let Some(disabled) = f.doc.get("disabled_plugins").and_then(Item::as_array) else {
            continue;
        };
        for name in disabled.iter().filter_map(|v| v.as_str()) {
            if matches!(
                name,
                "cri" | "io.containerd.grpc.v1.cri" | "io.containerd.cri.v1.runtime"
            ) {
                bail!(
                    "containerd config {} disables the CRI plugin ({name:?} in disabled_plugins): \
                     this containerd does not serve Kubernetes, so there is nothing to register \
                     a handler with",
                    f.path.display()
                );
            }
        }
    }
    Ok(())
}

/// config.toml and its imports in containerd's order. A missing config.toml gives no files.
fn load_all(host: &Host, config: &Path, main_text: Option<&str>) -> Result<Vec<Loaded>> {
    let Some(main_text) = main_text else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Loaded> = Vec::new();
    let mut pending: Vec<(PathBuf, Option<String>)> =
        vec![(config.to_path_buf(), Some(main_text.to_owned()))];
    while !pending.is_empty() {
        let (path, text) = pending.remove(0);
        if out.iter().any(|l| l.path == path) {
            continue;
        }
        let text = match text {
            Some(t) => t,
            None => match read_text(host, &path)? {
                Some(t) => t,
                None => continue,
            },
        };
        let doc = containerd::parse(&text)
            .with_context(|| format!("containerd config {}", path.display()))?;
        let version = match containerd::version_of(&doc) {
            Ok(v) => Some(v),
            Err(containerd::ConfigError::NoVersion) if path != config => None,
            Err(e) => {
                return Err(e).with_context(|| format!("containerd config {}", path.display()));
            }
        };
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        for pattern in containerd::imports_of(&doc)
            .with_context(|| format!("containerd config {}", path.display()))?
        {
            for found in expand(host, &absolute(&dir, Path::new(&pattern)))? {
                pending.push((found, None));
            }
        }
        out.push(Loaded { path, doc, version });
    }
    Ok(out)
}

fn absolute(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// A host path pattern expanded on the host, sorted (Go's filepath.Glob); a plain path as is.
fn expand(host: &Host, pattern: &Path) -> Result<Vec<PathBuf>> {
    let text = pattern
        .to_str()
        .with_context(|| format!("import {} is not UTF-8", pattern.display()))?;
    if !text.contains(['*', '?', '[']) {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let in_view = host.root().join(text.trim_start_matches('/'));
    let in_view = in_view
        .to_str()
        .with_context(|| format!("import {} is not UTF-8", pattern.display()))?;
    let mut out = Vec::new();
    for entry in glob::glob(in_view).with_context(|| format!("import pattern {text:?}"))? {
        let found = entry.with_context(|| format!("expanding import {text:?}"))?;
        let rel = found
            .strip_prefix(host.root())
            .with_context(|| format!("{} is outside the host root", found.display()))?;
        out.push(Path::new("/").join(rel));
    }
    out.sort();
    Ok(out)
}

fn read_text(host: &Host, path: &Path) -> Result<Option<String>> {
    match host.read(path)? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_from_cri_versions() {
        assert_eq!(Major::from_runtime_version("1.6.20~ds1"), Some(Major::One));
        assert_eq!(Major::from_runtime_version("v1.7.24"), Some(Major::One));
        assert_eq!(Major::from_runtime_version("v2.1.9"), Some(Major::Two));
        assert_eq!(Major::from_runtime_version("3.0.0"), None);
        assert_eq!(Major::from_runtime_version(""), None);
    }

    fn node(files: &[(&str, &str)]) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let host = Host::new(dir.path()).unwrap();
        (dir, host)
    }

    fn req<'a>(host: &'a Host, major: Major) -> Request<'a> {
        Request {
            host,
            config: Path::new("/etc/containerd/config.toml"),
            dropin_dir: Path::new("/etc/containerd/conf.d"),
            major,
            handler: "h",
            binary: "/bin/rt",
        }
    }

    #[test]
    fn one_x_refuses_a_cri_table_owned_by_an_import() {
        let (_d, host) = node(&[
            (
                "/etc/containerd/config.toml",
                "version = 2\nimports = [\"conf.d/*.toml\"]\n",
            ),
            (
                "/etc/containerd/conf.d/nvidia.toml",
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n",
            ),
        ]);
        let err = plan(&req(&host, Major::One)).err().unwrap().to_string();
        assert!(err.contains("conf.d/nvidia.toml"), "{err}");
        assert!(err.contains("replace"), "{err}");
    }

    #[test]
    fn two_x_uses_an_imported_directory_and_the_effective_systemd_setting() {
        let (_d, host) = node(&[
            (
                "/etc/containerd/config.toml",
                "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
            ),
            (
                "/etc/containerd/conf.d/10-runc.toml",
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
            ),
        ]);
        let files = plan(&req(&host, Major::Two)).unwrap();
        assert_eq!(files.len(), 1, "config.toml already imports the directory");
        assert_eq!(files[0].path, Path::new("/etc/containerd/conf.d/99-h.toml"));
        let text = String::from_utf8(files[0].bytes.clone()).unwrap();
        assert!(text.contains("version = 3"), "{text}");
        assert!(text.contains("SystemdCgroup = true"), "{text}");
    }

    #[test]
    fn refuses_generated_configs_and_a_disabled_cri() {
        let (_d, host) = node(&[
            ("/etc/containerd/config.toml", "version = 2\n"),
            ("/etc/containerd/config.toml.tmpl", ""),
        ]);
        let err = plan(&req(&host, Major::One)).err().unwrap().to_string();
        assert!(err.contains("template"), "{err}");
        let (_d, host) = node(&[(
            "/etc/containerd/config.toml",
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        )]);
        let err = plan(&req(&host, Major::One)).err().unwrap().to_string();
        assert!(err.contains("disables the CRI plugin"), "{err}");
    }
}
