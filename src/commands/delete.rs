//! `delete`: removes what the container made — its cgroup directories and its state — and
//! signals only the container's own processes. For a stopped container that is nothing at all
//! (its processes ended with its init's pid namespace); `--force` on a live one kills its init
//! (and, when it shares the host's pid namespace, the processes of its own cgroup, as runc
//! does). Never through libcgroups' `remove()`, which kills whatever is in the directories and
//! reads an empty path as the caller's cgroup (see `cgroup_dirs`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use libcgroups::common::CgroupSetup;
use libcontainer::container::{Container, ContainerStatus};
use liboci_cli::Delete;
use nix::sys::signal::Signal;

use crate::cgroup_dirs::{self, Layout};
use crate::config::AnnotationOverrides;
use crate::container_state::{self, container_dir, load_container};
use crate::pod::{Identity, PodRef};
use crate::podgroups::cache;
use crate::record::Record;
use crate::spec_stage::identify::identify;
use crate::spec_stage::load::BundleSpec;

/// How long `delete --force` waits for a killed init to be gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub fn delete(args: Delete, root: &Path) -> Result<()> {
    let id = &args.container_id;
    let dir = container_dir(root, id)?;
    if args.force && !dir.exists() {
        // runc: deleting what is already gone with --force succeeds (the shim relies on it).
        return Ok(());
    }
    let mut container = load_container(root, id)?;
    forget_pod_groups(root, &container);
    delete_container(&mut container, args.force)
}

/// Deletes a loaded container (also `run`'s, when its init has exited): see the module docs.
pub fn delete_container(container: &mut Container, force: bool) -> Result<()> {
    let id = container.id().to_owned();
    if container.systemd() {
        // systemd stops the container's own unit; nothing outside it is touched.
        return container
            .delete(force)
            .with_context(|| format!("deleting container {id}"));
    }
    container
        .refresh_status()
        .with_context(|| format!("reading the status of container {id}"))?;
    match container.status() {
        ContainerStatus::Stopped => {}
        ContainerStatus::Created => stop(container)?,
        ContainerStatus::Creating | ContainerStatus::Running | ContainerStatus::Paused if force => {
            stop(container)?
        }
        status => {
            bail!("cannot delete container {id}: it is {status:?}; stop it first or use --force")
        }
    }
    remove_stopped(container).with_context(|| format!("deleting container {id}"))
}

/// Kills a created or live container: its init, and with it everything in its own pid
/// namespace; when it has none (it shares the host's, or joined another), the processes in its
/// own cgroup too, as runc does — never those of an empty or root cgroup path.
fn stop(container: &mut Container) -> Result<()> {
    let id = container.id().to_owned();
    let config = container.spec().ok();
    let own_cgroup = config
        .as_ref()
        .is_some_and(|c| cgroup_dirs::names_a_cgroup_of_its_own(&c.cgroup_path));
    let all = !has_private_pid_namespace(container) && own_cgroup;
    let init = container.pid();
    container
        .kill(Signal::SIGKILL, all)
        .with_context(|| format!("killing container {id}"))?;
    if let Some(pid) = init {
        wait_gone(pid.as_raw(), KILL_WAIT)
            .with_context(|| format!("waiting for the init of container {id} to exit"))?;
    }
    Ok(())
}

/// Whether the container had a pid namespace of its own (from its bundle, as create saw it;
/// unknown counts as no).
fn has_private_pid_namespace(container: &Container) -> bool {
    let Ok(spec) = BundleSpec::load(container.bundle()) else {
        return false;
    };
    spec.json
        .pointer("/linux/namespaces")
        .and_then(|n| n.as_array())
        .is_some_and(|namespaces| {
            namespaces.iter().any(|ns| {
                ns.get("type").and_then(|t| t.as_str()) == Some("pid")
                    && ns
                        .get("path")
                        .and_then(|p| p.as_str())
                        .is_none_or(str::is_empty)
            })
        })
}

