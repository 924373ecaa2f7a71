//! `install`: plan every file first (all reading and validation), then change them one by one,
//! recording each change before making it; restart the CRI if its config changed and check
//! over the CRI socket that it serves the handler. If it does not, the CRI config goes back to
//! what it was, the CRI is restarted again, and install fails. Only a verified install labels
//! the node.
//!
//! Running again (an upgrade, a ConfigMap change, a pod restarted) updates in place: each file
//! is replaced atomically, files no longer wanted go only after the new ones are verified, and
//! nothing is ever taken away in between. One installer at a time per node (`lock`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cli::{InstallArgs, RUNTIME_BINARY_NAME};
use crate::containerd_layout::{self, Major};
use crate::crio::{self, DropIn};
use crate::detect::{self, Cri};
use crate::hostfs::{FileMode, Host, sha256_hex};
use crate::lock;
use crate::record::{FileEntry, NodeLabelRecord, Original, Record, Role, owned_by_us};
use crate::restart::Restart;
use crate::signals;
use crate::uninstall;
use crate::verify::{NodeLabeler, Verifier};

/// One file as install wants it.
struct Planned {
    path: PathBuf,
    role: Role,
    bytes: Vec<u8>,
    /// Mode for a new file (an existing file keeps its own).
    new_mode: u32,
    /// What the content is, for the printed line.
    what: String,
    added_default_runtime: Option<String>,
    import_added: Option<String>,
    imports_key_created: bool,
}

impl Planned {
    fn plain(path: PathBuf, role: Role, bytes: Vec<u8>, new_mode: u32, what: String) -> Self {
        Self {
            path,
            role,
            bytes,
            new_mode,
            what,
            added_default_runtime: None,
            import_added: None,
            imports_key_created: false,
        }
    }
}

/// A CRI config file as it was before this run changed it, to put back if the CRI does not
/// come back with the handler.
pub struct Undo {
    pub path: PathBuf,
    pub bytes: Option<Vec<u8>>,
    pub mode: Option<FileMode>,
    pub entry: Option<FileEntry>,
}

pub fn run(args: &InstallArgs) -> Result<()> {
    validate_handler(&args.handler_name)?;
    // Before anything else, so a SIGTERM during install waits for install to finish.
    let blocked = if args.common.wait {
        Some(signals::block_termination()?)
    } else {
        None
    };
    if args.uninstall_on_exit {
        println!(
            "note: --uninstall-on-exit is ignored: a SIGTERM never uninstalls (upgrades, \
             ConfigMap changes, drains and pod deletions all send one); run `uninstall` to \
             uninstall"
        );
    }
    let host = Host::new(&args.common.host_root)?;
    let cri = detect::resolve(
        args.cri,
        &host,
        &args.containerd_config,
        &args.crio_config,
        &args.crio_config_dir,
    )?;
    println!(
        "strict-supplementalgroups-installer {}: install for {} (handler {:?}) on host root {}{}",
        env!("CARGO_PKG_VERSION"),
        cri.name(),
        args.handler_name,
        host.root().display(),
        if args.common.dry_run {
            " (dry run: nothing is changed)"
        } else {
            ""
        }
    );
    crate::hostfs::check_host_path(&args.common.state_dir).context("--state-dir")?;
    let labeler = NodeLabeler::new(&args.common)?;
    let verifier = Verifier::new(&host, &args.common, cri)?;
    if args.common.dry_run {
        install(&host, args, cri, &verifier, &labeler, &[])?;
    } else {
        let lock = lock::acquire(&host, &args.common.state_dir)?;
        let result = install(&host, args, cri, &verifier, &labeler, &lock.created);
        let released = lock.release_unused(&host, &args.common.state_dir);
        result?;
        released?;
    }

    let Some(blocked) = blocked else {
        return Ok(());
    };
    signals::wait_ready(&blocked, args.common.ready_file.as_deref(), "installed")
}

