//! `install`: plan every file first (all reading and validation), then change them one by one,
//! recording each change before making it, then restart the CRI if its config changed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cli::{InstallArgs, RUNTIME_BINARY_NAME};
use crate::containerd;
use crate::crio::{self, DropIn};
use crate::detect::{self, Cri};
use crate::hostfs::{FileMode, Host, sha256_hex};
use crate::record::{FileEntry, Original, Record, Role, owned_by_us};
use crate::restart::Restart;
use crate::signals;
use crate::uninstall;

/// One file as install wants it.
struct Planned {
    path: PathBuf,
    role: Role,
    bytes: Vec<u8>,
    /// Mode for a new file (an existing file keeps its own).
    new_mode: u32,
    /// What the content is, for the printed line.
    what: String,
}

pub fn run(args: &InstallArgs) -> Result<()> {
    validate_handler(&args.handler_name)?;
    // Before anything else, so a SIGTERM during install waits for install to finish.
    let blocked = if args.wait {
        Some(signals::block_termination()?)
    } else {
        None
    };
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
    install(&host, args, cri)?;

    let Some(blocked) = blocked else {
        return Ok(());
    };
    if let Some(ready) = &args.ready_file {
        std::fs::write(ready, b"installed\n")
            .with_context(|| format!("writing the ready file {}", ready.display()))?;
    }
    println!(
        "installed; waiting for SIGTERM{}",
        if args.uninstall_on_exit {
            " to uninstall"
        } else {
            " (the installation stays when this exits)"
        }
    );
    let signal = blocked.wait()?;
    println!("received {signal}");
    if let Some(ready) = &args.ready_file {
        let _ = std::fs::remove_file(ready);
    }
    if args.uninstall_on_exit {
        uninstall::uninstall(&host, &args.common)?;
    }
    Ok(())
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

fn install(host: &Host, args: &InstallArgs, cri: Cri) -> Result<()> {
    let state_dir = &args.common.state_dir;
    let dry_run = args.common.dry_run;
    crate::hostfs::check_host_path(state_dir).context("--state-dir")?;
    let mut plan = plan(host, args, cri)?;

    let mut record = match Record::load(host, state_dir)? {
        Some(old) if !same_install(&old, cri, &args.handler_name, &plan) => {
            println!(
                "the previous install ({}, handler {:?}, {} files) differs from this one; \
                 reversing it first",
                old.cri.name(),
                old.handler,
                old.files.len()
            );
            let cri_changed = uninstall::reverse(host, &old, state_dir, dry_run)?;
            // The CRI config is merged again, now into what the reversal left.
            plan = self::plan(host, args, cri)?;
            let mut fresh = Record::new(cri, &args.handler_name);
            fresh.restart_pending = cri_changed || old.restart_pending;
            fresh
        }
        Some(old) => old,
        None => Record::new(cri, &args.handler_name),
    };
    record.installer_version = env!("CARGO_PKG_VERSION").to_owned();

    let mut changed = 0;
    for p in &plan {
        if apply(host, &mut record, p, state_dir, dry_run)? {
            changed += 1;
        }
    }
    if dry_run {
        if record.restart_pending {
            println!("would restart {}", cri.name());
        }
        return Ok(());
    }
    record.save(host, state_dir)?;
    if changed == 0 && !record.restart_pending {
        println!("nothing changed; {} not restarted", cri.name());
        return Ok(());
    }
    if record.restart_pending {
        let restart = restart_for(&args.common, cri);
        if restart.run(cri.name())? {
            record.restart_pending = false;
            record.save(host, state_dir)?;
        }
    } else {
        println!(
            "{} config unchanged; {} not restarted (it runs the new files from the next \
             container on)",
            cri.name(),
            cri.name()
        );
    }
    Ok(())
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

fn same_install(old: &Record, cri: Cri, handler: &str, plan: &[Planned]) -> bool {
    let mut old_paths: Vec<&Path> = old.files.iter().map(|f| f.path.as_path()).collect();
    let mut new_paths: Vec<&Path> = plan.iter().map(|p| p.path.as_path()).collect();
    old_paths.sort();
    new_paths.sort();
    old.cri == cri && old.handler == handler && old_paths == new_paths
}

/// Everything is read and checked here; nothing is written.
fn plan(host: &Host, args: &InstallArgs, cri: Cri) -> Result<Vec<Planned>> {
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
    plan.push(Planned {
        path: args.runtime_path.clone(),
        role: Role::RuntimeBinary,
        bytes: binary,
        new_mode: 0o755,
        what: format!("from {}", source.display()),
    });

    if let Some(source) = &args.runtime_config {
        host_path_str(&args.runtime_config_path, "--runtime-config-path")?;
        let text = std::fs::read_to_string(source)
            .with_context(|| format!("reading the runtime config {}", source.display()))?;
        text.parse::<toml_edit::DocumentMut>().map_err(|e| {
            anyhow::anyhow!(
                "runtime config {}: not valid TOML: {}",
                source.display(),
                e.to_string().trim_end()
            )
        })?;
        plan.push(Planned {
            path: args.runtime_config_path.clone(),
            role: Role::RuntimeConfig,
            bytes: text.into_bytes(),
            new_mode: 0o644,
            what: format!("from {}", source.display()),
        });
    }

    match cri {
        Cri::Containerd => {
            let path = &args.containerd_config;
            host_path_str(path, "--containerd-config")?;
            let current = read_text(host, path)?;
            let merged = containerd::merge(current.as_deref(), &args.handler_name, runtime_path)
                .with_context(|| format!("containerd config {}", path.display()))?;
            let systemd = match &merged.systemd_cgroup_from {
                Some((runtime, on)) => {
                    format!(", SystemdCgroup = {on} as for runtime {runtime:?}")
                }
                None => String::new(),
            };
            plan.push(Planned {
                path: path.clone(),
                role: Role::ContainerdConfig,
                bytes: merged.text.into_bytes(),
                new_mode: 0o644,
                what: format!(
                    "runtime handler {:?} (config version {}{systemd})",
                    args.handler_name,
                    merged.version.number()
                ),
            });
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
            plan.push(Planned {
                path: dropin_path,
                role: Role::CrioDropIn,
                bytes: text.into_bytes(),
                new_mode: 0o644,
                what: format!("runtime handler {:?} ({monitor_what})", args.handler_name),
            });
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
) -> Result<bool> {
    let shown = p.path.display();
    let role = p.role.describe();
    let current = host.read(&p.path)?;
    let sha256 = sha256_hex(&p.bytes);
    let previous = record.entry(&p.path).cloned();
    if current.as_deref() == Some(p.bytes.as_slice()) {
        let original = match previous {
            Some(entry) => {
                println!("unchanged {shown} ({role})");
                entry.original
            }
            None => {
                println!("unchanged {shown} ({role}: already as wanted; uninstall leaves it)");
                Original::Untouched
            }
        };
        if !dry_run {
            record.upsert(FileEntry {
                path: p.path.clone(),
                role: p.role,
                original,
                sha256,
            });
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

    let original = match previous.map(|e| e.original) {
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
    let mode = match host.mode_of(&p.path)? {
        Some(mode) => mode,
        None => owned_by_us(FileMode {
            mode: p.new_mode,
            uid: 0,
            gid: 0,
        }),
    };
    record.upsert(FileEntry {
        path: p.path.clone(),
        role: p.role,
        original,
        sha256,
    });
    if is_cri_config(p.role) {
        record.restart_pending = true;
    }
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
    matches!(role, Role::ContainerdConfig | Role::CrioDropIn)
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
