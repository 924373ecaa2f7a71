//! containerd's config files: merge the handler's table in, take it out again, add and remove
//! an `imports` entry. Pure functions on text; toml_edit keeps every other byte (comments,
//! order, indentation) as it was, so taking out what was put in gives back the same bytes.
//!
//! Where the table goes (config.toml itself, or a drop-in that config.toml imports) is decided
//! by `containerd_layout`, which reads the files the way containerd does.

use thiserror::Error;
use toml_edit::{Array, DocumentMut, Item, Table, value};

use crate::patches::{self, BrokenPatch, PATCH_HANDLER};

/// containerd config versions this installer edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// containerd 1.6 and 1.7 (2.x reads it too, migrating it in memory)
    V2,
    /// containerd 2.x
    V3,
}

impl Version {
    pub fn number(self) -> i64 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    /// The CRI plugin table holding `containerd.runtimes`.
    pub fn cri_plugin(self) -> &'static str {
        match self {
            Version::V2 => "io.containerd.grpc.v1.cri",
            Version::V3 => "io.containerd.cri.v1.runtime",
        }
    }

    pub fn runtimes_path(self) -> [&'static str; 4] {
        ["plugins", self.cri_plugin(), "containerd", "runtimes"]
    }

    fn patch(self) -> (&'static str, &'static str) {
        match self {
            Version::V2 => ("containerd-config-v2.toml", patches::CONTAINERD_V2),
            Version::V3 => ("containerd-config-v3.toml", patches::CONTAINERD_V3),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("not valid TOML: {0}")]
    Malformed(String),
    #[error(
        "has no `version` key, which containerd reads as config version 1; this installer edits \
         version 2 (containerd 1.6/1.7) and version 3 (containerd 2.x) configs: convert it first \
         (`containerd config migrate` on containerd 2.x, `containerd config dump` shows the \
         version 2 form on 1.x)"
    )]
    NoVersion,
    #[error(
        "has `version = {0}`; this installer edits version 2 (containerd 1.6/1.7) and version 3 \
         (containerd 2.x) configs"
    )]
    UnsupportedVersion(i64),
    #[error("`version` is not an integer")]
    BadVersion,
    #[error("`{0}` is not a [table] (an inline table or a value); write it as [table] sections")]
    NotATable(String),
    #[error("`imports` is not an array of strings")]
    BadImports,
    #[error(
        "the default runtime {0:?} (default_runtime_name) has no table here, and containerd has \
         no built-in runtime of that name: containerd would refuse this config"
    )]
    UnknownDefaultRuntime(String),
    #[error(transparent)]
    Patch(#[from] BrokenPatch),
}

/// The result of a merge.
#[derive(Debug)]
pub struct Merged {
    pub text: String,
    pub version: Version,
    /// `SystemdCgroup` copied from this runtime's options, if it set one.
    pub systemd_cgroup_from: Option<(String, bool)>,
    /// The default runtime's table, added because the file relied on containerd's built-in one
    /// (which containerd 1.x drops as soon as the file names any runtime).
    pub added_default_runtime: Option<String>,
}

const CREATED_HEADER: &str = "\
# Written by strict-supplementalgroups-installer because this node had no containerd config:
# containerd's built-in defaults apply to everything not set here.
# `strict-supplementalgroups-installer uninstall` removes this file.
";

const DROPIN_HEADER: &str = "\
# Written by strict-supplementalgroups-installer: registers the runtime handler, imported by
# containerd's config.toml. `strict-supplementalgroups-installer uninstall` removes this file.
";

const TABLE_COMMENT: &str =
    "# Added by strict-supplementalgroups-installer; its uninstall removes this table.\n";

const DEFAULT_RUNTIME_COMMENT: &str = "\
# Added by strict-supplementalgroups-installer: containerd's built-in default runtime, written
# out because containerd 1.x forgets it once the file names any runtime. Uninstall removes it
# again while no other runtime is configured here.
";

/// The built-in runtime of containerd 1.6/1.7/2.x (`default_runtime_name`'s default).
pub const BUILTIN_RUNTIME: &str = "runc";
const RUNC_V2: &str = "io.containerd.runc.v2";

