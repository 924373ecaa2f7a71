//! `uninstall`: take the node label off (no new pods come), wait until no pod runs under the
//! handler, then follow the install record backwards, restart the CRI and check that it serves
//! again without the handler (else put our files back, restart again, and fail).
//!
//! containerd's files are never restored from a backup: others may have changed them since
//! install (an NVIDIA runtime table, a registry mirror), so only what install added is taken
//! out: the handler's table, the default runtime's table it wrote out (while nothing else needs
//! it), the `imports` entry, our drop-in. When that gives the original bytes back, the backup
//! goes too; otherwise it stays for comparison. Files that are ours alone (the runtime binary
//! and config, CRI-O's drop-in) get their original back when they are still as install left
//! them, and are left in place, with a note, when someone changed them.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::UninstallArgs;
use crate::containerd;
use crate::hostfs::{FileMode, Host, sha256_hex};
use crate::install::{Undo, is_cri_config, restart_for, restore_files};
use crate::lock;
use crate::record::{FileEntry, Original, Record, Role};
use crate::signals;
use crate::verify::{NodeLabeler, Verifier};

pub fn run(args: &UninstallArgs) -> Result<()> {
    let blocked = if args.common.wait {
        Some(signals::block_termination()?)
    } else {
        None
    };
    let host = Host::new(&args.common.host_root)?;
    if args.common.dry_run {
        uninstall(&host, args)?;
    } else {
        crate::hostfs::check_host_path(&args.common.state_dir).context("--state-dir")?;
        let lock = lock::acquire(&host, &args.common.state_dir)?;
        let result = uninstall(&host, args);
        let released = lock.release_unused(&host, &args.common.state_dir);
        result?;
        released?;
    }
    let Some(blocked) = blocked else {
        return Ok(());
    };
    signals::wait_ready(&blocked, args.common.ready_file.as_deref(), "uninstalled")
}

