//! The files in patches/ are the single source of what gets registered: they are compiled in
//! here and parsed with toml_edit, and only the handler name and the paths are changed.

use thiserror::Error;
use toml_edit::{DocumentMut, Item, Table};

pub const CONTAINERD_V2: &str = include_str!("../../patches/containerd-config-v2.toml");
pub const CONTAINERD_V3: &str = include_str!("../../patches/containerd-config-v3.toml");
pub const CRIO_DROPIN: &str = include_str!("../../patches/crio-strict-supplementalgroups.conf");

/// The handler name the patch files use.
pub const PATCH_HANDLER: &str = "strict-supplementalgroups";

#[derive(Debug, Error)]
#[error("patch file {name} is broken: {reason}")]
pub struct BrokenPatch {
    pub name: &'static str,
    pub reason: String,
}

/// Parses a patch file and returns the table at `path` (the handler's table).
pub fn table_at(name: &'static str, text: &str, path: &[&str]) -> Result<Table, BrokenPatch> {
    let doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| BrokenPatch {
            name,
            reason: e.to_string(),
        })?;
    let mut item: &Item = doc.as_item();
    for key in path {
        item = item.get(key).ok_or_else(|| BrokenPatch {
            name,
            reason: format!("no `{}`", path.join(".")),
        })?;
    }
    item.as_table().cloned().ok_or_else(|| BrokenPatch {
        name,
        reason: format!("`{}` is not a table", path.join(".")),
    })
}

/// The whole patch file parsed (for the CRI-O drop-in, which is used as a whole).
pub fn document(name: &'static str, text: &str) -> Result<DocumentMut, BrokenPatch> {
    text.parse().map_err(|e: toml_edit::TomlError| BrokenPatch {
        name,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_files_have_the_agreed_shape() {
        for (name, text, plugin) in [
            ("v2", CONTAINERD_V2, "io.containerd.grpc.v1.cri"),
            ("v3", CONTAINERD_V3, "io.containerd.cri.v1.runtime"),
        ] {
            let table = table_at(
                "containerd",
                text,
                &["plugins", plugin, "containerd", "runtimes", PATCH_HANDLER],
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                table["runtime_type"].as_str(),
                Some("io.containerd.runc.v2")
            );
            assert_eq!(
                table["options"]["BinaryName"].as_str(),
                Some("/usr/local/bin/strict-supplementalgroups-container-runtime")
            );
            // Exactly one runtime table, nothing else under plugins.
            let doc: DocumentMut = text.parse().unwrap();
            assert_eq!(doc["plugins"].as_table().unwrap().len(), 1);
            assert_eq!(
                doc["plugins"][plugin]["containerd"]["runtimes"]
                    .as_table()
                    .unwrap()
                    .len(),
                1
            );
        }
        let doc = document("crio", CRIO_DROPIN).unwrap();
        let runtime = &doc["crio"]["runtime"]["runtimes"][PATCH_HANDLER];
        assert_eq!(runtime["runtime_type"].as_str(), Some("oci"));
        assert_eq!(
            runtime["runtime_root"].as_str(),
            Some("/run/strict-supplementalgroups-container-runtime")
        );
        assert!(runtime["runtime_path"].as_str().is_some());
        assert!(runtime["monitor_path"].as_str().is_some());
    }
}