/// A process is gone once it no longer exists or is a zombie (its parent reaps it).
fn wait_gone(pid: i32, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        let alive = stat.is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        });
        if !alive {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("process {pid} still runs after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Removes a stopped container as libcontainer's delete does — Intel RDT, cgroups, poststop
/// hooks, state — except that cgroups are only removed, never swept of processes. Everything
/// is attempted; the state directory always goes (so a later `delete --force` finds nothing to
/// repeat); the first problem is returned.
fn remove_stopped(container: &Container) -> Result<()> {
    let mut problems: Vec<String> = Vec::new();
    if let Err(err) = libcontainer::process::intel_rdt::cleanup_intel_rdt(
        container.intel_rdt_dir().map(|p| p.as_path()),
        container.intel_rdt_monitoring_dir().map(|p| p.as_path()),
        container.clean_up_intel_rdt_subdirectory(),
        container.id(),
    ) {
        tracing::warn!(?err, "cleaning up Intel RDT");
    }
    match container.spec() {
        Ok(config) => {
            problems.extend(remove_cgroups(&config.cgroup_path));
            if let Some(hooks) = config.hooks.as_ref() {
                if let Err(err) = libcontainer::hooks::run_hooks(
                    hooks.poststop().as_ref(),
                    Some(&container.state),
                    None,
                    None,
                    None,
                ) {
                    problems.push(format!("poststop hooks: {err}"));
                }
            }
        }
        Err(err) => {
            tracing::warn!(%err, "the container's saved config is unreadable: no cgroups or hooks");
        }
    }
    std::fs::remove_dir_all(&container.root)
        .with_context(|| format!("removing {}", container.root.display()))?;
    match problems.first() {
        None => Ok(()),
        Some(_) => bail!("{}", problems.join("; ")),
    }
}

/// Removes the container's own cgroup directories; returns what could not be removed.
fn remove_cgroups(cgroup_path: &Path) -> Vec<String> {
    let layout = match libcgroups::common::get_cgroup_setup() {
        Ok(CgroupSetup::Legacy | CgroupSetup::Hybrid) => Layout::V1,
        Ok(CgroupSetup::Unified) => Layout::V2,
        Err(err) => return vec![format!("detecting the cgroup layout: {err}")],
    };
    let read =
        |path: &str| std::fs::read_to_string(path).with_context(|| format!("reading {path}"));
    let dirs = read("/proc/self/mountinfo").and_then(|mountinfo| {
        let proc_cgroup = read("/proc/self/cgroup")?;
        cgroup_dirs::container_dirs(layout, &mountinfo, &proc_cgroup, cgroup_path)
    });
    match dirs {
        Ok(dirs) => cgroup_dirs::remove_dirs(&dirs),
        Err(err) => {
            // Not the container's (empty, the root): nothing of it to remove.
            tracing::warn!(
                path = %cgroup_path.display(),
                error = %format!("{err:#}"),
                "not removing cgroup directories"
            );
            Vec::new()
        }
    }
}

/// When the pod's sandbox goes, so does the pod: its cached groups are removed (best effort;
/// never fails the delete). Who the container is comes from the record create kept (create
/// identified it with the configured annotation keys), so delete reads no configuration; a
/// container created by a build that kept no record is identified by the built-in keys.
fn forget_pod_groups(root: &Path, container: &Container) {
    let identity = match Record::load(&container.root) {
        Ok(Some(record)) => record.identity,
        Ok(None) => {
            let annotations = container_state::annotations(container);
            if annotations.is_empty() {
                return;
            }
            match identify(
                &annotations,
                container.id(),
                &AnnotationOverrides::default(),
            ) {
                Ok(identity) => identity,
                Err(err) => {
                    tracing::debug!(%err, "delete: not forgetting pod groups");
                    return;
                }
            }
        }
        Err(err) => {
            tracing::debug!(error = %format!("{err:#}"), "delete: not forgetting pod groups");
            return;
        }
    };
    if let Identity::Sandbox {
        pod: Some(PodRef { uid: Some(uid), .. }),
    } = identity
    {
        cache::remove_entry(root, &uid);
    }
}
