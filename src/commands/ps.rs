use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use libcgroups::common::CgroupManager;
use liboci_cli::Ps;

use super::cgroup_manager;

pub fn ps(args: Ps, root: &Path) -> Result<()> {
    let pids: Vec<i32> = cgroup_manager(root, &args.container_id)?
        .get_all_pids()
        .with_context(|| format!("listing processes of container {}", args.container_id))?
        .iter()
        .map(|pid| pid.as_raw())
        .collect();

    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let options = if args.ps_options.is_empty() {
                vec!["-ef".to_owned()]
            } else {
                args.ps_options.clone()
            };
            let output = Command::new("ps")
                .args(&options)
                .output()
                .context("running ps")?;
            if !output.status.success() {
                bail!(
                    "ps failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            print!(
                "{}",
                filter_ps_table(&String::from_utf8_lossy(&output.stdout), &pids)?
            );
        }
        other => bail!("invalid format {other:?}: expected \"table\" or \"json\""),
    }
    Ok(())
}

/// Keeps the header and the rows whose PID column is one of `pids`.
fn filter_ps_table(table: &str, pids: &[i32]) -> Result<String> {
    let mut lines = table.lines();
    let header = lines.next().context("ps printed nothing")?;
    let pid_column = header
        .split_whitespace()
        .position(|title| title == "PID")
        .context("ps output has no PID column")?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_container_pids() {
        let table = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sleep\nroot 43 1 sh\n";
        let out = filter_ps_table(table, &[42]).unwrap();
        assert_eq!(out, "UID PID PPID CMD\nroot 42 1 sleep\n");
        assert!(filter_ps_table("UID CMD\n", &[1]).is_err());
    }
}