pub fn uninstall(host: &Host, args: &UninstallArgs) -> Result<()> {
    let common = &args.common;
    crate::hostfs::check_host_path(&common.state_dir).context("--state-dir")?;
    let labeler = NodeLabeler::new(common)?;
    let Some(record) = Record::load(host, &common.state_dir)? else {
        println!(
            "nothing to uninstall: no install record {} on host root {}",
            Record::path(&common.state_dir).display(),
            host.root().display()
        );
        if !common.dry_run {
            labeler.remove(None)?;
        }
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
    let cri = record.cri;
    let verifier = Verifier::new(host, common, cri)?;
    if !common.dry_run {
        // First, so that no new pod of the RuntimeClass is scheduled here.
        labeler.remove(record.node_label.as_ref().map(|l| l.key.as_str()))?;
        wait_for_pods(&verifier, &record.handler, args)?;
    }
    let mut undo = Vec::new();
    let cri_changed = reverse_files_collecting(host, &record, common.dry_run, &mut undo)?;
    if common.dry_run {
        if cri_changed {
            println!("would restart {}", cri.name());
        }
        return Ok(());
    }
    if cri_changed || record.restart_pending {
        let restart = restart_for(common, cri);
        let outcome = restart.run(cri.name()).and_then(|restarted| {
            if restarted && verifier.enabled() {
                verifier.expect(&record.handler, false).map(|_| ())
            } else {
                Ok(())
            }
        });
        if let Err(err) = outcome {
            eprintln!("error: {err:#}");
            eprintln!(
                "rolling back: the handler's files go back and {} is restarted",
                cri.name()
            );
            let mut back = record.clone();
            let restored = restore_files(host, &mut back, undo, &common.state_dir)
                .and_then(|()| restart.run(cri.name()).map(|_| ()))
                .and_then(|()| {
                    if verifier.enabled() {
                        verifier.expect_ready()
                    } else {
                        Ok(())
                    }
                });
            return Err(match restored {
                Ok(()) => err.context(format!(
                    "{} did not come back after the handler was taken out; it runs with the \
                     handler again: NOT UNINSTALLED",
                    cri.name()
                )),
                Err(again) => err.context(format!(
                    "{} did not come back after the handler was taken out, AND THE ROLLBACK \
                     FAILED ({again:#}): check {} on this node now",
                    cri.name(),
                    cri.name()
                )),
            });
        }
    } else {
        println!(
            "{} config unchanged; {} not restarted",
            cri.name(),
            cri.name()
        );
    }
    finish(host, &record, &common.state_dir)
}

/// Refuses (or with --wait, waits) while pods run under the handler: their shims would call a
/// runtime binary that is gone.
fn wait_for_pods(verifier: &Verifier, handler: &str, args: &UninstallArgs) -> Result<()> {
    if args.force || !verifier.enabled() || !verifier.socket_exists() {
        return Ok(());
    }
    loop {
        let pods = verifier.pods_using(handler)?;
        if pods.is_empty() {
            return Ok(());
        }
        let shown = pods.join(", ");
        if !args.common.wait {
            bail!(
                "{} pod(s) still run under the handler {handler:?} on this node ({shown}); \
                 their shims would call a runtime that is gone. Move them off (the node label is \
                 off, so no new ones come) and run uninstall again, or pass --force",
                pods.len()
            );
        }
        println!(
            "waiting: {} pod(s) still run under the handler {handler:?} ({shown}); checking again \
             in {}s",
            pods.len(),
            args.retry_interval
        );
        std::thread::sleep(Duration::from_secs(args.retry_interval.max(1)));
    }
}

/// Removes the record, the lock and the directories install created (when empty).
fn finish(host: &Host, record: &Record, state_dir: &Path) -> Result<()> {
    host.remove_file(&Record::path(state_dir))?;
    lock::remove(host, state_dir)?;
    for dir in record.dirs_created.iter().rev() {
        if host.remove_dir_if_empty(dir)? {
            println!("removed directory {}", dir.display());
        } else if host.exists(dir) {
            println!("kept directory {} (not empty)", dir.display());
        }
    }
    Ok(())
}

/// Reverses `record` completely (install, when the handler or CRI changed): files, record and
/// the directories install created. Returns whether a CRI config file changed.
pub fn reverse(host: &Host, record: &Record, state_dir: &Path, dry_run: bool) -> Result<bool> {
    let cri_changed = reverse_files(host, record, dry_run)?;
    if dry_run {
        return Ok(cri_changed);
    }
    host.remove_file(&Record::path(state_dir))?;
    for dir in record.dirs_created.iter().rev() {
        if host.remove_dir_if_empty(dir)? {
            println!("removed directory {}", dir.display());
        }
    }
    Ok(cri_changed)
}

/// Reverses the files of `record`, newest first. Returns whether a CRI config file changed.
pub fn reverse_files(host: &Host, record: &Record, dry_run: bool) -> Result<bool> {
    reverse_files_collecting(host, record, dry_run, &mut Vec::new())
}

fn reverse_files_collecting(
    host: &Host,
    record: &Record,
    dry_run: bool,
    undo: &mut Vec<Undo>,
) -> Result<bool> {
    let mut cri_changed = false;
    for entry in record.files.iter().rev() {
        let before = host.read(&entry.path)?;
        let mode = host.mode_of(&entry.path)?;
        if reverse_file(host, record, entry, dry_run)? && is_cri_config(entry.role) {
            cri_changed = true;
            undo.push(Undo {
                path: entry.path.clone(),
                bytes: before,
                mode,
                entry: Some(entry.clone()),
            });
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
    if matches!(entry.role, Role::ContainerdConfig | Role::ContainerdDropIn) {
        return take_out_of_containerd_file(
            host, record, entry, current, original, backup, dry_run,
        );
    }

    if sha256_hex(&current) == entry.sha256 {
        // Ours alone and as install left it: put the original back exactly.
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
    let kept = backup.map_or(String::new(), |b| {
        format!("; its original stays at {}", b.display())
    });
    println!("left {shown} ({role}) in place: it changed since install{kept}");
    Ok(false)
}

/// Takes out of a containerd file exactly what install added.
fn take_out_of_containerd_file(
    host: &Host,
    record: &Record,
    entry: &FileEntry,
    current: Vec<u8>,
    original: Option<Vec<u8>>,
    backup: Option<&Path>,
    dry_run: bool,
) -> Result<bool> {
    let shown = entry.path.display();
    let role = entry.role.describe();
    let would = if dry_run { "would " } else { "" };
    let current_text =
        String::from_utf8(current).map_err(|_| anyhow::anyhow!("{shown} is not UTF-8 text"))?;
    let original_text = original
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok());
    let mut text = current_text.clone();
    let mut taken = Vec::new();
    if let Some(out) = containerd::remove(
        &text,
        &record.handler,
        original_text,
        entry.added_default_runtime.as_deref(),
    )
    .with_context(|| format!("containerd config {shown}"))?
    {
        text = out;
        taken.push(format!("the handler {:?}'s table", record.handler));
    }
    if let Some(import) = &entry.import_added
        && let Some(out) = containerd::remove_import(&text, import, entry.imports_key_created)
            .with_context(|| format!("containerd config {shown}"))?
    {
        text = out;
        taken.push(format!("the import of {import}"));
    }
    let ours_alone =
        matches!(entry.original, Original::Absent) && containerd::is_empty_shell(&text);
    if ours_alone {
        if !dry_run {
            host.remove_file(&entry.path)?;
        }
        println!("{would}remove {shown} ({role}: nothing but ours was in it)");
        return Ok(true);
    }
    if text == current_text {
        println!("{shown} ({role}) has nothing of ours any more; left as it is");
        return Ok(false);
    }
    if !dry_run {
        let mode: FileMode = host
            .mode_of(&entry.path)?
            .context("the file vanished while being edited")?;
        host.write_atomic(&entry.path, text.as_bytes(), mode)?;
    }
    let exact = original.as_deref() == Some(text.as_bytes());
    match (backup, exact) {
        (Some(b), true) => {
            if !dry_run {
                host.remove_file(b)?;
            }
            println!(
                "{would}take {} out of {shown} ({role}): it is byte for byte as before install, \
                 so the backup {} goes",
                taken.join(" and "),
                b.display()
            );
        }
        (Some(b), false) => println!(
            "{would}take {} out of {shown} ({role}; it changed since install, and only what \
             install added is taken out; the original stays at {} for comparison)",
            taken.join(" and "),
            b.display()
        ),
        (None, _) => println!(
            "{would}take {} out of {shown} ({role}; the rest, added by others since, stays)",
            taken.join(" and ")
        ),
    }
    Ok(true)
}
