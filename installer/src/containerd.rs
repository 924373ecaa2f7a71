//! containerd's config.toml: merge the handler's table in, take it out again. Pure functions on
//! text; toml_edit keeps every other byte (comments, order, indentation) as it was.
//!
//! containerd 1.6/1.7 read `imports`, but an imported file replaces whole top-level plugin
//! tables there, so the table is merged into config.toml itself.

use thiserror::Error;
use toml_edit::{DocumentMut, Item, Table, value};

use crate::patches::{self, BrokenPatch, PATCH_HANDLER};

/// containerd config versions this installer edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// containerd 1.6 and 1.7
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
    fn cri_plugin(self) -> &'static str {
        match self {
            Version::V2 => "io.containerd.grpc.v1.cri",
            Version::V3 => "io.containerd.cri.v1.runtime",
        }
    }

    fn runtimes_path(self) -> [&'static str; 4] {
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
}

const CREATED_HEADER: &str = "\
# Written by strict-supplementalgroups-installer because this node had no containerd config:
# containerd's built-in defaults apply to everything not set here.
# `strict-supplementalgroups-installer uninstall` removes this file.
";

const TABLE_COMMENT: &str =
    "# Added by strict-supplementalgroups-installer; its uninstall removes this table.\n";

/// Merges the runtime table for `handler` (running `binary`) into `existing` (None: the file
/// does not exist). An existing table of that name keeps its other keys; values that are
/// already right are not touched, so merging twice gives the same bytes.
pub fn merge(existing: Option<&str>, handler: &str, binary: &str) -> Result<Merged, ConfigError> {
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
    let systemd = default_runtime_systemd_cgroup(&doc, version, handler);

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
    set_str(table, "runtime_type", "io.containerd.runc.v2");
    if !table.contains_key("options") {
        table.insert("options", Item::Table(Table::new()));
    }
    full.push("options");
    let options = match table.get_mut("options") {
        Some(Item::Table(t)) => t,
        _ => return Err(ConfigError::NotATable(display_path(&full))),
    };
    set_str(options, "BinaryName", binary);
    if let Some((_, on)) = &systemd {
        if options.get("SystemdCgroup").and_then(Item::as_bool) != Some(*on) {
            let indent = key_indent(options);
            options["SystemdCgroup"] = value(*on);
            if let (Some(indent), Some(mut key)) = (indent, options.key_mut("SystemdCgroup")) {
                key.leaf_decor_mut().set_prefix(indent);
            }
        }
    }
    Ok(Merged {
        text: doc.to_string(),
        version,
        systemd_cgroup_from: systemd,
    })
}

/// Takes the handler's table out of `current`. Where `original` (the file before install) had a
/// table of that name, that table is put back instead. Tables left empty that were only implied
/// by ours go too. `None`: there was nothing to take out.
pub fn remove(
    current: &str,
    handler: &str,
    original: Option<&str>,
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
    prune_implicit(doc.as_table_mut(), &path);
    Ok(Some(doc.to_string()))
}

fn parse(text: &str) -> Result<DocumentMut, ConfigError> {
    text.parse::<DocumentMut>()
        .map_err(|e| ConfigError::Malformed(e.to_string().trim_end().to_owned()))
}

fn version_of(doc: &DocumentMut) -> Result<Version, ConfigError> {
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
        .unwrap_or("runc");
    if name == handler {
        // We were made the default: runc's settings are the reference.
        name = "runc";
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

fn display_path(path: &[&str]) -> String {
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

    #[test]
    fn absent_file_gets_a_minimal_version_2_config() {
        let merged = merge(None, "strict-supplementalgroups", BIN).unwrap();
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
        // Removing it leaves no table behind.
        let removed = remove(&merged.text, "strict-supplementalgroups", None)
            .unwrap()
            .unwrap();
        assert!(!removed.contains("plugins"), "{removed}");
    }

    #[test]
    fn merge_is_idempotent_and_renames() {
        let input = "version = 3\n\n# keep me\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n  default_runtime_name = \"runc\"\n";
        let once = merge(Some(input), "strict", "/opt/bin/rt").unwrap();
        assert_eq!(once.version, Version::V3);
        let twice = merge(Some(&once.text), "strict", "/opt/bin/rt").unwrap();
        assert_eq!(once.text, twice.text);
        assert!(once.text.contains("# keep me"));
        assert!(
            once.text
                .contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.strict]")
        );
        assert!(once.text.contains("BinaryName = \"/opt/bin/rt\""));
        assert_eq!(
            remove(&once.text, "strict", Some(input)).unwrap().unwrap(),
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
        let merged = merge(Some(input), "x", BIN).unwrap();
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
        let merged = merge(Some(input), "x", BIN).unwrap();
        assert!(
            merged
                .text
                .contains("privileged_without_host_devices = true")
        );
        assert!(merged.text.contains(&format!("BinaryName = \"{BIN}\"")));
        assert!(!merged.text.contains("/old/path"));
        let back = remove(&merged.text, "x", Some(input)).unwrap().unwrap();
        assert!(back.contains("/old/path"), "{back}");
    }

    #[test]
    fn unsupported_inputs_are_named() {
        let err = |text: &str| merge(Some(text), "x", BIN).unwrap_err().to_string();
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
        let merged = merge(Some("# nothing here yet\n"), "x", BIN).unwrap();
        assert!(merged.text.contains("# nothing here yet"));
        assert!(merged.text.contains("version = 2"));
    }
}