/// A RuntimeClass handler must be a DNS label; that also keeps it a bare TOML key and a file name.
pub fn validate_handler(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty()
        || name.len() > 63
        || !ok_chars
        || name.starts_with('-')
        || name.ends_with('-')
    {
        bail!(
            "--handler-name {name:?}: must be a DNS label (lowercase letters, digits and '-', \
             at most 63, starting and ending with a letter or digit), as RuntimeClass requires"
        );
    }
    Ok(())
}

fn install(
    host: &Host,
    args: &InstallArgs,
    cri: Cri,
    verifier: &Verifier,
    labeler: &NodeLabeler,
    lock_dirs: &[PathBuf],
) -> Result<()> {
    let state_dir = &args.common.state_dir;
    let dry_run = args.common.dry_run;
    let major = match cri {
        Cri::Containerd => Some(containerd_major(host, args, verifier)?),
        Cri::Crio => None,
    };
    let mut plan = plan(host, args, cri, major)?;

    let mut record = match Record::load(host, state_dir)? {
        Some(old) if old.cri != cri || old.handler != args.handler_name => {
            println!(
                "the previous install ({}, handler {:?}) registered another handler; reversing \
                 it first",
                old.cri.name(),
                old.handler,
            );
            let cri_changed = uninstall::reverse(host, &old, state_dir, dry_run)?;
            // The CRI config is planned again, now from what the reversal left.
            plan = self::plan(host, args, cri, major)?;
            let mut fresh = Record::new(cri, &args.handler_name);
            fresh.restart_pending = cri_changed || old.restart_pending;
            fresh.node_label = old.node_label;
            // Ours still, where the reversal could not remove them (the lock's state directory).
            fresh.dirs_created = old
                .dirs_created
                .into_iter()
                .filter(|d| host.exists(d))
                .collect();
            fresh
        }
        Some(old) => old,
        None => Record::new(cri, &args.handler_name),
    };
    record.installer_version = env!("CARGO_PKG_VERSION").to_owned();
    // The lock made the state directory: uninstall removes it like any other of ours.
    for (i, dir) in lock_dirs.iter().enumerate() {
        if !record.dirs_created.contains(dir) {
            record
                .dirs_created
                .insert(i.min(record.dirs_created.len()), dir.clone());
        }
    }
    // Files an earlier install wrote that this one does not want (another --runtime-path, no
    // --runtime-config any more): reversed only once the new install is verified.
    let stale: Vec<FileEntry> = record
        .files
        .iter()
        .filter(|f| !plan.iter().any(|p| p.path == f.path))
        .cloned()
        .collect();

    let mut changed = 0;
    let mut undo = Vec::new();
    for p in &plan {
        if apply(host, &mut record, p, state_dir, dry_run, &mut undo)? {
            changed += 1;
        }
    }
    if dry_run {
        for f in &stale {
            println!(
                "would reverse {} ({}): no longer wanted",
                f.path.display(),
                f.role.describe()
            );
        }
        if record.restart_pending {
            println!("would restart {}", cri.name());
        }
        return Ok(());
    }
    record.save(host, state_dir)?;
    if record.restart_pending {
        let restart = restart_for(&args.common, cri);
        if !restart.enabled {
            restart.run(cri.name())?;
            println!(
                "not verified and no node label set: {} was not restarted",
                cri.name()
            );
            return Ok(());
        }
        let outcome = restart
            .run(cri.name())
            .and_then(|_| verify(verifier, &args.handler_name));
        if let Err(err) = outcome {
            return Err(roll_back(
                host,
                &mut record,
                undo,
                state_dir,
                &restart,
                verifier,
                labeler,
                cri,
                err,
            ));
        }
        record.restart_pending = false;
        record.save(host, state_dir)?;
    } else {
        if changed == 0 {
            println!("nothing changed; {} not restarted", cri.name());
        } else {
            println!(
                "{} config unchanged; {} not restarted (it runs the new files from the next \
                 container on)",
                cri.name(),
                cri.name()
            );
        }
        if verifier.enabled() {
            if let Err(err) = verifier.expect(&args.handler_name, true) {
                let _ = labeler.remove(None);
                return Err(err.context(format!(
                    "{} does not serve the handler although its config has it",
                    cri.name()
                )));
            }
        }
    }
    if verifier.enabled() {
        if labeler.set()? {
            if let Some(node) = labeler.node() {
                record.node_label = Some(NodeLabelRecord {
                    node: node.to_owned(),
                    key: labeler.key().to_owned(),
                });
            }
        }
    } else {
        println!("--no-verify: no node label set");
    }
    record.save(host, state_dir)?;
    if !stale.is_empty() {
        let mut old = record.clone();
        old.files = stale.clone();
        uninstall::reverse_files(host, &old, false)?;
        record
            .files
            .retain(|f| !stale.iter().any(|s| s.path == f.path));
        record.save(host, state_dir)?;
    }
    Ok(())
}