/// How the handler's table is filled in.
#[derive(Clone, Debug)]
pub struct HandlerTable<'a> {
    pub handler: &'a str,
    pub binary: &'a str,
    /// `SystemdCgroup` of the node's default runtime (runtime name, value), when the caller
    /// read it from the effective config; `None` reads it from the file being merged.
    pub systemd_cgroup: Option<Option<(String, bool)>>,
    /// Add the default runtime's table when the file has runtimes but not that one.
    pub ensure_default_runtime: bool,
}

/// Merges the runtime table into `existing` (None: the file does not exist). An existing table
/// of that name keeps its other keys; values that are already right are not touched, so merging
/// twice gives the same bytes.
pub fn merge(existing: Option<&str>, t: &HandlerTable<'_>) -> Result<Merged, ConfigError> {
    let mut doc = match existing {
        Some(text) => parse(text)?,
        None => {
            let mut doc = DocumentMut::new();
            doc.decor_mut().set_prefix(CREATED_HEADER);
            doc
        }
    };
    if doc.get("version").is_none() && doc.as_table().is_empty() {
        // Nothing set yet (absent, empty or only comments): defaults plus our table.
        doc.insert("version", value(2));
    }
    let version = version_of(&doc)?;
    let systemd = match &t.systemd_cgroup {
        Some(given) => given.clone(),
        None => default_runtime_systemd_cgroup(&doc, version, t.handler),
    };
    let handler = t.handler;

    let path = version.runtimes_path();
    let runtimes = descend_mut(doc.as_table_mut(), &path, true)?
        .ok_or_else(|| ConfigError::NotATable(display_path(&path)))?;
    if !runtimes.contains_key(handler) {
        let (name, text) = version.patch();
        let mut template = patches::table_at(
            name,
            text,
            &[
                "plugins",
                version.cri_plugin(),
                "containerd",
                "runtimes",
                PATCH_HANDLER,
            ],
        )?;
        // Positions are the patch file's; here the table goes after its siblings.
        template.set_position(None);
        if let Some(Item::Table(options)) = template.get_mut("options") {
            options.set_position(None);
        }
        template
            .decor_mut()
            .set_prefix(format!("\n{TABLE_COMMENT}"));
        runtimes.insert(handler, Item::Table(template));
    }
    let mut full = path.to_vec();
    full.push(handler);
    let table = match runtimes.get_mut(handler) {
        Some(Item::Table(t)) => t,
        _ => return Err(ConfigError::NotATable(display_path(&full))),
    };
    set_str(table, "runtime_type", RUNC_V2);
    if !table.contains_key("options") {
        table.insert("options", Item::Table(Table::new()));
    }
    full.push("options");
    let options = match table.get_mut("options") {
        Some(Item::Table(t)) => t,
        _ => return Err(ConfigError::NotATable(display_path(&full))),
    };
    set_str(options, "BinaryName", t.binary);
    if let Some((_, on)) = &systemd {
        if options.get("SystemdCgroup").and_then(Item::as_bool) != Some(*on) {
            let indent = key_indent(options);
            options["SystemdCgroup"] = value(*on);
            if let (Some(indent), Some(mut key)) = (indent, options.key_mut("SystemdCgroup")) {
                key.leaf_decor_mut().set_prefix(indent);
            }
        }
    }

    let mut added_default_runtime = None;
    if t.ensure_default_runtime {
        let default = default_runtime_name(&doc, version);
        if default != handler {
            let runtimes = descend_mut(doc.as_table_mut(), &path, true)?
                .ok_or_else(|| ConfigError::NotATable(display_path(&path)))?;
            if !runtimes.contains_key(&default) {
                if default != BUILTIN_RUNTIME {
                    return Err(ConfigError::UnknownDefaultRuntime(default));
                }
                let mut table = Table::new();
                table.insert("runtime_type", value(RUNC_V2));
                table
                    .decor_mut()
                    .set_prefix(format!("\n{DEFAULT_RUNTIME_COMMENT}"));
                // Before ours, where containerd's own default config has it.
                let ours = runtimes.remove_entry(handler);
                runtimes.insert(&default, Item::Table(table));
                if let Some((key, item)) = ours {
                    runtimes.insert_formatted(&key, item);
                }
                added_default_runtime = Some(default);
            }
        }
    }
    Ok(Merged {
        text: doc.to_string(),
        version,
        systemd_cgroup_from: systemd,
        added_default_runtime,
    })
}

