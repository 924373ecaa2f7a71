use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Local};
use libcontainer::container::Container;
use libcontainer::container::state::State;
use liboci_cli::List;

/// Prints the containers under the root as youki does: a tab-aligned table.
pub fn list(_: List, root: &Path) -> Result<()> {
    let mut rows = vec![[
        "ID".to_owned(),
        "PID".to_owned(),
        "STATUS".to_owned(),
        "BUNDLE".to_owned(),
        "CREATED".to_owned(),
        "CREATOR".to_owned(),
    ]];
    let mut dirs: Vec<_> = fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| State::file_path(p).exists())
        .collect();
    dirs.sort();
    for dir in dirs {
        let container = match Container::load(dir.clone()) {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(%err, dir = %dir.display(), "skipping unreadable container state");
                continue;
            }
        };
        let created = container
            .created()
            .map(|utc| {
                DateTime::<Local>::from(utc).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            })
            .unwrap_or_default();
        rows.push([
            container.id().to_owned(),
            container.pid().map(|p| p.to_string()).unwrap_or_default(),
            container.status().to_string(),
            container.bundle().display().to_string(),
            created,
            container
                .creator()
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ]);
    }
    print!("{}", render_table(&rows));
    Ok(())
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