fn verify(verifier: &Verifier, handler: &str) -> Result<()> {
    if !verifier.enabled() {
        println!("--no-verify: the CRI is not asked whether it serves the handler");
        return Ok(());
    }
    verifier.expect(handler, true).map(|_| ())
}

/// Puts the CRI config files back as they were before this run, restarts the CRI, and returns
/// the error to fail with.
#[allow(clippy::too_many_arguments)]
fn roll_back(
    host: &Host,
    record: &mut Record,
    undo: Vec<Undo>,
    state_dir: &Path,
    restart: &Restart,
    verifier: &Verifier,
    labeler: &NodeLabeler,
    cri: Cri,
    cause: anyhow::Error,
) -> anyhow::Error {
    eprintln!("error: {cause:#}");
    eprintln!(
        "rolling back: {} gets its previous config and is restarted",
        cri.name()
    );
    let restored = restore_files(host, record, undo, state_dir);
    let restarted = restored.and_then(|()| {
        restart.run(cri.name())?;
        verifier.expect_ready()
    });
    let _ = labeler.remove(None);
    match restarted {
        Ok(()) => {
            record.restart_pending = false;
            record.node_label = None;
            let _ = record.save(host, state_dir);
            cause.context(format!(
                "{} did not come back serving the handler; its previous config is back and it \
                 serves again without the handler: NOT INSTALLED",
                cri.name()
            ))
        }
        Err(again) => cause.context(format!(
            "{} did not come back serving the handler, AND THE ROLLBACK FAILED ({again:#}): \
             check {} on this node now",
            cri.name(),
            cri.name()
        )),
    }
}

/// Writes back the files of `undo` (newest change first) and their record entries.
pub fn restore_files(
    host: &Host,
    record: &mut Record,
    undo: Vec<Undo>,
    state_dir: &Path,
) -> Result<()> {
    for u in undo.into_iter().rev() {
        match (&u.bytes, u.mode) {
            (Some(bytes), Some(mode)) => {
                host.write_atomic(&u.path, bytes, mode)?;
                println!("restored {}", u.path.display());
            }
            _ => {
                host.remove_file(&u.path)?;
                println!("removed {}", u.path.display());
            }
        }
        match u.entry {
            Some(entry) => record.upsert(entry),
            None => record.files.retain(|f| f.path != u.path),
        }
    }
    record.restart_pending = true;
    record.save(host, state_dir)
}