/// A drop-in holding only the handler's table, in config version `version` (the importing
/// file's: containerd 2.x migrates the merged whole by the highest version, so a version 3
/// drop-in would hide a version 2 config.toml's CRI settings).
pub fn render_dropin(version: Version, t: &HandlerTable<'_>) -> Result<String, ConfigError> {
    let base = format!("{DROPIN_HEADER}version = {}\n", version.number());
    let merged = merge(
        Some(&base),
        &HandlerTable {
            ensure_default_runtime: false,
            systemd_cgroup: Some(t.systemd_cgroup.clone().flatten()),
            ..t.clone()
        },
    )?;
    Ok(merged.text)
}

/// Adds `import` to the `imports` array of `existing` (None: no file yet, which is created with
/// `version`). Returns the text and whether the `imports` key itself was created.
pub fn add_import(
    existing: Option<&str>,
    import: &str,
    version: Version,
) -> Result<(String, bool), ConfigError> {
    let mut doc = match existing {
        Some(text) => parse(text)?,
        None => {
            let mut doc = DocumentMut::new();
            doc.decor_mut().set_prefix(CREATED_HEADER);
            doc
        }
    };
    if doc.get("version").is_none() && doc.as_table().is_empty() {
        doc.insert("version", value(version.number()));
    }
    version_of(&doc)?;
    let created = !doc.contains_key("imports");
    if created {
        doc.insert("imports", value(Array::new()));
    }
    let imports = doc
        .get_mut("imports")
        .and_then(Item::as_array_mut)
        .ok_or(ConfigError::BadImports)?;
    if !imports.iter().any(|v| v.as_str() == Some(import)) {
        imports.push(import);
    }
    Ok((doc.to_string(), created))
}

/// Takes `import` out of `imports`; the key goes too when `remove_key` and nothing else is
/// left in it. `None`: it was not there.
pub fn remove_import(
    current: &str,
    import: &str,
    remove_key: bool,
) -> Result<Option<String>, ConfigError> {
    let mut doc = parse(current)?;
    let Some(item) = doc.get_mut("imports") else {
        return Ok(None);
    };
    let imports = item.as_array_mut().ok_or(ConfigError::BadImports)?;
    let before = imports.len();
    imports.retain(|v| v.as_str() != Some(import));
    if imports.len() == before {
        return Ok(None);
    }
    if remove_key && imports.is_empty() {
        doc.remove("imports");
    }
    Ok(Some(doc.to_string()))
}

/// The import patterns of a parsed file (empty when it has none).
pub fn imports_of(doc: &DocumentMut) -> Result<Vec<String>, ConfigError> {
    match doc.get("imports") {
        None => Ok(Vec::new()),
        Some(item) => item
            .as_array()
            .ok_or(ConfigError::BadImports)?
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(ConfigError::BadImports))
            .collect(),
    }
}

/// Takes the handler's table out of `current`. Where `original` (the file before install) had a
/// table of that name, that table is put back instead. The default runtime's table that install
/// added goes too, unless another runtime is configured beside it now (then containerd 1.x
/// needs it). Tables left empty that were only implied go as well. `None`: nothing to take out.
pub fn remove(
    current: &str,
    handler: &str,
    original: Option<&str>,
    added_default_runtime: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    let mut doc = parse(current)?;
    let version = match version_of(&doc) {
        Ok(v) => v,
        // Never ours: we always write a version.
        Err(ConfigError::NoVersion) => return Ok(None),
        Err(e) => return Err(e),
    };
    let path = version.runtimes_path();
    let original_table = original
        .and_then(|text| text.parse::<DocumentMut>().ok())
        .and_then(|doc| {
            let mut item = doc.as_item();
            for key in path.iter().chain([&handler]) {
                item = item.get(key)?;
            }
            Some(item.clone())
        });
    let Some(runtimes) = descend_mut(doc.as_table_mut(), &path, false)? else {
        return Ok(None);
    };
    if !runtimes.contains_key(handler) {
        return Ok(None);
    }
    match original_table {
        Some(item) => {
            runtimes.insert(handler, item);
        }
        None => {
            runtimes.remove(handler);
        }
    }
    if let Some(default) = added_default_runtime {
        let untouched = runtimes
            .get(default)
            .and_then(Item::as_table)
            .is_some_and(|t| {
                t.len() == 1 && t.get("runtime_type").and_then(Item::as_str) == Some(RUNC_V2)
            });
        if untouched && runtimes.len() == 1 {
            runtimes.remove(default);
        }
    }
    prune_implicit(doc.as_table_mut(), &path);
    Ok(Some(doc.to_string()))
}

