//! Reading the runtime's own log file (`[logging] log-file` of its config): one JSON line per
//! decision, with the gids the runtime was handed (`input_gids`) and what it kept.

use std::path::Path;

/// The runtime's log lines about `container_id` for `operation` (`create`, `exec`).
pub fn decisions(log: &Path, container_id: &str, operation: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["container_id"] == container_id && v["operation"] == operation)
        .collect()
}

/// `"1000,50000"` → `[1000, 50000]`.
pub fn gids(field: &serde_json::Value) -> Vec<u32> {
    field
        .as_str()
        .unwrap_or_default()
        .split(',')
        .filter_map(|g| g.trim().parse().ok())
        .collect()
}

/// A one-line summary of a decision line for the report.
pub fn summary(line: &serde_json::Value) -> String {
    let mut s = format!(
        "{} [{}]",
        line["msg"].as_str().unwrap_or("?"),
        line["kind"].as_str().unwrap_or("?")
    );
    for key in ["input_gids", "kept_gids", "dropped_gids"] {
        if let Some(v) = line.get(key).and_then(|v| v.as_str()) {
            s.push_str(&format!(" {key}={v}"));
        }
    }
    s
}
