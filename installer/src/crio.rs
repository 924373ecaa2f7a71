//! CRI-O: a drop-in in /etc/crio/crio.conf.d/ (CRI-O reads the directory after crio.conf, in
//! lexical order), rendered from patches/crio-strict-supplementalgroups.conf. CRI-O's own files are
//! only read, to find the conmon its default runtime uses.

use thiserror::Error;
use toml_edit::{DocumentMut, Item, value};

use crate::patches::{self, BrokenPatch, PATCH_HANDLER};

/// Places conmon is installed by the usual packages, tried in order when CRI-O's config does
/// not name one.
pub const CONMON_CANDIDATES: &[&str] = &[
    "/usr/libexec/crio/conmon",
    "/usr/local/libexec/crio/conmon",
    "/usr/bin/conmon",
    "/usr/local/bin/conmon",
    "/usr/libexec/podman/conmon",
];

#[derive(Debug, Error)]
pub enum CrioError {
    #[error("{file}: not valid TOML: {reason}")]
    Malformed { file: String, reason: String },
    #[error(transparent)]
    Patch(#[from] BrokenPatch),
}

/// The drop-in's file name for a handler.
pub fn dropin_name(handler: &str) -> String {
    format!("99-{handler}.conf")
}

pub struct DropIn<'a> {
    pub handler: &'a str,
    pub runtime_path: &'a str,
    pub runtime_root: &'a str,
    pub monitor_path: Option<&'a str>,
}

/// Renders the drop-in: the patch file's table, renamed, with our paths; without a monitor
/// path the key is left out and CRI-O picks conmon itself.
pub fn render(d: &DropIn<'_>) -> Result<String, CrioError> {
    let mut doc = patches::document("crio-strict-supplementalgroups.conf", patches::CRIO_DROPIN)?;
    let broken = |reason: &str| BrokenPatch {
        name: "crio-strict-supplementalgroups.conf",
        reason: reason.to_owned(),
    };
    let runtimes = doc
        .get_mut("crio")
        .and_then(|i| i.get_mut("runtime"))
        .and_then(|i| i.get_mut("runtimes"))
        .and_then(Item::as_table_mut)
        .ok_or_else(|| broken("no [crio.runtime.runtimes]"))?;
    let (_, mut item) = runtimes
        .remove_entry(PATCH_HANDLER)
        .ok_or_else(|| broken("no handler table"))?;
    let table = item
        .as_table_mut()
        .ok_or_else(|| broken("handler is not a table"))?;
    // The patch file's header comment sits before this table; the drop-in gets its own.
    table.decor_mut().set_prefix("");
    table["runtime_path"] = value(d.runtime_path);
    table["runtime_root"] = value(d.runtime_root);
    match d.monitor_path {
        Some(path) => table["monitor_path"] = value(path),
        None => {
            table.remove("monitor_path");
        }
    }
    runtimes.insert(d.handler, item);
    doc.decor_mut().set_prefix(format!(
        "# Written by strict-supplementalgroups-installer: registers the runtime handler \
         \"{}\".\n# `strict-supplementalgroups-installer uninstall` removes this file.\n",
        d.handler
    ));
    Ok(doc.to_string())
}

/// What CRI-O's existing config says, read in CRI-O's order (crio.conf, then drop-ins).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Existing {
    /// conmon of the default runtime (or the deprecated global `conmon`), and the file that set it.
    pub monitor_path: Option<(String, String)>,
    /// Files that already define a runtime of our handler's name.
    pub handler_defined_in: Vec<String>,
}