/// Whether a file holds nothing but `version` (and an empty `imports`): what is left of a file
/// install created once our parts are out.
pub fn is_empty_shell(text: &str) -> bool {
    let Ok(doc) = text.parse::<DocumentMut>() else {
        return false;
    };
    doc.iter().all(|(key, item)| match key {
        "version" => true,
        "imports" => item.as_array().is_some_and(Array::is_empty),
        _ => false,
    })
}

pub fn parse(text: &str) -> Result<DocumentMut, ConfigError> {
    text.parse::<DocumentMut>()
        .map_err(|e| ConfigError::Malformed(e.to_string().trim_end().to_owned()))
}

pub fn version_of(doc: &DocumentMut) -> Result<Version, ConfigError> {
    match doc.get("version") {
        None => Err(ConfigError::NoVersion),
        Some(item) => match item.as_integer() {
            Some(2) => Ok(Version::V2),
            Some(3) => Ok(Version::V3),
            Some(n) => Err(ConfigError::UnsupportedVersion(n)),
            None => Err(ConfigError::BadVersion),
        },
    }
}

/// `default_runtime_name` of a file (containerd's default when unset).
pub fn default_runtime_name(doc: &DocumentMut, version: Version) -> String {
    doc.get("plugins")
        .and_then(|p| p.get(version.cri_plugin()))
        .and_then(|c| c.get("containerd"))
        .and_then(|c| c.get("default_runtime_name"))
        .and_then(Item::as_str)
        .unwrap_or(BUILTIN_RUNTIME)
        .to_owned()
}

/// The node's default runtime's `SystemdCgroup`: our handler must use the same cgroup driver as
/// the kubelet, and the default runtime's setting is the one that works on this node.
fn default_runtime_systemd_cgroup(
    doc: &DocumentMut,
    version: Version,
    handler: &str,
) -> Option<(String, bool)> {
    let containerd = doc
        .get("plugins")?
        .get(version.cri_plugin())?
        .get("containerd")?;
    let mut name = containerd
        .get("default_runtime_name")
        .and_then(Item::as_str)
        .unwrap_or(BUILTIN_RUNTIME);
    if name == handler {
        // We were made the default: runc's settings are the reference.
        name = BUILTIN_RUNTIME;
    }
    let on = containerd
        .get("runtimes")?
        .get(name)?
        .get("options")?
        .get("SystemdCgroup")?
        .as_bool()?;
    Some((name.to_owned(), on))
}

/// The indentation of a table's first key, to give a new key the same.
fn key_indent(table: &Table) -> Option<String> {
    let (first, _) = table.get_key_value(table.iter().next()?.0)?;
    let prefix = first.leaf_decor().prefix()?.as_str()?;
    prefix
        .chars()
        .all(|c| c == ' ' || c == '\t')
        .then(|| prefix.to_owned())
}

fn set_str(table: &mut Table, key: &str, wanted: &str) {
    if table.get(key).and_then(Item::as_str) != Some(wanted) {
        table[key] = value(wanted);
    }
}

/// Walks (and with `create`, makes implicit) tables along `path`.
fn descend_mut<'a>(
    root: &'a mut Table,
    path: &[&str],
    create: bool,
) -> Result<Option<&'a mut Table>, ConfigError> {
    let mut table = root;
    for (depth, key) in path.iter().enumerate() {
        if !table.contains_key(key) {
            if !create {
                return Ok(None);
            }
            let mut implicit = Table::new();
            implicit.set_implicit(true);
            table.insert(key, Item::Table(implicit));
        }
        table = match table.get_mut(key) {
            Some(Item::Table(t)) => t,
            _ => return Err(ConfigError::NotATable(display_path(&path[..=depth]))),
        };
    }
    Ok(Some(table))
}