/// containerd's line: as given, else as its CRI says, else from config.toml's version.
fn containerd_major(host: &Host, args: &InstallArgs, verifier: &Verifier) -> Result<Major> {
    if let Some(n) = args.containerd_major {
        return Ok(if n >= 2 { Major::Two } else { Major::One });
    }
    if let Some((major, version)) = verifier.containerd_major() {
        println!(
            "containerd {version} answers on the CRI socket: the {} line",
            major.name()
        );
        return Ok(major);
    }
    let version3 = read_text(host, &args.containerd_config)?
        .and_then(|t| t.parse::<toml_edit::DocumentMut>().ok())
        .is_some_and(|d| d.get("version").and_then(|v| v.as_integer()) == Some(3));
    let major = if version3 { Major::Two } else { Major::One };
    println!(
        "containerd does not answer on the CRI socket; assuming the {} line from its config \
         (--containerd-major overrides)",
        major.name()
    );
    Ok(major)
}

pub fn restart_for(common: &crate::cli::Common, cri: Cri) -> Restart {
    Restart {
        template: common.restart_command.clone(),
        unit: common
            .cri_unit
            .clone()
            .unwrap_or_else(|| cri.unit().to_owned()),
        enabled: !common.no_restart,
    }
}

/// Everything is read and checked here; nothing is written.
fn plan(host: &Host, args: &InstallArgs, cri: Cri, major: Option<Major>) -> Result<Vec<Planned>> {
    let runtime_path = host_path_str(&args.runtime_path, "--runtime-path")?;
    let mut plan = Vec::new();

    let source = match &args.runtime_binary {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating this installer")?
            .parent()
            .context("locating this installer's directory")?
            .join(RUNTIME_BINARY_NAME),
    };
    let binary = std::fs::read(&source)
        .with_context(|| format!("reading the runtime binary {}", source.display()))?;
    if binary.is_empty() {
        bail!("the runtime binary {} is empty", source.display());
    }
    plan.push(Planned::plain(
        args.runtime_path.clone(),
        Role::RuntimeBinary,
        binary,
        0o755,
        format!("from {}", source.display()),
    ));

    if let Some(source) = &args.runtime_config {
        host_path_str(&args.runtime_config_path, "--runtime-config-path")?;
        let text = std::fs::read_to_string(source)
            .with_context(|| format!("reading the runtime config {}", source.display()))?;
        // The runtime's own parser, as the runtime will read the file on the node: a typo rolls
        // out nowhere.
        let (_, remarks) =
            strict_supplementalgroups::config::parse(&text, Some(&args.runtime_config_path))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "runtime config {} is refused by the runtime's own parser (nothing was \
                         changed on this node): {e:#}",
                        source.display()
                    )
                })?;
        for remark in &remarks.0 {
            println!("note: runtime config {}: {remark}", source.display());
        }
        plan.push(Planned::plain(
            args.runtime_config_path.clone(),
            Role::RuntimeConfig,
            text.into_bytes(),
            0o644,
            format!("from {}", source.display()),
        ));
    }

    match cri {
        Cri::Containerd => {
            host_path_str(&args.containerd_config, "--containerd-config")?;
            host_path_str(&args.containerd_dropin_dir, "--containerd-dropin-dir")?;
            let files = containerd_layout::plan(&containerd_layout::Request {
                host,
                config: &args.containerd_config,
                dropin_dir: &args.containerd_dropin_dir,
                major: major.unwrap_or(Major::One),
                handler: &args.handler_name,
                binary: runtime_path,
            })?;
            // The drop-in first: config.toml imports it only once it exists.
            for f in files.into_iter().rev() {
                plan.push(Planned {
                    path: f.path,
                    role: if f.is_dropin {
                        Role::ContainerdDropIn
                    } else {
                        Role::ContainerdConfig
                    },
                    bytes: f.bytes,
                    new_mode: 0o644,
                    what: f.what,
                    added_default_runtime: f.added_default_runtime,
                    import_added: f.import_added,
                    imports_key_created: f.imports_key_created,
                });
            }
        }
        Cri::Crio => {
            let dir = &args.crio_config_dir;
            host_path_str(dir, "--crio-config-dir")?;
            let dropin_name = crio::dropin_name(&args.handler_name);
            let dropin_path = dir.join(&dropin_name);
            let mut files = Vec::new();
            if let Some(text) = read_text(host, &args.crio_config)? {
                files.push((args.crio_config.display().to_string(), text));
            }
            for name in host.list_files(dir)? {
                if name == dropin_name || !name.ends_with(".conf") {
                    continue;
                }
                let path = dir.join(&name);
                if let Some(text) = read_text(host, &path)? {
                    files.push((path.display().to_string(), text));
                }
            }
            let existing = crio::read_existing(&files, &args.handler_name)?;
            for file in &existing.handler_defined_in {
                println!(
                    "note: {file} already defines runtime {:?}; the drop-in {} is read after it \
                     and takes precedence",
                    args.handler_name,
                    dropin_path.display()
                );
            }
            let (monitor, monitor_what) =
                monitor_path(host, args.crio_monitor_path.as_deref(), &existing)?;
            let runtime_root = host_path_str(&args.runtime_root, "--runtime-root")?;
            let text = crio::render(&DropIn {
                handler: &args.handler_name,
                runtime_path,
                runtime_root,
                monitor_path: monitor.as_deref(),
            })?;
            plan.push(Planned::plain(
                dropin_path,
                Role::CrioDropIn,
                text.into_bytes(),
                0o644,
                format!("runtime handler {:?} ({monitor_what})", args.handler_name),
            ));
        }
    }
    Ok(plan)
}

