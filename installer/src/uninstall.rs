//! `uninstall`: follow the install record backwards. A file still as install left it gets its
//! original bytes back (or goes, if install created it). A file changed since is not
//! overwritten: from containerd's config only the handler's table is taken out, anything else
//! is left in place with its backup, and the output says so.

use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::{Common, UninstallArgs};
use crate::containerd;
use crate::hostfs::{Host, sha256_hex};
use crate::install::{is_cri_config, restart_for};
use crate::record::{FileEntry, Original, Record, Role};

pub fn run(args: &UninstallArgs) -> Result<()> {
    let host = Host::new(&args.common.host_root)?;
    uninstall(&host, &args.common)
}

pub fn uninstall(host: &Host, common: &Common) -> Result<()> {
    crate::hostfs::check_host_path(&common.state_dir).context("--state-dir")?;
    let Some(record) = Record::load(host, &common.state_dir)? else {
        println!(
            "nothing to uninstall: no install record {} on host root {}",
            Record::path(&common.state_dir).display(),
            host.root().display()
        );
        return Ok(());
    };
    println!(
        "strict-supplementalgroups-installer {}: uninstall for {} (handler {:?}, installed by \
         {}) on host root {}{}",
        env!("CARGO_PKG_VERSION"),
        record.cri.name(),
        record.handler,
        record.installer_version,
        host.root().display(),
        if common.dry_run {
            " (dry run: nothing is changed)"
        } else {
            ""
        }
    );
    let cri_changed = reverse(host, &record, &common.state_dir, common.dry_run)?;
    let cri = record.cri;
    if common.dry_run {
        if cri_changed {
            println!("would restart {}", cri.name());
        }
        return Ok(());
    }
    if cri_changed || record.restart_pending {
        restart_for(common, cri).run(cri.name()).with_context(|| {
            format!(
                "the files are restored, but {} still runs with the handler until it is \
                     restarted",
                cri.name()
            )
        })?;
    } else {
        println!(
            "{} config unchanged; {} not restarted",
            cri.name(),
            cri.name()
        );
    }
    Ok(())
}

/// Reverses `record`, removes it and the directories install created (when empty). Returns
/// whether a CRI config file changed.
pub fn reverse(host: &Host, record: &Record, state_dir: &Path, dry_run: bool) -> Result<bool> {
    let mut cri_changed = false;
    for entry in record.files.iter().rev() {
        if reverse_file(host, record, entry, dry_run)? && is_cri_config(entry.role) {
            cri_changed = true;
        }
    }
    if dry_run {
        return Ok(cri_changed);
    }
    host.remove_file(&Record::path(state_dir))?;
    for dir in record.dirs_created.iter().rev() {
        if host.remove_dir_if_empty(dir)? {
            println!("removed directory {}", dir.display());
        } else if host.exists(dir) {
            println!("kept directory {} (not empty)", dir.display());
        }
    }
    Ok(cri_changed)
}

/// Returns whether the file changed.
fn reverse_file(host: &Host, record: &Record, entry: &FileEntry, dry_run: bool) -> Result<bool> {
    let shown = entry.path.display();
    let role = entry.role.describe();
    let would = if dry_run { "would " } else { "" };
    let backup = match &entry.original {
        Original::Untouched => {
            println!("left {shown} ({role}: install found it as wanted and did not change it)");
            return Ok(false);
        }
        Original::Absent => None,
        Original::BackedUp(path) => Some(path.as_path()),
    };
    let Some(current) = host.read(&entry.path)? else {
        match backup {
            Some(b) => println!(
                "{shown} ({role}) is gone already; its original stays at {}",
                b.display()
            ),
            None => println!("{shown} ({role}) is gone already"),
        }
        return Ok(false);
    };
    let original = match backup {
        Some(b) => host.read(b)?,
        None => None,
    };

    if sha256_hex(&current) == entry.sha256 {
        // As install left it: put the original back exactly.
        match (backup, &original) {
            (None, _) => {
                if !dry_run {
                    host.remove_file(&entry.path)?;
                }
                println!("{would}remove {shown} ({role})");
                return Ok(true);
            }
            (Some(b), Some(bytes)) => {
                if !dry_run {
                    let mode = host
                        .mode_of(b)?
                        .context("the backup vanished while being restored")?;
                    host.write_atomic(&entry.path, bytes, mode)?;
                    host.remove_file(b)?;
                }
                println!("{would}restore {shown} ({role}) from {}", b.display());
                return Ok(true);
            }
            (Some(b), None) => {
                println!("the backup {} of {shown} is missing", b.display());
            }
        }
    }

    // Changed since install (or its backup is gone): never overwrite someone else's edit.
    if entry.role != Role::ContainerdConfig {
        let kept = backup.map_or(String::new(), |b| {
            format!("; its original stays at {}", b.display())
        });
        println!("left {shown} ({role}) in place: it changed since install{kept}");
        return Ok(false);
    }
    let current_text =
        String::from_utf8(current).map_err(|_| anyhow::anyhow!("{shown} is not UTF-8 text"))?;
    let original_text = original.and_then(|b| String::from_utf8(b).ok());
    let removed = containerd::remove(&current_text, &record.handler, original_text.as_deref())
        .with_context(|| format!("containerd config {shown}"))?;
    let kept = backup.map_or(String::new(), |b| {
        format!("; the original stays at {}", b.display())
    });
    match removed {
        None => {
            println!(
                "{shown} ({role}) changed since install and has no handler {:?} any more; left \
                 as it is{kept}",
                record.handler
            );
            Ok(false)
        }
        Some(text) => {
            if !dry_run {
                let mode = host
                    .mode_of(&entry.path)?
                    .context("the file vanished while being edited")?;
                host.write_atomic(&entry.path, text.as_bytes(), mode)?;
            }
            println!(
                "{would}remove handler {:?} from {shown} ({role}; the file changed since install, \
                 so only that table is taken out{kept})",
                record.handler
            );
            Ok(true)
        }
    }
}