fn prune_implicit(root: &mut Table, path: &[&str]) {
    for depth in (1..=path.len()).rev() {
        let Ok(Some(parent)) = descend_mut(root, &path[..depth - 1], false) else {
            return;
        };
        let key = path[depth - 1];
        let removable =
            matches!(parent.get(key), Some(Item::Table(t)) if t.is_empty() && t.is_implicit());
        if !removable {
            return;
        }
        parent.remove(key);
    }
}

pub fn display_path(path: &[&str]) -> String {
    path.iter()
        .map(|k| {
            if k.contains('.') {
                format!("\"{k}\"")
            } else {
                (*k).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIN: &str = "/usr/local/bin/strict-supplementalgroups-container-runtime";

    fn ht<'a>(handler: &'a str, binary: &'a str) -> HandlerTable<'a> {
        HandlerTable {
            handler,
            binary,
            systemd_cgroup: None,
            ensure_default_runtime: true,
        }
    }

    #[test]
    fn absent_file_gets_a_minimal_version_2_config() {
        let merged = merge(None, &ht("strict-supplementalgroups", BIN)).unwrap();
        assert_eq!(merged.version, Version::V2);
        let doc: DocumentMut = merged.text.parse().unwrap();
        assert_eq!(doc["version"].as_integer(), Some(2));
        let t = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["strict-supplementalgroups"];
        assert_eq!(t["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
        assert_eq!(t["options"]["BinaryName"].as_str(), Some(BIN));
        assert!(
            merged
                .text
                .starts_with("# Written by strict-supplementalgroups-installer")
        );
        // containerd 1.x forgets its built-in runc once a file names any runtime.
        assert_eq!(merged.added_default_runtime.as_deref(), Some("runc"));
        assert_eq!(
            doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"]
                ["runtime_type"]
                .as_str(),
            Some("io.containerd.runc.v2")
        );
        // Removing it leaves no table behind.
        let removed = remove(
            &merged.text,
            "strict-supplementalgroups",
            None,
            merged.added_default_runtime.as_deref(),
        )
        .unwrap()
        .unwrap();
        assert!(!removed.contains("plugins"), "{removed}");
        assert!(is_empty_shell(&removed), "{removed}");
    }

    #[test]
    fn the_default_runtime_is_written_out_only_when_the_file_relies_on_the_builtin() {
        // Debian 12's packaged config: a CRI table (cni), no runtimes.
        let debian = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n";
        let merged = merge(Some(debian), &ht("x", BIN)).unwrap();
        assert_eq!(merged.added_default_runtime.as_deref(), Some("runc"));
        let again = merge(Some(&merged.text), &ht("x", BIN)).unwrap();
        assert_eq!(again.text, merged.text, "idempotent");
        assert_eq!(again.added_default_runtime, None, "already there");
        let back = remove(&merged.text, "x", None, Some("runc"))
            .unwrap()
            .unwrap();
        assert_eq!(back, debian);
        // Another runtime added since needs runc's table: it stays.
        let with_nvidia = format!(
            "{}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n  runtime_type = \"io.containerd.runc.v2\"\n",
            merged.text
        );
        let kept = remove(&with_nvidia, "x", None, Some("runc"))
            .unwrap()
            .unwrap();
        assert!(kept.contains("runtimes.runc]"), "{kept}");
        assert!(kept.contains("runtimes.nvidia]"), "{kept}");
        // A file with runc already is left alone; another default must have its table.
        let with_runc = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n";
        assert_eq!(
            merge(Some(with_runc), &ht("x", BIN))
                .unwrap()
                .added_default_runtime,
            None
        );
        let crun = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"crun\"\n";
        let err = merge(Some(crun), &ht("x", BIN)).unwrap_err().to_string();
        assert!(err.contains("\"crun\""), "{err}");
    }

    #[test]
    fn imports_are_added_and_taken_out_again() {
        let main = "version = 3\n\n[plugins.\"io.containerd.cri.v1.images\"]\n  x = 1\n";
        let (added, created) =
            add_import(Some(main), "/etc/containerd/conf.d/99-x.toml", Version::V3).unwrap();
        assert!(created);
        let doc: DocumentMut = added.parse().unwrap();
        assert_eq!(
            imports_of(&doc).unwrap(),
            ["/etc/containerd/conf.d/99-x.toml"]
        );
        let (twice, _) = add_import(
            Some(&added),
            "/etc/containerd/conf.d/99-x.toml",
            Version::V3,
        )
        .unwrap();
        assert_eq!(twice, added);
        let back = remove_import(&added, "/etc/containerd/conf.d/99-x.toml", true)
            .unwrap()
            .unwrap();
        assert_eq!(back, main);
        let (fresh, _) = add_import(None, "/d/99-x.toml", Version::V3).unwrap();
        assert!(fresh.contains("version = 3"), "{fresh}");
        let emptied = remove_import(&fresh, "/d/99-x.toml", true)
            .unwrap()
            .unwrap();
        assert!(is_empty_shell(&emptied), "{emptied}");
        assert!(!is_empty_shell(main));
    }

    #[test]
    fn merge_is_idempotent_and_renames() {
        let input = "version = 3\n\n# keep me\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n  default_runtime_name = \"runc\"\n";
        let once = merge(Some(input), &ht("strict", "/opt/bin/rt")).unwrap();
        assert_eq!(once.version, Version::V3);
        let twice = merge(Some(&once.text), &ht("strict", "/opt/bin/rt")).unwrap();
        assert_eq!(once.text, twice.text);
        assert!(once.text.contains("# keep me"));
        assert!(
            once.text
                .contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.strict]")
        );
        assert!(once.text.contains("BinaryName = \"/opt/bin/rt\""));
        assert_eq!(
            remove(
                &once.text,
                "strict",
                Some(input),
                once.added_default_runtime.as_deref()
            )
            .unwrap()
            .unwrap(),
            input
        );
    }

    #[test]
    fn systemd_cgroup_follows_the_default_runtime() {
        let input = r#"version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "crun"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]
  SystemdCgroup = true
"#;
        let merged = merge(Some(input), &ht("x", BIN)).unwrap();
        assert_eq!(merged.systemd_cgroup_from, Some(("crun".to_owned(), true)));
        let doc: DocumentMut = merged.text.parse().unwrap();
        assert_eq!(
            doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["x"]["options"]
                ["SystemdCgroup"]
                .as_bool(),
            Some(true)
        );
    }

    #[test]
    fn existing_table_is_updated_and_restored() {
        let input = r#"version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.x]
  runtime_type = "io.containerd.runc.v2"
  privileged_without_host_devices = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.x.options]
    BinaryName = "/old/path"
"#;
        let merged = merge(Some(input), &ht("x", BIN)).unwrap();
        assert!(
            merged
                .text
                .contains("privileged_without_host_devices = true")
        );
        assert!(merged.text.contains(&format!("BinaryName = \"{BIN}\"")));
        assert!(!merged.text.contains("/old/path"));
        let back = remove(&merged.text, "x", Some(input), None)
            .unwrap()
            .unwrap();
        assert!(back.contains("/old/path"), "{back}");
    }

    #[test]
    fn unsupported_inputs_are_named() {
        let err = |text: &str| merge(Some(text), &ht("x", BIN)).unwrap_err().to_string();
        assert!(err("[plugins\nversion = 2").contains("not valid TOML"));
        assert!(err("disabled_plugins = [\"cri\"]").contains("no `version` key"));
        assert!(err("version = 1").contains("version = 1"));
        assert!(err("version = \"2\"").contains("not an integer"));
        assert!(
            err("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\ncontainerd = 5\n")
                .contains("`plugins.\"io.containerd.grpc.v1.cri\".containerd` is not a [table]")
        );
        assert!(
            err("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nruntimes = { runc = {} }\n")
                .contains("is not a [table]")
        );
    }

    #[test]
    fn comments_only_file_gets_a_version() {
        let merged = merge(Some("# nothing here yet\n"), &ht("x", BIN)).unwrap();
        assert!(merged.text.contains("# nothing here yet"));
        assert!(merged.text.contains("version = 2"));
    }
}