fn monitor_path(
    host: &Host,
    given: Option<&Path>,
    existing: &crio::Existing,
) -> Result<(Option<String>, String)> {
    if let Some(path) = given {
        let s = host_path_str(path, "--crio-monitor-path")?;
        return Ok((Some(s.to_owned()), format!("conmon {s} as given")));
    }
    if let Some((path, file)) = &existing.monitor_path {
        return Ok((Some(path.clone()), format!("conmon {path} as in {file}")));
    }
    for candidate in crio::CONMON_CANDIDATES {
        if host.exists(Path::new(candidate)) {
            return Ok((
                Some((*candidate).to_owned()),
                format!("conmon {candidate} found"),
            ));
        }
    }
    Ok((
        None,
        "no conmon found: monitor_path left out, CRI-O looks conmon up itself".to_owned(),
    ))
}

fn apply(
    host: &Host,
    record: &mut Record,
    p: &Planned,
    state_dir: &Path,
    dry_run: bool,
    undo: &mut Vec<Undo>,
) -> Result<bool> {
    let shown = p.path.display();
    let role = p.role.describe();
    let current = host.read(&p.path)?;
    let sha256 = sha256_hex(&p.bytes);
    let previous = record.entry(&p.path).cloned();
    // What install added to a file stays recorded, also when a later run finds it in place.
    let entry = |original: Original| FileEntry {
        path: p.path.clone(),
        role: p.role,
        original,
        sha256: sha256.clone(),
        added_default_runtime: p.added_default_runtime.clone().or_else(|| {
            previous
                .as_ref()
                .and_then(|e| e.added_default_runtime.clone())
        }),
        import_added: p
            .import_added
            .clone()
            .or_else(|| previous.as_ref().and_then(|e| e.import_added.clone())),
        imports_key_created: p.imports_key_created
            || previous.as_ref().is_some_and(|e| e.imports_key_created),
    };
    if current.as_deref() == Some(p.bytes.as_slice()) {
        let original = match &previous {
            Some(e) => {
                println!("unchanged {shown} ({role})");
                e.original.clone()
            }
            None => {
                println!("unchanged {shown} ({role}: already as wanted; uninstall leaves it)");
                Original::Untouched
            }
        };
        if !dry_run {
            record.upsert(entry(original));
        }
        return Ok(false);
    }

    let verb = if current.is_some() {
        "update"
    } else {
        "create"
    };
    if dry_run {
        println!("would {verb} {shown} ({role}: {})", p.what);
        if is_cri_config(p.role) {
            record.restart_pending = true;
        }
        return Ok(true);
    }

    let original = match previous.as_ref().map(|e| e.original.clone()) {
        Some(Original::BackedUp(backup)) => Original::BackedUp(backup),
        Some(Original::Absent) => Original::Absent,
        Some(Original::Untouched) | None => match &current {
            None => Original::Absent,
            Some(bytes) => {
                let backup = backup_path(p.role, &p.path, state_dir)?;
                if let Some(dir) = backup.parent() {
                    record.dirs_created.extend(host.create_dir_all(dir)?);
                }
                let mode = host
                    .mode_of(&p.path)?
                    .context("the file vanished while being backed up")?;
                host.write_atomic(&backup, bytes, mode)?;
                println!("backed up {shown} to {}", backup.display());
                Original::BackedUp(backup)
            }
        },
    };
    let existing_mode = host.mode_of(&p.path)?;
    let mode = match existing_mode {
        Some(mode) => mode,
        None => owned_by_us(FileMode {
            mode: p.new_mode,
            uid: 0,
            gid: 0,
        }),
    };
    if is_cri_config(p.role) {
        undo.push(Undo {
            path: p.path.clone(),
            bytes: current.clone(),
            mode: existing_mode,
            entry: previous.clone(),
        });
        record.restart_pending = true;
    }
    record.upsert(entry(original));
    if let Some(dir) = p.path.parent() {
        let created = host.create_dir_all(dir)?;
        for d in &created {
            println!("created directory {}", d.display());
        }
        record.dirs_created.extend(created);
    }
    // Recorded before written: a crash in between leaves a record that uninstall can follow.
    record.save(host, state_dir)?;
    host.write_atomic(&p.path, &p.bytes, mode)?;
    println!("{verb}d {shown} ({role}: {})", p.what);
    Ok(true)
}