/// Reads CRI-O's config files (name, text), in the order CRI-O applies them.
pub fn read_existing(files: &[(String, String)], handler: &str) -> Result<Existing, CrioError> {
    let mut docs = Vec::new();
    for (name, text) in files {
        let doc = text
            .parse::<DocumentMut>()
            .map_err(|e| CrioError::Malformed {
                file: name.clone(),
                reason: e.to_string().trim_end().to_owned(),
            })?;
        docs.push((name, doc));
    }
    let runtime = |doc: &DocumentMut| doc.get("crio").and_then(|c| c.get("runtime")).cloned();
    let mut default_runtime = None;
    for (_, doc) in &docs {
        if let Some(name) = runtime(doc).and_then(|r| {
            r.get("default_runtime")
                .and_then(|d| d.as_str().map(str::to_owned))
        }) {
            default_runtime = Some(name);
        }
    }
    // CRI-O's default runtime was runc, and is crun since 1.28/1.29.
    let candidates: Vec<String> = match default_runtime {
        Some(name) => vec![name],
        None => vec!["crun".to_owned(), "runc".to_owned()],
    };
    let mut existing = Existing::default();
    for name in &candidates {
        for (file, doc) in &docs {
            if let Some(path) = runtime(doc)
                .and_then(|r| r.get("runtimes").and_then(|rs| rs.get(name)).cloned())
                .and_then(|t| {
                    t.get("monitor_path")
                        .and_then(|m| m.as_str().map(str::to_owned))
                })
                .filter(|p| !p.is_empty())
            {
                existing.monitor_path = Some((path, (*file).clone()));
            }
        }
        if existing.monitor_path.is_some() {
            break;
        }
    }
    if existing.monitor_path.is_none() {
        for (file, doc) in &docs {
            if let Some(path) = runtime(doc)
                .and_then(|r| r.get("conmon").and_then(|m| m.as_str().map(str::to_owned)))
                .filter(|p| !p.is_empty())
            {
                existing.monitor_path = Some((path, (*file).clone()));
            }
        }
    }
    for (file, doc) in &docs {
        if runtime(doc)
            .and_then(|r| r.get("runtimes").and_then(|rs| rs.get(handler)).cloned())
            .is_some()
        {
            existing.handler_defined_in.push((*file).clone());
        }
    }
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_renamed_table() {
        let text = render(&DropIn {
            handler: "strict",
            runtime_path: "/opt/bin/rt",
            runtime_root: "/run/rt",
            monitor_path: None,
        })
        .unwrap();
        let doc: DocumentMut = text.parse().unwrap();
        let t = &doc["crio"]["runtime"]["runtimes"]["strict"];
        assert_eq!(t["runtime_path"].as_str(), Some("/opt/bin/rt"));
        assert_eq!(t["runtime_type"].as_str(), Some("oci"));
        assert_eq!(t["runtime_root"].as_str(), Some("/run/rt"));
        assert!(t.get("monitor_path").is_none());
        assert!(!text.contains("strict-supplementalgroups]"));
    }

    #[test]
    fn finds_the_default_runtimes_conmon() {
        let files = vec![
            (
                "/etc/crio/crio.conf".to_owned(),
                "[crio.runtime]\nconmon = \"/usr/bin/conmon\"\n".to_owned(),
            ),
            (
                "/etc/crio/crio.conf.d/10-crio.conf".to_owned(),
                "[crio.runtime]\ndefault_runtime = \"runc\"\n[crio.runtime.runtimes.runc]\nmonitor_path = \"/usr/libexec/crio/conmon\"\n".to_owned(),
            ),
        ];
        let existing = read_existing(&files, "x").unwrap();
        assert_eq!(
            existing.monitor_path,
            Some((
                "/usr/libexec/crio/conmon".to_owned(),
                "/etc/crio/crio.conf.d/10-crio.conf".to_owned()
            ))
        );
        let only_global = read_existing(&files[..1], "x").unwrap();
        assert_eq!(only_global.monitor_path.unwrap().0, "/usr/bin/conmon");
    }

    #[test]
    fn malformed_file_is_named() {
        let files = vec![("/etc/crio/crio.conf".to_owned(), "[crio\n".to_owned())];
        let err = read_existing(&files, "x").unwrap_err().to_string();
        assert!(
            err.starts_with("/etc/crio/crio.conf: not valid TOML"),
            "{err}"
        );
    }
}
