use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Local, SecondsFormat};
use clap::Args;
use libcontainer::container::state::State;
use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

/// `list`'s options as runc has them (liboci-cli's lack `-f`); youki's table is the default.
#[derive(Args, Debug)]
pub struct List {
    /// Output format: table (also "default") or json (runc's list JSON)
    #[arg(long, short = 'f', default_value = "table", value_name = "FORMAT")]
    pub format: String,

    /// Only display container IDs
    #[arg(long, short)]
    pub quiet: bool,
}

enum Format {
    Table,
    Json,
}

/// Prints the containers under the root: IDs only with `--quiet`, else youki's tab-aligned
/// table or runc's JSON.
pub fn list(args: List, root: &Path) -> Result<()> {
    // runc checks the format even when --quiet makes it moot.
    let format = match args.format.as_str() {
        "table" | "default" => Format::Table,
        "json" => Format::Json,
        other => bail!("invalid format option {other:?}: table or json"),
    };
    let containers = load_all(root)?;
    let out = if args.quiet {
        containers.iter().fold(String::new(), |mut out, c| {
            let _ = writeln!(out, "{}", c.id());
            out
        })
    } else {
        match format {
            Format::Table => render_table(&table_rows(&containers)),
            Format::Json => render_json(&containers)?,
        }
    };
    print!("{out}");
    Ok(())
}

/// Every container with a state file under `root`, by directory name; unreadable ones are
/// skipped with a warning, as one broken state must not hide the others.
fn load_all(root: &Path) -> Result<Vec<Container>> {
    let mut dirs: Vec<PathBuf> = match fs::read_dir(root) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| State::file_path(p).exists())
            .collect(),
        // No root yet: nothing was ever created here (runc prints an empty list too).
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(err).with_context(|| format!("reading {}", root.display())),
    };
    dirs.sort();
    Ok(dirs
        .into_iter()
        .filter_map(|dir| match Container::load(dir.clone()) {
            Ok(c) => Some(c),
            Err(err) => {
                tracing::warn!(%err, dir = %dir.display(), "skipping unreadable container state");
                None
            }
        })
        .collect())
}

fn table_rows(containers: &[Container]) -> Vec<[String; 6]> {
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "CREATOR"].map(String::from)];
    for container in containers {
        let created = container
            .created()
            .map(|utc| DateTime::<Local>::from(utc).to_rfc3339_opts(SecondsFormat::Secs, false))
            .unwrap_or_default();
        rows.push([
            container.id().to_owned(),
            container.pid().map(|p| p.to_string()).unwrap_or_default(),
            container.status().to_string(),
            container.bundle().display().to_string(),
            created,
            owner(container),
        ]);
    }
    rows
}

/// One element of runc's `list --format json` (what go-runc's `List` parses).
#[derive(Serialize)]
struct ListedContainer<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'a str,
    id: &'a str,
    pid: i32,
    /// Serialized as in state.json and runc: "created", "running", …
    status: ContainerStatus,
    bundle: String,
    rootfs: String,
    created: String,
    owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a std::collections::HashMap<String, String>>,
}

/// runc's JSON: an array, `null` when there is no container (Go's nil slice), one line.
fn render_json(containers: &[Container]) -> Result<String> {
    if containers.is_empty() {
        return Ok("null\n".to_owned());
    }
    let listed: Vec<ListedContainer<'_>> = containers
        .iter()
        .map(|c| ListedContainer {
            oci_version: &c.state.oci_version,
            id: c.id(),
            // runc reports 0 for a stopped container's init, whose pid may be reused.
            pid: match c.status() {
                ContainerStatus::Stopped => 0,
                _ => c.pid().map(|p| p.as_raw()).unwrap_or(0),
            },
            status: c.status(),
            bundle: c.bundle().display().to_string(),
            rootfs: rootfs_of(c.bundle()).unwrap_or_default(),
            created: c
                .created()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                .unwrap_or_default(),
            owner: owner(c),
            annotations: c.state.annotations.as_ref().filter(|a| !a.is_empty()),
        })
        .collect();
    let mut out = serde_json::to_string(&listed).context("encoding the list")?;
    out.push('\n');
    Ok(out)
}

fn owner(container: &Container) -> String {
    container
        .creator()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The bundle's `root.path`, made absolute against the bundle as runc reports it; None when
/// the bundle's config is gone or unreadable (a listing must still work then).
fn rootfs_of(bundle: &Path) -> Option<String> {
    let text = fs::read(bundle.join("config.json")).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let path = Path::new(spec.get("root")?.get("path")?.as_str()?);
    Some(bundle.join(path).display().to_string())
}

/// Left-aligned columns separated by at least two spaces (tabwriter's default look).
fn render_table(rows: &[[String; 6]]) -> String {
    let mut widths = [0usize; 6];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_container_lists_as_runc_does() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            render_json(&load_all(root.path()).unwrap()).unwrap(),
            "null\n"
        );
        assert!(
            load_all(&root.path().join("never-created"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(table_rows(&[]).len(), 1, "the header only");
    }

    #[test]
    fn rootfs_is_made_absolute_against_the_bundle() {
        let bundle = tempfile::tempdir().unwrap();
        let b = bundle.path();
        std::fs::write(b.join("config.json"), r#"{"root":{"path":"rootfs"}}"#).unwrap();
        assert_eq!(rootfs_of(b), Some(b.join("rootfs").display().to_string()));
        std::fs::write(b.join("config.json"), r#"{"root":{"path":"/abs/fs"}}"#).unwrap();
        assert_eq!(rootfs_of(b).as_deref(), Some("/abs/fs"));
        std::fs::write(b.join("config.json"), "not json").unwrap();
        assert_eq!(rootfs_of(b), None);
    }

    #[test]
    fn table_aligns_columns() {
        let rows = [
            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "CREATOR"].map(String::from),
            ["a", "12345", "running", "/b", "t", "root"].map(String::from),
        ];
        let text = render_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].find("PID"), lines[1].find("12345"));
        assert_eq!(lines[0].find("STATUS"), lines[1].find("running"));
    }
}