pub fn is_cri_config(role: Role) -> bool {
    matches!(
        role,
        Role::ContainerdConfig | Role::ContainerdDropIn | Role::CrioDropIn
    )
}

/// containerd's config is backed up beside itself, where admins look; the rest in the state
/// directory (a backup inside crio.conf.d could be read as a drop-in).
fn backup_path(role: Role, path: &Path, state_dir: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name", path.display()))?;
    Ok(match role {
        Role::ContainerdConfig => {
            path.with_file_name(format!("{name}.strict-supplementalgroups.bak"))
        }
        _ => state_dir
            .join("backup")
            .join(crate::hostfs::check_host_path(path)?),
    })
}

fn read_text(host: &Host, path: &Path) -> Result<Option<String>> {
    match host.read(path)? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display())),
    }
}

fn host_path_str<'a>(path: &'a Path, flag: &str) -> Result<&'a str> {
    crate::hostfs::check_host_path(path).with_context(|| flag.to_owned())?;
    let s = path
        .to_str()
        .with_context(|| format!("{flag} {}: not UTF-8", path.display()))?;
    if s.contains(['"', '\n', '\\']) {
        bail!("{flag} {s:?}: quotes, backslashes and newlines are not accepted in paths");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_names() {
        for ok in ["strict-supplementalgroups", "a", "x1-2"] {
            assert!(validate_handler(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(validate_handler(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backups() {
        let state = Path::new("/var/lib/x");
        assert_eq!(
            backup_path(
                Role::ContainerdConfig,
                Path::new("/etc/containerd/config.toml"),
                state
            )
            .unwrap(),
            Path::new("/etc/containerd/config.toml.strict-supplementalgroups.bak")
        );
        assert_eq!(
            backup_path(
                Role::CrioDropIn,
                Path::new("/etc/crio/crio.conf.d/99-x.conf"),
                state
            )
            .unwrap(),
            Path::new("/var/lib/x/backup/etc/crio/crio.conf.d/99-x.conf")
        );
    }
}
